//! Importance matrices for `--imatrix`, in the two formats llama-quantize reads: GGUF
//! (`llama-imatrix`'s default: tensors `NAME.in_sum2` and `NAME.counts`, metadata
//! `imatrix.datasets`, `imatrix.chunk_count`, `imatrix.chunk_size`) and the legacy binary
//! `.dat` format. Values are normalised as llama-quantize does: GGUF sums are divided by each
//! matrix's count (1 where the count is 0), legacy sums by the number of calls.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::ffi::{ImatrixValues, MetadataValue};
use crate::gguf::{GgmlType, GgufError, GgufFile};

/// An importance matrix as llama.cpp's quantizer takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Imatrix {
    /// One entry per weight tensor.
    pub entries: Vec<ImatrixValues>,
    /// The data sets it was computed on.
    pub datasets: Vec<String>,
    /// Chunks it was computed on (0 when the file does not say).
    pub chunk_count: u32,
}

/// Why an importance matrix could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImatrixError {
    /// The file could not be read.
    #[error("cannot read importance matrix {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A GGUF file that is not a valid importance matrix.
    #[error("{} is not a valid importance matrix: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn invalid(path: &Path, message: impl Into<String>) -> ImatrixError {
    ImatrixError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl Imatrix {
    /// Reads `path`: GGUF when it starts with GGUF's magic, else the legacy format.
    pub fn read(path: &Path) -> Result<Imatrix, ImatrixError> {
        let io = |source| ImatrixError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut magic = [0u8; 4];
        let n = file.read(&mut magic).map_err(io)?;
        if n == 4 && &magic == b"GGUF" {
            let header = GgufFile::read_from_path(path)
                .map_err(|e: GgufError| invalid(path, e.root().to_string()))?;
            return read_gguf(path, &mut file, &header);
        }
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.read_to_end(&mut bytes).map_err(io)?;
        parse_legacy(path, &bytes)
    }

    /// The metadata llama-quantize records in a model quantized with this matrix.
    pub fn metadata(&self, path: &Path) -> Vec<(String, MetadataValue)> {
        let mut kv = vec![(
            "quantize.imatrix.file".to_string(),
            MetadataValue::Str(path.display().to_string()),
        )];
        if let Some(dataset) = self.datasets.first() {
            kv.push((
                "quantize.imatrix.dataset".to_string(),
                MetadataValue::Str(dataset.clone()),
            ));
        }
        kv.push((
            "quantize.imatrix.entries_count".to_string(),
            MetadataValue::Int(self.entries.len() as i64),
        ));
        if self.chunk_count > 0 {
            kv.push((
                "quantize.imatrix.chunks_count".to_string(),
                MetadataValue::Int(i64::from(self.chunk_count)),
            ));
        }
        kv
    }
}

fn read_f32s(
    path: &Path,
    file: &mut std::fs::File,
    offset: u64,
    n_bytes: u64,
) -> Result<Vec<f32>, ImatrixError> {
    let io = |source| ImatrixError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = usize::try_from(n_bytes).map_err(|_| invalid(path, "a tensor is too large"))?;
    let mut bytes = vec![0u8; len];
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    file.read_exact(&mut bytes).map_err(io)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn read_gguf(
    path: &Path,
    file: &mut std::fs::File,
    header: &GgufFile,
) -> Result<Imatrix, ImatrixError> {
    let md = &header.metadata;
    let (Some(chunk_count), Some(_chunk_size), Some(datasets)) = (
        md.get_u64("imatrix.chunk_count"),
        md.get_u64("imatrix.chunk_size"),
        md.get_array_str("imatrix.datasets"),
    ) else {
        return Err(invalid(
            path,
            "missing imatrix metadata (imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size)",
        ));
    };
    let mut names: Vec<&str> = header
        .tensors
        .iter()
        .filter_map(|t| t.name.strip_suffix(".in_sum2"))
        .collect();
    names.sort_unstable();
    if names.is_empty() {
        return Err(invalid(path, "it holds no `.in_sum2` tensors"));
    }
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        let sums = header.tensor(&format!("{name}.in_sum2"));
        let counts = header.tensor(&format!("{name}.counts"));
        let (Some(sums), Some(counts)) = (sums, counts) else {
            return Err(invalid(
                path,
                format!("mismatched sums and counts for {name}"),
            ));
        };
        if sums.ggml_type != GgmlType::F32 || counts.ggml_type != GgmlType::F32 {
            return Err(invalid(
                path,
                format!("sums and counts for {name} must be F32"),
            ));
        }
        let sums_v = read_f32s(path, file, sums.file_offset, sums.n_bytes)?;
        let counts_v: Vec<f32> = read_f32s(path, file, counts.file_offset, counts.n_bytes)?
            .into_iter()
            .map(|c| c.round())
            .collect();
        if counts_v.is_empty() || sums_v.len() % counts_v.len() != 0 {
            return Err(invalid(
                path,
                format!(
                    "{name}: {} sums do not split into {} matrices",
                    sums_v.len(),
                    counts_v.len()
                ),
            ));
        }
        let per_matrix = sums_v.len() / counts_v.len();
        let values = sums_v
            .chunks(per_matrix)
            .zip(&counts_v)
            .flat_map(|(row, &count)| {
                row.iter()
                    .map(move |&s| if count > 0.0 { s / count } else { 1.0 })
            })
            .collect();
        entries.push(ImatrixValues {
            name: name.to_string(),
            values,
        });
    }
    Ok(Imatrix {
        entries,
        datasets: datasets.to_vec(),
        chunk_count: u32::try_from(chunk_count).unwrap_or(u32::MAX),
    })
}

/// A little-endian reader over the legacy format's bytes.
struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], ImatrixError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(invalid(
                self.path,
                format!("truncated at byte {} reading {what}", self.at),
            ));
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn i32(&mut self, what: &str) -> Result<i32, ImatrixError> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn count(&mut self, what: &str) -> Result<usize, ImatrixError> {
        let n = self.i32(what)?;
        let n = usize::try_from(n).map_err(|_| invalid(self.path, format!("negative {what}")))?;
        // Every counted item takes at least one byte: a count beyond the file is corrupt.
        if n > self.bytes.len() {
            return Err(invalid(self.path, format!("{what} {n} is beyond the file")));
        }
        Ok(n)
    }
}

/// Parses the legacy format: `n_entries`, then per entry the name's length and bytes, the
/// number of calls, the number of values and the values; optionally the chunk count and the
/// data set's name.
fn parse_legacy(path: &Path, bytes: &[u8]) -> Result<Imatrix, ImatrixError> {
    let mut c = Cursor { path, bytes, at: 0 };
    let n_entries = c.count("the number of entries")?;
    if n_entries == 0 {
        return Err(invalid(path, "no data (neither GGUF nor a legacy imatrix)"));
    }
    let mut entries = Vec::with_capacity(n_entries.min(4096));
    for _ in 0..n_entries {
        let len = c.count("a name length")?;
        let name = String::from_utf8_lossy(c.take(len, "a name")?).into_owned();
        let n_call = c.i32("the number of calls")?;
        let n_val = c.count("the number of values")?;
        if n_val == 0 {
            return Err(invalid(path, format!("{name} has no values")));
        }
        let raw = c.take(n_val.saturating_mul(4), "values")?;
        let values = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .map(|s| if n_call > 0 { s / n_call as f32 } else { s })
            .collect();
        entries.push(ImatrixValues { name, values });
    }
    let mut chunk_count = 0;
    let mut datasets = Vec::new();
    if c.at < bytes.len() {
        if let Ok(n) = c.i32("the chunk count") {
            chunk_count = u32::try_from(n).unwrap_or(0);
            if let Ok(len) = c.count("the data set name's length") {
                if let Ok(name) = c.take(len, "the data set name") {
                    if len > 0 {
                        datasets.push(String::from_utf8_lossy(name).into_owned());
                    }
                }
            }
        }
    }
    Ok(Imatrix {
        entries,
        datasets,
        chunk_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(entries: &[(&str, i32, &[f32])], tail: Option<(i32, &str)>) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend((entries.len() as i32).to_le_bytes());
        for (name, ncall, values) in entries {
            b.extend((name.len() as i32).to_le_bytes());
            b.extend(name.as_bytes());
            b.extend(ncall.to_le_bytes());
            b.extend((values.len() as i32).to_le_bytes());
            for v in *values {
                b.extend(v.to_le_bytes());
            }
        }
        if let Some((chunks, dataset)) = tail {
            b.extend(chunks.to_le_bytes());
            b.extend((dataset.len() as i32).to_le_bytes());
            b.extend(dataset.as_bytes());
        }
        b
    }

    #[test]
    fn legacy_values_are_divided_by_the_calls() {
        let bytes = legacy(
            &[("a.weight", 2, &[2.0, 4.0]), ("b.weight", 0, &[3.0])],
            Some((10, "wiki.txt")),
        );
        let m = parse_legacy(Path::new("x.dat"), &bytes).unwrap();
        assert_eq!(m.entries[0].values, vec![1.0, 2.0]);
        assert_eq!(m.entries[1].values, vec![3.0]);
        assert_eq!(m.chunk_count, 10);
        assert_eq!(m.datasets, vec!["wiki.txt".to_string()]);
        let kv = m.metadata(Path::new("x.dat"));
        assert!(kv.contains(&(
            "quantize.imatrix.entries_count".into(),
            MetadataValue::Int(2)
        )));
    }

    #[test]
    fn corrupt_legacy_files_are_errors() {
        let bytes = legacy(&[("a.weight", 2, &[2.0, 4.0])], None);
        for cut in 0..bytes.len() {
            assert!(
                parse_legacy(Path::new("x"), &bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut huge = bytes.clone();
        huge[0..4].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(parse_legacy(Path::new("x"), &huge).is_err());
    }
}
