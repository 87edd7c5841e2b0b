//! A remote model without its weights: the GGUF header and tensor table of each file, fetched
//! with ranged requests (a growing prefix until the reader has the whole table), written at the
//! start of a sparse file of the file's full size. llama.cpp's no-alloc dry run reads only
//! those bytes and checks the file is as long as its tensor data says, so a model planned on
//! the sparse copy plans exactly as the real one.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::error::StoreError;
use super::hub::{FileLocation, HubClient};
use crate::gguf::{GgufError, GgufFile};

/// The first request's size; each further one asks for four times more.
pub const FIRST_HEADER_FETCH: u64 = 64 << 10;

/// The first bytes of a remote file, enough to hold its GGUF header.
#[derive(Debug, Clone)]
pub struct RemoteHeader {
    /// The bytes, from offset 0.
    pub bytes: Vec<u8>,
    /// The parsed header.
    pub file: GgufFile,
    /// Bytes received over the network to get it (all requests).
    pub fetched: u64,
}

/// Fetches the GGUF header of the file at `location`.
pub fn fetch_header(
    client: &HubClient,
    label: &str,
    location: &FileLocation,
) -> Result<RemoteHeader, StoreError> {
    let mut want = FIRST_HEADER_FETCH.min(location.size);
    let mut fetched = 0;
    loop {
        let bytes = fetch_prefix(client, &location.url, want)?;
        fetched += bytes.len() as u64;
        match GgufFile::parse_prefix(&bytes, location.size) {
            Ok(file) => {
                return Ok(RemoteHeader {
                    bytes,
                    file,
                    fetched,
                })
            }
            Err(GgufError::Truncated { .. }) if want < location.size => {
                want = want.saturating_mul(4).min(location.size);
            }
            Err(source) => {
                return Err(StoreError::BadHeader {
                    file: label.to_string(),
                    source,
                })
            }
        }
    }
}

/// The first `n` bytes at `url` (`Range: bytes=0-{n-1}`; a server that ignores the range is
/// read only that far).
fn fetch_prefix(client: &HubClient, url: &str, n: u64) -> Result<Vec<u8>, StoreError> {
    let answer = client.get(url, Some((0, Some(n.saturating_sub(1)))))?;
    let status = answer.status();
    if status != 200 && status != 206 {
        return Err(StoreError::Http {
            url: super::http::display_url(&answer.url),
            status,
            detail: None,
        });
    }
    let display = super::http::display_url(&answer.url);
    let mut bytes = Vec::with_capacity(n as usize);
    answer
        .response
        .into_body()
        .into_reader()
        .take(n)
        .read_to_end(&mut bytes)
        .map_err(|err| StoreError::Network {
            url: display,
            message: err.to_string(),
        })?;
    Ok(bytes)
}

/// Sparse copies of a model's files (header bytes, the rest a hole) in a temporary folder,
/// under their own file names so a split model's parts find each other.
#[derive(Debug)]
pub struct SparseModel {
    dir: tempfile::TempDir,
    files: Vec<PathBuf>,
}

impl SparseModel {
    /// Writes one sparse file per `(file name, header, full size)`.
    pub fn write(parts: &[(&str, &RemoteHeader, u64)]) -> Result<SparseModel, StoreError> {
        let dir = tempfile::Builder::new()
            .prefix("llama-rs-fit-")
            .tempdir()
            .map_err(StoreError::io(
                "cannot create a temporary folder in",
                std::env::temp_dir(),
            ))?;
        let mut files = Vec::new();
        for (name, header, size) in parts {
            let base = name.rsplit('/').next().unwrap_or(name);
            let path = dir.path().join(base);
            let mut file = File::create(&path).map_err(StoreError::io("cannot create", &path))?;
            file.set_len(*size)
                .and_then(|_| file.write_all(&header.bytes))
                .map_err(StoreError::io("cannot write", &path))?;
            files.push(path);
        }
        Ok(SparseModel { dir, files })
    }

    /// The first file (what `-m` would name).
    pub fn path(&self) -> &Path {
        &self.files[0]
    }

    /// The folder holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
