//! Small runnable models with random weights, generated in code for tests and benchmarks.
//!
//! llama.cpp loads and runs what [`SyntheticModel`] writes: the metadata and tensors of a real
//! architecture, a SentencePiece-style vocabulary (control tokens, the 256 byte tokens, filler
//! words) and random weights of the chosen type. The text such a model writes is noise, but its
//! memory, planning and API behaviour are those of a real model of that shape, so tests can cover
//! shapes the one real test model (SmolLM2) does not have. Each [`Shape`] is one call:
//!
//! | shape | constructor | architecture | what it has |
//! | --- | --- | --- | --- |
//! | `llama` | [`SyntheticModel::llama`] | `llama` | dense, grouped-query attention |
//! | `gemma3-swa` | [`SyntheticModel::gemma3_swa`] | `gemma3` | sliding-window layers, 256-wide heads, 1 KV head |
//! | `large-vocab` | [`SyntheticModel::large_vocab`] | `llama` | 262,144 tokens, tiny width |
//! | `moe` | [`SyntheticModel::moe`] | `llama` | 8 experts, 2 used per token (Mixtral-style) |
//! | `mamba` | [`SyntheticModel::mamba`] | `mamba` | recurrent (Mamba-1), no KV cache |
//!
//! ```
//! # use llama_core::gguf::{synthetic::SyntheticModel, GgufFile, GgmlType};
//! let model = SyntheticModel::llama(GgmlType::Q4_0);
//! let file = GgufFile::parse(&model.to_writer().to_bytes()).unwrap();
//! assert_eq!(file.tensors.len(), 3 + 9 * model.n_layer as usize);
//! ```
//!
//! Each architecture's metadata and layer tensors are in a module of their own (`llama`,
//! `gemma3`, `mamba`), following llama.cpp's loader for it (src/models/*.cpp).

mod gemma3;
pub mod hostile;
mod llama;
mod lora;
mod mamba;
mod tensors;
mod vocab;

use std::fmt;

use self::tensors::TensorWriter;
use self::vocab::N_FIXED_TOKENS;
use super::ggml_type::GgmlType;
use super::writer::GgufWriter;

/// The architecture of a generated model, with the parameters only it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `llama`: RMS norm, rotary attention, SwiGLU feed-forward; with `experts`, the
    /// feed-forward is a mixture of experts (Mixtral's layout: `ffn_gate_inp` routes each token
    /// to `experts.used` of `experts.count` experts of width `n_ff`).
    Llama {
        /// The mixture of experts, if any.
        experts: Option<Experts>,
    },
    /// `gemma3`: Q/K norms, post-attention and post-feed-forward norms, embeddings scaled by
    /// the width, heads of `head_dim` (`key_length` / `value_length`, independent of the
    /// width). Layers slide over a window of `sliding_window` tokens in llama.cpp's gemma3
    /// pattern: five sliding layers, then one full-attention layer (the period of 6 llama.cpp
    /// uses when the file sets no `sliding_window_pattern`, as gemma3 files do not).
    Gemma3 {
        /// Elements per attention head (K and V).
        head_dim: u32,
        /// `gemma3.attention.sliding_window`, in tokens (0: no sliding window).
        sliding_window: u32,
    },
    /// `mamba` (Mamba-1): each layer is a selective state-space block (`ssm_in`, a causal
    /// convolution, `ssm_x`, `ssm_dt`, `ssm_a`, `ssm_d`, `ssm_out`); no attention, so no KV
    /// cache, but a recurrent state per sequence.
    Mamba(SsmShape),
}

impl Architecture {
    /// `general.architecture`.
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::Llama { .. } => "llama",
            Architecture::Gemma3 { .. } => "gemma3",
            Architecture::Mamba(_) => "mamba",
        }
    }
}

/// A mixture of experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Experts {
    /// Experts per layer (`{arch}.expert_count`).
    pub count: u32,
    /// Experts each token is routed to (`{arch}.expert_used_count`).
    pub used: u32,
}

/// The state-space block of a Mamba layer (`mamba.ssm.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsmShape {
    /// Inner width (`inner_size`); llama.cpp supports only twice the embedding width.
    pub d_inner: u32,
    /// State size per inner channel (`state_size`).
    pub d_state: u32,
    /// Convolution kernel width (`conv_kernel`).
    pub d_conv: u32,
    /// Rank of the time-step projection (`time_step_rank`).
    pub dt_rank: u32,
}

/// The shape of a generated model.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticModel {
    /// `general.architecture` and the parameters only that architecture has.
    pub architecture: Architecture,
    /// Transformer (or state-space) blocks.
    pub n_layer: u32,
    /// Embedding width.
    pub n_embd: u32,
    /// Attention heads (0 for `mamba`).
    pub n_head: u32,
    /// Key/value heads (grouped-query attention when below `n_head`; 0 for `mamba`).
    pub n_head_kv: u32,
    /// Feed-forward width (of each expert in a mixture of experts; 0 for `mamba`).
    pub n_ff: u32,
    /// Vocabulary size (at least 259: three control tokens and 256 byte tokens).
    pub n_vocab: u32,
    /// Training context length.
    pub context_length: u32,
    /// Type of the weight matrices (F32, F16, Q4_0, Q4_1 or Q8_0); norms, and matrices whose
    /// rows are not a whole number of the type's blocks, are F32.
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
            architecture: Architecture::Llama { experts: None },
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

    /// A small gemma3 model with sliding-window attention shaped like Gemma 3 270M's layers:
    /// 4 heads of 256 elements with 1 KV head, a 512-token window, 6 layers (layers 0-4
    /// slide, layer 5 attends to the whole context), width 256, tied output, a 1024-token
    /// vocabulary.
    pub fn gemma3_swa(weight_type: GgmlType) -> SyntheticModel {
        SyntheticModel {
            architecture: Architecture::Gemma3 {
                head_dim: 256,
                sliding_window: 512,
            },
            n_layer: 6,
            n_embd: 256,
            n_head: 4,
            n_head_kv: 1,
            n_ff: 512,
            n_vocab: 1024,
            context_length: 32768,
            weight_type,
            separate_output: false,
            seed: 1,
        }
    }

    /// A llama model with Gemma 3's vocabulary size, 262,144 tokens, and otherwise tiny (2
    /// layers, width 64, 2 heads with 1 KV head, tied output), so the embedding dominates the
    /// file and the logits (1 MiB per output row) dominate the output buffer.
    pub fn large_vocab(weight_type: GgmlType) -> SyntheticModel {
        SyntheticModel {
            n_layer: 2,
            n_embd: 64,
            n_head: 2,
            n_head_kv: 1,
            n_ff: 128,
            n_vocab: 262_144,
            separate_output: false,
            ..SyntheticModel::llama(weight_type)
        }
    }

    /// A Mixtral-style mixture of experts: the llama model's attention, with each layer's
    /// feed-forward made of 8 experts of width 256, 2 used per token.
    pub fn moe(weight_type: GgmlType) -> SyntheticModel {
        SyntheticModel {
            architecture: Architecture::Llama {
                experts: Some(Experts { count: 8, used: 2 }),
            },
            n_ff: 256,
            ..SyntheticModel::llama(weight_type)
        }
    }

    /// A small Mamba-1 model: 4 layers of width 256 (inner width 512, state 16, convolution
    /// kernel 4, time-step rank 16 as Mamba's `ceil(width / 16)`), tied output, a 1024-token
    /// vocabulary.
    pub fn mamba(weight_type: GgmlType) -> SyntheticModel {
        SyntheticModel {
            architecture: Architecture::Mamba(SsmShape {
                d_inner: 512,
                d_state: 16,
                d_conv: 4,
                dt_rank: 16,
            }),
            n_layer: 4,
            n_embd: 256,
            n_head: 0,
            n_head_kv: 0,
            n_ff: 0,
            n_vocab: 1024,
            // Mamba has no trained context limit; any large value does.
            context_length: 1 << 20,
            weight_type,
            separate_output: false,
            seed: 1,
        }
    }

    /// The same shape with its layers' weights grown like a small real model's: four times
    /// the layers, and four times the feed-forward width (dense attention shapes); Mamba, whose
    /// layers are lighter, gets eight times the layers and twice the width (its inner width
    /// follows). The experts and the vocabulary stay as they are. Where a generated model
    /// stands in for a real one in a measurement (a plan within a few percent of the measured
    /// peak, say), this keeps the process's fixed overhead from dominating: in Q8_0 the grown
    /// llama, gemma3-swa, MoE and Mamba shapes carry 28-55 MiB of weights, against 1-4 MiB.
    pub fn scaled_up(mut self) -> SyntheticModel {
        match &mut self.architecture {
            Architecture::Llama { experts: None } | Architecture::Gemma3 { .. } => {
                self.n_layer *= 4;
                self.n_ff *= 4;
            }
            Architecture::Llama { experts: Some(_) } => self.n_layer *= 4,
            Architecture::Mamba(ssm) => {
                self.n_layer *= 8;
                self.n_embd *= 2;
                ssm.d_inner *= 2;
                ssm.dt_rank *= 2;
            }
        }
        self
    }

    /// Width of one attention head (0 without attention).
    pub fn head_dim(&self) -> u32 {
        match self.architecture {
            Architecture::Gemma3 { head_dim, .. } => head_dim,
            Architecture::Mamba(_) => 0,
            Architecture::Llama { .. } => self.n_embd / self.n_head.max(1),
        }
    }

    /// The GGUF file, ready to serialise.
    ///
    /// # Panics
    ///
    /// If `n_vocab` is below 259, or the weight type is not one of those listed on
    /// [`weight_type`](Self::weight_type).
    pub fn to_writer(&self) -> GgufWriter {
        assert!(
            self.n_vocab >= N_FIXED_TOKENS,
            "a synthetic vocabulary has at least {N_FIXED_TOKENS} tokens, not {}",
            self.n_vocab
        );
        let arch = self.architecture.name();
        let mut w = GgufWriter::new();
        w.add("general.architecture", arch)
            .add("general.name", format!("synthetic-{arch}").as_str())
            .add(format!("{arch}.context_length"), self.context_length)
            .add(format!("{arch}.embedding_length"), self.n_embd)
            .add(format!("{arch}.block_count"), self.n_layer)
            .add(format!("{arch}.feed_forward_length"), self.n_ff)
            .add(format!("{arch}.attention.head_count"), self.n_head)
            .add(format!("{arch}.attention.head_count_kv"), self.n_head_kv)
            .add(format!("{arch}.vocab_size"), self.n_vocab);
        match self.architecture {
            Architecture::Llama { experts } => llama::add_metadata(&mut w, self, experts),
            Architecture::Gemma3 {
                head_dim,
                sliding_window,
            } => gemma3::add_metadata(&mut w, head_dim, sliding_window),
            Architecture::Mamba(ssm) => mamba::add_metadata(&mut w, ssm),
        }
        vocab::add_spm_vocabulary(&mut w, self.n_vocab);

        let (embd, vocab) = (u64::from(self.n_embd), u64::from(self.n_vocab));
        let mut t = TensorWriter::new(&mut w, self.seed, self.weight_type);
        t.matrix("token_embd.weight", &[embd, vocab]);
        t.norm("output_norm.weight", embd);
        if self.separate_output {
            t.matrix("output.weight", &[embd, vocab]);
        }
        for layer in 0..self.n_layer {
            let name = |part: &str| format!("blk.{layer}.{part}");
            match self.architecture {
                Architecture::Llama { experts } => llama::add_layer(&mut t, self, experts, name),
                Architecture::Gemma3 { head_dim, .. } => {
                    gemma3::add_layer(&mut t, self, head_dim, name)
                }
                Architecture::Mamba(ssm) => mamba::add_layer(&mut t, self, ssm, name),
            }
        }
        w
    }

    /// Writes the model to `path`.
    pub fn write_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.to_writer().write_to_path(path)
    }
}

/// The model shapes tests use, by name (`SyntheticModel::gemma3_swa` is `gemma3-swa`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// [`SyntheticModel::llama`].
    Llama,
    /// [`SyntheticModel::gemma3_swa`].
    Gemma3Swa,
    /// [`SyntheticModel::large_vocab`].
    LargeVocab,
    /// [`SyntheticModel::moe`].
    Moe,
    /// [`SyntheticModel::mamba`].
    Mamba,
}

impl Shape {
    /// Every shape.
    pub const ALL: [Shape; 5] = [
        Shape::Llama,
        Shape::Gemma3Swa,
        Shape::LargeVocab,
        Shape::Moe,
        Shape::Mamba,
    ];

    /// The shape's name: `llama`, `gemma3-swa`, `large-vocab`, `moe` or `mamba`.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Llama => "llama",
            Shape::Gemma3Swa => "gemma3-swa",
            Shape::LargeVocab => "large-vocab",
            Shape::Moe => "moe",
            Shape::Mamba => "mamba",
        }
    }

    /// The shape called `name` (as [`name`](Self::name) gives it).
    pub fn from_name(name: &str) -> Option<Shape> {
        Shape::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The model of this shape whose matrices have `weight_type`.
    pub fn model(self, weight_type: GgmlType) -> SyntheticModel {
        match self {
            Shape::Llama => SyntheticModel::llama(weight_type),
            Shape::Gemma3Swa => SyntheticModel::gemma3_swa(weight_type),
            Shape::LargeVocab => SyntheticModel::large_vocab(weight_type),
            Shape::Moe => SyntheticModel::moe(weight_type),
            Shape::Mamba => SyntheticModel::mamba(weight_type),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests;
