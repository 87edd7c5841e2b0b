//! A model's fingerprint: what session files are stamped with, so that a saved KV state is never
//! loaded into another model. Two files with the same tensor table (a fine-tune of the same base,
//! another quantisation run) differ in their weights, so the fingerprint covers a sample of every
//! tensor's data as well as the table: a SHA-256 over each tensor's name, type, shape, offset and
//! size, and the first [`SAMPLE_BYTES`] of its data.

use std::io::{Read, Seek, SeekFrom};

use sha2::{Digest, Sha256};

use super::model::GgufModel;

/// Bytes of each tensor's data that go into the fingerprint.
pub const SAMPLE_BYTES: u64 = 4096;

impl GgufModel {
    /// The model's fingerprint (32 hex digits). Reads a few KiB of each tensor from the files.
    pub fn fingerprint(&self) -> std::io::Result<String> {
        let mut hash = Sha256::new();
        let mut files = self
            .paths()
            .iter()
            .map(std::fs::File::open)
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut sample = vec![0u8; SAMPLE_BYTES as usize];
        for t in self.tensors() {
            hash.update(t.name.as_bytes());
            hash.update(t.ggml_type.id().to_le_bytes());
            for d in &t.dims {
                hash.update(d.to_le_bytes());
            }
            hash.update(t.file_offset.to_le_bytes());
            hash.update(t.n_bytes.to_le_bytes());
            let Some(file) = files.get_mut(t.split) else {
                continue;
            };
            let n = t.n_bytes.min(SAMPLE_BYTES) as usize;
            file.seek(SeekFrom::Start(t.file_offset))?;
            file.read_exact(&mut sample[..n])?;
            hash.update(&sample[..n]);
        }
        let digest = hash.finalize();
        Ok(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::gguf::synthetic::SyntheticModel;
    use crate::gguf::{GgmlType, GgufModel};

    #[test]
    fn same_table_other_weights_differ() {
        let dir = tempfile::tempdir().unwrap();
        let write = |seed: u64, name: &str| {
            let path = dir.path().join(name);
            SyntheticModel {
                seed,
                ..SyntheticModel::llama(GgmlType::Q8_0)
            }
            .write_to(&path)
            .unwrap();
            GgufModel::open(&path).unwrap().fingerprint().unwrap()
        };
        let base = write(1, "base.gguf");
        assert_eq!(base, write(1, "copy.gguf"), "same file, same fingerprint");
        assert_ne!(
            base,
            write(2, "finetune.gguf"),
            "same tensor table, other weights"
        );
        assert_eq!(base.len(), 32);
    }
}
