//! Hostile variants of the generated models: one file per class of well-formed GGUF that
//! llama.cpp's loader (pinned llama-cpp-sys-2 0.1.161) mishandles, and, for comparison, a few
//! that it refuses cleanly. The load fuzzer (`llama-core/examples/load_fuzz`) found them; the
//! preflight ([`crate::gguf::preflight`]) must refuse the first kind and let the second reach
//! llama.cpp, whose own error then stands; the preflight tests run both kinds through
//! llama.cpp in a child process to show which is which.
//!
//! ```
//! # use llama_core::gguf::synthetic::hostile::Hostile;
//! # use llama_core::gguf::{GgufFile, GgufModel, preflight};
//! let bytes = Hostile::UnknownRopeScaling.build().to_bytes();
//! let model = GgufModel::from_file(GgufFile::parse(&bytes).unwrap());
//! assert!(preflight(&model).is_err());
//! ```

use super::{Shape, SyntheticModel};
use crate::gguf::ggml_type::GgmlType;
use crate::gguf::preflight::Check;
use crate::gguf::value::{ArrayValue, StringArray, Value};
use crate::gguf::writer::GgufWriter;

/// What llama.cpp does with a [`Hostile`] file when nothing stops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unchecked {
    /// `GGML_ASSERT` / `GGML_ABORT`, or an uncaught C++ exception: the process aborts
    /// (SIGABRT).
    Aborts,
    /// A segmentation fault (SIGSEGV).
    Segfaults,
    /// An integer division by zero (SIGFPE).
    DividesByZero,
    /// Recurses until the stack overflows (Rust's guard-page handler then aborts).
    OverflowsStack,
    /// Loops, allocating until an allocation fails (an uncaught `std::bad_alloc` aborts; without
    /// a memory limit, until the machine runs out).
    LoopsAllocating,
    /// Allocates and touches gigabytes of memory before refusing the file.
    AllocatesGigabytes,
    /// Refuses the file with an error (the load returns NULL): no preflight needed.
    RefusesCleanly,
    /// Loads and runs it (however odd its output): no preflight needed.
    Runs,
}

/// One hostile (or merely broken) model, generated in code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hostile {
    /// `{arch}.block_count` = 0.
    ZeroBlocks,
    /// `{arch}.block_count` above llama.cpp's 512 layers.
    TooManyBlocks,
    /// `{arch}.nextn_predict_layers` above the block count.
    NextnAboveBlocks,
    /// `{arch}.expert_count` above llama.cpp's 1024 experts.
    TooManyExperts,
    /// `{arch}.expert_used_count` above the expert count.
    MoreExpertsUsedThanExist,
    /// Experts, but `{arch}.expert_used_count` = 0.
    NoExpertUsed,
    /// `{arch}.expert_used_count` without experts.
    ExpertsUsedWithoutExperts,
    /// `{arch}.rope.scaling.type` not one of none, linear, yarn, longrope.
    UnknownRopeScaling,
    /// A negative `{arch}.attention.layer_norm_rms_epsilon`.
    NegativeNormEpsilon,
    /// A NaN `{arch}.attention.layer_norm_rms_epsilon`.
    NanNormEpsilon,
    /// Two tokens of `tokenizer.ggml.tokens` with the same text.
    DuplicateToken,
    /// A one-token vocabulary (embedding and output resized to match): the SentencePiece
    /// tokenizer adds a BOS token that is out of range.
    BosOutsideVocabulary,
    /// A WordPiece (`bert`) tokenizer over a vocabulary with byte tokens.
    ByteTokensInWordPiece,
    /// A byte token (type 6) whose text is too short to hold `<0xXX>`.
    ShortByteToken,
    /// A SentencePiece vocabulary without `<0x48>` (and without `H`): tokenizing `H` throws.
    MissingByteToken,
    /// The SentencePiece vocabulary relabelled `rwkv`: `<` starts tokens (`<s>`, `<0x00>`)
    /// but is not one.
    RwkvStuckByte,
    /// A Unigram (`t5`) vocabulary with a 64 KiB token: the tokenizer's trie recurses once a
    /// byte.
    LongUnigramToken,
    /// `tokenizer.ggml.model` `none` with a vocabulary size of 2^25 tokens.
    HugeVocabularyWithoutTokens,
    /// `tokenizer.ggml.model` `none` (the vocabulary size matching the embedding).
    NoVocabulary,
    /// `general.alignment` = 8, so tensor data starts off ggml's 32-byte alignment.
    UnalignedTensorData,
    /// A norm weight (1-D) quantized to Q8_0.
    QuantizedNorm,
    /// A norm weight (1-D) in F16.
    HalfNorm,
    /// A matrix in I8 (no CPU matrix multiplication for it).
    IntegerMatrix,
    /// A matrix in F64.
    DoubleMatrix,
    /// A matrix in Q8_K (an intermediate type with no CPU matrix multiplication).
    Q8KMatrix,
    /// A matrix in Q8_1 (an intermediate type with no CPU matrix multiplication).
    Q81Matrix,
    /// Mamba's state matrix `ssm_a` in F16.
    HalfSsmA,
    /// Mamba's convolution `ssm_conv1d.weight` in F16.
    HalfConvolution,
    /// A per-layer `{arch}.expert_used_count` whose layer 2 differs from layer 0.
    UnevenExpertsUsed,
    /// A per-layer `{arch}.attention.head_count_kv` with a zero (attention tensors kept).
    ZeroKvHeadsInOneLayer,
    /// A per-layer `{arch}.attention.head_count_kv` whose layer 1 differs from layer 0.
    UnevenKvHeads,
    /// Gemma 3 with `{arch}.rope.dimension_count` wider than its heads.
    RopeWiderThanHeads,
    /// A negative `{arch}.attention.layer_norm_epsilon` in a llama model (which reads the RMS
    /// epsilon only).
    UnreadNegativeEpsilon,
    /// A per-layer `{arch}.attention.head_count` whose layer 1 differs from layer 0 (llama
    /// uses layer 0's everywhere).
    UnevenQueryHeads,
    /// Mamba's convolution `ssm_conv1d.weight` in I32 (not a matrix multiplication).
    IntegerConvolution,
    /// Mamba's tensors under an attention architecture (`olmo2`) with zero heads.
    ZeroHeadsInAttentionArchitecture,
    /// A llama model whose value heads are narrower than its key heads (tensors to match).
    ValueHeadsNarrowerThanKeys,
    /// Mamba with `{arch}.ssm.conv_kernel` = 0 (convolution tensor to match).
    ZeroConvKernel,
    /// Mamba with `{arch}.ssm.conv_kernel` = 1 (convolution tensor to match).
    OneConvKernel,
    /// Mamba with `{arch}.ssm.state_size` = 0 (tensors to match).
    ZeroSsmState,
    /// Mamba with `{arch}.ssm.time_step_rank` = 0 (tensors to match).
    ZeroTimeStepRank,
    /// Gemma 3 with a per-layer `{arch}.attention.head_count_kv` holding a zero.
    ZeroKvHeadsInOneGemmaLayer,
    /// A required tensor removed (`blk.0.attn_q.weight`).
    MissingTensor,
    /// A tensor with the wrong shape (`blk.0.attn_q.weight`).
    WrongShape,
    /// A tensor for a layer past the block count.
    ExtraLayerTensor,
    /// `{arch}.embedding_length` unlike the tensors' width.
    WrongEmbeddingLength,
    /// More tokens than the embedding has rows.
    VocabularyLongerThanEmbedding,
    /// `tokenizer.ggml.scores` shorter than the token list.
    ShortScores,
    /// Out-of-range `tokenizer.ggml.bos_token_id` and `eos_token_id`.
    SpecialTokenOutOfRange,
    /// `{arch}.attention.head_count_kv` not dividing `head_count` (tensors kept).
    KvHeadsNotDividingHeads,
    /// `{arch}.context_length` = u32::MAX.
    HugeContextLength,
    /// `general.architecture` unknown to llama.cpp.
    UnknownArchitecture,
    /// NaN and infinite rope frequency base and scale.
    NanRope,
}

impl Hostile {
    /// Every variant, hostile ones first.
    pub const ALL: [Hostile; 53] = [
        Hostile::ZeroBlocks,
        Hostile::TooManyBlocks,
        Hostile::NextnAboveBlocks,
        Hostile::TooManyExperts,
        Hostile::MoreExpertsUsedThanExist,
        Hostile::NoExpertUsed,
        Hostile::ExpertsUsedWithoutExperts,
        Hostile::UnknownRopeScaling,
        Hostile::NegativeNormEpsilon,
        Hostile::NanNormEpsilon,
        Hostile::DuplicateToken,
        Hostile::BosOutsideVocabulary,
        Hostile::ByteTokensInWordPiece,
        Hostile::ShortByteToken,
        Hostile::MissingByteToken,
        Hostile::LongUnigramToken,
        Hostile::RwkvStuckByte,
        Hostile::HugeVocabularyWithoutTokens,
        Hostile::NoVocabulary,
        Hostile::UnalignedTensorData,
        Hostile::QuantizedNorm,
        Hostile::HalfNorm,
        Hostile::IntegerMatrix,
        Hostile::DoubleMatrix,
        Hostile::Q8KMatrix,
        Hostile::Q81Matrix,
        Hostile::HalfSsmA,
        Hostile::HalfConvolution,
        Hostile::UnevenExpertsUsed,
        Hostile::ZeroKvHeadsInOneLayer,
        Hostile::UnevenKvHeads,
        Hostile::RopeWiderThanHeads,
        Hostile::ZeroHeadsInAttentionArchitecture,
        Hostile::ValueHeadsNarrowerThanKeys,
        Hostile::ZeroConvKernel,
        Hostile::OneConvKernel,
        Hostile::ZeroSsmState,
        Hostile::ZeroTimeStepRank,
        Hostile::ZeroKvHeadsInOneGemmaLayer,
        Hostile::MissingTensor,
        Hostile::WrongShape,
        Hostile::ExtraLayerTensor,
        Hostile::WrongEmbeddingLength,
        Hostile::VocabularyLongerThanEmbedding,
        Hostile::ShortScores,
        Hostile::SpecialTokenOutOfRange,
        Hostile::KvHeadsNotDividingHeads,
        Hostile::HugeContextLength,
        Hostile::UnknownArchitecture,
        Hostile::NanRope,
        Hostile::UnreadNegativeEpsilon,
        Hostile::UnevenQueryHeads,
        Hostile::IntegerConvolution,
    ];

    /// A kebab-case name, e.g. `unknown-rope-scaling`.
    pub fn name(self) -> &'static str {
        match self {
            Hostile::ZeroBlocks => "zero-blocks",
            Hostile::TooManyBlocks => "too-many-blocks",
            Hostile::NextnAboveBlocks => "nextn-above-blocks",
            Hostile::TooManyExperts => "too-many-experts",
            Hostile::MoreExpertsUsedThanExist => "more-experts-used-than-exist",
            Hostile::NoExpertUsed => "no-expert-used",
            Hostile::ExpertsUsedWithoutExperts => "experts-used-without-experts",
            Hostile::UnknownRopeScaling => "unknown-rope-scaling",
            Hostile::NegativeNormEpsilon => "negative-norm-epsilon",
            Hostile::NanNormEpsilon => "nan-norm-epsilon",
            Hostile::DuplicateToken => "duplicate-token",
            Hostile::BosOutsideVocabulary => "bos-outside-vocabulary",
            Hostile::ByteTokensInWordPiece => "byte-tokens-in-wordpiece",
            Hostile::ShortByteToken => "short-byte-token",
            Hostile::HugeVocabularyWithoutTokens => "huge-vocabulary-without-tokens",
            Hostile::NoVocabulary => "no-vocabulary",
            Hostile::UnevenKvHeads => "uneven-kv-heads",
            Hostile::RopeWiderThanHeads => "rope-wider-than-heads",
            Hostile::UnreadNegativeEpsilon => "unread-negative-epsilon",
            Hostile::MissingByteToken => "missing-byte-token",
            Hostile::LongUnigramToken => "long-unigram-token",
            Hostile::RwkvStuckByte => "rwkv-stuck-byte",
            Hostile::UnevenQueryHeads => "uneven-query-heads",
            Hostile::IntegerConvolution => "integer-convolution",
            Hostile::UnalignedTensorData => "unaligned-tensor-data",
            Hostile::QuantizedNorm => "quantized-norm",
            Hostile::HalfNorm => "half-norm",
            Hostile::IntegerMatrix => "integer-matrix",
            Hostile::DoubleMatrix => "double-matrix",
            Hostile::Q8KMatrix => "q8k-matrix",
            Hostile::Q81Matrix => "q81-matrix",
            Hostile::HalfSsmA => "half-ssm-a",
            Hostile::HalfConvolution => "half-convolution",
            Hostile::UnevenExpertsUsed => "uneven-experts-used",
            Hostile::ZeroKvHeadsInOneLayer => "zero-kv-heads-in-one-layer",
            Hostile::ZeroHeadsInAttentionArchitecture => "zero-heads-in-attention-architecture",
            Hostile::ValueHeadsNarrowerThanKeys => "value-heads-narrower-than-keys",
            Hostile::ZeroConvKernel => "zero-conv-kernel",
            Hostile::OneConvKernel => "one-conv-kernel",
            Hostile::ZeroSsmState => "zero-ssm-state",
            Hostile::ZeroTimeStepRank => "zero-time-step-rank",
            Hostile::ZeroKvHeadsInOneGemmaLayer => "zero-kv-heads-in-one-gemma-layer",
            Hostile::MissingTensor => "missing-tensor",
            Hostile::WrongShape => "wrong-shape",
            Hostile::ExtraLayerTensor => "extra-layer-tensor",
            Hostile::WrongEmbeddingLength => "wrong-embedding-length",
            Hostile::VocabularyLongerThanEmbedding => "vocabulary-longer-than-embedding",
            Hostile::ShortScores => "short-scores",
            Hostile::SpecialTokenOutOfRange => "special-token-out-of-range",
            Hostile::KvHeadsNotDividingHeads => "kv-heads-not-dividing-heads",
            Hostile::HugeContextLength => "huge-context-length",
            Hostile::UnknownArchitecture => "unknown-architecture",
            Hostile::NanRope => "nan-rope",
        }
    }

    /// The variant called `name`.
    pub fn from_name(name: &str) -> Option<Hostile> {
        Hostile::ALL.into_iter().find(|h| h.name() == name)
    }

    /// What llama.cpp does with the file when it is given it unchecked (measured with the
    /// load fuzzer's child: load, context, tokenize, decode, render every token).
    pub fn unchecked(self) -> Unchecked {
        match self {
            Hostile::IntegerMatrix
            | Hostile::DoubleMatrix
            | Hostile::Q8KMatrix
            | Hostile::Q81Matrix => Unchecked::Segfaults,
            Hostile::ZeroHeadsInAttentionArchitecture => Unchecked::DividesByZero,
            Hostile::LongUnigramToken => Unchecked::OverflowsStack,
            Hostile::RwkvStuckByte => Unchecked::LoopsAllocating,
            Hostile::HugeVocabularyWithoutTokens => Unchecked::AllocatesGigabytes,
            Hostile::MissingTensor
            | Hostile::WrongShape
            | Hostile::ExtraLayerTensor
            | Hostile::WrongEmbeddingLength
            | Hostile::VocabularyLongerThanEmbedding
            | Hostile::ShortScores
            | Hostile::ShortByteToken
            | Hostile::KvHeadsNotDividingHeads
            | Hostile::UnknownArchitecture => Unchecked::RefusesCleanly,
            Hostile::SpecialTokenOutOfRange
            | Hostile::HugeContextLength
            | Hostile::NanRope
            | Hostile::OneConvKernel
            | Hostile::ZeroSsmState
            | Hostile::UnreadNegativeEpsilon
            | Hostile::UnevenQueryHeads
            | Hostile::IntegerConvolution => Unchecked::Runs,
            _ => Unchecked::Aborts,
        }
    }

    /// The preflight check that refuses the file; `None` for the files llama.cpp refuses
    /// cleanly or runs, which the preflight lets through.
    pub fn check(self) -> Option<Check> {
        Some(match self {
            Hostile::ZeroBlocks | Hostile::TooManyBlocks => Check::BlockCount,
            Hostile::NextnAboveBlocks => Check::NextnLayers,
            Hostile::TooManyExperts
            | Hostile::MoreExpertsUsedThanExist
            | Hostile::NoExpertUsed
            | Hostile::ExpertsUsedWithoutExperts => Check::Experts,
            Hostile::UnknownRopeScaling => Check::RopeScaling,
            Hostile::NegativeNormEpsilon | Hostile::NanNormEpsilon => Check::NormEpsilon,
            Hostile::DuplicateToken => Check::DuplicateToken,
            Hostile::BosOutsideVocabulary => Check::MissingSpecialToken,
            Hostile::ByteTokensInWordPiece => Check::ByteToken,
            Hostile::MissingByteToken => Check::ByteFallback,
            Hostile::HugeVocabularyWithoutTokens | Hostile::NoVocabulary => Check::NoVocabulary,
            Hostile::UnalignedTensorData => Check::TensorAlignment,
            Hostile::QuantizedNorm | Hostile::HalfNorm => Check::VectorType,
            Hostile::IntegerMatrix
            | Hostile::DoubleMatrix
            | Hostile::Q8KMatrix
            | Hostile::Q81Matrix => Check::MatrixType,
            Hostile::HalfSsmA | Hostile::HalfConvolution => Check::StateSpaceType,
            Hostile::UnevenExpertsUsed => Check::Experts,
            Hostile::LongUnigramToken => Check::TokenLength,
            Hostile::RwkvStuckByte => Check::TokenizerLoop,
            Hostile::ZeroKvHeadsInOneLayer
            | Hostile::UnevenKvHeads
            | Hostile::ZeroKvHeadsInOneGemmaLayer
            | Hostile::ZeroHeadsInAttentionArchitecture => Check::AttentionHeads,
            Hostile::RopeWiderThanHeads => Check::RopeDimensions,
            Hostile::ValueHeadsNarrowerThanKeys => Check::HeadWidths,
            Hostile::ZeroConvKernel | Hostile::ZeroTimeStepRank => Check::StateSpace,
            _ => return None,
        })
    }

    /// Whether the preflight refuses the file: everything llama.cpp neither refuses cleanly
    /// nor runs.
    pub fn refused_by_preflight(self) -> bool {
        self.check().is_some()
    }

    /// The file.
    pub fn build(self) -> GgufWriter {
        let llama = || SyntheticModel::llama(GgmlType::Q8_0).to_writer();
        let moe = || Shape::Moe.model(GgmlType::Q8_0).to_writer();
        let mamba = || Shape::Mamba.model(GgmlType::Q8_0).to_writer();
        let mut w;
        match self {
            Hostile::ZeroBlocks => {
                w = llama();
                w.set("llama.block_count", 0u32);
            }
            Hostile::TooManyBlocks => {
                w = llama();
                w.set("llama.block_count", 513u32);
            }
            Hostile::NextnAboveBlocks => {
                w = llama();
                w.set("llama.nextn_predict_layers", 5u32);
            }
            Hostile::TooManyExperts => {
                w = moe();
                w.set("llama.expert_count", 1025u32);
            }
            Hostile::MoreExpertsUsedThanExist => {
                w = moe();
                w.set("llama.expert_used_count", 9u32);
            }
            Hostile::NoExpertUsed => {
                w = moe();
                w.set("llama.expert_used_count", 0u32);
            }
            Hostile::ExpertsUsedWithoutExperts => {
                w = llama();
                w.set("llama.expert_used_count", 2u32);
            }
            Hostile::UnknownRopeScaling => {
                w = llama();
                w.set("llama.rope.scaling.type", "dynamic");
            }
            Hostile::NegativeNormEpsilon => {
                w = llama();
                w.set("llama.attention.layer_norm_rms_epsilon", -1e-5f32);
            }
            Hostile::NanNormEpsilon => {
                w = llama();
                w.set("llama.attention.layer_norm_rms_epsilon", f32::NAN);
            }
            Hostile::DuplicateToken => {
                w = llama();
                edit_tokens(&mut w, |t| t[300] = t[301].clone());
            }
            Hostile::BosOutsideVocabulary => {
                w = llama();
                resize_vocabulary(&mut w, 1);
            }
            Hostile::ByteTokensInWordPiece => {
                w = llama();
                w.set("tokenizer.ggml.model", "bert");
            }
            Hostile::ShortByteToken => {
                w = llama();
                // Token 300 is a filler word: make it a byte token (type 6) of one character.
                edit_tokens(&mut w, |t| t[300] = "b".to_string());
                let mut types = vec![1i32; 1024];
                types[..259].copy_from_slice(&[[2, 3, 3].as_slice(), &[6; 256]].concat());
                types[300] = 6;
                w.set(
                    "tokenizer.ggml.token_type",
                    Value::Array(ArrayValue::I32(types)),
                );
            }
            Hostile::RwkvStuckByte => {
                w = llama();
                w.set("tokenizer.ggml.model", "rwkv");
            }
            Hostile::LongUnigramToken => {
                w = llama();
                w.set("tokenizer.ggml.model", "t5");
                edit_tokens(&mut w, |t| t[300] = "x".repeat(1 << 16));
            }
            Hostile::MissingByteToken => {
                w = llama();
                // Token 3 + 0x48 is <0x48>; no token is "H".
                edit_tokens(&mut w, |t| t[3 + 0x48] = "<0x48>?".to_string());
            }
            Hostile::UnevenQueryHeads => {
                w = llama();
                w.set(
                    "llama.attention.head_count",
                    Value::Array(ArrayValue::U32(vec![4, 3, 4, 4])),
                );
            }
            Hostile::IntegerConvolution => {
                w = mamba();
                reshape_layers(&mut w, "ssm_conv1d.weight", &[4, 512], GgmlType::I32);
            }
            Hostile::UnreadNegativeEpsilon => {
                w = llama();
                w.set("llama.attention.layer_norm_epsilon", -1f32);
            }
            Hostile::HugeVocabularyWithoutTokens => {
                w = llama();
                w.set("tokenizer.ggml.model", "none");
                w.set("llama.vocab_size", 1u32 << 25);
            }
            Hostile::NoVocabulary => {
                w = llama();
                w.set("tokenizer.ggml.model", "none");
            }
            Hostile::UnevenKvHeads => {
                w = llama();
                w.set(
                    "llama.attention.head_count_kv",
                    Value::Array(ArrayValue::U32(vec![2, 1, 2, 2])),
                );
            }
            Hostile::RopeWiderThanHeads => {
                w = Shape::Gemma3Swa.model(GgmlType::Q8_0).to_writer();
                w.set("gemma3.rope.dimension_count", 1024u32);
            }
            Hostile::UnalignedTensorData => {
                w = unaligned(llama());
            }
            Hostile::QuantizedNorm => {
                w = llama();
                w.reshape_tensor("output_norm.weight", &[256], GgmlType::Q8_0);
            }
            Hostile::HalfNorm => {
                w = llama();
                w.reshape_tensor("output_norm.weight", &[256], GgmlType::F16);
            }
            Hostile::IntegerMatrix => {
                w = llama();
                w.reshape_tensor("blk.0.attn_q.weight", &[256, 256], GgmlType::I8);
            }
            Hostile::DoubleMatrix => {
                w = llama();
                w.reshape_tensor("blk.0.attn_q.weight", &[256, 256], GgmlType::F64);
            }
            Hostile::Q8KMatrix => {
                w = llama();
                w.reshape_tensor("blk.0.attn_q.weight", &[256, 256], GgmlType::Q8_K);
            }
            Hostile::Q81Matrix => {
                w = llama();
                w.reshape_tensor("blk.0.attn_q.weight", &[256, 256], GgmlType::Q8_1);
            }
            Hostile::HalfSsmA => {
                w = mamba();
                w.reshape_tensor("blk.0.ssm_a", &[16, 512], GgmlType::F16);
            }
            Hostile::HalfConvolution => {
                w = mamba();
                reshape_layers(&mut w, "ssm_conv1d.weight", &[4, 512], GgmlType::F16);
            }
            Hostile::UnevenExpertsUsed => {
                w = moe();
                w.set(
                    "llama.expert_used_count",
                    Value::Array(ArrayValue::U32(vec![2, 2, 4, 2])),
                );
            }
            Hostile::ZeroKvHeadsInOneLayer => {
                w = llama();
                w.set(
                    "llama.attention.head_count_kv",
                    Value::Array(ArrayValue::U32(vec![2, 0, 2, 2])),
                );
            }
            Hostile::ZeroHeadsInAttentionArchitecture => {
                w = rename_architecture(mamba(), "mamba", "olmo2");
            }
            Hostile::ValueHeadsNarrowerThanKeys => {
                w = llama();
                w.set("llama.attention.key_length", 64u32);
                w.set("llama.attention.value_length", 32u32);
                reshape_layers(&mut w, "attn_v.weight", &[256, 64], GgmlType::Q8_0);
            }
            Hostile::ZeroConvKernel | Hostile::OneConvKernel => {
                let kernel = u64::from(self == Hostile::OneConvKernel);
                w = mamba();
                w.set("mamba.ssm.conv_kernel", kernel as u32);
                reshape_layers(&mut w, "ssm_conv1d.weight", &[kernel, 512], GgmlType::F32);
            }
            Hostile::ZeroSsmState => {
                w = mamba();
                w.set("mamba.ssm.state_size", 0u32);
                reshape_layers(&mut w, "ssm_x.weight", &[512, 16], GgmlType::Q8_0);
                reshape_layers(&mut w, "ssm_a", &[0, 512], GgmlType::F32);
            }
            Hostile::ZeroTimeStepRank => {
                w = mamba();
                w.set("mamba.ssm.time_step_rank", 0u32);
                reshape_layers(&mut w, "ssm_x.weight", &[512, 32], GgmlType::Q8_0);
                reshape_layers(&mut w, "ssm_dt.weight", &[0, 512], GgmlType::F32);
            }
            Hostile::ZeroKvHeadsInOneGemmaLayer => {
                w = Shape::Gemma3Swa.model(GgmlType::Q8_0).to_writer();
                w.set(
                    "gemma3.attention.head_count_kv",
                    Value::Array(ArrayValue::U32(vec![1, 1, 0, 1, 1, 1])),
                );
            }
            Hostile::MissingTensor => {
                w = llama();
                w.remove_tensor("blk.0.attn_q.weight");
            }
            Hostile::WrongShape => {
                w = llama();
                w.reshape_tensor("blk.0.attn_q.weight", &[256, 128], GgmlType::Q8_0);
            }
            Hostile::ExtraLayerTensor => {
                w = llama();
                w.add_tensor_zeroed("blk.4.attn_q.weight", &[256, 256], GgmlType::Q8_0);
            }
            Hostile::WrongEmbeddingLength => {
                w = llama();
                w.set("llama.embedding_length", 512u32);
            }
            Hostile::VocabularyLongerThanEmbedding => {
                w = llama();
                edit_tokens(&mut w, |t| t.push("extra".to_string()));
            }
            Hostile::ShortScores => {
                w = llama();
                w.set("tokenizer.ggml.scores", Value::Array(vec![0f32; 10].into()));
            }
            Hostile::SpecialTokenOutOfRange => {
                w = llama();
                w.set("tokenizer.ggml.bos_token_id", u32::MAX);
                w.set("tokenizer.ggml.eos_token_id", 1024u32);
            }
            Hostile::KvHeadsNotDividingHeads => {
                w = llama();
                w.set("llama.attention.head_count_kv", 3u32);
            }
            Hostile::HugeContextLength => {
                w = llama();
                w.set("llama.context_length", u32::MAX);
            }
            Hostile::UnknownArchitecture => {
                w = rename_architecture(llama(), "llama", "not-an-architecture");
            }
            Hostile::NanRope => {
                w = llama();
                w.set("llama.rope.freq_base", f32::NAN);
                w.set("llama.rope.scaling.factor", f32::INFINITY);
            }
        }
        w
    }
}

impl std::fmt::Display for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reshapes `blk.N.{suffix}` of every layer (zeroed data).
fn reshape_layers(w: &mut GgufWriter, suffix: &str, dims: &[u64], t: GgmlType) {
    let names: Vec<String> = w
        .tensor_names()
        .filter(|n| n.starts_with("blk.") && n.ends_with(&format!(".{suffix}")))
        .map(str::to_string)
        .collect();
    for name in names {
        w.reshape_tensor(&name, dims, t);
    }
}

fn edit_tokens(w: &mut GgufWriter, edit: impl FnOnce(&mut Vec<String>)) {
    let mut tokens = w
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .and_then(ArrayValue::as_strings)
        .map(StringArray::to_vec)
        .unwrap_or_default();
    edit(&mut tokens);
    w.set(
        "tokenizer.ggml.tokens",
        Value::Array(ArrayValue::String(tokens.into())),
    );
}

/// Cuts the vocabulary to its first `n` tokens, with the matrices to match.
fn resize_vocabulary(w: &mut GgufWriter, n: usize) {
    edit_tokens(w, |t| t.truncate(n));
    w.set("tokenizer.ggml.scores", Value::Array(vec![0f32; n].into()));
    w.set(
        "tokenizer.ggml.token_type",
        Value::Array(ArrayValue::I32(vec![1; n])),
    );
    w.set("llama.vocab_size", n as u32);
    for name in ["token_embd.weight", "output.weight"] {
        w.reshape_tensor(name, &[256, n as u64], GgmlType::Q8_0);
    }
}

/// `w` with `general.alignment` = 8 and a header padded so the data section starts 8 bytes
/// past a multiple of 32.
fn unaligned(mut w: GgufWriter) -> GgufWriter {
    w.set("general.alignment", 8u32);
    for pad in 0..32usize {
        w.set("general.padding", "x".repeat(pad).as_str());
        let bytes = w.to_bytes();
        let parsed = crate::gguf::GgufFile::parse(&bytes);
        if parsed.is_ok_and(|f| f.data_offset % 32 == 8) {
            break;
        }
    }
    w
}

/// `w` under architecture `to`, with every `{from}.` key renamed.
fn rename_architecture(mut w: GgufWriter, from: &str, to: &str) -> GgufWriter {
    let prefix = format!("{from}.");
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
    w
}
