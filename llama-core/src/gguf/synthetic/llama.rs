//! The `llama` architecture (src/models/llama.cpp): dense, or a Mixtral-style mixture of
//! experts when `{arch}.expert_count` is set.

use rand::Rng;

use super::tensors::TensorWriter;
use super::{Experts, SyntheticModel};
use crate::gguf::writer::GgufWriter;

/// Rotary dimensions (llama.cpp requires the whole head), the norm epsilon and the experts.
pub(super) fn add_metadata(w: &mut GgufWriter, model: &SyntheticModel, experts: Option<Experts>) {
    w.add("llama.rope.dimension_count", model.head_dim())
        .add("llama.attention.layer_norm_rms_epsilon", 1e-5f32);
    if let Some(e) = experts {
        w.add("llama.expert_count", e.count)
            .add("llama.expert_used_count", e.used);
    }
}

/// One block: attention, then the feed-forward (dense, or the router and the experts'
/// matrices stacked in 3-D tensors, `{n_embd, n_ff, n_expert}`).
pub(super) fn add_layer(
    t: &mut TensorWriter<'_>,
    model: &SyntheticModel,
    experts: Option<Experts>,
    name: impl Fn(&str) -> String,
) {
    let (embd, ff) = (u64::from(model.n_embd), u64::from(model.n_ff));
    let kv = u64::from(model.head_dim() * model.n_head_kv);
    t.norm(&name("attn_norm.weight"), embd);
    t.matrix(&name("attn_q.weight"), &[embd, embd]);
    t.matrix(&name("attn_k.weight"), &[embd, kv]);
    t.matrix(&name("attn_v.weight"), &[embd, kv]);
    t.matrix(&name("attn_output.weight"), &[embd, embd]);
    t.norm(&name("ffn_norm.weight"), embd);
    match experts {
        None => {
            t.matrix(&name("ffn_gate.weight"), &[embd, ff]);
            t.matrix(&name("ffn_up.weight"), &[embd, ff]);
            t.matrix(&name("ffn_down.weight"), &[ff, embd]);
        }
        Some(e) => {
            let n = u64::from(e.count);
            // The router stays F32, as llama.cpp's quantizer leaves it.
            t.values(&name("ffn_gate_inp.weight"), &[embd, n], |rng, _| {
                rng.random_range(-0.02f32..0.02)
            });
            t.matrix(&name("ffn_gate_exps.weight"), &[embd, ff, n]);
            t.matrix(&name("ffn_up_exps.weight"), &[embd, ff, n]);
            t.matrix(&name("ffn_down_exps.weight"), &[ff, embd, n]);
        }
    }
}
