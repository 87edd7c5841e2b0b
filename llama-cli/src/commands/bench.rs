//! `llama-cli bench`: prompt-processing and generation tokens/s, as llama.cpp's llama-bench
//! reports them (mean ± standard deviation over repetitions).

use std::sync::Arc;

use llama_core::{bench, Context, ContextParams, FlashAttention, ModelParams};

use crate::cli::BenchArgs;
use std::io::Write;

use crate::error::CliError;
use crate::options::default_threads;

/// Runs the command.
pub fn run(args: BenchArgs) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let threads = args.threads.unwrap_or_else(default_threads);
    let path = crate::model_source::model_path_of(args.model.as_deref(), args.hf_repo.as_deref())?;
    let (model, gguf) = llama_core::load_model(
        &path,
        &ModelParams {
            n_gpu_layers: args.gpu_layers,
            repack: !args.no_repack,
            amx: args.amx,
            ..ModelParams::default()
        },
        None,
    )?;
    let model = Arc::new(model);
    let n_ctx = args.n_prompt.max(args.n_gen).max(256);
    let flash_attention = match args.flash_attn.as_str() {
        "on" => FlashAttention::On,
        "off" => FlashAttention::Off,
        _ => FlashAttention::Auto,
    };
    let mut ctx = Context::new(
        model.clone(),
        &ContextParams {
            n_ctx,
            n_batch: args.batch_size,
            n_ubatch: args.ubatch_size,
            n_threads: threads,
            n_threads_batch: threads,
            flash_attention,
            ..ContextParams::default()
        },
    )?;
    let results = bench::run(&mut ctx, args.n_prompt, args.n_gen, args.repetitions)?;
    let gpu_backends = llama_core::ffi::compiled_gpu_backends();
    let backend = if args.gpu_layers != 0 && !gpu_backends.is_empty() {
        gpu_backends.join(",")
    } else {
        "CPU".to_string()
    };
    let description = model.description();
    if args.json {
        let rows: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "model_filename": path.display().to_string(),
                    "model_type": description,
                    "model_size": model.size_bytes(),
                    "model_n_params": model.n_params(),
                    "backends": backend,
                    "n_threads": threads,
                    "n_batch": args.batch_size,
                    "n_ubatch": args.ubatch_size,
                    "n_gpu_layers": args.gpu_layers,
                    "flash_attn": args.flash_attn,
                    "repack": !args.no_repack,
                    "test": r.name(),
                    "n_prompt": if r.kind == bench::BenchKind::Pp { r.n_tokens } else { 0 },
                    "n_gen": if r.kind == bench::BenchKind::Tg { r.n_tokens } else { 0 },
                    "avg_ts": r.avg_ts,
                    "stddev_ts": r.stddev_ts,
                    "samples_ts": r.samples_ts,
                    "architecture": gguf.architecture(),
                })
            })
            .collect();
        super::write_json(&mut out, &rows)?;
        return Ok(());
    }
    let size = format!("{:.2} MiB", model.size_bytes() as f64 / (1u64 << 20) as f64);
    let params = format!("{:.2} M", model.n_params() as f64 / 1e6);
    writeln!(
        out,
        "| model | size | params | backend | threads | test | t/s |"
    )?;
    writeln!(out, "| --- | ---: | ---: | --- | ---: | ---: | ---: |")?;
    for r in &results {
        writeln!(
            out,
            "| {description} | {size} | {params} | {backend} | {threads} | {} | {:.2} ± {:.2} |",
            r.name(),
            r.avg_ts,
            r.stddev_ts
        )?;
    }
    Ok(())
}
