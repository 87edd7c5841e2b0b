//! A small GGUF writer, for generating test fixtures in code.
//!
//! [`GgufWriter`] collects metadata pairs and tensors and serialises them in the
//! layout llama.cpp's `gguf_write_to_buf` uses: header, metadata, tensor table,
//! padding to the alignment, tensor data (each tensor padded to the alignment).
//! It deliberately does not validate, so tests can also build malformed files:
//! [`GgufWriter::add_raw_tensor_info`] writes a tensor description with any type id
//! and offset and no data.
//!
//! A writer can also edit an existing model: [`GgufWriter::from_parsed`] copies a parsed
//! file's metadata and tensors, then [`set`](GgufWriter::set),
//! [`remove`](GgufWriter::remove), [`reshape_tensor`](GgufWriter::reshape_tensor),
//! [`rename_tensor`](GgufWriter::rename_tensor), ... change them (the load fuzzer and the
//! preflight tests build hostile models this way).
//!
//! ```
//! # use llama_core::gguf::{writer::GgufWriter, GgmlType, GgufFile};
//! let mut w = GgufWriter::new();
//! w.add("general.architecture", "llama")
//!     .add("llama.block_count", 2u32)
//!     .add_tensor_zeroed("token_embd.weight", &[64, 10], GgmlType::Q8_0);
//! let file = GgufFile::parse(&w.to_bytes()).unwrap();
//! assert_eq!(file.tensors[0].n_bytes, 2 * 34 * 10);
//! ```

use std::io;
use std::path::Path;

use super::ggml_type::GgmlType;
use super::reader::GgufFile;
use super::value::{ArrayValue, Value};
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, KEY_ALIGNMENT};

#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    /// `None`: placed automatically after the previous tensor, with `data` written.
    offset: Option<u64>,
    data: Vec<u8>,
}

/// Builds GGUF bytes from metadata and tensors.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter::new()
    }
}

impl GgufWriter {
    /// An empty GGUF v3 file.
    pub fn new() -> GgufWriter {
        GgufWriter {
            version: 3,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets the version field written (any value, for testing rejection too).
    pub fn version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Appends a metadata pair (duplicates are written as given).
    pub fn add(&mut self, key: impl Into<String>, value: impl Into<Value>) -> &mut Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Appends a tensor with the given data, placed at the next aligned offset.
    /// The data is written as given, even if its length does not match the shape.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: GgmlType,
        data: Vec<u8>,
    ) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.into(),
            dims: dims.to_vec(),
            type_id: ggml_type.id(),
            offset: None,
            data,
        });
        self
    }

    /// Appends a tensor whose data is the right number of zero bytes.
    /// Shapes whose size overflows get no data.
    pub fn add_tensor_zeroed(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: GgmlType,
    ) -> &mut Self {
        let n_bytes = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| ggml_type.row_size(n))
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        self.add_tensor(name, dims, ggml_type, vec![0u8; n_bytes])
    }

    /// Appends a tensor description with an arbitrary type id and data offset and no
    /// data (for malformed fixtures, or descriptions of data that is not written).
    pub fn add_raw_tensor_info(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        type_id: u32,
        offset: u64,
    ) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.into(),
            dims: dims.to_vec(),
            type_id,
            offset: Some(offset),
            data: Vec::new(),
        });
        self
    }

    /// A writer holding `file`'s version, metadata and tensors (in file order), each tensor's
    /// data copied from `bytes`, the whole file `file` was parsed from. Tensors whose data
    /// lies outside `bytes` get none.
    pub fn from_parsed(file: &GgufFile, bytes: &[u8]) -> GgufWriter {
        let metadata = file
            .metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let tensors = file
            .tensors
            .iter()
            .map(|t| {
                let data = usize::try_from(t.file_offset)
                    .ok()
                    .zip(usize::try_from(t.n_bytes).ok())
                    .and_then(|(start, len)| bytes.get(start..start.checked_add(len)?))
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                PendingTensor {
                    name: t.name.clone(),
                    dims: t.dims.clone(),
                    type_id: t.ggml_type.id(),
                    offset: None,
                    data,
                }
            })
            .collect();
        GgufWriter {
            version: file.version,
            metadata,
            tensors,
        }
    }

    /// The value of the first pair with `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key` to `value`: replaces the value of the first pair with that key (keeping its
    /// position), or appends a pair.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) -> &mut Self {
        let (key, value) = (key.into(), value.into());
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    /// Removes every pair with `key`; returns whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.metadata.len();
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.len() != before
    }

    /// The metadata keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.metadata.iter().map(|(k, _)| k.as_str())
    }

    /// The tensor names, in order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    /// The shape of the tensor called `name`.
    pub fn tensor_dims(&self, name: &str) -> Option<&[u64]> {
        self.tensor(name).map(|t| t.dims.as_slice())
    }

    /// The ggml type id of the tensor called `name`.
    pub fn tensor_type_id(&self, name: &str) -> Option<u32> {
        self.tensor(name).map(|t| t.type_id)
    }

    fn tensor(&self, name: &str) -> Option<&PendingTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    fn tensor_mut(&mut self, name: &str) -> Option<&mut PendingTensor> {
        self.tensors.iter_mut().find(|t| t.name == name)
    }

    /// Removes the tensor called `name`; returns whether there was one.
    pub fn remove_tensor(&mut self, name: &str) -> bool {
        let before = self.tensors.len();
        self.tensors.retain(|t| t.name != name);
        self.tensors.len() != before
    }

    /// Renames the tensor called `from`; returns whether there was one.
    pub fn rename_tensor(&mut self, from: &str, to: impl Into<String>) -> bool {
        match self.tensor_mut(from) {
            Some(t) => {
                t.name = to.into();
                true
            }
            None => false,
        }
    }

    /// Gives the tensor called `name` the shape `dims` and type `ggml_type`, with zeroed data
    /// of the new size (none when the size overflows); returns whether there was one.
    pub fn reshape_tensor(&mut self, name: &str, dims: &[u64], ggml_type: GgmlType) -> bool {
        let Some(t) = self.tensor_mut(name) else {
            return false;
        };
        let n_bytes = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| ggml_type.row_size(n))
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        t.dims = dims.to_vec();
        t.type_id = ggml_type.id();
        t.data = vec![0u8; n_bytes];
        true
    }

    /// Writes `type_id` as the type of the tensor called `name`, keeping its shape and data
    /// (which then need not match the type); returns whether there was one.
    pub fn set_tensor_type_id(&mut self, name: &str, type_id: u32) -> bool {
        match self.tensor_mut(name) {
            Some(t) => {
                t.type_id = type_id;
                true
            }
            None => false,
        }
    }

    /// The alignment used for padding: a valid `u32` `general.alignment`, else 32.
    pub fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .rev()
            .find(|(k, _)| k == KEY_ALIGNMENT)
            .and_then(|(_, v)| match v {
                Value::U32(a) if a.is_power_of_two() => Some(u64::from(*a)),
                _ => None,
            })
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Serialises the file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let alignment = self.alignment();
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            write_str(&mut out, key);
            out.extend_from_slice(&value.value_type().id().to_le_bytes());
            write_value(&mut out, value);
        }

        // Data offsets of automatically placed tensors.
        let mut next = 0u64;
        let mut data = Vec::new();
        for t in &self.tensors {
            write_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.type_id.to_le_bytes());
            let offset = match t.offset {
                Some(offset) => offset,
                None => {
                    let offset = next;
                    data.extend_from_slice(&t.data);
                    pad(&mut data, alignment);
                    next = data.len() as u64;
                    offset
                }
            };
            out.extend_from_slice(&offset.to_le_bytes());
        }
        pad(&mut out, alignment);
        out.extend_from_slice(&data);
        out
    }

    /// Serialises the file to `path`.
    pub fn write_to_path(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }
}

fn pad(out: &mut Vec<u8>, alignment: u64) {
    while (out.len() as u64) % alignment.max(1) != 0 {
        out.push(0);
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(v) => write_str(out, v),
        Value::Array(v) => write_array(out, v),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}

fn write_array(out: &mut Vec<u8>, array: &ArrayValue) {
    out.extend_from_slice(&array.element_type().id().to_le_bytes());
    out.extend_from_slice(&(array.len() as u64).to_le_bytes());
    match array {
        ArrayValue::String(items) => items.iter().for_each(|s| write_str(out, s)),
        ArrayValue::Array(items) => items.iter().for_each(|a| write_array(out, a)),
        other => other.values().for_each(|v| write_value(out, &v)),
    }
}
