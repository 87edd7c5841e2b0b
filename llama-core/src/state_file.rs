//! Session files: a conversation's KV state on disk, for sessions the engine evicts, `chat`'s
//! `/save` and `/load`, and `prompt --prompt-cache`. Each file holds the model identity and
//! cache types (a file is refused for another model), the tokens, an opaque extra blob (chat
//! keeps its messages there) and llama.cpp's serialised sequence state. Written atomically
//! (temporary file, then rename), so a crash never leaves a half-written file behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ffi::Token;

const MAGIC: &[u8; 8] = b"LRSSEQ03";

/// A session the engine saved: where it is and which tokens it holds.
#[derive(Debug, Clone)]
pub struct SavedSession {
    /// The file.
    pub path: PathBuf,
    /// Its tokens.
    pub tokens: Vec<Token>,
}

/// Why a saved session could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// I/O failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a session file, or is truncated.
    #[error("{} is not a llama-rs session file (or is truncated)", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// The file was saved for another model or cache layout.
    #[error("{} was saved for another model or cache type ({found}); this one is {expected}", path.display())]
    OtherModel {
        /// The file.
        path: PathBuf,
        /// Identity in the file.
        found: String,
        /// Identity of the running model.
        expected: String,
    },
}

/// The identity a session file is stamped with: the model's fingerprint (a digest of its
/// tensor table and of a sample of every tensor's data, [`crate::gguf::GgufModel::fingerprint`],
/// so a fine-tune of the same base is another model) and the cache element types.
pub fn model_identity(
    fingerprint: &str,
    type_k: crate::KvCacheType,
    type_v: crate::KvCacheType,
) -> String {
    format!(
        "model={fingerprint} k={} v={}",
        type_k.name(),
        type_v.name()
    )
}

/// What a session file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFile {
    /// Tokens whose KV the state holds.
    pub tokens: Vec<Token>,
    /// The caller's extra data.
    pub extra: Vec<u8>,
    /// llama.cpp's serialised sequence state.
    pub state: Vec<u8>,
}

/// Writes a session file atomically.
pub fn write_state(
    path: &Path,
    identity: &str,
    tokens: &[Token],
    extra: &[u8],
    state: &[u8],
) -> Result<(), StateFileError> {
    let io = |source| StateFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    let mut header = Vec::with_capacity(32 + identity.len() + tokens.len() * 4);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&(identity.len() as u32).to_le_bytes());
    header.extend_from_slice(identity.as_bytes());
    header.extend_from_slice(&(tokens.len() as u32).to_le_bytes());
    for t in tokens {
        header.extend_from_slice(&t.to_le_bytes());
    }
    header.extend_from_slice(&(extra.len() as u64).to_le_bytes());
    header.extend_from_slice(extra);
    header.extend_from_slice(&(state.len() as u64).to_le_bytes());
    f.write_all(&header).map_err(io)?;
    f.write_all(state).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads a session file, checking it belongs to the model and cache layout `identity`.
pub fn read_state(path: &Path, identity: &str) -> Result<StateFile, StateFileError> {
    let bytes = std::fs::read(path).map_err(|source| StateFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let malformed = || StateFileError::Malformed {
        path: path.to_path_buf(),
    };
    let mut cursor = bytes.as_slice();
    let mut take = |n: usize| -> Result<&[u8], StateFileError> {
        if cursor.len() < n {
            return Err(malformed());
        }
        let (head, rest) = cursor.split_at(n);
        cursor = rest;
        Ok(head)
    };
    if take(8)? != MAGIC {
        return Err(malformed());
    }
    let id_len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| malformed())?) as usize;
    let found = String::from_utf8_lossy(take(id_len)?).into_owned();
    if found != identity {
        return Err(StateFileError::OtherModel {
            path: path.to_path_buf(),
            found,
            expected: identity.to_string(),
        });
    }
    let n_tokens = u32::from_le_bytes(take(4)?.try_into().map_err(|_| malformed())?) as usize;
    let token_bytes = take(n_tokens.checked_mul(4).ok_or_else(malformed)?)?;
    let tokens = token_bytes
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let extra_len = u64::from_le_bytes(take(8)?.try_into().map_err(|_| malformed())?);
    let extra = take(usize::try_from(extra_len).map_err(|_| malformed())?)?.to_vec();
    let state_len = u64::from_le_bytes(take(8)?.try_into().map_err(|_| malformed())?);
    let state = take(usize::try_from(state_len).map_err(|_| malformed())?)?.to_vec();
    if !cursor.is_empty() {
        return Err(malformed());
    }
    Ok(StateFile {
        tokens,
        extra,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.state");
        write_state(&path, "model-a f16", &[1, 2, 3], b"extra", b"kv bytes").unwrap();
        let file = read_state(&path, "model-a f16").unwrap();
        assert_eq!(file.tokens, vec![1, 2, 3]);
        assert_eq!(file.extra, b"extra");
        assert_eq!(file.state, b"kv bytes");
        assert!(matches!(
            read_state(&path, "model-b f16"),
            Err(StateFileError::OtherModel { .. })
        ));
        let bytes = std::fs::read(&path).unwrap();
        for cut in 0..bytes.len() {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(read_state(&path, "model-a f16").is_err(), "cut at {cut}");
        }
    }
}
