//! A stand-in Hugging Face Hub on loopback, inside the test suite (axum on a thread). It speaks
//! the part of the Hub's API the store and huggingface_hub use:
//!
//! - `GET /api/models/{repo}` (and `/revision/{rev}`): `{"id", "sha", "siblings"}`;
//! - `GET /api/models/{repo}/tree/{rev}?recursive=true`: the files, two per page, with a
//!   `Link: <...>; rel="next"` header;
//! - `HEAD`/`GET /{repo}/resolve/{rev}/{path}`: LFS files redirect (302) to a "CDN" on a second
//!   port (another origin) with `X-Linked-Etag`, `X-Linked-Size`, `X-Repo-Commit`; files in
//!   git answer 200 with `ETag`;
//! - the CDN: `Range` requests (206, `Content-Range`), and faults on demand: a connection cut
//!   after N bytes, a stall, slow chunks, corrupted bytes;
//! - a gated repository (401 without the token), unknown repositories (404, `X-Error-Code`).
//!
//! It counts the bytes it serves per file and records every request (method, path, whether it
//! carried an `Authorization` header).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};

use llama_core::store::digest::{sha256_hex, Hasher};

/// The token the gated repository accepts.
pub const TOKEN: &str = "hf_fakehubtesttoken0123456789abcdefghij";

/// Faults the CDN injects when serving one file.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Cut the connection after this many bytes of a response, for the next `cuts` responses.
    pub cut_after: Option<u64>,
    /// How many responses are cut.
    pub cuts: u32,
    /// Stop sending (but keep the connection open) after this many bytes, once.
    pub stall_after: Option<u64>,
    /// Sleep this long between 64 KiB chunks.
    pub chunk_delay: Option<Duration>,
    /// Serve these bytes instead of the real content (same length).
    pub corrupt: bool,
}

/// One file of a fake repository.
#[derive(Debug, Clone)]
pub struct FakeFile {
    /// Path in the repository.
    pub path: String,
    /// The bytes.
    pub content: Arc<Vec<u8>>,
    /// Stored with LFS (sha256, CDN redirect) or in git (git blob id, served directly).
    pub lfs: bool,
    /// Size the Hub advertises (the content's length unless a test sets a larger one).
    pub advertised_size: u64,
    /// Faults when served.
    pub faults: Faults,
}

impl FakeFile {
    /// An LFS file.
    pub fn lfs(path: &str, content: Vec<u8>) -> FakeFile {
        FakeFile {
            path: path.to_string(),
            advertised_size: content.len() as u64,
            content: Arc::new(content),
            lfs: true,
            faults: Faults::default(),
        }
    }

    /// A file stored in git (small, no LFS).
    pub fn git(path: &str, content: Vec<u8>) -> FakeFile {
        FakeFile {
            lfs: false,
            ..FakeFile::lfs(path, content)
        }
    }

    /// The sha256 the Hub publishes (of the real content).
    pub fn sha256(&self) -> String {
        sha256_hex(&self.content)
    }

    fn git_oid(&self) -> String {
        let mut h = Hasher::new(
            &llama_core::store::digest::ExpectedDigest::GitSha1(String::new()),
            self.content.len() as u64,
        );
        h.update(&self.content);
        h.finish()
    }

    fn etag(&self) -> String {
        if self.lfs {
            self.sha256()
        } else {
            self.git_oid()
        }
    }
}

/// A fake repository.
#[derive(Debug, Clone)]
pub struct FakeRepo {
    /// `org/name`.
    pub id: String,
    /// The commit `main` points to.
    pub commit: String,
    /// Its files.
    pub files: Vec<FakeFile>,
    /// Needs [`TOKEN`].
    pub gated: bool,
}

impl FakeRepo {
    /// A public repository with `files` at a commit derived from its name.
    pub fn new(id: &str, files: Vec<FakeFile>) -> FakeRepo {
        FakeRepo {
            id: id.to_string(),
            commit: sha256_hex(id.as_bytes())[..40].to_string(),
            files,
            gated: false,
        }
    }
}

/// A request the hub saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `HEAD`.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// Whether it carried `Authorization`.
    pub authorized: bool,
    /// Which listener: the Hub or the CDN.
    pub cdn: bool,
}

#[derive(Default)]
struct State {
    repos: Vec<FakeRepo>,
    served: HashMap<String, u64>,
    seen: Vec<Seen>,
    plain: HashMap<String, Arc<Vec<u8>>>,
}

/// A running fake hub (it stops when the test process ends).
#[derive(Clone)]
pub struct FakeHub {
    state: Arc<Mutex<State>>,
    /// `http://127.0.0.1:{port}`.
    pub endpoint: String,
    cdn: String,
}

impl FakeHub {
    /// Starts a hub serving `repos`.
    pub fn start(repos: Vec<FakeRepo>) -> FakeHub {
        let state = Arc::new(Mutex::new(State {
            repos,
            ..State::default()
        }));
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async move {
                let hub = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let cdn = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let endpoint = format!("http://{}", hub.local_addr().unwrap());
                let cdn_origin = format!("http://{}", cdn.local_addr().unwrap());
                tx.send((endpoint.clone(), cdn_origin.clone())).unwrap();
                let app = |is_cdn: bool| {
                    let state = Arc::clone(&shared);
                    let cdn_origin = cdn_origin.clone();
                    axum::Router::new().fallback(
                        move |method: Method, uri: Uri, headers: HeaderMap| {
                            let state = Arc::clone(&state);
                            let cdn_origin = cdn_origin.clone();
                            async move { handle(state, is_cdn, &cdn_origin, method, uri, headers) }
                        },
                    )
                };
                let hub_app = app(false);
                let cdn_app = app(true);
                tokio::spawn(async move { axum::serve(cdn, cdn_app).await.unwrap() });
                axum::serve(hub, hub_app).await.unwrap();
            });
        });
        let (endpoint, cdn) = rx.recv().expect("fake hub started");
        FakeHub {
            state,
            endpoint,
            cdn,
        }
    }

    /// Bytes of `path` (a repository file) the CDN or resolve endpoint has sent so far.
    pub fn served(&self, repo: &str, path: &str) -> u64 {
        let state = self.state.lock().unwrap();
        state
            .served
            .get(&format!("{repo}/{path}"))
            .copied()
            .unwrap_or(0)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Forgets the requests and byte counts so far.
    pub fn reset_counts(&self) {
        let mut state = self.state.lock().unwrap();
        state.seen.clear();
        state.served.clear();
    }

    /// Changes the faults of a file.
    pub fn set_faults(&self, repo: &str, path: &str, faults: Faults) {
        let mut state = self.state.lock().unwrap();
        let file = state
            .repos
            .iter_mut()
            .find(|r| r.id == repo)
            .and_then(|r| r.files.iter_mut().find(|f| f.path == path))
            .expect("file");
        file.faults = faults;
    }

    /// Serves `content` at a plain URL `{cdn}/plain/{name}` (no Hub headers); returns the URL.
    pub fn add_plain(&self, name: &str, content: Vec<u8>) -> String {
        let mut state = self.state.lock().unwrap();
        state.plain.insert(name.to_string(), Arc::new(content));
        format!("{}/plain/{name}", self.cdn)
    }
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(value.to_string()))
        .unwrap()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("x-error-code", code)
        .header("x-error-message", message)
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::json!({ "error": message }).to_string(),
        ))
        .unwrap()
}

fn handle(
    state: Arc<Mutex<State>>,
    is_cdn: bool,
    cdn_origin: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let path = uri.path().to_string();
    let authorized = headers.get("authorization").is_some();
    let token_ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    let mut guard = state.lock().unwrap();
    guard.seen.push(Seen {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        authorized,
        cdn: is_cdn,
    });
    if is_cdn {
        if let Some(name) = path.strip_prefix("/plain/") {
            let Some(content) = guard.plain.get(name).cloned() else {
                return error(StatusCode::NOT_FOUND, "EntryNotFound", "no such file");
            };
            drop(guard);
            let key = format!("plain/{name}");
            return serve_bytes(
                state,
                key,
                content,
                Faults::default(),
                &method,
                &headers,
                HeaderMap::new(),
            );
        }
        // /cdn/{org}/{name}/{sha256}
        let parts: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
        let [_, org, name, sha] = parts[..] else {
            return error(StatusCode::NOT_FOUND, "EntryNotFound", "bad CDN path");
        };
        let repo_id = format!("{org}/{name}");
        let Some(file) = guard
            .repos
            .iter()
            .find(|r| r.id == repo_id)
            .and_then(|r| r.files.iter().find(|f| f.lfs && f.sha256() == sha))
            .cloned()
        else {
            return error(StatusCode::NOT_FOUND, "EntryNotFound", "no such blob");
        };
        let faults = file.faults.clone();
        // A cut or a stall is used up by the response that has it.
        if let Some(f) = guard
            .repos
            .iter_mut()
            .find(|r| r.id == repo_id)
            .and_then(|r| r.files.iter_mut().find(|f| f.path == file.path))
        {
            if method == Method::GET {
                if f.faults.cuts > 0 {
                    f.faults.cuts -= 1;
                }
                f.faults.stall_after = None;
            }
        }
        drop(guard);
        let content = if faults.corrupt {
            let mut bytes = (*file.content).clone();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            Arc::new(bytes)
        } else {
            Arc::clone(&file.content)
        };
        let faults = Faults {
            cut_after: faults.cut_after.filter(|_| faults.cuts > 0),
            ..faults
        };
        return serve_bytes(
            state,
            format!("{repo_id}/{}", file.path),
            content,
            faults,
            &method,
            &headers,
            HeaderMap::new(),
        );
    }
    // The Hub.
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.first() == Some(&"api") && segments.get(1) == Some(&"models") {
        let Some(repo) = segments
            .get(2..4)
            .map(|s| s.join("/"))
            .and_then(|id| guard.repos.iter().find(|r| r.id == id).cloned())
        else {
            return error(
                StatusCode::NOT_FOUND,
                "RepoNotFound",
                "Repository not found",
            );
        };
        if repo.gated && !token_ok {
            return error(
                StatusCode::UNAUTHORIZED,
                "GatedRepo",
                "Access to this repository is restricted",
            );
        }
        let rest = &segments[4..];
        let revision_ok = |rev: &str| rev == "main" || rev == repo.commit;
        match rest {
            [] => {}
            ["revision", rev] if revision_ok(rev) => {}
            ["tree", rev] if revision_ok(rev) => {
                let page: usize = uri
                    .query()
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("cursor=")))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let entries: Vec<serde_json::Value> = repo
                    .files
                    .iter()
                    .skip(page * 2)
                    .take(2)
                    .map(|f| {
                        let mut v = serde_json::json!({
                            "type": "file",
                            "oid": f.git_oid(),
                            "size": f.advertised_size,
                            "path": f.path,
                        });
                        if f.lfs {
                            v["lfs"] = serde_json::json!({
                                "oid": f.sha256(),
                                "size": f.advertised_size,
                                "pointerSize": 134,
                            });
                        }
                        v
                    })
                    .collect();
                let mut response = json_response(StatusCode::OK, serde_json::Value::Array(entries));
                if (page + 1) * 2 < repo.files.len() {
                    let next = format!(
                        "<{}?recursive=true&cursor={}>; rel=\"next\"",
                        path,
                        page + 1
                    );
                    // A relative URL would be wrong for a real client; the Hub sends absolute ones.
                    let host = headers
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("127.0.0.1");
                    let next = next.replacen('<', &format!("<http://{host}"), 1);
                    response
                        .headers_mut()
                        .insert("link", HeaderValue::from_str(&next).unwrap());
                }
                return response;
            }
            _ => return error(StatusCode::NOT_FOUND, "RevisionNotFound", "Invalid rev id"),
        }
        let siblings: Vec<serde_json::Value> = repo
            .files
            .iter()
            .map(|f| serde_json::json!({ "rfilename": f.path }))
            .collect();
        return json_response(
            StatusCode::OK,
            serde_json::json!({ "id": repo.id, "sha": repo.commit, "siblings": siblings }),
        );
    }
    // /{org}/{name}/resolve/{rev}/{path...}
    if segments.len() >= 5 && segments[2] == "resolve" {
        let id = format!("{}/{}", segments[0], segments[1]);
        let Some(repo) = guard.repos.iter().find(|r| r.id == id).cloned() else {
            return error(
                StatusCode::NOT_FOUND,
                "RepoNotFound",
                "Repository not found",
            );
        };
        if repo.gated && !token_ok {
            return error(
                StatusCode::UNAUTHORIZED,
                "GatedRepo",
                "Access to this repository is restricted",
            );
        }
        if segments[3] != "main" && segments[3] != repo.commit {
            return error(StatusCode::NOT_FOUND, "RevisionNotFound", "Invalid rev id");
        }
        let file_path = segments[4..].join("/");
        let Some(file) = repo.files.iter().find(|f| f.path == file_path).cloned() else {
            return error(StatusCode::NOT_FOUND, "EntryNotFound", "Entry not found");
        };
        drop(guard);
        let mut extra = HeaderMap::new();
        extra.insert(
            "x-repo-commit",
            HeaderValue::from_str(&repo.commit).unwrap(),
        );
        if file.lfs {
            let location = format!(
                "{cdn_origin}/cdn/{id}/{}?X-Amz-Signature=secret",
                file.sha256()
            );
            return Response::builder()
                .status(StatusCode::FOUND)
                .header("location", location)
                .header("x-repo-commit", &repo.commit)
                .header("x-linked-etag", format!("\"{}\"", file.etag()))
                .header("x-linked-size", file.advertised_size.to_string())
                .header("etag", "\"pointer-etag\"")
                .body(Body::empty())
                .unwrap();
        }
        extra.insert(
            "etag",
            HeaderValue::from_str(&format!("\"{}\"", file.etag())).unwrap(),
        );
        return serve_bytes(
            state,
            format!("{id}/{}", file.path),
            Arc::clone(&file.content),
            file.faults.clone(),
            &method,
            &headers,
            extra,
        );
    }
    error(StatusCode::NOT_FOUND, "EntryNotFound", "not found")
}

/// Serves `content` (or a byte range of it) with the faults asked for, counting bytes sent.
fn serve_bytes(
    state: Arc<Mutex<State>>,
    key: String,
    content: Arc<Vec<u8>>,
    faults: Faults,
    method: &Method,
    headers: &HeaderMap,
    extra: HeaderMap,
) -> Response<Body> {
    let len = content.len() as u64;
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| {
            let (a, b) = r.split_once('-')?;
            let start: u64 = a.parse().ok()?;
            let end: u64 = if b.is_empty() {
                len.saturating_sub(1)
            } else {
                b.parse().ok()?
            };
            Some((start, end.min(len.saturating_sub(1))))
        });
    let mut builder = Response::builder().header("accept-ranges", "bytes");
    for (name, value) in &extra {
        builder = builder.header(name, value);
    }
    let (status, start, end) = match range {
        Some((start, _)) if start >= len => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header("content-range", format!("bytes */{len}"))
                .body(Body::empty())
                .unwrap();
        }
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end + 1),
        None => (StatusCode::OK, 0, len),
    };
    builder = builder
        .status(status)
        .header("content-length", (end - start).to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header("content-range", format!("bytes {start}-{}/{len}", end - 1));
    }
    if method == Method::HEAD {
        return builder.body(Body::empty()).unwrap();
    }
    let stream = futures_util::stream::unfold((start, 0u64, false), move |(pos, sent, stalled)| {
        let content = Arc::clone(&content);
        let state = Arc::clone(&state);
        let key = key.clone();
        let faults = faults.clone();
        async move {
            if pos >= end {
                return None;
            }
            if let Some(cut) = faults.cut_after {
                if sent >= cut {
                    let err = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut");
                    return Some((Err(err), (end, sent, stalled)));
                }
            }
            if let Some(stall) = faults.stall_after {
                if sent >= stall && !stalled {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            }
            if let Some(delay) = faults.chunk_delay {
                tokio::time::sleep(delay).await;
            }
            let mut n = (64u64 << 10).min(end - pos);
            if let Some(cut) = faults.cut_after {
                n = n.min(cut - sent).max(1);
            }
            if let Some(stall) = faults.stall_after {
                if sent < stall {
                    n = n.min(stall - sent);
                }
            }
            let chunk = Bytes::copy_from_slice(&content[pos as usize..(pos + n) as usize]);
            *state.lock().unwrap().served.entry(key).or_insert(0) += n;
            Some((Ok::<_, std::io::Error>(chunk), (pos + n, sent + n, stalled)))
        }
    });
    builder.body(Body::from_stream(stream)).unwrap()
}
