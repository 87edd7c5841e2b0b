//! Shared steps of the model-running commands: settings from flags and config, the run path
//! of llama-core (prepare, then start) with a progress bar, printing figures.

use std::time::{Duration, Instant};

use llama_core::metrics::BudgetCounters;
use llama_core::planner::Plan;
use llama_core::run::{Prepared, RunSettings, StartOptions, Streaming};
use llama_core::{GenerationStats, Model, ProcessMemory, Session};

use crate::cli::ConfigArgs;
use crate::error::CliError;
use crate::options::{RunOptions, Settings};

/// Layers flags over the config file over defaults. With `--print-config`, prints the result
/// (a config file `--config` accepts) to stdout and returns `None`.
pub fn settings(config: &ConfigArgs, flags: RunOptions) -> Result<Option<Settings>, CliError> {
    let file = match &config.config {
        Some(path) => crate::config::load(path)?.run,
        None => RunOptions::default(),
    };
    let options = flags.over(file);
    let settings = options.clone().resolve()?;
    if config.print_config {
        let text = crate::config::print(&options.over(RunOptions::defaults()));
        std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?;
        return Ok(None);
    }
    Ok(Some(settings))
}

/// A model loaded and a one-sequence session on its engine, ready to generate.
pub struct Loaded {
    /// The session.
    pub session: Session,
    /// Time spent planning, loading the model and starting the engine.
    pub load_time: Duration,
    /// The memory plan, when a budget was given.
    pub plan: Option<Plan>,
    /// Planned vs actual memory.
    pub counters: BudgetCounters,
    /// The layer streaming in force, when layers are streamed from disk.
    pub streaming: Option<Streaming>,
}

/// What llama-core's run path needs of `settings`, for `n_seq` sequences decoded together.
pub fn run_settings(settings: &Settings, n_seq: u32) -> Result<RunSettings, CliError> {
    Ok(RunSettings {
        model: settings.model.clone().ok_or(CliError::NoModel)?,
        ctx_size: settings.ctx_size,
        n_seq,
        batch_size: settings.batch_size,
        ubatch_size: settings.ubatch_size,
        threads: settings.threads,
        threads_batch: settings.threads_batch,
        load_mode: llama_core::LoadMode::from_flags(settings.mmap, settings.mlock),
        context_shift: settings.context_shift,
        n_keep: settings.keep,
        loras: settings.loras.clone(),
        gpu_layers: settings.gpu_layers,
        max_mem: settings.max_mem.map(|b| b.0),
        max_vram: settings.max_vram.map(|b| b.0),
        strict: settings.strict,
        type_k: settings.type_k,
        type_v: settings.type_v,
        flash_attn: settings.flash_attn,
        stream: settings.stream,
        repack: settings.repack,
        amx: settings.amx,
        swa_full: settings.swa_full,
        embeddings: None,
        ctx_is_total: false,
        runtime: llama_core::budget::RuntimeExtras {
            named_template: settings.chat_template.is_some()
                || settings.chat_template_file.is_some(),
            grammar: settings.grammar.is_some(),
            http_server: false,
            argmax_sampling: settings.sampling.is_plain_greedy() && settings.grammar.is_none(),
        },
    })
}

/// Decides how to run `settings` (one sequence) without loading the model; see
/// [`llama_core::run::prepare`].
pub fn prepare(settings: &Settings) -> Result<Prepared, CliError> {
    let settings = crate::model_source::resolved(settings)?;
    Ok(llama_core::run::prepare(&run_settings(&settings, 1)?)?)
}

/// Prints notes to stderr: warnings as they are, the rest after `note:`.
pub fn print_notes(notes: &[String]) {
    for note in notes {
        if note.starts_with("warning:") {
            eprintln!("{note}");
        } else {
            eprintln!("note: {note}");
        }
    }
}

/// Plans, loads the model of `settings` (checked by the GGUF reader first) and starts its
/// engine with one sequence. With `--max-mem`, a request that cannot fit is refused before
/// the model is loaded.
pub fn load(settings: &Settings) -> Result<Loaded, CliError> {
    let started = Instant::now();
    let prepared = prepare(settings)?;
    print_notes(&prepared.notes);
    let bar = progress_bar(&prepared.settings.model);
    let mut on_progress = |p: f32| {
        if let Some(bar) = &bar {
            bar.set_position((p * 100.0) as u64);
        }
        true
    };
    let running = prepared.start(StartOptions {
        progress: Some(&mut on_progress),
        ..StartOptions::default()
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let running = running?;
    tracing::info!(
        n_ctx = running.engine.max_tokens_per_request(),
        threads = settings.threads,
        "engine ready"
    );
    Ok(Loaded {
        session: Session::new(running.engine),
        load_time: started.elapsed(),
        plan: running.plan,
        counters: running.counters,
        streaming: running.streaming,
    })
}

fn progress_bar(path: &std::path::Path) -> Option<indicatif::ProgressBar> {
    let bar = crate::progress::terminal_bar(100, "loading {msg} [{bar:30}] {pos}%")?;
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
            "stats: planned {} of budget {} ({b})",
            llama_core::ByteSize(b.total()),
            llama_core::ByteSize(plan.budget),
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
            "stats: streaming {streamed} of {} layers (window {}, pinned {}, read ahead {}, resident weights peak {}): {} passes, {} layer loads, {} evictions, disk read {} ({} per pass)",
            p.tiers.len(),
            p.window,
            llama_core::ByteSize(p.pinned_bytes),
            llama_core::ByteSize(p.read_ahead_bytes),
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
