//! `llama-cli plan`: the memory plan for a model under a budget (our `fit-params`), without
//! loading the weights: what would be created, what each part needs, what was degraded, and
//! the largest context that fits.

use std::io::Write;

use llama_core::budget;
use llama_core::ByteSize;

use crate::cli::PlanArgs;
use crate::error::CliError;
use crate::runtime;

/// Runs the command.
pub fn run(args: PlanArgs) -> Result<(), CliError> {
    let Some(settings) = runtime::settings(&args.config, args.options)? else {
        return Ok(());
    };
    let mut out = std::io::stdout().lock();
    let path = settings.model.clone().ok_or(CliError::NoModel)?;
    let budget = settings.max_mem.ok_or(CliError::NoBudget)?;
    let gguf = llama_core::check_model_file(&path)?;
    let n_ctx_train = runtime::training_context(&gguf);
    let request = runtime::plan_request(&settings, budget.0, n_ctx_train);
    let params = llama_core::ModelParams::default();
    let plan = budget::plan_model(&path, &gguf, &params, settings.threads, &request)?;
    if args.json {
        let value = serde_json::json!({
            "model": path.display().to_string(),
            "budget": budget.0,
            "plan": plan,
            "total": plan.breakdown.total(),
            "announcements": plan.announcements(),
            "load_mode": "mmap",
            "planner_peak_rss": llama_core::ProcessMemory::current().peak_rss,
        });
        super::write_json(&mut out, &value)?;
        return Ok(());
    }
    let c = &plan.candidate;
    let b = &plan.breakdown;
    let requested_ctx = request.effective_n_ctx();
    writeln!(
        out,
        "plan for {} under --max-mem {}",
        path.display(),
        budget
    )?;
    writeln!(out)?;
    writeln!(out, "| setting | value |")?;
    writeln!(out, "| --- | --- |")?;
    writeln!(
        out,
        "| ctx-size | {} (requested {requested_ctx}) |",
        c.n_ctx
    )?;
    writeln!(
        out,
        "| batch-size / ubatch-size | {} / {} |",
        c.n_batch, c.n_ubatch
    )?;
    writeln!(
        out,
        "| cache-type-k / cache-type-v | {} / {} |",
        c.type_k.name(),
        c.type_v.name()
    )?;
    writeln!(
        out,
        "| flash-attn | {} |",
        if c.flash_attn { "on" } else { "off" }
    )?;
    writeln!(out, "| load mode | mmap |")?;
    writeln!(out, "| gpu-layers | {} |", c.gpu_layers)?;
    writeln!(out)?;
    writeln!(out, "| memory | bytes | |")?;
    writeln!(out, "| --- | ---: | ---: |")?;
    let pct = |v: u64| 100.0 * v as f64 / budget.0 as f64;
    for (name, value) in [
        ("weights (mapped file + repacked)", b.weights),
        ("KV cache", b.kv),
        ("compute buffers", b.compute),
        ("output buffer", b.output),
        ("runtime overhead", b.overhead),
    ] {
        writeln!(out, "| {name} | {} | {:.1}% |", ByteSize(value), pct(value))?;
    }
    writeln!(
        out,
        "| **total** | **{}** | {:.1}% |",
        ByteSize(b.total()),
        pct(b.total())
    )?;
    writeln!(out)?;
    if let Some(max) = plan.max_ctx_that_fits {
        writeln!(out, "largest context that fits: --ctx-size {max}")?;
    }
    for note in plan.announcements() {
        writeln!(out, "degraded: {note}")?;
    }
    Ok(())
}
