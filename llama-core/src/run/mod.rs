//! The one run path every model-running command takes (`prompt`, `chat`, `plan`, `serve`):
//!
//! 1. [`prepare`] decides everything before a model is loaded: it checks the file with the
//!    GGUF reader, fits GPU layers (`-ngl`, `--max-vram`), plans memory under `--max-mem` with
//!    llama.cpp's no-alloc dry run (re-planning with only a streaming window of the weights
//!    resident when they do not fit and `--stream` allows it) and places every layer in a tier.
//!    A request that cannot fit is refused here, before anything is allocated.
//! 2. [`Prepared::start`] then installs the `RLIMIT_DATA` backstop, loads the model (without
//!    `MAP_POPULATE` when layers are streamed), attaches the layer streamer and starts the
//!    [`Engine`](crate::engine::Engine), whose scheduler is the one generation loop for the
//!    terminal (one sequence) and the server (`--parallel` sequences).
//!
//! Streaming that was planned but cannot be set up is an error, never a silent resident load.

mod gpu;
mod start;

use std::path::PathBuf;

use crate::arena::{ArenaError, Ledger, Placement, StreamMode};
use crate::budget::{self, LlamaSizer};
use crate::cache_spec::KvCacheType;
use crate::error::{LoadError, ParamError};
use crate::ffi::{ContextParams, FlashAttention, ModelParams};
use crate::gguf::GgufModel;
use crate::machine::MachineMemory;
use crate::memory_probe::ProbeError;
use crate::planner::{self, Degradation, FlashAttnMode, Plan, PlanError, PlanRequest, Suggestion};

pub use self::start::{Opened, Running, StartOptions, Streaming};

/// What a run asks for, as the flags and config file resolved it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    /// The GGUF model file.
    pub model: PathBuf,
    /// Context per sequence in tokens (0: the model's training context).
    pub ctx_size: u32,
    /// Sequences decoded together (1 for `prompt` and `chat`; `--parallel` for `serve`).
    pub n_seq: u32,
    /// Logical batch size.
    pub batch_size: u32,
    /// Physical batch size.
    pub ubatch_size: u32,
    /// Threads for generation.
    pub threads: i32,
    /// Threads for prompt processing (`-tb`).
    pub threads_batch: i32,
    /// How the weights are loaded (`--no-mmap`, `--mlock`).
    pub load_mode: crate::ffi::LoadMode,
    /// When a conversation fills its context, drop the oldest half of what follows the
    /// first `n_keep` tokens and go on (`--context-shift`), instead of ending the answer.
    pub context_shift: bool,
    /// Tokens kept at the start of a conversation when the context shifts (`--keep`).
    pub n_keep: u32,
    /// LoRA adapters to apply, with their scales (`--lora`, `--lora-scaled`).
    pub loras: Vec<(PathBuf, f32)>,
    /// Layers to offload to a GPU (`-ngl`; negative: all).
    pub gpu_layers: i32,
    /// The memory budget in bytes (`--max-mem`).
    pub max_mem: Option<u64>,
    /// The GPU memory budget in bytes (`--max-vram`).
    pub max_vram: Option<u64>,
    /// Refuse instead of degrading.
    pub strict: bool,
    /// K cache type.
    pub type_k: KvCacheType,
    /// V cache type.
    pub type_v: KvCacheType,
    /// Flash attention.
    pub flash_attn: FlashAttention,
    /// Layer streaming.
    pub stream: StreamMode,
    /// Weights may be repacked into the CPU backend's extra buffer types.
    pub repack: bool,
    /// The AMX buffer type is offered too.
    pub amx: bool,
    /// Sliding-window layers get a cache of the whole context (`--swa-full`) instead of the
    /// window plus a micro-batch.
    pub swa_full: bool,
    /// An embeddings context made next to the engine's (`serve --embeddings`), planned with
    /// it.
    pub embeddings: Option<crate::embedding::EmbeddingsContext>,
    /// The user's `--ctx-size` is all sequences' context together (`serve`, as llama-server's
    /// `-c`), so degradations and suggestions name totals; `false`: per sequence.
    pub ctx_is_total: bool,
    /// What the process runs next to the model (a named chat template, an HTTP server), for
    /// the plan's runtime margin.
    pub runtime: budget::RuntimeExtras,
}

/// Why a run could not be prepared or started.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The model file is missing, unreadable or not a valid GGUF model, or llama.cpp could
    /// not load it.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A setting is out of range for this model.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// The request does not fit the memory budget (or planning failed).
    #[error(transparent)]
    Plan(#[from] PlanError<ProbeError>),
    /// The weights do not fit and even streaming them (the global tensors plus one layer
    /// resident) does not fit the budget either.
    #[error("does not fit even streaming layers from disk (the global tensors plus one layer of {layer} resident, weights {weights} in all): {source}", layer = crate::ByteSize(*.layer_bytes), weights = crate::ByteSize(*.weight_bytes))]
    StreamingDoesNotFit {
        /// Bytes of the largest layer.
        layer_bytes: u64,
        /// Bytes of all weights.
        weight_bytes: u64,
        /// The planner's refusal, with the smallest budget that works.
        #[source]
        source: PlanError<ProbeError>,
    },
    /// Streaming was planned (the weights do not fit `--max-mem`, or `--stream on`) but
    /// cannot be set up; loading the model resident instead would break the budget.
    #[error("layer streaming was planned but cannot be set up: {reason}")]
    StreamingUnavailable {
        /// Why.
        reason: String,
    },
    /// The engine (the context and its scheduler) could not start.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// A bare context (no engine) could not be created.
    #[error(transparent)]
    Context(#[from] crate::error::ContextError),
}

/// Everything decided before the model is loaded.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The settings it was prepared for.
    pub settings: RunSettings,
    /// The model's GGUF description.
    pub gguf: GgufModel,
    /// Model parameters (GPU layers resolved; no repacking when streaming).
    pub params: ModelParams,
    /// Context parameters for all sequences together (from the plan when there is one).
    pub ctx_params: ContextParams,
    /// The memory plan, with `--max-mem`.
    pub plan: Option<Plan>,
    /// The layers of the model, or why they cannot be placed (a split model, no layers).
    pub ledger: Result<Ledger, ArenaError>,
    /// The tier of every layer.
    pub placement: Option<Placement>,
    /// Whether layers are streamed from disk.
    pub streams: bool,
    /// Bytes of weights repacked into the CPU backend's extra buffer types, when planned.
    pub repacked_bytes: Option<u64>,
    /// The machine's memory and the process's cgroup limit, which bound the budget.
    pub machine: MachineMemory,
    /// What the user should know: degradations, streaming, GPU fallbacks. Warnings start
    /// with `warning:`.
    pub notes: Vec<String>,
    /// Whether starting installs the plan's `RLIMIT_DATA` backstop (`true` from
    /// [`prepare`]); a process that runs several models under one budget installs its own
    /// limit for all of them and clears this.
    pub data_limit: bool,
}

impl Prepared {
    /// Context per sequence in tokens, as planned.
    pub fn n_ctx_per_seq(&self) -> u32 {
        (self.ctx_params.n_ctx / self.settings.n_seq.max(1)).max(1)
    }
}

/// The model's training context (4096 when the metadata does not say).
pub fn training_context(gguf: &GgufModel) -> u32 {
    gguf.context_length()
        .unwrap_or(4096)
        .min(u64::from(u32::MAX)) as u32
}

/// The planner's request for these settings: all sequences' context together.
pub fn plan_request(settings: &RunSettings, budget: u64, n_ctx_train: u32) -> PlanRequest {
    PlanRequest {
        n_ctx: settings.ctx_size.saturating_mul(settings.n_seq.max(1)),
        n_seq: settings.n_seq.max(1),
        n_batch: settings.batch_size,
        n_ubatch: settings.ubatch_size,
        type_k: settings.type_k,
        type_v: settings.type_v,
        flash_attn: match settings.flash_attn {
            FlashAttention::Auto => FlashAttnMode::Auto,
            FlashAttention::On => FlashAttnMode::On,
            FlashAttention::Off => FlashAttnMode::Off,
        },
        strict: settings.strict,
        gpu_layers: settings.gpu_layers,
        ..PlanRequest::new(budget, n_ctx_train)
    }
}

/// The context the settings ask for when no budget plans it: `-c 0` is the model's training
/// context (at least 256), times the sequences.
fn requested_context_params(settings: &RunSettings, n_ctx_train: u32) -> ContextParams {
    let per_seq = match settings.ctx_size {
        0 => n_ctx_train.max(256),
        n => n,
    };
    let n_seq = settings.n_seq.max(1);
    ContextParams {
        n_ctx: per_seq.saturating_mul(n_seq),
        n_batch: settings.batch_size,
        n_ubatch: settings.ubatch_size,
        n_seq_max: n_seq,
        // Sequences sample only after their last token: one logits row each per decode.
        n_outputs_max: n_seq,
        n_threads: settings.threads,
        n_threads_batch: settings.threads_batch,
        flash_attention: settings.flash_attn,
        type_k: settings.type_k,
        type_v: settings.type_v,
        kv_unified: false,
        swa_full: settings.swa_full,
    }
}

/// Model parameters for where the weights go: `--no-repack`, `--amx`, `--no-mmap`, `--mlock`.
pub fn weight_params(settings: &RunSettings) -> ModelParams {
    ModelParams {
        repack: settings.repack,
        amx: settings.amx,
        load_mode: settings.load_mode,
        ..ModelParams::default()
    }
}

/// A context degradation as the user asked for it: per sequence.
fn per_sequence(d: Degradation, n_seq: u32) -> Degradation {
    match d {
        Degradation::Context { from, to } => Degradation::Context {
            from: from / n_seq,
            to: to / n_seq,
        },
        other => other,
    }
}

/// A planning error with its suggested `--ctx-size` per sequence.
fn per_sequence_error(err: PlanError<ProbeError>, n_seq: u32) -> PlanError<ProbeError> {
    match err {
        PlanError::DoesNotFit {
            required,
            budget,
            breakdown,
            suggestion: Suggestion::Reconfigure { changes },
        } if n_seq > 1 => PlanError::DoesNotFit {
            required,
            budget,
            breakdown,
            suggestion: Suggestion::Reconfigure {
                changes: changes
                    .into_iter()
                    .map(|d| per_sequence(d, n_seq))
                    .collect(),
            },
        },
        other => other,
    }
}

fn stream_param(err: impl std::fmt::Display, expected: &'static str) -> ParamError {
    ParamError {
        name: "stream",
        value: err.to_string(),
        expected,
    }
}

/// Decides how to run `settings` without loading the model (see the module docs).
pub fn prepare(settings: &RunSettings) -> Result<Prepared, RunError> {
    prepare_with_outputs(settings, settings.n_seq.max(1))
}

/// [`prepare`] for a context whose decode calls produce up to `n_outputs_max` logits rows
/// (generation needs one per sequence; perplexity half of every chunk it decodes): the output
/// buffer is planned, and created, for that many.
pub fn prepare_with_outputs(
    settings: &RunSettings,
    n_outputs_max: u32,
) -> Result<Prepared, RunError> {
    let path = &settings.model;
    let mut gguf = crate::check_model_file(path)?;
    // The vocabulary is checked; llama.cpp reads its own copy of it, so ours goes before the
    // baseline is measured and the model is loaded.
    gguf.shed_large_arrays();
    // LoRA adapters are read into memory: their bytes count as weights.
    let mut adapter_bytes = 0u64;
    for (adapter, _) in &settings.loras {
        let meta = std::fs::metadata(adapter).map_err(|_| LoadError::NotFound {
            path: adapter.clone(),
        })?;
        adapter_bytes += meta.len();
    }
    let n_ctx_train = training_context(&gguf);
    let n_seq = settings.n_seq.max(1);
    // How a context degradation is told: per sequence, or (serve) as the total `-c`.
    let shown_seq = if settings.ctx_is_total { 1 } else { n_seq };
    let ledger = Ledger::from_gguf(&gguf);
    let mut notes = Vec::new();
    let requested = ContextParams {
        n_outputs_max,
        ..requested_context_params(settings, n_ctx_train)
    };
    let n_gpu = gpu::gpu_layers(
        settings,
        &gguf,
        ledger.as_ref().ok(),
        &requested,
        &mut notes,
    );
    let params = ModelParams {
        n_gpu_layers: n_gpu,
        ..weight_params(settings)
    };
    let machine = MachineMemory::read();
    let budget = effective_budget(settings.max_mem, &machine, &mut notes);
    let mut repacked_bytes = None;
    let (ctx_params, mut plan) = match budget {
        None => (requested, None),
        Some(budget) => {
            let request = PlanRequest {
                gpu_layers: n_gpu,
                ..plan_request(settings, budget, n_ctx_train)
            };
            // One sizer (one dry-run model, one baseline measurement) serves every attempt.
            let choices = budget::RunChoices {
                threads: settings.threads,
                threads_batch: settings.threads_batch,
                swa_full: settings.swa_full,
                flash_auto: settings.flash_attn == FlashAttention::Auto,
            };
            let mut sizer = LlamaSizer::new(path, &gguf, &params, settings.threads)
                .map_err(PlanError::Sizer)?
                .with_choices(choices)
                .with_extras(settings.runtime)
                .with_adapters(adapter_bytes)
                .with_outputs_max(n_outputs_max);
            if let Some(embeddings) = &settings.embeddings {
                sizer = sizer
                    .with_embeddings(embeddings)
                    .map_err(PlanError::Sizer)?;
            }
            repacked_bytes = Some(sizer.repacked_bytes());
            let kv_cap = context_cap(&gguf, settings, budget);
            let plan = match plan_capped(&request, &mut sizer, kv_cap) {
                Err(PlanError::DoesNotFit { .. }) if settings.stream != StreamMode::Off => {
                    // The weights do not fit: plan with only a streaming window of them resident.
                    let ledger = ledger
                        .as_ref()
                        .map_err(|e| stream_param(e, "a model whose layers can be streamed"))?;
                    sizer.stream_weights(ledger.minimum_budget());
                    let plan = plan_capped(&request, &mut sizer, kv_cap).map_err(|source| {
                        RunError::StreamingDoesNotFit {
                            layer_bytes: ledger.max_layer_bytes(),
                            weight_bytes: ledger.total_bytes(),
                            source: per_sequence_error(source, shown_seq),
                        }
                    })?;
                    notes.push(format!(
                        "the weights ({}) do not fit --max-mem {}; streaming layers from disk",
                        crate::ByteSize(ledger.total_bytes()),
                        crate::ByteSize(budget)
                    ));
                    plan
                }
                other => other.map_err(|e| per_sequence_error(e, shown_seq))?,
            };
            let parallel = if n_seq > 1 {
                format!(" with --parallel {n_seq}")
            } else {
                String::new()
            };
            notes.extend(plan.degraded.iter().map(|d| {
                format!(
                    "{} to fit --max-mem {}{parallel}",
                    per_sequence(*d, shown_seq),
                    planner::max_mem_arg(plan.budget)
                )
            }));
            let mut ctx_params = budget::context_params(&plan.candidate, &choices);
            ctx_params.n_outputs_max = n_outputs_max;
            if settings.flash_attn == FlashAttention::Auto
                && ctx_params.flash_attention == FlashAttention::On
            {
                notes.push(format!(
                    "flash attention on: the {} V cache the plan chose needs it",
                    plan.candidate.type_v.name()
                ));
            }
            (ctx_params, Some(plan))
        }
    };
    // The dry-run model is gone: give its memory back before the real load allocates its own.
    crate::ffi::release_free_heap();
    // Layer placement: what the budget leaves for weights after the anonymous memory.
    let weight_budget = plan.as_ref().map(|p| {
        p.budget
            .saturating_sub(p.breakdown.total() - p.breakdown.weights)
    });
    let n_gpu_layers = usize::try_from(n_gpu).unwrap_or(usize::MAX);
    let stream = match (&ledger, settings.stream) {
        (_, StreamMode::Off) => None,
        (Ok(ledger), mode) => mode
            .placement(ledger, n_gpu_layers, weight_budget)
            .map_err(|e| {
                stream_param(e, "a budget that holds the global tensors plus one layer")
            })?,
        (Err(err), StreamMode::On) => {
            return Err(stream_param(err, "a model whose layers can be streamed").into())
        }
        (Err(_), StreamMode::Auto) => None,
    };
    if stream.is_some() && !settings.load_mode.maps() {
        return Err(RunError::StreamingUnavailable {
            reason: "layers can only be streamed from a mapped file: drop --no-mmap".into(),
        });
    }
    if stream.is_some() && !crate::ffi::streaming_load_supported() {
        return Err(RunError::StreamingUnavailable {
            reason: "this build has no mmap interposer (it exists on 64-bit Linux only), so the model cannot be mapped without faulting it all in".into(),
        });
    }
    let streams = stream.is_some();
    let placement = match stream {
        Some(p) => Some(p),
        None => ledger
            .as_ref()
            .ok()
            .and_then(|l| Placement::plan_with_gpu(l, n_gpu_layers, u64::MAX).ok()),
    };
    if let (true, Some(plan), Some(placement)) = (streams, plan.as_mut(), placement.as_ref()) {
        // The planner counted the smallest window; the placement used what the budget left
        // (a wider window, pinned layers): plan with what will actually be resident.
        plan.breakdown.weights = placement.peak_bytes;
    }
    let params = ModelParams {
        // Repacked weights are copied into anonymous memory and cannot be streamed.
        repack: !streams && params.repack,
        ..params
    };
    Ok(Prepared {
        settings: settings.clone(),
        gguf,
        params,
        ctx_params,
        plan,
        ledger,
        placement,
        streams,
        repacked_bytes: repacked_bytes.filter(|_| !streams),
        machine,
        notes,
        data_limit: true,
    })
}

/// The budget to plan for: `--max-mem`, at most what the machine (or the process's cgroup) has;
/// without it, inside a cgroup with a memory limit, that limit less a margin. Says so in
/// `notes`.
pub(crate) fn effective_budget(
    max_mem: Option<u64>,
    machine: &MachineMemory,
    notes: &mut Vec<String>,
) -> Option<u64> {
    match (max_mem, machine.limit()) {
        (Some(asked), Some(limit)) if asked > limit => {
            notes.push(format!(
                "warning: --max-mem {} is more than {}; planning for {}",
                crate::ByteSize(asked),
                machine.describe(),
                crate::ByteSize(limit)
            ));
            Some(limit)
        }
        (Some(asked), _) => Some(asked),
        (None, _) => {
            let budget = machine.default_budget()?;
            notes.push(format!(
                "no --max-mem: planning for {} less a margin of {}, {} (--max-mem sets another budget)",
                machine.describe(),
                crate::ByteSize(machine.limit().unwrap_or(budget) - budget),
                crate::ByteSize(budget)
            ));
            Some(budget)
        }
    }
}

/// The largest context (a multiple of 256) whose KV cache alone fits `budget`, by arithmetic
/// from the model's cache spec; `None` when the model's cache cannot be described. The
/// planner's dry runs never go above it: a dry run at a context of many millions of cells
/// allocates llama.cpp's per-cell bookkeeping for real.
fn context_cap(gguf: &GgufModel, settings: &RunSettings, budget: u64) -> Option<u32> {
    let spec = crate::ModelCacheSpec::from_gguf(gguf).ok()?;
    let split = spec
        .kv_bytes_per_token_split(settings.type_k, settings.type_v)
        .ok()?;
    let capped_swa = !settings.swa_full && spec.sliding_window.is_some() && split.global > 0;
    let per_token = if capped_swa {
        split.global
    } else {
        split.global + split.sliding
    };
    let tokens = budget / per_token.max(1);
    let cap = (tokens / 256 * 256).min(u64::from(u32::MAX) / 256 * 256);
    Some((cap as u32).max(256))
}

/// [`planner::plan`] with the request's context, and the contexts the search tries, kept at
/// most `cap` (see [`context_cap`]). A request above the cap is planned from the cap; the
/// degradation then says it was reduced from what was asked. With `strict`, a request above
/// the cap is refused with the context that would fit.
fn plan_capped(
    request: &PlanRequest,
    sizer: &mut LlamaSizer,
    cap: Option<u32>,
) -> Result<Plan, PlanError<ProbeError>> {
    let asked = request.effective_n_ctx();
    let Some(cap) = cap.filter(|&c| asked > c || request.n_ctx_train > c) else {
        return planner::plan(request, sizer);
    };
    let capped = PlanRequest {
        n_ctx: asked.min(cap),
        n_ctx_train: request.n_ctx_train.min(cap),
        strict: request.strict && asked <= cap,
        ..request.clone()
    };
    let mut plan = planner::plan(&capped, sizer)?;
    if asked > cap {
        match plan
            .degraded
            .iter_mut()
            .find(|d| matches!(d, Degradation::Context { .. }))
        {
            Some(Degradation::Context { from, .. }) => *from = asked,
            _ => plan.degraded.insert(
                0,
                Degradation::Context {
                    from: asked,
                    to: plan.candidate.n_ctx,
                },
            ),
        }
        if request.strict {
            let breakdown = crate::planner::Breakdown {
                kv: (plan.breakdown.kv / u64::from(plan.candidate.n_ctx.max(1)))
                    .saturating_mul(u64::from(asked)),
                ..plan.breakdown
            };
            return Err(PlanError::DoesNotFit {
                required: breakdown.total(),
                budget: request.budget,
                breakdown,
                suggestion: Suggestion::Reconfigure {
                    changes: plan.degraded,
                },
            });
        }
    }
    Ok(plan)
}
