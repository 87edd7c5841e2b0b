//! A pure-Rust, panic-free reader (and small writer) for GGUF model files.
//!
//! GGUF is the container format llama.cpp loads models from: a little-endian header
//! (magic `GGUF`, version, tensor count, metadata count), an ordered list of typed
//! metadata key/value pairs, a table of tensor descriptions, and then — aligned to
//! `general.alignment` bytes — the tensor data itself.
//!
//! This module only ever reads the header: [`GgufFile::read_from_path`] opens the file,
//! reads the header through a buffered reader and never touches the (possibly many
//! gigabytes of) tensor data. [`GgufFile::parse`] does the same for an in-memory byte
//! slice, which is what the fuzz target drives.
//!
//! Every malformed input is reported as a typed [`GgufError`] carrying the field being
//! read and the byte offset where the problem was found; no input makes the reader
//! panic, allocate more than a small multiple of the input size, or loop without
//! consuming input.
//!
//! [`GgufModel`] groups the files of a split model (`<prefix>-00001-of-00003.gguf`, …)
//! into one tensor table, and offers typed metadata getters and the summaries used by
//! `llama-cli show`. [`writer::GgufWriter`] produces GGUF bytes, for test fixtures.
//!
//! The module is pure Rust (it refers to nothing outside `gguf/`) and builds without
//! llama-core's `ffi` feature, which is how the fuzz crate uses it: without building
//! llama.cpp.

mod error;
mod fingerprint;
mod ggml_type;
mod metadata;
mod model;
pub mod preflight;
mod reader;
mod source;
mod string_array;
mod summary;
pub mod synthetic;
mod tensor;
mod value;
pub mod writer;

pub use self::error::{Field, GgufError};
pub use self::ggml_type::GgmlType;
pub use self::metadata::Metadata;
pub use self::model::{split_file_name, GgufModel, SplitName};
pub use self::preflight::{preflight, PreflightError};
pub use self::reader::GgufFile;
pub use self::string_array::{StringArray, StringArrayFull};
pub use self::summary::{file_type_name, LayerWeights, ModelSummary, TypeBytes, WeightGroups};
pub use self::tensor::TensorInfo;
pub use self::value::{ArrayValue, Value, ValueType};

/// The four magic bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";

/// The alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// The most dimensions a ggml tensor can have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

/// The longest tensor name ggml accepts, in bytes (`GGML_MAX_NAME` minus the NUL).
pub const MAX_TENSOR_NAME_LEN: u64 = 63;

/// How deeply metadata arrays may nest (arrays of arrays of …) before the reader
/// rejects the file. llama.cpp itself accepts no nesting; the bound keeps the
/// recursive reader's stack use small on hostile input.
pub const MAX_ARRAY_NESTING: u32 = 8;

/// The longest metadata string, and the most elements in one metadata array, that the
/// reader accepts (llama.cpp's `GGUF_MAX_STRING_LENGTH` / `GGUF_MAX_ARRAY_ELEMENTS`).
pub const MAX_METADATA_ITEMS: u64 = 1 << 30;

/// The metadata key holding the data-section alignment.
pub const KEY_ALIGNMENT: &str = "general.alignment";

/// The metadata key holding the model architecture name.
pub const KEY_ARCHITECTURE: &str = "general.architecture";

/// The metadata key holding the zero-based index of this split file.
pub const KEY_SPLIT_NO: &str = "split.no";

/// The metadata key holding the number of split files.
pub const KEY_SPLIT_COUNT: &str = "split.count";

/// The metadata key holding the number of tensors over all split files.
pub const KEY_SPLIT_TENSORS_COUNT: &str = "split.tensors.count";

/// The metadata key holding the chat template.
pub const KEY_CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// The metadata key holding llama.cpp's `llama_ftype` of the file.
pub const KEY_FILE_TYPE: &str = "general.file_type";
