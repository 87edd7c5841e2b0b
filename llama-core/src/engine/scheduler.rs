//! The scheduler thread: admission, continuous batching, sampling, eviction and restore.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::slot::{Phase, Running, Slot, Step, Undelivered};
use super::{
    Completion, Engine, EngineConfig, EngineError, EngineEvent, EngineRequest, EngineStats,
    ResponseStream, Shared, SubmitError,
};
use crate::cache_spec::ModelCacheSpec;
use crate::ffi::{
    Batch, Context, ContextParams, DecodeOutcome, EvalObserver, Model, SamplerChain, Token,
};
use crate::kv_pool::{BlockPool, PoolSpec, SessionId};
use crate::session::FinishReason;
use crate::state_file::{self, model_identity, SavedSession, StateFileError};
use crate::stop::StopMatcher;
use crate::utf8::Utf8Decoder;

/// Saved sessions kept on disk at most; the oldest file goes first.
const MAX_SAVED: usize = 256;

/// A cached session whose tokens match a new prompt except for at most this many trailing
/// tokens is the same conversation continuing (the answer's last token is never decoded, and
/// re-tokenizing the answer can differ at its end). A larger difference means another
/// conversation, which is saved before its slot is reused.
const TAIL_SLACK: usize = 16;

/// Work on one sequence's state that a caller waits for (see [`Engine::save_sequence`] and
/// its neighbours).
pub(super) enum Command {
    /// Save a sequence's conversation to a file.
    Save {
        seq: u32,
        path: std::path::PathBuf,
        extra: Vec<u8>,
        reply: std::sync::mpsc::SyncSender<Result<usize, StateFileError>>,
    },
    /// Replace a sequence's conversation with a saved one.
    Load {
        seq: u32,
        path: std::path::PathBuf,
        reply: std::sync::mpsc::SyncSender<Result<(Vec<u8>, usize), StateFileError>>,
    },
    /// Empty a sequence.
    Clear {
        seq: u32,
        reply: std::sync::mpsc::SyncSender<()>,
    },
    /// The tokens a sequence holds.
    Tokens {
        seq: u32,
        reply: std::sync::mpsc::SyncSender<Vec<Token>>,
    },
    /// Save every idle session and hand over the saved ones (their files are kept).
    Park {
        reply: std::sync::mpsc::SyncSender<Vec<SavedSession>>,
    },
    /// Take saved sessions over (files another engine of the same model saved).
    Adopt {
        sessions: Vec<SavedSession>,
        reply: std::sync::mpsc::SyncSender<()>,
    },
}

/// Numbers session files: unique in the process, so that an engine adopting another's files
/// never writes over them.
static NEXT_FILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Commands waiting for the scheduler thread; `stopped` once it no longer takes any.
#[derive(Default)]
pub(super) struct Commands {
    pub(super) pending: Vec<Command>,
    pub(super) stopped: bool,
}

/// A queued request with its consumer's channel.
pub(super) struct Job {
    pub(super) request: EngineRequest,
    pub(super) events: tokio::sync::mpsc::Sender<EngineEvent>,
    pub(super) submitted: Instant,
}

/// The final event of a request cancelled (at shutdown, or by its client) before it got a
/// sequence: it ends like a running one cancelled, with nothing generated.
fn cancelled_before_start(job: &Job) -> EngineEvent {
    EngineEvent::Done(Completion {
        finish_reason: FinishReason::Cancelled,
        prompt_tokens: job.request.prompt.len(),
        cached_tokens: 0,
        completion_tokens: 0,
        time_to_first_token: None,
        total_time: job.submitted.elapsed(),
        prompt_time: Duration::ZERO,
        generation_time: Duration::ZERO,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A slot chosen for the next batch, before its tokens are put in.
enum Chosen {
    /// The token it sampled last, to decode.
    Generate { slot: usize, pending: Token },
    /// Prompt tokens `done..done + n`; `last`: they end the prompt (its logits are wanted).
    Prompt {
        slot: usize,
        done: usize,
        n: usize,
        last: bool,
    },
}

impl Chosen {
    fn slot(&self) -> usize {
        match *self {
            Chosen::Generate { slot, .. } | Chosen::Prompt { slot, .. } => slot,
        }
    }
}

/// Index of the largest logit (the first one on ties, as llama.cpp's greedy sampler does).
fn argmax(logits: &[f32]) -> Token {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as Token
}

/// How the KV cache the engine creates is laid out in bytes.
struct KvLayout {
    /// Bytes per token of context the block pool accounts (every layer, or only the global
    /// ones when the sliding-window layers are capped).
    per_token: u64,
    /// Bytes llama.cpp allocates up front for capped sliding-window layers (0 otherwise).
    sliding_bytes: u64,
    /// The capped sliding window, when there is one.
    sliding_window: Option<u32>,
    /// No layer keeps a KV cache (a recurrent model): the pool counts tokens, a byte each.
    tokens_only: bool,
}

impl KvLayout {
    fn of(
        cache: &ModelCacheSpec,
        config: &EngineConfig,
        n_parallel: u32,
    ) -> Result<KvLayout, crate::cache_spec::CacheSpecError> {
        let split = cache.kv_bytes_per_token_split(config.type_k, config.type_v)?;
        let window = cache
            .sliding_window
            .filter(|_| cache.n_sliding_layers() > 0);
        match window {
            Some(window) if !config.swa_full && split.global > 0 => {
                // llama.cpp gives each stream's sliding-window layers the window (times the
                // sequences sharing a unified stream) plus a micro-batch, padded to 256 cells,
                // allocated when the context is created.
                let (streams, seqs) = if config.kv_unified {
                    (1, u64::from(n_parallel))
                } else {
                    (u64::from(n_parallel), 1)
                };
                let context = u64::from(config.n_ctx_per_seq).next_multiple_of(256) * seqs;
                let cells = (window * seqs + u64::from(config.n_ubatch))
                    .min(context)
                    .next_multiple_of(256);
                Ok(KvLayout {
                    per_token: split.global,
                    sliding_bytes: split.sliding.saturating_mul(cells).saturating_mul(streams),
                    sliding_window: u32::try_from(window).ok(),
                    tokens_only: false,
                })
            }
            // A recurrent model (Mamba, RWKV) keeps a fixed state per sequence and no KV
            // cache: the pool then only counts tokens against the context, one byte each.
            _ if split.global + split.sliding == 0 => Ok(KvLayout {
                per_token: 1,
                sliding_bytes: 0,
                sliding_window: None,
                tokens_only: true,
            }),
            _ => Ok(KvLayout {
                per_token: split.global + split.sliding,
                sliding_bytes: 0,
                sliding_window: None,
                tokens_only: false,
            }),
        }
    }
}

fn common_prefix(a: &[Token], b: &[Token]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

pub(super) fn start(
    model: Arc<Model>,
    cache: &ModelCacheSpec,
    config: EngineConfig,
    observer: Option<Box<dyn EvalObserver>>,
) -> Result<Engine, EngineError> {
    let start_err = |message: String| EngineError::Start { message };
    let n_parallel = config.n_parallel.clamp(1, 256);
    let kv = KvLayout::of(cache, &config, n_parallel).map_err(|e| start_err(e.to_string()))?;
    let per_token = kv.per_token;
    let budget = if kv.tokens_only {
        // Nothing in the cache grows with the context: the pool counts its tokens.
        u64::from(config.n_ctx_per_seq).next_multiple_of(256) * u64::from(n_parallel)
    } else {
        config.kv_budget_bytes.saturating_sub(kv.sliding_bytes)
    };
    let spec = PoolSpec::new(per_token, budget).with_block_tokens(config.block_tokens);
    let mut pool = BlockPool::new(spec).map_err(|e| start_err(e.to_string()))?;
    let needed = pool
        .spec()
        .blocks_for_tokens(config.n_ctx_per_seq.min(config.block_tokens).max(1));
    if pool.total_blocks() < needed.max(1) {
        return Err(EngineError::BudgetTooSmall {
            budget: config.kv_budget_bytes,
            blocks: pool.total_blocks(),
            needed: needed.max(1),
        });
    }
    let mut total_tokens = u64::from(pool.total_blocks()) * u64::from(config.block_tokens);
    let mut max_tokens_per_request = (config.n_ctx_per_seq as usize).min(total_tokens as usize);
    if !config.kv_unified {
        // One stream per sequence; llama.cpp pads each stream to 256 cells.
        let per_seq_budget = total_tokens / u64::from(n_parallel) / 256 * 256;
        let wanted = u64::from(config.n_ctx_per_seq).div_ceil(256) * 256;
        let per_seq = per_seq_budget.min(wanted);
        if per_seq < 256 {
            return Err(EngineError::BudgetTooSmall {
                budget: config.kv_budget_bytes,
                blocks: pool.total_blocks(),
                needed: (u64::from(n_parallel) * 256)
                    .div_ceil(u64::from(config.block_tokens.max(1))) as u32,
            });
        }
        total_tokens = per_seq * u64::from(n_parallel);
        max_tokens_per_request = (config.n_ctx_per_seq as usize).min(per_seq as usize);
        // The pool hands out exactly the cells llama.cpp allocates.
        pool = BlockPool::new(
            PoolSpec::new(per_token, total_tokens * per_token)
                .with_block_tokens(config.block_tokens),
        )
        .map_err(|e| start_err(e.to_string()))?;
    }
    let n_ctx = u32::try_from(total_tokens).unwrap_or(u32::MAX).max(256);
    for seq in 0..n_parallel {
        pool.create_session(SessionId(u64::from(seq)))
            .map_err(|e| start_err(e.to_string()))?;
    }
    let params = ContextParams {
        n_ctx,
        n_batch: config.n_batch,
        n_ubatch: config.n_ubatch,
        n_seq_max: n_parallel,
        n_outputs_max: n_parallel,
        n_threads: config.threads,
        n_threads_batch: match config.threads_batch {
            n if n > 0 => n,
            _ => config.threads,
        },
        flash_attention: config.flash_attention,
        type_k: config.type_k,
        type_v: config.type_v,
        kv_unified: config.kv_unified,
        swa_full: config.swa_full,
    };
    let ctx = match observer {
        Some(observer) => Context::with_eval_observer(model.clone(), &params, observer),
        None => Context::new(model.clone(), &params),
    }
    .map_err(|e| start_err(e.to_string()))?;
    let mut ctx = ctx;
    if !config.loras.is_empty() && !ctx.set_loras(&config.loras) {
        return Err(start_err("llama.cpp refused the LoRA adapters".into()));
    }
    if let Some(dir) = &config.state_dir {
        std::fs::create_dir_all(dir).map_err(|e| start_err(format!("{}: {e}", dir.display())))?;
    }
    let fingerprint = match &config.model_fingerprint {
        Some(f) => f.clone(),
        None => crate::gguf::GgufModel::open(model.path())
            .map_err(|e| e.to_string())
            .and_then(|g| g.fingerprint().map_err(|e| e.to_string()))
            .map_err(|e| start_err(format!("{}: {e}", model.path().display())))?,
    };
    let identity = model_identity(&fingerprint, config.type_k, config.type_v);
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        commands: Mutex::new(Commands::default()),
        wake: Condvar::new(),
        stats: Mutex::new(EngineStats {
            blocks_free: pool.available_blocks(),
            block_tokens: config.block_tokens,
            kv_bytes_total: pool.total_bytes(),
            ..EngineStats::default()
        }),
        stopping: AtomicBool::new(false),
        exit: AtomicBool::new(false),
        config: config.clone(),
        max_tokens_per_request,
    });
    // llama.cpp asserts that a decode call holds at most its effective batch size.
    let batch = Batch::new(ctx.n_batch().max(1) as usize);
    let mut scheduler = Scheduler {
        shared: shared.clone(),
        n_ctx_seq: max_tokens_per_request,
        slots: (0..n_parallel as i32).map(Slot::new).collect(),
        ctx,
        pool,
        batch,
        saved: VecDeque::new(),
        identity,
        model: model.clone(),
        next_first: 0,
        swa_window: kv.sliding_window,
        undelivered: Vec::new(),
        batch_limit: None,
        preempted: Vec::new(),
        injected_failures: config.inject_decode_failures,
        context_can_shift: false,
    };
    scheduler.context_can_shift = config.context_shift && scheduler.ctx.can_shift();
    let thread = std::thread::Builder::new()
        .name("llama-rs-engine".into())
        .spawn(move || scheduler.run())
        .map_err(|e| start_err(e.to_string()))?;
    Ok(Engine {
        shared,
        thread: Some(thread),
        model,
    })
}

pub(super) fn submit(
    shared: &Arc<Shared>,
    request: EngineRequest,
) -> Result<ResponseStream, SubmitError> {
    if shared.stopping.load(Ordering::SeqCst) {
        return Err(SubmitError::ShuttingDown);
    }
    if request.prompt.is_empty() {
        return Err(SubmitError::EmptyPrompt);
    }
    if request.prompt.len() + 1 > shared.max_tokens_per_request {
        return Err(SubmitError::TooLarge {
            needed: request.prompt.len() + 1,
            max: shared.max_tokens_per_request,
        });
    }
    let mut queue = lock(&shared.queue);
    if queue.len() >= shared.config.queue_capacity {
        return Err(SubmitError::QueueFull {
            capacity: shared.config.queue_capacity,
        });
    }
    let (tx, rx) = tokio::sync::mpsc::channel(
        shared
            .config
            .stream_buffer
            .max(super::slot::EVENTS_PER_STEP),
    );
    queue.push_back(Job {
        request,
        events: tx,
        submitted: Instant::now(),
    });
    lock(&shared.stats).queued = queue.len();
    shared.wake.notify_one();
    Ok(ResponseStream { rx })
}

pub(super) fn request_exit(shared: &Arc<Shared>) {
    shared.exit.store(true, Ordering::SeqCst);
    let _guard = lock(&shared.queue);
    shared.wake.notify_all();
}

/// The thread that owns the context.
struct Scheduler {
    shared: Arc<Shared>,
    ctx: Context,
    pool: BlockPool,
    slots: Vec<Slot>,
    batch: Batch,
    saved: VecDeque<SavedSession>,
    identity: String,
    n_ctx_seq: usize,
    model: Arc<Model>,
    /// The slot whose token goes first into the next batch (rotates, so that with more
    /// generating sessions than the batch holds each gets its turn).
    next_first: usize,
    /// The window of the sliding-window layers when their cache is capped to it: older
    /// positions are gone, so a sequence cannot be cut back further than the window reaches.
    swa_window: Option<u32>,
    /// Final events that consumers' full channels could not take yet.
    undelivered: Vec<Undelivered>,
    /// After a failed decode, the next batches hold at most this many tokens (halved on each
    /// failure, as llama-server does, restored after a success).
    batch_limit: Option<usize>,
    /// Requests preempted to unblock others: they are queued again once a request ends.
    preempted: Vec<Job>,
    /// Decode calls still to fail on purpose ([`EngineConfig::inject_decode_failures`]).
    injected_failures: u32,
    /// Whether a full context shifts ([`EngineConfig::context_shift`] and a cache that can).
    context_can_shift: bool,
}

impl Scheduler {
    fn run(&mut self) {
        loop {
            if self.shared.exit.load(Ordering::SeqCst) {
                self.cancel_everything();
                self.publish();
                return;
            }
            self.run_commands();
            self.undelivered.retain_mut(Undelivered::flush);
            self.reap_abandoned();
            self.admit();
            let progressed = self.step();
            self.publish();
            if !progressed {
                let running = self.slots.iter().any(|s| !s.is_idle());
                let queue = lock(&self.shared.queue);
                if !self.shared.exit.load(Ordering::SeqCst) {
                    let wait = if running || !queue.is_empty() {
                        Duration::from_millis(2)
                    } else {
                        Duration::from_millis(50)
                    };
                    let _ = self.shared.wake.wait_timeout(queue, wait);
                }
            }
        }
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, EngineStats> {
        lock(&self.shared.stats)
    }

    fn session(seq: i32) -> SessionId {
        SessionId(seq as u64)
    }

    /// Frees a slot's KV at once (cells and blocks).
    fn clear_slot(&mut self, i: usize) {
        let seq = self.slots[i].seq;
        self.ctx.kv_remove(seq, 0, -1);
        let _ = self.pool.release_session(Self::session(seq));
        let _ = self.pool.create_session(Self::session(seq));
        self.slots[i].tokens.clear();
    }

    fn reap_abandoned(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].abandoned() {
                self.cancel_slot(i);
            }
        }
    }

    /// Ends a cancelled request and frees its KV at once.
    fn cancel_slot(&mut self, i: usize) {
        self.stats().cancelled += 1;
        self.end_slot(i, FinishReason::Cancelled);
        self.clear_slot(i);
    }

    /// Ends slot `i`'s request: its final events go out now or later, and requests preempted
    /// to make room may try again.
    fn end_slot(&mut self, i: usize, reason: FinishReason) {
        if let Some((_, undelivered)) = self.slots[i].finish(reason) {
            if !undelivered.pending.is_empty() {
                self.undelivered.push(undelivered);
            }
        }
        self.requeue_preempted();
    }

    /// Puts preempted requests back at the head of the queue.
    fn requeue_preempted(&mut self) {
        if self.preempted.is_empty() {
            return;
        }
        let mut queue = lock(&self.shared.queue);
        for job in self.preempted.drain(..).rev() {
            queue.push_front(job);
        }
    }

    fn cancel_everything(&mut self) {
        for i in 0..self.slots.len() {
            if !self.slots[i].is_idle() {
                self.end_slot(i, FinishReason::Cancelled);
                self.stats().cancelled += 1;
            }
        }
        for undelivered in &mut self.undelivered {
            undelivered.flush();
        }
        let waiting: Vec<Job> = self
            .preempted
            .drain(..)
            .chain(lock(&self.shared.queue).drain(..))
            .collect();
        for job in waiting {
            self.stats().cancelled += 1;
            let _ = job.events.try_send(cancelled_before_start(&job));
        }
        for s in self.saved.drain(..) {
            let _ = std::fs::remove_file(&s.path);
        }
        // Waiting callers get no answer (their reply channel closes).
        let mut commands = lock(&self.shared.commands);
        commands.stopped = true;
        commands.pending.clear();
    }

    /// Runs the commands callers wait for.
    fn run_commands(&mut self) {
        let pending = std::mem::take(&mut lock(&self.shared.commands).pending);
        for command in pending {
            match command {
                Command::Save {
                    seq,
                    path,
                    extra,
                    reply,
                } => {
                    let _ = reply.send(self.save_to(seq, &path, &extra));
                }
                Command::Load { seq, path, reply } => {
                    let _ = reply.send(self.load_from(seq, &path));
                }
                Command::Clear { seq, reply } => {
                    if let Some(i) = self.idle_slot(seq) {
                        self.clear_slot(i);
                    }
                    let _ = reply.send(());
                }
                Command::Tokens { seq, reply } => {
                    let tokens = self
                        .idle_slot(seq)
                        .map(|i| self.slots[i].tokens.clone())
                        .unwrap_or_default();
                    let _ = reply.send(tokens);
                }
                Command::Park { reply } => {
                    for i in 0..self.slots.len() {
                        if self.slots[i].is_idle() && !self.slots[i].tokens.is_empty() {
                            self.save(i);
                            self.clear_slot(i);
                        }
                    }
                    let _ = reply.send(self.saved.drain(..).collect());
                }
                Command::Adopt { sessions, reply } => {
                    self.saved.extend(sessions);
                    while self.saved.len() > MAX_SAVED {
                        if let Some(old) = self.saved.pop_front() {
                            let _ = std::fs::remove_file(old.path);
                        }
                    }
                    let _ = reply.send(());
                }
            }
        }
    }

    /// The index of sequence `seq`'s slot when it exists and answers no request.
    fn idle_slot(&self, seq: u32) -> Option<usize> {
        let i = seq as usize;
        (i < self.slots.len() && self.slots[i].is_idle()).then_some(i)
    }

    fn busy(path: &std::path::Path) -> StateFileError {
        StateFileError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("the sequence is answering a request"),
        }
    }

    fn save_to(
        &mut self,
        seq: u32,
        path: &std::path::Path,
        extra: &[u8],
    ) -> Result<usize, StateFileError> {
        let i = self.idle_slot(seq).ok_or_else(|| Self::busy(path))?;
        let seq = self.slots[i].seq;
        state_file::save(
            &mut self.ctx,
            seq,
            path,
            &self.identity,
            &self.slots[i].tokens,
            extra,
        )?;
        Ok(self.slots[i].tokens.len())
    }

    fn load_from(
        &mut self,
        seq: u32,
        path: &std::path::Path,
    ) -> Result<(Vec<u8>, usize), StateFileError> {
        let i = self.idle_slot(seq).ok_or_else(|| Self::busy(path))?;
        // Checked before the sequence is touched: another model's file leaves it as it was.
        state_file::check(path, &self.identity)?;
        self.clear_slot(i);
        let max = self.n_ctx_seq.saturating_sub(1);
        let loaded = state_file::load(&mut self.ctx, self.slots[i].seq, path, &self.identity, max);
        let (tokens, extra) = match loaded {
            Ok(loaded) if self.ensure_pool(i, loaded.0.len()) => loaded,
            Ok(_) => {
                self.clear_slot(i);
                return Err(StateFileError::LlamaCpp {
                    path: path.to_path_buf(),
                    what: "restore",
                });
            }
            Err(err) => {
                self.clear_slot(i);
                return Err(err);
            }
        };
        self.slots[i].tokens = tokens;
        self.slots[i].last_used = Instant::now();
        Ok((extra, self.slots[i].tokens.len()))
    }

    /// Saves an idle slot's session to disk and frees its KV.
    fn evict(&mut self, i: usize) {
        if self.save(i) {
            self.stats().evictions += 1;
        }
        self.clear_slot(i);
    }

    /// Saves a slot's session to disk (its KV stays). False if there was nothing to save, the
    /// session has been idle longer than [`EngineConfig::keep_idle`] (it is unlikely to
    /// return: dropped instead), or writing failed. The state streams to the file; the time it
    /// takes is the pause every other session sees, and is counted.
    fn save(&mut self, i: usize) -> bool {
        let seq = self.slots[i].seq;
        let Some(state_dir) = self.shared.config.state_dir.clone() else {
            return false;
        };
        if self.slots[i].tokens.is_empty() {
            return false;
        }
        if self.slots[i].last_used.elapsed() > self.shared.config.keep_idle {
            self.stats().dropped += 1;
            return false;
        }
        let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed) + 1;
        let path = state_dir.join(format!("session-{}-{n}.state", std::process::id()));
        let started = Instant::now();
        let tokens = &self.slots[i].tokens;
        let saved = state_file::save(&mut self.ctx, seq, &path, &self.identity, tokens, &[]);
        let pause = started.elapsed();
        {
            let mut stats = self.stats();
            stats.save_seconds_total += pause.as_secs_f64();
            stats.save_seconds_max = stats.save_seconds_max.max(pause.as_secs_f64());
        }
        match saved {
            Ok(bytes) => {
                tracing::debug!(bytes, ?pause, "saved an evicted session");
                let tokens = self.slots[i].tokens.clone();
                self.saved.push_back(SavedSession { path, tokens });
                if self.saved.len() > MAX_SAVED {
                    if let Some(old) = self.saved.pop_front() {
                        let _ = std::fs::remove_file(old.path);
                    }
                }
                true
            }
            Err(err) => {
                tracing::warn!("could not save an evicted session: {err}");
                self.stats().dropped += 1;
                false
            }
        }
    }

    /// Grows a slot's blocks to `n_tokens`, evicting idle sessions (least recently used first)
    /// while the pool is full. False when nothing more can be freed.
    fn ensure_pool(&mut self, i: usize, n_tokens: usize) -> bool {
        let session = Self::session(self.slots[i].seq);
        let n = u32::try_from(n_tokens).unwrap_or(u32::MAX);
        loop {
            if self.pool.grow_to(session, n).is_ok() {
                return true;
            }
            let victim = (0..self.slots.len())
                .filter(|&j| j != i && self.slots[j].is_idle() && !self.slots[j].tokens.is_empty())
                .min_by_key(|&j| self.slots[j].last_used);
            match victim {
                Some(j) => self.evict(j),
                None => return false,
            }
        }
    }

    /// Moves queued requests into idle slots.
    fn admit(&mut self) {
        loop {
            if !self.slots.iter().any(Slot::is_idle) {
                return;
            }
            let Some(job) = lock(&self.shared.queue).pop_front() else {
                return;
            };
            if job.events.is_closed() || job.request.cancel.is_cancelled() {
                self.stats().cancelled += 1;
                let _ = job.events.try_send(cancelled_before_start(&job));
                continue;
            }
            self.start_job(job);
        }
    }

    fn start_job(&mut self, job: Job) {
        let options = &job.request.options;
        let grammar = match &options.grammar {
            None => None,
            Some(spec) => match crate::grammar::Grammar::sampler(&self.model, spec) {
                Ok(g) => Some(g),
                Err(err) => {
                    self.stats().finished += 1;
                    let undelivered = Undelivered::send(
                        job.events,
                        vec![EngineEvent::Failed(EngineError::Grammar {
                            message: err.to_string(),
                        })],
                    );
                    if !undelivered.pending.is_empty() {
                        self.undelivered.push(undelivered);
                    }
                    return;
                }
            },
        };
        let n_ctx = u32::try_from(self.n_ctx_seq).unwrap_or(u32::MAX);
        let mut sampler = SamplerChain::with_extras(
            &options.sampling,
            &self.model,
            n_ctx,
            &options.logit_bias,
            grammar,
        );
        let post_sampling = options.n_probs > 0 && options.post_sampling_probs;
        if post_sampling {
            sampler.keep_candidates();
        }
        let prompt = &job.request.prompt;
        // The idle slot sharing the longest prefix, else an empty one, else the least recently
        // used (which is evicted).
        let idle: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].is_idle())
            .collect();
        let best = idle
            .iter()
            .copied()
            .max_by_key(|&i| {
                (
                    common_prefix(&self.slots[i].tokens, prompt),
                    self.slots[i].tokens.is_empty(),
                )
            })
            .unwrap_or(0);
        let mut common = common_prefix(&self.slots[best].tokens, prompt);
        let chosen = if common > 0 {
            best
        } else {
            idle.iter()
                .copied()
                .find(|&i| self.slots[i].tokens.is_empty())
                .unwrap_or_else(|| {
                    idle.iter()
                        .copied()
                        .min_by_key(|&i| self.slots[i].last_used)
                        .unwrap_or(best)
                })
        };
        // A prompt to be evaluated afresh reuses no cached prefix (llama-server's
        // `cache_prompt: false`).
        let fresh = options.fresh_prompt;
        // A saved session that covers more of the prompt comes back from disk.
        let saved_best = self
            .saved
            .iter()
            .enumerate()
            .map(|(k, s)| (k, common_prefix(&s.tokens, prompt)))
            .filter(|&(k, c)| !fresh && c + TAIL_SLACK >= self.saved[k].tokens.len() && c > common)
            .max_by_key(|&(_, c)| c);
        if let Some((k, c)) = saved_best {
            if !self.slots[chosen].tokens.is_empty() {
                self.evict(chosen);
            }
            if let Some(saved) = self.saved.remove(k) {
                if self.restore(chosen, &saved) {
                    common = c;
                } else {
                    common = 0;
                }
                let _ = std::fs::remove_file(&saved.path);
            }
        } else if chosen != best || common == 0 {
            if !self.slots[chosen].tokens.is_empty() {
                self.evict(chosen);
            }
            self.share_prefix(chosen, prompt);
            common = self.slots[chosen].tokens.len();
        }
        let reuse = if fresh {
            0
        } else {
            common.min(prompt.len() - 1)
        };
        if !fresh && self.slots[chosen].tokens.len() > reuse + TAIL_SLACK {
            // Another conversation shares only a prefix: keep it on disk before truncating.
            if self.save(chosen) {
                self.stats().evictions += 1;
            }
        }
        let slot = &mut self.slots[chosen];
        let mut reuse = reuse;
        if reuse < slot.tokens.len() {
            // A capped sliding-window cache no longer holds what a cut further back than the
            // window needs; a recurrent state cannot be cut at all (llama.cpp refuses). Then
            // the prompt is evaluated again from the start.
            let window_ok = self.swa_window.is_none_or(|window| {
                let oldest = self.ctx.kv_pos_min(slot.seq).max(0) as usize;
                oldest <= reuse.saturating_sub(window as usize)
            });
            if !window_ok || !self.ctx.kv_remove(slot.seq, reuse as i32, -1) {
                self.ctx.kv_remove(slot.seq, 0, -1);
                reuse = 0;
            }
            slot.tokens.truncate(reuse);
            // Re-account the kept tokens (the pool tracks how many blocks a session holds).
            let session = Self::session(slot.seq);
            let kept = slot.tokens.len() as u32;
            let _ = self.pool.release_session(session);
            let _ = self.pool.create_session(session);
            let _ = self.pool.grow_to(session, kept);
        }
        let sampling = &job.request.options.sampling;
        // The penalties' history: the prompt's last tokens (-1: the whole context).
        let window = |n: i32| if n < 0 { self.n_ctx_seq } else { n as usize };
        let last_n = window(sampling.repeat_last_n).max(window(sampling.dry_penalty_last_n));
        for &t in &prompt[prompt.len().saturating_sub(last_n)..] {
            sampler.accept(t);
        }
        {
            let mut stats = self.stats();
            stats.tokens_in += prompt.len() as u64;
            stats.tokens_cached += reuse as u64;
        }
        let slot = &mut self.slots[chosen];
        slot.phase = Phase::Prompt;
        slot.last_used = Instant::now();
        slot.running = Some(Running {
            options: job.request.options.clone(),
            prompt: job.request.prompt,
            sampler,
            utf8: Utf8Decoder::new(),
            stop: StopMatcher::new(&job.request.options.stop)
                .with_shown(&job.request.options.reverse_prompts),
            max_tokens: job.request.options.max_tokens,
            argmax: job.request.options.sampling.is_plain_greedy()
                && job.request.options.grammar.is_none()
                && job.request.options.logit_bias.is_empty()
                && !post_sampling,
            n_probs: job.request.options.n_probs,
            post_sampling,
            ignore_eos: job.request.options.ignore_eos,
            events: job.events,
            cancel: job.request.cancel,
            submitted: job.submitted,
            first_token: None,
            cached_tokens: reuse,
            generated: 0,
            prompt_started: None,
            prompt_done: None,
        });
    }

    /// Shares whole blocks of a common prefix (e.g. a system prompt) held by another slot:
    /// the cells are shared by sequence copy and the blocks counted once.
    fn share_prefix(&mut self, dst: usize, prompt: &[Token]) {
        if !self.shared.config.kv_unified {
            // Separate streams hold separate copies; nothing would be shared.
            return;
        }
        let block = self.pool.spec().block_tokens as usize;
        let source = (0..self.slots.len())
            .filter(|&j| j != dst && !self.slots[j].tokens.is_empty())
            .map(|j| (j, common_prefix(&self.slots[j].tokens, prompt)))
            .max_by_key(|&(_, c)| c);
        let Some((src, common)) = source else { return };
        let n_blocks = (common.min(prompt.len() - 1)) / block;
        if n_blocks == 0 {
            return;
        }
        let src_session = Self::session(self.slots[src].seq);
        let dst_session = Self::session(self.slots[dst].seq);
        let _ = self.pool.release_session(dst_session);
        let _ = self.pool.create_session(dst_session);
        if self
            .pool
            .share(src_session, dst_session, n_blocks as u32)
            .is_err()
        {
            return;
        }
        let n = n_blocks * block;
        let (src_seq, dst_seq) = (self.slots[src].seq, self.slots[dst].seq);
        self.ctx.kv_copy(src_seq, dst_seq, 0, n as i32);
        self.slots[dst].tokens = prompt[..n].to_vec();
    }

    /// Loads a saved session into slot `i`. False (slot left empty) if it cannot be restored.
    fn restore(&mut self, i: usize, saved: &SavedSession) -> bool {
        if !self.ensure_pool(i, saved.tokens.len()) {
            return false;
        }
        let seq = self.slots[i].seq;
        let max = self.n_ctx_seq.saturating_sub(1).max(saved.tokens.len());
        let ok = match state_file::load(&mut self.ctx, seq, &saved.path, &self.identity, max) {
            Ok((tokens, _)) => tokens == saved.tokens,
            Err(err) => {
                tracing::warn!("could not restore a saved session: {err}");
                false
            }
        };
        if ok {
            self.slots[i].tokens = saved.tokens.clone();
            self.stats().restores += 1;
        } else {
            self.clear_slot(i);
        }
        ok
    }

    /// One decode step over every runnable slot. False when there was nothing to do.
    fn step(&mut self) -> bool {
        self.batch.clear();
        let mut budget = self.batch_limit.map_or(self.batch.capacity(), |limit| {
            limit.min(self.batch.capacity())
        });
        // The slots that get tokens in this batch, chosen in rotating order (so that with more
        // generating sessions than the batch holds each gets its turn).
        let mut chosen: Vec<Chosen> = Vec::new();
        let mut blocked = Vec::new();
        let n_slots = self.slots.len().max(1);
        let first = self.next_first % n_slots;
        self.next_first = self.next_first.wrapping_add(1);
        let order: Vec<usize> = (0..self.slots.len())
            .map(|k| (first + k) % n_slots)
            .collect();
        for &i in &order {
            if budget == 0 {
                break;
            }
            let Phase::Generate { pending } = self.slots[i].phase else {
                continue;
            };
            if !self.slots[i].consumer_ready() {
                continue;
            }
            if self.slots[i].tokens.len() + 1 > self.n_ctx_seq && !self.shift_context(i) {
                self.finish_slot(i, FinishReason::ContextFull);
                continue;
            }
            let pos = self.slots[i].tokens.len();
            if !self.ensure_pool(i, pos + 1) {
                self.finish_slot(i, FinishReason::ContextFull);
                continue;
            }
            chosen.push(Chosen::Generate { slot: i, pending });
            budget -= 1;
        }
        for &i in &order {
            if budget == 0 {
                break;
            }
            if !matches!(self.slots[i].phase, Phase::Prompt) || !self.slots[i].consumer_ready() {
                continue;
            }
            let done = self.slots[i].tokens.len();
            let Some(run) = self.slots[i].running.as_ref() else {
                continue;
            };
            let remaining = run.prompt.len() - done;
            let n = remaining.min(budget);
            if !self.ensure_pool(i, done + n) {
                blocked.push(i);
                continue;
            }
            chosen.push(Chosen::Prompt {
                slot: i,
                done,
                n,
                last: n == remaining,
            });
            budget -= n;
        }
        let plan = self.fill_batch(chosen);
        if self.batch.is_empty() {
            let others_running = self
                .slots
                .iter()
                .any(|s| matches!(s.phase, Phase::Generate { .. }));
            if !others_running && blocked.len() > 1 {
                // Prompts that block each other: the youngest gives its blocks back and waits,
                // the others go on.
                if let Some(&youngest) = blocked
                    .iter()
                    .max_by_key(|&&i| self.slots[i].running.as_ref().map(|r| r.submitted))
                {
                    self.preempt_slot(youngest);
                    return true;
                }
            }
            if !others_running {
                // A prompt that can never get room while nothing else runs is refused.
                for i in blocked {
                    let needed = self.slots[i].running.as_ref().map_or(0, |r| r.prompt.len());
                    self.fail_slot(i, EngineError::KvFull { needed });
                }
            }
            return false;
        }
        // A long prompt stops within one graph node once every request of this batch is
        // cancelled (a Ctrl-C, or clients that went away).
        let requests = plan
            .iter()
            .filter_map(|&(i, _, _)| self.slots[i].running.as_ref().map(|r| r.cancel.clone()))
            .collect();
        self.ctx.abort_when_all_cancelled(requests);
        let outcome = if self.injected_failures > 0 {
            self.injected_failures -= 1;
            DecodeOutcome::Failed(-1)
        } else {
            self.ctx.decode(&self.batch)
        };
        self.ctx.abort_when_all_cancelled(Vec::new());
        match outcome {
            DecodeOutcome::Done => {
                let mut stats = self.stats();
                stats.decodes += 1;
                stats.decode_sequences += plan.len() as u64;
            }
            DecodeOutcome::Aborted => {
                // Nobody wants this batch's result (the cache may hold part of it).
                for (i, _, _) in plan {
                    self.cancel_slot(i);
                }
                return true;
            }
            outcome => {
                let code = match outcome {
                    DecodeOutcome::NoKvSlot => 1,
                    DecodeOutcome::Failed(c) => c,
                    DecodeOutcome::Done | DecodeOutcome::Aborted => 0,
                };
                // Part of the batch may have been processed: drop it from the cache.
                for &(i, _, _) in &plan {
                    let (seq, kept) = (self.slots[i].seq, self.slots[i].tokens.len());
                    self.ctx.kv_remove(seq, kept as i32, -1);
                }
                let n_tokens = self.batch.len();
                if n_tokens > 1 {
                    // Try again with half the batch before failing anyone.
                    tracing::warn!(
                        code,
                        n_tokens,
                        "decode failed; retrying with half the batch"
                    );
                    self.batch_limit = Some(n_tokens / 2);
                    self.stats().decode_retries += 1;
                } else {
                    for (i, _, _) in plan {
                        self.fail_slot(i, EngineError::Decode { code });
                    }
                }
                return true;
            }
        }
        self.batch_limit = None;
        let n_ctx_seq = self.n_ctx_seq;
        let can_shift = self.context_can_shift;
        for (i, n, output) in plan {
            let slot = &mut self.slots[i];
            slot.last_used = Instant::now();
            match slot.phase {
                Phase::Generate { pending } => slot.tokens.push(pending),
                Phase::Prompt => {
                    let done = slot.tokens.len();
                    if let Some(run) = slot.running.as_mut() {
                        slot.tokens.extend_from_slice(&run.prompt[done..done + n]);
                        if output.is_some() {
                            run.prompt_done = Some(Instant::now());
                        }
                        if run.options.prompt_progress {
                            // Room for these was checked (`consumer_ready`).
                            if done == run.cached_tokens {
                                let _ = run
                                    .events
                                    .try_send(EngineEvent::Progress(run.progress_at(done)));
                            }
                            let _ = run
                                .events
                                .try_send(EngineEvent::Progress(run.progress_at(done + n)));
                        }
                    }
                }
                Phase::Idle => {}
            }
            let Some(index) = output else { continue };
            let Some(run) = slot.running.as_mut() else {
                continue;
            };
            if matches!(slot.phase, Phase::Prompt) && run.max_tokens == Some(0) {
                // Only the prompt was asked for (to cache it): no token is sampled.
                self.finish_slot(i, FinishReason::Length);
                continue;
            }
            let token = match (run.argmax, self.ctx.logits(index as i32)) {
                // Greedy without penalties: the most likely token, without building llama.cpp's
                // candidate array over the whole vocabulary.
                (true, Some(logits)) => argmax(logits),
                _ => run.sampler.sample(&self.ctx, index as i32, &self.model),
            };
            // A grammar with no way on ends the answer as an end of generation would.
            let eog = self.model.is_end_of_generation(token) || run.sampler.grammar_stuck();
            let probs = match (run.n_probs, self.ctx.logits(index as i32)) {
                (n, _) if n > 0 && !eog && run.post_sampling => Some(
                    super::logprobs::post_sampling(run.sampler.kept(), token, n, &self.model),
                ),
                (n, Some(logits)) if n > 0 && !eog => {
                    Some(super::logprobs::of(logits, token, n, &self.model))
                }
                _ => None,
            };
            let piece = if eog {
                Vec::new()
            } else {
                self.model.token_to_piece(token, false)
            };
            match slot.accept_sample(token, eog, &piece, probs, n_ctx_seq, can_shift) {
                Step::Continue(t) => {
                    slot.phase = Phase::Generate { pending: t };
                    self.stats().tokens_out += 1;
                }
                Step::Finished(reason) => {
                    if reason != FinishReason::EndOfGeneration {
                        self.stats().tokens_out += 1;
                    }
                    self.finish_slot(i, reason);
                }
            }
        }
        true
    }

    /// Puts the chosen slots' tokens into the batch in ascending sequence order and returns
    /// the plan: (slot, number of tokens added, batch index of its output if any).
    ///
    /// The order matters: with one KV stream per sequence, llama.cpp splits a batch into
    /// micro-batches of consecutive, increasing sequence ids (`split_equal` with `sequential`),
    /// so a batch in rotated order (3, 4, 0, 1, 2) would be computed as two graphs, reading
    /// every weight twice.
    fn fill_batch(&mut self, mut chosen: Vec<Chosen>) -> Vec<(usize, usize, Option<usize>)> {
        chosen.sort_by_key(|c| self.slots[c.slot()].seq);
        let mut plan = Vec::with_capacity(chosen.len());
        for c in chosen {
            match c {
                Chosen::Generate { slot, pending } => {
                    let pos = self.slots[slot].tokens.len() as i32;
                    self.batch.push(pending, pos, self.slots[slot].seq, true);
                    plan.push((slot, 1, Some(self.batch.len() - 1)));
                }
                Chosen::Prompt {
                    slot,
                    done,
                    n,
                    last,
                } => {
                    let seq = self.slots[slot].seq;
                    let Some(run) = self.slots[slot].running.as_mut() else {
                        continue;
                    };
                    run.prompt_started.get_or_insert_with(Instant::now);
                    for (k, &t) in run.prompt[done..done + n].iter().enumerate() {
                        self.batch.push(t, (done + k) as i32, seq, false);
                    }
                    let output = last.then(|| {
                        self.batch.set_last_logits(true);
                        self.batch.len() - 1
                    });
                    plan.push((slot, n, output));
                }
            }
        }
        plan
    }

    fn finish_slot(&mut self, i: usize, reason: FinishReason) {
        if self.slots[i].is_idle() {
            return;
        }
        // Count first: a consumer that sees the end may read the figures at once.
        {
            let slot = &self.slots[i];
            let length = slot.tokens.len() as u64;
            let times = slot.running.as_ref().map(|run| {
                let prompt = match (run.prompt_started, run.prompt_done) {
                    (Some(start), Some(done)) => (done - start).as_secs_f64(),
                    _ => 0.0,
                };
                let generation = run.prompt_done.map_or(0.0, |t| t.elapsed().as_secs_f64());
                (prompt, generation, run.generated.saturating_sub(1) as u64)
            });
            let mut stats = self.stats();
            stats.finished += 1;
            // The slot is free once its consumer sees the end (`publish` recounts later).
            stats.active = stats.active.saturating_sub(1);
            if reason == FinishReason::Cancelled {
                stats.cancelled += 1;
            }
            stats.tokens_max = stats.tokens_max.max(length);
            if let Some((prompt, generation, steps)) = times {
                stats.prompt_seconds += prompt;
                stats.generation_seconds += generation;
                stats.generation_steps += steps;
            }
        }
        self.end_slot(i, reason);
    }

    fn fail_slot(&mut self, i: usize, error: EngineError) {
        {
            let running = !self.slots[i].is_idle();
            let mut stats = self.stats();
            stats.finished += 1;
            if running {
                stats.active = stats.active.saturating_sub(1);
            }
        }
        if let Some(run) = self.slots[i].running.take() {
            let undelivered = Undelivered::send(run.events, vec![EngineEvent::Failed(error)]);
            if !undelivered.pending.is_empty() {
                self.undelivered.push(undelivered);
            }
        }
        self.slots[i].phase = Phase::Idle;
        self.clear_slot(i);
        self.requeue_preempted();
    }

    /// Makes room in slot `i`'s full context: keeps its first `n_keep` tokens, drops the oldest
    /// half of the rest and moves what follows back (llama.cpp's context shift). False when
    /// shifting is off or the cache cannot shift.
    fn shift_context(&mut self, i: usize) -> bool {
        if !self.context_can_shift {
            return false;
        }
        let (seq, n) = (self.slots[i].seq, self.slots[i].tokens.len());
        let n_keep = (self.shared.config.n_keep as usize).min(n.saturating_sub(2));
        let n_discard = (n - n_keep) / 2;
        if n_discard == 0 {
            return false;
        }
        let (keep, cut) = (n_keep as i32, (n_keep + n_discard) as i32);
        if !self.ctx.kv_remove(seq, keep, cut) {
            return false;
        }
        self.ctx.kv_shift(seq, cut, -1, -(n_discard as i32));
        self.slots[i].tokens.drain(n_keep..n_keep + n_discard);
        let session = Self::session(seq);
        let kept = self.slots[i].tokens.len() as u32;
        let _ = self.pool.release_session(session);
        let _ = self.pool.create_session(session);
        let _ = self.pool.grow_to(session, kept);
        self.stats().context_shifts += 1;
        tracing::debug!(seq, n_keep, n_discard, "context shifted");
        true
    }

    /// Frees slot `i` and keeps its request to run again later (from its whole prompt), so the
    /// others can use its blocks.
    fn preempt_slot(&mut self, i: usize) {
        let Some(run) = self.slots[i].running.take() else {
            return;
        };
        tracing::debug!(seq = self.slots[i].seq, "preempting a blocked prompt");
        self.stats().preempted += 1;
        self.preempted.push(Job {
            request: EngineRequest {
                prompt: run.prompt,
                options: run.options,
                cancel: run.cancel,
            },
            events: run.events,
            submitted: run.submitted,
        });
        self.slots[i].phase = Phase::Idle;
        self.clear_slot(i);
    }

    fn publish(&mut self) {
        let queued = lock(&self.shared.queue).len();
        let active = self.slots.iter().filter(|s| !s.is_idle()).count();
        let idle_cached = self
            .slots
            .iter()
            .filter(|s| s.is_idle() && !s.tokens.is_empty())
            .count();
        let mut stats = self.stats();
        stats.queued = queued;
        stats.active = active;
        stats.idle_cached = idle_cached;
        stats.saved = self.saved.len();
        stats.blocks_used = self.pool.used_blocks();
        stats.blocks_free = self.pool.available_blocks();
        stats.kv_bytes_used = self.pool.used_bytes();
        stats.kv_bytes_total = self.pool.total_bytes();
    }
}
