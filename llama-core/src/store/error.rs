//! What can go wrong in the model store: [`StoreError`]. Every variant names the repository,
//! file, URL or path at fault; none carries a token.

use std::path::PathBuf;

use crate::size::ByteSize;

/// A store operation (resolve, pull, list, rm) failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The model reference could not be parsed.
    #[error("invalid model reference '{input}': {reason}")]
    InvalidReference {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The Hub has no such repository (404), or hides it from this token.
    #[error("repository {repo} not found on {endpoint} (404); check the name{hint}")]
    RepoNotFound {
        /// The repository id.
        repo: String,
        /// The Hub endpoint asked.
        endpoint: String,
        /// A hint about the token, when none was sent.
        hint: &'static str,
    },
    /// The revision (branch, tag or commit) does not exist in the repository.
    #[error("revision '{revision}' not found in {repo}")]
    RevisionNotFound {
        /// The repository id.
        repo: String,
        /// The revision asked for.
        revision: String,
    },
    /// The Hub refused access (401 or 403): a gated or private repository.
    #[error("access to {repo} was refused ({status}): {hint}")]
    Unauthorized {
        /// The repository id.
        repo: String,
        /// The HTTP status.
        status: u16,
        /// What to do about it.
        hint: &'static str,
    },
    /// The repository has no such file.
    #[error(
        "{repo} has no file '{file}'; its GGUF files: {}",
        list_or_none(available)
    )]
    FileNotFound {
        /// The repository id.
        repo: String,
        /// The file asked for.
        file: String,
        /// The GGUF files it has.
        available: Vec<String>,
    },
    /// No GGUF file of the repository has the quantisation tag asked for.
    #[error(
        "{repo} has no GGUF file with quantisation {quant}; available: {}",
        list_or_none(available)
    )]
    NoSuchQuant {
        /// The repository id.
        repo: String,
        /// The tag asked for.
        quant: String,
        /// The tags the repository offers.
        available: Vec<String>,
    },
    /// The repository holds no GGUF model file.
    #[error("{repo} holds no GGUF model file")]
    NoGguf {
        /// The repository id.
        repo: String,
    },
    /// A split model is missing some of its parts.
    #[error("{repo}: split model {file} is missing part(s) {missing:?} of {count}")]
    IncompleteSplit {
        /// The repository id.
        repo: String,
        /// The first part's name.
        file: String,
        /// The 1-based numbers of the missing parts.
        missing: Vec<u32>,
        /// How many parts there should be.
        count: u32,
    },
    /// No cache directory could be chosen (none of the variables is set, not even `HOME`).
    #[error("no cache directory: set HF_HUB_CACHE (or HF_HOME, LLAMA_CACHE or HOME)")]
    NoCacheDir,
    /// The model is not in the cache, and the network may not be used.
    #[error("{model} is not in the cache ({cache}) and {why}; run `llama-cli pull {model}` while online")]
    NotCached {
        /// The model reference.
        model: String,
        /// The cache directory searched.
        cache: String,
        /// Why the Hub was not asked (`HF_HUB_OFFLINE` is set, ...).
        why: &'static str,
    },
    /// The model is not in the cache (for commands that only read it: `show`, `rm`).
    #[error("{model} is not in the cache ({cache})")]
    NotInCache {
        /// The model reference.
        model: String,
        /// The cache directory searched.
        cache: String,
    },
    /// The server could not be reached (DNS, connection refused, TLS, timeout).
    #[error("cannot reach {url}: {message}")]
    Network {
        /// The URL, without credentials or query.
        url: String,
        /// The transport's error.
        message: String,
    },
    /// The server answered with an unexpected HTTP status.
    #[error("{url} answered HTTP {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Http {
        /// The URL, without credentials or query.
        url: String,
        /// The status.
        status: u16,
        /// The server's error message, if it sent one.
        detail: Option<String>,
    },
    /// The server's answer did not make sense (bad JSON, missing header).
    #[error("unexpected answer from {url}: {message}")]
    Protocol {
        /// The URL, without credentials or query.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// The downloaded bytes do not have the digest the Hub published. The partial file was
    /// deleted.
    #[error("{file}: checksum mismatch: the Hub lists {algorithm} {expected}, the download has {actual}; the partial file was deleted, run the command again to fetch it anew")]
    DigestMismatch {
        /// The file.
        file: String,
        /// `sha256` or `git-sha1`.
        algorithm: &'static str,
        /// The digest published by the Hub.
        expected: String,
        /// The digest of what was downloaded.
        actual: String,
    },
    /// The download ended with a different size than the Hub published.
    #[error("{file}: the Hub lists {expected} bytes but the server sent {actual}")]
    SizeMismatch {
        /// The file.
        file: String,
        /// The published size.
        expected: u64,
        /// Bytes received.
        actual: u64,
    },
    /// The download kept failing; what was fetched is kept and the next run resumes it.
    #[error("{file}: download failed after {attempts} attempts ({last_error}); {kept} kept in {}, the next run resumes from there", partial.display(), kept = ByteSize(*kept))]
    DownloadFailed {
        /// The file.
        file: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last_error: String,
        /// Bytes kept in the partial file.
        kept: u64,
        /// The partial file.
        partial: PathBuf,
    },
    /// Not enough free disk space for the download.
    #[error("not enough disk space in {}: the download needs {} more but only {} is free", path.display(), ByteSize(*needed), ByteSize(*available))]
    NoSpace {
        /// The directory the blobs go to.
        path: PathBuf,
        /// Bytes still to download.
        needed: u64,
        /// Bytes free.
        available: u64,
    },
    /// A file operation in the cache failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The GGUF header fetched for the fit check is not valid.
    #[error("{file}: the GGUF header is not valid: {source}")]
    BadHeader {
        /// The file.
        file: String,
        /// What the GGUF reader found.
        source: crate::gguf::GgufError,
    },
    /// The model does not fit the memory budget; nothing was downloaded.
    #[error("{model} does not fit --max-mem {budget}: {reason}{}; nothing was downloaded (the fit check read {} of headers)", suggestion_text(suggestion), ByteSize(*header_bytes))]
    DoesNotFit {
        /// The model.
        model: String,
        /// The budget.
        budget: ByteSize,
        /// The planner's refusal, with the change of flags that would fit when there is one.
        reason: String,
        /// A smaller quantisation of the same repository that fits, if one does.
        suggestion: Option<QuantSuggestion>,
        /// Bytes of GGUF headers fetched to decide.
        header_bytes: u64,
    },
    /// The fit check's planner failed (not a refusal: llama.cpp could not size the model).
    #[error("fit check of {model} failed: {message}")]
    FitCheckFailed {
        /// The model.
        model: String,
        /// The planner's error.
        message: String,
    },
}

/// A smaller quantisation that fits the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantSuggestion {
    /// The reference to pull instead, e.g. `org/repo:Q4_0`.
    pub model: String,
    /// Its total size.
    pub size: u64,
}

fn suggestion_text(suggestion: &Option<QuantSuggestion>) -> String {
    match suggestion {
        Some(s) => format!(
            "; {} ({}) fits: llama-cli pull {}",
            s.model,
            ByteSize(s.size),
            s.model
        ),
        None => String::new(),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

impl StoreError {
    /// An I/O error on `path` while doing `what`.
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { what, path, source }
    }
}
