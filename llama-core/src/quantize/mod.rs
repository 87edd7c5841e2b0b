//! Quantizing a GGUF model with llama.cpp's quantizer (`llama-cli quantize IN OUT TYPE`), in
//! two steps like the run path:
//!
//! 1. [`plan`] checks everything before a byte is written: the input with the GGUF reader, the
//!    type, that the output is not the input and does not exist (unless `force`), that its
//!    directory takes files, the importance matrix, and the memory quantizing will hold
//!    ([`memory`]): under `--max-mem` it picks the largest row buffer that fits, or refuses.
//! 2. [`QuantizePlan::run`] quantizes into a hidden temporary file next to the output, reports
//!    each tensor as llama.cpp finishes it, checks the result with the GGUF reader, syncs it and
//!    renames it into place. A failure (or a result the reader rejects) removes the temporary
//!    file: an existing output is never half-overwritten.

pub mod imatrix;
pub mod memory;
pub mod types;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use self::imatrix::{Imatrix, ImatrixError};
pub use self::memory::QuantizeMemory;
pub use self::types::{QuantType, QUANT_TYPES};

use crate::error::LoadError;
use crate::ffi::{QuantizeCallError, QuantizeParams};
use crate::gguf::{GgufError, GgufModel};
use crate::machine::MachineMemory;
use crate::process_memory::ProcessMemory;
use crate::ByteSize;

/// What to quantize, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeRequest {
    /// The GGUF model to read.
    pub input: PathBuf,
    /// The file to write.
    pub output: PathBuf,
    /// The target type.
    pub target: QuantType,
    /// Threads (0: llama.cpp's default, the hardware concurrency).
    pub threads: i32,
    /// Quantize tensors that are already quantized (quality suffers).
    pub allow_requantize: bool,
    /// An importance matrix (GGUF or legacy format).
    pub imatrix: Option<PathBuf>,
    /// The memory budget in bytes (`--max-mem`).
    pub max_mem: Option<u64>,
    /// Replace an existing output (never the input).
    pub force: bool,
}

/// Why quantizing was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// The input is missing, unreadable or not a valid GGUF model.
    #[error(transparent)]
    Input(#[from] LoadError),
    /// The output names the input.
    #[error("the output {} is the input file; write the quantized model to another file", path.display())]
    SameFile {
        /// The path given as the output.
        path: PathBuf,
    },
    /// The output exists.
    #[error("the output {} already exists; pass --force to replace it", path.display())]
    OutputExists {
        /// The output.
        path: PathBuf,
    },
    /// The output is a directory.
    #[error("the output {} is a directory; give a file name", path.display())]
    OutputIsDirectory {
        /// The output.
        path: PathBuf,
    },
    /// No file can be created next to the output.
    #[error("cannot write into {}: {source}", dir.display())]
    OutputDir {
        /// The output's directory.
        dir: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The importance matrix could not be used.
    #[error(transparent)]
    Imatrix(#[from] ImatrixError),
    /// Quantizing cannot fit the memory budget even one row at a time.
    #[error("quantizing {} needs at least {} ({}), more than the budget of {}; pass --max-mem {} or more", input.display(), ByteSize(minimum.total()), describe(minimum), ByteSize(*budget), crate::planner::max_mem_arg(minimum.total()))]
    DoesNotFit {
        /// The input.
        input: PathBuf,
        /// The budget.
        budget: u64,
        /// What the smallest configuration needs.
        minimum: QuantizeMemory,
    },
    /// A path or name cannot be passed to llama.cpp.
    #[error(transparent)]
    Call(QuantizeCallError),
    /// llama.cpp's quantizer failed.
    #[error("llama.cpp could not quantize {}: {}{}", input.display(), message.as_deref().unwrap_or("see its log with -v"), hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    LlamaCpp {
        /// The input.
        input: PathBuf,
        /// llama.cpp's error message, when it logged one.
        message: Option<String>,
        /// What to do about it, for errors we recognise.
        hint: Option<&'static str>,
    },
    /// llama.cpp wrote a file the GGUF reader rejects (it was removed).
    #[error("the quantized file failed the GGUF check and was removed: {source}")]
    InvalidOutput {
        /// What the reader found.
        source: GgufError,
    },
    /// The finished file could not be synced or moved into place.
    #[error("cannot move the quantized model into place at {}: {source}", path.display())]
    Persist {
        /// The output.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// `mapped tensor X, buffers Y, metadata Z, process W, slack V`.
pub fn describe(m: &QuantizeMemory) -> String {
    format!(
        "process {}, metadata {}, largest tensor mapped {}, row buffers {}, slack {}",
        ByteSize(m.process),
        ByteSize(m.metadata),
        ByteSize(m.mapped_tensor),
        ByteSize(m.buffers),
        ByteSize(m.slack)
    )
}

/// Everything decided before quantizing.
#[derive(Debug)]
pub struct QuantizePlan {
    /// The request.
    pub request: QuantizeRequest,
    /// The input's GGUF description.
    pub input: GgufModel,
    /// The memory quantizing will hold, with the row buffer chosen.
    pub memory: QuantizeMemory,
    /// The budget planned for (`--max-mem`, or a cgroup's limit less a margin), if any.
    pub budget: Option<u64>,
    /// Things the user should know (the budget was clamped, ...).
    pub notes: Vec<String>,
    imatrix: Option<Imatrix>,
}

/// How far quantizing is: reported once when the temporary file exists (nothing done yet),
/// then after each tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantizeProgress {
    /// Tensors done.
    pub done: usize,
    /// Tensors in all.
    pub total: usize,
    /// The tensor just done (empty at the start).
    pub tensor: String,
}

/// What a finished quantization produced.
#[derive(Debug, Clone, Serialize)]
pub struct QuantizeOutcome {
    /// The file written.
    pub output: PathBuf,
    /// The target type.
    pub target: QuantType,
    /// Bytes of the input file.
    pub input_bytes: u64,
    /// Bytes of the output file.
    pub output_bytes: u64,
    /// `general.file_type` of the output, by name.
    pub file_type: Option<String>,
    /// Bytes of the output's tensors by type name (largest first).
    pub tensor_types: Vec<(String, u64)>,
    /// The memory planned.
    pub planned: QuantizeMemory,
    /// The process's peak resident set afterwards (`VmHWM`).
    pub peak_rss: u64,
    /// Time spent quantizing.
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// The directory a new file at `path` goes into.
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks `request` and plans its memory; see the module docs.
pub fn plan(request: &QuantizeRequest) -> Result<QuantizePlan, QuantizeError> {
    let input = crate::check_model_file(&request.input)?;
    let input_meta = std::fs::metadata(&request.input).map_err(|source| LoadError::Io {
        path: request.input.clone(),
        source,
    })?;
    match std::fs::metadata(&request.output) {
        Ok(out) if same_file(&out, &input_meta) => {
            return Err(QuantizeError::SameFile {
                path: request.output.clone(),
            })
        }
        Ok(out) if out.is_dir() => {
            return Err(QuantizeError::OutputIsDirectory {
                path: request.output.clone(),
            })
        }
        Ok(_) if !request.force => {
            return Err(QuantizeError::OutputExists {
                path: request.output.clone(),
            })
        }
        _ => {}
    }
    // A split input's other parts are inputs too.
    for part in input.paths().iter().skip(1) {
        if let (Ok(a), Ok(b)) = (std::fs::metadata(part), std::fs::metadata(&request.output)) {
            if same_file(&a, &b) {
                return Err(QuantizeError::SameFile {
                    path: request.output.clone(),
                });
            }
        }
    }
    let dir = parent_dir(&request.output);
    // Probe the directory the way the run will use it.
    tempfile::Builder::new()
        .prefix(".llama-quantize-probe.")
        .tempfile_in(&dir)
        .map_err(|source| QuantizeError::OutputDir {
            dir: dir.clone(),
            source,
        })?;
    let imatrix = request.imatrix.as_deref().map(Imatrix::read).transpose()?;
    let mut notes = Vec::new();
    let machine = MachineMemory::read();
    let budget = crate::run::effective_budget(request.max_mem, &machine, &mut notes);
    let header: u64 = input.files().iter().map(|f| f.data_offset).sum();
    let imatrix_bytes: u64 = imatrix
        .as_ref()
        .map(|m| m.entries.iter().map(|e| e.values.len() as u64 * 8).sum())
        .unwrap_or(0);
    crate::ffi::release_free_heap();
    // The importance matrix is held twice: our copy and llama.cpp's.
    let process = ProcessMemory::current().rss + imatrix_bytes;
    let tensors = input.tensors();
    let memory =
        match budget {
            None => memory::estimate(
                tensors,
                header,
                request.target,
                process,
                memory::DEFAULT_MAX_BUFFER,
            ),
            Some(budget) => memory::fit(tensors, header, request.target, process, budget).map_err(
                |minimum| QuantizeError::DoesNotFit {
                    input: request.input.clone(),
                    budget,
                    minimum,
                },
            )?,
        };
    if budget.is_some() && memory.max_buffer_bytes < memory::DEFAULT_MAX_BUFFER {
        notes.push(format!(
            "rows are quantized in slabs of at most {} to fit the budget",
            ByteSize(memory.max_buffer_bytes)
        ));
    }
    Ok(QuantizePlan {
        request: request.clone(),
        input,
        memory,
        budget,
        notes,
        imatrix,
    })
}

/// What the log tap collects while llama.cpp quantizes.
#[derive(Default)]
struct Tap {
    progress: Option<QuantizeProgress>,
    error: Option<String>,
}

/// `[  12/ 272] blk.0.attn_q.weight - ...` as (12, 272, name).
fn parse_progress(line: &str) -> Option<QuantizeProgress> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (counts, rest) = rest.split_once(']')?;
    let (done, total) = counts.split_once('/')?;
    let tensor = rest.split_whitespace().next()?.to_string();
    Some(QuantizeProgress {
        done: done.trim().parse().ok()?,
        total: total.trim().parse().ok()?,
        tensor,
    })
}

/// A hint for llama.cpp errors we recognise.
fn hint_for(message: &str) -> Option<&'static str> {
    if message.contains("requantizing") {
        Some("the input is already quantized: pass --allow-requantize, or quantize from an F16, BF16 or F32 model for better quality")
    } else if message.contains("imatrix") || message.contains("importance matrix") {
        Some("this type needs an importance matrix: pass --imatrix FILE (from llama-imatrix)")
    } else {
        None
    }
}

impl QuantizePlan {
    /// Quantizes as planned, calling `partial` with the temporary file's path once it exists
    /// (a caller that may be interrupted removes it then) and `progress` as tensors finish; see
    /// the module docs.
    pub fn run(
        self,
        partial: impl FnOnce(&Path),
        mut progress: impl FnMut(&QuantizeProgress),
    ) -> Result<QuantizeOutcome, QuantizeError> {
        let request = &self.request;
        let dir = parent_dir(&request.output);
        let name = request
            .output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(&dir)
            .map_err(|source| QuantizeError::OutputDir {
                dir: dir.clone(),
                source,
            })?;
        partial(temp.path());
        progress(&QuantizeProgress {
            done: 0,
            total: self.input.tensors().len(),
            tensor: String::new(),
        });
        let (imatrix, metadata) = match (&self.imatrix, &request.imatrix) {
            (Some(m), Some(path)) => (m.entries.clone(), m.metadata(path)),
            _ => (Vec::new(), Vec::new()),
        };
        let params = QuantizeParams {
            ftype: request.target.ftype,
            only_copy: request.target.is_copy(),
            threads: request.threads,
            allow_requantize: request.allow_requantize,
            max_buffer_bytes: usize::try_from(self.memory.max_buffer_bytes).unwrap_or(usize::MAX),
            imatrix,
            metadata,
        };
        drop(self.imatrix);
        let tap = Arc::new(Mutex::new(Tap::default()));
        let guard = {
            let tap = Arc::clone(&tap);
            crate::Backend::tap_log(move |line| {
                let mut t = tap.lock().unwrap_or_else(|p| p.into_inner());
                // llama.cpp's error can end a tensor's unfinished progress line.
                if let Some((_, message)) = line.split_once("failed to quantize: ") {
                    t.error = Some(message.trim().to_string());
                } else if let Some(p) = parse_progress(line) {
                    t.progress = Some(p);
                }
            })
        };
        let started = Instant::now();
        let temp_path = temp.path().to_path_buf();
        let result = std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("quantize".into())
                .spawn_scoped(scope, || {
                    crate::ffi::quantize_file(&request.input, &temp_path, &params)
                });
            let worker = match worker {
                Ok(w) => w,
                Err(_) => return crate::ffi::quantize_file(&request.input, &temp_path, &params),
            };
            let mut last = 0;
            loop {
                let finished = worker.is_finished();
                let current = tap
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .progress
                    .clone();
                if let Some(p) = current.filter(|p| p.done != last) {
                    last = p.done;
                    progress(&p);
                }
                if finished {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            worker.join().unwrap_or(Err(QuantizeCallError::Failed))
        });
        drop(guard);
        let elapsed = started.elapsed();
        match result {
            Ok(()) => {}
            Err(QuantizeCallError::Failed) => {
                let message = tap.lock().unwrap_or_else(|p| p.into_inner()).error.take();
                let hint = message.as_deref().and_then(hint_for);
                return Err(QuantizeError::LlamaCpp {
                    input: request.input.clone(),
                    message,
                    hint,
                });
            }
            Err(other) => return Err(QuantizeError::Call(other)),
        }
        let written = GgufModel::open(temp.path())
            .map_err(|source| QuantizeError::InvalidOutput { source })?;
        let persist = |source| QuantizeError::Persist {
            path: request.output.clone(),
            source,
        };
        temp.as_file().sync_all().map_err(persist)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o644))
                .map_err(persist)?;
        }
        if request.force {
            temp.persist(&request.output)
                .map_err(|e| persist(e.error))?;
        } else {
            temp.persist_noclobber(&request.output)
                .map_err(|e| persist(e.error))?;
        }
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        let mut by_type: Vec<(String, u64)> = Vec::new();
        for t in written.tensors() {
            let name = t.ggml_type.ggml_name().to_string();
            match by_type.iter_mut().find(|(n, _)| *n == name) {
                Some((_, bytes)) => *bytes += t.n_bytes,
                None => by_type.push((name, t.n_bytes)),
            }
        }
        by_type.sort_by_key(|t| std::cmp::Reverse(t.1));
        Ok(QuantizeOutcome {
            output: request.output.clone(),
            target: request.target,
            input_bytes: self.input.file_size(),
            output_bytes: written.file_size(),
            file_type: written.file_type_name().map(str::to_string),
            tensor_types: by_type,
            planned: self.memory,
            peak_rss: ProcessMemory::current().peak_rss,
            elapsed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_cpp_progress_lines_are_read() {
        let line = "[  12/ 272]                  blk.0.attn_q.weight - [  576,   576,     1,     1], type =    f16, converting to q8_0 .. size =     0.63 MiB ->     0.33 MiB";
        assert_eq!(
            parse_progress(line),
            Some(QuantizeProgress {
                done: 12,
                total: 272,
                tensor: "blk.0.attn_q.weight".into()
            })
        );
        assert_eq!(
            parse_progress("llama_model_quantize_impl: model size = 1 MiB"),
            None
        );
        assert_eq!(parse_progress("[x/y] a"), None);
    }

    #[test]
    fn known_llama_cpp_errors_get_a_hint() {
        assert!(hint_for("requantizing from type q4_1 is disabled")
            .unwrap()
            .contains("--allow-requantize"));
        assert!(hint_for("this quantization requires an imatrix!")
            .unwrap()
            .contains("--imatrix"));
        assert_eq!(hint_for("something else"), None);
    }
}
