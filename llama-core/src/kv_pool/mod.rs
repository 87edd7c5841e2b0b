//! KV block pool: a small allocator that hands out KV-cache blocks of a fixed number of tokens to
//! sessions as they grow, in the manner of vLLM's block manager.
//!
//! * [`PoolSpec`] describes the model's KV shape (bytes per token of the global and
//!   sliding-window layers, the sliding window) and the byte budget; the block size defaults to
//!   256 tokens (see `docs/adr/0001-kv-block-size.md`).
//! * [`BlockPool`] allocates blocks ([`BlockPool::grow_to`], [`BlockPool::allocate`]), frees them
//!   ([`BlockPool::free`], [`BlockPool::release_session`]), shares prompt prefixes with reference
//!   counts and copy-on-write ([`BlockPool::share`]), answers admission questions
//!   ([`BlockPool::can_admit`], [`BlockPool::max_sessions`]) and switches specs
//!   ([`BlockPool::reconfigure`]). It never overcommits, and a rejected operation leaves it
//!   unchanged; [`BlockPool::check_invariants`] verifies its bookkeeping.
//! * [`SharedBlockPool`] wraps it for threads; [`SessionLease`] releases a session on drop.
//!
//! The module uses only std and refers to no other module of the crate, so it can be built and
//! tested on its own.

#![forbid(unsafe_code)]

mod block;
mod error;
mod pool;
mod session;
mod shared;
mod spec;

pub use self::block::{Block, BlockId};
pub use self::error::{InvariantViolation, PoolError};
pub use self::pool::{BlockPool, PoolSnapshot};
pub use self::session::{SessionBlocks, SessionId};
pub use self::shared::{SessionLease, SharedBlockPool};
pub use self::spec::{PoolSpec, DEFAULT_BLOCK_TOKENS};
