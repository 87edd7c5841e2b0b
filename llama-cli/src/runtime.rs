//! Shared steps of the model-running commands: settings from flags and config, loading the
//! model with a progress bar, creating the session, printing figures.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_core::{ContextParams, GenerationStats, Model, ModelParams, ProcessMemory, Session};

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
    /// Seconds spent loading the model and creating the context.
    pub load_time: Duration,
}

/// Loads the model of `settings` (checked by the GGUF reader first) and creates its context.
pub fn load(settings: &Settings) -> Result<Loaded, CliError> {
    let path = settings.model.clone().ok_or(CliError::NoModel)?;
    let started = Instant::now();
    let mut gpu_layers = settings.gpu_layers;
    if gpu_layers != 0 && llama_sys::compiled_gpu_backends().is_empty() {
        eprintln!(
            "warning: this build has no GPU backend; ignoring --gpu-layers {gpu_layers} and running on the CPU (rebuild with --features cuda, metal or vulkan)"
        );
        gpu_layers = 0;
    }
    let params = ModelParams {
        n_gpu_layers: gpu_layers,
        ..ModelParams::default()
    };
    let bar = progress_bar(&path);
    let mut on_progress = |p: f32| {
        if let Some(bar) = &bar {
            bar.set_position((p * 100.0) as u64);
        }
        true
    };
    let result = llama_core::load_model(&path, &params, Some(&mut on_progress));
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let (model, _gguf) = result?;
    let model = Arc::new(model);
    let n_ctx = match settings.ctx_size {
        0 => model.n_ctx_train().max(256),
        n => n,
    };
    let ctx_params = ContextParams {
        n_ctx,
        n_batch: settings.batch_size,
        n_ubatch: settings.ubatch_size,
        n_threads: settings.threads,
        n_threads_batch: settings.threads,
        flash_attention: settings.flash_attn,
        ..ContextParams::default()
    };
    let ctx = llama_core::Context::new(model, &ctx_params)?;
    tracing::info!(
        n_ctx = ctx.n_ctx(),
        threads = settings.threads,
        "context ready"
    );
    Ok(Loaded {
        session: Session::new(ctx),
        load_time: started.elapsed(),
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

/// Prints the figures of one generation to stderr (`--stats`).
pub fn print_stats(load_time: Option<Duration>, stats: &GenerationStats) {
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
