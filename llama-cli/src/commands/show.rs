//! `llama-cli show`: what a GGUF file holds, read by our own GGUF reader (llama.cpp is not
//! involved): architecture, size, quantisation, context length, chat template, weight bytes per
//! layer, KV-cache bytes per token, and the tensor table with `--tensors`.

use llama_core::cache_spec::KvCacheType;
use llama_core::gguf::GgufModel;
use llama_core::{ByteSize, ModelCacheSpec};
use serde::Serialize;

use crate::cli::ShowArgs;
use std::io::Write;

use crate::error::CliError;

#[derive(Serialize)]
struct KvPerToken {
    cache_type: &'static str,
    bytes_per_token: u64,
    bytes_per_256_tokens: u64,
}

#[derive(Serialize)]
struct LayerRow {
    index: u32,
    n_tensors: usize,
    bytes: u64,
}

#[derive(Serialize)]
struct TensorRow<'a> {
    name: &'a str,
    ggml_type: &'static str,
    dims: &'a [u64],
    bytes: u64,
    offset: u64,
    split: usize,
}

/// The cached file of `reference` (`show REPO[:QUANT]` reads the cache only).
fn stored_model(reference: &str) -> Result<std::path::PathBuf, CliError> {
    let store = llama_core::store::Store::from_env()?;
    let model = llama_core::store::ModelRef::parse(reference)?;
    match store.find_cached(&model)? {
        Some(local) => Ok(local.path().to_path_buf()),
        None => Err(llama_core::store::StoreError::NotInCache {
            model: model.to_string(),
            cache: store.cache().root().display().to_string(),
        }
        .into()),
    }
}

/// Runs the command.
pub fn run(args: ShowArgs) -> Result<(), CliError> {
    let path = match &args.stored {
        Some(stored) => stored_model(stored)?,
        None => crate::model_source::model_path_of(args.model.as_deref(), args.hf_repo.as_deref())?,
    };
    let mut out = std::io::stdout().lock();
    let gguf: GgufModel = llama_core::check_model_file(&path)?;
    let summary = gguf.summary();
    let groups = gguf.weight_groups();
    let spec = ModelCacheSpec::from_gguf(&gguf).ok();
    let kv: Vec<KvPerToken> = spec
        .iter()
        .flat_map(|spec| {
            [KvCacheType::F16, KvCacheType::Q8_0, KvCacheType::Q4_0]
                .into_iter()
                .filter_map(move |t| {
                    Some(KvPerToken {
                        cache_type: t.name(),
                        bytes_per_token: spec.kv_bytes_per_token(t, t).ok()?,
                        bytes_per_256_tokens: spec.kv_bytes_per_block(t, t).ok()?.total(),
                    })
                })
        })
        .collect();
    let layers: Vec<LayerRow> = groups
        .layers
        .iter()
        .map(|l| LayerRow {
            index: l.index,
            n_tensors: l.tensors.len(),
            bytes: l.n_bytes,
        })
        .collect();
    let tensors: Vec<TensorRow> = if args.tensors {
        gguf.tensors()
            .iter()
            .map(|t| TensorRow {
                name: &t.name,
                ggml_type: t.ggml_type.name(),
                dims: &t.dims,
                bytes: t.n_bytes,
                offset: t.file_offset,
                split: t.split,
            })
            .collect()
    } else {
        Vec::new()
    };
    if args.json {
        let value = serde_json::json!({
            "path": path.display().to_string(),
            "summary": summary,
            "global_weight_bytes": groups.global_bytes,
            "layers": layers,
            "kv_per_token": kv,
            "sliding_window_layers": spec.as_ref().map(|s| s.n_sliding_layers()),
            "tensors": if args.tensors { Some(&tensors) } else { None },
        });
        super::write_json(&mut out, &value)?;
        return Ok(());
    }
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    writeln!(out, "model:            {}", path.display())?;
    writeln!(
        out,
        "architecture:     {}",
        summary.architecture.as_deref().unwrap_or("-")
    )?;
    if let Some(name) = &summary.name {
        writeln!(out, "name:             {name}")?;
    }
    writeln!(
        out,
        "parameters:       {:.2} M",
        summary.n_params as f64 / 1e6
    )?;
    writeln!(
        out,
        "quantisation:     {} ({:.2} bits per weight)",
        summary
            .file_type
            .clone()
            .or(summary.dominant_type.map(|t| t.name().to_string()))
            .unwrap_or_else(|| "-".into()),
        summary.bits_per_weight
    )?;
    writeln!(
        out,
        "file size:        {} ({} split file(s))",
        ByteSize(summary.file_size),
        summary.n_splits
    )?;
    writeln!(
        out,
        "weights:          {} ({} tensors)",
        ByteSize(summary.weight_bytes),
        summary.n_tensors
    )?;
    writeln!(out, "context length:   {}", opt(summary.context_length))?;
    writeln!(out, "layers:           {}", opt(summary.block_count))?;
    writeln!(out, "embedding:        {}", opt(summary.embedding_length))?;
    writeln!(
        out,
        "heads / KV heads: {} / {}",
        opt(summary.head_count),
        opt(summary.head_count_kv)
    )?;
    writeln!(
        out,
        "chat template:    {}",
        if summary.has_chat_template {
            "yes"
        } else {
            "no"
        }
    )?;
    if let Some(spec) = &spec {
        if spec.n_sliding_layers() > 0 {
            writeln!(
                out,
                "sliding window:   {} of {} layers",
                spec.n_sliding_layers(),
                spec.layers.len()
            )?;
        }
    }
    for k in &kv {
        writeln!(
            out,
            "KV cache {:<5}    {} per token, {} per 256 tokens",
            k.cache_type,
            ByteSize(k.bytes_per_token),
            ByteSize(k.bytes_per_256_tokens)
        )?;
    }
    writeln!(out, "global tensors:   {}", ByteSize(groups.global_bytes))?;
    writeln!(out, "per-layer weights:")?;
    for l in &layers {
        writeln!(
            out,
            "  blk.{:<4} {:>3} tensors  {}",
            l.index,
            l.n_tensors,
            ByteSize(l.bytes)
        )?;
    }
    if args.tensors {
        writeln!(out, "tensors:")?;
        for t in &tensors {
            let dims: Vec<String> = t.dims.iter().map(u64::to_string).collect();
            writeln!(
                out,
                "  {:<32} {:<6} [{}] {} @ {}",
                t.name,
                t.ggml_type,
                dims.join(", "),
                ByteSize(t.bytes),
                t.offset
            )?;
        }
    }
    Ok(())
}
