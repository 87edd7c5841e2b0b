//! Errors: [`PoolError`] for rejected operations and [`InvariantViolation`] for
//! [`BlockPool::check_invariants`](super::BlockPool::check_invariants). Both carry the numbers
//! involved and implement `Display` and `std::error::Error` by hand (no dependency beyond std).
//!
//! A rejected operation never changes the pool.

use std::error::Error;
use std::fmt;

use super::block::BlockId;
use super::session::SessionId;

/// Why a pool operation or spec was rejected. The pool is unchanged after any error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// The spec's `block_tokens` is 0.
    ZeroBlockTokens,
    /// The spec's `global_bytes_per_token` is 0 (every model has full-attention layers here).
    ZeroGlobalBytesPerToken,
    /// Sliding bytes per token and sliding window must be both zero or both nonzero.
    InconsistentSliding {
        /// The spec's sliding bytes per token.
        sliding_bytes_per_token: u64,
        /// The spec's sliding window in tokens.
        sliding_window_tokens: u32,
    },
    /// `block_tokens * bytes_per_token` does not fit in `u64`.
    BlockBytesOverflow {
        /// The spec's block size in tokens.
        block_tokens: u32,
        /// The larger of the spec's bytes per token.
        bytes_per_token: u64,
    },
    /// The budget cannot hold one global block plus one sliding block.
    BudgetTooSmall {
        /// The spec's budget.
        budget_bytes: u64,
        /// Bytes of one global block plus one sliding block.
        min_bytes: u64,
    },
    /// The budget holds more global blocks than a `u32` block id can name.
    TooManyBlocks {
        /// Global blocks the budget would hold.
        blocks: u64,
        /// The most the pool supports.
        max: u64,
    },
    /// Not enough free memory for the request.
    OutOfMemory {
        /// Session that asked.
        session: SessionId,
        /// New global blocks the request needs (including copy-on-write copies).
        requested_blocks: u32,
        /// Bytes the request needs (global and sliding).
        requested_bytes: u64,
        /// Global blocks still available (in global-block units).
        available_blocks: u32,
        /// Bytes still available.
        available_bytes: u64,
    },
    /// The session is not in the pool.
    UnknownSession {
        /// The session.
        session: SessionId,
    },
    /// The session already exists (e.g. a second lease for the same session).
    SessionExists {
        /// The session.
        session: SessionId,
    },
    /// The block id was never handed out by this pool.
    UnknownBlock {
        /// The block.
        block: BlockId,
        /// Size of the block table (valid ids are below it).
        table_len: u32,
    },
    /// The block is already free.
    DoubleFree {
        /// The session that tried to free it.
        session: SessionId,
        /// The block.
        block: BlockId,
    },
    /// The block is live but not held by this session (it belongs to other sessions).
    NotOwner {
        /// The session that tried to free it.
        session: SessionId,
        /// The block.
        block: BlockId,
        /// The block's owner (the session that allocated it).
        owner: Option<SessionId>,
        /// Sessions referencing the block.
        refs: u32,
    },
    /// `share` from a session to itself.
    ShareWithSelf {
        /// The session.
        session: SessionId,
    },
    /// `share` asked for more blocks than the source session holds.
    ShareTooMany {
        /// The source session.
        from: SessionId,
        /// Blocks asked for.
        requested: u32,
        /// Blocks the source holds.
        held: u32,
    },
    /// `share` target already holds blocks (a shared prefix must come first).
    SessionNotEmpty {
        /// The target session.
        session: SessionId,
        /// Blocks it holds.
        blocks: u32,
    },
    /// `reconfigure` would change the block size while sessions hold blocks.
    BlockSizeChange {
        /// Current block size in tokens.
        old_block_tokens: u32,
        /// Requested block size in tokens.
        new_block_tokens: u32,
        /// Live global blocks.
        live_blocks: u32,
    },
    /// `reconfigure`: the live sessions would not fit in the new spec's budget.
    WouldNotFit {
        /// Bytes the live sessions would take under the new spec.
        needed_bytes: u64,
        /// The new spec's budget.
        budget_bytes: u64,
        /// Live sessions.
        sessions: u32,
    },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroBlockTokens => write!(f, "KV pool spec: block_tokens must be at least 1"),
            Self::ZeroGlobalBytesPerToken => {
                write!(f, "KV pool spec: global_bytes_per_token must be at least 1")
            }
            Self::InconsistentSliding {
                sliding_bytes_per_token,
                sliding_window_tokens,
            } => write!(
                f,
                "KV pool spec: sliding bytes per token ({sliding_bytes_per_token}) and sliding \
                 window ({sliding_window_tokens} tokens) must be both zero or both nonzero"
            ),
            Self::BlockBytesOverflow {
                block_tokens,
                bytes_per_token,
            } => write!(
                f,
                "KV pool spec: {block_tokens} tokens x {bytes_per_token} bytes per token \
                 overflows u64"
            ),
            Self::BudgetTooSmall {
                budget_bytes,
                min_bytes,
            } => write!(
                f,
                "KV pool spec: budget of {budget_bytes} bytes is below one block ({min_bytes} \
                 bytes, global plus sliding)"
            ),
            Self::TooManyBlocks { blocks, max } => write!(
                f,
                "KV pool spec: budget holds {blocks} blocks, more than the {max} supported"
            ),
            Self::OutOfMemory {
                session,
                requested_blocks,
                requested_bytes,
                available_blocks,
                available_bytes,
            } => write!(
                f,
                "KV pool out of memory for {session}: requested {requested_blocks} blocks \
                 ({requested_bytes} bytes), available {available_blocks} blocks \
                 ({available_bytes} bytes)"
            ),
            Self::UnknownSession { session } => write!(f, "KV pool: unknown {session}"),
            Self::SessionExists { session } => write!(f, "KV pool: {session} already exists"),
            Self::UnknownBlock { block, table_len } => write!(
                f,
                "KV pool: {block} was never allocated (block table has {table_len} entries)"
            ),
            Self::DoubleFree { session, block } => {
                write!(f, "KV pool: {session} freed {block}, which is already free")
            }
            Self::NotOwner {
                session,
                block,
                owner,
                refs,
            } => {
                write!(
                    f,
                    "KV pool: {session} freed {block}, which it does not hold (owner "
                )?;
                match owner {
                    Some(owner) => write!(f, "{owner}")?,
                    None => write!(f, "none")?,
                }
                write!(f, ", {refs} references)")
            }
            Self::ShareWithSelf { session } => {
                write!(f, "KV pool: {session} cannot share blocks with itself")
            }
            Self::ShareTooMany {
                from,
                requested,
                held,
            } => write!(
                f,
                "KV pool: cannot share {requested} blocks of {from}, which holds {held}"
            ),
            Self::SessionNotEmpty { session, blocks } => write!(
                f,
                "KV pool: {session} already holds {blocks} blocks; a shared prefix must be its \
                 first blocks"
            ),
            Self::BlockSizeChange {
                old_block_tokens,
                new_block_tokens,
                live_blocks,
            } => write!(
                f,
                "KV pool: cannot change block size from {old_block_tokens} to \
                 {new_block_tokens} tokens while {live_blocks} blocks are live"
            ),
            Self::WouldNotFit {
                needed_bytes,
                budget_bytes,
                sessions,
            } => write!(
                f,
                "KV pool: {sessions} live sessions need {needed_bytes} bytes under the new spec, \
                 above its budget of {budget_bytes} bytes"
            ),
        }
    }
}

impl Error for PoolError {}

/// A broken internal invariant found by
/// [`BlockPool::check_invariants`](super::BlockPool::check_invariants). Seeing one is a bug in
/// the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvariantViolation {
    /// `used + available != total`, for bytes or for blocks.
    Accounting {
        /// `"bytes"` or `"blocks"`.
        unit: &'static str,
        /// Used amount.
        used: u64,
        /// Available amount.
        available: u64,
        /// Total amount.
        total: u64,
    },
    /// Used bytes exceed the budget.
    OverBudget {
        /// Used bytes.
        used_bytes: u64,
        /// Budget.
        budget_bytes: u64,
    },
    /// A block's stored reference count differs from the number of sessions holding it.
    RefCount {
        /// The block.
        block: BlockId,
        /// Stored count.
        stored: u32,
        /// Sessions actually holding it.
        actual: u32,
    },
    /// A session lists a block that is out of the block table.
    BlockOutOfRange {
        /// The session.
        session: SessionId,
        /// The block.
        block: BlockId,
    },
    /// A session lists the same block twice.
    DuplicateInSession {
        /// The session.
        session: SessionId,
        /// The block.
        block: BlockId,
    },
    /// The free list names a live block, names a block twice, or is out of range.
    FreeList {
        /// The block.
        block: BlockId,
    },
    /// A free block is missing from the free list.
    LostBlock {
        /// The block.
        block: BlockId,
    },
    /// A block's fields disagree with its state (owner or tokens on a free block, no owner on a
    /// live one, more tokens than the block size, or a wrong id).
    BlockState {
        /// The block.
        block: BlockId,
    },
    /// A counter kept by the pool differs from its recomputed value.
    Counter {
        /// Which counter.
        name: &'static str,
        /// Stored value.
        stored: u64,
        /// Recomputed value.
        actual: u64,
    },
    /// A session's token count exceeds the capacity of its blocks.
    SessionTokens {
        /// The session.
        session: SessionId,
        /// Its tokens.
        tokens: u32,
        /// `blocks * block_tokens`.
        capacity: u64,
    },
}

impl fmt::Display for InvariantViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Accounting {
                unit,
                used,
                available,
                total,
            } => write!(
                f,
                "{unit}: used {used} + available {available} != total {total}"
            ),
            Self::OverBudget {
                used_bytes,
                budget_bytes,
            } => write!(
                f,
                "used {used_bytes} bytes, over the budget of {budget_bytes}"
            ),
            Self::RefCount {
                block,
                stored,
                actual,
            } => write!(
                f,
                "{block} has refcount {stored} but {actual} sessions hold it"
            ),
            Self::BlockOutOfRange { session, block } => {
                write!(f, "{session} holds {block}, outside the block table")
            }
            Self::DuplicateInSession { session, block } => {
                write!(f, "{session} holds {block} twice")
            }
            Self::FreeList { block } => write!(f, "free list entry {block} is invalid"),
            Self::LostBlock { block } => write!(f, "free {block} is not on the free list"),
            Self::BlockState { block } => {
                write!(f, "{block} has fields inconsistent with its state")
            }
            Self::Counter {
                name,
                stored,
                actual,
            } => write!(f, "counter {name} is {stored}, recomputed {actual}"),
            Self::SessionTokens {
                session,
                tokens,
                capacity,
            } => write!(
                f,
                "{session} has {tokens} tokens, over its capacity of {capacity}"
            ),
        }
    }
}

impl Error for InvariantViolation {}
