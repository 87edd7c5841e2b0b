//! The second half of the run path: load what [`super::prepare`] decided and start the engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::arena::{ArenaCounters, LayerStreamer, Placement};
use crate::budget;
use crate::engine::{Engine, EngineConfig, EngineError};
use crate::ffi::{Context, Model, ModelMapping, StreamingLoad};
use crate::metrics::BudgetCounters;
use crate::planner::Plan;
use crate::ModelCacheSpec;

use super::{Prepared, RunError};

/// How the engine of a run is set up, beyond what was planned.
pub struct StartOptions<'a> {
    /// Requests that may wait for a free sequence.
    pub queue_capacity: usize,
    /// Where sessions evicted from the KV cache are saved (`None`: dropped).
    pub state_dir: Option<PathBuf>,
    /// Sees the load's progress from 0 to 1; returning false cancels the load.
    pub progress: Option<&'a mut dyn FnMut(f32) -> bool>,
    /// One KV pool for all sequences (llama-server's `--kv-unified`): any sequence may hold
    /// up to the whole planned context, instead of its share of it.
    pub kv_unified: bool,
}

impl Default for StartOptions<'_> {
    fn default() -> Self {
        StartOptions {
            queue_capacity: 64,
            state_dir: None,
            progress: None,
            kv_unified: false,
        }
    }
}

/// What layer streaming reports while the model runs.
#[derive(Debug, Clone)]
pub struct Streaming {
    /// The placement streamed with.
    pub placement: Placement,
    /// The streamer's counters.
    pub counters: Arc<ArenaCounters>,
}

/// A model loaded and its engine running.
#[derive(Debug)]
pub struct Running {
    /// The engine: the one generation loop.
    pub engine: Engine,
    /// The memory plan, with `--max-mem`.
    pub plan: Option<Plan>,
    /// Planned vs actual memory.
    pub counters: BudgetCounters,
    /// Layer streaming, when layers are streamed from disk.
    pub streaming: Option<Streaming>,
    /// Time spent loading the model and starting the engine.
    pub load_time: Duration,
}

/// A model loaded and a bare context on it (no engine), for commands that drive decode calls
/// themselves (`perplexity`, `batched-bench`).
#[derive(Debug)]
pub struct Opened {
    /// The context, sized as planned.
    pub context: Context,
    /// The memory plan, with `--max-mem`.
    pub plan: Option<Plan>,
    /// Planned vs actual memory.
    pub counters: BudgetCounters,
    /// Layer streaming, when layers are streamed from disk.
    pub streaming: Option<Streaming>,
    /// Time spent loading the model and creating the context.
    pub load_time: Duration,
}

/// The weights loaded as prepared, and the streamer that must watch the context's graph when
/// layers are streamed.
struct Weights {
    model: Arc<Model>,
    streamer: Option<LayerStreamer>,
    streaming: Option<Streaming>,
}

/// Installs the `RLIMIT_DATA` backstop (with a plan), loads the model (mapped without
/// `MAP_POPULATE` when layers are streamed) and sets up the layer streamer.
fn load_weights(
    prepared: &mut Prepared,
    progress: Option<&mut dyn FnMut(f32) -> bool>,
) -> Result<Weights, RunError> {
    let settings = &prepared.settings;
    if let Some(plan) = prepared.plan.as_ref().filter(|_| prepared.data_limit) {
        tracing::info!(plan = ?plan.breakdown, "memory plan");
        // Weights read into memory (`--no-mmap`) are anonymous memory too.
        let mapped = if prepared.params.load_mode.maps() {
            prepared.gguf.file_size()
        } else {
            0
        };
        let threads = settings.threads.max(settings.threads_batch).max(1) as u32;
        match budget::install_data_limit(plan, mapped, threads) {
            Ok(limit) => tracing::info!(limit, "data segment limit set"),
            Err(err) => tracing::warn!("could not set the data segment limit: {err}"),
        }
    }
    let streams = prepared.streams;
    let load = streams.then(StreamingLoad::begin);
    let model = Model::load_unchecked(&settings.model, &prepared.params, progress);
    let maps = load.map(StreamingLoad::finish).unwrap_or_default();
    let model = Arc::new(model?);
    if !streams {
        return Ok(Weights {
            model,
            streamer: None,
            streaming: None,
        });
    }
    let (Ok(ledger), Some(placement)) = (&prepared.ledger, &prepared.placement) else {
        return Err(RunError::StreamingUnavailable {
            reason: "the model's layers could not be placed".into(),
        });
    };
    let mapping =
        ModelMapping::of_model(&model, &maps).ok_or_else(|| RunError::StreamingUnavailable {
            reason: format!(
                "llama.cpp's mapping of {} was not found",
                settings.model.display()
            ),
        })?;
    // The streamer advises file ranges by their GGUF offsets: every weight must be there, or
    // streaming is refused before it touches anything.
    let checked = mapping
        .check_tensor_addresses(prepared.gguf.tensors())
        .map_err(|reason| RunError::StreamingUnavailable { reason })?;
    tracing::info!(checked, "tensor addresses match the GGUF offsets");
    tracing::info!(
        window = placement.window,
        pinned = placement.pinned_bytes,
        peak = placement.peak_bytes,
        "streaming layers"
    );
    let streamer = LayerStreamer::new(Arc::new(mapping), ledger.clone(), placement.clone());
    let streaming = Some(Streaming {
        placement: placement.clone(),
        counters: streamer.counters(),
    });
    Ok(Weights {
        model,
        streamer: Some(streamer),
        streaming,
    })
}

/// Logs the process's resident memory by kind (`-v`), to compare with the plan's parts.
fn log_process_memory(when: &str) {
    let now = crate::process_memory::ProcessMemory::current();
    tracing::info!(
        rss = now.rss,
        anon = now.rss_anon,
        file = now.rss_file,
        peak = now.peak_rss,
        "process memory {when}"
    );
}

fn counters_of(plan: &Option<Plan>) -> BudgetCounters {
    BudgetCounters::new(
        plan.as_ref().map(|p| p.budget),
        plan.as_ref().map(|p| p.breakdown),
    )
}

impl Prepared {
    /// Loads the model and starts the engine: the `RLIMIT_DATA` backstop first (with a plan),
    /// then the model (mapped without `MAP_POPULATE` when layers are streamed, with the layer
    /// streamer watching the graph), then the context and scheduler sized as planned.
    pub fn start(mut self, options: StartOptions<'_>) -> Result<Running, RunError> {
        let started = Instant::now();
        let cache = ModelCacheSpec::from_gguf(&self.gguf).map_err(|e| EngineError::Start {
            message: format!("{}: {e}", self.settings.model.display()),
        })?;
        let weights = load_weights(&mut self, options.progress)?;
        log_process_memory("after the model load");
        let Prepared {
            settings,
            gguf,
            ctx_params,
            plan,
            ..
        } = self;
        let n_seq = settings.n_seq.max(1);
        let mut config = EngineConfig::for_context(&ctx_params, n_seq, &cache).map_err(|e| {
            EngineError::Start {
                message: e.to_string(),
            }
        })?;
        if let Some(plan) = &plan {
            // The KV bytes llama.cpp's dry run reported for the planned context.
            config.kv_budget_bytes = plan.breakdown.kv;
        }
        config.state_dir = options.state_dir;
        if options.kv_unified {
            config.kv_unified = true;
            config.n_ctx_per_seq = ctx_params.n_ctx.max(1);
        }
        config.context_shift = settings.context_shift;
        for (path, scale) in &settings.loras {
            let adapter = crate::ffi::LoraAdapter::load(&weights.model, path)?;
            config.loras.push((Arc::new(adapter), *scale));
        }
        config.n_keep = settings.n_keep;
        config.queue_capacity = options.queue_capacity;
        config.model_fingerprint = gguf.fingerprint().ok();
        tracing::info!(
            n_seq,
            n_ctx_per_seq = config.n_ctx_per_seq,
            kv_budget_bytes = config.kv_budget_bytes,
            "starting the engine"
        );
        let engine = match weights.streamer {
            Some(streamer) => {
                Engine::start_with_observer(weights.model, &cache, config, Box::new(streamer))?
            }
            None => Engine::start(weights.model, &cache, config)?,
        };
        drop(gguf);
        log_process_memory("once the engine started");
        Ok(Running {
            engine,
            counters: counters_of(&plan),
            plan,
            streaming: weights.streaming,
            load_time: started.elapsed(),
        })
    }

    /// Loads the model as [`open_context`](Self::open_context) does and creates an embeddings
    /// context ([`crate::embedding::Embedder`]) sized as planned, pooling as `pooling` says.
    /// Layer streaming is refused: an embedder decodes whole inputs at once.
    pub fn open_embedder(
        mut self,
        pooling: crate::embedding::Pooling,
        progress: Option<&mut dyn FnMut(f32) -> bool>,
    ) -> Result<(crate::embedding::Embedder, BudgetCounters), RunError> {
        let weights = load_weights(&mut self, progress)?;
        if weights.streamer.is_some() {
            return Err(RunError::StreamingUnavailable {
                reason: "embeddings need the whole model resident; raise --max-mem".into(),
            });
        }
        let embedder =
            crate::embedding::Embedder::create(weights.model, &self.ctx_params, pooling)?;
        Ok((embedder, counters_of(&self.plan)))
    }

    /// Loads the model as [`start`](Self::start) does, then creates one context sized as
    /// planned (with the --lora adapters applied), without an engine.
    pub fn open_context(
        mut self,
        progress: Option<&mut dyn FnMut(f32) -> bool>,
    ) -> Result<Opened, RunError> {
        let started = Instant::now();
        let weights = load_weights(&mut self, progress)?;
        let mut adapters = Vec::new();
        for (path, scale) in &self.settings.loras {
            let adapter = crate::ffi::LoraAdapter::load(&weights.model, path)?;
            adapters.push((Arc::new(adapter), *scale));
        }
        let mut context = match weights.streamer {
            Some(streamer) => {
                Context::with_eval_observer(weights.model, &self.ctx_params, Box::new(streamer))
            }
            None => Context::new(weights.model, &self.ctx_params),
        }?;
        if !adapters.is_empty() && !context.set_loras(&adapters) {
            return Err(crate::error::ContextError::Adapters.into());
        }
        Ok(Opened {
            context,
            counters: counters_of(&self.plan),
            plan: self.plan,
            streaming: weights.streaming,
            load_time: started.elapsed(),
        })
    }
}
