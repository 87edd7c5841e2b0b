//! [`PoolSpec`]: the shape of a KV block pool (block size, bytes per token of the global and
//! sliding-window layers, sliding window, byte budget) and the arithmetic derived from it.
//!
//! Accounting model (see `docs/adr/0001-kv-block-size.md`):
//!
//! * A **global block** holds `block_tokens` tokens of every full-attention layer and costs
//!   `block_tokens * global_bytes_per_token` bytes. A session holds one global block per
//!   `block_tokens` tokens of its context, without bound.
//! * A **sliding block** holds `block_tokens` tokens of every sliding-window layer and costs
//!   `block_tokens * sliding_bytes_per_token` bytes. A session needs at most
//!   [`PoolSpec::sliding_blocks_cap`] = `ceil(window / block_tokens) + 1` of them: the blocks
//!   that the window spans, plus one because a window that does not start on a block boundary
//!   straddles one more block (equivalently: the partial block being written while the oldest
//!   one is still needed). A session holding `n` global blocks holds `min(n, cap)` sliding blocks.
//! * The byte budget covers the sum of both.

use super::error::PoolError;

/// Default number of tokens per block: 256, which is also llama.cpp's `n_ctx` padding.
pub const DEFAULT_BLOCK_TOKENS: u32 = 256;

/// The shape of a block pool: block size, per-token KV bytes, sliding window and budget.
///
/// Build one with [`PoolSpec::new`] and the `with_*` methods; [`PoolSpec::validate`] (called by
/// [`BlockPool::new`](super::BlockPool::new)) rejects inconsistent values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolSpec {
    /// Tokens per block (default [`DEFAULT_BLOCK_TOKENS`]). Must be at least 1.
    pub block_tokens: u32,
    /// KV bytes per token summed over the global (full-attention) layers. Must be at least 1.
    pub global_bytes_per_token: u64,
    /// KV bytes per token summed over the sliding-window layers (0 when there are none).
    pub sliding_bytes_per_token: u64,
    /// Sliding window in tokens; 0 means the model has no sliding-window layers.
    pub sliding_window_tokens: u32,
    /// Bytes of memory the pool may use for KV, global and sliding together.
    pub budget_bytes: u64,
}

impl PoolSpec {
    /// A spec with only global layers and the default block size of 256 tokens.
    pub fn new(global_bytes_per_token: u64, budget_bytes: u64) -> Self {
        Self {
            block_tokens: DEFAULT_BLOCK_TOKENS,
            global_bytes_per_token,
            sliding_bytes_per_token: 0,
            sliding_window_tokens: 0,
            budget_bytes,
        }
    }

    /// Returns the spec with another block size in tokens.
    pub fn with_block_tokens(mut self, block_tokens: u32) -> Self {
        self.block_tokens = block_tokens;
        self
    }

    /// Returns the spec with sliding-window layers of `bytes_per_token` bytes per token (summed
    /// over those layers) and a window of `window_tokens` tokens.
    pub fn with_sliding(mut self, bytes_per_token: u64, window_tokens: u32) -> Self {
        self.sliding_bytes_per_token = bytes_per_token;
        self.sliding_window_tokens = window_tokens;
        self
    }

    /// Returns the spec with another byte budget.
    pub fn with_budget(mut self, budget_bytes: u64) -> Self {
        self.budget_bytes = budget_bytes;
        self
    }

    /// Whether the model has sliding-window layers.
    pub fn has_sliding(&self) -> bool {
        self.sliding_window_tokens > 0
    }

    /// Checks the spec: nonzero block size and global bytes per token, sliding bytes and window
    /// both set or both zero, block sizes that fit in `u64`, a budget that holds at least one
    /// session's first block (global plus sliding), and at most `u32::MAX` global blocks.
    pub fn validate(&self) -> Result<(), PoolError> {
        if self.block_tokens == 0 {
            return Err(PoolError::ZeroBlockTokens);
        }
        if self.global_bytes_per_token == 0 {
            return Err(PoolError::ZeroGlobalBytesPerToken);
        }
        if (self.sliding_window_tokens == 0) != (self.sliding_bytes_per_token == 0) {
            return Err(PoolError::InconsistentSliding {
                sliding_bytes_per_token: self.sliding_bytes_per_token,
                sliding_window_tokens: self.sliding_window_tokens,
            });
        }
        let g = u64::from(self.block_tokens).checked_mul(self.global_bytes_per_token);
        let s = u64::from(self.block_tokens).checked_mul(self.sliding_bytes_per_token);
        let first = match (g, s) {
            (Some(g), Some(s)) => g.checked_add(s),
            _ => None,
        };
        let Some(first) = first else {
            return Err(PoolError::BlockBytesOverflow {
                block_tokens: self.block_tokens,
                bytes_per_token: self
                    .global_bytes_per_token
                    .max(self.sliding_bytes_per_token),
            });
        };
        if self.budget_bytes < first {
            return Err(PoolError::BudgetTooSmall {
                budget_bytes: self.budget_bytes,
                min_bytes: first,
            });
        }
        let blocks = self.budget_bytes / self.global_block_bytes();
        if blocks > u64::from(u32::MAX) {
            return Err(PoolError::TooManyBlocks {
                blocks,
                max: u64::from(u32::MAX),
            });
        }
        Ok(())
    }

    /// Bytes of one global block: `block_tokens * global_bytes_per_token` (saturating).
    pub fn global_block_bytes(&self) -> u64 {
        u64::from(self.block_tokens).saturating_mul(self.global_bytes_per_token)
    }

    /// Bytes of one sliding block: `block_tokens * sliding_bytes_per_token` (saturating; 0 when
    /// there are no sliding layers).
    pub fn sliding_block_bytes(&self) -> u64 {
        u64::from(self.block_tokens).saturating_mul(self.sliding_bytes_per_token)
    }

    /// Most sliding blocks one session holds: `ceil(window / block_tokens) + 1`, or 0 without
    /// sliding layers. The `+ 1` covers a window that straddles a block boundary.
    pub fn sliding_blocks_cap(&self) -> u32 {
        if self.sliding_window_tokens == 0 || self.block_tokens == 0 {
            0
        } else {
            self.sliding_window_tokens.div_ceil(self.block_tokens) + 1
        }
    }

    /// Global blocks needed to hold `n_tokens` tokens: `ceil(n_tokens / block_tokens)`.
    pub fn blocks_for_tokens(&self, n_tokens: u32) -> u32 {
        n_tokens.div_ceil(self.block_tokens.max(1))
    }

    /// Sliding blocks held by a session with `global_blocks` global blocks:
    /// `min(global_blocks, sliding_blocks_cap())`.
    pub fn sliding_blocks_for(&self, global_blocks: u32) -> u32 {
        global_blocks.min(self.sliding_blocks_cap())
    }

    /// Bytes a single unshared session holding `n_tokens` tokens takes (global plus sliding).
    pub fn session_bytes(&self, n_tokens: u32) -> u64 {
        let blocks = self.blocks_for_tokens(n_tokens);
        u64::from(blocks)
            .saturating_mul(self.global_block_bytes())
            .saturating_add(
                u64::from(self.sliding_blocks_for(blocks))
                    .saturating_mul(self.sliding_block_bytes()),
            )
    }

    /// Total blocks, in global-block units: `budget_bytes / global_block_bytes()` (0 when the
    /// global block size is 0, which [`validate`](Self::validate) rejects).
    pub fn total_blocks(&self) -> u32 {
        let g = self.global_block_bytes();
        if g == 0 {
            return 0;
        }
        u32::try_from(self.budget_bytes / g).unwrap_or(u32::MAX)
    }
}
