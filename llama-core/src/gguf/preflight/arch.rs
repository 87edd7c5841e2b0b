//! Per-architecture rules, only for architectures whose llama.cpp loader and graph were read
//! and whose hostile files were run through llama.cpp:
//!
//! | architecture | rules |
//! | --- | --- |
//! | `llama`, `gemma3` | KV heads in every layer, as many as layer 0 (the loader sizes every layer's K and V tensors from layer 0's count, the graph reshapes by each layer's); RMS-norm epsilon ≥ 0 |
//! | `llama` | keys and values of one width; as many experts used in every layer as in layer 0 |
//! | `gemma3` | rotary dimensions no wider than the heads |
//! | `olmo2`, `phimoe` | heads in layer 0 (the tensor loader divides the width by them) |
//! | `mamba` | a convolution and a time-step rank; RMS-norm epsilon ≥ 0 |

use super::error::{Check, PreflightError};
use super::{n_layer, per_layer};
use crate::gguf::model::GgufModel;

/// Architectures whose loader builds every layer's K and V tensors from layer 0's KV head
/// count while the graph reshapes them by each layer's own. (Their query heads are layer 0's
/// everywhere, in the loader and the graph, so a per-layer `head_count` is harmless.)
const UNIFORM_ATTENTION: [&str; 2] = ["llama", "gemma3"];

/// Architectures whose tensor loader computes `embedding_length / head_count` (layer 0's).
const DIVIDES_BY_HEADS: [&str; 2] = ["olmo2", "phimoe"];

/// Architectures that read `{arch}.attention.layer_norm_rms_epsilon` and pass it to
/// `ggml_rms_norm`, which asserts `eps >= 0` on the CPU.
const RMS_EPSILON: [&str; 3] = ["llama", "gemma3", "mamba"];

pub(super) fn check(model: &GgufModel) -> Result<(), PreflightError> {
    let (Some(arch), Some(layers)) = (model.architecture(), n_layer(model)) else {
        return Ok(());
    };
    if UNIFORM_ATTENTION.contains(&arch) {
        uniform_heads(model, arch, layers)?;
    }
    if DIVIDES_BY_HEADS.contains(&arch) {
        heads_in_first_layer(model, arch, layers)?;
    }
    if RMS_EPSILON.contains(&arch) {
        rms_epsilon(model, arch)?;
    }
    match arch {
        "llama" => {
            uniform_experts(model, arch, layers)?;
            head_widths(model, arch)
        }
        "gemma3" => rope_dimensions(model, arch),
        "mamba" => state_space(model, arch),
        _ => Ok(()),
    }
}

fn heads_error(arch: &str, suffix: &str, found: String, expected: String) -> PreflightError {
    PreflightError::key(
        Check::AttentionHeads,
        format!("{arch}.{suffix}"),
        found,
        expected,
    )
}

/// Every layer has KV heads (`head_count_kv`, by default `head_count`), as many as layer 0.
/// A layer without KV heads, or with another count than the tensors were sized for, fails a
/// `GGML_ASSERT` in the first decode.
fn uniform_heads(model: &GgufModel, arch: &str, layers: u64) -> Result<(), PreflightError> {
    let suffix = "attention.head_count_kv";
    let Some(kv) = per_layer(model, suffix, layers)
        .or_else(|| per_layer(model, "attention.head_count", layers))
    else {
        return Ok(()); // absent or not integers: llama.cpp refuses the file
    };
    let Some(&first) = kv.first() else {
        return Ok(());
    };
    if let Some(layer) = kv.iter().position(|&n| n == 0) {
        return Err(heads_error(
            arch,
            suffix,
            format!("0 in layer {layer}"),
            format!("at least 1 in every layer of a {arch} model"),
        ));
    }
    if let Some(layer) = kv.iter().position(|&n| n != first) {
        return Err(heads_error(
            arch,
            suffix,
            format!("{} in layer {layer} and {first} in layer 0", kv[layer]),
            format!("the same count in every layer of a {arch} model"),
        ));
    }
    Ok(())
}

/// llama sizes its expert routing by layer 0's `expert_used_count` and the graph by each
/// layer's: a per-layer count unlike layer 0's fails a `GGML_ASSERT` in the first decode.
fn uniform_experts(model: &GgufModel, arch: &str, layers: u64) -> Result<(), PreflightError> {
    let suffix = "expert_used_count";
    let Some(used) = per_layer(model, suffix, layers) else {
        return Ok(());
    };
    match (used.first(), used.iter().position(|&n| Some(&n) != used.first())) {
        (Some(first), Some(layer)) => Err(PreflightError::key(
            Check::Experts,
            format!("{arch}.{suffix}"),
            format!("{} in layer {layer} and {first} in layer 0", used[layer]),
            format!("the same count in every layer of a {arch} model"),
        )),
        _ => Ok(()),
    }
}

/// Layer 0 has heads: `olmo2` and `phimoe` divide the width by them while loading (SIGFPE).
fn heads_in_first_layer(model: &GgufModel, arch: &str, layers: u64) -> Result<(), PreflightError> {
    let heads = per_layer(model, "attention.head_count", layers);
    if heads.and_then(|h| h.first().copied()) == Some(0) {
        return Err(heads_error(
            arch,
            "attention.head_count",
            "0 in layer 0".into(),
            format!("at least 1 (the {arch} loader divides the width by it)"),
        ));
    }
    Ok(())
}

/// NaN fails `eps >= 0` as a negative value does.
fn rms_epsilon(model: &GgufModel, arch: &str) -> Result<(), PreflightError> {
    let suffix = "attention.layer_norm_rms_epsilon";
    match model.arch_f32(suffix) {
        Some(eps) if !(eps >= 0.0) => Err(PreflightError::key(
            Check::NormEpsilon,
            format!("{arch}.{suffix}"),
            eps,
            "a number of at least 0",
        )),
        _ => Ok(()),
    }
}

/// The width of a head's keys: `key_length`, by default `embedding_length / head_count`
/// (layer 0's), as `load_hparams` computes it.
fn key_width(model: &GgufModel) -> Option<u64> {
    model.arch_u64("attention.key_length").or_else(|| {
        let embd = model.arch_u64("embedding_length")?;
        let heads = per_layer(model, "attention.head_count", 1)?;
        embd.checked_div(*heads.first()?)
    })
}

/// llama's graph asserts that key heads, value heads and the rotary dimensions have one
/// width (`value_length` defaults to the same width as keys; a rotary count unlike the key
/// width is refused cleanly by the loader).
fn head_widths(model: &GgufModel, arch: &str) -> Result<(), PreflightError> {
    let default = model.arch_u64("embedding_length").and_then(|embd| {
        let heads = per_layer(model, "attention.head_count", 1)?;
        embd.checked_div(*heads.first()?)
    });
    let value = model.arch_u64("attention.value_length");
    let (Some(k), Some(v)) = (key_width(model), value.or(default)) else {
        return Ok(());
    };
    if k != v {
        let suffix = if value.is_some() {
            "attention.value_length"
        } else {
            "attention.key_length"
        };
        return Err(PreflightError::key(
            Check::HeadWidths,
            format!("{arch}.{suffix}"),
            format!("{} (keys {k} wide, values {v})", if value.is_some() { v } else { k }),
            format!("keys and values of one width ({arch}'s graph requires it)"),
        ));
    }
    Ok(())
}

/// `ggml_rope` asserts that the rotated dimensions fit the head: `rope.dimension_count`
/// (default: the key width) and `rope.dimension_count_swa` (default: the former) against
/// `key_length` and `key_length_swa` (default: the former).
fn rope_dimensions(model: &GgufModel, arch: &str) -> Result<(), PreflightError> {
    let Some(width) = key_width(model) else {
        return Ok(());
    };
    let width_swa = model.arch_u64("attention.key_length_swa").unwrap_or(width);
    let rot = model.arch_u64("rope.dimension_count").unwrap_or(width);
    let rot_swa = model.arch_u64("rope.dimension_count_swa").unwrap_or(rot);
    for (suffix, dims, width) in [
        ("rope.dimension_count", rot, width),
        ("rope.dimension_count_swa", rot_swa, width_swa),
    ] {
        if dims > width {
            return Err(PreflightError::key(
                Check::RopeDimensions,
                format!("{arch}.{suffix}"),
                dims,
                format!("at most the head width, {width}"),
            ));
        }
    }
    Ok(())
}

/// Mamba's graph reshapes the convolution state to `conv_kernel - 1` columns and multiplies
/// by the time-step projection: a kernel of 0 or a rank of 0 fails a `GGML_ASSERT`.
fn state_space(model: &GgufModel, arch: &str) -> Result<(), PreflightError> {
    for suffix in ["ssm.conv_kernel", "ssm.time_step_rank"] {
        if model.arch_u64(suffix) == Some(0) {
            return Err(PreflightError::key(
                Check::StateSpace,
                format!("{arch}.{suffix}"),
                0,
                "at least 1",
            ));
        }
    }
    Ok(())
}
