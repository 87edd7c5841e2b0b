//! `llama-cli plan`: the memory plan for a model under a budget (our `fit-params`), without
//! loading the weights: what would be created, what each part needs, what was degraded, and
//! the largest context that fits.

use std::io::Write;

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
    if settings.model.is_none() && settings.hf_repo.is_none() {
        return Err(CliError::NoModel);
    }
    let prepared = runtime::prepare(&settings)?;
    let path = &prepared.settings.model;
    let plan = prepared.plan.as_ref().ok_or(CliError::NoBudget)?;
    let budget = ByteSize(plan.budget);
    let request = llama_core::run::plan_request(
        &prepared.settings,
        budget.0,
        llama_core::run::training_context(&prepared.gguf),
    );
    let load_mode = match (prepared.streams, settings.repack) {
        (true, _) => "mmap, layers streamed from disk",
        (false, true) => "mmap, repacking where the CPU has faster kernels",
        (false, false) => "mmap, no repacking (--no-repack)",
    };
    let repacked = prepared.repacked_bytes.unwrap_or(0);
    let layers: Vec<serde_json::Value> = match (&prepared.ledger, &prepared.placement) {
        (Ok(ledger), Some(placement)) => ledger
            .layers
            .iter()
            .zip(&placement.tiers)
            .map(|(l, t)| serde_json::json!({"layer": l.index, "bytes": l.n_bytes, "tier": t}))
            .collect(),
        _ => Vec::new(),
    };
    if args.json {
        let value = serde_json::json!({
            "model": path.display().to_string(),
            "budget": budget.0,
            "plan": plan,
            "total": plan.breakdown.total(),
            "announcements": plan.announcements(),
            "notes": prepared.notes,
            "load_mode": load_mode,
            "streams": prepared.streams,
            "repack": settings.repack,
            "repacked_bytes": repacked,
            "placement": prepared.placement,
            "global_bytes": prepared.ledger.as_ref().ok().map(|l| l.global_bytes),
            "layers": layers,
            "planner_peak_rss": llama_core::ProcessMemory::current().peak_rss,
            "machine": prepared.machine,
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
    let m = &prepared.machine;
    let cgroup = match &m.cgroup {
        Some(c) => format!("cgroup limit {} ({})", ByteSize(c.bytes), c.file.display()),
        None => "no cgroup memory limit".to_string(),
    };
    writeln!(
        out,
        "machine: {} of physical memory, {cgroup}",
        ByteSize(m.physical)
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
    let flash = match prepared.ctx_params.flash_attention {
        llama_core::FlashAttention::Auto => "auto (llama.cpp decides; planned with it on)",
        llama_core::FlashAttention::On => "on",
        llama_core::FlashAttention::Off => "off",
    };
    writeln!(out, "| flash-attn | {flash} |")?;
    writeln!(out, "| load mode | {load_mode} |")?;
    writeln!(out, "| gpu-layers | {} |", c.gpu_layers)?;
    writeln!(out)?;
    writeln!(out, "| memory | bytes | |")?;
    writeln!(out, "| --- | ---: | ---: |")?;
    let pct = |v: u64| 100.0 * v as f64 / budget.0 as f64;
    let weights_label = if prepared.streams {
        "weights (pinned + streaming window)".to_string()
    } else {
        format!(
            "weights (mapped file {} + repacked {})",
            ByteSize(b.weights.saturating_sub(repacked)),
            ByteSize(repacked)
        )
    };
    let compute_label = if b.compute_unwritten > 0 {
        format!(
            "compute buffers (reserved {}, of which {} of embedding inputs never written)",
            ByteSize(b.compute),
            ByteSize(b.compute_unwritten)
        )
    } else {
        "compute buffers".to_string()
    };
    let compute = b.compute.saturating_sub(b.compute_unwritten);
    for (name, value) in [
        (weights_label.as_str(), b.weights),
        ("KV cache", b.kv),
        (compute_label.as_str(), compute),
        ("output buffer", b.output),
        ("embeddings context", b.embeddings),
        ("runtime overhead", b.overhead),
    ] {
        if name == "embeddings context" && value == 0 {
            continue;
        }
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
    // Degradations, streaming, budget and GPU notes, as prompt prints them on stderr.
    for note in &prepared.notes {
        if note.starts_with("warning:") {
            writeln!(out, "{note}")?;
        } else {
            writeln!(out, "note: {note}")?;
        }
    }
    write_tiers(&mut out, &prepared)
}

/// The tier of every layer and of the global tensors.
fn write_tiers(out: &mut impl Write, prepared: &llama_core::run::Prepared) -> Result<(), CliError> {
    let (ledger, placement) = match (&prepared.ledger, &prepared.placement) {
        (Ok(ledger), Some(placement)) => (ledger, placement),
        (Err(err), _) => {
            writeln!(out, "\nlayer tiers: not available ({err})")?;
            return Ok(());
        }
        (Ok(_), None) => return Ok(()),
    };
    writeln!(out)?;
    if placement.streams() {
        let streamed = placement.n_streamed();
        writeln!(
            out,
            "streaming: {streamed} of {} layers read from disk each token through a window of {} (at most {} of weights resident: {} pinned + window; {} of the window is read ahead into the page cache, mapped only when its layer runs)",
            placement.tiers.len(),
            ByteSize(placement.peak_bytes - placement.pinned_bytes),
            ByteSize(placement.peak_bytes),
            ByteSize(placement.pinned_bytes),
            ByteSize(placement.read_ahead_bytes)
        )?;
        writeln!(out)?;
    }
    writeln!(out, "| layer | weights | tier |")?;
    writeln!(out, "| --- | ---: | --- |")?;
    writeln!(
        out,
        "| globals (embeddings, output) | {} | ram |",
        ByteSize(ledger.global_bytes)
    )?;
    for (layer, tier) in ledger.layers.iter().zip(&placement.tiers) {
        writeln!(
            out,
            "| {} | {} | {} |",
            layer.index,
            ByteSize(layer.n_bytes),
            tier.label()
        )?;
    }
    Ok(())
}
