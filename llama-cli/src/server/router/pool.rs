//! The models and their engines: planned once at start, loaded on first use on llama-core's
//! run path, unloaded (their idle sessions parked) when the [`Policy`] says so.
//!
//! Every model's plan is made before any model is loaded, with the whole `--max-mem` as its
//! budget. Its bytes for admission are the plan's total less the process's memory just before
//! it was planned (which the plan's overhead counts: the binary, llama.cpp's backend, the
//! plans made before). The process's baseline, with every plan made and no model loaded, is
//! counted once: the models' bytes together stay within `--max-mem` less that baseline.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use llama_core::process_memory::ProcessMemory;
use llama_core::router::{Acquire, Catalog, CatalogEntry, Policy, Refusal, UnloadRefusal, Wait};
use llama_core::run::{Prepared, StartOptions};
use llama_core::state_file::SavedSession;
use llama_core::TemplateChoice;

use super::sources::ModelSpec;
use super::RouterError;
use crate::options::{RunOptions, Settings};
use crate::server::error::ApiError;
use crate::server::openai::Defaults;
use crate::server::state::{AppState, Limits, StateParts};

/// A model's run settings and plan, made at start.
pub struct Planned {
    /// The resolved settings (`None`: they are invalid; the reason is the policy's).
    pub settings: Option<Settings>,
    /// Sequences decoded together.
    pub parallel: u32,
    /// The plan (`None`: it could not be planned; the reason is the policy's).
    pub prepared: Option<Prepared>,
}

/// A loaded model: its own server state (engine, template, defaults, metrics) and the
/// handlers on it.
#[derive(Clone)]
pub struct Loaded {
    /// Its state.
    pub state: Arc<AppState>,
    /// The single-model application over it.
    pub app: Router,
}

/// Per-model counters.
#[derive(Debug, Default)]
pub struct ModelCounters {
    /// Loads that succeeded.
    pub loads: AtomicU64,
    /// Loads that failed.
    pub load_failures: AtomicU64,
    /// Unloads to make room for another model.
    pub evictions: AtomicU64,
    /// Unloads after `--idle-unload`.
    pub idle_unloads: AtomicU64,
    /// Unloads asked for (`POST /models/unload`).
    pub manual_unloads: AtomicU64,
    /// Total load time, in microseconds.
    pub load_micros: AtomicU64,
    /// The last load's time, in microseconds.
    pub last_load_micros: AtomicU64,
    /// Sessions parked at unloads.
    pub sessions_parked: AtomicU64,
}

/// Why a model is unloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnloadReason {
    /// To make room.
    Evicted,
    /// Idle for `--idle-unload`.
    Idle,
    /// Asked for.
    Manual,
}

/// The server-wide settings the pool needs.
pub struct PoolConfig {
    /// Request limits for every model's state.
    pub limits: Limits,
    /// Requests waiting per model.
    pub queue: usize,
    /// `--max-tokens-cap`.
    pub max_tokens_cap: Option<usize>,
    /// How long a request waits for its model.
    pub load_timeout: Duration,
    /// One state directory per model under this one.
    pub state_root: PathBuf,
    /// `--max-mem`.
    pub budget: u64,
    /// The process's memory with no model loaded.
    pub baseline: u64,
}

/// Every model, its policy state and its engine.
pub struct Pool {
    /// Ids and aliases.
    pub catalog: Catalog,
    /// Where each model came from.
    pub sources: Vec<&'static str>,
    planned: Vec<Planned>,
    policy: Mutex<Policy>,
    loaded: Vec<Mutex<Option<Loaded>>>,
    parked: Vec<Mutex<Vec<SavedSession>>>,
    /// Counters per model.
    pub counters: Vec<ModelCounters>,
    changed: tokio::sync::Notify,
    /// Server-wide settings.
    pub config: PoolConfig,
    created: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    /// Plans every model (before any is loaded) and sets up the policy.
    pub fn new(
        specs: Vec<ModelSpec>,
        server_options: &RunOptions,
        server_parallel: u32,
        max_resident: Option<usize>,
        config: PoolConfig,
    ) -> Result<Pool, RouterError> {
        let mut catalog = Catalog::default();
        let mut planned = Vec::new();
        let mut sources = Vec::new();
        let mut totals = Vec::new();
        let mut config = config;
        for spec in &specs {
            let options = spec.options.clone().over(server_options.clone());
            let parallel = spec.parallel.unwrap_or(server_parallel);
            // The process as the planner finds it: its overhead counts this much again.
            llama_core::ffi::release_free_heap();
            let before = ProcessMemory::current().rss;
            let plan = plan_model(options.clone(), parallel, config.budget).map(
                |(settings, prepared, total)| (settings, prepared, total.saturating_sub(before)),
            );
            totals.push((options.model.clone().unwrap_or_default(), parallel, plan));
        }
        // The process with every plan made and no model loaded (llama.cpp's backend is up),
        // counted once.
        llama_core::ffi::release_free_heap();
        config.baseline = config.baseline.max(ProcessMemory::current().rss);
        let capacity = config.budget.saturating_sub(config.baseline);
        let mut policy = Policy::new(capacity, max_resident);
        let now = Instant::now();
        for (spec, (entry_path, parallel, plan)) in specs.into_iter().zip(totals) {
            let (settings, prepared, bytes) = match plan {
                Ok((settings, prepared, bytes)) => (Some(settings), Some(prepared), Ok(bytes)),
                Err(reason) => {
                    eprintln!("warning: model {}: {reason}", spec.id);
                    (None, None, Err(reason))
                }
            };
            let path = settings
                .as_ref()
                .and_then(|s| s.model.clone())
                .unwrap_or(entry_path);
            catalog.add(CatalogEntry {
                id: spec.id.clone(),
                aliases: spec.aliases.clone(),
                path,
            })?;
            policy.add(bytes, spec.pin, now);
            sources.push(spec.source);
            planned.push(Planned {
                settings,
                parallel,
                prepared,
            });
        }
        let n = planned.len();
        Ok(Pool {
            catalog,
            sources,
            planned,
            policy: Mutex::new(policy),
            loaded: (0..n).map(|_| Mutex::new(None)).collect(),
            parked: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
            counters: (0..n).map(|_| ModelCounters::default()).collect(),
            changed: tokio::sync::Notify::new(),
            config,
            created: super::super::openai::unix_now(),
        })
    }

    /// Unix seconds when the pool was made (`created` in `/v1/models`).
    pub fn created(&self) -> u64 {
        self.created
    }

    /// The policy (for reading).
    pub fn policy(&self) -> std::sync::MutexGuard<'_, Policy> {
        lock(&self.policy)
    }

    /// The model's planned bytes and plan breakdown, if planned.
    pub fn plan_of(&self, i: usize) -> Option<&Prepared> {
        self.planned[i].prepared.as_ref()
    }

    /// The model `name` names, or 404.
    pub fn find(&self, name: &str) -> Result<usize, ApiError> {
        self.catalog.find(name).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("no model {name:?}: GET /v1/models lists the models this server has"),
            )
            .with_code("model_not_found")
        })
    }

    /// Waits for model `i` to be loaded (loading it, after unloading idle ones, if needed)
    /// and counts a request on it until the lease is dropped.
    pub async fn acquire(self: &Arc<Self>, i: usize) -> Result<Lease, ApiError> {
        let deadline = Instant::now() + self.config.load_timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let step = self.policy().acquire(i, Instant::now());
            match step.map_err(|r| self.refused(i, &r))? {
                Acquire::Ready => {
                    let loaded = lock(&self.loaded[i]).clone();
                    let Some(loaded) = loaded else {
                        self.release(i);
                        return Err(ApiError::internal(
                            "the model is marked loaded without an engine",
                        ));
                    };
                    return Ok(Lease {
                        pool: Arc::clone(self),
                        index: i,
                        loaded,
                    });
                }
                Acquire::Load { evict } => self.load(i, evict).await?,
                Acquire::Wait(why) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(self.timed_out(i, why));
                    }
                    // Woken by any change; the short cap also covers a change missed between
                    // the policy's answer and the wait.
                    let wait = (deadline - now).min(Duration::from_millis(200));
                    let _ = tokio::time::timeout(wait, notified).await;
                }
            }
        }
    }

    /// Loads model `i` without counting a request (`POST /models/load`, pins).
    pub async fn ensure_loaded(self: &Arc<Self>, i: usize) -> Result<(), ApiError> {
        let lease = self.acquire(i).await?;
        drop(lease);
        Ok(())
    }

    fn refused(&self, i: usize, refusal: &Refusal) -> ApiError {
        ApiError::invalid(
            format!(
                "model {:?} cannot be loaded under --max-mem {}: {refusal}",
                self.catalog.get(i).id,
                llama_core::ByteSize(self.config.budget)
            ),
            Some("model"),
        )
        .with_code("model_does_not_fit")
    }

    fn timed_out(&self, i: usize, why: Wait) -> ApiError {
        let what = match why {
            Wait::Loading => "is still loading",
            Wait::Unloading => "is still being unloaded",
            Wait::Busy => "has no room: the models holding the memory are busy or loading",
        };
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            format!(
                "model {:?} {what} after {:.0} s (--load-timeout)",
                self.catalog.get(i).id,
                self.config.load_timeout.as_secs_f64()
            ),
        )
        .with_code("model_unavailable")
    }

    fn release(&self, i: usize) {
        self.policy().release(i, Instant::now());
        self.changed.notify_waiters();
    }

    /// Unloads `evict`, then loads model `i` (both on a blocking thread); the policy hears of
    /// every step.
    async fn load(self: &Arc<Self>, i: usize, evict: Vec<usize>) -> Result<(), ApiError> {
        let pool = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || {
            for k in evict {
                pool.unload_now(k, UnloadReason::Evicted);
            }
            pool.start_model(i)
        })
        .await
        .unwrap_or_else(|e| {
            // The thread did not report: the model is not loaded.
            self.policy().load_failed(i);
            Err(format!("the loading thread failed: {e}"))
        });
        self.changed.notify_waiters();
        result.map_err(|message| {
            ApiError::internal(format!(
                "loading model {:?} failed: {message}",
                self.catalog.get(i).id
            ))
        })
    }

    /// Loads model `i` on the calling thread; reports to the policy.
    fn start_model(&self, i: usize) -> Result<(), String> {
        let started = Instant::now();
        let result = self.try_start(i);
        let c = &self.counters[i];
        match result {
            Ok(loaded) => {
                let micros = started.elapsed().as_micros() as u64;
                c.loads.fetch_add(1, Ordering::Relaxed);
                c.load_micros.fetch_add(micros, Ordering::Relaxed);
                c.last_load_micros.store(micros, Ordering::Relaxed);
                *lock(&self.loaded[i]) = Some(loaded);
                self.policy().loaded(i, Instant::now());
                eprintln!(
                    "loaded model {} in {:.2} s",
                    self.catalog.get(i).id,
                    started.elapsed().as_secs_f64()
                );
                Ok(())
            }
            Err(message) => {
                c.load_failures.fetch_add(1, Ordering::Relaxed);
                self.policy().load_failed(i);
                eprintln!("loading model {} failed: {message}", self.catalog.get(i).id);
                Err(message)
            }
        }
    }

    fn try_start(&self, i: usize) -> Result<Loaded, String> {
        let planned = &self.planned[i];
        let prepared = planned
            .prepared
            .clone()
            .ok_or_else(|| "the model has no plan".to_string())?;
        let state_dir = self.config.state_root.join(format!("model-{i}"));
        let running = prepared
            .start(StartOptions {
                queue_capacity: self.config.queue,
                state_dir: Some(state_dir),
                progress: None,
                // -c is each model's context per sequence here (not split as with -m).
                kv_unified: false,
            })
            .map_err(|e| e.to_string())?;
        let engine = running.engine;
        engine.adopt_sessions(std::mem::take(&mut *lock(&self.parked[i])));
        let settings = planned
            .settings
            .as_ref()
            .ok_or_else(|| "the model has no settings".to_string())?;
        // The same template and grammar choice as `serve -m` (Jinja, --chat-template-file,
        // --grammar / --json-schema defaults).
        let template = match crate::chat_setup::template(engine.model(), settings)
            .map_err(|e| e.to_string())?
        {
            TemplateChoice::Template(t) => Some(t),
            TemplateChoice::PlainCompletion => None,
        };
        let grammar =
            crate::chat_setup::grammar(engine.model(), settings).map_err(|e| e.to_string())?;
        let n_ctx_per_seq = engine.config().n_ctx_per_seq as usize;
        let defaults = Defaults {
            sampling: settings.sampling.clone(),
            random_seed: settings.seed_was_random,
            max_tokens: settings.n_predict,
            stop: settings.stop.clone(),
            max_tokens_cap: self.config.max_tokens_cap.unwrap_or(n_ctx_per_seq),
            system: settings.system.clone(),
            grammar,
            reasoning_format: settings.reasoning_format,
            reasoning: settings.reasoning,
            verbose: false,
        };
        let state = Arc::new(AppState::new(StateParts {
            engine,
            model_id: self.catalog.get(i).id.clone(),
            // The front routes by every alias; the model's app answers to its id.
            aliases: vec![self.catalog.get(i).id.clone()],
            tags: Vec::new(),
            template,
            defaults,
            limits: self.config.limits.clone(),
            // The router checks the key before a request reaches a model.
            api_key: None,
            budget: running.counters,
        }));
        // CORS is the front's (outermost); the model's app adds none.
        let app = crate::server::app::router(
            Arc::clone(&state),
            crate::server::cors::Cors::none(),
            None,
            crate::server::native::NativeConfig::default(),
        );
        Ok(Loaded { state, app })
    }

    /// Unloads model `i` (marked unloading by the policy) on the calling thread: its engine
    /// parks its idle sessions, which the next load of the model takes over.
    pub fn unload_now(&self, i: usize, reason: UnloadReason) {
        let loaded = lock(&self.loaded[i]).take();
        if let Some(loaded) = loaded {
            if let Some(engine) = loaded.state.take_engine() {
                let sessions = engine.park(Duration::from_secs(5));
                self.counters[i]
                    .sessions_parked
                    .fetch_add(sessions.len() as u64, Ordering::Relaxed);
                lock(&self.parked[i]).extend(sessions);
            }
            drop(loaded);
            llama_core::ffi::release_free_heap();
        }
        let c = &self.counters[i];
        match reason {
            UnloadReason::Evicted => c.evictions.fetch_add(1, Ordering::Relaxed),
            UnloadReason::Idle => c.idle_unloads.fetch_add(1, Ordering::Relaxed),
            UnloadReason::Manual => c.manual_unloads.fetch_add(1, Ordering::Relaxed),
        };
        self.policy().unloaded(i);
        eprintln!(
            "unloaded model {} ({})",
            self.catalog.get(i).id,
            match reason {
                UnloadReason::Evicted => "to make room",
                UnloadReason::Idle => "idle",
                UnloadReason::Manual => "asked",
            }
        );
        self.changed.notify_waiters();
    }

    /// `POST /models/unload`.
    pub async fn unload(self: &Arc<Self>, i: usize) -> Result<(), UnloadRefusal> {
        self.policy().unload(i)?;
        let pool = Arc::clone(self);
        let _ = tokio::task::spawn_blocking(move || pool.unload_now(i, UnloadReason::Manual)).await;
        Ok(())
    }

    /// Unloads the models idle for `after` (called periodically).
    pub async fn unload_idle(self: &Arc<Self>, after: Duration) {
        let idle = self.policy().idle(Instant::now(), after);
        if idle.is_empty() {
            return;
        }
        let pool = Arc::clone(self);
        let _ = tokio::task::spawn_blocking(move || {
            for k in idle {
                pool.unload_now(k, UnloadReason::Idle);
            }
        })
        .await;
    }

    /// Stops every engine (shutdown).
    pub fn stop_all(&self) {
        for slot in &self.loaded {
            if let Some(loaded) = lock(slot).take() {
                loaded.state.begin_stopping();
                if let Some(engine) = loaded.state.take_engine() {
                    engine.shutdown(Duration::from_secs(1));
                }
            }
        }
    }

    /// Cancels every request in flight on every model.
    pub fn cancel_all(&self) -> usize {
        self.loaded
            .iter()
            .filter_map(|slot| lock(slot).clone())
            .map(|l| l.state.cancel_all())
            .sum()
    }

    /// Marks every loaded model's state as stopping (503 to new requests).
    pub fn begin_stopping(&self) {
        for slot in &self.loaded {
            if let Some(l) = lock(slot).as_ref() {
                l.state.begin_stopping();
            }
        }
    }

    /// Requests in flight, all models.
    pub fn inflight(&self) -> usize {
        (0..self.loaded.len())
            .map(|i| self.policy().view(i).inflight)
            .sum()
    }

    /// Sequences model `i` decodes together.
    pub fn parallel_of(&self, i: usize) -> u32 {
        self.planned[i].parallel
    }
}

/// Resolves a model's settings and plans it with the whole budget: the settings, the plan
/// and its total bytes.
fn plan_model(
    options: RunOptions,
    parallel: u32,
    budget: u64,
) -> Result<(Settings, Prepared, u64), String> {
    let settings = options.resolve().map_err(|e| e.to_string())?;
    let mut settings = crate::model_source::resolved(&settings).map_err(|e| e.to_string())?;
    // As with one model (and in each of llama-server's router children): -c is the context of
    // all of a model's sequences together, each gets its share.
    if settings.ctx_size > 0 {
        settings.ctx_size = (settings.ctx_size / parallel.max(1)).max(1);
    }
    let mut run = crate::runtime::run_settings(&settings, parallel).map_err(|e| e.to_string())?;
    run.ctx_is_total = true;
    // Served over HTTP: the server's part of the runtime margin, and a grammar any request
    // may carry.
    run.runtime.http_server = true;
    run.max_mem = Some(budget);
    let mut prepared = llama_core::run::prepare(&run).map_err(|e| e.to_string())?;
    // One backstop for the whole process (installed by the router), not one per model.
    prepared.data_limit = false;
    for note in &prepared.notes {
        eprintln!(
            "{}: {note}",
            settings
                .model
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    let Some(total) = prepared.plan.as_ref().map(|p| p.breakdown.total()) else {
        return Err("the planner made no plan".into());
    };
    Ok((settings, prepared, total))
}

/// A request's hold on a loaded model: counted in flight until dropped.
pub struct Lease {
    pool: Arc<Pool>,
    index: usize,
    /// The model.
    pub loaded: Loaded,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.release(self.index);
    }
}
