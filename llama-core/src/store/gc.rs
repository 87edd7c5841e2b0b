//! `rm`: removes snapshot entries, then garbage-collects the repository's blobs that no
//! snapshot entry references any more (and partial downloads nobody is writing). A repository
//! left with no entry is removed whole (refs and locks too). Blobs being downloaded (their lock
//! held) are left alone.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::cache_dir::CacheDir;
use super::error::StoreError;
use super::inventory::referenced_blobs;
use super::lock::FileLock;
use super::quant::{self, GgufName};
use super::reference::{FileSelector, RepoId};
use super::snapshot::{snapshot_commits, snapshot_files};

/// What `rm` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RemoveReport {
    /// Snapshot entries removed.
    pub links: Vec<PathBuf>,
    /// Blobs deleted.
    pub blobs: Vec<PathBuf>,
    /// Bytes those blobs held.
    pub bytes_freed: u64,
    /// Whether the whole repository folder was removed.
    pub repo_removed: bool,
}

/// Removes what `selector` names from `repo` (every model of it for [`FileSelector::Default`])
/// in every snapshot, then collects the blobs left unreferenced.
pub fn remove(
    cache: &CacheDir,
    repo: &RepoId,
    selector: &FileSelector,
) -> Result<RemoveReport, StoreError> {
    let mut report = RemoveReport::default();
    for commit in snapshot_commits(cache, repo) {
        let dir = cache.snapshot_dir(repo, &commit);
        let files = snapshot_files(&dir);
        let doomed: Vec<String> = match selector {
            FileSelector::Default => files.clone(),
            FileSelector::File(path) => match quant::choose(repo, &files, selector) {
                Ok(parts) => parts.into_iter().cloned().collect(),
                Err(_) => files.iter().filter(|f| *f == path).cloned().collect(),
            },
            FileSelector::Quant(tag) => files
                .iter()
                .filter(|f| {
                    GgufName::parse(f)
                        .is_some_and(|n| n.is_model() && n.tag.eq_ignore_ascii_case(tag))
                })
                .cloned()
                .collect(),
        };
        for file in doomed {
            let entry = dir.join(&file);
            std::fs::remove_file(&entry).map_err(StoreError::io("cannot remove", &entry))?;
            remove_empty_parents(&entry, &dir);
            report.links.push(entry);
        }
        if std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
        {
            let _ = std::fs::remove_dir(&dir);
        }
    }
    if report.links.is_empty() {
        return Ok(report);
    }
    collect_garbage(cache, repo, &mut report)?;
    Ok(report)
}

/// Deletes the blobs of `repo` no snapshot entry references; removes the repository when
/// nothing of it is left.
fn collect_garbage(
    cache: &CacheDir,
    repo: &RepoId,
    report: &mut RemoveReport,
) -> Result<(), StoreError> {
    let referenced: HashSet<PathBuf> = referenced_blobs(cache, repo).into_iter().collect();
    let blobs_dir = cache.blobs_dir(repo);
    let mut busy = false;
    for entry in std::fs::read_dir(&blobs_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        if referenced.contains(&path) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let etag = name.strip_suffix(".incomplete").unwrap_or(&name);
        let etag = etag.split('.').next().unwrap_or(etag);
        let Some(_lock) = FileLock::try_acquire(&cache.lock_path(repo, etag))? else {
            busy = true;
            continue;
        };
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        std::fs::remove_file(&path).map_err(StoreError::io("cannot remove", &path))?;
        report.bytes_freed += size;
        report.blobs.push(path);
    }
    if referenced.is_empty() && !busy {
        let dir = cache.repo_dir(repo);
        std::fs::remove_dir_all(&dir).map_err(StoreError::io("cannot remove", &dir))?;
        let _ = std::fs::remove_dir_all(cache.repo_locks_dir(repo));
        report.repo_removed = true;
    }
    Ok(())
}

/// Removes the folders between `entry` and `root` that became empty.
fn remove_empty_parents(entry: &Path, root: &Path) {
    let mut dir = entry.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::snapshot::link;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn cache_with(files: &[(&str, &str)]) -> (tempfile::TempDir, CacheDir, RepoId) {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheDir::new(dir.path());
        let repo = RepoId::parse("a/b").unwrap();
        std::fs::create_dir_all(cache.blobs_dir(&repo)).unwrap();
        for (path, etag) in files {
            std::fs::write(cache.blob_path(&repo, etag), etag.as_bytes()).unwrap();
            link(&cache, &repo, COMMIT, path, etag).unwrap();
        }
        (dir, cache, repo)
    }

    #[test]
    fn removing_a_quant_collects_only_its_unshared_blobs() {
        let (_dir, cache, repo) = cache_with(&[
            ("m-Q4_0.gguf", "b4"),
            ("m-Q8_0.gguf", "b8"),
            ("copy-Q8_0/x.gguf", "b4"),
        ]);
        std::fs::write(cache.incomplete_path(&repo, "old"), b"partial").unwrap();
        let report = remove(&cache, &repo, &FileSelector::Quant("Q4_0".into())).unwrap();
        assert_eq!(report.links.len(), 1);
        // b4 is still referenced by the copy; the stale partial download is collected.
        assert!(cache.blob_path(&repo, "b4").exists());
        assert!(!cache.incomplete_path(&repo, "old").exists());
        assert_eq!(report.blobs, vec![cache.incomplete_path(&repo, "old")]);
        assert!(!report.repo_removed);
    }

    #[test]
    fn removing_the_last_model_removes_the_repository() {
        let (_dir, cache, repo) = cache_with(&[("m-Q4_0.gguf", "b4")]);
        let report = remove(&cache, &repo, &FileSelector::Quant("q4_0".into())).unwrap();
        assert_eq!(report.bytes_freed, 2);
        assert!(report.repo_removed);
        assert!(!cache.repo_dir(&repo).exists());
    }

    #[test]
    fn a_blob_being_downloaded_is_left_alone() {
        let (_dir, cache, repo) = cache_with(&[("m-Q4_0.gguf", "b4")]);
        std::fs::write(cache.incomplete_path(&repo, "new"), b"partial").unwrap();
        let _held = FileLock::acquire(&cache.lock_path(&repo, "new"), || {}).unwrap();
        let report = remove(&cache, &repo, &FileSelector::Default).unwrap();
        assert!(cache.incomplete_path(&repo, "new").exists());
        assert!(!cache.blob_path(&repo, "b4").exists());
        assert!(!report.repo_removed);
    }
}
