//! Running one mutant: our check in this process, llama.cpp in a child process, and the
//! outcome of each.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use llama_core::gguf::GgufModel;
use llama_core::LoadError;

use crate::child::status;

/// What our side said about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `check_model_file` accepted it: llama.cpp would be given it.
    Accepted,
    /// The GGUF reader refused it.
    Reader(String),
    /// The preflight refused it.
    Preflight(String),
}

impl Verdict {
    /// Whether llama.cpp would be given the file.
    pub fn accepted(&self) -> bool {
        matches!(self, Verdict::Accepted)
    }
}

/// Checks `path` as the run path does (`check_model_file`), or with the reader alone.
pub fn check(path: &Path, reader_only: bool) -> Verdict {
    if reader_only {
        return match GgufModel::open(path) {
            Ok(_) => Verdict::Accepted,
            Err(e) => Verdict::Reader(e.to_string()),
        };
    }
    match llama_core::check_model_file(path) {
        Ok(_) => Verdict::Accepted,
        Err(e @ LoadError::Hostile { .. }) => Verdict::Preflight(e.to_string()),
        Err(e) => Verdict::Reader(e.to_string()),
    }
}

/// What llama.cpp did with a file, in the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Loaded, decoded and rendered.
    Ok,
    /// A clean refusal at a stage (`load`, `context`, `tokenize`, `decode`).
    Refused(&'static str),
    /// Killed by a signal (abort, segfault, ...).
    Signal(i32),
    /// Still running at the timeout (killed).
    Timeout,
    /// Finished, but its peak RSS was over the limit.
    HugeRss(u64),
    /// Another exit status.
    Exit(i32),
}

impl Outcome {
    /// Whether this is what the preflight must prevent.
    pub fn is_bad(&self) -> bool {
        matches!(
            self,
            Outcome::Signal(_) | Outcome::Timeout | Outcome::HugeRss(_) | Outcome::Exit(_)
        )
    }
}

/// The child's outcome and the tail of its stderr.
pub struct ChildRun {
    /// What happened.
    pub outcome: Outcome,
    /// The last lines of the child's stderr.
    pub stderr_tail: String,
}

/// Peak RSS above which a finished child counts as having allocated without bound.
pub const HUGE_RSS: u64 = 1 << 30;

/// Runs this example as a child on `path`, with `timeout`. `scratch` names a file for the
/// child's stderr.
pub fn run_child(path: &Path, timeout: Duration, scratch: &Path) -> std::io::Result<ChildRun> {
    use std::os::unix::process::ExitStatusExt;
    let exe = std::env::current_exe()?;
    let stderr = File::create(scratch)?;
    let mut child = Command::new(exe)
        .arg("--child")
        .arg(path)
        .env("OMP_NUM_THREADS", "1")
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    let peak = stdout
        .lines()
        .find_map(|l| l.split_once("peak_rss ").map(|(_, v)| v))
        .and_then(|v| v.trim().parse::<u64>().ok());
    let outcome = match status {
        None => Outcome::Timeout,
        Some(s) => match (s.signal(), s.code()) {
            (Some(sig), _) => Outcome::Signal(sig),
            (None, Some(code)) => match u8::try_from(code).unwrap_or(255) {
                _ if peak.is_some_and(|p| p > HUGE_RSS) => Outcome::HugeRss(peak.unwrap_or(0)),
                status::OK => Outcome::Ok,
                status::LOAD_ERROR => Outcome::Refused("load"),
                status::CONTEXT_ERROR => Outcome::Refused("context"),
                status::TOKENIZE_ERROR => Outcome::Refused("tokenize"),
                status::DECODE_ERROR => Outcome::Refused("decode"),
                _ => Outcome::Exit(code),
            },
            (None, None) => Outcome::Exit(-1),
        },
    };
    let text = std::fs::read(scratch).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(12)..].join("\n");
    Ok(ChildRun {
        outcome,
        stderr_tail: tail,
    })
}

/// A short signature of a bad outcome: ggml's `file:line: message` line when there is one
/// (with the path trimmed to the file name), else the outcome.
pub fn signature(run: &ChildRun) -> String {
    let ggml = run.stderr_tail.lines().find(|l| {
        (l.contains("GGML_ASSERT")
            || l.contains(".cpp:")
            || l.contains(".c:")
            || l.starts_with("terminate called")
            || l.contains("overflowed its stack"))
            && !l.starts_with("llama.cpp: ")
    });
    match ggml {
        Some(line) => {
            let line = line.rsplit('/').next().unwrap_or(line);
            line.chars().take(160).collect()
        }
        None => match &run.outcome {
            Outcome::Signal(s) => format!("signal {s}"),
            Outcome::Timeout => "timeout".to_string(),
            Outcome::HugeRss(p) => format!("peak RSS {} MiB", p >> 20),
            other => format!("{other:?}"),
        },
    }
}

/// The last line llama.cpp logged as the reason for a clean refusal.
pub fn refusal_reason(run: &ChildRun) -> Option<String> {
    let lines = || run.stderr_tail.lines().rev();
    lines()
        .find_map(|l| l.split_once("error loading model: ").map(|(_, r)| r))
        .or_else(|| lines().find_map(|l| l.split_once("failed to initialize the context: ").map(|(_, r)| r)))
        .or_else(|| lines().find(|l| l.contains("failed to")))
        .map(|l| l.trim_start_matches("llama.cpp: ").chars().take(160).collect())
}
