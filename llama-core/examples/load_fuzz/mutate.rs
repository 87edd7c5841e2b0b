//! Semantic mutations of a valid model, made through the GGUF writer: the file stays
//! well-formed GGUF (so it gets past the reader more often than not) but says something
//! inconsistent or hostile to llama.cpp's loader.

use std::fmt;

use llama_core::gguf::writer::GgufWriter;
use llama_core::gguf::{ArrayValue, GgmlType, StringArray, Value};
use rand::rngs::StdRng;
use rand::seq::{IndexedMutRandom, IndexedRandom};
use rand::Rng;

/// What a mutation changed, for the report's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// An integer hyperparameter (`{arch}.*`) set to an odd value.
    Hparam,
    /// A hyperparameter stored with another type, or as an array.
    HparamType,
    /// A per-layer array hyperparameter with an odd element or length.
    LayerArray,
    /// A float hyperparameter set to NaN, an infinity, zero or a negative value.
    Float,
    /// A tensor's shape changed.
    Shape,
    /// A tensor removed.
    MissingTensor,
    /// A tensor added.
    ExtraTensor,
    /// A tensor's ggml type changed (data of the new type's size).
    TensorType,
    /// The token list, scores or token types changed.
    Vocab,
    /// A special-token id or flag changed.
    SpecialToken,
    /// `tokenizer.ggml.model` or `tokenizer.ggml.pre` changed.
    Tokenizer,
    /// `{arch}.rope.scaling.type` set.
    RopeScaling,
    /// `general.alignment` set to another power of two.
    Alignment,
    /// `general.architecture` swapped (with every `{arch}.` key renamed).
    Architecture,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 14] = [
        Class::Hparam,
        Class::HparamType,
        Class::LayerArray,
        Class::Float,
        Class::Shape,
        Class::MissingTensor,
        Class::ExtraTensor,
        Class::TensorType,
        Class::Vocab,
        Class::SpecialToken,
        Class::Tokenizer,
        Class::RopeScaling,
        Class::Alignment,
        Class::Architecture,
    ];

    fn name(self) -> &'static str {
        match self {
            Class::Hparam => "hparam",
            Class::HparamType => "hparam-type",
            Class::LayerArray => "layer-array",
            Class::Float => "float",
            Class::Shape => "shape",
            Class::MissingTensor => "missing-tensor",
            Class::ExtraTensor => "extra-tensor",
            Class::TensorType => "tensor-type",
            Class::Vocab => "vocab",
            Class::SpecialToken => "special-token",
            Class::Tokenizer => "tokenizer",
            Class::RopeScaling => "rope-scaling",
            Class::Alignment => "alignment",
            Class::Architecture => "architecture",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Integer hyperparameters (`{arch}.` suffixes) llama.cpp reads for some architecture.
const INT_KEYS: &[&str] = &[
    "context_length",
    "embedding_length",
    "block_count",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "rope.dimension_count",
    "vocab_size",
    "expert_count",
    "expert_used_count",
    "expert_group_count",
    "expert_group_used_count",
    "expert_shared_count",
    "expert_feed_forward_length",
    "nextn_predict_layers",
    "leading_dense_block_count",
    "attention.sliding_window",
    "ssm.conv_kernel",
    "ssm.inner_size",
    "ssm.state_size",
    "ssm.time_step_rank",
    "ssm.group_count",
    "embedding_length_out",
];

/// Hyperparameters llama.cpp reads either as one value or as one value per layer.
const LAYER_KEYS: &[&str] = &[
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "expert_used_count",
];

/// Float hyperparameters (`{arch}.` suffixes).
const FLOAT_KEYS: &[&str] = &[
    "attention.layer_norm_rms_epsilon",
    "attention.layer_norm_epsilon",
    "rope.freq_base",
    "rope.freq_base_swa",
    "rope.scaling.factor",
    "rope.scaling.attn_factor",
    "attn_logit_softcapping",
    "final_logit_softcapping",
    "attention.scale",
    "embedding_scale",
    "residual_scale",
    "logit_scale",
];

const SPECIAL_IDS: &[&str] = &[
    "bos_token_id",
    "eos_token_id",
    "unknown_token_id",
    "padding_token_id",
    "seperator_token_id",
    "eot_token_id",
    "eom_token_id",
    "mask_token_id",
    "fim_pre_token_id",
    "fim_suf_token_id",
    "fim_mid_token_id",
];

const SPECIAL_FLAGS: &[&str] = &["add_bos_token", "add_eos_token", "add_sep_token"];

const TOKENIZER_MODELS: &[&str] = &[
    "llama",
    "gpt2",
    "bert",
    "t5",
    "rwkv",
    "plamo2",
    "gemma4",
    "none",
    "no_vocab",
    "test",
    "whitespace",
    "hybriddna",
    "not-a-tokenizer",
];

const TOKENIZER_PRES: &[&str] = &[
    "default",
    "llama3",
    "smollm",
    "qwen2",
    "gpt-2",
    "gemma4",
    "kimi-k2",
    "tekken",
    "not-a-pre-tokenizer",
];

const ARCHITECTURES: &[&str] = &[
    "llama",
    "llama4",
    "qwen2",
    "qwen3",
    "qwen3moe",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3n",
    "phi3",
    "mamba",
    "mamba2",
    "rwkv6",
    "rwkv7",
    "bert",
    "t5",
    "gpt2",
    "falcon",
    "starcoder2",
    "deepseek2",
    "granite",
    "granitehybrid",
    "olmo2",
    "command-r",
    "jamba",
    "deci",
    "plamo2",
    "clip",
    "not-an-architecture",
];

const ROPE_SCALING: &[&str] = &["none", "linear", "yarn", "longrope", "dynamic", "", "nope"];

/// One model a mutant starts from.
pub struct Base {
    /// A name for the report (`llama-Q8_0`, `SmolLM2`).
    pub name: String,
    /// The valid model, ready to edit.
    pub writer: GgufWriter,
}

/// A mutated model.
pub struct Mutant {
    /// The classes of the mutations applied, in order.
    pub classes: Vec<Class>,
    /// What each mutation did.
    pub description: String,
    /// The file to write.
    pub writer: GgufWriter,
}

/// Applies 1 to `max_mutations` random mutations to a copy of `base`.
pub fn mutate(base: &Base, rng: &mut StdRng, max_mutations: usize) -> Mutant {
    let mut writer = base.writer.clone();
    let mut classes = Vec::new();
    let mut steps = Vec::new();
    let n = rng.random_range(1..=max_mutations.max(1));
    let mut attempts = 0;
    while classes.len() < n && attempts < 64 {
        attempts += 1;
        let class = *Class::ALL.choose(rng).unwrap_or(&Class::Hparam);
        if let Some(step) = apply(class, &mut writer, rng) {
            classes.push(class);
            steps.push(format!("{class}: {step}"));
        }
    }
    Mutant {
        classes,
        description: format!("{}: {}", base.name, steps.join("; ")),
        writer,
    }
}

/// Applies one mutation of `class`; `None` when it does not apply to this model.
pub fn apply(class: Class, w: &mut GgufWriter, rng: &mut StdRng) -> Option<String> {
    let arch = w.get("general.architecture")?.as_str()?.to_string();
    match class {
        Class::Hparam => hparam(w, &arch, rng),
        Class::HparamType => hparam_type(w, &arch, rng),
        Class::LayerArray => layer_array(w, &arch, rng),
        Class::Float => float(w, &arch, rng),
        Class::Shape => shape(w, rng),
        Class::MissingTensor => missing_tensor(w, rng),
        Class::ExtraTensor => extra_tensor(w, &arch, rng),
        Class::TensorType => tensor_type(w, rng),
        Class::Vocab => vocab(w, rng),
        Class::SpecialToken => special_token(w, rng),
        Class::Tokenizer => tokenizer(w, rng),
        Class::RopeScaling => {
            let value = *ROPE_SCALING.choose(rng)?;
            w.set(format!("{arch}.rope.scaling.type"), value);
            Some(format!("{arch}.rope.scaling.type = {value:?}"))
        }
        Class::Alignment => {
            let value = *[1u32, 2, 8, 16, 64, 256, 4096].choose(rng)?;
            w.set("general.alignment", value);
            Some(format!("general.alignment = {value}"))
        }
        Class::Architecture => architecture(w, &arch, rng),
    }
}

fn current_u64(w: &GgufWriter, key: &str) -> u64 {
    w.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn n_layer(w: &GgufWriter, arch: &str) -> u64 {
    current_u64(w, &format!("{arch}.block_count"))
}

/// An odd value near or far from `current`.
fn odd_u32(current: u64, rng: &mut StdRng) -> u32 {
    let current = u32::try_from(current).unwrap_or(u32::MAX);
    let choices = [
        0,
        1,
        2,
        3,
        7,
        current.wrapping_sub(1),
        current.saturating_add(1),
        current.saturating_mul(2),
        current / 2,
        current.saturating_mul(16),
        511,
        512,
        513,
        1023,
        1024,
        1025,
        65_535,
        1 << 20,
        1 << 24,
        1 << 31,
        u32::MAX - 1,
        u32::MAX,
    ];
    *choices.choose(rng).unwrap_or(&0)
}

fn hparam(w: &mut GgufWriter, arch: &str, rng: &mut StdRng) -> Option<String> {
    let key = format!("{arch}.{}", INT_KEYS.choose(rng)?);
    let value = odd_u32(current_u64(w, &key), rng);
    w.set(key.clone(), value);
    Some(format!("{key} = {value}"))
}

fn hparam_type(w: &mut GgufWriter, arch: &str, rng: &mut StdRng) -> Option<String> {
    let key = format!("{arch}.{}", INT_KEYS.choose(rng)?);
    let current = current_u64(w, &key);
    let value = match rng.random_range(0..6) {
        0 => Value::U64(current),
        1 => Value::I32(i32::try_from(current).unwrap_or(-1)),
        2 => Value::I32(-1),
        3 => Value::F32(current as f32),
        4 => Value::String(current.to_string()),
        _ => Value::Bool(true),
    };
    let shown = format!("{value:?}");
    w.set(key.clone(), value);
    Some(format!("{key} = {shown}"))
}

fn layer_array(w: &mut GgufWriter, arch: &str, rng: &mut StdRng) -> Option<String> {
    let key = format!("{arch}.{}", LAYER_KEYS.choose(rng)?);
    let layers = n_layer(w, arch);
    let current = u32::try_from(current_u64(w, &key)).unwrap_or(0);
    let len = match rng.random_range(0..4) {
        0 => layers.saturating_sub(1),
        1 => layers + 1,
        _ => layers,
    };
    let mut values = vec![current; usize::try_from(len.min(4096)).ok()?];
    let odd = odd_u32(u64::from(current), rng);
    if let Some(slot) = values.choose_mut(rng) {
        *slot = odd;
    }
    w.set(key.clone(), Value::Array(ArrayValue::U32(values)));
    Some(format!(
        "{key} = per-layer array of {len} (one element {odd})"
    ))
}

fn float(w: &mut GgufWriter, arch: &str, rng: &mut StdRng) -> Option<String> {
    let key = format!("{arch}.{}", FLOAT_KEYS.choose(rng)?);
    let value = *[
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -1.0,
        1e-45,
        1e38,
        -1e38,
    ]
    .choose(rng)?;
    w.set(key.clone(), value);
    Some(format!("{key} = {value}"))
}

fn pick_tensor(w: &GgufWriter, rng: &mut StdRng) -> Option<String> {
    let names: Vec<&str> = w.tensor_names().collect();
    names.choose(rng).map(|s| s.to_string())
}

fn tensor_type_of(w: &GgufWriter, name: &str) -> GgmlType {
    w.tensor_type_id(name)
        .and_then(GgmlType::from_id)
        .unwrap_or(GgmlType::F32)
}

/// The type to keep for `dims`: `t` if its rows are whole blocks, else F32.
fn fitting_type(t: GgmlType, dims: &[u64]) -> GgmlType {
    if dims.first().is_some_and(|d| d % t.block_size() == 0) {
        t
    } else {
        GgmlType::F32
    }
}

/// At most this many bytes of zeros for a reshaped tensor.
const MAX_TENSOR_BYTES: u64 = 64 << 20;

fn reshape_bounded(w: &mut GgufWriter, name: &str, dims: &[u64], t: GgmlType) -> bool {
    let bytes = dims
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .and_then(|n| t.row_size(n));
    bytes.is_some_and(|b| b <= MAX_TENSOR_BYTES) && w.reshape_tensor(name, dims, t)
}

fn shape(w: &mut GgufWriter, rng: &mut StdRng) -> Option<String> {
    let name = pick_tensor(w, rng)?;
    let old = w.tensor_dims(&name)?.to_vec();
    let t = tensor_type_of(w, &name);
    let mut dims = old.clone();
    let i = rng.random_range(0..dims.len().max(1));
    match rng.random_range(0..8) {
        0 if !dims.is_empty() => dims[i] += if i == 0 { t.block_size() } else { 1 },
        1 if !dims.is_empty() => {
            dims[i] = dims[i].saturating_sub(if i == 0 { t.block_size() } else { 1 })
        }
        2 if !dims.is_empty() => dims[i] *= 2,
        3 if !dims.is_empty() => dims[i] = 0,
        4 if dims.len() >= 2 => dims.swap(0, 1),
        5 if dims.len() < 4 => dims.push(*[1u64, 2].choose(rng)?),
        6 if dims.len() > 1 => {
            dims.pop();
        }
        _ if !dims.is_empty() => dims[i] = 1,
        _ => dims = vec![1],
    }
    let t = fitting_type(t, &dims);
    reshape_bounded(w, &name, &dims, t).then(|| format!("{name} {old:?} -> {dims:?} {t}"))
}

fn missing_tensor(w: &mut GgufWriter, rng: &mut StdRng) -> Option<String> {
    let name = pick_tensor(w, rng)?;
    w.remove_tensor(&name).then(|| format!("removed {name}"))
}

fn extra_tensor(w: &mut GgufWriter, arch: &str, rng: &mut StdRng) -> Option<String> {
    let source = pick_tensor(w, rng)?;
    let dims = w.tensor_dims(&source)?.to_vec();
    let t = tensor_type_of(w, &source);
    let suffix = source
        .strip_prefix("blk.")
        .and_then(|r| r.split_once('.'))
        .map_or(source.as_str(), |(_, tail)| tail)
        .to_string();
    let layers = n_layer(w, arch);
    let name = match rng.random_range(0..4) {
        0 => format!("blk.{layers}.{suffix}"),
        1 => format!("blk.{}.{suffix}", u32::MAX),
        2 => "output.weight".to_string(),
        _ => format!("extra.{suffix}"),
    };
    if w.tensor_dims(&name).is_some() {
        return None;
    }
    w.add_tensor_zeroed(name.clone(), &dims, t);
    Some(format!("added {name} {dims:?} {t} (like {source})"))
}

fn tensor_type(w: &mut GgufWriter, rng: &mut StdRng) -> Option<String> {
    let name = pick_tensor(w, rng)?;
    let dims = w.tensor_dims(&name)?.to_vec();
    let types: Vec<GgmlType> = GgmlType::all()
        .filter(|t| dims.first().is_some_and(|d| d % t.block_size() == 0))
        .collect();
    let t = *types.choose(rng)?;
    let old = tensor_type_of(w, &name);
    reshape_bounded(w, &name, &dims, t).then(|| format!("{name} {old} -> {t}"))
}

fn tokens(w: &GgufWriter) -> Option<Vec<String>> {
    w.get("tokenizer.ggml.tokens")?
        .as_array()?
        .as_strings()
        .map(StringArray::to_vec)
}

/// Resizes the embedding and output matrices to `n_vocab` rows, so a vocabulary change gets
/// past llama.cpp's shape check.
fn resize_vocab_tensors(w: &mut GgufWriter, n_vocab: u64) {
    for name in ["token_embd.weight", "output.weight"] {
        if let Some(dims) = w.tensor_dims(name).map(<[u64]>::to_vec) {
            if dims.len() == 2 {
                let t = tensor_type_of(w, name);
                reshape_bounded(w, name, &[dims[0], n_vocab], t);
            }
        }
    }
}

fn vocab(w: &mut GgufWriter, rng: &mut StdRng) -> Option<String> {
    let mut list = tokens(w)?;
    let n = list.len();
    let step = match rng.random_range(0..12) {
        0 => {
            let keep = *[1usize, n / 2, n.saturating_sub(1)].choose(rng)?;
            list.truncate(keep.max(1));
            format!("tokens truncated to {}", list.len())
        }
        1 => {
            let add = *[1usize, 7, 1000].choose(rng)?;
            list.extend((0..add).map(|i| format!("extra-token-{i}")));
            format!("{add} tokens appended")
        }
        2 => {
            let (i, j) = (rng.random_range(0..n), rng.random_range(0..n));
            if i == j {
                return None;
            }
            list[i] = list[j].clone();
            format!("token {i} duplicates token {j}")
        }
        3 => {
            let i = rng.random_range(0..n);
            list[i].clear();
            format!("token {i} empty")
        }
        4 => {
            let i = rng.random_range(0..n);
            list[i] = "x".repeat(1 << 16);
            format!("token {i} is 64 KiB long")
        }
        5 => {
            let len = *[0usize, 1, n.saturating_sub(1), n + 1].choose(rng)?;
            let scores: Vec<f32> = (0..len).map(|i| -(i as f32)).collect();
            w.set("tokenizer.ggml.scores", Value::Array(scores.into()));
            return Some(format!("scores of length {len} for {n} tokens"));
        }
        6 => {
            let len = *[0usize, 1, n.saturating_sub(1), n + 1].choose(rng)?;
            w.set(
                "tokenizer.ggml.token_type",
                Value::Array(ArrayValue::I32(vec![1; len])),
            );
            return Some(format!("token types of length {len} for {n} tokens"));
        }
        7 => {
            let value = *[-1i32, 0, 7, 99, i32::MIN].choose(rng)?;
            w.set(
                "tokenizer.ggml.token_type",
                Value::Array(ArrayValue::I32(vec![value; n])),
            );
            return Some(format!("every token type {value}"));
        }
        8 => {
            let array = match rng.random_range(0..3) {
                0 => ArrayValue::U32(vec![1; n]),
                1 => ArrayValue::F64(vec![0.0; n]),
                _ => ArrayValue::String(vec!["s".to_string(); n].into()),
            };
            let key = *["tokenizer.ggml.scores", "tokenizer.ggml.token_type"].choose(rng)?;
            let shown = format!("{:?}", array.element_type());
            w.set(key, Value::Array(array));
            return Some(format!("{key} of element type {shown}"));
        }
        9 => {
            let key = *[
                "tokenizer.ggml.scores",
                "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges",
                "tokenizer.ggml.tokens",
            ]
            .choose(rng)?;
            return w.remove(key).then(|| format!("removed {key}"));
        }
        10 => {
            let merges = w
                .get("tokenizer.ggml.merges")?
                .as_array()?
                .as_strings()?
                .to_vec();
            let mut merges = merges;
            let i = rng.random_range(0..merges.len().max(1));
            let bad = *["", " ", "nospace", "a  b", " x"].choose(rng)?;
            if let Some(m) = merges.get_mut(i) {
                *m = bad.to_string();
            }
            w.set(
                "tokenizer.ggml.merges",
                Value::Array(ArrayValue::String(merges.into())),
            );
            return Some(format!("merge {i} = {bad:?}"));
        }
        _ => {
            // A consistent vocabulary change: tokens, scores, types and matrices all resized.
            let new_n = *[1usize, 2, n / 2, n + 1].choose(rng)?;
            list.resize_with(new_n.max(1), String::new);
            for (i, t) in list.iter_mut().enumerate() {
                if t.is_empty() {
                    *t = format!("resized-{i}");
                }
            }
            let len = list.len();
            w.set(
                "tokenizer.ggml.scores",
                Value::Array(vec![0f32; len].into()),
            );
            w.set(
                "tokenizer.ggml.token_type",
                Value::Array(ArrayValue::I32(vec![1; len])),
            );
            resize_vocab_tensors(w, len as u64);
            format!("vocabulary consistently resized to {len}")
        }
    };
    w.set(
        "tokenizer.ggml.tokens",
        Value::Array(ArrayValue::String(list.into())),
    );
    Some(step)
}

fn special_token(w: &mut GgufWriter, rng: &mut StdRng) -> Option<String> {
    let n = tokens(w).map_or(0, |t| t.len()) as u64;
    if rng.random_bool(0.25) {
        let key = format!("tokenizer.ggml.{}", SPECIAL_FLAGS.choose(rng)?);
        let value = rng.random_bool(0.5);
        w.set(key.clone(), value);
        return Some(format!("{key} = {value}"));
    }
    let key = format!("tokenizer.ggml.{}", SPECIAL_IDS.choose(rng)?);
    if rng.random_bool(0.2) {
        return w.remove(&key).then(|| format!("removed {key}"));
    }
    let value = match rng.random_range(0..7) {
        0 => Value::U32(u32::try_from(n).unwrap_or(u32::MAX)),
        1 => Value::U32(u32::try_from(n + 1).unwrap_or(u32::MAX)),
        2 => Value::U32(u32::MAX),
        3 => Value::U32(1 << 31),
        4 => Value::I32(-1),
        5 => Value::U64(u64::MAX),
        _ => Value::U32(0),
    };
    let shown = format!("{value:?}");
    w.set(key.clone(), value);
    Some(format!("{key} = {shown} ({n} tokens)"))
}

fn tokenizer(w: &mut GgufWriter, rng: &mut StdRng) -> Option<String> {
    if rng.random_bool(0.6) {
        let value = *TOKENIZER_MODELS.choose(rng)?;
        w.set("tokenizer.ggml.model", value);
        if (value == "none" || value == "no_vocab") && rng.random_bool(0.5) {
            let arch = w.get("general.architecture")?.as_str()?.to_string();
            let size = odd_u32(0, rng);
            w.set(format!("{arch}.vocab_size"), size);
            return Some(format!(
                "tokenizer.ggml.model = {value:?}, {arch}.vocab_size = {size}"
            ));
        }
        Some(format!("tokenizer.ggml.model = {value:?}"))
    } else {
        let value = *TOKENIZER_PRES.choose(rng)?;
        w.set("tokenizer.ggml.pre", value);
        Some(format!("tokenizer.ggml.pre = {value:?}"))
    }
}

fn architecture(w: &mut GgufWriter, arch: &str, rng: &mut StdRng) -> Option<String> {
    let to = *ARCHITECTURES.choose(rng)?;
    if to == arch {
        return None;
    }
    let prefix = format!("{arch}.");
    let keys: Vec<String> = w
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    for key in keys {
        if let Some(value) = w.get(&key).cloned() {
            w.remove(&key);
            w.set(format!("{to}.{}", &key[prefix.len()..]), value);
        }
    }
    w.set("general.architecture", to);
    Some(format!("general.architecture {arch} -> {to}"))
}
