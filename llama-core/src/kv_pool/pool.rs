//! [`BlockPool`]: the single-threaded block allocator, and [`PoolSnapshot`], its observable state.
//!
//! Global blocks live in a flat `Vec<Block>` (the block table) with a LIFO free list of ids; the
//! table grows lazily up to the budget. Sessions keep their block ids in token order. Sliding
//! blocks are private to each session and only counted (`min(blocks, cap)` per session, see
//! [`PoolSpec::sliding_blocks_cap`]). Every operation checks that it fits before it changes
//! anything, so a rejected operation leaves the pool exactly as it was.
//!
//! Units: bytes are exact. Block counts are in global-block units: `available_blocks` is how many
//! more global blocks the free bytes hold, `used_blocks = total_blocks - available_blocks`. With
//! no sliding layers `used_blocks` is exactly the number of live blocks; with sliding layers it
//! also covers the bytes held by sliding blocks, rounded to whole global blocks.

use std::collections::BTreeMap;
use std::fmt;

use super::block::{Block, BlockId};
use super::error::{InvariantViolation, PoolError};
use super::session::{SessionBlocks, SessionId};
use super::spec::PoolSpec;

/// A pool of fixed-size KV blocks handed out to sessions as they grow.
///
/// Never overcommits: `used_bytes() <= total_bytes()` always. Blocks can be shared by several
/// sessions (a common prompt prefix, see [`share`](Self::share)) with reference counts and
/// copy-on-write when a session writes into a shared block.
#[derive(Clone)]
pub struct BlockPool {
    spec: PoolSpec,
    global_block_bytes: u64,
    sliding_block_bytes: u64,
    sliding_cap: u32,
    table: Vec<Block>,
    free_list: Vec<BlockId>,
    sessions: BTreeMap<SessionId, SessionBlocks>,
    /// Global blocks with `refs > 0`.
    live_blocks: u32,
    /// Sum over sessions of `min(blocks, sliding_cap)`.
    sliding_blocks: u64,
}

/// What `grow_to` would do: which existing blocks get a copy-on-write copy, how many blocks are
/// appended, and the sliding blocks added.
struct GrowPlan {
    cow: Vec<usize>,
    append: usize,
    sliding_add: u64,
    bytes: u64,
}

/// The observable state of a pool, for comparing states in tests (`allocate` then `free` must
/// give back an equal snapshot). Internal order of the free list is not part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// `used_bytes()`.
    pub used_bytes: u64,
    /// `used_global_bytes()`.
    pub used_global_bytes: u64,
    /// `used_sliding_bytes()`.
    pub used_sliding_bytes: u64,
    /// `available_bytes()`.
    pub available_bytes: u64,
    /// `used_blocks()`.
    pub used_blocks: u32,
    /// `available_blocks()`.
    pub available_blocks: u32,
    /// `used_global_blocks()`.
    pub used_global_blocks: u32,
    /// `used_sliding_blocks()`.
    pub used_sliding_blocks: u64,
    /// Every session: id, block ids in order, tokens.
    pub sessions: Vec<(SessionId, Vec<BlockId>, u32)>,
    /// Every live block, in id order.
    pub live_blocks: Vec<Block>,
}

impl BlockPool {
    /// Creates an empty pool for `spec`, after [`PoolSpec::validate`].
    pub fn new(spec: PoolSpec) -> Result<Self, PoolError> {
        spec.validate()?;
        Ok(Self {
            spec,
            global_block_bytes: spec.global_block_bytes(),
            sliding_block_bytes: spec.sliding_block_bytes(),
            sliding_cap: spec.sliding_blocks_cap(),
            table: Vec::new(),
            free_list: Vec::new(),
            sessions: BTreeMap::new(),
            live_blocks: 0,
            sliding_blocks: 0,
        })
    }

    /// The pool's spec.
    pub fn spec(&self) -> &PoolSpec {
        &self.spec
    }

    // ---- accounting ---------------------------------------------------------------------

    /// The byte budget.
    pub fn total_bytes(&self) -> u64 {
        self.spec.budget_bytes
    }

    /// Bytes in use: global plus sliding. Shared blocks count once.
    pub fn used_bytes(&self) -> u64 {
        self.used_global_bytes() + self.used_sliding_bytes()
    }

    /// Bytes held by live global blocks.
    pub fn used_global_bytes(&self) -> u64 {
        u64::from(self.live_blocks) * self.global_block_bytes
    }

    /// Bytes held by sessions' sliding blocks.
    pub fn used_sliding_bytes(&self) -> u64 {
        self.sliding_blocks * self.sliding_block_bytes
    }

    /// Bytes still free: `total_bytes() - used_bytes()`.
    pub fn available_bytes(&self) -> u64 {
        self.total_bytes().saturating_sub(self.used_bytes())
    }

    /// Total blocks, in global-block units: `budget / global_block_bytes`.
    pub fn total_blocks(&self) -> u32 {
        self.spec.total_blocks()
    }

    /// Global blocks the free bytes still hold: `available_bytes() / global_block_bytes`.
    pub fn available_blocks(&self) -> u32 {
        u32::try_from(self.available_bytes() / self.global_block_bytes).unwrap_or(u32::MAX)
    }

    /// Blocks in use, in global-block units: `total_blocks() - available_blocks()`. Equals
    /// [`used_global_blocks`](Self::used_global_blocks) when the model has no sliding layers.
    pub fn used_blocks(&self) -> u32 {
        self.total_blocks().saturating_sub(self.available_blocks())
    }

    /// Live global blocks (each shared block once).
    pub fn used_global_blocks(&self) -> u32 {
        self.live_blocks
    }

    /// Sliding blocks held, summed over sessions.
    pub fn used_sliding_blocks(&self) -> u64 {
        self.sliding_blocks
    }

    /// How many sessions of `context_tokens` tokens each (at least 1 token) fit in the whole
    /// budget, unshared, counting their global and sliding blocks.
    pub fn max_sessions(&self, context_tokens: u32) -> u64 {
        let per_session = self.spec.session_bytes(context_tokens.max(1));
        self.total_bytes() / per_session
    }

    /// Whether [`grow_to`](Self::grow_to)`(session, n_tokens)` would succeed now. An unknown
    /// session counts as a new, empty one.
    pub fn can_admit(&self, session: SessionId, n_tokens: u32) -> bool {
        self.bytes_to_grow(session, n_tokens) <= self.available_bytes()
    }

    /// Bytes that [`grow_to`](Self::grow_to)`(session, n_tokens)` would take (new blocks,
    /// copy-on-write copies and sliding blocks); 0 if the session already holds enough.
    pub fn bytes_to_grow(&self, session: SessionId, n_tokens: u32) -> u64 {
        self.plan_grow(session, n_tokens).bytes
    }

    // ---- sessions and blocks ------------------------------------------------------------

    /// Number of sessions in the pool (including sessions that hold no block).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The sessions, in id order.
    pub fn sessions(&self) -> impl Iterator<Item = (SessionId, &SessionBlocks)> + '_ {
        self.sessions.iter().map(|(id, s)| (*id, s))
    }

    /// A session's block table, if the session exists.
    pub fn session(&self, session: SessionId) -> Option<&SessionBlocks> {
        self.sessions.get(&session)
    }

    /// Whether the session exists.
    pub fn contains_session(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    /// A session's global blocks in token order (empty for an unknown session).
    pub fn blocks_of(&self, session: SessionId) -> &[BlockId] {
        self.sessions
            .get(&session)
            .map_or(&[][..], |s| s.blocks.as_slice())
    }

    /// A block's record, if the id is in the block table.
    pub fn block(&self, block: BlockId) -> Option<&Block> {
        self.table.get(block.index())
    }

    /// Creates an empty session. Sessions are also created by `allocate`, `grow_to` and `share`.
    pub fn create_session(&mut self, session: SessionId) -> Result<(), PoolError> {
        if self.sessions.contains_key(&session) {
            return Err(PoolError::SessionExists { session });
        }
        self.sessions.insert(session, SessionBlocks::default());
        Ok(())
    }

    // ---- operations ---------------------------------------------------------------------

    /// Appends `n_blocks` fresh (empty) blocks to `session`, creating it if needed, and returns
    /// their ids. Fails with [`PoolError::OutOfMemory`] if the blocks (and the session's extra
    /// sliding blocks) do not fit.
    pub fn allocate(
        &mut self,
        session: SessionId,
        n_blocks: u32,
    ) -> Result<Vec<BlockId>, PoolError> {
        let len = self.sessions.get(&session).map_or(0, SessionBlocks::len);
        let n = n_blocks as usize;
        let sliding_add = self.sliding_for(len.saturating_add(n)) - self.sliding_for(len);
        let bytes = self.cost(n, sliding_add);
        self.check_fit(session, n, bytes)?;
        let ids: Vec<BlockId> = (0..n).map(|_| self.take_block(session, 0)).collect();
        let entry = self.sessions.entry(session).or_default();
        entry.blocks.extend_from_slice(&ids);
        self.sliding_blocks += sliding_add;
        Ok(ids)
    }

    /// Grows `session` (creating it if needed) so that it holds `n_tokens` tokens, allocating
    /// exactly the blocks needed (`ceil(n_tokens / block_tokens)` in all), and returns the newly
    /// allocated ids in token order. A write into a block shared with another session first
    /// replaces it with a private copy (copy-on-write); the copy is among the returned ids.
    /// Never shrinks: `n_tokens` at or below the session's tokens is a no-op.
    pub fn grow_to(
        &mut self,
        session: SessionId,
        n_tokens: u32,
    ) -> Result<Vec<BlockId>, PoolError> {
        let plan = self.plan_grow(session, n_tokens);
        self.check_fit(session, plan.cow.len() + plan.append, plan.bytes)?;
        let bt = self.spec.block_tokens;
        let mut entry = self.sessions.remove(&session).unwrap_or_default();
        if n_tokens <= entry.tokens {
            self.sessions.insert(session, entry);
            return Ok(Vec::new());
        }
        let mut new_ids = Vec::with_capacity(plan.cow.len() + plan.append);
        for &i in &plan.cow {
            let old = entry.blocks[i];
            let copied = entry.tokens.saturating_sub(i as u32 * bt).min(bt);
            let new = self.take_block(session, copied);
            // refs > 1 (that is why it is copied): the block stays live for the others.
            self.table[old.index()].refs -= 1;
            entry.blocks[i] = new;
            new_ids.push(new);
        }
        for _ in 0..plan.append {
            let new = self.take_block(session, 0);
            entry.blocks.push(new);
            new_ids.push(new);
        }
        let first = (entry.tokens / bt) as usize;
        let last = ((n_tokens - 1) / bt) as usize;
        for i in first..=last {
            let held = (n_tokens - i as u32 * bt).min(bt);
            let block = &mut self.table[entry.blocks[i].index()];
            block.tokens_held = block.tokens_held.max(held);
        }
        entry.tokens = n_tokens;
        self.sliding_blocks += plan.sliding_add;
        self.sessions.insert(session, entry);
        Ok(new_ids)
    }

    /// Drops `session`'s reference to `block`. The block returns to the free list when no
    /// session references it any more. The session's token count is clamped to what its
    /// remaining blocks hold.
    ///
    /// Errors, with the pool unchanged: [`PoolError::UnknownBlock`] for an id never handed out,
    /// [`PoolError::UnknownSession`], [`PoolError::DoubleFree`] for a free block and
    /// [`PoolError::NotOwner`] for a live block the session does not hold.
    pub fn free(&mut self, session: SessionId, block: BlockId) -> Result<(), PoolError> {
        let Some(record) = self.table.get(block.index()) else {
            return Err(PoolError::UnknownBlock {
                block,
                table_len: self.table.len() as u32,
            });
        };
        let Some(entry) = self.sessions.get_mut(&session) else {
            return Err(PoolError::UnknownSession { session });
        };
        if record.is_free() {
            return Err(PoolError::DoubleFree { session, block });
        }
        let Some(pos) = entry.blocks.iter().position(|&b| b == block) else {
            return Err(PoolError::NotOwner {
                session,
                block,
                owner: record.owner,
                refs: record.refs,
            });
        };
        entry.blocks.remove(pos);
        let len = entry.blocks.len();
        entry.tokens = clamp_tokens(entry.tokens, len, self.spec.block_tokens);
        if len < self.sliding_cap as usize {
            self.sliding_blocks -= 1;
        }
        self.release_ref(block);
        Ok(())
    }

    /// Removes `session` and drops its references to all its blocks; returns how many blocks it
    /// held. Fails with [`PoolError::UnknownSession`] if it does not exist.
    pub fn release_session(&mut self, session: SessionId) -> Result<u32, PoolError> {
        let Some(entry) = self.sessions.remove(&session) else {
            return Err(PoolError::UnknownSession { session });
        };
        self.sliding_blocks -= self.sliding_for(entry.blocks.len());
        // Reverse order: the LIFO free list then hands the blocks out again in the same order.
        for &block in entry.blocks.iter().rev() {
            self.release_ref(block);
        }
        Ok(entry.blocks.len() as u32)
    }

    /// Makes `to` reference the first `n_blocks` blocks of `from` (a shared prompt prefix),
    /// creating `to` if needed. Shared blocks count once in the used bytes; `to` gets its own
    /// sliding blocks (sliding layers are rewritten as the window moves, so they are never
    /// shared), which must fit. `to`'s tokens become `min(from's tokens, n_blocks *
    /// block_tokens)`. The first write by either session into a shared block copies it.
    ///
    /// Errors: [`PoolError::ShareWithSelf`], [`PoolError::UnknownSession`] for `from`,
    /// [`PoolError::ShareTooMany`], [`PoolError::SessionNotEmpty`] if `to` holds blocks, and
    /// [`PoolError::OutOfMemory`] for `to`'s sliding blocks.
    pub fn share(
        &mut self,
        from: SessionId,
        to: SessionId,
        n_blocks: u32,
    ) -> Result<(), PoolError> {
        if from == to {
            return Err(PoolError::ShareWithSelf { session: from });
        }
        let Some(source) = self.sessions.get(&from) else {
            return Err(PoolError::UnknownSession { session: from });
        };
        let n = n_blocks as usize;
        if n > source.blocks.len() {
            return Err(PoolError::ShareTooMany {
                from,
                requested: n_blocks,
                held: source.blocks.len() as u32,
            });
        }
        if let Some(target) = self.sessions.get(&to) {
            if !target.is_empty() {
                return Err(PoolError::SessionNotEmpty {
                    session: to,
                    blocks: target.blocks.len() as u32,
                });
            }
        }
        let sliding_add = self.sliding_for(n);
        self.check_fit(to, 0, self.cost(0, sliding_add))?;
        let source = &self.sessions[&from];
        let blocks = source.blocks[..n].to_vec();
        let tokens = clamp_tokens(source.tokens, n, self.spec.block_tokens);
        for &block in &blocks {
            self.table[block.index()].refs += 1;
        }
        self.sessions.insert(to, SessionBlocks { blocks, tokens });
        self.sliding_blocks += sliding_add;
        Ok(())
    }

    /// Switches to `new_spec` (another model or budget). Fails, leaving the pool unchanged, if
    /// the spec is invalid, if it changes the block size while blocks are live
    /// ([`PoolError::BlockSizeChange`]), or if the live sessions would not fit in its budget
    /// ([`PoolError::WouldNotFit`]). Live block ids stay valid.
    pub fn reconfigure(&mut self, new_spec: PoolSpec) -> Result<(), PoolError> {
        new_spec.validate()?;
        if new_spec.block_tokens != self.spec.block_tokens && self.live_blocks > 0 {
            return Err(PoolError::BlockSizeChange {
                old_block_tokens: self.spec.block_tokens,
                new_block_tokens: new_spec.block_tokens,
                live_blocks: self.live_blocks,
            });
        }
        let cap = new_spec.sliding_blocks_cap() as usize;
        let sliding: u64 = self
            .sessions
            .values()
            .map(|s| s.blocks.len().min(cap) as u64)
            .sum();
        let needed = u64::from(self.live_blocks)
            .saturating_mul(new_spec.global_block_bytes())
            .saturating_add(sliding.saturating_mul(new_spec.sliding_block_bytes()));
        if needed > new_spec.budget_bytes {
            return Err(PoolError::WouldNotFit {
                needed_bytes: needed,
                budget_bytes: new_spec.budget_bytes,
                sessions: self.sessions.len() as u32,
            });
        }
        self.spec = new_spec;
        self.global_block_bytes = new_spec.global_block_bytes();
        self.sliding_block_bytes = new_spec.sliding_block_bytes();
        self.sliding_cap = new_spec.sliding_blocks_cap();
        self.sliding_blocks = sliding;
        Ok(())
    }

    // ---- checking -----------------------------------------------------------------------

    /// The observable state, for comparisons in tests.
    pub fn snapshot(&self) -> PoolSnapshot {
        PoolSnapshot {
            used_bytes: self.used_bytes(),
            used_global_bytes: self.used_global_bytes(),
            used_sliding_bytes: self.used_sliding_bytes(),
            available_bytes: self.available_bytes(),
            used_blocks: self.used_blocks(),
            available_blocks: self.available_blocks(),
            used_global_blocks: self.used_global_blocks(),
            used_sliding_blocks: self.used_sliding_blocks(),
            sessions: self
                .sessions
                .iter()
                .map(|(id, s)| (*id, s.blocks.clone(), s.tokens))
                .collect(),
            live_blocks: self
                .table
                .iter()
                .filter(|b| !b.is_free())
                .cloned()
                .collect(),
        }
    }

    /// Recomputes everything the pool keeps incrementally and checks it: reference counts match
    /// the sessions' block tables, no session holds a block twice, the free list holds exactly
    /// the free blocks once each, free blocks carry no owner or tokens, counters match, tokens
    /// fit, `used + available = total` for bytes and blocks, and used bytes fit the budget.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let bt = self.spec.block_tokens;
        let mut refs = vec![0u32; self.table.len()];
        let mut sliding = 0u64;
        for (&session, entry) in &self.sessions {
            let mut seen = entry.blocks.clone();
            seen.sort_unstable();
            if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
                return Err(InvariantViolation::DuplicateInSession {
                    session,
                    block: w[0],
                });
            }
            for &block in &entry.blocks {
                let Some(count) = refs.get_mut(block.index()) else {
                    return Err(InvariantViolation::BlockOutOfRange { session, block });
                };
                *count += 1;
            }
            let capacity = entry.blocks.len() as u64 * u64::from(bt);
            if u64::from(entry.tokens) > capacity {
                return Err(InvariantViolation::SessionTokens {
                    session,
                    tokens: entry.tokens,
                    capacity,
                });
            }
            sliding += self.sliding_for(entry.blocks.len());
        }
        let mut on_free_list = vec![false; self.table.len()];
        for &block in &self.free_list {
            match on_free_list.get_mut(block.index()) {
                Some(seen) if !*seen && self.table[block.index()].is_free() => *seen = true,
                _ => return Err(InvariantViolation::FreeList { block }),
            }
        }
        let mut live = 0u64;
        for (i, block) in self.table.iter().enumerate() {
            if block.refs != refs[i] {
                return Err(InvariantViolation::RefCount {
                    block: block.id,
                    stored: block.refs,
                    actual: refs[i],
                });
            }
            let consistent = block.id.index() == i
                && block.tokens_held <= bt
                && if block.is_free() {
                    block.owner.is_none() && block.tokens_held == 0
                } else {
                    block.owner.is_some()
                };
            if !consistent {
                return Err(InvariantViolation::BlockState { block: block.id });
            }
            if block.is_free() && !on_free_list[i] {
                return Err(InvariantViolation::LostBlock { block: block.id });
            }
            live += u64::from(!block.is_free());
        }
        check_counter("live_blocks", u64::from(self.live_blocks), live)?;
        check_counter("sliding_blocks", self.sliding_blocks, sliding)?;
        let used_bytes = self.used_bytes();
        if used_bytes > self.total_bytes() {
            return Err(InvariantViolation::OverBudget {
                used_bytes,
                budget_bytes: self.total_bytes(),
            });
        }
        check_sum(
            "bytes",
            used_bytes,
            self.available_bytes(),
            self.total_bytes(),
        )?;
        check_sum(
            "blocks",
            u64::from(self.used_blocks()),
            u64::from(self.available_blocks()),
            u64::from(self.total_blocks()),
        )
    }

    // ---- internals ----------------------------------------------------------------------

    /// Sliding blocks of a session holding `len` global blocks.
    fn sliding_for(&self, len: usize) -> u64 {
        len.min(self.sliding_cap as usize) as u64
    }

    /// Bytes of `global` new global blocks plus `sliding` new sliding blocks (saturating).
    fn cost(&self, global: usize, sliding: u64) -> u64 {
        (global as u64)
            .saturating_mul(self.global_block_bytes)
            .saturating_add(sliding.saturating_mul(self.sliding_block_bytes))
    }

    fn check_fit(&self, session: SessionId, blocks: usize, bytes: u64) -> Result<(), PoolError> {
        let available_bytes = self.available_bytes();
        if bytes > available_bytes {
            return Err(PoolError::OutOfMemory {
                session,
                requested_blocks: u32::try_from(blocks).unwrap_or(u32::MAX),
                requested_bytes: bytes,
                available_blocks: self.available_blocks(),
                available_bytes,
            });
        }
        Ok(())
    }

    fn plan_grow(&self, session: SessionId, n_tokens: u32) -> GrowPlan {
        let mut plan = GrowPlan {
            cow: Vec::new(),
            append: 0,
            sliding_add: 0,
            bytes: 0,
        };
        let (blocks, tokens) = match self.sessions.get(&session) {
            Some(s) => (s.blocks.as_slice(), s.tokens),
            None => (&[][..], 0),
        };
        if n_tokens <= tokens {
            return plan;
        }
        let bt = self.spec.block_tokens;
        let needed = self.spec.blocks_for_tokens(n_tokens) as usize;
        let first = (tokens / bt) as usize;
        let last = ((n_tokens - 1) / bt) as usize;
        let end = (last + 1).min(blocks.len());
        plan.cow = (first..end)
            .filter(|&i| self.table[blocks[i].index()].is_shared())
            .collect();
        plan.append = needed.saturating_sub(blocks.len());
        plan.sliding_add =
            self.sliding_for(needed.max(blocks.len())) - self.sliding_for(blocks.len());
        plan.bytes = self.cost(plan.cow.len() + plan.append, plan.sliding_add);
        plan
    }

    /// Takes a block off the free list (or grows the table) for `owner`, with one reference.
    fn take_block(&mut self, owner: SessionId, tokens_held: u32) -> BlockId {
        let id = match self.free_list.pop() {
            Some(id) => id,
            None => {
                // The table only grows when every entry is live, so its length stays at most
                // total_blocks <= u32::MAX.
                let id = BlockId(self.table.len() as u32);
                self.table.push(Block::free(id));
                id
            }
        };
        let block = &mut self.table[id.index()];
        block.refs = 1;
        block.owner = Some(owner);
        block.tokens_held = tokens_held;
        self.live_blocks += 1;
        id
    }

    /// Drops one reference; a block with no reference left goes back on the free list.
    fn release_ref(&mut self, id: BlockId) {
        let block = &mut self.table[id.index()];
        block.refs -= 1;
        if block.refs == 0 {
            block.owner = None;
            block.tokens_held = 0;
            self.free_list.push(id);
            self.live_blocks -= 1;
        }
    }
}

/// Clamps a token count to what `blocks` blocks of `block_tokens` hold.
fn clamp_tokens(tokens: u32, blocks: usize, block_tokens: u32) -> u32 {
    let capacity = (blocks as u64).saturating_mul(u64::from(block_tokens));
    u32::try_from(capacity).map_or(tokens, |cap| tokens.min(cap))
}

fn check_counter(name: &'static str, stored: u64, actual: u64) -> Result<(), InvariantViolation> {
    if stored == actual {
        Ok(())
    } else {
        Err(InvariantViolation::Counter {
            name,
            stored,
            actual,
        })
    }
}

fn check_sum(
    unit: &'static str,
    used: u64,
    available: u64,
    total: u64,
) -> Result<(), InvariantViolation> {
    if used.checked_add(available) == Some(total) {
        Ok(())
    } else {
        Err(InvariantViolation::Accounting {
            unit,
            used,
            available,
            total,
        })
    }
}

impl fmt::Debug for BlockPool {
    /// Prints the spec, the byte and block accounting, the free list, every session's blocks
    /// and every live block (with references, owner and tokens), so a failed assertion shows
    /// the whole state of a small pool.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Sessions<'a>(&'a BTreeMap<SessionId, SessionBlocks>);
        impl fmt::Debug for Sessions<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(id, s)| {
                        (
                            id.0,
                            format!(
                                "tokens {} blocks {:?}",
                                s.tokens,
                                s.blocks.iter().map(|b| b.0).collect::<Vec<_>>()
                            ),
                        )
                    }))
                    .finish()
            }
        }
        struct Live<'a>(&'a [Block]);
        impl fmt::Debug for Live<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().filter(|b| !b.is_free()).map(|b| {
                        (
                            b.id.0,
                            format!(
                                "refs {} owner {:?} tokens {}",
                                b.refs,
                                b.owner.map(|o| o.0),
                                b.tokens_held
                            ),
                        )
                    }))
                    .finish()
            }
        }
        f.debug_struct("BlockPool")
            .field("spec", &self.spec)
            .field(
                "bytes",
                &format_args!(
                    "used {} (global {} + sliding {}) + available {} of total {}",
                    self.used_bytes(),
                    self.used_global_bytes(),
                    self.used_sliding_bytes(),
                    self.available_bytes(),
                    self.total_bytes()
                ),
            )
            .field(
                "blocks",
                &format_args!(
                    "used {} (live global {}, sliding {}, cap {}/session) + available {} of total {}",
                    self.used_blocks(),
                    self.live_blocks,
                    self.sliding_blocks,
                    self.sliding_cap,
                    self.available_blocks(),
                    self.total_blocks()
                ),
            )
            .field("table_len", &self.table.len())
            .field(
                "free_list",
                &self.free_list.iter().map(|b| b.0).collect::<Vec<_>>(),
            )
            .field("sessions", &Sessions(&self.sessions))
            .field("live_blocks", &Live(&self.table))
            .finish()
    }
}

/// Corrupts the private state on purpose and checks that
/// [`BlockPool::check_invariants`] reports each kind of damage (the integration tests can only
/// reach sound states through the public API).
#[cfg(test)]
mod tests {
    use super::*;

    /// Block size 4, 4 bytes per block, 10 blocks; session 1 holds blocks 0 and 1 (8 tokens),
    /// block 2 is free.
    fn base() -> BlockPool {
        let mut pool =
            BlockPool::new(PoolSpec::new(1, 40).with_block_tokens(4)).expect("valid spec");
        pool.grow_to(SessionId(1), 8).expect("fits");
        pool.allocate(SessionId(2), 1).expect("fits");
        pool.release_session(SessionId(2)).expect("exists");
        pool.check_invariants().expect("sound before corruption");
        pool
    }

    fn corrupt(f: impl FnOnce(&mut BlockPool)) -> InvariantViolation {
        let mut pool = base();
        f(&mut pool);
        pool.check_invariants()
            .expect_err("corruption must be detected")
    }

    fn session(pool: &mut BlockPool) -> &mut SessionBlocks {
        pool.sessions.get_mut(&SessionId(1)).expect("session 1")
    }

    #[test]
    fn check_invariants_detects_corruption() {
        let (s1, b0, b2) = (SessionId(1), BlockId(0), BlockId(2));
        assert_eq!(
            corrupt(|p| session(p).blocks.push(b0)),
            InvariantViolation::DuplicateInSession {
                session: s1,
                block: b0
            }
        );
        assert_eq!(
            corrupt(|p| session(p).blocks.push(BlockId(99))),
            InvariantViolation::BlockOutOfRange {
                session: s1,
                block: BlockId(99)
            }
        );
        assert_eq!(
            corrupt(|p| session(p).tokens = 9),
            InvariantViolation::SessionTokens {
                session: s1,
                tokens: 9,
                capacity: 8
            }
        );
        for bad in [b2, b0, BlockId(50)] {
            assert_eq!(
                corrupt(|p| p.free_list.push(bad)),
                InvariantViolation::FreeList { block: bad }
            );
        }
        assert_eq!(
            corrupt(|p| p.table[0].refs = 2),
            InvariantViolation::RefCount {
                block: b0,
                stored: 2,
                actual: 1
            }
        );
        assert_eq!(
            corrupt(|p| p.table[2].owner = Some(s1)),
            InvariantViolation::BlockState { block: b2 }
        );
        assert_eq!(
            corrupt(|p| p.table[0].owner = None),
            InvariantViolation::BlockState { block: b0 }
        );
        assert_eq!(
            corrupt(|p| p.table[0].tokens_held = 5),
            InvariantViolation::BlockState { block: b0 }
        );
        assert_eq!(
            corrupt(|p| p.free_list.clear()),
            InvariantViolation::LostBlock { block: b2 }
        );
        assert_eq!(
            corrupt(|p| p.live_blocks = 5),
            InvariantViolation::Counter {
                name: "live_blocks",
                stored: 5,
                actual: 2
            }
        );
        assert_eq!(
            corrupt(|p| p.sliding_blocks = 1),
            InvariantViolation::Counter {
                name: "sliding_blocks",
                stored: 1,
                actual: 0
            }
        );
        assert_eq!(
            corrupt(|p| p.spec.budget_bytes = 4),
            InvariantViolation::OverBudget {
                used_bytes: 8,
                budget_bytes: 4
            }
        );
        assert_eq!(
            check_sum("bytes", 1, 1, 3),
            Err(InvariantViolation::Accounting {
                unit: "bytes",
                used: 1,
                available: 1,
                total: 3
            })
        );
    }
}
