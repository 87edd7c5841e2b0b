//! A whole model: one GGUF file, or every file of a split model, as one tensor table.
//!
//! llama.cpp's `gguf-split` writes `<prefix>-00001-of-00003.gguf`, … with the keys
//! `split.no` (0-based), `split.count` and `split.tensors.count`. [`GgufModel::open`]
//! accepts any file of such a set, reads every sibling, checks their split keys and
//! merges their tensor tables; each [`TensorInfo::split`] says which file holds it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::GgufError;
use super::metadata::Metadata;
use super::reader::GgufFile;
use super::tensor::TensorInfo;
use super::value::{ArrayValue, StringArray, Value};
use super::{KEY_ARCHITECTURE, KEY_SPLIT_COUNT, KEY_SPLIT_NO, KEY_SPLIT_TENSORS_COUNT};

/// Older spelling of [`KEY_SPLIT_COUNT`], also accepted.
const KEY_GENERAL_SPLIT_COUNT: &str = "general.split.count";

/// The file name of split `index` (0-based) of `count`: `<prefix>-00001-of-00003.gguf`
/// for index 0 of 3 (llama.cpp's `llama_split_path`).
pub fn split_file_name(prefix: &str, index: u32, count: u32) -> String {
    format!("{prefix}-{:05}-of-{count:05}.gguf", u64::from(index) + 1)
}

/// A split file path taken apart: `dir/<prefix>-NNNNN-of-MMMMM.gguf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitName {
    /// The directory and file-name prefix (`dir/<prefix>`).
    pub prefix: PathBuf,
    /// The 0-based split index (`NNNNN - 1`).
    pub index: u32,
    /// The split count (`MMMMM`).
    pub count: u32,
}

impl SplitName {
    /// Parses `path`'s file name, or `None` if it is not a split file name.
    pub fn parse(path: &Path) -> Option<SplitName> {
        let name = path.file_name()?.to_str()?;
        let stem = name.strip_suffix(".gguf")?;
        let (rest, count) = stem.rsplit_once("-of-")?;
        let (prefix, number) = rest.rsplit_once('-')?;
        let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
        if prefix.is_empty() || !digits(number) || !digits(count) {
            return None;
        }
        let number: u32 = number.parse().ok()?;
        let count: u32 = count.parse().ok()?;
        if number == 0 || number > count {
            return None;
        }
        Some(SplitName {
            prefix: path.with_file_name(prefix),
            index: number - 1,
            count,
        })
    }

    /// The path of split `index` (0-based) of this set.
    pub fn path_of(&self, index: u32) -> PathBuf {
        let prefix = self
            .prefix
            .file_name()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.prefix
            .with_file_name(split_file_name(&prefix, index, self.count))
    }
}

/// A model made of one or more GGUF files.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufModel {
    paths: Vec<PathBuf>,
    files: Vec<GgufFile>,
    tensors: Vec<TensorInfo>,
    /// The lengths of the arrays [`GgufModel::shed_large_arrays`] emptied, by key.
    shed: HashMap<String, usize>,
}

/// Arrays of more elements than this are a tokenizer's (tokens, scores, types, merges); the
/// per-layer arrays of the largest models have a few hundred.
pub const LARGE_ARRAY_ELEMENTS: usize = 4096;

/// `(split.no, split.count)` of a file; `(0, 1)` when it is not split.
fn split_keys(metadata: &Metadata) -> Result<(u64, u64), GgufError> {
    let integer = |key: &'static str| -> Result<Option<u64>, GgufError> {
        match metadata.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(GgufError::SplitKey { key }),
        }
    };
    let count = match integer(KEY_SPLIT_COUNT)? {
        Some(c) => c,
        None => integer(KEY_GENERAL_SPLIT_COUNT)?.unwrap_or(1),
    };
    let no = integer(KEY_SPLIT_NO)?.unwrap_or(0);
    Ok((no, count.max(1)))
}

impl GgufModel {
    /// Opens the model at `path`. For a split model, `path` may name any of its files;
    /// all of them are read (headers only).
    pub fn open(path: &Path) -> Result<GgufModel, GgufError> {
        let first = GgufFile::read_from_path(path)?;
        let (no, count) = split_keys(&first.metadata).map_err(|e| e.in_file(path))?;
        if count <= 1 {
            return Ok(GgufModel::from_parts(vec![path.to_path_buf()], vec![first]));
        }
        let name = SplitName::parse(path)
            .filter(|n| u64::from(n.count) == count)
            .ok_or_else(|| GgufError::SplitName { count }.in_file(path))?;
        if u64::from(name.index) != no {
            return Err(GgufError::SplitMismatch {
                expected_no: u64::from(name.index),
                expected_count: count,
                found_no: no,
                found_count: count,
            }
            .in_file(path));
        }

        let mut paths = Vec::new();
        let mut files = Vec::new();
        let mut opened = Some(first);
        for index in 0..name.count {
            let split_path = name.path_of(index);
            let file = match opened.take_if(|_| index == name.index) {
                Some(file) => file,
                None => GgufFile::read_from_path(&split_path)?,
            };
            let (found_no, found_count) =
                split_keys(&file.metadata).map_err(|e| e.in_file(&split_path))?;
            if found_no != u64::from(index) || found_count != count {
                return Err(GgufError::SplitMismatch {
                    expected_no: u64::from(index),
                    expected_count: count,
                    found_no,
                    found_count,
                }
                .in_file(&split_path));
            }
            paths.push(split_path);
            files.push(file);
        }
        let model = GgufModel::from_parts(paths, files);
        model.check_merged()?;
        Ok(model)
    }

    /// A single-file model from an already parsed header (e.g. [`GgufFile::parse`]).
    pub fn from_file(file: GgufFile) -> GgufModel {
        GgufModel::from_parts(Vec::new(), vec![file])
    }

    fn from_parts(paths: Vec<PathBuf>, files: Vec<GgufFile>) -> GgufModel {
        let tensors = files
            .iter()
            .enumerate()
            .flat_map(|(split, file)| {
                file.tensors.iter().cloned().map(move |mut t| {
                    t.split = split;
                    t
                })
            })
            .collect();
        GgufModel {
            paths,
            files,
            tensors,
            shed: HashMap::new(),
        }
    }

    /// Checks tensor names are unique across splits and match `split.tensors.count`.
    fn check_merged(&self) -> Result<(), GgufError> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut index_in_file = 0u64;
        let mut current_split = 0usize;
        for t in &self.tensors {
            if t.split != current_split {
                current_split = t.split;
                index_in_file = 0;
            }
            if seen.insert(&t.name, t.split).is_some() {
                let err = GgufError::DuplicateTensor {
                    name: t.name.clone(),
                    index: index_in_file,
                    offset: 0,
                };
                return Err(match self.paths.get(t.split) {
                    Some(p) => err.in_file(p),
                    None => err,
                });
            }
            index_in_file += 1;
        }
        if let Some(expected) = self.metadata().get_u64(KEY_SPLIT_TENSORS_COUNT) {
            let found = self.tensors.len() as u64;
            if expected != found {
                let err = GgufError::SplitTensorCount { expected, found };
                return Err(match self.paths.first() {
                    Some(p) => err.in_file(p),
                    None => err,
                });
            }
        }
        Ok(())
    }

    /// The paths of the split files, in split order (empty for [`GgufModel::from_file`]).
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The parsed headers of the split files, in split order.
    pub fn files(&self) -> &[GgufFile] {
        &self.files
    }

    /// The number of files the model is stored in.
    pub fn n_splits(&self) -> usize {
        self.files.len()
    }

    /// The metadata of the first file (which holds the model's metadata).
    pub fn metadata(&self) -> &Metadata {
        static EMPTY: std::sync::OnceLock<Metadata> = std::sync::OnceLock::new();
        match self.files.first() {
            Some(f) => &f.metadata,
            None => EMPTY.get_or_init(Metadata::new),
        }
    }

    /// Every tensor of every split, in split then file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Total size of all split files in bytes.
    pub fn file_size(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |acc, f| acc.saturating_add(f.file_size))
    }

    /// Bytes of the split files from each file's first tensor to the end of its last: what
    /// stays mapped once llama.cpp has loaded a mapped model, which unmaps the rest (the
    /// metadata before the tensors, anything after them). At most [`file_size`](Self::file_size).
    pub fn tensor_data_span(&self) -> u64 {
        (0..self.files.len())
            .map(|split| {
                let spans = self.tensors.iter().filter(|t| t.split == split);
                let first = spans.clone().map(|t| t.file_offset).min();
                let last = spans.map(|t| t.file_offset.saturating_add(t.n_bytes)).max();
                match (first, last) {
                    (Some(first), Some(last)) => last.saturating_sub(first),
                    _ => 0,
                }
            })
            .fold(0u64, u64::saturating_add)
            .min(self.file_size())
    }

    /// Empties the metadata arrays of more than [`LARGE_ARRAY_ELEMENTS`] elements (a
    /// tokenizer's token texts, scores, types and merges), keeping their lengths for
    /// [`array_len`](Self::array_len), and returns how many it emptied. For a run that has
    /// checked the vocabulary: llama.cpp reads its own copy from the file, and this one would
    /// otherwise stay next to it through the load (3.5 MiB for 262,144 tokens).
    pub fn shed_large_arrays(&mut self) -> usize {
        let mut emptied = 0;
        for file in &mut self.files {
            for (key, value) in file.metadata.iter_mut() {
                let Value::Array(array) = value else {
                    continue;
                };
                if array.len() <= LARGE_ARRAY_ELEMENTS {
                    continue;
                }
                self.shed.insert(key.to_owned(), array.len());
                *array = array.emptied();
                emptied += 1;
            }
        }
        emptied
    }

    /// The number of elements of the array at `key`, also after
    /// [`shed_large_arrays`](Self::shed_large_arrays) emptied it.
    pub fn array_len(&self, key: &str) -> Option<usize> {
        match self.shed.get(key) {
            Some(&n) => Some(n),
            None => self.get_array(key).map(ArrayValue::len),
        }
    }

    /// `general.architecture`, e.g. `"llama"`.
    pub fn architecture(&self) -> Option<&str> {
        self.metadata().get_str(KEY_ARCHITECTURE)
    }

    /// The metadata value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata().get(key)
    }

    /// `key` as a `u64` (any non-negative integer type).
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.metadata().get_u64(key)
    }

    /// `key` as an `i64`.
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.metadata().get_i64(key)
    }

    /// `key` as an `f32` (either float type).
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.metadata().get_f32(key)
    }

    /// `key` as an `f64` (either float type).
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.metadata().get_f64(key)
    }

    /// `key` as a `bool`.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.metadata().get_bool(key)
    }

    /// `key` as a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.metadata().get_str(key)
    }

    /// `key` as an array.
    pub fn get_array(&self, key: &str) -> Option<&ArrayValue> {
        self.metadata().get_array(key)
    }

    /// `key` as an array of non-negative integers.
    pub fn get_array_u64(&self, key: &str) -> Option<Vec<u64>> {
        self.metadata().get_array_u64(key)
    }

    /// `key` as an array of strings.
    pub fn get_array_str(&self, key: &str) -> Option<&StringArray> {
        self.metadata().get_array_str(key)
    }

    /// The architecture-prefixed key `{arch}.{suffix}`, if the architecture is known.
    pub fn arch_key(&self, suffix: &str) -> Option<String> {
        Some(format!("{}.{suffix}", self.architecture()?))
    }

    /// The value of `{arch}.{suffix}`.
    pub fn arch_value(&self, suffix: &str) -> Option<&Value> {
        self.get(&self.arch_key(suffix)?)
    }

    /// `{arch}.{suffix}` as a `u64`, e.g. `arch_u64("block_count")`.
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        self.arch_value(suffix)?.as_u64()
    }

    /// `{arch}.{suffix}` as an `f32`.
    pub fn arch_f32(&self, suffix: &str) -> Option<f32> {
        self.arch_value(suffix)?.as_f32()
    }

    /// `{arch}.{suffix}` as a string.
    pub fn arch_str(&self, suffix: &str) -> Option<&str> {
        self.arch_value(suffix)?.as_str()
    }

    /// `{arch}.{suffix}` as an array of non-negative integers.
    pub fn arch_array_u64(&self, suffix: &str) -> Option<Vec<u64>> {
        self.arch_value(suffix)?.as_array()?.to_u64_vec()
    }

    /// `{arch}.{suffix}` as a number, or the largest element of a per-layer array.
    pub fn arch_u64_or_max(&self, suffix: &str) -> Option<u64> {
        match self.arch_value(suffix)? {
            Value::Array(a) => a.to_u64_vec()?.into_iter().max(),
            v => v.as_u64(),
        }
    }
}
