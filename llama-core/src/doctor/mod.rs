//! `llama-cli doctor`: what a user pastes into a bug report. [`collect`] gathers the version and
//! build, the operating system and CPU, llama.cpp's view (CPU features, AMX, backends,
//! devices: [`SystemInfo`]), the machine's memory and cgroup limit ([`MachineMemory`]), the
//! model's checks (the GGUF reader, then where it fits: [`crate::run::prepare`], which loads no
//! weights), the configuration in force and the relevant environment, with llama.cpp's log of
//! those checks. Secrets are redacted ([`redact`]); [`bundle`] packs it all with recent logs
//! into a `.tar.gz`.
//!
//! A failed check is part of the report, not an error: the report is what is needed most when
//! something is wrong.

pub mod bundle;
pub mod redact;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::ffi::SystemInfo;
use crate::gguf::ModelSummary;
use crate::machine::MachineMemory;
use crate::process_memory::ProcessMemory;
use crate::run::RunSettings;

/// What the caller knows that llama-core does not.
#[derive(Debug, Clone)]
pub struct DoctorInput {
    /// The program's version.
    pub version: String,
    /// How the program was built (profile, features), as the caller describes it.
    pub build: serde_json::Value,
    /// The run settings whose model to check, when a model was given.
    pub run: Option<RunSettings>,
    /// The configuration in force (flags > config file > defaults), as the caller prints it.
    pub configuration: serde_json::Value,
}

/// The operating system and CPU.
#[derive(Debug, Clone, Serialize)]
pub struct OsInfo {
    /// `uname -r` (from `/proc/sys/kernel/osrelease`).
    pub kernel: Option<String>,
    /// `PRETTY_NAME` of `/etc/os-release`.
    pub distribution: Option<String>,
    /// The machine's architecture.
    pub arch: &'static str,
    /// `model name` of `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// Logical CPUs the system has.
    pub logical_cpus: usize,
    /// CPUs this process may use (affinity, cgroup quota).
    pub available_cpus: usize,
}

/// The memory part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryInfo {
    /// Physical memory and the cgroup limit.
    pub machine: MachineMemory,
    /// This process now.
    pub process: ProcessMemory,
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Check<T> {
    /// It passed.
    Ok(T),
    /// It failed, with the error as the user would see it.
    Failed {
        /// The error.
        error: String,
    },
    /// It was not run.
    Skipped {
        /// Why.
        reason: String,
    },
}

impl<T> Check<T> {
    /// Whether it failed.
    pub fn failed(&self) -> bool {
        matches!(self, Check::Failed { .. })
    }
}

/// Where the model fits, from the run path's plan.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    /// Context per sequence as planned.
    pub n_ctx: u32,
    /// Batch and micro-batch.
    pub n_batch: u32,
    /// Micro-batch.
    pub n_ubatch: u32,
    /// Layers on the GPU.
    pub gpu_layers: i32,
    /// Whether layers are streamed from disk.
    pub streams: bool,
    /// The memory plan (with a budget).
    pub plan: Option<crate::planner::Plan>,
    /// Total bytes planned.
    pub planned_bytes: Option<u64>,
    /// Degradations, streaming, GPU notes.
    pub notes: Vec<String>,
}

/// The model's checks.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// The file.
    pub path: PathBuf,
    /// The GGUF reader's verdict and what it found.
    pub gguf: Check<ModelSummary>,
    /// Where it fits.
    pub fit: Check<FitReport>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The program's version.
    pub version: String,
    /// How it was built.
    pub build: serde_json::Value,
    /// Operating system and CPU.
    pub os: OsInfo,
    /// llama.cpp's view: features, AMX, backends, devices.
    pub llama_cpp: SystemInfo,
    /// Memory.
    pub memory: MemoryInfo,
    /// The model's checks, when a model was given.
    pub model: Option<ModelReport>,
    /// The configuration in force (secrets redacted).
    pub configuration: serde_json::Value,
    /// Environment variables that change what llama-cli or llama.cpp do (secrets redacted).
    pub environment: Vec<(String, String)>,
    /// One line per problem found.
    pub problems: Vec<String>,
}

/// A report and llama.cpp's log while it was collected.
#[derive(Debug, Clone)]
pub struct Collected {
    /// The report.
    pub report: Report,
    /// llama.cpp's log lines during the checks (secrets redacted).
    pub llama_cpp_log: Vec<String>,
}

/// Environment variables worth reporting: those with these prefixes or names.
const ENV_PREFIXES: &[&str] = &[
    "LLAMA_", "HF_", "HUGGING", "GGML_", "OMP_", "CUDA_", "RUST_",
];
const ENV_NAMES: &[&str] = &["XDG_CACHE_HOME", "MALLOC_ARENA_MAX"];

fn first_line_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once([':', '=']))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
}

fn os_info() -> OsInfo {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
    OsInfo {
        kernel: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()),
        distribution: read("/etc/os-release").and_then(|t| first_line_value(&t, "PRETTY_NAME")),
        arch: std::env::consts::ARCH,
        cpu_model: first_line_value(&cpuinfo, "model name"),
        logical_cpus: cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count(),
        available_cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
    }
}

/// The relevant environment, secrets redacted, sorted by name.
pub fn environment() -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            ENV_PREFIXES.iter().any(|p| k.starts_with(p)) || ENV_NAMES.contains(&k.as_str())
        })
        .map(|(k, v)| {
            let shown = redact::redact(&format!("{k}={v}"));
            let v = shown
                .split_once('=')
                .map_or(shown.clone(), |(_, v)| v.to_string());
            (k, v)
        })
        .collect();
    vars.sort();
    vars
}

fn model_report(settings: &RunSettings, problems: &mut Vec<String>) -> ModelReport {
    let path = settings.model.clone();
    let gguf = match crate::check_model_file(&path) {
        Ok(model) => Check::Ok(model.summary()),
        Err(err) => Check::Failed {
            error: err.to_string(),
        },
    };
    let fit = match &gguf {
        Check::Failed { .. } => Check::Skipped {
            reason: "the file did not pass the GGUF check".into(),
        },
        _ => match crate::run::prepare(settings) {
            Ok(prepared) => Check::Ok(FitReport {
                n_ctx: prepared.n_ctx_per_seq(),
                n_batch: prepared.ctx_params.n_batch,
                n_ubatch: prepared.ctx_params.n_ubatch,
                gpu_layers: prepared.params.n_gpu_layers,
                streams: prepared.streams,
                planned_bytes: prepared.plan.as_ref().map(|p| p.breakdown.total()),
                plan: prepared.plan,
                notes: prepared.notes,
            }),
            Err(err) => Check::Failed {
                error: err.to_string(),
            },
        },
    };
    if let Check::Failed { error } = &gguf {
        problems.push(format!("model file: {error}"));
    }
    if let Check::Failed { error } = &fit {
        problems.push(format!("memory plan: {error}"));
    }
    ModelReport { path, gguf, fit }
}

/// Redacts every string in a JSON value.
pub fn redact_json(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(redact::redact(s)),
        Value::Array(a) => Value::Array(a.iter().map(redact_json).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let secret = redact::redact(&format!("{k}=x")) != format!("{k}=x");
                    let v = match v {
                        Value::String(_) | Value::Number(_) if secret => {
                            Value::String(redact::REDACTED.to_string())
                        }
                        other => redact_json(other),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Collects the report (see the module docs).
pub fn collect(input: DoctorInput) -> Collected {
    let log = Arc::new(Mutex::new(Vec::new()));
    let guard = {
        let log = Arc::clone(&log);
        crate::Backend::tap_log(move |line| {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(redact::redact(line));
        })
    };
    let mut problems = Vec::new();
    let llama_cpp = SystemInfo::query();
    let machine = MachineMemory::read();
    if machine.physical == 0 {
        problems.push("the machine's physical memory could not be read from /proc/meminfo".into());
    }
    let model = input.run.as_ref().map(|s| model_report(s, &mut problems));
    if llama_cpp.amx.cpu && llama_cpp.amx.used_by_default {
        problems.push("AMX weight buffers are used by default (llama.cpp #20824)".into());
    }
    drop(guard);
    let llama_cpp_log = std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()));
    Collected {
        report: Report {
            version: input.version,
            build: input.build,
            os: os_info(),
            llama_cpp,
            memory: MemoryInfo {
                machine,
                process: ProcessMemory::current(),
            },
            model,
            configuration: redact_json(&input.configuration),
            environment: environment(),
            problems,
        },
        llama_cpp_log,
    }
}

/// The last `max_bytes` of the file at `path` (from the start of a line), redacted.
pub fn tail(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(max_bytes);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let text = match (start > 0, text.find('\n')) {
        (true, Some(i)) => &text[i + 1..],
        _ => &text[..],
    };
    Ok(redact::redact(text))
}

/// The last `lines` lines of systemd's journal for `unit`, redacted, when `journalctl` exists
/// and has any.
pub fn journal(unit: &str, lines: u32) -> Option<String> {
    let output = std::process::Command::new("journalctl")
        .args(["--no-pager", "-o", "short-iso", "-n"])
        .arg(lines.to_string())
        .args(["-u", unit])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    (output.status.success() && !text.trim().is_empty() && !text.contains("-- No entries --"))
        .then(|| redact::redact(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_under_secret_keys_are_redacted() {
        let v = serde_json::json!({
            "api-key": "abc",
            "port": 8080,
            "nested": {"hf_token": "x", "list": ["--api-key k"]},
            "api-key-file": "/etc/key"
        });
        let r = redact_json(&v);
        assert_eq!(r["api-key"], "[REDACTED]");
        assert_eq!(r["port"], 8080);
        assert_eq!(r["nested"]["hf_token"], "[REDACTED]");
        assert_eq!(r["nested"]["list"][0], "--api-key [REDACTED]");
        assert_eq!(r["api-key-file"], "/etc/key");
    }

    #[test]
    fn the_tail_starts_at_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "first line\nsecond HF_TOKEN=abc\nthird\n").unwrap();
        assert_eq!(
            tail(&path, 1000).unwrap(),
            "first line\nsecond HF_TOKEN=[REDACTED]\nthird\n"
        );
        assert_eq!(tail(&path, 10).unwrap(), "third\n");
    }
}
