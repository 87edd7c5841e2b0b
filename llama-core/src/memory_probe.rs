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

/// Whether a llama.cpp buffer (by its name in the log, e.g. `CPU_Mapped`, `CPU_REPACK`,
/// `CUDA0`, `CUDA_Host`, `Vulkan0`) lives in host memory: CPU buffers, pinned host buffers of a
/// GPU backend, and Metal's (Apple GPUs share the RAM).
pub fn is_host_buffer(name: &str) -> bool {
    name.starts_with("CPU") || name.ends_with("_Host") || name.starts_with("Metal")
}

/// The buffer name before `marker` in a llama.cpp size line (`... CUDA0 compute buffer size =`).
fn buffer_name<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line[..line.find(marker)?].split_whitespace().last()
}

/// Sums the sizes after `marker` in `lines`: (host bytes, device bytes, whether any was found).
fn sum_by_place(lines: &[String], marker: &str) -> (u64, u64, bool) {
    let (mut host, mut device, mut found) = (0, 0, false);
    for line in lines {
        let Some(bytes) = parse_mib(line, marker) else {
            continue;
        };
        found = true;
        match buffer_name(line, marker) {
            Some(name) if !is_host_buffer(name) => device += bytes,
            _ => host += bytes,
        }
    }
    (host, device, found)
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
    device_model_bytes: u64,
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
        // Only this thread's lines: other threads' models and contexts log the same kinds of
        // lines at the same time.
        let me = std::thread::current().id();
        let tap = Backend::tap_log(move |line| {
            if std::thread::current().id() == me && line.contains("model buffer size") {
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
        let (model_bytes, device_model_bytes, _) = sum_by_place(&lines, "model buffer size =");
        let repacked_bytes = lines
            .iter()
            .filter(|l| l.contains("REPACK"))
            .filter_map(|l| parse_mib(l, "model buffer size ="))
            .sum();
        Ok(MemoryProbe {
            model: Arc::new(model),
            model_bytes,
            device_model_bytes,
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
        let me = std::thread::current().id();
        let tap = Backend::tap_log(move |line| {
            if std::thread::current().id() != me {
                return;
            }
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
        sizes_from_lines(&lines, self.model_bytes, self.device_model_bytes)
    }
}

/// The sizes a dry run's log lines report, split into host and device buffers.
fn sizes_from_lines(
    lines: &[String],
    model: u64,
    device_model: u64,
) -> Result<BufferSizes, ProbeError> {
    let (mut kv, mut device_kv, _) = sum_by_place(lines, "KV buffer size =");
    if kv + device_kv == 0 {
        // A dry run (`no_alloc`) reports its per-buffer KV sizes as 0 and the computed total on
        // the summary line, which does not say where the layers' caches live: count it all as
        // host memory (an over-estimate of the host's share when layers are offloaded).
        kv = sum_by_place(lines, "llama_kv_cache: size =").0;
        device_kv = 0;
    }
    let (compute, device_compute, found) = sum_by_place(lines, "compute buffer size =");
    if !found {
        return Err(ProbeError::NotReported {
            what: "compute buffer",
        });
    }
    let (output, device_output, _) = sum_by_place(lines, "output buffer size =");
    Ok(BufferSizes {
        model,
        kv,
        compute,
        output,
        device: DeviceSizes {
            model: device_model,
            kv: device_kv,
            compute: device_compute + device_output,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn splits_host_and_device_buffers() {
        // As a CUDA build logs a context with some layers offloaded.
        let l = lines(
            "llama_context:  CUDA_Host  output buffer size =     0.19 MiB
llama_kv_cache:        CPU KV buffer size =    30.00 MiB
llama_kv_cache:      CUDA0 KV buffer size =    60.00 MiB
llama_kv_cache: size =   90.00 MiB (  4096 cells,  30 layers,  1/1 seqs)
sched_reserve:      CUDA0 compute buffer size =   100.00 MiB
sched_reserve:  CUDA_Host compute buffer size =    10.00 MiB",
        );
        let s = sizes_from_lines(&l, 5, 7).unwrap();
        let mib = |v: f64| (v * 1048576.0).round() as u64;
        assert_eq!(s.kv, mib(30.0));
        assert_eq!(s.compute, mib(10.0));
        assert_eq!(s.output, mib(0.19));
        assert_eq!((s.model, s.device.model), (5, 7));
        assert_eq!(s.device.kv, mib(60.0));
        assert_eq!(s.device.compute, mib(100.0));
    }

    #[test]
    fn cpu_lines_are_all_host() {
        let l = lines(
            "llama_context:        CPU  output buffer size =     0.19 MiB
llama_kv_cache:        CPU KV buffer size =    90.00 MiB
llama_kv_cache: size =   90.00 MiB (  4096 cells,  30 layers,  1/1 seqs)
sched_reserve:        CPU compute buffer size =    18.64 MiB",
        );
        let s = sizes_from_lines(&l, 1, 0).unwrap();
        assert_eq!(s.kv, 90 * 1048576);
        assert_eq!(s.device, DeviceSizes::default());
        // The total line alone (no per-buffer line, or per-buffer lines of 0 as a dry run
        // logs them) counts as host memory.
        let dry = lines(
            "llama_kv_cache:      CUDA0 KV buffer size =     0.00 MiB
llama_kv_cache: size =   90.00 MiB (  4096 cells,  30 layers,  1/1 seqs)
sched_reserve:        CPU compute buffer size =    18.64 MiB",
        );
        let d = sizes_from_lines(&dry, 1, 0).unwrap();
        assert_eq!((d.kv, d.device.kv), (90 * 1048576, 0));
        let total_only = lines(
            "llama_kv_cache: size =   90.00 MiB (  4096 cells)
sched_reserve:        CPU compute buffer size =    18.64 MiB",
        );
        assert_eq!(
            sizes_from_lines(&total_only, 1, 0).unwrap().kv,
            90 * 1048576
        );
        assert!(matches!(
            sizes_from_lines(&lines("nothing"), 1, 0),
            Err(ProbeError::NotReported { .. })
        ));
        assert!(is_host_buffer("CPU_REPACK") && is_host_buffer("Vulkan_Host"));
        assert!(!is_host_buffer("CUDA0") && !is_host_buffer("Vulkan0"));
    }

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
