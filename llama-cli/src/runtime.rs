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

/// Model parameters for `settings`. Asking for GPU layers on a build without a GPU backend
/// warns and runs on the CPU.
pub fn model_params(settings: &Settings) -> ModelParams {
    let mut gpu_layers = settings.gpu_layers;
    if gpu_layers != 0 && llama_sys::compiled_gpu_backends().is_empty() {
        eprintln!(
            "warning: this build has no GPU backend; ignoring --gpu-layers {gpu_layers} and running on the CPU (rebuild with --features cuda, metal or vulkan)"
        );
        gpu_layers = 0;
    }
    ModelParams {
        n_gpu_layers: gpu_layers,
        ..ModelParams::default()
    }
}

/// The model's training context (4096 when the metadata does not say).
pub fn training_context(gguf: &llama_core::gguf::GgufModel) -> u32 {
    gguf.context_length()
        .unwrap_or(4096)
        .min(u64::from(u32::MAX)) as u32
}

/// Loads the model of `settings` (checked by the GGUF reader first) and creates its context.
/// With `--max-mem`, the plan is made first, from a dry run that allocates nothing, and a
/// request that cannot fit is refused before the model is loaded.
pub fn load(settings: &Settings) -> Result<Loaded, CliError> {
    let path = settings.model.clone().ok_or(CliError::NoModel)?;
    let started = Instant::now();
    let params = model_params(settings);
    let gguf = llama_core::check_model_file(&path)?;
    let n_ctx_train = training_context(&gguf);
    let (ctx_params, plan) = match settings.max_mem {
        None => (
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
            },
            None,
        ),
        Some(budget) => {
            let request = plan_request(settings, budget.0, n_ctx_train);
            // One sizer (one dry-run model, one baseline measurement) serves both attempts.
            let mut sizer = budget::LlamaSizer::new(&path, &gguf, &params, settings.threads)
                .map_err(llama_core::planner::PlanError::Sizer)?;
            let plan = match llama_core::planner::plan(&request, &mut sizer) {
                Err(llama_core::planner::PlanError::DoesNotFit { .. })
                    if settings.stream != llama_core::arena::StreamMode::Off =>
                {
                    // The weights do not fit: plan with only a streaming window of them resident.
                    let ledger = llama_core::arena::Ledger::from_gguf(&gguf).map_err(|err| {
                        llama_core::ParamError {
                            name: "stream",
                            value: err.to_string(),
                            expected: "a model whose layers can be streamed",
                        }
                    })?;
                    sizer.stream_weights(ledger.minimum_budget());
                    let plan = llama_core::planner::plan(&request, &mut sizer)?;
                    eprintln!(
                        "note: the weights ({}) do not fit --max-mem {}; streaming layers from disk",
                        llama_core::ByteSize(ledger.total_bytes()),
                        budget
                    );
                    plan
                }
                other => other?,
            };
            for note in plan.announcements() {
                eprintln!("note: {note}");
            }
            tracing::info!(plan = ?plan.breakdown, "memory plan");
            match budget::install_data_limit(&plan, gguf.file_size()) {
                Ok(limit) => tracing::info!(limit, "data segment limit set"),
                Err(err) => tracing::warn!("could not set the data segment limit: {err}"),
            }
            (
                budget::context_params(&plan.candidate, settings.threads),
                Some(plan),
            )
        }
    };
    // Layer streaming (issue #6): decided before loading, so a refusal comes first.
    let weight_budget = plan.as_ref().map(|p| {
        p.budget
            .saturating_sub(p.breakdown.total() - p.breakdown.weights)
    });
    let stream = match settings.stream {
        llama_core::arena::StreamMode::Off => None,
        mode => {
            let ledger = llama_core::arena::Ledger::from_gguf(&gguf);
            let placement = ledger
                .and_then(|l| Ok(mode.placement(&l, weight_budget)?.map(|p| (l, p))))
                .map_err(|err| llama_core::ParamError {
                    name: "stream",
                    value: err.to_string(),
                    expected: "a budget that holds the global tensors plus one layer",
                })?;
            placement.filter(|_| llama_core::ffi::streaming_load_supported())
        }
    };
    let params = match stream {
        // Repacked weights are copied into anonymous memory and cannot be streamed.
        Some(_) => ModelParams {
            repack: false,
            ..params
        },
        None => params,
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
    let ctx = match (stream, mapping) {
        (Some((ledger, placement)), Some(mapping)) => {
            tracing::info!(
                window = placement.window,
                pinned = placement.pinned_bytes,
                peak = placement.peak_bytes,
                "streaming layers"
            );
            let streamer =
                llama_core::arena::LayerStreamer::new(Arc::new(mapping), ledger, placement);
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
