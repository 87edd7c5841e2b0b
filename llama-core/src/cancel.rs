//! A cancellation token: set from any thread (a Ctrl-C handler, a server whose client left),
//! seen by the generation loop between tokens and by llama.cpp's abort callback inside a decode.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Stops generation within one decode step. Cheap to clone; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    flag: Arc<AtomicBool>,
}

impl CancelToken {
    /// A token that has not fired.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Asks every holder to stop.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// Whether [`cancel`](Self::cancel) was called since the last reset.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Re-arms the token for the next generation.
    pub fn reset(&self) {
        self.flag.store(false, Ordering::Relaxed);
    }
}
