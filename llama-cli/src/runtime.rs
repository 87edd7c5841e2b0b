//! Shared steps of the model-running commands: settings from flags and config, loading the
//! model with a progress bar, creating the session, printing figures.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_core::budget;
use llama_core::metrics::BudgetCounters;
use llama_core::planner::{FlashAttnMode, Plan, PlanRequest};
use llama_core::{
    ContextParams, FlashAttention, GenerationStats, Model, ModelParams, ProcessMemory, Session,
};

use crate::cli::ConfigArgs;
use crate::error::CliError;
use crate::options::{RunOptions, Settings};

/// Layers flags over the config file over defaults. With `--print-config`, prints the result
/// to stdout and returns `None`.
pub fn settings(config: &ConfigArgs, flags: RunOptions) -> Result<Option<Settings>, CliError> {
    let file = match &config.config {
        Some(path) => crate::config::load(path)?,
        None => RunOptions::default(),
    };
    let settings = flags.over(file).resolve()?;
    if config.print_config {
        let text = toml::to_string_pretty(&settings).unwrap_or_else(|e| format!("# {e}\n"));
        std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?;
        return Ok(None);
    }
    Ok(Some(settings))
}

/// A model loaded and a session ready to generate.
pub struct Loaded {
    /// The session.
    pub session: Session,
    /// Time spent planning, loading the model and creating the context.
    pub load_time: Duration,
    /// The memory plan, when a budget was given.
    pub plan: Option<Plan>,
    /// Planned vs actual memory.
    pub counters: BudgetCounters,
    /// The layer streaming in force, when layers are streamed from disk.
    pub streaming: Option<Streaming>,
}

/// What `--stats` reports of layer streaming.
pub struct Streaming {
    /// The placement streamed with.
    pub placement: llama_core::arena::Placement,
    /// The streamer's counters.
    pub counters: Arc<llama_core::arena::ArenaCounters>,
}

/// The planner's request for these settings.
pub fn plan_request(settings: &Settings, budget: u64, n_ctx_train: u32) -> PlanRequest {
    PlanRequest {
        n_ctx: settings.ctx_size,
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

/// The GPU layers to use: `--gpu-layers`, or with `--max-vram` as many as fit in it (and in the
/// device's free memory). A build without a GPU backend, or a machine without a GPU device,
/// runs on the CPU with a warning when GPU layers were asked for.
pub fn gpu_layers(
    settings: &Settings,
    gguf: &llama_core::gguf::GgufModel,
    ledger: Option<&llama_core::arena::Ledger>,
    ctx_params: &ContextParams,
    notes: &mut Vec<String>,
) -> i32 {
    let asked = settings.gpu_layers != 0 || settings.max_vram.is_some();
    if !asked {
        return 0;
    }
    if llama_sys::compiled_gpu_backends().is_empty() {
        notes.push(
            "warning: this build has no GPU backend; ignoring --gpu-layers and --max-vram and running on the CPU (rebuild with --features cuda, metal or vulkan)".to_string(),
        );
        return 0;
    }
    let free = llama_core::SystemInfo::query()
        .devices
        .iter()
        .filter(|d| d.kind == "gpu" || d.kind == "igpu")
        .map(|d| d.free_bytes)
        .max();
    let Some(free) = free else {
        notes.push("warning: no GPU device found; running on the CPU".to_string());
        return 0;
    };
    let Some(max_vram) = settings.max_vram else {
        return settings.gpu_layers;
    };
    let Some(ledger) = ledger else {
        notes.push(
            "warning: --max-vram needs a model whose layers can be described; running on the CPU"
                .to_string(),
        );
        return 0;
    };
    let budget = max_vram.0.min(free);
    // llama.cpp's own estimate of the device's buffers: a dry run (nothing allocated) with every
    // layer offloaded gives the device's compute buffer and its KV cache for all layers.
    let n_layers = ledger.layers.len().max(1) as u64;
    let dry_run = gpu_dry_run(settings, ledger.layers.len() as i32 + 1, ctx_params);
    let (reserve, kv_per_layer) = match dry_run {
        // A dry run reports the KV total only (not where it lives): per layer, it is the same.
        Ok(sizes) => (
            sizes.device.compute,
            (sizes.kv + sizes.device.kv) / n_layers,
        ),
        Err(err) => {
            notes.push(format!(
                "warning: could not size the GPU buffers ({err}); reserving 512 MiB for them"
            ));
            (
                512 << 20,
                kv_bytes_per_layer(settings, gguf, ctx_params.n_ctx),
            )
        }
    };
    let fit = llama_core::arena::gpu_layers_within(ledger, budget, kv_per_layer, reserve);
    let n = match settings.gpu_layers {
        0 => fit.n_gpu_layers as i32,
        asked if asked < 0 => fit.n_gpu_layers as i32,
        asked => asked.min(fit.n_gpu_layers as i32),
    };
    notes.push(format!(
        "--max-vram {max_vram}: offloading {n} of {} layers to the GPU ({} of VRAM free)",
        ledger.layers.len(),
        llama_core::ByteSize(free)
    ));
    n
}

/// Buffer sizes llama.cpp reports for `settings` with `n_gpu_layers` offloaded, from a dry run
/// that allocates nothing.
fn gpu_dry_run(
    settings: &Settings,
    n_gpu_layers: i32,
    ctx_params: &ContextParams,
) -> Result<llama_core::memory_probe::BufferSizes, llama_core::memory_probe::ProbeError> {
    let path = settings.model.clone().unwrap_or_default();
    let probe = llama_core::memory_probe::MemoryProbe::new(
        &path,
        &ModelParams {
            n_gpu_layers,
            ..weight_params(settings)
        },
    )?;
    probe.measure(ctx_params)
}

/// The context `settings` ask for when no budget plans it: `-c 0` is the model's training
/// context (at least 256).
fn requested_context_params(settings: &Settings, n_ctx_train: u32) -> ContextParams {
    ContextParams {
        n_ctx: match settings.ctx_size {
            0 => n_ctx_train.max(256),
            n => n,
        },
        n_batch: settings.batch_size,
        n_ubatch: settings.ubatch_size,
        n_threads: settings.threads,
        n_threads_batch: settings.threads,
        flash_attention: settings.flash_attn,
        type_k: settings.type_k,
        type_v: settings.type_v,
        // Sessions sample only after the last token: one logits row per decode.
        n_outputs_max: 1,
        ..ContextParams::default()
    }
}

/// Model parameters for `settings` where no layer placement is made (`serve`): the GPU layers
/// [`gpu_layers`] resolves, its notes printed to stderr.
pub fn model_params(settings: &Settings, gguf: &llama_core::gguf::GgufModel) -> ModelParams {
    let mut notes = Vec::new();
    let ledger = llama_core::arena::Ledger::from_gguf(gguf).ok();
    let ctx_params = requested_context_params(settings, training_context(gguf));
    let n_gpu_layers = gpu_layers(settings, gguf, ledger.as_ref(), &ctx_params, &mut notes);
    print_notes(&notes);
    ModelParams {
        n_gpu_layers,
        ..weight_params(settings)
    }
}

/// Model parameters for where the weights go on the CPU: `--no-repack` and `--amx`.
pub fn weight_params(settings: &Settings) -> ModelParams {
    ModelParams {
        repack: settings.repack,
        amx: settings.amx,
        ..ModelParams::default()
    }
}

/// KV cache bytes one layer needs for `n_ctx` tokens (0 when the model's cache cannot be
/// described).
fn kv_bytes_per_layer(settings: &Settings, gguf: &llama_core::gguf::GgufModel, n_ctx: u32) -> u64 {
    llama_core::ModelCacheSpec::from_gguf(gguf)
        .ok()
        .and_then(|spec| {
            let per_token = spec
                .kv_bytes_per_token(settings.type_k, settings.type_v)
                .ok()?;
            let n_layers = spec.layers.len().max(1) as u64;
            Some(per_token * u64::from(n_ctx) / n_layers)
        })
        .unwrap_or(0)
}

/// Prints notes to stderr: warnings as they are, the rest after `note:`.
fn print_notes(notes: &[String]) {
    for note in notes {
        if note.starts_with("warning:") {
            eprintln!("{note}");
        } else {
            eprintln!("note: {note}");
        }
    }
}

/// The model's training context (4096 when the metadata does not say).
pub fn training_context(gguf: &llama_core::gguf::GgufModel) -> u32 {
    gguf.context_length()
        .unwrap_or(4096)
        .min(u64::from(u32::MAX)) as u32
}

/// Everything decided before the model is loaded: the checked file, model and context
/// parameters, the memory plan (with `--max-mem`) and the tier of every layer.
pub struct Prepared {
    /// The model file.
    pub path: std::path::PathBuf,
    /// Its GGUF description.
    pub gguf: llama_core::gguf::GgufModel,
    /// Model parameters (GPU layers resolved; no repacking when streaming).
    pub params: ModelParams,
    /// Context parameters (from the plan when there is one).
    pub ctx_params: ContextParams,
    /// The memory plan, with `--max-mem`.
    pub plan: Option<Plan>,
    /// The layers of the model, or why they cannot be placed (a split model, no layers).
    pub ledger: Result<llama_core::arena::Ledger, llama_core::arena::ArenaError>,
    /// The tier of every layer.
    pub placement: Option<llama_core::arena::Placement>,
    /// Whether layers are streamed from disk.
    pub streams: bool,
    /// Bytes of weights repacked into the CPU backend's extra buffer types, when planned.
    pub repacked_bytes: Option<u64>,
    /// What the user should know: degradations, streaming, GPU fallbacks.
    pub notes: Vec<String>,
}

/// Decides how to run `settings` without loading the model: checks the file, plans memory
/// under `--max-mem` (re-planning with only a streaming window of the weights resident when
/// they do not fit and `--stream` allows it), and places every layer. A request that cannot
/// fit is refused here, before anything is loaded.
pub fn prepare(settings: &Settings) -> Result<Prepared, CliError> {
    let settings = &crate::model_source::resolved(settings)?;
    let path = settings.model.clone().ok_or(CliError::NoModel)?;
    let gguf = llama_core::check_model_file(&path)?;
    let n_ctx_train = training_context(&gguf);
    let ledger = llama_core::arena::Ledger::from_gguf(&gguf);
    let mut notes = Vec::new();
    let requested = requested_context_params(settings, n_ctx_train);
    let n_gpu = gpu_layers(
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
    let mut repacked_bytes = None;
    let (ctx_params, mut plan) = match settings.max_mem {
        None => (requested, None),
        Some(budget) => {
            let request = PlanRequest {
                gpu_layers: n_gpu,
                ..plan_request(settings, budget.0, n_ctx_train)
            };
            // One sizer (one dry-run model, one baseline measurement) serves both attempts.
            let mut sizer = budget::LlamaSizer::new(&path, &gguf, &params, settings.threads)
                .map_err(llama_core::planner::PlanError::Sizer)?;
            repacked_bytes = Some(sizer.repacked_bytes());
            let plan = match llama_core::planner::plan(&request, &mut sizer) {
                Err(llama_core::planner::PlanError::DoesNotFit { .. })
                    if settings.stream != llama_core::arena::StreamMode::Off =>
                {
                    // The weights do not fit: plan with only a streaming window of them resident.
                    let ledger = ledger.as_ref().map_err(|err| llama_core::ParamError {
                        name: "stream",
                        value: err.to_string(),
                        expected: "a model whose layers can be streamed",
                    })?;
                    sizer.stream_weights(ledger.minimum_budget());
                    let plan =
                        llama_core::planner::plan(&request, &mut sizer).map_err(|source| {
                            CliError::StreamingDoesNotFit {
                                layer_bytes: ledger.max_layer_bytes(),
                                weight_bytes: ledger.total_bytes(),
                                source,
                            }
                        })?;
                    notes.push(format!(
                        "the weights ({}) do not fit --max-mem {}; streaming layers from disk",
                        llama_core::ByteSize(ledger.total_bytes()),
                        budget
                    ));
                    plan
                }
                other => other?,
            };
            notes.extend(plan.announcements());
            (
                budget::context_params(&plan.candidate, settings.threads),
                Some(plan),
            )
        }
    };
    // Layer placement: what the budget leaves for weights after the anonymous memory.
    let weight_budget = plan.as_ref().map(|p| {
        p.budget
            .saturating_sub(p.breakdown.total() - p.breakdown.weights)
    });
    let n_gpu_layers = usize::try_from(n_gpu).unwrap_or(usize::MAX);
    let stream = match (&ledger, settings.stream) {
        (_, llama_core::arena::StreamMode::Off) => None,
        (Ok(ledger), mode) => mode
            .placement(ledger, n_gpu_layers, weight_budget)
            .map_err(|err| llama_core::ParamError {
                name: "stream",
                value: err.to_string(),
                expected: "a budget that holds the global tensors plus one layer",
            })?
            .filter(|_| llama_core::ffi::streaming_load_supported()),
        (Err(err), llama_core::arena::StreamMode::On) => {
            return Err(llama_core::ParamError {
                name: "stream",
                value: err.to_string(),
                expected: "a model whose layers can be streamed",
            }
            .into())
        }
        (Err(_), llama_core::arena::StreamMode::Auto) => None,
    };
    let streams = stream.is_some();
    let placement = match stream {
        Some(p) => Some(p),
        None => ledger.as_ref().ok().and_then(|l| {
            llama_core::arena::Placement::plan_with_gpu(l, n_gpu_layers, u64::MAX).ok()
        }),
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
        path,
        gguf,
        params,
        ctx_params,
        plan,
        ledger,
        placement,
        streams,
        repacked_bytes: repacked_bytes.filter(|_| !streams),
        notes,
    })
}

/// Loads the model of `settings` (checked by the GGUF reader first) and creates its context.
/// With `--max-mem`, the plan is made first, from a dry run that allocates nothing, and a
/// request that cannot fit is refused before the model is loaded.
pub fn load(settings: &Settings) -> Result<Loaded, CliError> {
    let started = Instant::now();
    let prepared = prepare(settings)?;
    print_notes(&prepared.notes);
    let Prepared {
        path,
        gguf,
        params,
        ctx_params,
        plan,
        ledger,
        placement,
        streams,
        ..
    } = prepared;
    if let Some(plan) = &plan {
        tracing::info!(plan = ?plan.breakdown, "memory plan");
        match budget::install_data_limit(plan, gguf.file_size()) {
            Ok(limit) => tracing::info!(limit, "data segment limit set"),
            Err(err) => tracing::warn!("could not set the data segment limit: {err}"),
        }
    }
    let stream = match (streams, ledger, placement) {
        (true, Ok(ledger), Some(placement)) => Some((ledger, placement)),
        _ => None,
    };
    let bar = progress_bar(&path);
    let mut on_progress = |p: f32| {
        if let Some(bar) = &bar {
            bar.set_position((p * 100.0) as u64);
        }
        true
    };
    llama_core::ffi::set_streaming_load(stream.is_some());
    let result = Model::load_unchecked(&path, &params, Some(&mut on_progress));
    llama_core::ffi::set_streaming_load(false);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let model = Arc::new(result?);
    let mapping = stream
        .as_ref()
        .and_then(|_| llama_core::ffi::ModelMapping::of_model(&model));
    let mut streaming = None;
    let ctx = match (stream, mapping) {
        (Some((ledger, placement)), Some(mapping)) => {
            tracing::info!(
                window = placement.window,
                pinned = placement.pinned_bytes,
                peak = placement.peak_bytes,
                "streaming layers"
            );
            let streamer =
                llama_core::arena::LayerStreamer::new(Arc::new(mapping), ledger, placement.clone());
            streaming = Some(Streaming {
                placement,
                counters: streamer.counters(),
            });
            llama_core::Context::with_eval_observer(model, &ctx_params, Box::new(streamer))?
        }
        _ => llama_core::Context::new(model, &ctx_params)?,
    };
    tracing::info!(
        n_ctx = ctx.n_ctx(),
        threads = settings.threads,
        "context ready"
    );
    Ok(Loaded {
        session: Session::new(ctx),
        load_time: started.elapsed(),
        counters: BudgetCounters::new(
            settings.max_mem.map(|b| b.0),
            plan.as_ref().map(|p| p.breakdown),
        ),
        plan,
        streaming,
    })
}

fn progress_bar(path: &std::path::Path) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(100),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let style = indicatif::ProgressStyle::with_template("loading {msg} [{bar:30}] {pos}%")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    Some(bar)
}

/// Prints the figures of one generation to stderr (`--stats`), with the memory plan when
/// there is one.
pub fn print_stats(load_time: Option<Duration>, stats: &GenerationStats, loaded: &Loaded) {
    let plan = loaded.plan.as_ref();
    loaded.counters.observe();
    let counters = loaded.counters.snapshot();
    let rate = |n: usize, d: Duration| {
        let s = d.as_secs_f64();
        if s > 0.0 {
            n as f64 / s
        } else {
            0.0
        }
    };
    if let Some(load) = load_time {
        eprintln!("stats: load time {:.3} s", load.as_secs_f64());
    }
    let p = &stats.prompt;
    eprintln!(
        "stats: prompt {} tokens ({} reused, {} evaluated) in {:.3} s, {:.1} t/s",
        p.n_prompt,
        p.n_reused,
        p.n_evaluated,
        p.duration.as_secs_f64(),
        rate(p.n_evaluated, p.duration)
    );
    if let Some(ttft) = stats.time_to_first_token {
        eprintln!("stats: time to first token {:.3} s", ttft.as_secs_f64());
    }
    eprintln!(
        "stats: generation {} tokens in {:.3} s, {:.1} t/s",
        stats.n_generated,
        stats.generation_time.as_secs_f64(),
        rate(stats.n_generated, stats.generation_time)
    );
    if let Some(reason) = stats.finish_reason {
        eprintln!(
            "stats: finish reason {}",
            serde_json::to_string(&reason)
                .unwrap_or_default()
                .trim_matches('"')
        );
    }
    let mem = ProcessMemory::current();
    if let Some(plan) = plan {
        let b = &plan.breakdown;
        eprintln!(
            "stats: planned {} of budget {} (weights {}, KV {}, compute {}, output {}, overhead {})",
            llama_core::ByteSize(b.total()),
            llama_core::ByteSize(plan.budget),
            llama_core::ByteSize(b.weights),
            llama_core::ByteSize(b.kv),
            llama_core::ByteSize(b.compute),
            llama_core::ByteSize(b.output),
            llama_core::ByteSize(b.overhead)
        );
        if counters.exceeded_events > 0 {
            eprintln!(
                "stats: budget exceeded ({} events): peak RSS {} is over --max-mem {}",
                counters.exceeded_events,
                llama_core::ByteSize(mem.peak_rss),
                llama_core::ByteSize(plan.budget)
            );
        }
    }
    if let Some(streaming) = &loaded.streaming {
        let c = streaming.counters.snapshot();
        let p = &streaming.placement;
        let streamed = p.n_streamed();
        eprintln!(
            "stats: streaming {streamed} of {} layers (window {}, pinned {}, resident weights peak {}): {} passes, {} layer loads, {} evictions, disk read {} ({} per pass)",
            p.tiers.len(),
            p.window,
            llama_core::ByteSize(p.pinned_bytes),
            llama_core::ByteSize(c.peak_resident_bytes),
            c.passes,
            c.layer_loads,
            c.layer_evictions,
            llama_core::ByteSize(c.disk_read_bytes),
            llama_core::ByteSize(c.disk_read_bytes / c.passes.max(1)),
        );
    }
    eprintln!(
        "stats: peak RSS {} (now: anonymous {}, file-backed {})",
        llama_core::ByteSize(mem.peak_rss),
        llama_core::ByteSize(mem.rss_anon),
        llama_core::ByteSize(mem.rss_file)
    );
}

/// Tokenizes what a turn sends to the model.
pub fn tokenize_prompt(
    model: &Model,
    text: &str,
    chat_formatted: bool,
) -> Result<Vec<llama_core::Token>, CliError> {
    Ok(model.tokenize(text, true, chat_formatted)?)
}
