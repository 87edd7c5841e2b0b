//! Sessions: the [`SessionId`] newtype and [`SessionBlocks`], a session's block table.

use std::fmt;

use super::block::BlockId;

/// Identifies a session (a sequence whose KV the pool holds); chosen by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session#{}", self.0)
    }
}

/// A session's block table: its global blocks in token order and the tokens written so far.
///
/// Block `i` holds tokens `i * block_tokens .. (i + 1) * block_tokens`. The session also holds
/// `min(blocks.len(), sliding_blocks_cap)` private sliding blocks, which are only counted (they
/// have no ids: nothing refers to them individually).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionBlocks {
    pub(super) blocks: Vec<BlockId>,
    pub(super) tokens: u32,
}

impl SessionBlocks {
    /// The session's global blocks, in token order.
    pub fn blocks(&self) -> &[BlockId] {
        &self.blocks
    }

    /// Tokens the session has written (grown to), at most `len() * block_tokens`.
    pub fn tokens(&self) -> u32 {
        self.tokens
    }

    /// Number of global blocks the session holds.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether the session holds no block.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Whether the session holds `block`.
    pub fn contains(&self, block: BlockId) -> bool {
        self.blocks.contains(&block)
    }
}
