//! What the store reports while it works, for a progress bar (the CLI draws it on stderr).

use std::time::Duration;

/// Receives the store's progress. Every method has a default that ignores it.
pub trait Progress {
    /// A line worth telling the user (a model already cached, a fit-check result).
    fn note(&mut self, _message: &str) {}
    /// A file's download starts: `total` bytes, `resumed_from` of them already there.
    fn start(&mut self, _file: &str, _total: u64, _resumed_from: u64) {}
    /// `bytes` more arrived.
    fn advance(&mut self, _bytes: u64) {}
    /// The connection dropped; the download resumes after `delay`.
    fn retry(&mut self, _file: &str, _attempt: u32, _delay: Duration, _error: &str) {}
    /// Another process is downloading this file; waiting for it.
    fn waiting(&mut self, _file: &str) {}
    /// The file is complete; `checked` names the digest it was verified against (`sha256`,
    /// `git-sha1`), `None` when nothing was published to check.
    fn finish(&mut self, _file: &str, _checked: Option<&'static str>) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
