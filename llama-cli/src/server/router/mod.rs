//! `llama-cli serve` without `-m`: many models under one `--max-mem`, in one process.
//!
//! - [`sources`]: the models (the Hugging Face cache, `--models-dir`, `--models-preset`);
//! - [`pool`]: every model planned at start, loaded on first use on llama-core's run path,
//!   unloaded as llama-core's [`Policy`](llama_core::router::Policy) decides (least recently
//!   used idle models first, by planned bytes; never a busy, loading or pinned one), its idle
//!   sessions parked on disk and restored at its next load;
//! - [`front`]: `/v1/models`, `POST /models/load`, `POST /models/unload`, `/metrics`, and
//!   every other request handed to the named model's own application (the single-model
//!   server's handlers on that model's state);
//! - [`metrics`]: per-model loads, evictions, load time, resident bytes.
//!
//! Engines run side by side in this process (see docs/SERVER.md, "Many models"): one
//! address space, so the budget is the process's, and one `RLIMIT_DATA` backstop for all.

pub mod front;
pub mod metrics;
pub mod pool;
pub mod sources;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use llama_core::metrics::BudgetCounters;
use llama_core::process_memory::ProcessMemory;

use super::auth::ApiKey;
use super::state::Limits;
use super::state_dir::StateDir;
use super::{ServeError, READ_TIMEOUT};
use crate::commands::serve::ServeOptions;
use crate::options::RunOptions;
use pool::{Pool, PoolConfig};

/// Why the models cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// No model was found.
    #[error("no models to serve: give -m FILE, or --models-dir DIR, --models-preset FILE, or models in the Hugging Face cache (llama-cli pull)")]
    NoModels,
    /// The models directory could not be read.
    #[error("cannot read --models-dir {}: {message}", path.display())]
    ModelsDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The presets file is unreadable or invalid.
    #[error("invalid --models-preset {}: {message}", path.display())]
    Presets {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the table and key.
        message: String,
    },
    /// A preset names no model found and no file.
    #[error("preset models.{name} names no model found and sets no `model` or `hf-repo`")]
    PresetWithoutModel {
        /// The preset.
        name: String,
    },
    /// Two models share a name.
    #[error(transparent)]
    Duplicate(#[from] llama_core::router::DuplicateName),
    /// `--pin` names no model.
    #[error("--pin {0:?}: no such model")]
    UnknownPin(String),
    /// The pinned models cannot be loaded together.
    #[error("pinned model {id:?} cannot stay loaded: {reason}")]
    PinDoesNotFit {
        /// The model.
        id: String,
        /// The policy's reason.
        reason: String,
    },
    /// No budget is known.
    #[error("serve without -m needs --max-mem (the machine's memory could not be read)")]
    NoBudget,
    /// `--idle-unload` is not a duration.
    #[error("invalid --idle-unload {0:?}: expected a duration such as 90s, 10m or 1h")]
    IdleUnload(String),
}

impl From<RouterError> for crate::error::CliError {
    fn from(err: RouterError) -> Self {
        ServeError::from(err).into()
    }
}

/// What `serve` hands over without `-m`.
pub struct RouterParts {
    /// The run options (flags over the config file), the defaults of every model.
    pub run_options: RunOptions,
    /// The server's options (flags over the config file).
    pub serve: ServeOptions,
    /// Where to listen (every address of `--host`).
    pub addrs: Vec<SocketAddr>,
    /// The API key.
    pub api_key: Option<ApiKey>,
    /// Cross-origin settings (`--cors-*`), applied by the front to every route.
    pub cors: crate::server::cors::Cors,
}

/// What the front's handlers share.
pub struct RouterState {
    /// The models.
    pub pool: Arc<Pool>,
    /// The API key.
    pub api_key: Option<ApiKey>,
    /// The process's memory against `--max-mem`.
    pub budget: BudgetCounters,
    stopping: AtomicBool,
}

impl RouterState {
    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// The models of the Hugging Face cache, complete ones only; none when it cannot be read.
fn cache_models() -> Vec<(String, PathBuf)> {
    match llama_core::store::Store::from_env() {
        Ok(store) => store
            .list()
            .into_iter()
            .filter(|m| m.parts.0 >= m.parts.1)
            .map(|m| (m.name, m.path))
            .collect(),
        Err(err) => {
            eprintln!("note: not serving the Hugging Face cache: {err}");
            Vec::new()
        }
    }
}

/// Plans every model, then serves until SIGINT or SIGTERM.
pub fn run(parts: RouterParts) -> Result<(), crate::error::CliError> {
    let o = parts.serve.clone().over(ServeOptions::defaults());
    let settings = parts.run_options.clone().resolve()?;
    let idle_unload = match &o.idle_unload {
        Some(text) => Some(
            sources::parse_duration(text).ok_or_else(|| RouterError::IdleUnload(text.clone()))?,
        ),
        None => None,
    };
    let presets = match &o.models_preset {
        Some(path) => sources::load_presets(path)?,
        None => Default::default(),
    };
    let cache = if o.no_models_store.unwrap_or(false) {
        Vec::new()
    } else {
        cache_models()
    };
    let mut specs = sources::collect(cache, o.models_dir.as_deref(), presets)?;
    if specs.is_empty() {
        return Err(RouterError::NoModels.into());
    }
    let budget = match settings.max_mem {
        Some(b) => b.0,
        None => {
            // As the planner does for one model: the cgroup's limit, else the machine's
            // memory, less a margin.
            let machine = llama_core::machine::MachineMemory::read();
            let limit = machine.limit().ok_or(RouterError::NoBudget)?;
            let budget = limit.saturating_sub(llama_core::machine::default_margin(limit));
            eprintln!(
                "no --max-mem: serving under {} less a margin, {} (--max-mem sets another budget)",
                machine.describe(),
                llama_core::ByteSize(budget)
            );
            budget
        }
    };
    for name in o.pin.iter().flat_map(|p| p.split(',')).map(str::trim) {
        if name.is_empty() {
            continue;
        }
        let spec = specs
            .iter_mut()
            .find(|s| s.id == name || s.aliases.iter().any(|a| a == name))
            .ok_or_else(|| RouterError::UnknownPin(name.to_string()))?;
        spec.pin = true;
    }
    let state_dir = StateDir::prepare(o.state_dir.as_deref())?;
    llama_core::ffi::release_free_heap();
    let baseline = ProcessMemory::current().rss;
    // Every model runs in this process: one backstop for the whole budget, with room for the
    // stacks of the compute threads of as many models as may be loaded at once.
    let stacks = compute_thread_stacks(&specs, &parts.run_options, o.models_max);
    match llama_core::budget::install_data_limit_bytes(budget.saturating_add(stacks)) {
        Ok(limit) => tracing::info!(limit, "data segment limit set"),
        Err(err) => tracing::warn!("could not set the data segment limit: {err}"),
    }
    let mut run_options = parts.run_options.clone();
    run_options.model = None;
    run_options.hf_repo = None;
    let pool = Pool::new(
        specs,
        &run_options,
        o.parallel.unwrap_or(4),
        o.models_max,
        PoolConfig {
            limits: Limits {
                max_body: o.max_body.map_or(1 << 20, |b| b.0 as usize),
                queue_capacity: o.queue.unwrap_or(64),
                read_timeout: READ_TIMEOUT,
            },
            queue: o.queue.unwrap_or(64),
            max_tokens_cap: o.max_tokens_cap,
            load_timeout: Duration::from_secs_f64(
                o.load_timeout.unwrap_or(120.0).clamp(0.1, 86400.0),
            ),
            state_root: state_dir.path().to_path_buf(),
            budget,
            baseline,
        },
    )?;
    {
        let policy = pool.policy();
        for i in policy.pinned_unloaded() {
            if let Some(refusal) = policy.refusal(i) {
                return Err(RouterError::PinDoesNotFit {
                    id: pool.catalog.get(i).id.clone(),
                    reason: refusal.to_string(),
                }
                .into());
            }
        }
    }
    eprintln!(
        "serving {} model(s) under --max-mem {} ({} for models, {} baseline)",
        pool.catalog.len(),
        llama_core::ByteSize(budget),
        llama_core::ByteSize(pool.policy().capacity()),
        llama_core::ByteSize(pool.config.baseline)
    );
    let state = Arc::new(RouterState {
        pool: Arc::new(pool),
        api_key: parts.api_key,
        budget: BudgetCounters::new(Some(budget), None),
        stopping: AtomicBool::new(false),
    });
    let shutdown_timeout = Duration::from_secs_f64(o.shutdown_timeout.unwrap_or(10.0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(2, 4),
        )
        .thread_name("llama-http")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let result = runtime.block_on(serve(
        Arc::clone(&state),
        &parts.addrs,
        parts.cors,
        shutdown_timeout,
        idle_unload,
    ));
    state.pool.stop_all();
    runtime.shutdown_timeout(Duration::from_secs(1));
    drop(state_dir);
    result.map_err(Into::into)
}

async fn serve(
    state: Arc<RouterState>,
    addrs: &[SocketAddr],
    cors: crate::server::cors::Cors,
    shutdown_timeout: Duration,
    idle_unload: Option<Duration>,
) -> Result<(), ServeError> {
    let listeners = super::http::bind_all(addrs).await?;
    let background = tokio::spawn({
        let state = Arc::clone(&state);
        async move {
            let pinned = state.pool.policy().pinned_unloaded();
            for i in pinned {
                if let Err(err) = state.pool.ensure_loaded(i).await {
                    eprintln!("warning: pinned model: {}", err.message);
                }
            }
            loop {
                state.budget.observe();
                if let Some(after) = idle_unload {
                    state.pool.unload_idle(after).await;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = front::router(Arc::clone(&state)).layer(cors);
    let mut server = super::http::serve_all(listeners, app, READ_TIMEOUT, stop_rx);
    let early = tokio::select! {
        result = &mut server => Some(result),
        _ = super::shutdown::signal() => None,
    };
    if let Some(result) = early {
        background.abort();
        return result
            .map_err(|e| ServeError::Serve(std::io::Error::other(e)))?
            .map_err(|e| ServeError::Serve(std::io::Error::other(e)));
    }
    eprintln!(
        "shutting down: {} request(s) in flight, waiting up to {:.1} s",
        state.pool.inflight(),
        shutdown_timeout.as_secs_f64()
    );
    state.stopping.store(true, Ordering::SeqCst);
    state.pool.begin_stopping();
    let _ = stop_tx.send(true);
    let finished = tokio::select! {
        result = tokio::time::timeout(shutdown_timeout, &mut server) => result.is_ok(),
        _ = super::shutdown::signal() => false,
    };
    if !finished {
        let n = state.pool.cancel_all();
        eprintln!("shutdown: cancelled {n} request(s) still running");
        if tokio::time::timeout(Duration::from_secs(2), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
    }
    background.abort();
    Ok(())
}

/// Address space the compute threads' stacks of the `models_max` models with the most threads
/// reserve (all of them without a limit): `RLIMIT_DATA` counts each stack before it is touched
/// ([`llama_core::budget::thread_stack_reservation`]).
fn compute_thread_stacks(
    specs: &[sources::ModelSpec],
    server_options: &RunOptions,
    models_max: Option<usize>,
) -> u64 {
    let mut threads: Vec<u64> = specs
        .iter()
        .map(|spec| {
            let options = spec.options.clone().over(server_options.clone());
            let generation = options
                .threads
                .unwrap_or_else(crate::options::default_threads);
            let batch = options.threads_batch.unwrap_or(generation);
            generation.max(batch).max(1) as u64
        })
        .collect();
    threads.sort_unstable_by(|a, b| b.cmp(a));
    let loaded = models_max.unwrap_or(threads.len()).max(1);
    threads
        .iter()
        .take(loaded)
        .sum::<u64>()
        .saturating_mul(llama_core::budget::thread_stack_reservation())
}
