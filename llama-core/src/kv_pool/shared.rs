//! Thread-safe access: [`SharedBlockPool`] (an `Arc<Mutex<BlockPool>>` with the same operations)
//! and [`SessionLease`], which releases its session's blocks when dropped.
//!
//! A poisoned mutex is recovered rather than propagated: every [`BlockPool`] method checks before
//! it changes anything, so a panic elsewhere while the lock was held cannot have left the pool
//! half-updated ([`SharedBlockPool::check_invariants`] verifies it).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::block::BlockId;
use super::error::{InvariantViolation, PoolError};
use super::pool::{BlockPool, PoolSnapshot};
use super::session::SessionId;
use super::spec::PoolSpec;

/// A [`BlockPool`] shared between threads; clones share the same pool.
#[derive(Clone, Debug)]
pub struct SharedBlockPool {
    inner: Arc<Mutex<BlockPool>>,
}

impl SharedBlockPool {
    /// Creates an empty shared pool for `spec`.
    pub fn new(spec: PoolSpec) -> Result<Self, PoolError> {
        BlockPool::new(spec).map(Self::from_pool)
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: BlockPool) -> Self {
        Self {
            inner: Arc::new(Mutex::new(pool)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BlockPool> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` with the pool locked, for several operations that must happen atomically (e.g.
    /// check [`BlockPool::can_admit`] and then grow).
    pub fn with<R>(&self, f: impl FnOnce(&mut BlockPool) -> R) -> R {
        f(&mut self.lock())
    }

    /// Creates `session` and returns a lease that releases it (and its blocks) on drop. Fails with
    /// [`PoolError::SessionExists`] if the session already exists.
    pub fn lease(&self, session: SessionId) -> Result<SessionLease, PoolError> {
        self.lock().create_session(session)?;
        Ok(SessionLease {
            pool: self.clone(),
            session,
            active: true,
        })
    }

    /// See [`BlockPool::spec`].
    pub fn spec(&self) -> PoolSpec {
        *self.lock().spec()
    }

    /// See [`BlockPool::create_session`].
    pub fn create_session(&self, session: SessionId) -> Result<(), PoolError> {
        self.lock().create_session(session)
    }

    /// See [`BlockPool::allocate`].
    pub fn allocate(&self, session: SessionId, n_blocks: u32) -> Result<Vec<BlockId>, PoolError> {
        self.lock().allocate(session, n_blocks)
    }

    /// See [`BlockPool::grow_to`].
    pub fn grow_to(&self, session: SessionId, n_tokens: u32) -> Result<Vec<BlockId>, PoolError> {
        self.lock().grow_to(session, n_tokens)
    }

    /// See [`BlockPool::free`].
    pub fn free(&self, session: SessionId, block: BlockId) -> Result<(), PoolError> {
        self.lock().free(session, block)
    }

    /// See [`BlockPool::release_session`].
    pub fn release_session(&self, session: SessionId) -> Result<u32, PoolError> {
        self.lock().release_session(session)
    }

    /// See [`BlockPool::share`].
    pub fn share(&self, from: SessionId, to: SessionId, n_blocks: u32) -> Result<(), PoolError> {
        self.lock().share(from, to, n_blocks)
    }

    /// See [`BlockPool::reconfigure`].
    pub fn reconfigure(&self, new_spec: PoolSpec) -> Result<(), PoolError> {
        self.lock().reconfigure(new_spec)
    }

    /// See [`BlockPool::blocks_of`] (copied out of the lock).
    pub fn blocks_of(&self, session: SessionId) -> Vec<BlockId> {
        self.lock().blocks_of(session).to_vec()
    }

    /// See [`BlockPool::session_count`].
    pub fn session_count(&self) -> usize {
        self.lock().session_count()
    }

    /// See [`BlockPool::used_bytes`].
    pub fn used_bytes(&self) -> u64 {
        self.lock().used_bytes()
    }

    /// See [`BlockPool::available_bytes`].
    pub fn available_bytes(&self) -> u64 {
        self.lock().available_bytes()
    }

    /// See [`BlockPool::total_bytes`].
    pub fn total_bytes(&self) -> u64 {
        self.lock().total_bytes()
    }

    /// See [`BlockPool::used_blocks`].
    pub fn used_blocks(&self) -> u32 {
        self.lock().used_blocks()
    }

    /// See [`BlockPool::available_blocks`].
    pub fn available_blocks(&self) -> u32 {
        self.lock().available_blocks()
    }

    /// See [`BlockPool::total_blocks`].
    pub fn total_blocks(&self) -> u32 {
        self.lock().total_blocks()
    }

    /// See [`BlockPool::max_sessions`].
    pub fn max_sessions(&self, context_tokens: u32) -> u64 {
        self.lock().max_sessions(context_tokens)
    }

    /// See [`BlockPool::can_admit`]. The answer can be stale by the time the caller acts on it;
    /// use [`with`](Self::with) to check and grow atomically.
    pub fn can_admit(&self, session: SessionId, n_tokens: u32) -> bool {
        self.lock().can_admit(session, n_tokens)
    }

    /// See [`BlockPool::check_invariants`].
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        self.lock().check_invariants()
    }

    /// See [`BlockPool::snapshot`].
    pub fn snapshot(&self) -> PoolSnapshot {
        self.lock().snapshot()
    }
}

/// Owns a session of a [`SharedBlockPool`]: dropping it releases the session and all its blocks.
#[derive(Debug)]
pub struct SessionLease {
    pool: SharedBlockPool,
    session: SessionId,
    /// False once [`release`](Self::release) ran, so that drop does not release a session that
    /// another owner may have created since under the same id.
    active: bool,
}

impl SessionLease {
    /// The leased session.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The pool the session lives in.
    pub fn pool(&self) -> &SharedBlockPool {
        &self.pool
    }

    /// Grows the session to `n_tokens` tokens; see [`BlockPool::grow_to`].
    pub fn grow_to(&self, n_tokens: u32) -> Result<Vec<BlockId>, PoolError> {
        self.pool.grow_to(self.session, n_tokens)
    }

    /// Appends `n_blocks` blocks; see [`BlockPool::allocate`].
    pub fn allocate(&self, n_blocks: u32) -> Result<Vec<BlockId>, PoolError> {
        self.pool.allocate(self.session, n_blocks)
    }

    /// Frees one of the session's blocks; see [`BlockPool::free`].
    pub fn free(&self, block: BlockId) -> Result<(), PoolError> {
        self.pool.free(self.session, block)
    }

    /// The session's blocks.
    pub fn blocks(&self) -> Vec<BlockId> {
        self.pool.blocks_of(self.session)
    }

    /// The session's tokens (0 if it was released behind the lease's back).
    pub fn tokens(&self) -> u32 {
        self.pool
            .with(|p| p.session(self.session).map_or(0, |s| s.tokens()))
    }

    /// Atomically creates session `to` sharing this session's first `n_blocks` blocks and returns
    /// its lease. Fails with [`PoolError::SessionExists`] if `to` exists, or as
    /// [`BlockPool::share`] does.
    pub fn fork(&self, to: SessionId, n_blocks: u32) -> Result<SessionLease, PoolError> {
        self.pool.with(|p| {
            if p.contains_session(to) {
                return Err(PoolError::SessionExists { session: to });
            }
            p.share(self.session, to, n_blocks)
        })?;
        Ok(SessionLease {
            pool: self.pool.clone(),
            session: to,
            active: true,
        })
    }

    /// Releases the session now and returns how many blocks it held (0 if it was already
    /// released behind the lease's back).
    pub fn release(mut self) -> u32 {
        self.active = false;
        self.pool.release_session(self.session).unwrap_or(0)
    }
}

impl Drop for SessionLease {
    fn drop(&mut self) {
        if self.active {
            // UnknownSession only if someone released it through the pool directly.
            let _ = self.pool.release_session(self.session);
        }
    }
}
