//! Free disk space, checked before a download starts (`statvfs`).

use std::path::Path;

use super::error::StoreError;

/// Bytes an unprivileged process may still write on the file system holding `path` (or its
/// nearest existing ancestor).
pub fn free_bytes(path: &Path) -> Result<u64, StoreError> {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or_else(|| Path::new("/"));
    let stat = rustix::fs::statvfs(existing)
        .map_err(|e| StoreError::io("cannot read the free space of", existing)(e.into()))?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Fails with [`StoreError::NoSpace`] unless `needed` bytes are free where `path` is.
pub fn ensure_free(path: &Path, needed: u64) -> Result<(), StoreError> {
    let available = free_bytes(path)?;
    if needed > available {
        return Err(StoreError::NoSpace {
            path: path.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(&dir.path().join("not/yet/there")).unwrap();
        assert!(free > 0);
        assert!(ensure_free(dir.path(), 1).is_ok());
        let err = ensure_free(dir.path(), u64::MAX).unwrap_err();
        assert!(matches!(err, StoreError::NoSpace { .. }), "{err}");
    }
}
