//! The model store: GGUF models fetched from the Hugging Face Hub (or a plain URL) into the
//! Hugging Face hub cache that huggingface_hub and llama.cpp share, verified against the Hub's
//! sha256, resumable, locked, fit-checked against a memory budget before the download, listed
//! and removed with garbage collection of unreferenced blobs.
//!
//! - [`cache_dir`]: where the cache is (`LLAMA_CACHE`, `HF_HUB_CACHE`, `HF_HOME`, ...) and its
//!   layout; [`snapshot`]: refs and snapshot links; [`inventory`]: what it holds;
//!   [`gc`]: `rm`.
//! - [`reference`]: `org/repo[:QUANT]`, file names and URLs; [`quant`]: choosing a file by
//!   quantisation tag, split parts together.
//! - [`hub_config`], [`http`], [`hub`]: the Hub's HTTP API (ureq with rustls); the token goes
//!   only to the endpoint.
//! - [`download`], [`digest`], [`lock`], [`disk`], [`progress`]: one file's resumable,
//!   verified download.
//! - [`header`], [`fit`]: the fit check on GGUF headers fetched by ranged requests.
//! - [`url_file`]: plain URLs.
//!
//! Nothing here calls llama.cpp: the fit check's planner is the caller's callback.

pub mod cache_dir;
pub mod digest;
pub mod disk;
pub mod download;
mod error;
pub mod fit;
pub mod gc;
pub mod header;
pub mod http;
pub mod hub;
pub mod hub_config;
pub mod inventory;
pub mod lock;
pub mod progress;
pub mod quant;
pub mod reference;
pub mod snapshot;
pub mod url_file;

use std::path::PathBuf;

pub use self::cache_dir::{CacheDir, CacheSource};
pub use self::error::{QuantSuggestion, StoreError};
pub use self::fit::{FitRequest, FitVerdict};
pub use self::gc::RemoveReport;
pub use self::hub_config::{HubConfig, Token};
pub use self::inventory::{CachedModel, LocalModel};
pub use self::progress::{NoProgress, Progress};
pub use self::reference::{FileSelector, ModelRef, RepoId};

use self::cache_dir::{process_env, url_cache_dir, Env};
use self::digest::ExpectedDigest;
use self::download::{download, DownloadJob};
use self::hub::{HubClient, RemoteFile};
use self::lock::FileLock;

/// The cache and the Hub it fills from.
#[derive(Debug, Clone)]
pub struct Store {
    cache: CacheDir,
    cache_source: Option<CacheSource>,
    url_root: PathBuf,
    hub: HubConfig,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The model on disk.
    pub model: LocalModel,
    /// Bytes received for the model's files (not counting fit-check headers).
    pub fetched: u64,
    /// Whether every file was already in the cache (nothing was downloaded).
    pub already_cached: bool,
    /// What the fit check's plan said, with `--max-mem`.
    pub fit_notes: Vec<String>,
}

/// Options of a pull.
pub struct PullOptions<'a> {
    /// Where progress goes.
    pub progress: &'a mut dyn Progress,
    /// The budget to check the model against before downloading it.
    pub fit: Option<FitRequest<'a>>,
}

impl Store {
    /// The store the process environment configures.
    pub fn from_env() -> Result<Store, StoreError> {
        Store::with_env(&process_env)
    }

    /// The store `env` configures (see [`cache_dir`] and [`hub_config`]).
    pub fn with_env(env: Env<'_>) -> Result<Store, StoreError> {
        let (cache, source) = CacheDir::from_env(env).ok_or(StoreError::NoCacheDir)?;
        let url_root =
            url_cache_dir(env).unwrap_or_else(|| cache.root().join("..").join("llama-rs-urls"));
        Ok(Store {
            cache,
            cache_source: Some(source),
            url_root,
            hub: HubConfig::from_env(env),
        })
    }

    /// A store on `cache`, with URL downloads under `url_root`, talking to `hub`.
    pub fn new(cache: CacheDir, url_root: PathBuf, hub: HubConfig) -> Store {
        Store {
            cache,
            cache_source: None,
            url_root,
            hub,
        }
    }

    /// The hub cache.
    pub fn cache(&self) -> &CacheDir {
        &self.cache
    }

    /// Which variable chose the cache directory (`None` for [`Store::new`]).
    pub fn cache_source(&self) -> Option<CacheSource> {
        self.cache_source
    }

    /// Where plain-URL downloads go.
    pub fn url_root(&self) -> &std::path::Path {
        &self.url_root
    }

    /// The Hub configuration.
    pub fn hub(&self) -> &HubConfig {
        &self.hub
    }

    /// `model`, with a resolve URL of the configured endpoint read as the Hub file it names.
    fn canonical(&self, model: &ModelRef) -> ModelRef {
        match model {
            ModelRef::Url(url) => {
                ModelRef::from_resolve_url(url, &self.hub.endpoint).unwrap_or(model.clone())
            }
            other => other.clone(),
        }
    }

    /// The cached files of `model`, without the network.
    pub fn find_cached(&self, model: &ModelRef) -> Result<Option<LocalModel>, StoreError> {
        match self.canonical(model) {
            ModelRef::Hub {
                repo,
                revision,
                selector,
            } => inventory::find_cached(&self.cache, &repo, &revision, &selector),
            ModelRef::Url(url) => url_file::find_cached(&self.url_root, &url),
        }
    }

    /// The local files of `model`: from the cache when it is there (no network), else pulled
    /// (unless `HF_HUB_OFFLINE` is set). The model is marked used.
    pub fn resolve(
        &self,
        model: &ModelRef,
        options: PullOptions<'_>,
    ) -> Result<LocalModel, StoreError> {
        if let Some(found) = self.find_cached(model)? {
            found.touch();
            return Ok(found);
        }
        let report = self.pull(model, options)?;
        report.model.touch();
        Ok(report.model)
    }

    fn not_cached(&self, model: &ModelRef) -> StoreError {
        StoreError::NotCached {
            model: model.to_string(),
            cache: self.cache.root().display().to_string(),
            why: "HF_HUB_OFFLINE is set",
        }
    }

    /// Fetches `model` into the cache: the files the Hub lists for it, checked against the
    /// budget first with `options.fit`. Files already in the cache (by digest) are linked, not
    /// downloaded again.
    pub fn pull(
        &self,
        model: &ModelRef,
        options: PullOptions<'_>,
    ) -> Result<PullReport, StoreError> {
        let PullOptions { progress, fit } = options;
        if self.hub.offline {
            return match self.find_cached(model)? {
                Some(model) => Ok(PullReport {
                    model,
                    fetched: 0,
                    already_cached: true,
                    fit_notes: Vec::new(),
                }),
                None => Err(self.not_cached(model)),
            };
        }
        let client = HubClient::new(self.hub.clone());
        let (repo, revision, selector) = match self.canonical(model) {
            ModelRef::Url(url) => {
                let (model, fetched) = url_file::pull(&client, &self.url_root, &url, progress)?;
                return Ok(PullReport {
                    model,
                    fetched,
                    already_cached: fetched == 0,
                    fit_notes: Vec::new(),
                });
            }
            ModelRef::Hub {
                repo,
                revision,
                selector,
            } => (repo, revision, selector),
        };
        let listing = client.listing(&repo, &revision)?;
        let chosen = match quant::choose(&repo, &listing.files, &selector) {
            Err(StoreError::FileNotFound { repo, file, .. }) => {
                return Err(StoreError::FileNotFound {
                    repo,
                    file,
                    available: quant::gguf_paths(&listing.files),
                })
            }
            other => other?,
        };
        let cached = |f: &RemoteFile| {
            f.etag()
                .is_some_and(|etag| self.cache.blob_path(&repo, etag).is_file())
        };
        let missing: Vec<&RemoteFile> = chosen.iter().copied().filter(|f| !cached(f)).collect();
        let mut fit_notes = Vec::new();
        let mut fetched = 0;
        if !missing.is_empty() {
            if let Some(request) = fit {
                fit_notes = fit::check(
                    &client,
                    &listing,
                    &chosen,
                    &model.to_string(),
                    request,
                    progress,
                )?;
            }
            fetched = self.download_files(&client, &listing, &missing, progress)?;
        }
        let mut files = Vec::new();
        for file in &chosen {
            let etag = self.blob_name(&repo, file)?;
            files.push(snapshot::link(
                &self.cache,
                &repo,
                &listing.commit,
                &file.path,
                &etag,
            )?);
        }
        snapshot::write_ref(&self.cache, &repo, &revision, &listing.commit)?;
        Ok(PullReport {
            model: LocalModel {
                repo: Some(repo),
                commit: Some(listing.commit),
                files,
            },
            fetched,
            already_cached: missing.is_empty(),
            fit_notes,
        })
    }

    /// The name of `file`'s blob, now that it is in the cache.
    fn blob_name(&self, repo: &RepoId, file: &RemoteFile) -> Result<String, StoreError> {
        match file.etag() {
            Some(etag) if self.cache.blob_path(repo, etag).is_file() => Ok(etag.to_string()),
            _ => Err(StoreError::Protocol {
                url: format!("{}/{repo}", self.hub.endpoint),
                message: format!("{} has no digest in the tree listing", file.path),
            }),
        }
    }

    /// Downloads `files` (after checking the disk has room for all of them).
    fn download_files(
        &self,
        client: &HubClient,
        listing: &hub::RepoListing,
        files: &[&RemoteFile],
        progress: &mut dyn Progress,
    ) -> Result<u64, StoreError> {
        let repo = &listing.repo;
        let mut located = Vec::new();
        for file in files {
            let location = client.locate(repo, &listing.commit, &file.path)?;
            if location.size != file.size {
                return Err(StoreError::Protocol {
                    url: client.resolve_url(repo, &listing.commit, &file.path),
                    message: format!(
                        "the tree lists {} bytes but the file has {}",
                        file.size, location.size
                    ),
                });
            }
            located.push((*file, location));
        }
        let blobs = self.cache.blobs_dir(repo);
        let needed: u64 = located
            .iter()
            .map(|(f, loc)| {
                let have = std::fs::metadata(self.cache.incomplete_path(repo, &loc.etag))
                    .map(|m| m.len())
                    .unwrap_or(0);
                f.size.saturating_sub(have)
            })
            .sum();
        disk::ensure_free(&blobs, needed)?;
        std::fs::create_dir_all(&blobs).map_err(StoreError::io("cannot create", &blobs))?;
        let mut fetched = 0;
        for (file, location) in located {
            // The blob is named by the file's digest, so both names agree for LFS files.
            let etag = file.etag().unwrap_or(&location.etag).to_string();
            let digest = match (&file.sha256, &file.git_oid) {
                (Some(sha), _) => ExpectedDigest::Sha256(sha.clone()),
                (None, Some(oid)) => ExpectedDigest::GitSha1(oid.clone()),
                (None, None) => ExpectedDigest::Unknown,
            };
            let lock = self.cache.lock_path(repo, &etag);
            let _held = FileLock::acquire(&lock, || progress.waiting(&file.path))?;
            let blob = self.cache.blob_path(repo, &etag);
            if blob.is_file() {
                // Another process finished it while this one waited for the lock.
                continue;
            }
            let partial = self.cache.incomplete_path(repo, &etag);
            let done = download(
                client,
                &DownloadJob {
                    label: &file.path,
                    url: &location.url,
                    size: file.size,
                    digest: &digest,
                    partial: &partial,
                    destination: &blob,
                },
                progress,
            )?;
            fetched += done.fetched;
        }
        Ok(fetched)
    }

    /// Every model in the cache, and the URL downloads.
    pub fn list(&self) -> Vec<CachedModel> {
        let mut models = inventory::list_models(&self.cache);
        for (record, path) in url_file::list(&self.url_root) {
            let name = quant::GgufName::parse(&record.url);
            let accessed = std::fs::metadata(&path)
                .ok()
                .and_then(|m| m.accessed().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            if name.as_ref().is_some_and(|n| n.part > 1) {
                continue;
            }
            models.push(CachedModel {
                name: record.url.clone(),
                repo: String::new(),
                quant: name.as_ref().map(|n| n.tag.clone()).unwrap_or_default(),
                commit: String::new(),
                file: record.url.clone(),
                size: record.size,
                path,
                parts: (1, name.map(|n| n.count).unwrap_or(1)),
                last_used: accessed,
            });
        }
        models
    }

    /// Removes `model` from the cache and collects the blobs nothing references any more.
    pub fn remove(&self, model: &ModelRef) -> Result<RemoveReport, StoreError> {
        let report = match self.canonical(model) {
            ModelRef::Hub { repo, selector, .. } => gc::remove(&self.cache, &repo, &selector)?,
            ModelRef::Url(url) => {
                let removed = url_file::remove(&self.url_root, &url)?;
                RemoveReport {
                    bytes_freed: removed.iter().map(|(_, n)| n).sum(),
                    links: Vec::new(),
                    blobs: removed.into_iter().map(|(p, _)| p).collect(),
                    repo_removed: false,
                }
            }
        };
        if report.links.is_empty() && report.blobs.is_empty() {
            return Err(StoreError::NotInCache {
                model: model.to_string(),
                cache: self.cache.root().display().to_string(),
            });
        }
        Ok(report)
    }
}
