//! The engine: many conversations on one model and one KV budget, decoded together.
//!
//! One llama.cpp context holds up to `n_parallel` sequences, by default with one KV stream per
//! sequence (see below). The engine is the one generation loop of llama-rs: the server's
//! requests and the terminal's conversation (`prompt`, `chat`: one sequence, through
//! [`crate::Session`]) run on it. A scheduler thread owns the context and, every step, builds one batch holding the next token of every
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

mod logprobs;
mod scheduler;
mod slot;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cache_spec::{KvCacheType, ModelCacheSpec};
use crate::cancel::CancelToken;
use crate::ffi::{ContextParams, FlashAttention, Model, Token};
use crate::session::{FinishReason, GenerateOptions};
use crate::state_file::{SavedSession, StateFileError};

fn engine_stopped(path: &std::path::Path) -> StateFileError {
    StateFileError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other("the engine has stopped"),
    }
}

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
    /// Threads for generation.
    pub threads: i32,
    /// Threads for prompt processing (0: as many as `threads`).
    pub threads_batch: i32,
    /// When a sequence fills its context while generating, drop the oldest half of what
    /// follows its first `n_keep` tokens and go on, instead of ending the answer (llama.cpp's
    /// context shift; only where the cache can shift positions).
    pub context_shift: bool,
    /// Tokens a context shift keeps at the start of the sequence.
    pub n_keep: u32,
    /// LoRA adapters applied to the context, with their scales.
    pub loras: Vec<(Arc<crate::ffi::LoraAdapter>, f32)>,
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
    /// Where sessions evicted from the KV cache are saved; `None`: they are dropped, never
    /// written (one-conversation use, as `prompt` and `chat` run).
    pub state_dir: Option<PathBuf>,
    /// The model's fingerprint that session files are stamped with
    /// ([`crate::gguf::GgufModel::fingerprint`]); `None`: computed from the model's file.
    pub model_fingerprint: Option<String>,
    /// One pool of KV cells shared by all sequences (`true`: a long conversation may use the
    /// whole budget, shared prefixes are stored once) or one fixed stream per sequence
    /// (`false`, the default: attention only scans a sequence's own cells, which is faster with
    /// several sessions; each holds at most the budget divided by `n_parallel`).
    pub kv_unified: bool,
    /// Sliding-window layers get a cache of the whole context (`true`) or only of the window
    /// plus a micro-batch (`false`, the default, as llama-server does).
    pub swa_full: bool,
    /// An idle session evicted after this long without use is dropped, not saved to disk:
    /// it is unlikely to return, and saving it would pause every other session.
    pub keep_idle: Duration,
    /// Fault injection for tests: this many decode calls fail (as llama.cpp's code -1) before
    /// the real ones run.
    #[doc(hidden)]
    pub inject_decode_failures: u32,
}

impl EngineConfig {
    /// A configuration with llama-server-like defaults for `n_parallel` sequences of
    /// `n_ctx_per_seq` tokens, with KV for all of them at full length.
    pub fn new(
        n_parallel: u32,
        n_ctx_per_seq: u32,
        kv_budget_bytes: u64,
        state_dir: impl Into<Option<PathBuf>>,
    ) -> EngineConfig {
        EngineConfig {
            n_parallel,
            n_ctx_per_seq,
            kv_budget_bytes,
            n_batch: 2048,
            n_ubatch: 512,
            threads: 4,
            threads_batch: 0,
            context_shift: false,
            n_keep: 0,
            loras: Vec::new(),
            flash_attention: FlashAttention::Auto,
            type_k: KvCacheType::F16,
            type_v: KvCacheType::F16,
            block_tokens: crate::kv_pool::DEFAULT_BLOCK_TOKENS,
            queue_capacity: 64,
            stream_buffer: 64,
            state_dir: state_dir.into(),
            model_fingerprint: None,
            kv_unified: false,
            swa_full: false,
            keep_idle: Duration::from_secs(3600),
            inject_decode_failures: 0,
        }
    }
}

impl EngineConfig {
    /// A configuration for the context `params` describes (all `n_seq` sequences together):
    /// its batch sizes, threads, flash attention and cache types, and a KV budget of the cache
    /// that context holds. Sessions evicted from the cache are dropped (no state directory).
    pub fn for_context(
        params: &ContextParams,
        n_seq: u32,
        cache: &ModelCacheSpec,
    ) -> Result<EngineConfig, crate::cache_spec::CacheSpecError> {
        let n_seq = n_seq.max(1);
        let kv = cache.kv_bytes(&crate::cache_spec::KvCacheParams {
            n_ctx: u64::from(params.n_ctx),
            n_ubatch: u64::from(params.n_ubatch),
            n_seq: u64::from(n_seq),
            type_k: params.type_k,
            type_v: params.type_v,
            swa_full: params.swa_full,
            unified: false,
        })?;
        let mut config =
            EngineConfig::new(n_seq, (params.n_ctx / n_seq).max(1), kv.total_bytes(), None);
        config.threads = params.n_threads;
        config.threads_batch = params.n_threads_batch;
        config.n_batch = params.n_batch;
        config.n_ubatch = params.n_ubatch.min(params.n_batch);
        config.flash_attention = params.flash_attention;
        config.type_k = params.type_k;
        config.type_v = params.type_v;
        config.swa_full = params.swa_full;
        Ok(config)
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
    /// Spent decoding the prompt (from its first chunk to its logits).
    #[serde(skip)]
    pub prompt_time: Duration,
    /// From the first generated token to the end.
    #[serde(skip)]
    pub generation_time: Duration,
}

/// One token and its log-probability (natural log, from the model's raw logits).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenProb {
    /// The token.
    pub token: Token,
    /// Its bytes (a piece can end inside a UTF-8 sequence).
    pub bytes: Vec<u8>,
    /// log p(token).
    pub logprob: f32,
}

/// A generated token's log-probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenLogprobs {
    /// The token sampled.
    pub chosen: TokenProb,
    /// The most likely tokens, most likely first ([`GenerateOptions::n_probs`] of them).
    pub top: Vec<TokenProb>,
}

/// What a consumer receives.
#[derive(Debug)]
pub enum EngineEvent {
    /// More text of the answer (valid UTF-8; never part of a stop string).
    Text(String),
    /// The log-probabilities of the token just generated (only with
    /// [`GenerateOptions::n_probs`] > 0), sent before its text.
    Logprobs(TokenLogprobs),
    /// The answer ended.
    Done(Completion),
    /// The request failed.
    Failed(EngineError),
    /// Where the request stands (only when [`GenerateOptions::prompt_progress`] or
    /// [`GenerateOptions::token_progress`] asks for it).
    Progress(Progress),
}

/// Where a request stands: the prompt evaluated so far and the tokens generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV was reused from earlier requests.
    pub cached_tokens: usize,
    /// Prompt tokens in the cache so far (reused ones included).
    pub prompt_processed: usize,
    /// From the prompt's first chunk to now (while it is evaluated) or to its logits.
    pub prompt_time: Duration,
    /// Tokens generated so far.
    pub completion_tokens: usize,
    /// From the first generated token to now.
    pub generation_time: Duration,
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
    /// The request's grammar could not be built (checked requests never get this).
    #[error("the grammar cannot be used: {message}")]
    Grammar {
        /// What is wrong.
        message: String,
    },
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
    /// Evicted sessions dropped instead of saved (idle longer than the keep limit, or the save
    /// failed).
    pub dropped: u64,
    /// Time spent saving evicted sessions (every other session waits meanwhile), in seconds.
    pub save_seconds_total: f64,
    /// The longest such pause, in seconds.
    pub save_seconds_max: f64,
    /// Prompts preempted (their blocks given back) so that prompts blocking them could go on.
    pub preempted: u64,
    /// Decode calls that failed and were retried with half the batch.
    pub decode_retries: u64,
    /// Context shifts: a full sequence dropped its oldest tokens to go on.
    pub context_shifts: u64,
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
    /// Successful `llama_decode` calls.
    pub decodes: u64,
    /// Sequences in those calls' batches, summed (over `decodes`: the mean batch occupancy).
    pub decode_sequences: u64,
    /// The longest sequence (prompt and answer) a finished request had.
    pub tokens_max: u64,
    /// Seconds finished requests spent on their prompts (from the first chunk to its logits).
    pub prompt_seconds: f64,
    /// Seconds finished requests spent generating after their first token.
    pub generation_seconds: f64,
    /// Decode steps of finished requests after their first token (the first token comes from
    /// the prompt's logits).
    pub generation_steps: u64,
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
                EngineEvent::Logprobs(_) | EngineEvent::Progress(_) => {}
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
    /// Work on a sequence's saved state, done by the scheduler thread between steps.
    commands: Mutex<scheduler::Commands>,
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
        scheduler::start(model, cache, config, None)
    }

    /// Like [`start`](Self::start), with `observer` watching every graph node the context
    /// computes (the layer streamer of a model whose layers are streamed from disk).
    pub fn start_with_observer(
        model: Arc<Model>,
        cache: &ModelCacheSpec,
        config: EngineConfig,
        observer: Box<dyn crate::ffi::EvalObserver>,
    ) -> Result<Engine, EngineError> {
        scheduler::start(model, cache, config, Some(observer))
    }

    /// Most tokens one request may hold (prompt and answer): the context of one sequence.
    pub fn max_tokens_per_request(&self) -> usize {
        self.shared.max_tokens_per_request
    }

    /// Saves the conversation that sequence `seq` holds (its tokens and KV state, and the
    /// caller's `extra` bytes) to `path`, atomically. Returns the number of tokens saved.
    /// Fails while the sequence is answering a request.
    pub fn save_sequence(
        &self,
        seq: u32,
        path: &std::path::Path,
        extra: &[u8],
    ) -> Result<usize, StateFileError> {
        self.command(|reply| scheduler::Command::Save {
            seq,
            path: path.to_path_buf(),
            extra: extra.to_vec(),
            reply,
        })
        .unwrap_or_else(|| Err(engine_stopped(path)))
    }

    /// Replaces what sequence `seq` holds with the conversation saved at `path`; returns the
    /// caller's extra bytes and the number of tokens. A file saved for another model or cache
    /// type is refused, and the sequence is left empty when llama.cpp rejects the state.
    pub fn load_sequence(
        &self,
        seq: u32,
        path: &std::path::Path,
    ) -> Result<(Vec<u8>, usize), StateFileError> {
        self.command(|reply| scheduler::Command::Load {
            seq,
            path: path.to_path_buf(),
            reply,
        })
        .unwrap_or_else(|| Err(engine_stopped(path)))
    }

    /// Empties sequence `seq` (its KV cells and blocks are freed) unless it is answering.
    pub fn clear_sequence(&self, seq: u32) {
        let _ = self.command(|reply| scheduler::Command::Clear { seq, reply });
    }

    /// The tokens whose KV sequence `seq` holds (empty while it is answering).
    pub fn sequence_tokens(&self, seq: u32) -> Vec<Token> {
        self.command(|reply| scheduler::Command::Tokens { seq, reply })
            .unwrap_or_default()
    }

    /// Stops the engine like [`shutdown`](Self::shutdown), but first saves every idle
    /// session to the state directory and returns them all (with those saved earlier), their
    /// files kept: another engine of the same model takes them over with
    /// [`adopt_sessions`](Self::adopt_sessions), so conversations continue with their KV
    /// after the model was unloaded. Empty without a state directory.
    pub fn park(mut self, deadline: Duration) -> Vec<SavedSession> {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.wait_idle(deadline);
        let sessions = self
            .command(|reply| scheduler::Command::Park { reply })
            .unwrap_or_default();
        self.stop(Duration::ZERO);
        sessions
    }

    /// Takes over sessions another engine of the same model saved ([`park`](Self::park)):
    /// a request that continues one of them restores its KV from the file instead of
    /// evaluating the conversation again. A file saved for another model or cache type is
    /// refused when it is read (the conversation is then evaluated anew).
    pub fn adopt_sessions(&self, sessions: Vec<SavedSession>) {
        if sessions.is_empty() {
            return;
        }
        let _ = self.command(|reply| scheduler::Command::Adopt { sessions, reply });
    }

    /// Hands a command to the scheduler thread and waits for its answer (`None` once the
    /// scheduler has stopped).
    fn command<T>(
        &self,
        make: impl FnOnce(std::sync::mpsc::SyncSender<T>) -> scheduler::Command,
    ) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        {
            // Under the queue's lock, which the scheduler waits with: the wake-up is not lost.
            let _queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            let mut commands = self
                .shared
                .commands
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if commands.stopped {
                return None;
            }
            commands.pending.push(make(tx));
            self.shared.wake.notify_one();
        }
        rx.recv().ok()
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
        self.wait_idle(deadline);
        scheduler::request_exit(&self.shared);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Engine {
    /// Waits up to `deadline` for no request to be running or queued.
    fn wait_idle(&self, deadline: Duration) {
        let started = std::time::Instant::now();
        while started.elapsed() < deadline {
            let s = self.stats();
            if s.active == 0 && s.queued == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
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
