//! The engine: many conversations on one model and one KV budget, decoded together.
//!
//! One llama.cpp context with a unified KV cache holds up to `n_parallel` sequences. A
//! scheduler thread owns it and, every step, builds one batch holding the next token of every
//! generating session plus chunks of waiting prompts (continuous batching), decodes it, samples
//! each session's token and streams its text to that session's consumer through a bounded
//! channel. KV memory is accounted by the [`crate::kv_pool`] block pool: a session's tokens are
//! admitted before they are decoded; when the pool is full the least recently used idle session
//! is saved to disk and its blocks freed, and it comes back transparently (same continuation)
//! when a later request continues it. A request whose prompt starts with what a cached session
//! holds reuses that session's KV (only the new tokens are decoded).
//!
//! The KV cache is either one pool of cells for all sequences ([`EngineConfig::kv_unified`])
//! or one stream per sequence (the default, faster when sessions are independent: measured in
//! docs/PERFORMANCE.md). Either way its size is the block pool's budget.
//!
//! Consumers: [`Engine::submit`] returns a [`ResponseStream`]; dropping it (a client that went
//! away) or firing the request's [`CancelToken`] cancels the request within one step and frees
//! its blocks at once. A slow consumer is never waited for: its session just skips steps while
//! its channel is full, so memory stays bounded and the others keep going.

mod scheduler;
mod slot;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cache_spec::{KvCacheType, ModelCacheSpec};
use crate::cancel::CancelToken;
use crate::ffi::{FlashAttention, Model, Token};
use crate::session::{FinishReason, GenerateOptions};

/// How the engine is sized.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Sequences decoded together (llama.cpp's `n_seq_max`; llama-server's `--parallel`).
    pub n_parallel: u32,
    /// Most tokens one conversation may hold (prompt plus answer).
    pub n_ctx_per_seq: u32,
    /// KV-cache bytes for all sessions together; the block pool never hands out more.
    pub kv_budget_bytes: u64,
    /// Largest number of tokens decoded in one step.
    pub n_batch: u32,
    /// Physical batch size.
    pub n_ubatch: u32,
    /// Threads.
    pub threads: i32,
    /// Flash attention.
    pub flash_attention: FlashAttention,
    /// K cache type.
    pub type_k: KvCacheType,
    /// V cache type.
    pub type_v: KvCacheType,
    /// Tokens per KV block.
    pub block_tokens: u32,
    /// Requests that may wait for a free sequence before [`SubmitError::QueueFull`].
    pub queue_capacity: usize,
    /// Events buffered per consumer before its session pauses.
    pub stream_buffer: usize,
    /// Where sessions evicted from the KV cache are saved.
    pub state_dir: PathBuf,
    /// One pool of KV cells shared by all sequences (`true`: a long conversation may use the
    /// whole budget, shared prefixes are stored once) or one fixed stream per sequence
    /// (`false`, the default: attention only scans a sequence's own cells, which is faster with
    /// several sessions; each holds at most the budget divided by `n_parallel`).
    pub kv_unified: bool,
}

impl EngineConfig {
    /// A configuration with llama-server-like defaults for `n_parallel` sequences of
    /// `n_ctx_per_seq` tokens, with KV for all of them at full length.
    pub fn new(
        n_parallel: u32,
        n_ctx_per_seq: u32,
        kv_budget_bytes: u64,
        state_dir: PathBuf,
    ) -> EngineConfig {
        EngineConfig {
            n_parallel,
            n_ctx_per_seq,
            kv_budget_bytes,
            n_batch: 2048,
            n_ubatch: 512,
            threads: 4,
            flash_attention: FlashAttention::Auto,
            type_k: KvCacheType::F16,
            type_v: KvCacheType::F16,
            block_tokens: crate::kv_pool::DEFAULT_BLOCK_TOKENS,
            queue_capacity: 64,
            stream_buffer: 64,
            state_dir,
            kv_unified: false,
        }
    }
}

/// One request: a tokenized prompt (the whole conversation so far) and how to answer it.
#[derive(Debug, Clone)]
pub struct EngineRequest {
    /// The prompt tokens.
    pub prompt: Vec<Token>,
    /// Sampling, limits and stop strings.
    pub options: GenerateOptions,
    /// Fires to cancel the request.
    pub cancel: CancelToken,
}

/// The end of one request.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Completion {
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV was reused from earlier requests.
    pub cached_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// From submission to the first generated token.
    #[serde(skip)]
    pub time_to_first_token: Option<Duration>,
    /// From submission to the end.
    #[serde(skip)]
    pub total_time: Duration,
}

/// What a consumer receives.
#[derive(Debug)]
pub enum EngineEvent {
    /// More text of the answer (valid UTF-8; never part of a stop string).
    Text(String),
    /// The answer ended.
    Done(Completion),
    /// The request failed.
    Failed(EngineError),
}

/// The engine could not take a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Too many requests are waiting.
    #[error("the queue is full ({capacity} requests waiting); retry later")]
    QueueFull {
        /// Queue capacity.
        capacity: usize,
    },
    /// The prompt can never fit one sequence's context or the KV budget.
    #[error("the request needs {needed} tokens of context but at most {max} fit")]
    TooLarge {
        /// Tokens the request needs at least (its prompt, plus one).
        needed: usize,
        /// The most that fits.
        max: usize,
    },
    /// The prompt is empty.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    ShuttingDown,
}

/// A request failed while running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// llama.cpp could not decode.
    #[error("decoding failed (llama_decode returned {code})")]
    Decode {
        /// llama.cpp's code.
        code: i32,
    },
    /// Saving or restoring a session's state failed.
    #[error("session state I/O failed: {message}")]
    State {
        /// What happened.
        message: String,
    },
    /// Creating the context failed.
    #[error("could not create the engine's context: {message}")]
    Start {
        /// What happened.
        message: String,
    },
    /// The KV budget cannot hold this request even after evicting every idle session.
    #[error(
        "the KV cache is full: {needed} more tokens do not fit and no idle session can be evicted"
    )]
    KvFull {
        /// Tokens that did not fit.
        needed: usize,
    },
    /// The KV budget is too small for even one block per sequence.
    #[error("the KV budget of {budget} bytes holds {blocks} blocks; at least {needed} are needed")]
    BudgetTooSmall {
        /// Budget in bytes.
        budget: u64,
        /// Blocks it holds.
        blocks: u32,
        /// Blocks needed.
        needed: u32,
    },
}

/// Figures of the engine at one moment.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EngineStats {
    /// Requests being decoded.
    pub active: usize,
    /// Requests waiting for a sequence.
    pub queued: usize,
    /// Finished sessions whose KV is kept for reuse.
    pub idle_cached: usize,
    /// Sessions saved to disk.
    pub saved: usize,
    /// KV blocks in use.
    pub blocks_used: u32,
    /// KV blocks free.
    pub blocks_free: u32,
    /// Tokens per block.
    pub block_tokens: u32,
    /// KV bytes in use.
    pub kv_bytes_used: u64,
    /// KV bytes of the budget.
    pub kv_bytes_total: u64,
    /// Sessions saved to disk to make room.
    pub evictions: u64,
    /// Saved sessions brought back.
    pub restores: u64,
    /// Prompt tokens received.
    pub tokens_in: u64,
    /// Prompt tokens served from cached KV.
    pub tokens_cached: u64,
    /// Tokens generated.
    pub tokens_out: u64,
    /// Requests finished, by outcome.
    pub finished: u64,
    /// Requests cancelled (by the consumer or its token).
    pub cancelled: u64,
}

/// Receives one request's events.
#[derive(Debug)]
pub struct ResponseStream {
    rx: tokio::sync::mpsc::Receiver<EngineEvent>,
}

impl ResponseStream {
    /// The next event, waiting asynchronously; `None` after the last.
    pub async fn next(&mut self) -> Option<EngineEvent> {
        self.rx.recv().await
    }

    /// The next event, blocking the thread; `None` after the last. Not for async contexts.
    pub fn blocking_next(&mut self) -> Option<EngineEvent> {
        self.rx.blocking_recv()
    }

    /// The next event if one is ready, without waiting. `Err(())` once the stream has ended.
    #[allow(clippy::result_unit_err)]
    pub fn try_next(&mut self) -> Result<Option<EngineEvent>, ()> {
        match self.rx.try_recv() {
            Ok(event) => Ok(Some(event)),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => Err(()),
        }
    }

    /// Runs to the end, returning the text and the completion (blocking).
    pub fn collect_blocking(mut self) -> Result<(String, Completion), EngineError> {
        let mut text = String::new();
        while let Some(event) = self.blocking_next() {
            match event {
                EngineEvent::Text(t) => text.push_str(&t),
                EngineEvent::Done(c) => return Ok((text, c)),
                EngineEvent::Failed(e) => return Err(e),
            }
        }
        Err(EngineError::Decode { code: -1 })
    }
}

/// State shared between the handle and the scheduler thread.
struct Shared {
    queue: Mutex<std::collections::VecDeque<scheduler::Job>>,
    wake: std::sync::Condvar,
    stats: Mutex<EngineStats>,
    stopping: AtomicBool,
    exit: AtomicBool,
    config: EngineConfig,
    max_tokens_per_request: usize,
}

/// A running engine. Dropping it stops the scheduler (pending requests are cancelled).
pub struct Engine {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    model: Arc<Model>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.shared.config)
            .finish()
    }
}

impl Engine {
    /// Creates the context and starts the scheduler thread.
    pub fn start(
        model: Arc<Model>,
        cache: &ModelCacheSpec,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        scheduler::start(model, cache, config)
    }

    /// The model the engine runs.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// Queues a request. Fails at once when the queue is full, the prompt can never fit, or the
    /// engine is stopping.
    pub fn submit(&self, request: EngineRequest) -> Result<ResponseStream, SubmitError> {
        scheduler::submit(&self.shared, request)
    }

    /// Current figures.
    pub fn stats(&self) -> EngineStats {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops taking requests, lets running ones finish for up to `deadline`, then cancels the
    /// rest and stops the scheduler.
    pub fn shutdown(mut self, deadline: Duration) {
        self.stop(deadline);
    }

    fn stop(&mut self, deadline: Duration) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let started = std::time::Instant::now();
        while started.elapsed() < deadline {
            let s = self.stats();
            if s.active == 0 && s.queued == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        scheduler::request_exit(&self.shared);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop(Duration::ZERO);
        }
    }
}
