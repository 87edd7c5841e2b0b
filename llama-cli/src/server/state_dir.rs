//! The engine's state directory, where it saves sessions evicted from the KV cache: the one
//! `--state-dir` names, or by default a private directory that lives as long as the server.
//!
//! The default is made by `tempfile` in the temporary directory (`$TMPDIR`, else `/tmp`): a
//! random name (`llama-rs-serve-XXXXXX`), created atomically with mode 0700, so no other user
//! can predict, pre-create, read or replace it, and removed when the server exits. A server
//! that is killed leaves its directory behind for the system's temporary-file cleaning; no
//! server deletes another's. (`$XDG_RUNTIME_DIR` is not used: it is a small tmpfs, i.e. RAM,
//! and evicted sessions can be large.)

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::ServeError;

/// The prefix of the default directory's name.
pub const PREFIX: &str = "llama-rs-serve-";

/// Where the engine keeps its saved sessions.
#[derive(Debug)]
pub enum StateDir {
    /// The directory `--state-dir` names (created if missing, kept at exit).
    Given(PathBuf),
    /// A private temporary directory, removed when dropped.
    Private(tempfile::TempDir),
}

impl StateDir {
    /// The directory `--state-dir` names, or a new private one in the temporary directory.
    pub fn prepare(given: Option<&Path>) -> Result<StateDir, ServeError> {
        match given {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| ServeError::StateDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
                Ok(StateDir::Given(dir.to_path_buf()))
            }
            None => Self::private_in(&std::env::temp_dir()),
        }
    }

    /// A new private directory (mode 0700, random name) in `parent`.
    pub fn private_in(parent: &Path) -> Result<StateDir, ServeError> {
        tempfile::Builder::new()
            .prefix(PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .map(StateDir::Private)
            .map_err(|source| ServeError::StateDir {
                path: parent.join(format!("{PREFIX}XXXXXX")),
                source,
            })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        match self {
            StateDir::Given(dir) => dir,
            StateDir::Private(dir) => dir.path(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_private_unique_and_removed_when_dropped() {
        let parent = tempfile::tempdir().unwrap();
        // What the old scheme would have called a dead server's directory: left alone.
        let other = parent.path().join(format!("{PREFIX}999999999"));
        std::fs::create_dir(&other).unwrap();
        let a = StateDir::private_in(parent.path()).unwrap();
        let b = StateDir::private_in(parent.path()).unwrap();
        assert_ne!(a.path(), b.path());
        for dir in [&a, &b] {
            let name = dir.path().file_name().unwrap().to_str().unwrap();
            assert!(name.starts_with(PREFIX), "{name}");
            let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}: {mode:o}", dir.path().display());
        }
        let path = a.path().to_path_buf();
        std::fs::write(path.join("session.bin"), b"x").unwrap();
        drop(a);
        assert!(!path.exists(), "{} not removed", path.display());
        assert!(b.path().is_dir());
        assert!(other.is_dir(), "another directory was removed");
    }

    #[test]
    fn a_given_directory_is_created_and_kept() {
        let parent = tempfile::tempdir().unwrap();
        let given = parent.path().join("a/b");
        let dir = StateDir::prepare(Some(&given)).unwrap();
        assert_eq!(dir.path(), given);
        drop(dir);
        assert!(given.is_dir());
        let file = parent.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = StateDir::prepare(Some(&file.join("x"))).unwrap_err();
        assert!(err.to_string().contains("state directory"), "{err}");
    }

    #[test]
    fn an_unusable_temporary_directory_is_a_clear_error() {
        let err = StateDir::private_in(Path::new("/nonexistent/llama-rs")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/llama-rs"), "{text}");
    }
}
