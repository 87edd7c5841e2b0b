//! Advisory file locks (`flock`), at huggingface_hub's lock paths
//! (`{cache}/.locks/models--org--name/{etag}.lock`), so that two pulls of the same blob, ours
//! or huggingface_hub's, do not both download it: the second waits, then finds the blob there.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use super::error::StoreError;

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

fn open(path: &Path) -> Result<File, StoreError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(StoreError::io("cannot create", dir))?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(StoreError::io("cannot open lock file", path))
}

impl FileLock {
    /// Takes the lock at `path`, waiting for another holder to release it; `on_wait` runs once
    /// before waiting.
    pub fn acquire(path: &Path, on_wait: impl FnOnce()) -> Result<FileLock, StoreError> {
        let file = open(path)?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            on_wait();
            flock(&file, FlockOperation::LockExclusive)
                .map_err(|e| StoreError::io("cannot lock", path)(e.into()))?;
        }
        Ok(FileLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// Takes the lock at `path` if nobody holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>, StoreError> {
        let file = open(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(FileLock {
                _file: file,
                path: path.to_path_buf(),
            })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(StoreError::io("cannot lock", path)(e.into())),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_excludes_others_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.lock");
        let held = FileLock::acquire(&path, || panic!("nobody holds it")).unwrap();
        assert!(FileLock::try_acquire(&path).unwrap().is_none());
        drop(held);
        assert!(FileLock::try_acquire(&path).unwrap().is_some());
    }
}
