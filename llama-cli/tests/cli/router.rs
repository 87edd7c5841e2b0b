//! `llama-cli serve` without `-m` (issue 16): the test model and generated ones in a
//! `--models-dir`, under a `--max-mem` that cannot hold them all. Requests alternate between
//! models and all answer; the process's RSS (sampled from /proc, every process of its tree)
//! stays under the budget; a busy model is not evicted; pinning; idle unload; a model that can
//! never fit is refused with the reason; a conversation continues with its KV after its model
//! was unloaded, with the same greedy answer as without the unload.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llama_core::gguf::synthetic::SyntheticModel;
use llama_core::gguf::GgmlType;
use serde_json::{json, Value};

use crate::support::model;

const MIB: u64 = 1 << 20;

/// A models directory: the test model (linked as `smol.gguf`), a generated llama model
/// `synth-a.gguf`, and another one in a sub-folder (`synth-b/`).
fn models_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(model(), dir.path().join("smol.gguf")).unwrap();
    let mut a = SyntheticModel::llama(GgmlType::F16);
    a.n_embd = 512;
    a.n_ff = 1536;
    a.n_layer = 6;
    a.write_to(&dir.path().join("synth-a.gguf")).unwrap();
    std::fs::create_dir(dir.path().join("synth-b")).unwrap();
    let mut b = SyntheticModel::llama(GgmlType::F16);
    b.seed = 7;
    b.n_layer = 8;
    b.n_embd = 384;
    b.n_ff = 1024;
    b.write_to(&dir.path().join("synth-b").join("synth-b.gguf"))
        .unwrap();
    dir
}

/// A running router, stopped with SIGTERM when dropped.
struct Router {
    child: Option<Child>,
    port: u16,
    log: Arc<Mutex<String>>,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// The RSS of `pid` and every process below it, in bytes.
fn tree_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    let mut children = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in text.split_whitespace().filter_map(|c| c.parse().ok()) {
                children += tree_rss(child);
            }
        }
    }
    rss + children
}

/// `serve` without `-m` over the models of `dir`, listening on `host` (port 0), its stderr
/// piped.
fn router_command(dir: &Path, host: &str) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("llama-cli"));
    cmd.arg("serve")
        .arg("--models-dir")
        .arg(dir)
        .args(["--no-models-store", "--host", host, "--port", "0"])
        .args(["-c", "512", "-t", "2"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

impl Router {
    fn start(dir: &Path, extra: &[&str]) -> Router {
        let mut child = router_command(dir, "127.0.0.1")
            .args(["--parallel", "1"])
            .args(extra)
            .spawn()
            .expect("spawn llama-cli serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.strip_prefix("listening on http://") {
                        let _ = tx.send(rest.rsplit(':').next().and_then(|p| p.parse().ok()));
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (peak, stop, pid) = (Arc::clone(&peak), Arc::clone(&stop), child.id());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(tree_rss(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        let mut router = Router {
            child: Some(child),
            port: 0,
            log,
            peak,
            stop,
        };
        match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(Some(port)) => router.port = port,
            _ => panic!("router did not start:\n{}", router.log()),
        }
        router
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The process's own peak RSS (VmHWM).
    fn hwm(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    }

    fn get(&self, path: &str) -> (u16, Value) {
        http(self.port, "GET", path, None)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        http(self.port, "POST", path, Some(body))
    }

    fn models(&self) -> Vec<Value> {
        let (status, body) = self.get("/v1/models");
        assert_eq!(status, 200, "{body}");
        body["data"].as_array().unwrap().clone()
    }

    fn model(&self, id: &str) -> Value {
        self.models()
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no model {id}"))
    }

    fn phase(&self, id: &str) -> String {
        self.model(id)["status"]["value"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn complete(&self, id: &str, prompt: &str) -> (u16, Value) {
        self.post(
            "/v1/completions",
            &json!({"model": id, "prompt": prompt, "max_tokens": 4, "temperature": 0}),
        )
    }

    fn metrics(&self) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let (_, body) = read_response(stream);
        String::from_utf8_lossy(&body).into_owned()
    }

    /// `NAME{model="ID"} VALUE` of `/metrics`.
    fn model_metric(&self, name: &str, id: &str) -> f64 {
        let text = self.metrics();
        let prefix = format!("{name}{{model=\"{id}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
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

/// Reads a whole `connection: close` response: status and body (chunked bodies decoded).
fn read_response(stream: TcpStream) -> (u16, Vec<u8>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut chunked = false;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut raw = Vec::new();
    reader.read_to_end(&mut raw).unwrap();
    if !chunked {
        return (status, raw);
    }
    let mut body = Vec::new();
    let mut rest = &raw[..];
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&rest[..end])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        rest = &rest[end + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    (status, body)
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let (status, body) = read_response(stream);
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, value)
}

/// The planned bytes of every model and the process baseline, from a router with room for
/// all of them.
fn sizes(dir: &Path) -> (Vec<(String, u64)>, u64) {
    let router = Router::start(dir, &["--max-mem", "4G"]);
    let (_, body) = router.get("/v1/models");
    let baseline = body["budget"]["baseline"].as_u64().unwrap();
    let sizes = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["planned_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    (sizes, baseline)
}

/// A budget with room for the largest model alone and not for all: baseline, the largest
/// model, and `extra`.
fn budget_for_one(dir: &Path, extra: u64) -> (u64, Vec<(String, u64)>) {
    let (sizes, baseline) = sizes(dir);
    let largest = sizes.iter().map(|s| s.1).max().unwrap();
    let total: u64 = sizes.iter().map(|s| s.1).sum();
    let budget = baseline + largest + extra;
    assert!(
        baseline + total > budget,
        "the models must not fit together: {sizes:?}, baseline {baseline}"
    );
    (budget, sizes)
}

fn mem_arg(bytes: u64) -> String {
    format!("{}M", bytes.div_ceil(MIB))
}

#[test]
fn router_lists_every_model_with_its_plan() {
    let dir = models_dir();
    let router = Router::start(dir.path(), &["--max-mem", "4G"]);
    let models = router.models();
    let ids: Vec<&str> = models.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["smol", "synth-a", "synth-b"]);
    for m in &models {
        assert_eq!(m["status"]["value"], "unloaded", "{m}");
        assert!(m["planned_bytes"].as_u64().unwrap() > MIB, "{m}");
        assert_eq!(m["fits"], true, "{m}");
        assert_eq!(m["source"], "dir");
    }
    // A request without a model, or for an unknown one, is refused with the reason.
    let (status, body) = router.post("/v1/completions", &json!({"prompt": "x"}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "model");
    let (status, body) = router.complete("nope", "x");
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "model_not_found");
    // Loads on first use.
    let (status, body) = router.complete("synth-b", "Hello");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "synth-b");
    assert_eq!(router.phase("synth-b"), "loaded");
    assert_eq!(
        router.model_metric("llama_router_model_loads_total", "synth-b"),
        1.0
    );
    // Unload and load by hand (llama-server's router routes).
    let (status, body) = router.post("/models/unload", &json!({"model": "synth-b"}));
    assert_eq!((status, &body), (200, &json!({"success": true})));
    assert_eq!(router.phase("synth-b"), "unloaded");
    let (status, body) = router.post("/models/unload", &json!({"model": "synth-b"}));
    assert_eq!(status, 400, "{body}");
    let (status, _) = router.post("/models/load", &json!({"model": "synth-a"}));
    assert_eq!(status, 200);
    assert_eq!(router.phase("synth-a"), "loaded");
}

#[test]
fn router_alternates_models_under_a_budget_that_holds_one() {
    let dir = models_dir();
    let (budget, sizes) = budget_for_one(dir.path(), 8 * MIB);
    let router = Router::start(dir.path(), &["--max-mem", &mem_arg(budget)]);
    let budget = budget.div_ceil(MIB) * MIB;
    for round in 0..2 {
        for (id, _) in &sizes {
            let (status, body) = router.complete(id, "The capital of France is");
            assert_eq!(status, 200, "round {round}, {id}: {body}\n{}", router.log());
            assert_eq!(body["model"], id.as_str());
            let models = router.models();
            let loaded: Vec<&Value> = models
                .iter()
                .filter(|m| m["status"]["value"] != "unloaded")
                .collect();
            assert!(loaded.iter().any(|m| m["id"] == id.as_str()));
            let bytes: u64 = loaded
                .iter()
                .map(|m| m["planned_bytes"].as_u64().unwrap())
                .sum();
            let (_, list) = router.get("/v1/models");
            let capacity = list["budget"]["for_models"].as_u64().unwrap();
            assert!(bytes <= capacity, "{bytes} over {capacity}: {models:?}");
        }
    }
    for (id, _) in &sizes {
        assert_eq!(
            router.model_metric("llama_router_model_loads_total", id),
            2.0
        );
        assert!(router.model_metric("llama_router_model_evictions_total", id) >= 1.0);
        assert!(router.model_metric("llama_router_model_load_seconds_total", id) > 0.0);
    }
    let peak = router.peak.load(Ordering::Relaxed).max(router.hwm());
    eprintln!(
        "budget {} MiB, peak RSS {:.1} MiB, models {sizes:?}",
        budget / MIB,
        peak as f64 / MIB as f64
    );
    assert!(
        peak <= budget,
        "peak RSS {peak} over the budget {budget}\n{}",
        router.log()
    );
}

#[test]
fn router_never_evicts_a_busy_model() {
    let dir = models_dir();
    let (budget, _) = budget_for_one(dir.path(), 8 * MIB);
    let router = Router::start(
        dir.path(),
        &["--max-mem", &mem_arg(budget), "--load-timeout", "2"],
    );
    // A long streamed answer on smol, read slowly: smol stays busy.
    let mut stream = TcpStream::connect(("127.0.0.1", router.port)).unwrap();
    let body = json!({"model": "smol", "prompt": "Once upon a time", "max_tokens": 400,
        "temperature": 0, "stream": true, "ignore_eos": true})
    .to_string();
    write!(
        stream,
        "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 64];
    stream.read_exact(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first).contains("200"), "{first:?}");
    assert_eq!(router.phase("smol"), "loaded");
    assert_eq!(router.model("smol")["requests_in_flight"], 1);
    let (status, body) = router.complete("synth-a", "Hello");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "model_unavailable");
    assert_eq!(router.phase("smol"), "loaded");
    assert_eq!(router.phase("synth-a"), "unloaded");
    let (status, body) = router.post("/models/unload", &json!({"model": "smol"}));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("in flight"));
    // The client goes away: the request is cancelled, smol is idle and may go.
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(30);
    while router.model("smol")["requests_in_flight"] != 0 {
        assert!(Instant::now() < deadline, "{}", router.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = router.complete("synth-a", "Hello");
    assert_eq!(status, 200, "{body}");
    assert_eq!(router.phase("smol"), "unloaded");
}

#[test]
fn router_keeps_pinned_models_and_unloads_idle_ones() {
    let dir = models_dir();
    let (sizes, baseline) = sizes(dir.path());
    let size = |id: &str| sizes.iter().find(|s| s.0 == id).unwrap().1;
    // Room for smol and one of the others, not for all three.
    let budget = baseline + size("smol") + size("synth-a").max(size("synth-b")) + 8 * MIB;
    let router = Router::start(
        dir.path(),
        &[
            "--max-mem",
            &mem_arg(budget),
            "--pin",
            "smol",
            "--idle-unload",
            "1s",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while router.phase("smol") != "loaded" {
        assert!(
            Instant::now() < deadline,
            "pinned model not loaded:\n{}",
            router.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(router.model("smol")["pinned"], true);
    for id in ["synth-a", "synth-b", "synth-a"] {
        let (status, body) = router.complete(id, "Hello");
        assert_eq!(status, 200, "{id}: {body}");
        assert_eq!(router.phase("smol"), "loaded", "the pinned model stays");
    }
    // Idle for a second: synth-a goes, the pinned model stays.
    let deadline = Instant::now() + Duration::from_secs(20);
    while router.phase("synth-a") != "unloaded" {
        assert!(
            Instant::now() < deadline,
            "not unloaded when idle:\n{}",
            router.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(router.phase("smol"), "loaded");
    assert!(router.model_metric("llama_router_model_idle_unloads_total", "synth-a") >= 1.0);
    assert_eq!(
        router.model_metric("llama_router_model_evictions_total", "smol"),
        0.0
    );
}

#[test]
fn router_refuses_a_model_that_can_never_fit_with_the_reason() {
    let dir = models_dir();
    let (sizes, baseline) = sizes(dir.path());
    let size = |id: &str| sizes.iter().find(|s| s.0 == id).unwrap().1;
    let small = size("synth-a").max(size("synth-b"));
    assert!(size("smol") > small + 16 * MIB, "{sizes:?}");
    let budget = baseline + small + 8 * MIB;
    // Without degradation (a preset's run setting): the planner would stream smol's layers.
    let presets = dir.path().join("presets.toml");
    std::fs::write(&presets, "[models.smol]\nstrict = true\n").unwrap();
    let router = Router::start(
        dir.path(),
        &[
            "--max-mem",
            &mem_arg(budget),
            "--models-preset",
            presets.to_str().unwrap(),
        ],
    );
    let smol = router.model("smol");
    assert_eq!(smol["fits"], false, "{smol}");
    assert!(
        smol["refusal"].as_str().is_some_and(|r| !r.is_empty()),
        "{smol}"
    );
    let (status, body) = router.complete("smol", "Hello");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "model_does_not_fit");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-mem"),
        "{body}"
    );
    let (status, body) = router.complete("synth-a", "Hello");
    assert_eq!(status, 200, "{body}");
}

/// A two-turn conversation's second answer, and its cached prompt tokens.
fn second_turn(port: u16, model: &str, first: &str) -> (String, u64) {
    let messages = json!([
        {"role": "user", "content": "Name three colours."},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "And three animals?"},
    ]);
    let (status, body) = http(
        port,
        "POST",
        "/v1/chat/completions",
        Some(&json!({"model": model, "messages": messages, "max_tokens": 16, "temperature": 0})),
    );
    assert_eq!(status, 200, "{body}");
    (
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string(),
        body["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap(),
    )
}

fn first_turn(port: u16, model: &str) -> String {
    let (status, body) = http(
        port,
        "POST",
        "/v1/chat/completions",
        Some(&json!({"model": model, "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "user", "content": "Name three colours."}]})),
    );
    assert_eq!(status, 200, "{body}");
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn router_sessions_survive_an_unload() {
    let dir = models_dir();
    let (budget, _) = budget_for_one(dir.path(), 8 * MIB);
    let mem = mem_arg(budget);
    // Without a swap: the single-model server, same settings.
    let reference = {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("llama-cli"))
            .arg("serve")
            .arg("-m")
            .arg(model())
            .args(["--host", "127.0.0.1", "--port", "0", "-c", "512", "-t", "2"])
            .args(["--parallel", "1", "--max-mem", &mem])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port: u16 = loop {
            let line = lines.next().expect("server output").unwrap();
            if let Some(rest) = line.strip_prefix("listening on http://") {
                break rest.rsplit(':').next().unwrap().parse().unwrap();
            }
        };
        let first = first_turn(port, "smol");
        let second = second_turn(port, "smol", &first);
        let _ = child.kill();
        let _ = child.wait();
        (first, second.0)
    };
    let router = Router::start(dir.path(), &["--max-mem", &mem]);
    let first = first_turn(router.port, "smol");
    assert_eq!(first, reference.0);
    // Another model takes the memory: smol is unloaded, its session parked.
    let (status, body) = router.complete("synth-a", "Hello");
    assert_eq!(status, 200, "{body}");
    assert_eq!(router.phase("smol"), "unloaded");
    assert_eq!(
        router.model_metric("llama_router_model_sessions_parked_total", "smol"),
        1.0
    );
    // The conversation continues on the reloaded model from its saved KV.
    let (second, cached) = second_turn(router.port, "smol", &first);
    assert!(cached > 0, "the KV was not restored:\n{}", router.log());
    assert_eq!(second, reference.1, "the greedy continuation differs");
}

#[test]
fn router_reads_presets() {
    let dir = models_dir();
    let presets = dir.path().join("presets.toml");
    std::fs::write(
        &presets,
        format!(
            "[models.smol]\naliases = [\"tiny\"]\nctx-size = 256\n\n[models.extra]\nmodel = {:?}\nparallel = 2\n",
            dir.path().join("synth-a.gguf").display().to_string()
        ),
    )
    .unwrap();
    let router = Router::start(
        dir.path(),
        &[
            "--max-mem",
            "4G",
            "--models-preset",
            presets.to_str().unwrap(),
        ],
    );
    let smol = router.model("smol");
    assert_eq!(smol["aliases"], json!(["tiny"]));
    assert_eq!(smol["n_ctx_per_seq"], 256);
    let extra = router.model("extra");
    assert_eq!(extra["source"], "preset");
    assert_eq!(extra["parallel"], 2);
    // -c 512 is the context of its two sequences together, as with one model.
    assert_eq!(extra["n_ctx_per_seq"], 256);
    let (status, body) = router.complete("tiny", "Hello");
    assert_eq!(status, 200, "{body}");
    assert_eq!(router.phase("smol"), "loaded");
}

#[test]
fn router_requests_for_a_loading_model_wait_and_one_load_serves_them() {
    let dir = models_dir();
    let router = Router::start(dir.path(), &["--max-mem", "4G"]);
    let port = router.port;
    let clients: Vec<_> = (0..4)
        .map(|k| {
            std::thread::spawn(move || {
                http(
                    port,
                    "POST",
                    "/v1/completions",
                    Some(&json!({"model": "smol", "prompt": format!("Count to {k}:"),
                        "max_tokens": 2, "temperature": 0})),
                )
            })
        })
        .collect();
    for client in clients {
        let (status, body) = client.join().unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        router.model_metric("llama_router_model_loads_total", "smol"),
        1.0
    );
}

#[test]
fn router_refuses_to_start_without_models_or_with_a_bad_preset() {
    use crate::support::{assert_clean_failure, llama_cli};
    let empty = tempfile::tempdir().unwrap();
    let out = llama_cli()
        .args([
            "serve",
            "--no-models-store",
            "--port",
            "0",
            "--max-mem",
            "1G",
        ])
        .arg("--models-dir")
        .arg(empty.path())
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("no models to serve"), "{stderr}");
    let presets = empty.path().join("p.toml");
    std::fs::write(&presets, "[models.x]\nctx-sise = 1\n").unwrap();
    let out = llama_cli()
        .args([
            "serve",
            "--no-models-store",
            "--port",
            "0",
            "--max-mem",
            "1G",
        ])
        .arg("--models-preset")
        .arg(&presets)
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    assert!(
        stderr.contains("models.x") && stderr.contains("ctx-sise"),
        "{stderr}"
    );
    let dir = models_dir();
    let out = llama_cli()
        .args([
            "serve",
            "--no-models-store",
            "--port",
            "0",
            "--max-mem",
            "1G",
        ])
        .args(["--pin", "nope", "--models-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("--pin \"nope\""), "{stderr}");
}

#[test]
fn router_listens_on_every_host_address() {
    let dir = models_dir();
    let mut child = router_command(dir.path(), "127.0.0.1,127.0.0.2")
        .args(["--max-mem", "4G"])
        .spawn()
        .expect("spawn llama-cli serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut listening = Vec::new();
    let mut log = String::new();
    while listening.len() < 2 {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            panic!("the router stopped before listening twice:\n{log}");
        };
        if let Some(rest) = line.strip_prefix("listening on http://") {
            let (host, port) = rest.rsplit_once(':').unwrap();
            listening.push((host.to_string(), port.parse::<u16>().unwrap()));
        }
        log.push_str(&line);
        log.push('\n');
    }
    std::thread::spawn(move || for _ in lines {});
    let hosts: Vec<&str> = listening.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(hosts, ["127.0.0.1", "127.0.0.2"], "{log}");
    for (host, port) in &listening {
        let mut s = TcpStream::connect((host.as_str(), *port)).unwrap();
        s.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (status, body) = read_response(s);
        assert_eq!(status, 200, "{host}: {}", String::from_utf8_lossy(&body));
        let models: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(models["data"].as_array().map(Vec::len), Some(3), "{models}");
    }
    let _ = child.kill();
    let _ = child.wait();
}
