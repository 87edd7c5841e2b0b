//! Reading and writing a repository's `refs/` and `snapshots/`: a ref file holds a commit; a
//! snapshot entry is a relative symlink to its blob (`../../blobs/{etag}`, one more `../` per
//! sub-folder). Writes go to a temporary name first and are renamed over the old one, so a
//! reader (or a running server that mapped the old file) never sees a half-written entry.

use std::path::{Component, Path, PathBuf};

use super::cache_dir::CacheDir;
use super::error::StoreError;
use super::reference::RepoId;

/// Whether `text` is a 40-hex commit id.
pub fn is_commit(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Writes `contents` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(StoreError::io("cannot create", dir))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(StoreError::io("cannot write in", dir))?;
    std::io::Write::write_all(&mut tmp, contents).map_err(StoreError::io("cannot write", path))?;
    tmp.persist(path)
        .map_err(|e| StoreError::io("cannot write", path)(e.error))?;
    Ok(())
}

/// Records that `revision` points to `commit`.
pub fn write_ref(
    cache: &CacheDir,
    repo: &RepoId,
    revision: &str,
    commit: &str,
) -> Result<(), StoreError> {
    if is_commit(revision) {
        return Ok(());
    }
    write_atomic(&cache.ref_path(repo, revision), commit.as_bytes())
}

/// The commit `revision` pointed to when last fetched (a commit id is itself). For `main`,
/// falls back as llama.cpp does: another ref, then the only snapshot.
pub fn read_ref(cache: &CacheDir, repo: &RepoId, revision: &str) -> Option<String> {
    if is_commit(revision) {
        return Some(revision.to_ascii_lowercase());
    }
    let read = |path: &Path| {
        let text = std::fs::read_to_string(path).ok()?;
        let commit = text.lines().next()?.trim().to_string();
        is_commit(&commit).then_some(commit)
    };
    if let Some(commit) = read(&cache.ref_path(repo, revision)) {
        return Some(commit);
    }
    if revision != "main" {
        return None;
    }
    let refs = cache.repo_dir(repo).join("refs");
    let mut others: Vec<PathBuf> = std::fs::read_dir(&refs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    others.sort();
    if let Some(commit) = others.iter().find_map(|p| read(p)) {
        return Some(commit);
    }
    let snapshots: Vec<String> = std::fs::read_dir(cache.repo_dir(repo).join("snapshots"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_commit(n))
        .collect();
    match snapshots.as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    }
}

/// The symlink target of snapshot entry `path` pointing to blob `etag`.
fn link_target(path: &str, etag: &str) -> PathBuf {
    let depth = path.split('/').count() - 1;
    let mut target = PathBuf::from("../..");
    for _ in 0..depth {
        target.push("..");
    }
    target.join("blobs").join(etag)
}

/// Points `snapshots/{commit}/{path}` at blob `etag`, replacing what was there atomically.
pub fn link(
    cache: &CacheDir,
    repo: &RepoId,
    commit: &str,
    path: &str,
    etag: &str,
) -> Result<PathBuf, StoreError> {
    let entry = cache.snapshot_dir(repo, commit).join(path);
    let dir = entry.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(StoreError::io("cannot create", dir))?;
    let target = link_target(path, etag);
    if std::fs::read_link(&entry).ok().as_deref() == Some(target.as_path()) {
        return Ok(entry);
    }
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        entry.file_name().and_then(|n| n.to_str()).unwrap_or("link"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp).map_err(StoreError::io("cannot link", &tmp))?;
    std::fs::rename(&tmp, &entry).map_err(StoreError::io("cannot link", &entry))?;
    Ok(entry)
}

/// Every entry of a snapshot, as paths relative to it (`/`-separated), sorted.
pub fn snapshot_files(snapshot: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![snapshot.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() || kind.is_symlink() {
                let name = entry.file_name();
                if name.to_string_lossy().starts_with('.') {
                    continue;
                }
                if let Ok(rel) = path.strip_prefix(snapshot) {
                    let parts: Vec<String> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    out.push(parts.join("/"));
                }
            }
        }
    }
    out.sort();
    out
}

/// The blob a snapshot entry points to (the entry itself when it is a regular file, as in a
/// cache written without symlinks), without resolving further links.
pub fn blob_of(entry: &Path) -> PathBuf {
    match std::fs::read_link(entry) {
        Ok(target) if target.is_absolute() => normalize(&target),
        Ok(target) => normalize(&entry.parent().unwrap_or(Path::new(".")).join(target)),
        Err(_) => entry.to_path_buf(),
    }
}

/// `path` with `.` and `..` components folded (lexically).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The commits that have a snapshot folder.
pub fn snapshot_commits(cache: &CacheDir, repo: &RepoId) -> Vec<String> {
    let mut commits: Vec<String> = std::fs::read_dir(cache.repo_dir(repo).join("snapshots"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    commits.sort();
    commits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_and_resolve_to_their_blob() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheDir::new(dir.path());
        let repo = RepoId::parse("a/b").unwrap();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        std::fs::create_dir_all(cache.blobs_dir(&repo)).unwrap();
        std::fs::write(cache.blob_path(&repo, "e1"), b"x").unwrap();
        let entry = link(&cache, &repo, commit, "sub/m.gguf", "e1").unwrap();
        assert_eq!(
            std::fs::read_link(&entry).unwrap(),
            Path::new("../../../blobs/e1")
        );
        assert_eq!(std::fs::read(&entry).unwrap(), b"x");
        assert_eq!(blob_of(&entry), cache.blob_path(&repo, "e1"));
        link(&cache, &repo, commit, "sub/m.gguf", "e1").unwrap();
        assert_eq!(
            snapshot_files(&cache.snapshot_dir(&repo, commit)),
            ["sub/m.gguf"]
        );
        write_ref(&cache, &repo, "main", commit).unwrap();
        assert_eq!(read_ref(&cache, &repo, "main").as_deref(), Some(commit));
        assert_eq!(read_ref(&cache, &repo, "dev"), None);
    }
}
