//! Model summaries: weights grouped by layer, bytes by type, and the headline numbers
//! `llama-cli show` prints (all `serde::Serialize`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::ggml_type::GgmlType;
use super::model::GgufModel;
use super::tensor::TensorInfo;
use super::{KEY_CHAT_TEMPLATE, KEY_FILE_TYPE};

/// The tensors of one transformer block (`blk.N.*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerWeights {
    /// The block index `N`.
    pub index: u32,
    /// The block's tensors, in file order.
    pub tensors: Vec<TensorInfo>,
    /// Their total size in bytes.
    pub n_bytes: u64,
}

/// All weights, split into per-block groups and the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeightGroups {
    /// Per-block tensors, by ascending block index.
    pub layers: Vec<LayerWeights>,
    /// Tensors outside any block (embeddings, output norm and head, …).
    pub globals: Vec<TensorInfo>,
    /// Total bytes of `globals`.
    pub global_bytes: u64,
    /// Total bytes of all tensors.
    pub total_bytes: u64,
}

/// The tensors and bytes of one ggml type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypeBytes {
    /// The type.
    pub ggml_type: GgmlType,
    /// Tensors of this type.
    pub n_tensors: u64,
    /// Elements in those tensors.
    pub n_elements: u64,
    /// Bytes in those tensors.
    pub n_bytes: u64,
}

/// The headline facts about a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    /// `general.architecture`.
    pub architecture: Option<String>,
    /// `general.name`.
    pub name: Option<String>,
    /// `general.file_type` as a name such as `"Q4_1"` or `"Q4_K_M"`.
    pub file_type: Option<String>,
    /// The type holding the most bytes of weights.
    pub dominant_type: Option<GgmlType>,
    /// Weights by type, most bytes first.
    pub types: Vec<TypeBytes>,
    /// Parameter count: the sum of every tensor's element count.
    pub n_params: u64,
    /// Number of tensors.
    pub n_tensors: u64,
    /// `{arch}.block_count`.
    pub block_count: Option<u64>,
    /// `{arch}.context_length`: the training context.
    pub context_length: Option<u64>,
    /// `{arch}.embedding_length`.
    pub embedding_length: Option<u64>,
    /// `{arch}.attention.head_count` (largest value if per layer).
    pub head_count: Option<u64>,
    /// `{arch}.attention.head_count_kv` (largest value if per layer).
    pub head_count_kv: Option<u64>,
    /// Whether `tokenizer.chat_template` is present.
    pub has_chat_template: bool,
    /// Total bytes of tensor data.
    pub weight_bytes: u64,
    /// Total size of the model's files.
    pub file_size: u64,
    /// Number of files.
    pub n_splits: usize,
    /// Average bits per parameter (`weight_bytes * 8 / n_params`).
    pub bits_per_weight: f64,
}

/// The name of a `general.file_type` (`enum llama_ftype`) value, e.g. 3 → `"Q4_1"`.
/// The "guessed" flag (1024) is ignored.
pub fn file_type_name(file_type: u64) -> Option<&'static str> {
    Some(match file_type & !1024 {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        39 => "NVFP4",
        40 => "Q1_0",
        41 => "Q2_0",
        _ => return None,
    })
}

fn sum_bytes<'a>(tensors: impl IntoIterator<Item = &'a TensorInfo>) -> u64 {
    tensors
        .into_iter()
        .fold(0u64, |acc, t| acc.saturating_add(t.n_bytes))
}

impl GgufModel {
    /// The per-block weight groups (`blk.N.*`), by ascending block index.
    pub fn layers(&self) -> Vec<LayerWeights> {
        self.weight_groups().layers
    }

    /// All weights grouped into blocks and globals.
    pub fn weight_groups(&self) -> WeightGroups {
        let mut layers: BTreeMap<u32, Vec<TensorInfo>> = BTreeMap::new();
        let mut globals = Vec::new();
        for t in self.tensors() {
            match t.layer() {
                Some(index) => layers.entry(index).or_default().push(t.clone()),
                None => globals.push(t.clone()),
            }
        }
        let layers = layers
            .into_iter()
            .map(|(index, tensors)| LayerWeights {
                index,
                n_bytes: sum_bytes(&tensors),
                tensors,
            })
            .collect();
        WeightGroups {
            layers,
            global_bytes: sum_bytes(&globals),
            globals,
            total_bytes: self.total_weight_bytes(),
        }
    }

    /// Total bytes of tensor data over all splits.
    pub fn total_weight_bytes(&self) -> u64 {
        sum_bytes(self.tensors())
    }

    /// The parameter count: the sum of every tensor's element count.
    pub fn n_params(&self) -> u64 {
        self.tensors()
            .iter()
            .fold(0u64, |acc, t| acc.saturating_add(t.n_elements()))
    }

    /// Weights by type, most bytes first (ties by type id).
    pub fn type_breakdown(&self) -> Vec<TypeBytes> {
        let mut by_type: BTreeMap<GgmlType, TypeBytes> = BTreeMap::new();
        for t in self.tensors() {
            let entry = by_type.entry(t.ggml_type).or_insert(TypeBytes {
                ggml_type: t.ggml_type,
                n_tensors: 0,
                n_elements: 0,
                n_bytes: 0,
            });
            entry.n_tensors = entry.n_tensors.saturating_add(1);
            entry.n_elements = entry.n_elements.saturating_add(t.n_elements());
            entry.n_bytes = entry.n_bytes.saturating_add(t.n_bytes);
        }
        let mut types: Vec<TypeBytes> = by_type.into_values().collect();
        types.sort_by_key(|t| std::cmp::Reverse(t.n_bytes));
        types
    }

    /// The type holding the most bytes of weights.
    pub fn dominant_type(&self) -> Option<GgmlType> {
        self.type_breakdown().first().map(|t| t.ggml_type)
    }

    /// `general.file_type` as a name such as `"Q4_1"`.
    pub fn file_type_name(&self) -> Option<&'static str> {
        file_type_name(self.get_u64(KEY_FILE_TYPE)?)
    }

    /// `{arch}.context_length`.
    pub fn context_length(&self) -> Option<u64> {
        self.arch_u64("context_length")
    }

    /// Whether the model carries a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.get_str(KEY_CHAT_TEMPLATE).is_some()
    }

    /// The headline facts `llama-cli show` prints.
    pub fn summary(&self) -> ModelSummary {
        let types = self.type_breakdown();
        let n_params = self.n_params();
        let weight_bytes = self.total_weight_bytes();
        let bits_per_weight = if n_params == 0 {
            0.0
        } else {
            // Precision loss above 2^53 is irrelevant for a ratio.
            weight_bytes as f64 * 8.0 / n_params as f64
        };
        ModelSummary {
            architecture: self.architecture().map(str::to_owned),
            name: self.get_str("general.name").map(str::to_owned),
            file_type: self.file_type_name().map(str::to_owned),
            dominant_type: types.first().map(|t| t.ggml_type),
            types,
            n_params,
            n_tensors: self.tensors().len() as u64,
            block_count: self.arch_u64("block_count"),
            context_length: self.context_length(),
            embedding_length: self.arch_u64("embedding_length"),
            head_count: self.arch_u64_or_max("attention.head_count"),
            head_count_kv: self.arch_u64_or_max("attention.head_count_kv"),
            has_chat_template: self.has_chat_template(),
            weight_bytes,
            file_size: self.file_size(),
            n_splits: self.n_splits(),
            bits_per_weight,
        }
    }
}
