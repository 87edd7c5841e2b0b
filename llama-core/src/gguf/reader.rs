//! Parsing one GGUF file's header: [`GgufFile`].
//!
//! The layout (all little-endian) is: magic `GGUF`, `u32` version, `u64` tensor count,
//! `u64` metadata count, the metadata pairs (`string` key, `u32` type, value), the
//! tensor table, padding up to `general.alignment`, then the tensor data. Only the
//! header is read; the data section is checked for size only.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::error::{Field, GgufError};
use super::metadata::Metadata;
use super::source::Input;
use super::tensor::{read_tensor_info, TensorInfo, MIN_TENSOR_INFO_SIZE};
use super::value::{ArrayValue, StringArray, Value, ValueType};
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, KEY_ALIGNMENT, KEY_ARCHITECTURE, MAX_ARRAY_NESTING};

/// The fewest bytes one metadata pair takes: key length, one key byte, type, one value byte.
const MIN_KV_SIZE: u64 = 8 + 1 + 4 + 1;

/// Capacity reserved up front for counts read from the file; vectors grow past this
/// only as entries are actually read.
const MAX_PREALLOC: u64 = 4096;

/// The parsed header of one GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufFile {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata pairs in file order.
    pub metadata: Metadata,
    /// Tensor table in file order (`split` is 0; [`super::GgufModel`] renumbers).
    pub tensors: Vec<TensorInfo>,
    /// Data-section alignment (`general.alignment`, default 32).
    pub alignment: u64,
    /// Bytes of header: the offset just past the tensor table.
    pub header_size: u64,
    /// Absolute offset of the data section (header size rounded up to the alignment).
    pub data_offset: u64,
    /// Size of the file (or byte slice) in bytes.
    pub file_size: u64,
}

impl GgufFile {
    /// Parses a GGUF header held in memory; `bytes` is taken to be the whole file.
    pub fn parse(bytes: &[u8]) -> Result<GgufFile, GgufError> {
        let len = bytes.len() as u64;
        parse_input(Input::new(bytes, len))
    }

    /// Parses the header of a file of `file_size` bytes from its first bytes, `prefix` (e.g.
    /// fetched by a ranged HTTP request). Tensor bounds are checked against `file_size`. A
    /// prefix too short for the header fails with [`GgufError::Truncated`]; fetch more and
    /// parse again.
    pub fn parse_prefix(prefix: &[u8], file_size: u64) -> Result<GgufFile, GgufError> {
        parse_input(Input::new(prefix, file_size.max(prefix.len() as u64)))
    }

    /// Opens `path` and parses its header, reading only the header through a buffer.
    /// Errors are wrapped in [`GgufError::InFile`] with the path.
    pub fn read_from_path(path: &Path) -> Result<GgufFile, GgufError> {
        let open = || -> Result<(File, u64), std::io::Error> {
            let file = File::open(path)?;
            let len = file.metadata()?.len();
            Ok((file, len))
        };
        let (file, len) = open().map_err(|source| GgufError::Open { source }.in_file(path))?;
        parse_input(Input::new(BufReader::with_capacity(1 << 16, file), len))
            .map_err(|e| e.in_file(path))
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.metadata.get_str(KEY_ARCHITECTURE)
    }

    /// Total bytes of tensor data described by the tensor table.
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors
            .iter()
            .fold(0u64, |acc, t| acc.saturating_add(t.n_bytes))
    }
}

fn parse_input<R: Read>(mut input: Input<R>) -> Result<GgufFile, GgufError> {
    let magic = input.array::<4>(&|| Field::Magic)?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = input.u32(&|| Field::Version)?;
    if version != 2 && version != 3 {
        let swapped = version.swap_bytes();
        if version & 0xffff == 0 && (1..=3).contains(&swapped) {
            return Err(GgufError::BigEndian { raw: version });
        }
        return Err(GgufError::UnsupportedVersion { version });
    }

    let n_tensors_at = input.position();
    let n_tensors = input.u64(&|| Field::TensorCount)?;
    let n_kv_at = input.position();
    let n_kv = input.u64(&|| Field::MetadataCount)?;
    input.check_count(n_kv, MIN_KV_SIZE, n_kv_at, &|| Field::MetadataCount)?;

    let metadata = read_metadata(&mut input, n_kv)?;
    let alignment = alignment_of(&metadata)?;

    input.check_count(n_tensors, MIN_TENSOR_INFO_SIZE, n_tensors_at, &|| {
        Field::TensorCount
    })?;
    let mut raw = Vec::with_capacity(prealloc(n_tensors));
    let mut seen = HashSet::new();
    for index in 0..n_tensors {
        let tensor = read_tensor_info(&mut input, index, alignment)?;
        if !seen.insert(tensor.info.name.clone()) {
            return Err(GgufError::DuplicateTensor {
                name: tensor.info.name,
                index,
                offset: tensor.name_offset,
            });
        }
        raw.push(tensor);
    }

    let header_size = input.position();
    let file_size = input.len();
    let data_offset = align_up(header_size, alignment).ok_or(GgufError::Overflow {
        field: Field::DataSection,
        offset: header_size,
    })?;

    let mut tensors = Vec::with_capacity(raw.len());
    for tensor in raw {
        let mut info = tensor.info;
        let start = data_offset
            .checked_add(info.offset)
            .ok_or_else(|| GgufError::Overflow {
                field: Field::TensorData {
                    name: info.name.clone(),
                },
                offset: tensor.offset_field_at,
            })?;
        let end = start.checked_add(info.n_bytes);
        if info.n_bytes > 0 && end.is_none_or(|end| end > file_size) {
            return Err(GgufError::TensorOutOfBounds {
                name: info.name,
                start,
                end: end.unwrap_or(u64::MAX),
                file_size,
            });
        }
        info.file_offset = start;
        tensors.push(info);
    }

    Ok(GgufFile {
        version,
        metadata,
        tensors,
        alignment,
        header_size,
        data_offset,
        file_size,
    })
}

/// `value` rounded up to a multiple of the power of two `alignment`.
fn align_up(value: u64, alignment: u64) -> Option<u64> {
    let mask = alignment.checked_sub(1)?;
    Some(value.checked_add(mask)? & !mask)
}

fn prealloc(count: u64) -> usize {
    // Bounded by MAX_PREALLOC, so the conversion cannot fail on any platform.
    usize::try_from(count.min(MAX_PREALLOC)).unwrap_or(0)
}

fn alignment_of(metadata: &Metadata) -> Result<u64, GgufError> {
    match metadata.get(KEY_ALIGNMENT) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(Value::U32(a)) => {
            let alignment = u64::from(*a);
            if alignment.is_power_of_two() {
                Ok(alignment)
            } else {
                Err(GgufError::BadAlignment { alignment })
            }
        }
        Some(other) => Err(GgufError::AlignmentType {
            found: other.value_type(),
        }),
    }
}

fn read_metadata<R: Read>(input: &mut Input<R>, n_kv: u64) -> Result<Metadata, GgufError> {
    let mut metadata = Metadata::new();
    for index in 0..n_kv {
        let key_field = || Field::MetadataKey { index };
        let (key_offset, key) = input.strict_string(&key_field)?;
        if key.is_empty() {
            return Err(GgufError::EmptyKey {
                index,
                offset: key_offset,
            });
        }
        if metadata.contains_key(&key) {
            return Err(GgufError::DuplicateKey {
                key,
                offset: key_offset,
            });
        }
        let value_field = || Field::MetadataValue { key: key.clone() };
        let type_at = input.position();
        let type_id = input.u32(&value_field)?;
        let value = read_value(input, type_id, type_at, &value_field)?;
        metadata.insert(key, value);
    }
    Ok(metadata)
}

fn value_type(
    type_id: u32,
    offset: u64,
    field: &dyn Fn() -> Field,
) -> Result<ValueType, GgufError> {
    ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
        field: field(),
        offset,
        type_id,
    })
}

fn read_value<R: Read>(
    input: &mut Input<R>,
    type_id: u32,
    type_at: u64,
    field: &dyn Fn() -> Field,
) -> Result<Value, GgufError> {
    Ok(match value_type(type_id, type_at, field)? {
        ValueType::U8 => Value::U8(u8::from_le_bytes(input.array(field)?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(input.array(field)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(input.array(field)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(input.array(field)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(input.array(field)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(input.array(field)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(input.array(field)?)),
        ValueType::Bool => Value::Bool(u8::from_le_bytes(input.array(field)?) != 0),
        ValueType::String => Value::String(input.lossy_string(field)?),
        ValueType::Array => Value::Array(read_array(input, 1, field)?),
        ValueType::U64 => Value::U64(u64::from_le_bytes(input.array(field)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(input.array(field)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(input.array(field)?)),
    })
}

/// Reads `n` fixed-size elements in one bounded read and decodes them.
fn fixed<R: Read, T, const N: usize>(
    input: &mut Input<R>,
    n: u64,
    field: &dyn Fn() -> Field,
    decode: fn([u8; N]) -> T,
) -> Result<Vec<T>, GgufError> {
    let size = N as u64;
    let total = n.checked_mul(size).ok_or_else(|| GgufError::Overflow {
        field: field(),
        offset: input.position(),
    })?;
    let bytes = input.bytes(total, field)?;
    Ok(bytes
        .chunks_exact(N)
        .filter_map(|chunk| <[u8; N]>::try_from(chunk).ok())
        .map(decode)
        .collect())
}

/// Reads an array header and its elements; `depth` is this array's nesting level (1
/// for a top-level array).
fn read_array<R: Read>(
    input: &mut Input<R>,
    depth: u32,
    field: &dyn Fn() -> Field,
) -> Result<ArrayValue, GgufError> {
    let header_at = input.position();
    let elem_id = input.u32(field)?;
    let elem = value_type(elem_id, header_at, field)?;
    let count_at = input.position();
    let n = input.u64(field)?;
    input.check_metadata_count(n, elem.min_encoded_size(), count_at, field)?;
    Ok(match elem {
        ValueType::U8 => ArrayValue::U8(fixed(input, n, field, u8::from_le_bytes)?),
        ValueType::I8 => ArrayValue::I8(fixed(input, n, field, i8::from_le_bytes)?),
        ValueType::U16 => ArrayValue::U16(fixed(input, n, field, u16::from_le_bytes)?),
        ValueType::I16 => ArrayValue::I16(fixed(input, n, field, i16::from_le_bytes)?),
        ValueType::U32 => ArrayValue::U32(fixed(input, n, field, u32::from_le_bytes)?),
        ValueType::I32 => ArrayValue::I32(fixed(input, n, field, i32::from_le_bytes)?),
        ValueType::F32 => ArrayValue::F32(fixed(input, n, field, f32::from_le_bytes)?),
        ValueType::Bool => ArrayValue::Bool(fixed(input, n, field, |[b]: [u8; 1]| b != 0)?),
        ValueType::U64 => ArrayValue::U64(fixed(input, n, field, u64::from_le_bytes)?),
        ValueType::I64 => ArrayValue::I64(fixed(input, n, field, i64::from_le_bytes)?),
        ValueType::F64 => ArrayValue::F64(fixed(input, n, field, f64::from_le_bytes)?),
        ValueType::String => {
            let mut items = StringArray::with_capacity(prealloc(n));
            for _ in 0..n {
                let at = input.position();
                let item = input.lossy_string(field)?;
                items
                    .try_push(&item)
                    .map_err(|_| GgufError::LimitExceeded {
                        field: field(),
                        offset: at,
                        count: n,
                        limit: items.len() as u64,
                    })?;
            }
            items.shrink_to_fit();
            ArrayValue::String(items)
        }
        ValueType::Array => {
            if depth >= MAX_ARRAY_NESTING {
                return Err(GgufError::NestingTooDeep {
                    field: field(),
                    offset: header_at,
                    max: MAX_ARRAY_NESTING,
                });
            }
            let mut items = Vec::with_capacity(prealloc(n));
            for _ in 0..n {
                items.push(read_array(input, depth + 1, field)?);
            }
            ArrayValue::Array(items)
        }
    })
}
