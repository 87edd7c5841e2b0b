//! Small runnable models with random weights, generated in code for tests and benchmarks.
//!
//! llama.cpp loads and runs what [`SyntheticModel`] writes: the metadata and tensors of a real
//! architecture, a SentencePiece-style vocabulary (control tokens, the 256 byte tokens, filler
//! words) and random weights of the chosen type. The text such a model writes is noise, but its
//! memory, planning and API behaviour are those of a real model of that shape, so tests can cover
//! shapes the one real test model (SmolLM2) does not have.
//!
//! ```
//! # use llama_core::gguf::{synthetic::SyntheticModel, GgufFile, GgmlType};
//! let model = SyntheticModel::llama(GgmlType::Q4_0);
//! let file = GgufFile::parse(&model.to_writer().to_bytes()).unwrap();
//! assert_eq!(file.tensors.len(), 3 + 9 * model.n_layer as usize);
//! ```

use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::ggml_type::GgmlType;
use super::value::{ArrayValue, Value};
use super::writer::GgufWriter;

/// The shape of a generated model.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticModel {
    /// `general.architecture`; today `llama`.
    pub architecture: &'static str,
    /// Transformer blocks.
    pub n_layer: u32,
    /// Embedding width.
    pub n_embd: u32,
    /// Attention heads.
    pub n_head: u32,
    /// Key/value heads (grouped-query attention when below `n_head`).
    pub n_head_kv: u32,
    /// Feed-forward width.
    pub n_ff: u32,
    /// Vocabulary size (at least 259: three control tokens and 256 byte tokens).
    pub n_vocab: u32,
    /// Training context length.
    pub context_length: u32,
    /// Type of the 2-D weight matrices (F32, F16, Q4_0, Q4_1 or Q8_0); norms are F32.
    pub weight_type: GgmlType,
    /// Whether the output head is its own tensor (`false`: tied to the token embedding).
    pub separate_output: bool,
    /// Seed of the random weights.
    pub seed: u64,
}

impl SyntheticModel {
    /// A small llama-architecture model (4 layers, width 256, 4 heads with 2 KV heads, a
    /// 1024-token vocabulary) whose matrices have `weight_type`.
    pub fn llama(weight_type: GgmlType) -> SyntheticModel {
        SyntheticModel {
            architecture: "llama",
            n_layer: 4,
            n_embd: 256,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 512,
            n_vocab: 1024,
            context_length: 4096,
            weight_type,
            separate_output: true,
            seed: 1,
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> u32 {
        self.n_embd / self.n_head.max(1)
    }

    /// The GGUF file, ready to serialise.
    pub fn to_writer(&self) -> GgufWriter {
        let arch = self.architecture;
        let mut w = GgufWriter::new();
        w.add("general.architecture", arch)
            .add("general.name", format!("synthetic-{arch}").as_str())
            .add(format!("{arch}.context_length"), self.context_length)
            .add(format!("{arch}.embedding_length"), self.n_embd)
            .add(format!("{arch}.block_count"), self.n_layer)
            .add(format!("{arch}.feed_forward_length"), self.n_ff)
            .add(format!("{arch}.attention.head_count"), self.n_head)
            .add(format!("{arch}.attention.head_count_kv"), self.n_head_kv)
            .add(format!("{arch}.rope.dimension_count"), self.head_dim())
            .add(format!("{arch}.attention.layer_norm_rms_epsilon"), 1e-5f32)
            .add(format!("{arch}.vocab_size"), self.n_vocab);
        self.add_vocabulary(&mut w);
        let mut rng = StdRng::seed_from_u64(self.seed);
        let (embd, ff, vocab) = (
            u64::from(self.n_embd),
            u64::from(self.n_ff),
            u64::from(self.n_vocab),
        );
        let kv = u64::from(self.head_dim() * self.n_head_kv);
        let t = self.weight_type;
        add_random(&mut w, &mut rng, "token_embd.weight", &[embd, vocab], t);
        add_norm(&mut w, "output_norm.weight", embd);
        if self.separate_output {
            add_random(&mut w, &mut rng, "output.weight", &[embd, vocab], t);
        }
        for layer in 0..self.n_layer {
            let name = |part: &str| format!("blk.{layer}.{part}.weight");
            add_norm(&mut w, &name("attn_norm"), embd);
            add_random(&mut w, &mut rng, &name("attn_q"), &[embd, embd], t);
            add_random(&mut w, &mut rng, &name("attn_k"), &[embd, kv], t);
            add_random(&mut w, &mut rng, &name("attn_v"), &[embd, kv], t);
            add_random(&mut w, &mut rng, &name("attn_output"), &[embd, embd], t);
            add_norm(&mut w, &name("ffn_norm"), embd);
            add_random(&mut w, &mut rng, &name("ffn_gate"), &[embd, ff], t);
            add_random(&mut w, &mut rng, &name("ffn_up"), &[embd, ff], t);
            add_random(&mut w, &mut rng, &name("ffn_down"), &[ff, embd], t);
        }
        w
    }

    /// Writes the model to `path`.
    pub fn write_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.to_writer().write_to_path(path)
    }

    /// A SentencePiece ("llama") vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then
    /// filler words up to `n_vocab`.
    fn add_vocabulary(&self, w: &mut GgufWriter) {
        const NORMAL: i32 = 1;
        const UNKNOWN: i32 = 2;
        const CONTROL: i32 = 3;
        const BYTE: i32 = 6;
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        let mut types = vec![UNKNOWN, CONTROL, CONTROL];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(BYTE);
        }
        let mut k = 0u32;
        while tokens.len() < self.n_vocab as usize {
            tokens.push(format!("\u{2581}w{k}"));
            types.push(NORMAL);
            k += 1;
        }
        let scores: Vec<f32> = (0..tokens.len()).map(|i| -(i as f32)).collect();
        w.add("tokenizer.ggml.model", "llama")
            .add(
                "tokenizer.ggml.tokens",
                Value::Array(ArrayValue::String(tokens)),
            )
            .add("tokenizer.ggml.scores", Value::Array(scores.into()))
            .add("tokenizer.ggml.token_type", Value::Array(types.into()))
            .add("tokenizer.ggml.bos_token_id", 1u32)
            .add("tokenizer.ggml.eos_token_id", 2u32)
            .add("tokenizer.ggml.unknown_token_id", 0u32);
    }
}

fn add_norm(w: &mut GgufWriter, name: &str, n: u64) {
    let data = (0..n).flat_map(|_| 1.0f32.to_le_bytes()).collect();
    w.add_tensor(name, &[n], GgmlType::F32, data);
}

/// A tensor of random values of about 0.02 in magnitude (as in a trained model), stored in `t`.
fn add_random(w: &mut GgufWriter, rng: &mut StdRng, name: &str, dims: &[u64], t: GgmlType) {
    let n: u64 = dims.iter().product();
    let scale = f16::from_f32(0.02 / 8.0).to_le_bytes();
    let mut data = Vec::new();
    match t {
        GgmlType::F32 => (0..n)
            .for_each(|_| data.extend_from_slice(&rng.random_range(-0.02f32..0.02).to_le_bytes())),
        GgmlType::F16 => (0..n).for_each(|_| {
            data.extend_from_slice(&f16::from_f32(rng.random_range(-0.02f32..0.02)).to_le_bytes())
        }),
        GgmlType::Q8_0 => (0..n / 32).for_each(|_| {
            data.extend_from_slice(&f16::from_f32(0.02 / 127.0).to_le_bytes());
            data.extend((0..32).map(|_| rng.random::<u8>()));
        }),
        GgmlType::Q4_0 => (0..n / 32).for_each(|_| {
            data.extend_from_slice(&scale);
            data.extend((0..16).map(|_| rng.random::<u8>()));
        }),
        GgmlType::Q4_1 => (0..n / 32).for_each(|_| {
            data.extend_from_slice(&f16::from_f32(0.04 / 15.0).to_le_bytes());
            data.extend_from_slice(&f16::from_f32(-0.02).to_le_bytes());
            data.extend((0..16).map(|_| rng.random::<u8>()));
        }),
        other => {
            panic!("synthetic models support F32, F16, Q4_0, Q4_1 and Q8_0 weights, not {other}")
        }
    }
    w.add_tensor(name, dims, t, data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    #[test]
    fn tensor_sizes_match_their_types() {
        for t in [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q8_0,
        ] {
            let model = SyntheticModel::llama(t);
            let bytes = model.to_writer().to_bytes();
            let file = GgufFile::parse(&bytes).unwrap();
            for tensor in &file.tensors {
                let end = tensor.file_offset + tensor.n_bytes;
                assert!(
                    end <= bytes.len() as u64,
                    "{} overruns the file",
                    tensor.name
                );
            }
            let embd = file
                .tensors
                .iter()
                .find(|x| x.name == "token_embd.weight")
                .unwrap();
            assert_eq!(
                embd.n_bytes,
                t.row_size(256).unwrap() * 1024,
                "{t}: embedding bytes"
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_file() {
        let a = SyntheticModel::llama(GgmlType::Q4_0).to_writer().to_bytes();
        let b = SyntheticModel::llama(GgmlType::Q4_0).to_writer().to_bytes();
        assert_eq!(a, b);
        let c = SyntheticModel {
            seed: 2,
            ..SyntheticModel::llama(GgmlType::Q4_0)
        };
        assert_ne!(a, c.to_writer().to_bytes());
    }
}
