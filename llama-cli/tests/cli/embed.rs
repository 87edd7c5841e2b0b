//! Embeddings: `llama-cli embed` and `serve --embeddings` (`/v1/embeddings`, `/embeddings`,
//! `/v1/rerank`) on the real model: identical texts give identical vectors, vectors are
//! L2-normalised, similar texts score higher than unrelated ones, token-array inputs equal
//! their text, and rerank answers in Jina's shape.

use serde_json::{json, Value};

use crate::serve::Server;
use crate::support::{assert_clean_failure, llama_cli, model};

const CAT: &str = "The cat sat on the mat.";
const CAT2: &str = "A cat was sitting on a rug.";
const TAX: &str = "Quarterly tax filing deadlines for small businesses";

fn vector(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a vector: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn assert_unit(v: &[f64]) {
    let norm = dot(v, v).sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
}

#[test]
fn embed_gives_normalised_vectors_that_rank_similar_texts_higher() {
    let out = llama_cli()
        .args(["embed", "-m"])
        .arg(model())
        .args(["--pooling", "mean", "-t", "2", "--json"])
        .args(["-p", CAT, "-p", CAT2, "-p", TAX, "-p", CAT])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["pooling"], "mean");
    assert_eq!(value["dimensions"], 576);
    let v: Vec<Vec<f64>> = value["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| vector(&d["embedding"]))
        .collect();
    assert_eq!(v.len(), 4);
    assert_eq!(v[0].len(), 576);
    assert_eq!(v[0], v[3], "the same text twice");
    for x in &v {
        assert_unit(x);
    }
    let (similar, unrelated) = (dot(&v[0], &v[1]), dot(&v[0], &v[2]));
    assert!(similar > unrelated + 0.05, "{similar} vs {unrelated}");

    // Bad input is a clean error.
    let out = llama_cli()
        .args(["embed", "-m"])
        .arg(model())
        .output()
        .unwrap();
    assert!(assert_clean_failure(&out).contains("-p TEXT"));
    let out = llama_cli()
        .args(["embed", "-m"])
        .arg(model())
        .args(["--pooling", "max", "-p", "x"])
        .output()
        .unwrap();
    assert!(assert_clean_failure(&out).contains("pooling"));
}

#[test]
fn serve_embeddings_and_rerank_in_openai_and_llama_server_shapes() {
    let server = Server::start(&["--parallel", "1", "--embeddings", "--pooling", "mean"]);
    let r = server.post(
        "/v1/embeddings",
        &json!({"input": [CAT, CAT2, TAX], "model": "x"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[2]["index"], 2);
    assert_eq!(data[0]["object"], "embedding");
    let v: Vec<Vec<f64>> = data.iter().map(|d| vector(&d["embedding"])).collect();
    for x in &v {
        assert_unit(x);
    }
    assert!(dot(&v[0], &v[1]) > dot(&v[0], &v[2]) + 0.05);
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 10);

    // Token ids give the vector of their text; the un-prefixed route is the same API.
    let ids = server
        .post("/tokenize", &json!({"content": CAT, "add_special": true}))
        .json()["tokens"]
        .clone();
    let by_ids = server.post("/embeddings", &json!({"input": ids})).json();
    let native = vector(&by_ids[0]["embedding"][0]);
    let single = server.post("/v1/embeddings", &json!({"input": CAT})).json();
    let text = vector(&single["data"][0]["embedding"]);
    // The same vector alone as in a batch (up to float rounding of another batch shape).
    assert!(
        max_diff(&text, &v[0]) < 1e-5,
        "alone vs batched: {}",
        max_diff(&text, &v[0])
    );
    assert!(
        max_diff(&native, &text) < 1e-5,
        "ids vs text: {}",
        max_diff(&native, &text)
    );
    // An OpenAI content object of text parts is its text.
    let parts = json!({"content": [{"type": "text", "text": "The cat sat "}, {"type": "text", "text": "on the mat."}]});
    let both = server
        .post("/v1/embeddings", &json!({"input": [CAT, parts]}))
        .json();
    let (a, b) = (
        vector(&both["data"][0]["embedding"]),
        vector(&both["data"][1]["embedding"]),
    );
    assert!(
        max_diff(&a, &b) < 1e-6,
        "content parts vs text: {}",
        max_diff(&a, &b)
    );
    let b64 = server
        .post(
            "/v1/embeddings",
            &json!({"input": CAT, "encoding_format": "base64"}),
        )
        .json();
    assert_eq!(b64["data"][0]["encoding_format"], "base64");
    assert_eq!(
        b64["data"][0]["embedding"].as_str().unwrap().len(),
        (576 * 4usize).div_ceil(3) * 4
    );
    let r = server.post("/v1/embeddings", &json!({"input": []}));
    assert_eq!(r.assert_error(400)["param"], "input");
    let r = server.post("/v1/rerank", &json!({"query": "x", "documents": ["y"]}));
    assert_eq!(r.assert_error(501)["type"], "not_supported_error");
    drop(server);

    // Rank pooling: scores in Jina's shape, sorted, top_n kept.
    let server = Server::start(&["--parallel", "1", "--embeddings", "--pooling", "rank"]);
    let r = server.post(
        "/v1/rerank",
        &json!({"query": "a cat", "documents": [CAT, TAX, CAT2], "top_n": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{body}");
    let scores: Vec<f64> = results
        .iter()
        .map(|r| r["relevance_score"].as_f64().unwrap())
        .collect();
    assert!(scores[0] >= scores[1], "{body}");
    assert!(results.iter().all(|r| r["index"].as_u64().unwrap() < 3));
    let tei = server
        .post(
            "/rerank",
            &json!({"query": "a cat", "texts": [CAT, TAX], "return_text": true}),
        )
        .json();
    assert!(tei[0]["score"].is_number(), "{tei}");
    assert!(tei[0]["text"].is_string(), "{tei}");
    let r = server.post("/v1/embeddings", &json!({"input": CAT}));
    r.assert_error(400);
}

/// Peak RSS of a process (`VmHWM` in /proc/PID/status), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    kib * 1024
}

/// `serve --embeddings` plans its embeddings context with the engine's under `--max-mem`:
/// llama.cpp keeps logits for every token of an embedding input there (49,152 floats a token
/// for SmolLM2), so an input as long as one micro-batch holds costs about 100 MiB. The plan
/// names that part, and such an input keeps the server's peak RSS within the plan and the
/// budget.
#[test]
fn serve_embeddings_context_is_planned_within_the_budget() {
    let server = Server::start(&[
        "--parallel",
        "1",
        "--embeddings",
        "--pooling",
        "mean",
        "--max-mem",
        "400M",
        "-ub",
        "512",
    ]);
    let planned = server.metric("llama_memory_planned_bytes{part=\"embeddings\"}") as u64;
    let total = server.metric("llama_memory_planned_bytes{part=\"total\"}") as u64;
    let logits = 49_152u64 * 512 * 4;
    assert!(
        planned > logits,
        "embeddings context planned at {planned} B"
    );
    // One micro-batch of tokens (" cat" is one token).
    let long = "cat ".repeat(500);
    let r = server.post("/v1/embeddings", &json!({"input": long}));
    assert_eq!(r.status, 200, "{}", r.text());
    let tokens = r.json()["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens > 400, "{tokens} tokens");
    let peak = peak_rss(server.pid());
    assert!(peak <= total, "peak {peak} B over the plan's {total} B");
    assert!(peak <= 400 << 20, "peak {peak} B over the budget");
    // More than one micro-batch is refused, naming the limit.
    let r = server.post("/v1/embeddings", &json!({"input": "cat ".repeat(700)}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("--ubatch-size"), "{}", r.text());
}

/// A budget that holds the engine but not the embeddings context next to it is refused before
/// anything is loaded, as any plan that does not fit.
#[test]
fn serve_embeddings_that_do_not_fit_are_refused_before_loading() {
    let output = llama_cli()
        .args(Server::args(&[
            "--parallel",
            "1",
            "--embeddings",
            "--pooling",
            "mean",
            "--max-mem",
            "230M",
            "--strict",
        ]))
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&output);
    assert!(stderr.contains("embeddings context"), "{stderr}");
    assert!(stderr.contains("--max-mem"), "{stderr}");
}
