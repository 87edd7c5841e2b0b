//! Models fetched from a plain `http(s)://` URL (not a Hub repository). They are kept apart
//! from the hub cache, at `{url cache}/{host}/{path}`, with a `{file}.json` record of the URL,
//! size and sha256; a split model's other parts (`-00002-of-00003.gguf`, ...) are fetched from
//! the same folder URL. The download is resumable and locked like a Hub file's; the sha256 is
//! checked when the server publishes one (`X-Linked-Etag`), else recorded.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::ExpectedDigest;
use super::download::{download, DownloadJob};
use super::error::StoreError;
use super::http::{display_url, Method};
use super::hub::{normalize_etag, HubClient};
use super::inventory::LocalModel;
use super::lock::FileLock;
use super::progress::Progress;
use super::quant::GgufName;

/// The record kept next to a URL download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlRecord {
    /// Where it came from.
    pub url: String,
    /// Its size.
    pub size: u64,
    /// Its sha256.
    pub sha256: String,
}

/// Where the file of `url` is kept under `root`.
pub fn local_path(root: &Path, url: &str) -> Result<PathBuf, StoreError> {
    let invalid = |reason| StoreError::InvalidReference {
        input: url.to_string(),
        reason,
    };
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| invalid("not an http(s) URL"))?;
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (host, path) = rest
        .split_once('/')
        .ok_or_else(|| invalid("the URL names no file"))?;
    let safe = |c: &str| {
        !c.is_empty()
            && c != "."
            && c != ".."
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.+~@=,".contains(ch))
    };
    let host = host.replace(':', "_");
    let parts: Vec<&str> = path.split('/').collect();
    if !safe(&host) || parts.iter().any(|p| !safe(p)) {
        return Err(invalid(
            "the URL's host and path may hold only letters, digits and -_.+~@=,",
        ));
    }
    Ok(parts.iter().fold(root.join(host), |p, c| p.join(c)))
}

/// The URLs of every part of the model at `url` (itself unless it is part 1 of a split).
pub fn part_urls(url: &str) -> Vec<String> {
    let base = url.split(['?', '#']).next().unwrap_or(url);
    match GgufName::parse(base) {
        Some(name) if name.count > 1 && name.part == 1 => (1..=name.count)
            .map(|i| format!("{}-{i:05}-of-{:05}.gguf", name.prefix, name.count))
            .collect(),
        _ => vec![url.to_string()],
    }
}

fn record_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    file.with_file_name(name)
}

/// The model at `url` if it is already downloaded.
pub fn find_cached(root: &Path, url: &str) -> Result<Option<LocalModel>, StoreError> {
    let mut files = Vec::new();
    for part in part_urls(url) {
        let path = local_path(root, &part)?;
        if !path.is_file() || !record_path(&path).is_file() {
            return Ok(None);
        }
        files.push(path);
    }
    Ok(Some(LocalModel {
        repo: None,
        commit: None,
        files,
    }))
}

/// Downloads every part of the model at `url` that is not there yet.
pub fn pull(
    client: &HubClient,
    root: &Path,
    url: &str,
    progress: &mut dyn Progress,
) -> Result<(LocalModel, u64), StoreError> {
    let mut files = Vec::new();
    let mut fetched = 0;
    for part in part_urls(url) {
        let path = local_path(root, &part)?;
        let label = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lock_path = path.with_file_name(format!("{label}.lock"));
        let _lock = FileLock::acquire(&lock_path, || progress.waiting(&label))?;
        if !(path.is_file() && record_path(&path).is_file()) {
            let head = client
                .http()
                .send_following(Method::Head, &part, &[], |_, _| true)?;
            if head.status() >= 400 {
                return Err(StoreError::Http {
                    url: display_url(&part),
                    status: head.status(),
                    detail: None,
                });
            }
            let size = head
                .header("x-linked-size")
                .or_else(|| head.header("content-length"))
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| StoreError::Protocol {
                    url: display_url(&part),
                    message: "no Content-Length: the size is unknown".to_string(),
                })?;
            let digest = head
                .header("x-linked-etag")
                .map(normalize_etag)
                .filter(|e| e.len() == 64 && e.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(|e| ExpectedDigest::Sha256(e.to_ascii_lowercase()))
                .unwrap_or(ExpectedDigest::Unknown);
            let partial = path.with_file_name(format!("{label}.incomplete"));
            if let Some(dir) = path.parent() {
                super::disk::ensure_free(dir, size)?;
            }
            let done = download(
                client,
                &DownloadJob {
                    label: &label,
                    url: &part,
                    size,
                    digest: &digest,
                    partial: &partial,
                    destination: &path,
                },
                progress,
            )?;
            fetched += done.fetched;
            let record = UrlRecord {
                url: part.clone(),
                size,
                sha256: done.digest,
            };
            let text = serde_json::to_string_pretty(&record).unwrap_or_default();
            super::snapshot::write_atomic(&record_path(&path), text.as_bytes())?;
        }
        files.push(path);
    }
    Ok((
        LocalModel {
            repo: None,
            commit: None,
            files,
        },
        fetched,
    ))
}

/// Deletes the downloaded parts of `url` and their records; returns the bytes freed.
pub fn remove(root: &Path, url: &str) -> Result<Vec<(PathBuf, u64)>, StoreError> {
    let mut removed = Vec::new();
    for part in part_urls(url) {
        let path = local_path(root, &part)?;
        for file in [
            record_path(&path),
            path.with_extension("gguf.incomplete"),
            path,
        ] {
            if let Ok(meta) = std::fs::metadata(&file) {
                std::fs::remove_file(&file).map_err(StoreError::io("cannot remove", &file))?;
                removed.push((file, meta.len()));
            }
        }
    }
    Ok(removed)
}

/// Every URL download under `root`: `(record, path)`.
pub fn list(root: &Path) -> Vec<(UrlRecord, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let file = path.with_extension("");
                let record = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str::<UrlRecord>(&t).ok());
                if let (Some(record), true) = (record, file.is_file()) {
                    out.push((record, file));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.url.cmp(&b.0.url));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths_stay_under_the_root() {
        let root = Path::new("/c");
        assert_eq!(
            local_path(root, "https://example.org:8080/m/x.Q4_0.gguf?dl=1").unwrap(),
            Path::new("/c/example.org_8080/m/x.Q4_0.gguf")
        );
        assert!(local_path(root, "https://example.org/../x.gguf").is_err());
        assert!(local_path(root, "https://example.org").is_err());
    }

    #[test]
    fn split_urls_name_every_part() {
        assert_eq!(
            part_urls("http://h/m-00001-of-00002.gguf"),
            [
                "http://h/m-00001-of-00002.gguf",
                "http://h/m-00002-of-00002.gguf"
            ]
        );
        assert_eq!(part_urls("http://h/m.gguf"), ["http://h/m.gguf"]);
    }
}
