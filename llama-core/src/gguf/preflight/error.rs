//! [`PreflightError`]: what the preflight refused, where, what it found and what it expected.

use std::fmt;

/// The check a file failed: one class of well-formed GGUF that llama.cpp mishandles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// `{arch}.block_count` outside 1..=512 (`GGML_ASSERT` in `load_hparams`).
    BlockCount,
    /// `{arch}.nextn_predict_layers` above the block count (`GGML_ASSERT` in `load_hparams`).
    NextnLayers,
    /// Expert counts that contradict each other or exceed 1024 (`GGML_ASSERT` in
    /// `load_hparams`).
    Experts,
    /// `{arch}.rope.scaling.type` unknown (`GGML_ASSERT` in `load_hparams`).
    RopeScaling,
    /// A norm epsilon that is negative or NaN (`GGML_ASSERT(eps >= 0)` in the first decode).
    NormEpsilon,
    /// Two tokens with the same text (`GGML_ASSERT` in the vocabulary load).
    DuplicateToken,
    /// A BOS, EOS or separator token the tokenizer adds but that does not exist
    /// (`GGML_ASSERT` when text is tokenized).
    MissingSpecialToken,
    /// A SentencePiece vocabulary without a token for some byte: text holding a character it
    /// lacks makes `llama_tokenize` throw (`std::terminate`).
    ByteFallback,
    /// A token too long for the Unigram or RWKV tokenizer's trie, which recurses once a byte
    /// (a stack overflow while loading).
    TokenLength,
    /// An RWKV vocabulary where a byte starts tokens but is not one: `llama_tokenize` loops,
    /// appending tokens until memory runs out.
    TokenizerLoop,
    /// Byte tokens in a WordPiece vocabulary (`GGML_ABORT` rendering them, during the load).
    ByteToken,
    /// No vocabulary (`tokenizer.ggml.model` `none` or `no_vocab`): `GGML_ASSERT` when text is
    /// tokenized (and the declared size is allocated, unchecked, during the load).
    NoVocabulary,
    /// A file's first tensor, always mapped, not at a multiple of 32 bytes (`GGML_ASSERT`
    /// making the mapped buffer).
    TensorAlignment,
    /// A 1-D element-wise operand (norm, bias, `ssm_d`) that is not F32, or a 1-D tensor in a
    /// block-quantised, integer or F64 type: the CPU's element-wise kernels take only F32
    /// there (`GGML_ABORT` in the first decode).
    VectorType,
    /// A matrix in a type the CPU cannot multiply (I8 to I64, F64, Q8_1, Q8_K): a null
    /// kernel, a segmentation fault in the first decode.
    MatrixType,
    /// A state-space `ssm_a` that is not F32, or an `ssm_conv1d.weight` without 4-byte
    /// elements (`GGML_ASSERT` in `ssm_scan` / `ssm_conv`).
    StateSpaceType,
    /// An attention layer with no heads or no KV heads, or with other head counts than layer
    /// 0 where tensors are built from layer 0's (a division by zero in the load, or a
    /// `GGML_ASSERT` in the first decode).
    AttentionHeads,
    /// Rotary dimensions wider than the head (`GGML_ASSERT` in `ggml_rope`).
    RopeDimensions,
    /// Key and value heads of different widths where the graph requires them equal
    /// (`GGML_ASSERT` building the graph).
    HeadWidths,
    /// A state-space block with no convolution or no time-step rank (`GGML_ASSERT`
    /// building the graph).
    StateSpace,
}

impl Check {
    /// What llama.cpp does with such a file when nothing stops it.
    pub fn consequence(self) -> &'static str {
        match self {
            Check::MatrixType => "llama.cpp would crash with a segmentation fault",
            Check::AttentionHeads => "llama.cpp would divide by zero or abort",
            Check::TokenLength => "llama.cpp would overflow its stack",
            Check::TokenizerLoop => "llama.cpp would loop, allocating until memory runs out",
            _ => "llama.cpp would abort",
        }
    }
}

/// The part of the file a check is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A metadata key.
    Key(String),
    /// A tensor, by name.
    Tensor(String),
    /// A token of `tokenizer.ggml.tokens`, by id.
    Token(u64),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Key(key) => write!(f, "key {key}"),
            Subject::Tensor(name) => write!(f, "tensor {name}"),
            Subject::Token(id) => write!(f, "token {id}"),
        }
    }
}

/// A well-formed GGUF file that llama.cpp would abort, crash or allocate without bound on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{subject} is {found}, expected {expected} ({})", check.consequence())]
pub struct PreflightError {
    /// Which check failed.
    pub check: Check,
    /// The key, tensor or token at fault.
    pub subject: Subject,
    /// What the file holds there.
    pub found: String,
    /// What llama.cpp can take.
    pub expected: String,
}

impl PreflightError {
    /// A failure of `check` about metadata key `key`.
    pub(super) fn key(
        check: Check,
        key: impl Into<String>,
        found: impl fmt::Display,
        expected: impl Into<String>,
    ) -> PreflightError {
        PreflightError {
            check,
            subject: Subject::Key(key.into()),
            found: found.to_string(),
            expected: expected.into(),
        }
    }

    /// A failure of `check` about tensor `name`.
    pub(super) fn tensor(
        check: Check,
        name: impl Into<String>,
        found: impl fmt::Display,
        expected: impl Into<String>,
    ) -> PreflightError {
        PreflightError {
            check,
            subject: Subject::Tensor(name.into()),
            found: found.to_string(),
            expected: expected.into(),
        }
    }
}
