//! `llama_model_quantize`: llama.cpp's quantizer, called with owned, checked parameters.
//!
//! The policy (which files, how much memory, atomic output, progress) lives in
//! [`crate::quantize`]; this module only builds llama.cpp's parameter struct, keeps every array
//! it points to alive for the call, and makes the call.

use std::ffi::CString;
use std::path::Path;

use llama_sys as sys;

use super::Backend;

/// One tensor's importance-matrix values (`llama_model_imatrix_data`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImatrixValues {
    /// The weight tensor it is for, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// One value per column (times the experts, for expert tensors).
    pub values: Vec<f32>,
}

/// A metadata value written into the output (`llama_model_kv_override`).
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    /// A signed integer.
    Int(i64),
    /// A string of at most 127 bytes (llama.cpp's limit; longer strings are cut).
    Str(String),
}

/// The parameters of one [`quantize_file`] call.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeParams {
    /// llama.cpp's `llama_ftype` id of the target (e.g. 7 for Q8_0).
    pub ftype: u32,
    /// Only copy the tensors (llama-quantize's `COPY`).
    pub only_copy: bool,
    /// Threads (0: llama.cpp's default, the hardware concurrency).
    pub threads: i32,
    /// Allow quantizing tensors that are already quantized.
    pub allow_requantize: bool,
    /// Largest slab of tensor rows (source, f32 and quantized bytes) held in memory at once.
    pub max_buffer_bytes: usize,
    /// Importance-matrix values, one entry per tensor.
    pub imatrix: Vec<ImatrixValues>,
    /// Metadata written into the output (key, value).
    pub metadata: Vec<(String, MetadataValue)>,
}

/// Why a [`quantize_file`] call could not be made or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantizeCallError {
    /// A path, tensor name or metadata key holds a NUL byte, or a key is too long.
    #[error("{what} cannot be passed to llama.cpp: {value}")]
    InvalidArgument {
        /// What it was.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// llama.cpp returned a failure (its log says why).
    #[error("llama.cpp's quantizer failed")]
    Failed,
}

fn c_path(path: &Path, what: &'static str) -> Result<CString, QuantizeCallError> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| QuantizeCallError::InvalidArgument {
        what,
        value: path.display().to_string(),
    })
}

/// Copies `text` into a fixed C buffer, NUL-terminated, cut to fit.
fn fill(buffer: &mut [std::ffi::c_char], text: &str) {
    let n = text.len().min(buffer.len() - 1);
    for (dst, &src) in buffer.iter_mut().zip(&text.as_bytes()[..n]) {
        *dst = src as std::ffi::c_char;
    }
    buffer[n] = 0;
}

fn kv_override(
    key: &str,
    value: &MetadataValue,
) -> Result<sys::llama_model_kv_override, QuantizeCallError> {
    if key.len() >= 128 || key.contains('\0') {
        return Err(QuantizeCallError::InvalidArgument {
            what: "a metadata key",
            value: key.to_string(),
        });
    }
    // SAFETY: the struct is plain data (integers, arrays and a union of them); all zeroes is a
    // valid value of it.
    let mut kv: sys::llama_model_kv_override = unsafe { std::mem::zeroed() };
    fill(&mut kv.key, key);
    match value {
        MetadataValue::Int(v) => {
            kv.tag = sys::LLAMA_KV_OVERRIDE_TYPE_INT;
            kv.__bindgen_anon_1.val_i64 = *v;
        }
        MetadataValue::Str(s) => {
            kv.tag = sys::LLAMA_KV_OVERRIDE_TYPE_STR;
            let mut buffer = [0 as std::ffi::c_char; 128];
            fill(&mut buffer, &s.replace('\0', ""));
            kv.__bindgen_anon_1.val_str = buffer;
        }
    }
    Ok(kv)
}

/// Quantizes the GGUF model at `input` into a new file at `output` with llama.cpp's
/// `llama_model_quantize`. The caller has checked `input` with the GGUF reader. llama.cpp logs
/// one line per tensor as it goes (`[  3/ 272] name - ...`), and its error when it fails.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    params: &QuantizeParams,
) -> Result<(), QuantizeCallError> {
    Backend::init();
    let c_input = c_path(input, "the input path")?;
    let c_output = c_path(output, "the output path")?;
    // Everything the raw struct points to lives until the end of this function.
    let names: Vec<CString> = params
        .imatrix
        .iter()
        .map(|e| {
            CString::new(e.name.as_str()).map_err(|_| QuantizeCallError::InvalidArgument {
                what: "an importance-matrix tensor name",
                value: e.name.clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    let mut imatrix: Vec<sys::llama_model_imatrix_data> = names
        .iter()
        .zip(&params.imatrix)
        .map(|(name, e)| sys::llama_model_imatrix_data {
            name: name.as_ptr(),
            data: e.values.as_ptr(),
            size: e.values.len(),
        })
        .collect();
    imatrix.push(sys::llama_model_imatrix_data {
        name: std::ptr::null(),
        data: std::ptr::null(),
        size: 0,
    });
    let mut overrides: Vec<sys::llama_model_kv_override> = params
        .metadata
        .iter()
        .map(|(k, v)| kv_override(k, v))
        .collect::<Result<_, _>>()?;
    // The list ends with an entry whose key is empty.
    // SAFETY: as in `kv_override`, all zeroes is a valid value (an empty key).
    overrides.push(unsafe { std::mem::zeroed() });
    // SAFETY: returns a plain struct of defaults.
    let mut raw = unsafe { sys::llama_model_quantize_default_params() };
    raw.ftype = params.ftype as sys::llama_ftype;
    raw.nthread = params.threads;
    raw.allow_requantize = params.allow_requantize;
    raw.only_copy = params.only_copy;
    raw.max_buf_size = params.max_buffer_bytes.max(1);
    if !params.imatrix.is_empty() {
        raw.imatrix = imatrix.as_ptr();
    }
    if !params.metadata.is_empty() {
        raw.kv_overrides = overrides.as_ptr();
    }
    // SAFETY: both paths are valid C strings; `raw` points only at `imatrix` (terminated by a
    // null name; each entry's name and data are owned by `names` and `params`) and `overrides`
    // (terminated by an empty key), all of which outlive the call.
    let code = unsafe { sys::llama_model_quantize(c_input.as_ptr(), c_output.as_ptr(), &raw) };
    if code == 0 {
        Ok(())
    } else {
        Err(QuantizeCallError::Failed)
    }
}
