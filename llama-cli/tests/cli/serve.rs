//! `llama-cli serve` on loopback with the real model, spoken to over raw HTTP/1.1: endpoints,
//! OpenAI shapes, errors, auth, limits, cancellation on disconnect, the full queue, SIGTERM;
//! and the official `openai` Python client (tests/python/test_openai_client.py).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{assert_clean_failure, llama_cli, model};

pub(crate) const KEY: &str = "s3cret-key";

/// A running server, killed when dropped.
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `llama-cli serve` on 127.0.0.1 with a free port and waits for it to listen.
    pub(crate) fn start(extra: &[&str]) -> Server {
        Server::start_with_env(extra, &[])
    }

    /// [`Server::start`] with these environment variables set.
    pub(crate) fn start_with_env(extra: &[&str], env: &[(&str, &std::path::Path)]) -> Server {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("llama-cli"));
        cmd.args(Server::args(extra)).envs(env.iter().copied());
        Server::spawn(cmd)
    }

    /// `serve` on the test model, a free port, `-t 2`, loopback unless `extra` has `--host`,
    /// `-c` of 512 tokens per sequence (`-c` is the context of all sequences, llama-server's
    /// meaning), then `extra`.
    pub(crate) fn args(extra: &[&str]) -> Vec<std::ffi::OsString> {
        let parallel = extra
            .windows(2)
            .find(|w| w[0] == "--parallel")
            .and_then(|w| w[1].parse::<u32>().ok())
            .unwrap_or(4);
        let ctx = (512 * parallel).to_string();
        let mut args: Vec<std::ffi::OsString> = vec!["serve".into(), "-m".into(), model().into()];
        for a in ["--port", "0", "-c", &ctx, "-t", "2"] {
            args.push(a.into());
        }
        if !extra.contains(&"--host") {
            args.push("--host".into());
            args.push("127.0.0.1".into());
        }
        args.extend(extra.iter().map(Into::into));
        args
    }

    /// Runs `cmd` (which starts a server, perhaps through a wrapper) and waits for it to
    /// listen.
    pub(crate) fn spawn(mut cmd: Command) -> Server {
        cmd.env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn llama-cli serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.strip_prefix("listening on http://") {
                        let port = rest.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                        let _ = tx.send(port);
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut server = Server {
            child: Some(child),
            port: 0,
            stderr: log,
        };
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Some(port)) => server.port = port,
            _ => panic!("server did not start:\n{}", server.log()),
        }
        server
    }

    pub(crate) fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        request(self.port, method, path, headers, body)
    }

    pub(crate) fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[("authorization", &bearer())], b"")
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> Response {
        self.request(
            "POST",
            path,
            &[
                ("authorization", &bearer()),
                ("content-type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    }

    /// One value of `/metrics` (a line `NAME VALUE` or `NAME{labels} VALUE`).
    pub(crate) fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").text();
        text.lines()
            .find(|l| l.split(' ').next() == Some(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }

    /// Sends SIGTERM and waits for the exit; returns the code and the time it took.
    pub(crate) fn terminate(&mut self) -> (Option<i32>, Duration) {
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let mut child = self.child.take().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status.code(), started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server still running 30 s after SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    /// SIGTERM (so the server removes its state directory), SIGKILL after 10 s.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn bearer() -> String {
    format!("Bearer {KEY}")
}

/// A parsed HTTP response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Asserts an OpenAI-style error with this status; returns the error object.
    pub(crate) fn assert_error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        let body = self.json();
        let error = body["error"].clone();
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert!(error["type"].is_string(), "{body}");
        assert!(
            error.get("param").is_some() && error.get("code").is_some(),
            "{body}"
        );
        error
    }
}

pub(crate) fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    stream
}

pub(crate) fn send_head(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
}

/// Reads the status line and headers.
pub(crate) fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (status, headers)
}

/// Reads a body: chunked, or up to Content-Length / end of stream.
pub(crate) fn read_body(reader: &mut impl BufRead, headers: &[(String, String)]) -> Vec<u8> {
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(reader) {
            body.extend_from_slice(&chunk);
        }
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.resize(len, 0);
        reader.read_exact(&mut body).unwrap();
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    body
}

/// One chunk of a chunked body; `None` at the last.
pub(crate) fn read_chunk(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).ok()?;
    chunk.truncate(size);
    (size > 0).then_some(chunk)
}

pub(crate) fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = connect(port);
    send_head(&mut stream, method, path, headers, body);
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let body = read_body(&mut reader, &headers);
    Response {
        status,
        headers,
        body,
    }
}

/// A streamed response being read event by event.
pub(crate) struct EventStream {
    reader: BufReader<TcpStream>,
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pending: String,
}

impl EventStream {
    pub(crate) fn open(port: u16, path: &str, body: &Value) -> EventStream {
        let mut stream = connect(port);
        send_head(
            &mut stream,
            "POST",
            path,
            &[
                ("authorization", &bearer()),
                ("content-type", "application/json"),
            ],
            body.to_string().as_bytes(),
        );
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader);
        EventStream {
            reader,
            status,
            headers,
            pending: String::new(),
        }
    }

    /// The next `data:` payload; `None` at the end of the body.
    pub(crate) fn next_data(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let event: String = self.pending.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(data.join("\n"));
            }
            let chunk = read_chunk(&mut self.reader)?;
            self.pending.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads to `[DONE]`; returns the parsed chunks before it.
    pub(crate) fn collect(mut self) -> Vec<Value> {
        let mut chunks = Vec::new();
        while let Some(data) = self.next_data() {
            if data == "[DONE]" {
                assert!(self.next_data().is_none(), "data after [DONE]");
                return chunks;
            }
            chunks.push(serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}")));
        }
        panic!("stream ended without [DONE]: {chunks:?}");
    }
}

pub(crate) fn chat_body(content: &str, max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": "whatever",
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream": stream,
        "stream_options": {"include_usage": true},
        "user": "an optional hint, ignored",
    })
}

pub(crate) fn assert_usage(usage: &Value) -> (u64, u64) {
    let p = usage["prompt_tokens"].as_u64().expect("prompt_tokens");
    let c = usage["completion_tokens"]
        .as_u64()
        .expect("completion_tokens");
    assert_eq!(usage["total_tokens"].as_u64(), Some(p + c), "{usage}");
    assert!(p > 0 && c > 0, "{usage}");
    (p, c)
}

#[test]
fn serve_speaks_openai_with_auth_errors_limits_and_cancellation() {
    let server = Server::start(&["--parallel", "2", "--api-key", KEY, "--max-body", "64K"]);

    // Liveness needs no key; everything else does.
    let r = server.request("GET", "/health", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = server.request("GET", "/v1/models", &[], b"");
    assert_eq!(r.assert_error(401)["code"], "invalid_api_key");
    let r = server.request("GET", "/ready", &[("authorization", "Bearer wrong")], b"");
    r.assert_error(401);
    let r = server.request(
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", "Bearer s3cret-kex"),
            ("content-type", "application/json"),
        ],
        chat_body("hi", 4, false).to_string().as_bytes(),
    );
    r.assert_error(401);
    let r = server.get("/ready");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "ready");
    let models = server.get("/v1/models").json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "SmolLM2-135M-Instruct.Q4_1");

    // Non-streaming chat: greedy, deterministic, usage consistent.
    let question = "What is the capital of France? Answer in one sentence.";
    let r = server.post("/v1/chat/completions", &chat_body(question, 24, false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("x-request-id").is_some());
    let first = r.json();
    assert_eq!(first["object"], "chat.completion");
    assert!(first["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(first["model"], "SmolLM2-135M-Instruct.Q4_1");
    let choice = &first["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let answer = choice["message"]["content"].as_str().unwrap().to_string();
    assert!(answer.contains("Paris"), "{answer}");
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let (prompt_tokens, completion_tokens) = assert_usage(&first["usage"]);
    let again = server
        .post("/v1/chat/completions", &chat_body(question, 24, false))
        .json();
    assert_eq!(again["choices"][0]["message"]["content"], answer.as_str());
    assert_eq!(
        assert_usage(&again["usage"]),
        (prompt_tokens, completion_tokens)
    );

    // Text completion with a stop string and max_tokens.
    let r = server.post(
        "/v1/completions",
        &json!({"prompt": ["The capital of France is"], "temperature": 0, "max_tokens": 6}),
    );
    let completion = r.json();
    assert_eq!(completion["object"], "text_completion", "{completion}");
    assert!(completion["choices"][0]["text"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    assert_eq!(completion["choices"][0]["finish_reason"], "length");
    assert_eq!(assert_usage(&completion["usage"]).1, 6);

    // Streaming chat: role first, text deltas, finish_reason, usage, [DONE]; same text.
    let stream = EventStream::open(
        server.port,
        "/v1/chat/completions",
        &chat_body(question, 24, true),
    );
    assert_eq!(stream.status, 200);
    assert!(stream
        .headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream")));
    let chunks = stream.collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut text = String::new();
    let mut finish = None;
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"]);
        if let Some(choice) = c["choices"].get(0) {
            text.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
    }
    assert_eq!(text, answer);
    assert_eq!(finish.as_deref(), choice["finish_reason"].as_str());
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        assert_usage(&last["usage"]),
        (prompt_tokens, completion_tokens)
    );

    // Bad requests: OpenAI-style 400s naming the field.
    let json_headers = [
        ("authorization", bearer()),
        ("content-type", "application/json".to_string()),
    ];
    let headers: Vec<(&str, &str)> = json_headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = server.request(
        "POST",
        "/v1/chat/completions",
        &headers,
        b"{\"messages\": [",
    );
    assert_eq!(r.assert_error(400)["type"], "invalid_request_error");
    let mut bad = chat_body("hi", 4, false);
    bad["top_p"] = json!(2);
    let r = server.post("/v1/chat/completions", &bad);
    assert_eq!(r.assert_error(400)["param"], "top_p");
    let mut bad = chat_body("hi", 4, false);
    bad["n"] = json!(100);
    assert_eq!(
        server.post("/v1/chat/completions", &bad).assert_error(400)["param"],
        "n"
    );
    let mut bad = chat_body("hi", 4, false);
    bad["max_tokens"] = json!("many");
    assert_eq!(
        server.post("/v1/chat/completions", &bad).assert_error(400)["param"],
        "max_tokens"
    );
    let r = server.post("/v1/chat/completions", &json!({"messages": []}));
    r.assert_error(400);
    // A JSON body is read whatever its Content-Type says (`curl -d` sends a form's).
    let r = server.request(
        "POST",
        "/v1/completions",
        &[
            ("authorization", &bearer()),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        br#"{"prompt": "Hi", "max_tokens": 2, "temperature": 0}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = server.get("/v1/nothing-here");
    r.assert_error(404);

    // Oversized body: 413 (limit 64K), and a prompt that can never fit the context: 400.
    let huge = "word ".repeat(20_000);
    let r = server.post("/v1/completions", &json!({"prompt": huge}));
    assert_eq!(r.assert_error(413)["code"], "request_too_large");
    let long = "word ".repeat(2_000);
    let r = server.post("/v1/completions", &json!({"prompt": long, "max_tokens": 4}));
    let error = r.assert_error(400);
    assert!(
        error["message"].as_str().unwrap().contains("fit"),
        "{error}"
    );

    // A client that disconnects mid-stream cancels its request and frees its KV blocks.
    let blocks_before = server.metric("llama_kv_blocks_used");
    let cancelled_before = server.metric("llama_engine_requests_cancelled_total");
    let mut stream = EventStream::open(
        server.port,
        "/v1/completions",
        &json!({"prompt": "Count from 1 to 500: 1, 2, 3,", "max_tokens": 400, "temperature": 0,
                "stream": true}),
    );
    assert_eq!(stream.status, 200);
    for _ in 0..3 {
        let data = stream.next_data().expect("a chunk");
        assert_ne!(data, "[DONE]");
    }
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cancelled = server.metric("llama_engine_requests_cancelled_total");
        let blocks = server.metric("llama_kv_blocks_used");
        let active = server.metric("llama_requests_active");
        if cancelled > cancelled_before && blocks <= blocks_before && active == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not cancelled: cancelled {cancelled} (before {cancelled_before}), blocks {blocks} (before {blocks_before}), active {active}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Metrics: requests by status, tokens, histograms, memory.
    let metrics = server.get("/metrics");
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.text();
    for needle in [
        "llama_requests_total{endpoint=\"chat_completions\",status=\"200\"} 3",
        "llama_requests_total{endpoint=\"models\",status=\"401\"} 1",
        "llama_requests_total{endpoint=\"completions\",status=\"413\"} 1",
        "llama_time_to_first_token_seconds_count",
        "llama_time_per_output_token_seconds_bucket",
        "llama_queue_depth 0",
        "llama_kv_blocks_free",
        "llama_memory_peak_rss_bytes",
        "llama_budget_exceeded_events_total 0",
        // llama-server's names for the same figures.
        "# TYPE llamacpp:tokens_predicted_total counter",
        "llamacpp:requests_processing 0",
        "llamacpp:requests_deferred 0",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(server.metric("llama_completion_tokens_total") >= (3 * completion_tokens + 6) as f64);

    // One log line per request, with its id and status.
    let log = server.log();
    assert!(
        log.contains("path=/v1/chat/completions status=200"),
        "{log}"
    );
    assert!(log.contains("status=401"), "{log}");
}

/// The `llama-rs-serve-*` directories in `dir`.
fn state_dirs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("llama-rs-serve-")
        })
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn serve_answers_429_when_the_queue_is_full_and_exits_0_on_sigterm() {
    // The default state directory is private, and no server removes another's: a directory
    // named as the old scheme named a dead server's (`llama-rs-serve-PID`) stays.
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("llama-rs-serve-4000000000");
    std::fs::create_dir(&other).unwrap();
    let mut server = Server::start_with_env(
        &[
            "--parallel",
            "1",
            "--queue",
            "1",
            "--shutdown-timeout",
            "1",
            "--api-key",
            KEY,
        ],
        &[("TMPDIR", tmp.path())],
    );
    let dirs = state_dirs(tmp.path());
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    let own = dirs.iter().find(|d| **d != other).unwrap().clone();
    let mode = std::fs::metadata(&own).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{}: {mode:o}", own.display());
    let long = json!({"prompt": "Count from 1 to 500: 1, 2, 3,", "max_tokens": 450,
                      "temperature": 0, "stream": true});
    // One request decoding, one waiting: the next is refused with 429 and Retry-After.
    let mut running = EventStream::open(server.port, "/v1/completions", &long);
    assert_eq!(running.status, 200);
    running.next_data().expect("first chunk");
    let waiting = EventStream::open(server.port, "/v1/completions", &long);
    assert_eq!(waiting.status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric("llama_queue_depth") < 1.0 {
        assert!(Instant::now() < deadline, "request not queued");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = server.get("/ready");
    assert_eq!(r.status, 503, "{}", r.text());
    let r = server.post("/v1/completions", &long);
    assert_eq!(r.assert_error(429)["code"], "queue_full");
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(waiting);

    // SIGTERM with a request still running: it is cancelled at the 1 s deadline, exit 0.
    let (code, took) = server.terminate();
    assert_eq!(code, Some(0), "{}", server.log());
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
    let mut finish = None;
    while let Some(data) = running.next_data() {
        if data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert!(
        matches!(finish.as_deref(), Some("cancelled" | "length")),
        "{finish:?}"
    );
    assert!(server.log().contains("shutting down"), "{}", server.log());
    assert_eq!(
        state_dirs(tmp.path()),
        vec![other],
        "own directory not removed at exit"
    );
}

#[test]
fn serve_refuses_a_public_address_without_a_key() {
    let out = llama_cli()
        .args(["serve", "-m"])
        .arg(model())
        .args(["--host", "0.0.0.0", "--port", "0"])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("--no-auth"), "{stderr}");
    let out = llama_cli()
        .args(["serve", "-m"])
        .arg(model())
        .args(["--parallel", "0"])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("parallel"), "{stderr}");
}

#[test]
fn openai_python_client() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = crate::support::python_env().expect("scripts/python-env.sh failed");
    let out = Command::new(python)
        .arg(root.join("tests/python/test_openai_client.py"))
        .arg("--binary")
        .arg(assert_cmd::cargo::cargo_bin("llama-cli"))
        .arg("--model")
        .arg(model())
        .output()
        .expect("run the Python test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("8 passed, 0 failed"), "{stdout}\n{stderr}");
}

/// Issue #4's integration scenario through the server: eight two-turn conversations that
/// together need more KV than the two sequences' cache holds all finish, sessions are evicted to disk and
/// restored, and the server's peak RSS stays within --max-mem.
#[test]
fn eight_conversations_over_the_kv_budget_finish_within_max_mem() {
    const BUDGET: u64 = 400 << 20;
    let server = Server::start(&["--parallel", "2", "--max-mem", "400M"]);
    let port = server.port;
    let topics = [
        "the moon",
        "bread",
        "rivers",
        "chess",
        "volcanoes",
        "bicycles",
        "owls",
        "tea",
    ];
    let handles: Vec<_> = topics
        .iter()
        .map(|topic| {
            let topic = topic.to_string();
            std::thread::spawn(move || {
                let mut messages =
                    vec![json!({"role": "user", "content": format!("Tell me about {topic}.")})];
                let mut answers = Vec::new();
                let mut tokens = 0;
                for follow_up in ["Tell me one more fact.", ""] {
                    let body = json!({"messages": messages, "temperature": 0, "max_tokens": 64});
                    let response = request(
                        port,
                        "POST",
                        "/v1/chat/completions",
                        &[
                            ("authorization", &bearer()),
                            ("content-type", "application/json"),
                        ],
                        body.to_string().as_bytes(),
                    );
                    assert_eq!(response.status, 200, "{}", response.text());
                    tokens = response.json()["usage"]["total_tokens"].as_u64().unwrap();
                    let answer = response.json()["choices"][0]["message"]["content"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    assert!(!answer.trim().is_empty());
                    messages.push(json!({"role": "assistant", "content": answer.clone()}));
                    if !follow_up.is_empty() {
                        messages.push(json!({"role": "user", "content": follow_up}));
                    }
                    answers.push(answer);
                }
                (answers, tokens)
            })
        })
        .collect();
    let mut needed = 0;
    for h in handles {
        let (answers, tokens) = h.join().unwrap();
        assert_eq!(answers.len(), 2);
        needed += tokens;
    }
    let capacity = (server.metric("llama_kv_blocks_used") + server.metric("llama_kv_blocks_free"))
        as u64
        * 256;
    assert!(
        needed > capacity,
        "the conversations need {needed} tokens of KV, more than the {capacity} it holds"
    );
    assert!(
        server.metric("llama_kv_evictions_total") > 0.0,
        "sessions were evicted"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        peak_kib * 1024 <= BUDGET,
        "server peak RSS {peak_kib} KiB over the 400 MiB budget"
    );
}

#[test]
fn serve_streams_layers_under_a_budget_below_the_weights_with_the_answer_prompt_gives() {
    // The same run path as `prompt`: a budget below what the 92 MiB of weights and the process
    // need resident (about 150 MiB) streams layers from disk in the server too, and the greedy
    // answer is the one `prompt` gives under it. The server plans more than `prompt` (its HTTP
    // stack and a grammar's decoded candidates, 21 MiB for SmolLM2's vocabulary): 114 MiB
    // at the least in a debug build.
    let question = "What is the capital of France? Answer in one sentence.";
    let budget = ["--max-mem", "128M"];
    let prompt = llama_cli()
        .args([
            "prompt",
            "-m",
            model().to_str().unwrap(),
            "--temp",
            "0",
            "-n",
            "16",
        ])
        .args(["-c", "512", "-t", "2"])
        .args(budget)
        .arg(question)
        .output()
        .unwrap();
    let prompt_err = String::from_utf8_lossy(&prompt.stderr).into_owned();
    assert!(prompt.status.success(), "{prompt_err}");
    assert!(
        prompt_err.contains("streaming layers from disk"),
        "{prompt_err}"
    );
    let server = Server::start(&["--parallel", "1", "--api-key", KEY, budget[0], budget[1]]);
    assert!(
        server.log().contains("streaming layers from disk"),
        "{}",
        server.log()
    );
    let reply = server.post("/v1/chat/completions", &chat_body(question, 16, false));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        answer.trim(),
        String::from_utf8_lossy(&prompt.stdout).trim(),
        "serve and prompt give the same greedy answer under the same budget"
    );
}
