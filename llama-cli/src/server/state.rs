//! What every handler shares: the engine, the model's prompt formatting, limits, the API key,
//! metrics, and the registry of requests in flight (cancelled together at the shutdown
//! deadline).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use llama_core::engine::{Engine, EngineRequest, EngineStats, ResponseStream};
use llama_core::metrics::BudgetCounters;
use llama_core::{CancelToken, ChatTemplate, Model};

use super::auth::ApiKey;
use super::error::ApiError;
use super::metrics::Metrics;
use super::openai::Defaults;

/// Request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body in bytes.
    pub max_body: usize,
    /// Requests that may wait for a sequence (the engine's queue).
    pub queue_capacity: usize,
    /// How long reading a request body may wait for its next piece
    /// ([`READ_TIMEOUT`](super::READ_TIMEOUT) unless configured).
    pub read_timeout: Duration,
}

/// The server's shared state.
pub struct AppState {
    /// The engine; taken out at shutdown.
    engine: RwLock<Option<Engine>>,
    /// The model (for tokenizing).
    pub model: Arc<Model>,
    /// The id `/v1/models` lists and responses carry.
    pub model_id: String,
    /// Every name the model answers to (`--alias a,b`), `model_id` first.
    pub aliases: Vec<String>,
    /// Informational tags (`--tags a,b`), listed by `/v1/models`.
    pub tags: Vec<String>,
    /// The chat template; `None`: the model has none (messages are joined as plain text).
    pub template: Option<ChatTemplate>,
    /// Defaults for fields requests leave out.
    pub defaults: Defaults,
    /// Limits.
    pub limits: Limits,
    /// The API key, if one is required.
    pub api_key: Option<ApiKey>,
    /// Request counters and histograms.
    pub metrics: Metrics,
    /// Planned vs actual memory.
    pub budget: BudgetCounters,
    /// Unix seconds at start.
    pub started: u64,
    stopping: AtomicBool,
    next_id: AtomicU64,
    inflight: Mutex<HashMap<u64, CancelToken>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("model_id", &self.model_id)
            .finish_non_exhaustive()
    }
}

/// The parts an [`AppState`] is made of.
pub struct StateParts {
    /// The running engine.
    pub engine: Engine,
    /// The model id.
    pub model_id: String,
    /// All the model's names (`model_id` among them).
    pub aliases: Vec<String>,
    /// The model's tags.
    pub tags: Vec<String>,
    /// The chat template.
    pub template: Option<ChatTemplate>,
    /// Request defaults.
    pub defaults: Defaults,
    /// Limits.
    pub limits: Limits,
    /// API key.
    pub api_key: Option<ApiKey>,
    /// Budget counters.
    pub budget: BudgetCounters,
}

impl AppState {
    /// The state for a started engine.
    pub fn new(parts: StateParts) -> AppState {
        let started = super::openai::unix_now();
        AppState {
            model: parts.engine.model().clone(),
            engine: RwLock::new(Some(parts.engine)),
            model_id: parts.model_id,
            aliases: parts.aliases,
            tags: parts.tags,
            template: parts.template,
            defaults: parts.defaults,
            limits: parts.limits,
            api_key: parts.api_key,
            metrics: Metrics::default(),
            budget: parts.budget,
            started,
            stopping: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// A new request id, unique in this process and unlikely to repeat across restarts.
    pub fn request_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{:x}{:06x}", self.started, n)
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Marks the beginning of shutdown: `/ready` answers 503 and new requests are refused.
    pub fn begin_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Submits a request to the engine; the returned guard keeps it registered for the
    /// shutdown deadline.
    pub fn submit(
        self: &Arc<Self>,
        request: EngineRequest,
    ) -> Result<(ResponseStream, Inflight), ApiError> {
        if self.is_stopping() {
            return Err(ApiError::shutting_down());
        }
        let cancel = request.cancel.clone();
        let stream = {
            let engine = self.engine.read().unwrap_or_else(|p| p.into_inner());
            let engine = engine.as_ref().ok_or_else(ApiError::shutting_down)?;
            engine.submit(request)?
        };
        let key = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock_inflight().insert(key, cancel);
        Ok((
            stream,
            Inflight {
                state: Arc::clone(self),
                key,
            },
        ))
    }

    /// The engine's figures, or `None` once it is stopped.
    pub fn stats(&self) -> Option<EngineStats> {
        let engine = self.engine.read().unwrap_or_else(|p| p.into_inner());
        engine.as_ref().map(Engine::stats)
    }

    /// Sequences the engine decodes together (llama-server's slots); 0 once it is stopped.
    pub fn parallel(&self) -> usize {
        let engine = self.engine.read().unwrap_or_else(|p| p.into_inner());
        engine
            .as_ref()
            .map_or(0, |e| e.config().n_parallel as usize)
    }

    /// Most tokens one request may hold (llama-server's `n_ctx` of a slot); 0 once stopped.
    pub fn ctx_per_slot(&self) -> usize {
        let engine = self.engine.read().unwrap_or_else(|p| p.into_inner());
        engine.as_ref().map_or(0, Engine::max_tokens_per_request)
    }

    /// Cancels every request in flight.
    pub fn cancel_all(&self) -> usize {
        let inflight = self.lock_inflight();
        for token in inflight.values() {
            token.cancel();
        }
        inflight.len()
    }

    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.lock_inflight().len()
    }

    /// Takes the engine out (for shutdown).
    pub fn take_engine(&self) -> Option<Engine> {
        self.engine
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn lock_inflight(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CancelToken>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keeps a request registered as in flight until dropped.
#[derive(Debug)]
pub struct Inflight {
    state: Arc<AppState>,
    key: u64,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.state.lock_inflight().remove(&self.key);
    }
}
