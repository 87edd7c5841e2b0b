//! Typed errors of the safe API. Each operation has its own enum; [`Error`] wraps them all.
//! Every variant says which file, parameter or value was at fault.

use std::path::PathBuf;

/// Loading a model failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The path does not exist.
    #[error("model file {} does not exist", path.display())]
    NotFound {
        /// The path that was given.
        path: PathBuf,
    },
    /// The path is a directory.
    #[error("{} is a directory, not a model file", path.display())]
    IsDirectory {
        /// The path that was given.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("cannot read model file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a well-formed GGUF model.
    #[error("{} is not a valid GGUF model: {source}", path.display())]
    InvalidGguf {
        /// The file.
        path: PathBuf,
        /// What the GGUF reader found wrong.
        source: crate::gguf::GgufError,
    },
    /// The file is well-formed GGUF but says something llama.cpp's loader would abort, crash
    /// or allocate without bound on (found by `gguf::preflight`).
    #[error("{} cannot be loaded safely: {source}", path.display())]
    Hostile {
        /// The file.
        path: PathBuf,
        /// The key or tensor at fault, what was found and what was expected.
        source: crate::gguf::PreflightError,
    },
    /// The path cannot be passed to llama.cpp.
    #[error("model path {} contains a NUL byte", path.display())]
    InvalidPath {
        /// The path that was given.
        path: PathBuf,
    },
    /// llama.cpp refused the model (its log, shown with -v, says why).
    #[error("llama.cpp could not load {} (run with -v to see llama.cpp's log)", path.display())]
    LlamaCpp {
        /// The file.
        path: PathBuf,
    },
    /// llama.cpp refused a LoRA adapter (not an adapter, or made for another model).
    #[error("{} is not a LoRA adapter for this model (run with -v to see llama.cpp's log)", path.display())]
    Adapter {
        /// The adapter file.
        path: PathBuf,
    },
    /// The load-progress callback asked to stop.
    #[error("loading {} was cancelled", path.display())]
    Cancelled {
        /// The file.
        path: PathBuf,
    },
}

/// Creating a llama.cpp context failed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// llama.cpp returned no context (its log, shown with -v, says why).
    #[error("llama.cpp could not create a context (ctx-size {n_ctx}, batch-size {n_batch}, ubatch-size {n_ubatch}); run with -v to see llama.cpp's log")]
    LlamaCpp {
        /// Requested context length in tokens.
        n_ctx: u32,
        /// Requested logical batch size.
        n_batch: u32,
        /// Requested physical batch size.
        n_ubatch: u32,
    },
    /// A context parameter is out of range.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// llama.cpp refused to apply the LoRA adapters to the context.
    #[error("llama.cpp refused the LoRA adapters (--lora) for this context")]
    Adapters,
}

/// A parameter value outside its allowed range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid value {value} for {name}: expected {expected}")]
pub struct ParamError {
    /// The parameter, named as the command-line flag / config key (e.g. `top-p`).
    pub name: &'static str,
    /// The rejected value, as text.
    pub value: String,
    /// What would be accepted.
    pub expected: &'static str,
}

/// Turning text into tokens failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// The text holds a NUL byte or is longer than llama.cpp accepts.
    #[error("text of {len} bytes cannot be tokenized (too long or contains a NUL byte)")]
    InvalidText {
        /// Length of the text in bytes.
        len: usize,
    },
    /// llama.cpp reported a failure.
    #[error("llama.cpp failed to tokenize {len} bytes of text")]
    Failed {
        /// Length of the text in bytes.
        len: usize,
    },
}

pub use crate::chat::TemplateError;

/// Generating text failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The prompt does not fit the context.
    #[error("the prompt is {n_prompt} tokens but the context holds {n_ctx}; raise --ctx-size or shorten the prompt")]
    PromptTooLong {
        /// Prompt tokens.
        n_prompt: usize,
        /// Context size in tokens.
        n_ctx: usize,
    },
    /// The prompt is empty after tokenization.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// llama.cpp found no KV-cache slot for the batch.
    #[error("no room in the KV cache for {n_tokens} tokens at position {pos}")]
    NoKvSlot {
        /// Tokens in the batch.
        n_tokens: usize,
        /// Position of the batch's first token.
        pos: usize,
    },
    /// llama_decode failed.
    #[error("llama_decode failed with code {code} at position {pos}")]
    Decode {
        /// llama.cpp's return code.
        code: i32,
        /// Position of the batch's first token.
        pos: usize,
    },
    /// Tokenizing the prompt failed.
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// Rendering the conversation failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The engine refused or failed the request.
    #[error("{0}")]
    Engine(String),
}

/// Any error of the safe API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// See [`LoadError`].
    #[error(transparent)]
    Load(#[from] LoadError),
    /// See [`ContextError`].
    #[error(transparent)]
    Context(#[from] ContextError),
    /// See [`ParamError`].
    #[error(transparent)]
    Param(#[from] ParamError),
    /// See [`TokenizeError`].
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// See [`TemplateError`].
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// See [`GenerateError`].
    #[error(transparent)]
    Generate(#[from] GenerateError),
}
