//! The `mamba` architecture, Mamba-1 (src/models/mamba.cpp): selective state-space blocks,
//! whose per-sequence state llama.cpp keeps in a recurrent-state ("RS") buffer.

use rand::Rng;

use super::tensors::TensorWriter;
use super::{SsmShape, SyntheticModel};
use crate::gguf::writer::GgufWriter;

/// The `mamba.ssm.*` sizes and the norm epsilon.
pub(super) fn add_metadata(w: &mut GgufWriter, ssm: SsmShape) {
    w.add("mamba.ssm.conv_kernel", ssm.d_conv)
        .add("mamba.ssm.inner_size", ssm.d_inner)
        .add("mamba.ssm.state_size", ssm.d_state)
        .add("mamba.ssm.time_step_rank", ssm.dt_rank)
        .add("mamba.attention.layer_norm_rms_epsilon", 1e-5f32);
}

/// One block: the input projection to `2 * d_inner`, the causal convolution, the projections
/// to the time step and B and C, the state matrix A and skip D, the output projection.
///
/// A, D and the time-step bias get the values Mamba is initialised with rather than noise, so
/// the state decays as in a trained model: `A[c][s] = -(s + 1)`, `D = 1`, and a bias that puts
/// the time step between 0.01 and 0.1.
pub(super) fn add_layer(
    t: &mut TensorWriter<'_>,
    model: &SyntheticModel,
    ssm: SsmShape,
    name: impl Fn(&str) -> String,
) {
    let embd = u64::from(model.n_embd);
    let (inner, state) = (u64::from(ssm.d_inner), u64::from(ssm.d_state));
    let (conv, rank) = (u64::from(ssm.d_conv), u64::from(ssm.dt_rank));
    t.norm(&name("attn_norm.weight"), embd);
    t.matrix(&name("ssm_in.weight"), &[embd, 2 * inner]);
    // ggml's convolution reads F32 weights.
    t.values(&name("ssm_conv1d.weight"), &[conv, inner], |rng, _| {
        rng.random_range(-0.5f32..0.5)
    });
    t.values(&name("ssm_conv1d.bias"), &[inner], |_, _| 0.0);
    t.matrix(&name("ssm_x.weight"), &[inner, rank + 2 * state]);
    t.matrix(&name("ssm_dt.weight"), &[rank, inner]);
    // softplus(b) = dt for dt in [0.01, 0.1]: b = ln(exp(dt) - 1).
    t.values(&name("ssm_dt.bias"), &[inner], |rng, _| {
        rng.random_range(0.01f32..0.1).exp_m1().ln()
    });
    t.values(&name("ssm_a"), &[state, inner], |_, i| {
        -((i % state) as f32 + 1.0)
    });
    t.values(&name("ssm_d"), &[inner], |_, _| 1.0);
    t.matrix(&name("ssm_out.weight"), &[inner, embd]);
}
