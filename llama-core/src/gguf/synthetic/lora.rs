//! LoRA adapters for a generated model: llama.cpp's adapter GGUF (`general.type = adapter`,
//! `adapter.type = lora`, `adapter.lora.alpha`) with a pair of F32 low-rank matrices for the
//! attention projections of every layer: `lora_a` `{n_in, rank}` and `lora_b` `{rank, n_out}`.

use rand::Rng;

use super::tensors::TensorWriter;
use super::SyntheticModel;
use crate::gguf::writer::GgufWriter;
use crate::gguf::GgmlType;

impl SyntheticModel {
    /// An adapter of `rank` for this model's attention projections (llama architecture), with
    /// random matrices from `seed`.
    pub fn lora_adapter(&self, rank: u32, seed: u64) -> GgufWriter {
        let mut w = GgufWriter::new();
        w.add("general.architecture", self.architecture.name())
            .add("general.type", "adapter")
            .add("general.name", "synthetic-lora")
            .add("adapter.type", "lora")
            .add("adapter.lora.alpha", rank as f32);
        let (embd, r) = (u64::from(self.n_embd), u64::from(rank));
        let kv = u64::from(self.head_dim() * self.n_head_kv);
        let mut t = TensorWriter::new(&mut w, seed, GgmlType::F32);
        for layer in 0..self.n_layer {
            for (part, n_out) in [("attn_q", embd), ("attn_k", kv), ("attn_v", kv)] {
                let base = format!("blk.{layer}.{part}.weight");
                t.values(&format!("{base}.lora_a"), &[embd, r], |rng, _| {
                    rng.random_range(-0.1f32..0.1)
                });
                t.values(&format!("{base}.lora_b"), &[r, n_out], |rng, _| {
                    rng.random_range(-0.1f32..0.1)
                });
            }
        }
        w
    }
}
