//! The CLI's errors: everything llama-core can report, plus flags, config files and I/O.

use std::path::PathBuf;

/// An error that ends a command with a message and a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// From llama-core.
    #[error(transparent)]
    Core(#[from] llama_core::Error),
    /// A parameter out of range.
    #[error(transparent)]
    Param(#[from] llama_core::ParamError),
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The config file has a bad key or value.
    #[error("config file {}: key '{key}': {message}", path.display())]
    ConfigInvalid {
        /// The file.
        path: PathBuf,
        /// The key at fault.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The run path refused or failed: the model file, the memory plan, streaming, the engine.
    #[error(transparent)]
    Run(#[from] llama_core::run::RunError),
    /// `plan` needs a budget.
    #[error("plan needs a budget: pass --max-mem SIZE (e.g. 1G)")]
    NoBudget,
    /// A turn refused by `--on-full reject`.
    #[error("refused: the prompt ({n_prompt} tokens) plus --n-predict {n_predict} does not fit the context of {n_ctx} tokens (--on-full reject)")]
    WouldOverflow {
        /// Prompt tokens.
        n_prompt: usize,
        /// Requested answer length.
        n_predict: usize,
        /// Context size.
        n_ctx: usize,
    },
    /// A session file could not be used.
    #[error(transparent)]
    StateFile(#[from] llama_core::state_file::StateFileError),
    /// No model was given.
    #[error("no model given: pass -m FILE or -hf REPO[:QUANT] (or set `model` or `hf-repo` in a --config file); scripts/fetch-model.sh downloads the default one")]
    NoModel,
    /// Both `-m` and `-hf` were given.
    #[error("both -m and -hf name a model: pass only one")]
    ModelTwice,
    /// The model store failed (a download, the cache, the Hub).
    #[error(transparent)]
    Store(#[from] llama_core::store::StoreError),
    /// No prompt text was given.
    #[error("no prompt given: pass the text as an argument or pipe it on stdin")]
    NoPrompt,
    /// Reading stdin or writing stdout failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// `serve` could not start or failed.
    #[error(transparent)]
    Serve(#[from] crate::server::ServeError),
    /// Quantizing was refused or failed.
    #[error(transparent)]
    Quantize(#[from] llama_core::quantize::QuantizeError),
    /// Perplexity was refused or failed.
    #[error(transparent)]
    Perplexity(#[from] llama_core::perplexity::PerplexityError),
    /// `perplexity` needs a text.
    #[error("no text to score: pass -f FILE (or --kl-divergence with --kl-divergence-base FILE)")]
    NoTextFile,
    /// A file named on the command line could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A text file is not UTF-8.
    #[error("{} is not UTF-8 text", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    WriteFile {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Embeddings could not be computed.
    #[error(transparent)]
    Embed(#[from] llama_core::embedding::EmbedError),
    /// `embed` needs texts.
    #[error("nothing to embed: give texts with -p TEXT or a file of lines with -f FILE")]
    NoEmbedInput,
    /// `--embd-normalize` other than 2 or -1.
    #[error("invalid --embd-normalize {0}: expected 2 (Euclidean) or -1 (none)")]
    EmbdNormalize(i32),
    /// A grammar flag's grammar or schema cannot be used.
    #[error("{flag}: {source}")]
    Grammar {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        source: llama_core::grammar::GrammarError,
    },
    /// The chat REPL needs a template.
    #[error("the model has no chat template, so chat cannot format turns; pass --chat-template NAME (e.g. chatml) or use `prompt --raw`")]
    ChatNeedsTemplate,
}

impl From<std::io::Error> for CliError {
    /// Only stdout writes convert implicitly; other I/O errors say what they were doing.
    fn from(source: std::io::Error) -> CliError {
        CliError::Io {
            what: "cannot write to stdout",
            source,
        }
    }
}

macro_rules! from_core {
    ($($t:ty),*) => {$(
        impl From<$t> for CliError {
            fn from(e: $t) -> CliError {
                CliError::Core(e.into())
            }
        }
    )*};
}
from_core!(
    llama_core::LoadError,
    llama_core::ContextError,
    llama_core::GenerateError,
    llama_core::TemplateError,
    llama_core::TokenizeError
);

impl CliError {
    /// Whether this error means stdout was closed by its reader (exit quietly).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}
