//! The `gemma3` architecture (src/models/gemma3.cpp): sliding-window attention when
//! `gemma3.attention.sliding_window` is set, in llama.cpp's default pattern for gemma3 (every
//! sixth layer attends to the whole context).

use super::tensors::TensorWriter;
use super::SyntheticModel;
use crate::gguf::writer::GgufWriter;

/// Head sizes, the window, the norm epsilon and the rotary bases of Gemma 3 (1,000,000 for
/// the full-attention layers; the sliding layers use llama.cpp's default of 10,000).
pub(super) fn add_metadata(w: &mut GgufWriter, head_dim: u32, sliding_window: u32) {
    w.add("gemma3.attention.key_length", head_dim)
        .add("gemma3.attention.value_length", head_dim)
        .add("gemma3.attention.sliding_window", sliding_window)
        .add("gemma3.attention.layer_norm_rms_epsilon", 1e-6f32)
        .add("gemma3.rope.freq_base", 1_000_000f32);
}

/// One block: attention with Q and K norms and a post-attention norm, then the gated
/// feed-forward with a post-feed-forward norm.
pub(super) fn add_layer(
    t: &mut TensorWriter<'_>,
    model: &SyntheticModel,
    head_dim: u32,
    name: impl Fn(&str) -> String,
) {
    let (embd, ff) = (u64::from(model.n_embd), u64::from(model.n_ff));
    let q = u64::from(head_dim * model.n_head);
    let kv = u64::from(head_dim * model.n_head_kv);
    t.norm(&name("attn_norm.weight"), embd);
    t.matrix(&name("attn_q.weight"), &[embd, q]);
    t.matrix(&name("attn_k.weight"), &[embd, kv]);
    t.matrix(&name("attn_v.weight"), &[embd, kv]);
    t.matrix(&name("attn_output.weight"), &[q, embd]);
    t.norm(&name("attn_q_norm.weight"), u64::from(head_dim));
    t.norm(&name("attn_k_norm.weight"), u64::from(head_dim));
    t.norm(&name("post_attention_norm.weight"), embd);
    t.norm(&name("ffn_norm.weight"), embd);
    t.matrix(&name("ffn_gate.weight"), &[embd, ff]);
    t.matrix(&name("ffn_up.weight"), &[embd, ff]);
    t.matrix(&name("ffn_down.weight"), &[ff, embd]);
    t.norm(&name("post_ffw_norm.weight"), embd);
}
