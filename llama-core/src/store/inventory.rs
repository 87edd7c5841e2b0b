//! What the cache holds, read without the network: finding the file a reference names
//! ([`find_cached`]) and listing every stored model ([`list_models`]). Files that llama.cpp,
//! huggingface-cli or LlamaBarn downloaded are found the same way: the layout is shared.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use super::cache_dir::CacheDir;
use super::error::StoreError;
use super::quant::{self, GgufName};
use super::reference::{FileSelector, RepoId};
use super::snapshot::{self, blob_of, read_ref, snapshot_commits, snapshot_files};

/// A model on disk: its files in split order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalModel {
    /// The repository it came from (`None` for a plain URL).
    pub repo: Option<RepoId>,
    /// The commit of its snapshot.
    pub commit: Option<String>,
    /// The files to open, in split order (snapshot entries or URL downloads).
    pub files: Vec<PathBuf>,
}

impl LocalModel {
    /// The path to pass as `-m` (the first split part).
    pub fn path(&self) -> &Path {
        &self.files[0]
    }

    /// Marks the model used now (its blobs' access time, which `list` and huggingface_hub's
    /// `scan_cache_dir` read as "last used").
    pub fn touch(&self) {
        for file in &self.files {
            let times = std::fs::FileTimes::new().set_accessed(SystemTime::now());
            if let Ok(f) = std::fs::File::open(file) {
                let _ = f.set_times(times);
            }
        }
    }
}

/// The cached model `selector` names in `repo` at `revision`, if all its files are present.
pub fn find_cached(
    cache: &CacheDir,
    repo: &RepoId,
    revision: &str,
    selector: &FileSelector,
) -> Result<Option<LocalModel>, StoreError> {
    let Some(commit) = read_ref(cache, repo, revision) else {
        return Ok(None);
    };
    let dir = cache.snapshot_dir(repo, &commit);
    let files: Vec<String> = snapshot_files(&dir)
        .into_iter()
        .filter(|f| dir.join(f).exists())
        .collect();
    let chosen = match quant::choose(repo, &files, selector) {
        Ok(chosen) => chosen,
        Err(StoreError::IncompleteSplit { .. })
        | Err(StoreError::NoSuchQuant { .. })
        | Err(StoreError::FileNotFound { .. })
        | Err(StoreError::NoGguf { .. }) => return Ok(None),
        Err(other) => return Err(other),
    };
    Ok(Some(LocalModel {
        repo: Some(repo.clone()),
        commit: Some(commit),
        files: chosen.into_iter().map(|f| dir.join(f)).collect(),
    }))
}

/// One stored model, as `llama-cli list` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CachedModel {
    /// The reference that names it: `org/repo:TAG` (or `org/repo/path` without a tag).
    pub name: String,
    /// The repository.
    pub repo: String,
    /// The quantisation tag (empty when the file name has none).
    pub quant: String,
    /// The snapshot commit.
    pub commit: String,
    /// The first file's path in the repository.
    pub file: String,
    /// Bytes of all its files.
    pub size: u64,
    /// The path to open (the first split part's snapshot entry).
    pub path: PathBuf,
    /// Split parts present, and how many there should be.
    pub parts: (u32, u32),
    /// When it was last used (the latest access time of its blobs), seconds since the epoch.
    pub last_used: Option<u64>,
}

/// Every model of every repository in the cache, sorted by name.
pub fn list_models(cache: &CacheDir) -> Vec<CachedModel> {
    let mut out = Vec::new();
    let repos = std::fs::read_dir(cache.root())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| CacheDir::repo_of_folder_name(&e.file_name().to_string_lossy()));
    for repo in repos {
        for commit in snapshot_commits(cache, &repo) {
            let dir = cache.snapshot_dir(&repo, &commit);
            let files = snapshot_files(&dir);
            for head in quant::model_heads(&files) {
                let Some(name) = GgufName::parse(head) else {
                    continue;
                };
                let parts: Vec<&String> = files
                    .iter()
                    .filter(|f| {
                        GgufName::parse(f).is_some_and(|n| {
                            n.prefix == name.prefix && n.count == name.count && dir.join(f).exists()
                        })
                    })
                    .collect();
                let blobs: Vec<PathBuf> = parts.iter().map(|f| blob_of(&dir.join(f))).collect();
                let size = blobs
                    .iter()
                    .filter_map(|b| std::fs::metadata(b).ok())
                    .map(|m| m.len())
                    .sum();
                let last_used = blobs
                    .iter()
                    .filter_map(|b| std::fs::metadata(b).ok()?.accessed().ok())
                    .filter_map(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    .max();
                let unique_tag = files
                    .iter()
                    .filter_map(|f| GgufName::parse(f))
                    .filter(|n| n.is_model() && n.part == 1 && n.tag == name.tag)
                    .count()
                    == 1;
                let reference = if !name.tag.is_empty() && unique_tag {
                    format!("{repo}:{}", name.tag)
                } else {
                    format!("{repo}/{head}")
                };
                out.push(CachedModel {
                    name: reference,
                    repo: repo.to_string(),
                    quant: name.tag.clone(),
                    commit: commit.clone(),
                    file: head.clone(),
                    size,
                    path: dir.join(head),
                    parts: (parts.len() as u32, name.count),
                    last_used,
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.commit.cmp(&b.commit)));
    out
}

/// The blob of every entry of every snapshot of `repo`.
pub fn referenced_blobs(cache: &CacheDir, repo: &RepoId) -> Vec<PathBuf> {
    snapshot_commits(cache, repo)
        .into_iter()
        .flat_map(|commit| {
            let dir = cache.snapshot_dir(repo, &commit);
            snapshot_files(&dir)
                .into_iter()
                .map(move |f| snapshot::normalize(&blob_of(&dir.join(f))))
        })
        .collect()
}
