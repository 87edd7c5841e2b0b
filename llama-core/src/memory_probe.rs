//! Exact buffer sizes from llama.cpp without allocating them: a dry run that loads the model
//! with `no_alloc` (metadata only) and creates a context, then reads the sizes llama.cpp
//! reports for the KV cache, compute buffers and output buffer.
//!
//! llama.cpp only reports these figures through its log (its structured breakdown is C++
//! only), so the probe listens to the log lines of its own dry run. The line formats are those
//! of the pinned llama.cpp; `tests/session.rs` checks they are still found.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::ffi::{Backend, Context, ContextParams, Model, ModelParams};

/// Buffer sizes of one configuration, in bytes, as llama.cpp would allocate them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BufferSizes {
    /// Model weight buffers (all buffer types: mapped, repacked, device).
    pub model: u64,
    /// KV cache (all caches, e.g. both halves of a sliding-window model).
    pub kv: u64,
    /// Compute buffers (the scheduler's reserve for the largest graph).
    pub compute: u64,
    /// Output (logits) buffer.
    pub output: u64,
}

/// The dry run failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// llama.cpp refused the model.
    #[error("dry run: llama.cpp could not read {}", path.display())]
    Model {
        /// The model file.
        path: PathBuf,
    },
    /// llama.cpp refused the context parameters.
    #[error("dry run: {0}")]
    Context(#[from] crate::error::ContextError),
    /// llama.cpp did not report a figure (a changed log format).
    #[error("dry run: llama.cpp did not report its {what} size")]
    NotReported {
        /// Which figure.
        what: &'static str,
    },
}

/// Serialises dry runs: the log listener is process-wide.
static PROBE_LOCK: Mutex<()> = Mutex::new(());

/// A metadata-only model kept for repeated dry runs of the same file.
#[derive(Debug)]
pub struct MemoryProbe {
    model: Arc<Model>,
    model_bytes: u64,
    repacked_bytes: u64,
}

fn parse_mib(line: &str, marker: &str) -> Option<u64> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let number: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mib: f64 = number.parse().ok()?;
    Some((mib * 1024.0 * 1024.0).round() as u64)
}

impl MemoryProbe {
    /// Loads `path` without allocating its weights (llama.cpp's `no_alloc`).
    pub fn new(path: &Path, params: &ModelParams) -> Result<MemoryProbe, ProbeError> {
        Backend::init();
        let _serial = PROBE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let tap = Backend::tap_log(move |line| {
            if line.contains("model buffer size") {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(line.to_string());
            }
        });
        let params = ModelParams {
            no_alloc: true,
            ..params.clone()
        };
        let model = Model::load_unchecked(path, &params, None).map_err(|_| ProbeError::Model {
            path: path.to_path_buf(),
        })?;
        drop(tap);
        let lines = lines.lock().unwrap_or_else(|p| p.into_inner());
        let model_bytes = lines
            .iter()
            .filter_map(|l| parse_mib(l, "model buffer size ="))
            .sum();
        let repacked_bytes = lines
            .iter()
            .filter(|l| l.contains("REPACK"))
            .filter_map(|l| parse_mib(l, "model buffer size ="))
            .sum();
        Ok(MemoryProbe {
            model: Arc::new(model),
            model_bytes,
            repacked_bytes,
        })
    }

    /// Bytes of weights llama.cpp would repack into anonymous memory for faster CPU kernels.
    pub fn repacked_bytes(&self) -> u64 {
        self.repacked_bytes
    }

    /// The model loaded without weights (for its metadata: training context, vocabulary).
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Sizes a context with `params` without allocating it.
    pub fn measure(&self, params: &ContextParams) -> Result<BufferSizes, ProbeError> {
        let _serial = PROBE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let tap = Backend::tap_log(move |line| {
            if line.contains("buffer size =") || line.starts_with("llama_kv_cache: size =") {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(line.to_string());
            }
        });
        let ctx = Context::new(self.model.clone(), params);
        drop(tap);
        drop(ctx?);
        let lines = lines.lock().unwrap_or_else(|p| p.into_inner());
        let sum = |marker: &str| -> Option<u64> {
            let values: Vec<u64> = lines.iter().filter_map(|l| parse_mib(l, marker)).collect();
            (!values.is_empty()).then(|| values.iter().sum())
        };
        Ok(BufferSizes {
            model: self.model_bytes,
            kv: sum("llama_kv_cache: size =").unwrap_or(0),
            compute: sum("compute buffer size =").ok_or(ProbeError::NotReported {
                what: "compute buffer",
            })?,
            output: sum("output buffer size =").unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_mib;

    #[test]
    fn parses_llama_cpp_size_lines() {
        assert_eq!(
            parse_mib(
                "sched_reserve:        CPU compute buffer size =   109.64 MiB",
                "compute buffer size ="
            ),
            Some((109.64f64 * 1048576.0).round() as u64)
        );
        assert_eq!(
            parse_mib(
                "llama_kv_cache: size =  180.00 MiB (  8192 cells,  30 layers,  1/1 seqs)",
                "llama_kv_cache: size ="
            ),
            Some(180 * 1048576)
        );
        assert_eq!(parse_mib("nothing here", "size ="), None);
    }
}
