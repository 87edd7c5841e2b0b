//! Hyperparameters llama.cpp's generic `load_hparams` (llama-model.cpp) asserts on for every
//! architecture.

use super::error::{Check, PreflightError};
use super::{n_layer, scalar_or_max};
use crate::gguf::model::GgufModel;

/// `LLAMA_MAX_LAYERS`.
pub(super) const MAX_LAYERS: u64 = 512;

/// `LLAMA_MAX_EXPERTS`.
const MAX_EXPERTS: u64 = 1024;

/// The rope scaling types `llama_rope_scaling_type_from_string` knows.
const ROPE_SCALING_TYPES: [&str; 4] = ["none", "linear", "yarn", "longrope"];

/// Architectures whose loader resets a single expert to none (`n_expert <= 1`).
const SINGLE_EXPERT_IS_NONE: [&str; 2] = ["hunyuan_vl", "hunyuan-dense"];

pub(super) fn check(model: &GgufModel) -> Result<(), PreflightError> {
    let Some(arch) = model.architecture() else {
        return Ok(()); // llama.cpp refuses a file without an architecture
    };
    // CLIP files return from load_hparams before its asserts (and are then refused).
    if arch == "clip" {
        return Ok(());
    }
    let key = |suffix: &str| format!("{arch}.{suffix}");
    if let Some(n) = model.arch_u64("block_count") {
        if !(1..=MAX_LAYERS).contains(&n) {
            return Err(PreflightError::key(
                Check::BlockCount,
                key("block_count"),
                n,
                format!("1 to {MAX_LAYERS} layers"),
            ));
        }
    }
    let Some(layers) = n_layer(model) else {
        return Ok(()); // absent or not an integer: llama.cpp refuses the file
    };
    if let Some(nextn) = model.arch_u64("nextn_predict_layers") {
        if nextn > layers {
            return Err(PreflightError::key(
                Check::NextnLayers,
                key("nextn_predict_layers"),
                nextn,
                format!("at most the block count, {layers}"),
            ));
        }
    }
    experts(model, arch)?;
    if let Some(scaling) = model.arch_str("rope.scaling.type") {
        if !ROPE_SCALING_TYPES.contains(&scaling) {
            return Err(PreflightError::key(
                Check::RopeScaling,
                key("rope.scaling.type"),
                format!("{scaling:?}"),
                format!("one of {}", ROPE_SCALING_TYPES.join(", ")),
            ));
        }
    }
    Ok(())
}

/// The expert counts `load_hparams` asserts on: at most 1024 experts, at most that many
/// used per token (in every layer), some used when there are experts, none without; fewer
/// groups than experts, dividing them, with some but not all of them used.
fn experts(model: &GgufModel, arch: &str) -> Result<(), PreflightError> {
    let key = |suffix: &str| format!("{arch}.{suffix}");
    let mut n_expert = model.arch_u64("expert_count").unwrap_or(0);
    let mut used = scalar_or_max(model, "expert_used_count").unwrap_or(0);
    if SINGLE_EXPERT_IS_NONE.contains(&arch) && n_expert <= 1 {
        (n_expert, used) = (0, 0);
    }
    let groups = model.arch_u64("expert_group_count").unwrap_or(0);
    let group_used = model.arch_u64("expert_group_used_count").unwrap_or(0);
    let fail = |suffix: &str, found: u64, expected: String| {
        Err(PreflightError::key(Check::Experts, key(suffix), found, expected))
    };
    if n_expert > MAX_EXPERTS {
        return fail("expert_count", n_expert, format!("at most {MAX_EXPERTS}"));
    }
    if used > n_expert {
        return fail(
            "expert_used_count",
            used,
            format!("at most the expert count, {n_expert}"),
        );
    }
    if n_expert == 0 {
        if groups != 0 {
            return fail("expert_group_count", groups, "0 without experts".into());
        }
        return Ok(());
    }
    if used == 0 {
        return fail(
            "expert_used_count",
            0,
            format!("at least 1 with {n_expert} experts"),
        );
    }
    if groups >= n_expert {
        return fail(
            "expert_group_count",
            groups,
            format!("fewer than the {n_expert} experts"),
        );
    }
    if groups > 1 {
        if n_expert % groups != 0 {
            return fail(
                "expert_group_count",
                groups,
                format!("a divisor of the {n_expert} experts"),
            );
        }
        if group_used == 0 || group_used >= groups {
            return fail(
                "expert_group_used_count",
                group_used,
                format!("1 to {} of the {groups} groups", groups - 1),
            );
        }
    }
    Ok(())
}
