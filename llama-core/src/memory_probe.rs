//! Exact buffer sizes from llama.cpp without allocating them: a dry run that loads the model
//! with `no_alloc` (metadata only) and creates a context, then reads the sizes llama.cpp
//! reports for the KV cache, compute buffers and output buffer.
//!
//! The sizes come from llama.cpp's structured memory breakdown (bytes per buffer type, the figures
//! its own fitting code reads; C++ only, reached through llama-sys's shim). The output (logits)
//! buffer is not part of the breakdown and is read from the dry run's log line.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::ffi::{Backend, Context, ContextParams, Model, ModelParams};

/// Buffer sizes of one configuration, in bytes, as llama.cpp would allocate them. The main
/// fields are host memory (RAM); buffers on a GPU device are counted apart in `device`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BufferSizes {
    /// Model weight buffers in host memory (mapped, repacked).
    pub model: u64,
    /// KV cache in host memory (all caches, e.g. both halves of a sliding-window model).
    pub kv: u64,
    /// Compute buffers in host memory (the scheduler's reserve for the largest graph).
    pub compute: u64,
    /// Output (logits) buffer.
    pub output: u64,
    /// Buffers on GPU devices (zero on a CPU-only build or with no layer offloaded).
    pub device: DeviceSizes,
}

/// Buffers llama.cpp would place on GPU devices (all devices together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeviceSizes {
    /// Offloaded weights.
    pub model: u64,
    /// The offloaded layers' KV cache.
    pub kv: u64,
    /// The devices' compute buffers.
    pub compute: u64,
}

pub use crate::ffi::buffers::is_host_buffer_name as is_host_buffer;

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
    device_model_bytes: u64,
    repacked_bytes: u64,
}

impl MemoryProbe {
    /// Loads `path` without allocating its weights (llama.cpp's `no_alloc`), and reads where
    /// the weights would go from a minimal context's memory breakdown.
    pub fn new(path: &Path, params: &ModelParams) -> Result<MemoryProbe, ProbeError> {
        Backend::init();
        let _serial = PROBE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let params = ModelParams {
            no_alloc: true,
            ..params.clone()
        };
        let model = Arc::new(Model::load_unchecked(path, &params, None).map_err(|_| {
            ProbeError::Model {
                path: path.to_path_buf(),
            }
        })?);
        let smallest = ContextParams {
            n_ctx: 256,
            n_batch: 32,
            n_ubatch: 32,
            n_outputs_max: 1,
            n_threads: 1,
            n_threads_batch: 1,
            ..ContextParams::default()
        };
        let breakdown = Context::new(model.clone(), &smallest)?.memory_breakdown();
        let weights = Totals::of(&breakdown, |b| b.model);
        let repacked_bytes = breakdown
            .iter()
            .filter(|b| b.in_host_memory() && b.is_extra_cpu_buffer())
            .map(|b| b.model)
            .sum();
        Ok(MemoryProbe {
            model,
            model_bytes: weights.host,
            device_model_bytes: weights.device,
            repacked_bytes,
        })
    }

    /// Bytes of weights llama.cpp would copy into the CPU backend's extra buffer types
    /// (repacked for faster kernels: anonymous memory on top of the mapped file).
    pub fn repacked_bytes(&self) -> u64 {
        self.repacked_bytes
    }

    /// The model loaded without weights (for its metadata: training context, vocabulary).
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Sizes a context with `params` without allocating it: the KV cache, recurrent state and
    /// compute buffers from llama.cpp's structured memory breakdown, and the output buffer.
    pub fn measure(&self, params: &ContextParams) -> Result<BufferSizes, ProbeError> {
        let _serial = PROBE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let breakdown = Context::new(self.model.clone(), params)?.memory_breakdown();
        let caches = Totals::of(&breakdown, |b| b.context);
        let compute = Totals::of(&breakdown, |b| b.compute);
        if compute.host + compute.device == 0 {
            return Err(ProbeError::NotReported {
                what: "compute buffer",
            });
        }
        Ok(BufferSizes {
            model: self.model_bytes,
            kv: caches.host,
            compute: compute.host,
            output: output_buffer_bytes(self.model.n_vocab(), params),
            device: DeviceSizes {
                model: self.device_model_bytes,
                kv: caches.device,
                compute: compute.device,
            },
        })
    }
}

impl MemoryProbe {
    /// Sizes an embeddings context with `params` (as [`crate::embedding::Embedder::create`]
    /// makes it) without allocating it: the host bytes of its KV cache, compute buffers and
    /// output buffer together. llama.cpp keeps logits as well as embeddings for every output
    /// row of such a context, and every token of an input is an output row.
    pub fn measure_embeddings(
        &self,
        params: &ContextParams,
        pooling: crate::embedding::Pooling,
    ) -> Result<u64, ProbeError> {
        let _serial = PROBE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let ctx = Context::for_embeddings(self.model.clone(), params, pooling)?;
        let breakdown = ctx.memory_breakdown();
        let caches = Totals::of(&breakdown, |b| b.context);
        let compute = Totals::of(&breakdown, |b| b.compute);
        let logits = output_buffer_bytes(self.model.n_vocab(), params);
        let embeddings = output_buffer_bytes(self.model.n_embd(), params);
        Ok(caches.host + compute.host + logits + embeddings)
    }
}

/// The host buffer llama.cpp keeps for the logits (the breakdown does not include it): one
/// float per vocabulary entry and output row. It is reserved for `n_seq_max` rows and grows to
/// the largest number of rows one decode call produces, at most `n_outputs_max` (0: `n_batch`).
pub fn output_buffer_bytes(n_vocab: u32, params: &ContextParams) -> u64 {
    let most_per_call = match params.n_outputs_max {
        0 => params.n_batch,
        n => n.min(params.n_batch.max(1)),
    };
    let rows = u64::from(params.n_seq_max.max(most_per_call).max(1));
    rows * u64::from(n_vocab) * std::mem::size_of::<f32>() as u64
}

/// One figure of a memory breakdown summed over host and over device buffer types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    host: u64,
    device: u64,
}

impl Totals {
    fn of(
        breakdown: &[crate::ffi::BufferUsage],
        figure: impl Fn(&crate::ffi::BufferUsage) -> u64,
    ) -> Totals {
        let mut t = Totals::default();
        for b in breakdown {
            if b.in_host_memory() {
                t.host += figure(b);
            } else {
                t.device += figure(b);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_names_say_where_they_live() {
        assert!(is_host_buffer("CPU_REPACK") && is_host_buffer("Vulkan_Host"));
        assert!(is_host_buffer("CPU_Mapped") && is_host_buffer("AMX"));
        assert!(!is_host_buffer("CUDA0") && !is_host_buffer("Vulkan0"));
    }

    #[test]
    fn output_buffer_holds_the_most_rows_one_call_produces() {
        let p = |n_seq_max, n_outputs_max, n_batch| ContextParams {
            n_seq_max,
            n_outputs_max,
            n_batch,
            ..ContextParams::default()
        };
        assert_eq!(output_buffer_bytes(1000, &p(1, 1, 2048)), 4000);
        assert_eq!(output_buffer_bytes(1000, &p(4, 1, 2048)), 16000);
        assert_eq!(output_buffer_bytes(1000, &p(1, 0, 512)), 512 * 4000);
        assert_eq!(output_buffer_bytes(1000, &p(8, 4, 2048)), 8 * 4000);
    }
}
