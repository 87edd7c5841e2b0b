//! llama-perplexity's KL-divergence base file (`--kl-divergence-base FILE`), read and written
//! in its own format so that files move between llama.cpp and llama-cli in both directions:
//!
//! ```text
//! "_logits_"                        8 bytes
//! n_ctx, n_vocab, n_chunk           i32 each, little-endian
//! tokens                            n_chunk * n_ctx i32 (the evaluated text, chunk by chunk)
//! per chunk, per scored position    encoded_row_len(n_vocab) u16 (see score::encode_row)
//! ```
//!
//! A chunk has `n_ctx - 1 - n_ctx / 2` scored positions. The writer builds the file under a
//! temporary name next to it and renames it into place when it is complete.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::score::encoded_row_len;
use crate::ffi::Token;

const MAGIC: &[u8; 8] = b"_logits_";

/// What a base file's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogitsHeader {
    /// Tokens per chunk.
    pub n_ctx: u32,
    /// The vocabulary size of the base model.
    pub n_vocab: u32,
    /// Chunks in the file.
    pub n_chunk: u32,
    /// The evaluated tokens, `n_chunk * n_ctx` of them.
    pub tokens: Vec<Token>,
}

impl LogitsHeader {
    /// Scored positions per chunk.
    pub fn rows_per_chunk(&self) -> usize {
        scored_per_chunk(self.n_ctx)
    }
}

/// Positions scored in a chunk of `n_ctx` tokens: from the middle to the second-to-last.
pub fn scored_per_chunk(n_ctx: u32) -> usize {
    (n_ctx as usize).saturating_sub(1 + n_ctx as usize / 2)
}

/// Why a base file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogitsFileError {
    /// The file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a base file, or it is truncated or inconsistent.
    #[error("{} is not a KL-divergence base file from llama-perplexity or llama-cli perplexity: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> LogitsFileError + '_ {
    move |source| LogitsFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a base file row by row.
pub struct LogitsReader {
    path: PathBuf,
    input: BufReader<std::fs::File>,
    row_len: usize,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for LogitsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogitsReader")
            .field("path", &self.path)
            .finish()
    }
}

fn read_i32(input: &mut impl Read) -> std::io::Result<i32> {
    let mut b = [0u8; 4];
    input.read_exact(&mut b)?;
    Ok(i32::from_le_bytes(b))
}

impl LogitsReader {
    /// Opens `path` and reads its header, checking that the file is as long as it says.
    pub fn open(path: &Path) -> Result<(LogitsReader, LogitsHeader), LogitsFileError> {
        let io = io_error(path);
        let invalid = |message: String| LogitsFileError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file = std::fs::File::open(path).map_err(&io)?;
        let len = file.metadata().map_err(&io)?.len();
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut magic = [0u8; 8];
        input
            .read_exact(&mut magic)
            .map_err(|_| invalid("it is too short".into()))?;
        if &magic != MAGIC {
            return Err(invalid("it does not start with \"_logits_\"".into()));
        }
        let mut field = |name: &str| -> Result<u32, LogitsFileError> {
            let v = read_i32(&mut input).map_err(|_| invalid(format!("it ends before {name}")))?;
            u32::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| invalid(format!("{name} is {v}")))
        };
        let n_ctx = field("n_ctx")?;
        let n_vocab = field("n_vocab")?;
        let n_chunk = field("n_chunk")?;
        let row_len = encoded_row_len(n_vocab as usize);
        let n_tokens = u64::from(n_ctx) * u64::from(n_chunk);
        let rows = u64::from(n_chunk) * scored_per_chunk(n_ctx) as u64;
        let expected = 20 + n_tokens * 4 + rows * row_len as u64 * 2;
        if len != expected {
            return Err(invalid(format!(
                "{len} bytes where its header (n_ctx {n_ctx}, n_vocab {n_vocab}, {n_chunk} chunks) means {expected}"
            )));
        }
        let mut raw = vec![0u8; n_tokens as usize * 4];
        input.read_exact(&mut raw).map_err(&io)?;
        let tokens = raw
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect::<Vec<_>>();
        if let Some(bad) = tokens.iter().find(|&&t| t < 0 || t as u32 >= n_vocab) {
            return Err(invalid(format!(
                "token {bad} is outside its vocabulary of {n_vocab}"
            )));
        }
        Ok((
            LogitsReader {
                path: path.to_path_buf(),
                input,
                row_len,
                bytes: vec![0u8; row_len * 2],
            },
            LogitsHeader {
                n_ctx,
                n_vocab,
                n_chunk,
                tokens,
            },
        ))
    }

    /// Reads the next encoded row into `row` ([`encoded_row_len`] entries).
    pub fn next_row(&mut self, row: &mut [u16]) -> Result<(), LogitsFileError> {
        self.input
            .read_exact(&mut self.bytes)
            .map_err(io_error(&self.path))?;
        for (v, b) in row.iter_mut().zip(self.bytes.chunks_exact(2)) {
            *v = u16::from_le_bytes([b[0], b[1]]);
        }
        Ok(())
    }

    /// Entries per row.
    pub fn row_len(&self) -> usize {
        self.row_len
    }
}

/// Writes a base file; it appears at its path only when [`finish`](Self::finish) succeeds.
pub struct LogitsWriter {
    path: PathBuf,
    output: BufWriter<tempfile::NamedTempFile>,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for LogitsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogitsWriter")
            .field("path", &self.path)
            .finish()
    }
}

impl LogitsWriter {
    /// Starts a base file at `path` for `tokens` (`n_chunk * n_ctx` of them).
    pub fn create(
        path: &Path,
        n_ctx: u32,
        n_vocab: u32,
        n_chunk: u32,
        tokens: &[Token],
    ) -> Result<LogitsWriter, LogitsFileError> {
        let io = io_error(path);
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".logits.")
            .suffix(".partial")
            .tempfile_in(&dir)
            .map_err(&io)?;
        let mut output = BufWriter::with_capacity(1 << 20, temp);
        let n_tokens = n_ctx as usize * n_chunk as usize;
        let mut header = Vec::with_capacity(20 + n_tokens * 4);
        header.extend_from_slice(MAGIC);
        for v in [n_ctx, n_vocab, n_chunk] {
            header.extend_from_slice(&(v as i32).to_le_bytes());
        }
        for t in &tokens[..n_tokens.min(tokens.len())] {
            header.extend_from_slice(&t.to_le_bytes());
        }
        output.write_all(&header).map_err(&io)?;
        Ok(LogitsWriter {
            path: path.to_path_buf(),
            output,
            bytes: Vec::new(),
        })
    }

    /// Appends one encoded row.
    pub fn write_row(&mut self, row: &[u16]) -> Result<(), LogitsFileError> {
        self.bytes.clear();
        self.bytes.extend(row.iter().flat_map(|v| v.to_le_bytes()));
        self.output
            .write_all(&self.bytes)
            .map_err(io_error(&self.path))
    }

    /// Flushes and syncs the file and renames it into place (replacing an older one).
    pub fn finish(self) -> Result<PathBuf, LogitsFileError> {
        let path = self.path;
        let io = io_error(&path);
        let temp = self.output.into_inner().map_err(|e| io(e.into_error()))?;
        temp.as_file().sync_all().map_err(&io)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o644))
                .map_err(&io)?;
        }
        temp.persist(&path).map_err(|e| io(e.error))?;
        Ok(path.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_reads_back_and_a_cut_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.kld");
        let (n_ctx, n_vocab, n_chunk) = (8u32, 5u32, 2u32);
        let tokens: Vec<Token> = (0..16).map(|i| i % 5).collect();
        let mut w = LogitsWriter::create(&path, n_ctx, n_vocab, n_chunk, &tokens).unwrap();
        let row_len = encoded_row_len(5);
        let rows = scored_per_chunk(n_ctx) * 2;
        assert_eq!(scored_per_chunk(n_ctx), 3);
        for r in 0..rows {
            let row: Vec<u16> = (0..row_len).map(|i| (r * 10 + i) as u16).collect();
            w.write_row(&row).unwrap();
        }
        assert!(!path.exists(), "appears only when finished");
        w.finish().unwrap();
        let (mut r, header) = LogitsReader::open(&path).unwrap();
        assert_eq!((header.n_ctx, header.n_vocab, header.n_chunk), (8, 5, 2));
        assert_eq!(header.tokens, tokens);
        let mut row = vec![0u16; row_len];
        r.next_row(&mut row).unwrap();
        r.next_row(&mut row).unwrap();
        assert_eq!(row[0], 10);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        assert!(LogitsReader::open(&path).is_err());
        std::fs::write(&path, b"GGUF").unwrap();
        assert!(LogitsReader::open(&path).is_err());
    }
}
