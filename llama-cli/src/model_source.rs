//! Where a command's model comes from: `-m FILE`, or `-hf REPO[:QUANT]` resolved by
//! llama-core's store (the cache first, else a download with a progress bar on stderr, checked
//! against `--max-mem` before it starts).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use llama_core::store::{FitRequest, FitVerdict, ModelRef, Progress, PullOptions, Store};
use llama_core::ByteSize;

use crate::error::CliError;
use crate::options::Settings;

/// `settings` with `-hf` resolved to a file through the store (fit-checked under `--max-mem`
/// before any download): `model` set, `hf_repo` cleared. Without `-hf`, a copy.
pub fn resolved(settings: &Settings) -> Result<Settings, CliError> {
    let model = match (&settings.model, &settings.hf_repo) {
        (Some(_), Some(_)) => return Err(CliError::ModelTwice),
        (None, Some(reference)) => Some(resolve(reference, Some(settings))?),
        (model, None) => model.clone(),
    };
    Ok(Settings {
        model,
        hf_repo: None,
        ..settings.clone()
    })
}

/// The file of `-m` or `-hf` for commands without run settings (`show`, `bench`).
pub fn model_path_of(model: Option<&Path>, hf_repo: Option<&str>) -> Result<PathBuf, CliError> {
    match (model, hf_repo) {
        (Some(_), Some(_)) => Err(CliError::ModelTwice),
        (Some(path), None) => Ok(path.to_path_buf()),
        (None, Some(reference)) => resolve(reference, None),
        (None, None) => Err(CliError::NoModel),
    }
}

/// Resolves `reference` to a local file: from the cache without the network when it is there,
/// else pulled. With `settings` holding `--max-mem`, the pull is fit-checked first.
pub fn resolve(reference: &str, settings: Option<&Settings>) -> Result<PathBuf, CliError> {
    let store = Store::from_env()?;
    let model = ModelRef::parse(reference)?;
    let mut progress = DownloadProgress::new();
    let budget_settings = settings.filter(|s| s.max_mem.is_some());
    let mut planner = budget_settings.map(|s| planner(s.clone()));
    let fit = match (&mut planner, budget_settings.and_then(|s| s.max_mem)) {
        (Some(planner), Some(budget)) => Some(FitRequest {
            budget,
            planner: planner.as_mut(),
        }),
        _ => None,
    };
    let local = store.resolve(
        &model,
        PullOptions {
            progress: &mut progress,
            fit,
        },
    )?;
    Ok(local.path().to_path_buf())
}

/// A planner for the store's fit check: the run commands' own planning
/// ([`crate::runtime::prepare`]) on the sparse copy of the model's headers.
pub fn planner(settings: Settings) -> Box<llama_core::store::fit::Planner> {
    Box::new(move |path: &Path| {
        let settings = Settings {
            model: Some(path.to_path_buf()),
            hf_repo: None,
            ..settings.clone()
        };
        match crate::runtime::prepare(&settings) {
            Ok(prepared) => Ok(FitVerdict::Fits {
                notes: prepared.notes,
            }),
            Err(
                err @ CliError::Run(
                    llama_core::run::RunError::Plan(llama_core::planner::PlanError::DoesNotFit {
                        ..
                    })
                    | llama_core::run::RunError::StreamingDoesNotFit { .. },
                ),
            ) => Ok(FitVerdict::DoesNotFit {
                reason: err.to_string(),
            }),
            Err(err) => Err(err.to_string()),
        }
    })
}

/// The store's progress on stderr: a bar with bytes, rate and ETA on a terminal, one line per
/// file otherwise.
pub struct DownloadProgress {
    bar: Option<indicatif::ProgressBar>,
    terminal: bool,
    file: String,
    started: std::time::Instant,
    received: u64,
}

impl DownloadProgress {
    /// Progress reporting on stderr.
    pub fn new() -> DownloadProgress {
        DownloadProgress {
            bar: None,
            terminal: std::io::stderr().is_terminal(),
            file: String::new(),
            started: std::time::Instant::now(),
            received: 0,
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
}

impl Default for DownloadProgress {
    fn default() -> Self {
        DownloadProgress::new()
    }
}

impl Progress for DownloadProgress {
    fn note(&mut self, message: &str) {
        self.line(&format!("note: {message}"));
    }

    fn start(&mut self, file: &str, total: u64, resumed_from: u64) {
        self.file = file.to_string();
        self.started = std::time::Instant::now();
        self.received = 0;
        let resumed = if resumed_from > 0 {
            format!(", resuming at {}", ByteSize(resumed_from))
        } else {
            String::new()
        };
        if !self.terminal {
            eprintln!("downloading {file} ({}{resumed})", ByteSize(total));
            return;
        }
        let bar = crate::progress::bar(
            total,
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        );
        bar.set_message(file.rsplit('/').next().unwrap_or(file).to_string());
        bar.set_position(resumed_from);
        bar.reset_eta();
        self.bar = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        self.received += bytes;
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn retry(&mut self, file: &str, attempt: u32, delay: Duration, error: &str) {
        self.line(&format!(
            "warning: {file}: {error}; resuming in {:.2} s (attempt {})",
            delay.as_secs_f64(),
            attempt + 1
        ));
    }

    fn waiting(&mut self, file: &str) {
        self.line(&format!(
            "note: another process is downloading {file}; waiting for it"
        ));
    }

    fn finish(&mut self, file: &str, checked: Option<&'static str>) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            self.received as f64 / secs
        } else {
            0.0
        };
        let checked = match checked {
            Some(algorithm) => format!("{algorithm} verified"),
            None => "no published checksum to verify".to_string(),
        };
        eprintln!(
            "downloaded {file}: {} in {secs:.1} s ({}/s), {checked}",
            ByteSize(self.received),
            ByteSize(rate as u64)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::RunOptions;

    #[test]
    fn the_layer_naming_a_model_wins_for_both_flags() {
        let flags = RunOptions {
            hf_repo: Some("a/b:Q4_0".into()),
            ..Default::default()
        };
        let file = RunOptions {
            model: Some("x.gguf".into()),
            ..Default::default()
        };
        let settings = flags.over(file).resolve().unwrap();
        assert_eq!(settings.model, None);
        assert_eq!(settings.hf_repo.as_deref(), Some("a/b:Q4_0"));
        let both = RunOptions {
            model: Some("x.gguf".into()),
            hf_repo: Some("a/b".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert!(matches!(resolved(&both), Err(CliError::ModelTwice)));
        let plain = RunOptions::default().over(RunOptions {
            model: Some("x.gguf".into()),
            ..Default::default()
        });
        assert_eq!(
            resolved(&plain.resolve().unwrap()).unwrap().model,
            Some("x.gguf".into())
        );
    }
}
