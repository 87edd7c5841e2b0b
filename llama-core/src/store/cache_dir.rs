//! Where the cache is and how it is laid out: the Hugging Face hub cache, as huggingface_hub and
//! llama.cpp use it.
//!
//! ```text
//! {cache}/models--{org}--{name}/
//!     blobs/{etag}                      the files' bytes, named by sha256 (LFS) or git oid
//!     blobs/{etag}.incomplete           a download in progress (resumable)
//!     snapshots/{commit}/{path}         relative symlinks to ../../blobs/{etag}
//!     refs/{revision}                   the commit a branch pointed to when last fetched
//! {cache}/.locks/models--{org}--{name}/{etag}.lock
//! ```
//!
//! The cache directory is the first of these that is set (llama.cpp's order; huggingface_hub
//! reads the same variables except `LLAMA_CACHE`): `LLAMA_CACHE`, `HF_HUB_CACHE`,
//! `HUGGINGFACE_HUB_CACHE`, `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub`,
//! `$HOME/.cache/huggingface/hub`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::reference::RepoId;

/// The environment, as a lookup (so tests can pass their own).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The process environment, ignoring empty values.
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The root of a Hugging Face hub cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDir {
    root: PathBuf,
}

/// Which setting chose the cache directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CacheSource {
    /// `LLAMA_CACHE`.
    LlamaCache,
    /// `HF_HUB_CACHE`.
    HfHubCache,
    /// `HUGGINGFACE_HUB_CACHE` (huggingface_hub's older name).
    HuggingfaceHubCache,
    /// `$HF_HOME/hub`.
    HfHome,
    /// `$XDG_CACHE_HOME/huggingface/hub`.
    XdgCacheHome,
    /// `$HOME/.cache/huggingface/hub`.
    Home,
}

impl CacheSource {
    /// The variable's name as the user sets it.
    pub fn variable(self) -> &'static str {
        match self {
            CacheSource::LlamaCache => "LLAMA_CACHE",
            CacheSource::HfHubCache => "HF_HUB_CACHE",
            CacheSource::HuggingfaceHubCache => "HUGGINGFACE_HUB_CACHE",
            CacheSource::HfHome => "HF_HOME",
            CacheSource::XdgCacheHome => "XDG_CACHE_HOME",
            CacheSource::Home => "HOME",
        }
    }
}

impl CacheDir {
    /// A cache rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> CacheDir {
        CacheDir { root: root.into() }
    }

    /// The cache directory the environment chooses (see the module docs for the order), and
    /// which variable chose it; `None` when not even `HOME` is set.
    pub fn from_env(env: Env<'_>) -> Option<(CacheDir, CacheSource)> {
        let order: [(CacheSource, &[&str]); 6] = [
            (CacheSource::LlamaCache, &[]),
            (CacheSource::HfHubCache, &[]),
            (CacheSource::HuggingfaceHubCache, &[]),
            (CacheSource::HfHome, &["hub"]),
            (CacheSource::XdgCacheHome, &["huggingface", "hub"]),
            (CacheSource::Home, &[".cache", "huggingface", "hub"]),
        ];
        order.into_iter().find_map(|(source, tail)| {
            let base = PathBuf::from(env(source.variable())?);
            let root = tail.iter().fold(base, |path, part| path.join(part));
            Some((CacheDir::new(root), source))
        })
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `models--{org}--{name}`: the folder name of a repository.
    pub fn repo_folder_name(repo: &RepoId) -> String {
        format!("models--{}", repo.as_str().replace('/', "--"))
    }

    /// The repository id of a folder name, if it is one.
    pub fn repo_of_folder_name(name: &str) -> Option<RepoId> {
        let rest = name.strip_prefix("models--")?;
        RepoId::parse(&rest.replacen("--", "/", 1)).ok()
    }

    /// The repository's folder.
    pub fn repo_dir(&self, repo: &RepoId) -> PathBuf {
        self.root.join(CacheDir::repo_folder_name(repo))
    }

    /// Where the repository's file bytes live.
    pub fn blobs_dir(&self, repo: &RepoId) -> PathBuf {
        self.repo_dir(repo).join("blobs")
    }

    /// The blob of `etag`.
    pub fn blob_path(&self, repo: &RepoId, etag: &str) -> PathBuf {
        self.blobs_dir(repo).join(etag)
    }

    /// The partial download of the blob of `etag`.
    pub fn incomplete_path(&self, repo: &RepoId, etag: &str) -> PathBuf {
        self.blobs_dir(repo).join(format!("{etag}.incomplete"))
    }

    /// The snapshot folder of `commit`.
    pub fn snapshot_dir(&self, repo: &RepoId, commit: &str) -> PathBuf {
        self.repo_dir(repo).join("snapshots").join(commit)
    }

    /// The file holding the commit that `revision` pointed to.
    pub fn ref_path(&self, repo: &RepoId, revision: &str) -> PathBuf {
        self.repo_dir(repo).join("refs").join(revision)
    }

    /// The lock file of the blob of `etag` (huggingface_hub's path, so its downloads and ours
    /// exclude each other).
    pub fn lock_path(&self, repo: &RepoId, etag: &str) -> PathBuf {
        self.root
            .join(".locks")
            .join(CacheDir::repo_folder_name(repo))
            .join(format!("{etag}.lock"))
    }

    /// The lock folder of a repository.
    pub fn repo_locks_dir(&self, repo: &RepoId) -> PathBuf {
        self.root
            .join(".locks")
            .join(CacheDir::repo_folder_name(repo))
    }
}

/// Where files fetched from plain URLs (not a Hub repository) are kept:
/// `$XDG_CACHE_HOME/llama-rs/urls`, else `$HOME/.cache/llama-rs/urls`.
pub fn url_cache_dir(env: Env<'_>) -> Option<PathBuf> {
    let base = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("llama-rs").join("urls"))
}

/// The token file huggingface_hub's `login` writes: `HF_TOKEN_PATH`, else `$HF_HOME/token`,
/// else `$XDG_CACHE_HOME/huggingface/token`, else `$HOME/.cache/huggingface/token`.
pub fn token_file(env: Env<'_>) -> Option<PathBuf> {
    if let Some(path) = env("HF_TOKEN_PATH") {
        return Some(PathBuf::from(path));
    }
    if let Some(home) = env("HF_HOME") {
        return Some(PathBuf::from(home).join("token"));
    }
    let cache = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("huggingface").join("token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn cache_dir_precedence_follows_llama_cpp() {
        let all = env_of(&[
            ("LLAMA_CACHE", "/l"),
            ("HF_HUB_CACHE", "/h"),
            ("HF_HOME", "/home-hf"),
            ("HOME", "/u"),
        ]);
        assert_eq!(
            CacheDir::from_env(&all),
            Some((CacheDir::new("/l"), CacheSource::LlamaCache))
        );
        let hf = env_of(&[("HF_HUB_CACHE", "/h"), ("HF_HOME", "/x"), ("HOME", "/u")]);
        assert_eq!(CacheDir::from_env(&hf).unwrap().0.root(), Path::new("/h"));
        let home = env_of(&[("HF_HOME", "/x"), ("HOME", "/u")]);
        assert_eq!(
            CacheDir::from_env(&home).unwrap().0.root(),
            Path::new("/x/hub")
        );
        let xdg = env_of(&[("XDG_CACHE_HOME", "/c"), ("HOME", "/u")]);
        assert_eq!(
            CacheDir::from_env(&xdg).unwrap().0.root(),
            Path::new("/c/huggingface/hub")
        );
        let user = env_of(&[("HOME", "/u")]);
        assert_eq!(
            CacheDir::from_env(&user).unwrap().0.root(),
            Path::new("/u/.cache/huggingface/hub")
        );
        assert_eq!(CacheDir::from_env(&env_of(&[])), None);
    }

    #[test]
    fn repo_folder_names_round_trip() {
        let repo = RepoId::parse("bartowski/SmolLM2-135M-Instruct-GGUF").unwrap();
        let name = CacheDir::repo_folder_name(&repo);
        assert_eq!(name, "models--bartowski--SmolLM2-135M-Instruct-GGUF");
        assert_eq!(CacheDir::repo_of_folder_name(&name), Some(repo));
        assert_eq!(CacheDir::repo_of_folder_name("datasets--a--b"), None);
        let cache = CacheDir::new("/c");
        let repo = RepoId::parse("a/b").unwrap();
        assert_eq!(
            cache.lock_path(&repo, "e"),
            Path::new("/c/.locks/models--a--b/e.lock")
        );
        assert_eq!(
            cache.incomplete_path(&repo, "e"),
            Path::new("/c/models--a--b/blobs/e.incomplete")
        );
    }

    #[test]
    fn token_file_follows_huggingface_hub() {
        let env = env_of(&[("HF_HOME", "/hf"), ("HOME", "/u")]);
        assert_eq!(token_file(&env), Some(PathBuf::from("/hf/token")));
        let env = env_of(&[("HOME", "/u")]);
        assert_eq!(
            token_file(&env),
            Some(PathBuf::from("/u/.cache/huggingface/token"))
        );
    }
}
