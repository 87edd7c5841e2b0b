//! The typed errors of the GGUF reader.
//!
//! Every way a GGUF header can be malformed has its own [`GgufError`] variant, carrying
//! the [`Field`] being read and the byte offset where the problem was found. Errors from
//! a file on disk are wrapped in [`GgufError::InFile`], which adds the path; use
//! [`GgufError::root`] to look through that wrapper.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::value::ValueType;

/// Which part of a GGUF header was being read when an error occurred.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// The four magic bytes.
    Magic,
    /// The format version.
    Version,
    /// The number of tensors.
    TensorCount,
    /// The number of metadata key/value pairs.
    MetadataCount,
    /// The key of the metadata pair with this zero-based index.
    MetadataKey {
        /// Index of the metadata pair.
        index: u64,
    },
    /// The value stored under this metadata key.
    MetadataValue {
        /// The key whose value was being read.
        key: String,
    },
    /// The name of the tensor with this zero-based index.
    TensorName {
        /// Index of the tensor in the tensor table.
        index: u64,
    },
    /// The description (dimensions, type, offset) of this tensor.
    TensorInfo {
        /// Name of the tensor.
        name: String,
    },
    /// The data of this tensor (its placement within the file).
    TensorData {
        /// Name of the tensor.
        name: String,
    },
    /// The start of the data section (header end rounded up to the alignment).
    DataSection,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Magic => f.write_str("magic"),
            Field::Version => f.write_str("version"),
            Field::TensorCount => f.write_str("tensor count"),
            Field::MetadataCount => f.write_str("metadata count"),
            Field::MetadataKey { index } => write!(f, "key of metadata pair {index}"),
            Field::MetadataValue { key } => write!(f, "value of metadata key {key:?}"),
            Field::TensorName { index } => write!(f, "name of tensor {index}"),
            Field::TensorInfo { name } => write!(f, "description of tensor {name:?}"),
            Field::TensorData { name } => write!(f, "data of tensor {name:?}"),
            Field::DataSection => f.write_str("data section offset"),
        }
    }
}

/// An error reading or validating a GGUF file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// An error that occurred in a particular file; `source` is the actual problem.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The file being read.
        path: PathBuf,
        /// What went wrong in it.
        #[source]
        source: Box<GgufError>,
    },
    /// The file could not be opened or its size could not be determined.
    #[error("cannot open: {source}")]
    Open {
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// Reading from the file failed.
    #[error("I/O error reading {field} at byte {offset}: {source}")]
    Io {
        /// What was being read.
        field: Field,
        /// Byte offset of the read.
        offset: u64,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The input ended in the middle of a field.
    #[error(
        "truncated: {field} at byte {offset} needs {needed} bytes but only {available} remain"
    )]
    Truncated {
        /// What was being read.
        field: Field,
        /// Byte offset of the field.
        offset: u64,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the input.
        available: u64,
    },
    /// The file does not start with `GGUF`.
    #[error("bad magic {found:02x?}, expected \"GGUF\" (47 47 55 46)")]
    BadMagic {
        /// The first four bytes of the input.
        found: [u8; 4],
    },
    /// The version field looks byte-swapped: a big-endian GGUF file.
    #[error("version field {raw:#010x} looks like a big-endian GGUF file, which is not supported")]
    BigEndian {
        /// The version field as read (little-endian).
        raw: u32,
    },
    /// The GGUF version is not 2 or 3 (version 1 is obsolete).
    #[error("GGUF version {version} is not supported (supported: 2 and 3)")]
    UnsupportedVersion {
        /// The version found in the header.
        version: u32,
    },
    /// A length or count is larger than the bytes remaining could possibly hold.
    #[error(
        "{field} at byte {offset} declares {count} items of at least {min_item_size} bytes, \
         but only {available} bytes remain"
    )]
    CountTooLarge {
        /// What was being read.
        field: Field,
        /// Byte offset of the length or count.
        offset: u64,
        /// The declared length or count.
        count: u64,
        /// The fewest bytes one item takes.
        min_item_size: u64,
        /// Bytes left in the input.
        available: u64,
    },
    /// A string length or array count exceeds llama.cpp's limit (2^30), even though
    /// the file may be large enough to hold it.
    #[error("{field} at byte {offset} declares {count} items; the limit is {limit}")]
    LimitExceeded {
        /// What was being read.
        field: Field,
        /// Byte offset of the length or count.
        offset: u64,
        /// The declared length or count.
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// A metadata key or tensor name is not valid UTF-8.
    #[error("{field} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// What was being read.
        field: Field,
        /// Byte offset of the string's bytes.
        offset: u64,
    },
    /// A metadata key is the empty string.
    #[error("metadata key {index} at byte {offset} is empty")]
    EmptyKey {
        /// Index of the metadata pair.
        index: u64,
        /// Byte offset of the key.
        offset: u64,
    },
    /// The same metadata key occurs twice.
    #[error("duplicate metadata key {key:?} at byte {offset}")]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// Byte offset of the second occurrence.
        offset: u64,
    },
    /// A metadata value has a type id that GGUF does not define.
    #[error("{field} at byte {offset} has unknown value type {type_id}")]
    UnknownValueType {
        /// What was being read.
        field: Field,
        /// Byte offset of the type id.
        offset: u64,
        /// The type id found.
        type_id: u32,
    },
    /// Metadata arrays are nested deeper than [`super::MAX_ARRAY_NESTING`].
    #[error("{field} at byte {offset} nests arrays deeper than {max} levels")]
    NestingTooDeep {
        /// What was being read.
        field: Field,
        /// Byte offset of the innermost array header.
        offset: u64,
        /// The maximum nesting depth.
        max: u32,
    },
    /// `general.alignment` is not stored as a `u32`.
    #[error("general.alignment has type {found}, expected u32")]
    AlignmentType {
        /// The type it has.
        found: ValueType,
    },
    /// `general.alignment` is zero or not a power of two.
    #[error("general.alignment = {alignment} is not a nonzero power of two")]
    BadAlignment {
        /// The alignment found.
        alignment: u64,
    },
    /// A tensor name is longer than ggml allows.
    #[error("{field} at byte {offset} is {len} bytes long; the maximum is {max}")]
    TensorNameTooLong {
        /// Which tensor.
        field: Field,
        /// Byte offset of the name.
        offset: u64,
        /// Its length in bytes.
        len: u64,
        /// The maximum length.
        max: u64,
    },
    /// Two tensors (possibly in different split files) have the same name.
    #[error("duplicate tensor name {name:?} (tensor {index}, name at byte {offset})")]
    DuplicateTensor {
        /// The repeated name.
        name: String,
        /// Index of the second occurrence in its file's tensor table.
        index: u64,
        /// Byte offset of the second occurrence's name.
        offset: u64,
    },
    /// A tensor has more than [`super::MAX_DIMS`] dimensions.
    #[error("tensor {name:?} has {n_dims} dimensions (at byte {offset}); the maximum is {max}")]
    TooManyDims {
        /// The tensor.
        name: String,
        /// The dimension count found.
        n_dims: u32,
        /// Byte offset of the dimension count.
        offset: u64,
        /// The maximum.
        max: u32,
    },
    /// A dimension does not fit ggml's signed 64-bit element counts.
    #[error("tensor {name:?} dimension {dim} = {value} (at byte {offset}) exceeds i64::MAX")]
    BadDimension {
        /// The tensor.
        name: String,
        /// Which dimension (0-based).
        dim: u32,
        /// The value found.
        value: u64,
        /// Byte offset of the dimension.
        offset: u64,
    },
    /// The product of a tensor's dimensions, or its byte size, overflows.
    #[error(
        "tensor {name:?} shape {dims:?} overflows its element or byte count (at byte {offset})"
    )]
    ShapeOverflow {
        /// The tensor.
        name: String,
        /// Its dimensions.
        dims: Vec<u64>,
        /// Byte offset of the tensor description.
        offset: u64,
    },
    /// A tensor's ggml type id is not a type this reader knows.
    #[error("tensor {name:?} has unknown ggml type {type_id} (at byte {offset})")]
    UnknownGgmlType {
        /// The tensor.
        name: String,
        /// The type id found.
        type_id: u32,
        /// Byte offset of the type id.
        offset: u64,
    },
    /// A tensor's row length is not a whole number of quantisation blocks.
    #[error("tensor {name:?} rows of {row_len} elements are not a multiple of {ggml_type}'s block size {block_size} (type at byte {offset})")]
    RowNotBlockAligned {
        /// The tensor.
        name: String,
        /// Byte offset of the type id.
        offset: u64,
        /// Elements per row (the first dimension).
        row_len: u64,
        /// The tensor's type name.
        ggml_type: &'static str,
        /// The type's block size.
        block_size: u64,
    },
    /// A tensor's data offset is not a multiple of the alignment.
    #[error("tensor {name:?} data offset {data_offset} (at byte {offset}) is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        /// The tensor.
        name: String,
        /// The offset relative to the data section.
        data_offset: u64,
        /// Byte offset of the offset field.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// A tensor's data extends past the end of the file.
    #[error("tensor {name:?} data at bytes {start}..{end} extends past the end of the file ({file_size} bytes)")]
    TensorOutOfBounds {
        /// The tensor.
        name: String,
        /// Absolute start of its data.
        start: u64,
        /// Absolute end of its data (saturated at `u64::MAX`).
        end: u64,
        /// The file size.
        file_size: u64,
    },
    /// Computing an offset or size overflowed 64 bits.
    #[error("arithmetic overflow computing {field} at byte {offset}")]
    Overflow {
        /// What was being computed.
        field: Field,
        /// Byte offset concerned.
        offset: u64,
    },
    /// A split-related metadata key is missing or has a type that is not an integer.
    #[error("split metadata key {key:?} is missing or not an integer")]
    SplitKey {
        /// The key.
        key: &'static str,
    },
    /// A split file's name does not follow `<prefix>-NNNNN-of-MMMMM.gguf`.
    #[error("file name is not of the form <prefix>-NNNNN-of-{count:05}.gguf for a {count}-file split model")]
    SplitName {
        /// The number of splits the metadata declares.
        count: u64,
    },
    /// A split file's metadata disagrees with its place in the split set.
    #[error("split metadata says split.no = {found_no} of {found_count}, expected {expected_no} of {expected_count}")]
    SplitMismatch {
        /// The expected zero-based split index.
        expected_no: u64,
        /// The expected split count.
        expected_count: u64,
        /// `split.no` as found.
        found_no: u64,
        /// `split.count` as found.
        found_count: u64,
    },
    /// The tensor total over all splits disagrees with `split.tensors.count`.
    #[error("split.tensors.count is {expected} but the split files hold {found} tensors")]
    SplitTensorCount {
        /// `split.tensors.count`.
        expected: u64,
        /// Tensors found over all files.
        found: u64,
    },
}

impl GgufError {
    /// The error with any [`GgufError::InFile`] wrappers removed.
    pub fn root(&self) -> &GgufError {
        let mut err = self;
        while let GgufError::InFile { source, .. } = err {
            err = source;
        }
        err
    }

    /// Wraps the error with the path of the file it occurred in.
    pub fn in_file(self, path: impl Into<PathBuf>) -> GgufError {
        GgufError::InFile {
            path: path.into(),
            source: Box::new(self),
        }
    }
}
