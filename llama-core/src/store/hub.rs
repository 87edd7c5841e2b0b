//! The Hub's HTTP API, spoken as huggingface_hub speaks it:
//!
//! - `GET {endpoint}/api/models/{repo}` (or `.../revision/{revision}`): the commit (`sha`);
//! - `GET {endpoint}/api/models/{repo}/tree/{commit}?recursive=true`: every file with its size
//!   and, for LFS files, its sha256 (pages followed through the `Link: <...>; rel="next"`
//!   header);
//! - `HEAD {endpoint}/{repo}/resolve/{commit}/{path}`: `X-Repo-Commit`, `X-Linked-Etag` (or
//!   `ETag`), `X-Linked-Size` (or `Content-Length`) and, for LFS files, a redirect to the CDN.
//!   Redirects within the endpoint's origin (a renamed repository) are followed; one to
//!   another host is where the bytes are fetched from, without the token;
//! - `GET` of that location, with `Range` for resumes and for GGUF headers.

use serde::Deserialize;

use super::error::StoreError;
use super::http::{display_url, Answer, Http, Method};
use super::hub_config::HubConfig;
use super::quant::NamedFile;
use super::reference::RepoId;

/// Largest JSON answer read (a tree listing of a big repository is a few MB).
const MAX_JSON_BYTES: u64 = 64 << 20;

/// A file of a repository at a commit, from the tree listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Path inside the repository.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The sha256 of an LFS file (`lfs.oid`), lower-case hex.
    pub sha256: Option<String>,
    /// The git blob id (sha1 of `blob {size}\0` and the bytes) of a file stored in git.
    pub git_oid: Option<String>,
}

impl RemoteFile {
    /// The name of its blob in the cache: the sha256 for LFS files, else the git blob id
    /// (what the Hub sends as the ETag, and what huggingface_hub names blobs by).
    pub fn etag(&self) -> Option<&str> {
        self.sha256.as_deref().or(self.git_oid.as_deref())
    }
}

impl NamedFile for RemoteFile {
    fn path(&self) -> &str {
        &self.path
    }
}

/// A repository's files at one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoListing {
    /// The repository.
    pub repo: RepoId,
    /// The commit the revision pointed to.
    pub commit: String,
    /// Every file (directories left out).
    pub files: Vec<RemoteFile>,
}

/// Where a file's bytes are and what they should be, from `HEAD .../resolve/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLocation {
    /// The URL to GET the bytes from (the CDN for LFS files).
    pub url: String,
    /// The normalised ETag: the blob name.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// `X-Repo-Commit`.
    pub commit: Option<String>,
}

#[derive(Deserialize)]
struct ModelInfo {
    sha: Option<String>,
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    oid: Option<String>,
    lfs: Option<LfsInfo>,
}

#[derive(Deserialize)]
struct LfsInfo {
    oid: String,
    size: Option<u64>,
}

/// A client of one Hub endpoint.
#[derive(Debug, Clone)]
pub struct HubClient {
    config: HubConfig,
    http: Http,
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Percent-encodes a path for a URL, keeping `/`.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl HubClient {
    /// A client for `config`'s endpoint.
    pub fn new(config: HubConfig) -> HubClient {
        let http = Http::new(&config.endpoint, config.token.clone());
        HubClient { config, http }
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The HTTP client.
    pub fn http(&self) -> &Http {
        &self.http
    }

    /// The commit `revision` points to (a 40-hex commit is taken as it is).
    pub fn commit_of(&self, repo: &RepoId, revision: &str) -> Result<String, StoreError> {
        let url = if revision == "main" {
            format!("{}/api/models/{repo}", self.config.endpoint)
        } else {
            format!(
                "{}/api/models/{repo}/revision/{}",
                self.config.endpoint,
                encode_path(revision).replace('/', "%2F")
            )
        };
        let answer = self.api_get(&url, repo, Some(revision))?;
        let info: ModelInfo = read_json(answer)?;
        match info.sha {
            Some(sha) if is_hex(&sha, 40) => Ok(sha.to_ascii_lowercase()),
            _ => Err(StoreError::Protocol {
                url: display_url(&url),
                message: "no 40-hex `sha` (the commit) in the model info".to_string(),
            }),
        }
    }

    /// Every file of `repo` at `commit`.
    pub fn list_files(&self, repo: &RepoId, commit: &str) -> Result<Vec<RemoteFile>, StoreError> {
        let mut url = format!(
            "{}/api/models/{repo}/tree/{commit}?recursive=true",
            self.config.endpoint
        );
        let mut files = Vec::new();
        for _page in 0..10_000 {
            let answer = self.api_get(&url, repo, Some(commit))?;
            let next = answer.header("link").and_then(next_link);
            let page_url = display_url(&answer.url);
            let entries: Vec<TreeEntry> = read_json(answer)?;
            for entry in entries.into_iter().filter(|e| e.kind == "file") {
                if entry.path.split('/').any(|c| c.is_empty() || c == "..") {
                    return Err(StoreError::Protocol {
                        url: page_url,
                        message: format!("unsafe file path '{}'", entry.path),
                    });
                }
                let sha256 = entry
                    .lfs
                    .as_ref()
                    .map(|l| l.oid.to_ascii_lowercase())
                    .filter(|oid| is_hex(oid, 64));
                let size = entry
                    .lfs
                    .as_ref()
                    .and_then(|l| l.size)
                    .unwrap_or(entry.size);
                files.push(RemoteFile {
                    path: entry.path,
                    size,
                    git_oid: entry
                        .oid
                        .map(|o| o.to_ascii_lowercase())
                        .filter(|o| is_hex(o, 40)),
                    sha256,
                });
            }
            match next {
                Some(next) => url = next,
                None => return Ok(files),
            }
        }
        Err(StoreError::Protocol {
            url: display_url(&url),
            message: "the tree listing does not end".to_string(),
        })
    }

    /// The commit and the files of `repo` at `revision`.
    pub fn listing(&self, repo: &RepoId, revision: &str) -> Result<RepoListing, StoreError> {
        let commit = self.commit_of(repo, revision)?;
        let files = self.list_files(repo, &commit)?;
        Ok(RepoListing {
            repo: repo.clone(),
            commit,
            files,
        })
    }

    /// `{endpoint}/{repo}/resolve/{revision}/{path}`.
    pub fn resolve_url(&self, repo: &RepoId, revision: &str, path: &str) -> String {
        format!(
            "{}/{repo}/resolve/{}/{}",
            self.config.endpoint,
            encode_path(revision),
            encode_path(path)
        )
    }

    /// Where the bytes of `path` are, its blob name and size (`HEAD .../resolve/...`).
    pub fn locate(
        &self,
        repo: &RepoId,
        revision: &str,
        path: &str,
    ) -> Result<FileLocation, StoreError> {
        let url = self.resolve_url(repo, revision, path);
        let answer = self.http.send_following(
            Method::Head,
            &url,
            &[("Accept-Encoding", "identity")],
            Http::same_origin,
        )?;
        self.check_status(&answer, repo, Some(revision), Some(path))?;
        let redirected = answer.response.status().is_redirection();
        let etag = answer
            .header("x-linked-etag")
            .or_else(|| answer.header("etag"))
            .map(normalize_etag)
            .filter(|e| !e.is_empty() && !e.contains(['/', '\\']) && e != "." && e != "..")
            .ok_or_else(|| StoreError::Protocol {
                url: display_url(&answer.url),
                message: "no X-Linked-Etag or ETag header".to_string(),
            })?;
        let size = answer
            .header("x-linked-size")
            .or_else(|| {
                (!redirected)
                    .then(|| answer.header("content-length"))
                    .flatten()
            })
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| StoreError::Protocol {
                url: display_url(&answer.url),
                message: "no X-Linked-Size or Content-Length header".to_string(),
            })?;
        let location = if redirected {
            answer
                .header("location")
                .map(|l| super::http::join(&answer.url, l))
                .unwrap_or_else(|| answer.url.clone())
        } else {
            answer.url.clone()
        };
        Ok(FileLocation {
            url: location,
            etag,
            size,
            commit: answer.header("x-repo-commit").map(str::to_string),
        })
    }

    /// `GET url` with an optional `Range: bytes={start}-{end}` (end inclusive, open when
    /// `None`), following every redirect.
    pub fn get(&self, url: &str, range: Option<(u64, Option<u64>)>) -> Result<Answer, StoreError> {
        let range = range.map(|(start, end)| match end {
            Some(end) => format!("bytes={start}-{end}"),
            None => format!("bytes={start}-"),
        });
        let mut headers = vec![("Accept-Encoding", "identity")];
        if let Some(range) = &range {
            headers.push(("Range", range.as_str()));
        }
        self.http
            .send_following(Method::Get, url, &headers, |_, _| true)
    }

    fn api_get(
        &self,
        url: &str,
        repo: &RepoId,
        revision: Option<&str>,
    ) -> Result<Answer, StoreError> {
        let answer = self.http.send_following(
            Method::Get,
            url,
            &[("Accept", "application/json")],
            Http::same_origin,
        )?;
        self.check_status(&answer, repo, revision, None)?;
        if answer.response.status().is_redirection() {
            return Err(StoreError::Protocol {
                url: display_url(url),
                message: "the API redirected to another host".to_string(),
            });
        }
        Ok(answer)
    }

    /// Maps an error status to a typed error (the Hub's `X-Error-Code` says which).
    pub fn check_status(
        &self,
        answer: &Answer,
        repo: &RepoId,
        revision: Option<&str>,
        file: Option<&str>,
    ) -> Result<(), StoreError> {
        let status = answer.status();
        if status < 400 {
            return Ok(());
        }
        let code = answer.header("x-error-code").unwrap_or("");
        let no_token_hint = if self.http.has_token() {
            ""
        } else {
            " (a private or gated repository needs HF_TOKEN)"
        };
        let repo_name = repo.to_string();
        let unauthorized = |hint| StoreError::Unauthorized {
            repo: repo_name.clone(),
            status,
            hint,
        };
        let not_found = || StoreError::RepoNotFound {
            repo: repo_name.clone(),
            endpoint: self.config.endpoint.clone(),
            hint: no_token_hint,
        };
        let missing_file = || StoreError::FileNotFound {
            repo: repo_name.clone(),
            file: file.unwrap_or("").to_string(),
            available: Vec::new(),
        };
        Err(match (code, status) {
            ("RepoNotFound", _) => not_found(),
            ("RevisionNotFound", _) => StoreError::RevisionNotFound {
                repo: repo_name.clone(),
                revision: revision.unwrap_or("main").to_string(),
            },
            ("EntryNotFound", _) => missing_file(),
            ("GatedRepo", _) => unauthorized(
                "a gated repository: accept its conditions on the Hub, then set HF_TOKEN (or run `huggingface-cli login`)",
            ),
            (_, 401 | 403) if self.http.has_token() => {
                unauthorized("the token was refused: check it may read this repository")
            }
            (_, 401 | 403) => unauthorized(
                "set HF_TOKEN (or run `huggingface-cli login`) with a token that may read it",
            ),
            (_, 404) if file.is_some() => missing_file(),
            (_, 404) => not_found(),
            _ => StoreError::Http {
                url: display_url(&answer.url),
                status,
                detail: answer.header("x-error-message").map(str::to_string),
            },
        })
    }
}

/// `W/"abc"` or `"abc"` → `abc`, as huggingface_hub normalises ETags.
pub fn normalize_etag(etag: &str) -> String {
    etag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"")
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

fn read_json<T: serde::de::DeserializeOwned>(answer: Answer) -> Result<T, StoreError> {
    let url = display_url(&answer.url);
    let text = answer
        .response
        .into_body()
        .with_config()
        .limit(MAX_JSON_BYTES)
        .read_to_string()
        .map_err(|err| StoreError::Network {
            url: url.clone(),
            message: err.to_string(),
        })?;
    serde_json::from_str(&text).map_err(|err| StoreError::Protocol {
        url,
        message: format!("bad JSON: {err}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_give_the_next_page() {
        assert_eq!(
            next_link("<https://h/api/models/a/b/tree/main?cursor=x>; rel=\"next\"").as_deref(),
            Some("https://h/api/models/a/b/tree/main?cursor=x")
        );
        assert_eq!(next_link("<https://h/x>; rel=\"prev\""), None);
    }

    #[test]
    fn etags_are_normalised_and_paths_encoded() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(encode_path("dir/a b+c.gguf"), "dir/a%20b%2Bc.gguf");
    }
}
