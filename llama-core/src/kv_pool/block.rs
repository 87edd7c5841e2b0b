//! Blocks: the [`BlockId`] newtype and the [`Block`] record kept in the pool's flat block table.

use std::fmt;

use super::session::SessionId;

/// Index of a global block in the pool's block table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId(pub u32);

impl BlockId {
    /// The index into the block table.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block#{}", self.0)
    }
}

/// One global block of the pool: a slot of `block_tokens` tokens across the full-attention layers.
///
/// A block is free when `refs == 0` (then `owner` is `None` and `tokens_held` is 0). A block
/// referenced by several sessions (a shared prefix) has `refs > 1` and is counted once in the
/// pool's used bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// This block's id (its index in the block table).
    pub id: BlockId,
    /// Tokens written into this block so far (at most `block_tokens`).
    pub tokens_held: u32,
    /// The session that allocated this block (or made it as a copy-on-write copy); it stays the
    /// owner while the block lives, even after that session drops its reference while other
    /// sessions still share the block. `None` when the block is free.
    pub owner: Option<SessionId>,
    /// How many sessions reference this block; 0 means free.
    pub refs: u32,
}

impl Block {
    /// A free block with the given id.
    pub fn free(id: BlockId) -> Self {
        Self {
            id,
            tokens_held: 0,
            owner: None,
            refs: 0,
        }
    }

    /// Whether no session references this block.
    pub fn is_free(&self) -> bool {
        self.refs == 0
    }

    /// Whether more than one session references this block.
    pub fn is_shared(&self) -> bool {
        self.refs > 1
    }
}
