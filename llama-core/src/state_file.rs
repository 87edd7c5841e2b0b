//! Session files: a conversation's KV state on disk, for sessions the engine evicts, `chat`'s
//! `/save` and `/load`, and `prompt --prompt-cache`.
//!
//! A file is llama.cpp's own sequence-state file (its magic and version, the tokens, the
//! state), written and read by llama.cpp one tensor range at a time, so saving a long
//! conversation never copies the whole state into memory, followed by our trailer: the model
//! identity and cache types (a file is refused for another model), an opaque extra blob (chat
//! keeps its messages there), a SHA-256 of everything before the trailer (a torn or damaged
//! file is refused before llama.cpp reads it), the trailer's length and a magic. Writes go to a
//! temporary file that is synced and then renamed, so a crash never leaves a half-written
//! session file behind.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::ffi::{Context, Token};

/// The last bytes of every session file.
const MAGIC: &[u8; 8] = b"LRSSEQ04";

/// Bytes hashed (and copied) per read: the most memory checking a file takes.
const CHUNK: usize = 1 << 20;

/// A session the engine saved: where it is and which tokens it holds.
#[derive(Debug, Clone)]
pub struct SavedSession {
    /// The file.
    pub path: PathBuf,
    /// Its tokens.
    pub tokens: Vec<Token>,
}

/// Why a session file could not be written or read back.
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
    /// The file is not a session file, or is truncated or damaged.
    #[error("{} is not a llama-rs session file (or is truncated or damaged)", path.display())]
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
    /// llama.cpp could not write the state, or rejected it on reading (no room, another
    /// cache layout).
    #[error("{}: llama.cpp could not {what} the sequence state", path.display())]
    LlamaCpp {
        /// The file.
        path: PathBuf,
        /// `save` or `restore`.
        what: &'static str,
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

/// What a session file's trailer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    /// The identity the file was saved with.
    pub identity: String,
    /// The caller's extra data.
    pub extra: Vec<u8>,
    /// SHA-256 of the llama.cpp part of the file.
    pub digest: [u8; 32],
}

impl Trailer {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.identity.len() + self.extra.len());
        out.extend_from_slice(&(self.identity.len() as u32).to_le_bytes());
        out.extend_from_slice(self.identity.as_bytes());
        out.extend_from_slice(&(self.extra.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.extra);
        out.extend_from_slice(&self.digest);
        out.extend_from_slice(&((out.len() + 16) as u64).to_le_bytes());
        out.extend_from_slice(MAGIC);
        out
    }

    /// Parses the trailer at the end of `bytes` (the whole trailer, length and magic included).
    fn parse(bytes: &[u8]) -> Option<Trailer> {
        let mut cursor = bytes;
        let mut take = |n: usize| -> Option<&[u8]> {
            if cursor.len() < n {
                return None;
            }
            let (head, rest) = cursor.split_at(n);
            cursor = rest;
            Some(head)
        };
        let id_len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let identity = String::from_utf8(take(id_len)?.to_vec()).ok()?;
        let extra_len = usize::try_from(u64::from_le_bytes(take(8)?.try_into().ok()?)).ok()?;
        let extra = take(extra_len)?.to_vec();
        let digest: [u8; 32] = take(32)?.try_into().ok()?;
        let _len = take(8)?;
        (take(8)? == MAGIC).then_some(Trailer {
            identity,
            extra,
            digest,
        })
    }
}

/// SHA-256 of the first `len` bytes of `file`, read in [`CHUNK`]s.
fn digest_of(file: &mut std::fs::File, len: u64) -> std::io::Result<[u8; 32]> {
    file.seek(SeekFrom::Start(0))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = (left.min(CHUNK as u64)) as usize;
        file.read_exact(&mut buf[..n])?;
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hash.finalize().into())
}

/// Saves sequence `seq` of `ctx` (holding `tokens`) to `path` with `identity` and `extra`,
/// atomically. Returns the file's size.
pub fn save(
    ctx: &mut Context,
    seq: i32,
    path: &Path,
    identity: &str,
    tokens: &[Token],
    extra: &[u8],
) -> Result<u64, StateFileError> {
    let io = |source| StateFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let state_len =
            ctx.save_seq_file(seq, &tmp, tokens)
                .ok_or_else(|| StateFileError::LlamaCpp {
                    path: path.to_path_buf(),
                    what: "save",
                })?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&tmp)
            .map_err(io)?;
        let digest = digest_of(&mut file, state_len).map_err(io)?;
        let trailer = Trailer {
            identity: identity.to_string(),
            extra: extra.to_vec(),
            digest,
        };
        file.seek(SeekFrom::Start(state_len)).map_err(io)?;
        file.write_all(&trailer.to_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        drop(file);
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(size)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads and checks the trailer of the session file at `path`: a session file, saved with
/// `identity`, whose llama.cpp part is intact.
pub fn check(path: &Path, identity: &str) -> Result<Trailer, StateFileError> {
    let io = |source| StateFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let malformed = || StateFileError::Malformed {
        path: path.to_path_buf(),
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size < 16 {
        return Err(malformed());
    }
    let mut tail = [0u8; 16];
    file.seek(SeekFrom::Start(size - 16)).map_err(io)?;
    file.read_exact(&mut tail).map_err(io)?;
    if &tail[8..] != MAGIC {
        return Err(malformed());
    }
    let trailer_len = u64::from_le_bytes(tail[..8].try_into().map_err(|_| malformed())?);
    if trailer_len > size || !(16..=(64 << 20)).contains(&trailer_len) {
        return Err(malformed());
    }
    let mut bytes = vec![0u8; trailer_len as usize];
    file.seek(SeekFrom::Start(size - trailer_len)).map_err(io)?;
    file.read_exact(&mut bytes).map_err(io)?;
    let trailer = Trailer::parse(&bytes).ok_or_else(malformed)?;
    if trailer.identity != identity {
        return Err(StateFileError::OtherModel {
            path: path.to_path_buf(),
            found: trailer.identity,
            expected: identity.to_string(),
        });
    }
    if digest_of(&mut file, size - trailer_len).map_err(io)? != trailer.digest {
        return Err(malformed());
    }
    Ok(trailer)
}

/// Loads the session file at `path` into sequence `seq` of `ctx` after [`check`]ing it;
/// returns its tokens (at most `max_tokens`) and extra data.
pub fn load(
    ctx: &mut Context,
    seq: i32,
    path: &Path,
    identity: &str,
    max_tokens: usize,
) -> Result<(Vec<Token>, Vec<u8>), StateFileError> {
    let trailer = check(path, identity)?;
    let tokens =
        ctx.load_seq_file(seq, path, max_tokens)
            .ok_or_else(|| StateFileError::LlamaCpp {
                path: path.to_path_buf(),
                what: "restore",
            })?;
    Ok((tokens, trailer.extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.state");
        let body = b"llama.cpp state bytes".to_vec();
        let trailer = Trailer {
            identity: "model=ab k=f16 v=f16".into(),
            extra: b"extra".to_vec(),
            digest: Sha256::digest(&body).into(),
        };
        let mut bytes = body.clone();
        bytes.extend_from_slice(&trailer.to_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(check(&path, "model=ab k=f16 v=f16").unwrap(), trailer);
        assert!(matches!(
            check(&path, "model=cd k=f16 v=f16"),
            Err(StateFileError::OtherModel { .. })
        ));
        let mut flipped = bytes.clone();
        flipped[3] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(matches!(
            check(&path, "model=ab k=f16 v=f16"),
            Err(StateFileError::Malformed { .. })
        ));
        for cut in 0..bytes.len() {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(
                check(&path, "model=ab k=f16 v=f16").is_err(),
                "cut at {cut}"
            );
        }
    }
}
