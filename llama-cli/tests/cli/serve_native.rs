//! llama-server's native `/completion` beyond its basic shape: token probabilities
//! (`n_probs`, `post_sampling_probs`, streamed and not), `logit_bias` and grammars on the
//! native API; and `/metrics` under llama-server's `llamacpp:*` names, its timings, its
//! `Process-Start-Time-Unix` header and `--no-metrics`.

use serde_json::{json, Value};

use crate::serve::{EventStream, Server};

/// The `data:` payloads of a native stream.
fn native_events(mut stream: EventStream) -> Vec<Value> {
    let mut events = Vec::new();
    while let Some(data) = stream.next_data() {
        events.push(serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}")));
    }
    events
}

/// Checks one `completion_probabilities` entry: `id`, `token`, `bytes`, and `value_key` (with
/// `top_key` of at most `n` alternatives, largest first); returns the entry's value.
fn check_entry(entry: &Value, value_key: &str, top_key: &str, n: usize) -> f64 {
    assert!(entry["id"].as_i64().is_some(), "{entry}");
    assert!(entry["token"].is_string(), "{entry}");
    let bytes: Vec<u8> = serde_json::from_value(entry["bytes"].clone()).expect("bytes");
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        entry["token"].as_str().unwrap()
    );
    let top = entry[top_key].as_array().expect("alternatives");
    assert!(!top.is_empty() && top.len() <= n, "{entry}");
    let values: Vec<f64> = top.iter().map(|t| t[value_key].as_f64().unwrap()).collect();
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "{entry}");
    entry[value_key].as_f64().expect("value")
}

#[test]
fn native_completion_reports_probabilities_and_takes_biases_and_grammars() {
    let server = Server::start(&["--parallel", "1"]);
    let prompt = "I believe the meaning of life is";

    // n_probs: per generated token its log-probability and the 10 most likely, raw logits.
    let body = json!({"prompt": prompt, "n_probs": 10, "temperature": 0, "n_predict": 5});
    let answer = server.post("/completion", &body).json();
    let probs = answer["completion_probabilities"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(probs.len(), 5, "{answer}");
    let mut text = String::new();
    for entry in probs {
        let logprob = check_entry(entry, "logprob", "top_logprobs", 10);
        assert!(logprob <= 0.0);
        assert_eq!(entry["top_logprobs"].as_array().unwrap().len(), 10);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(entry["id"], entry["top_logprobs"][0]["id"], "{entry}");
        assert_eq!(entry["logprob"], entry["top_logprobs"][0]["logprob"]);
        text.push_str(entry["token"].as_str().unwrap());
    }
    assert_eq!(answer["content"], text.as_str(), "{answer}");
    assert_eq!(answer["generation_settings"]["n_probs"], 10);
    assert_eq!(answer["generation_settings"]["logit_bias"], json!([]));
    let first_token = probs[0]["id"].as_i64().unwrap();

    // Streamed: the pieces carry the same probabilities, in order.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = native_events(EventStream::open(server.port, "/completion", &streamed));
    let ids: Vec<&Value> = events
        .iter()
        .filter(|e| e["stop"] == false)
        .flat_map(|e| {
            e["completion_probabilities"]
                .as_array()
                .unwrap_or_else(|| panic!("{e}"))
        })
        .map(|p| &p["id"])
        .collect();
    let expected: Vec<&Value> = probs.iter().map(|p| &p["id"]).collect();
    assert_eq!(ids, expected, "{events:?}");

    // post_sampling_probs: probabilities after the sampler chain; top_k 3 leaves three
    // candidates at most, which hold the whole distribution.
    let answer = server
        .post(
            "/completion",
            &json!({"prompt": prompt, "n_probs": 10, "temperature": 1.0, "top_k": 3,
                    "n_predict": 5, "post_sampling_probs": true, "seed": 7}),
        )
        .json();
    let probs = answer["completion_probabilities"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(probs.len(), 5, "{answer}");
    for entry in probs {
        let p = check_entry(entry, "prob", "top_probs", 3);
        assert!(p > 0.0 && p <= 1.0, "{entry}");
        let top = entry["top_probs"].as_array().unwrap();
        assert!(top.iter().any(|t| t["id"] == entry["id"]), "{entry}");
        let sum: f64 = top.iter().map(|t| t["prob"].as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "{entry}");
        assert!(entry.get("logprob").is_none());
    }

    // logit_bias on the native API, as [id, bias] pairs, an object, or by text: banning the
    // greedy first token changes it.
    for bias in [
        json!([[first_token, -100]]),
        json!({first_token.to_string(): false}),
    ] {
        let answer = server
            .post(
                "/completion",
                &json!({"prompt": prompt, "n_probs": 1, "temperature": 0, "n_predict": 1,
                        "logit_bias": bias}),
            )
            .json();
        let id = &answer["completion_probabilities"][0]["id"];
        assert_ne!(id.as_i64(), Some(first_token), "{answer}");
    }
    let word = probs_text(&server, prompt);
    let answer = server
        .post(
            "/completion",
            &json!({"prompt": prompt, "temperature": 0, "n_predict": 1,
                    "logit_bias": [[word.clone(), -100]]}),
        )
        .json();
    assert_ne!(answer["content"], word.as_str(), "{answer}");
    let r = server.post(
        "/completion",
        &json!({"prompt": prompt, "logit_bias": [[99_999_999, 1]]}),
    );
    assert_eq!(r.assert_error(400)["param"], "logit_bias");

    // A grammar holds the native answer too.
    let answer = server
        .post(
            "/completion",
            &json!({"prompt": "Is the sky blue? Answer:", "n_predict": 8,
                    "grammar": "root ::= \" yes\" | \" no\""}),
        )
        .json();
    let content = answer["content"].as_str().unwrap();
    assert!(content == " yes" || content == " no", "{answer}");
    let r = server.post(
        "/completion",
        &json!({"prompt": "x", "grammar": "root ::= nope"}),
    );
    assert_eq!(r.assert_error(400)["param"], "grammar");
}

/// The text of the greedy first token after `prompt`.
fn probs_text(server: &Server, prompt: &str) -> String {
    let answer = server
        .post(
            "/completion",
            &json!({"prompt": prompt, "temperature": 0, "n_predict": 1}),
        )
        .json();
    answer["content"].as_str().unwrap().to_string()
}

/// The `llamacpp:*` samples of a `/metrics` text and their `# TYPE`s, checked to have a
/// `# HELP` line each.
fn llama_server_metrics(text: &str) -> std::collections::HashMap<String, (String, f64)> {
    let mut types = std::collections::HashMap::new();
    let mut out = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
        } else if line.starts_with("llamacpp:") && !line.contains('{') {
            let (name, value) = line.split_once(' ').unwrap();
            let kind = types.get(name).unwrap_or_else(|| panic!("no TYPE: {line}"));
            assert!(text.contains(&format!("# HELP {name} ")), "no HELP: {name}");
            out.insert(name.to_string(), (kind.clone(), value.parse().unwrap()));
        }
    }
    out
}

#[test]
fn metrics_under_llama_server_names_and_timings() {
    let server = Server::start(&["--parallel", "1"]);
    let prompt = "the quick brown fox jumps over the lazy dog";
    let (mut prompt_n, mut cache_n, mut predicted_n) = (0, 0, 0u64);
    for n_predict in [1, 4, 16] {
        let answer = server
            .post(
                "/completion",
                &json!({"prompt": prompt, "n_predict": n_predict, "ignore_eos": true}),
            )
            .json();
        let t = &answer["timings"];
        assert_eq!(t["predicted_n"], n_predict, "{answer}");
        // ignore_eos bans the end-of-generation tokens, shown as null (-infinity) biases.
        let bias = answer["generation_settings"]["logit_bias"]
            .as_array()
            .unwrap();
        assert!(
            !bias.is_empty() && bias.iter().all(|b| b["bias"].is_null()),
            "{answer}"
        );
        // The answer's slot is free as soon as the answer is read.
        let slots = server.get("/slots").json();
        assert!(
            slots
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["is_processing"] == false),
            "{slots}"
        );
        prompt_n += t["prompt_n"].as_u64().unwrap();
        cache_n += t["cache_n"].as_u64().unwrap();
        predicted_n += t["predicted_n"].as_u64().unwrap();
        // The rate is over the decode steps after the first token (from the prompt's logits).
        let (ms, rate) = (
            t["predicted_ms"].as_f64().unwrap(),
            t["predicted_per_second"].as_f64().unwrap(),
        );
        if n_predict == 1 {
            assert_eq!(rate, 0.0, "{t}");
            assert_eq!(t["predicted_per_token_ms"], 0.0, "{t}");
        } else {
            assert!(
                (rate - 1e3 / ms * (n_predict - 1) as f64).abs() < 1e-6,
                "{t}"
            );
        }
    }
    assert!(cache_n > 0, "the same prompt again reuses its cache");
    // cache_prompt: false evaluates the whole prompt again, to the same answer.
    let fresh = json!({"prompt": prompt, "n_predict": 4, "temperature": 0, "cache_prompt": false});
    let (a, b) = (
        server.post("/completion", &fresh).json(),
        server.post("/completion", &fresh).json(),
    );
    assert_eq!(b["timings"]["cache_n"], 0, "{b}");
    assert_eq!(b["timings"]["prompt_n"], b["tokens_evaluated"], "{b}");
    assert_eq!(a["content"], b["content"]);
    prompt_n +=
        a["timings"]["prompt_n"].as_u64().unwrap() + b["timings"]["prompt_n"].as_u64().unwrap();
    predicted_n += a["timings"]["predicted_n"].as_u64().unwrap()
        + b["timings"]["predicted_n"].as_u64().unwrap();
    let r = server.get("/metrics");
    let started: u64 = r
        .header("process-start-time-unix")
        .expect("Process-Start-Time-Unix")
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(started <= now && now - started < 600, "{started} vs {now}");
    let m = llama_server_metrics(&r.text());
    let value = |name: &str| m.get(name).unwrap_or_else(|| panic!("no {name}: {m:?}"));
    for name in [
        "prompt_tokens_total",
        "prompt_tokens_cached_total",
        "prompt_seconds_total",
        "tokens_predicted_total",
        "tokens_predicted_seconds_total",
        "n_decode_total",
        "n_tokens_max",
        "spec_decode_num_draft_tokens_total",
    ] {
        assert_eq!(value(&format!("llamacpp:{name}")).0, "counter", "{name}");
    }
    for name in [
        "prompt_tokens_seconds",
        "predicted_tokens_seconds",
        "requests_processing",
        "requests_deferred",
        "n_busy_slots_per_decode",
    ] {
        assert_eq!(value(&format!("llamacpp:{name}")).0, "gauge", "{name}");
    }
    assert_eq!(value("llamacpp:prompt_tokens_total").1, prompt_n as f64);
    assert_eq!(
        value("llamacpp:prompt_tokens_cached_total").1,
        cache_n as f64
    );
    assert_eq!(
        value("llamacpp:tokens_predicted_total").1,
        predicted_n as f64
    );
    // One decode for each prompt, one per token after each first.
    let decodes = value("llamacpp:n_decode_total").1;
    assert!(decodes >= (3 + 15 + 3) as f64, "{decodes}");
    assert!(value("llamacpp:n_tokens_max").1 >= 16.0);
    assert!(value("llamacpp:prompt_seconds_total").1 > 0.0);
    assert!(value("llamacpp:predicted_tokens_seconds").1 > 0.0);
    assert_eq!(value("llamacpp:n_busy_slots_per_decode").1, 1.0);
    assert_eq!(value("llamacpp:requests_processing").1, 0.0);

    // --no-metrics: /metrics is 501, as llama-server without --metrics.
    let off = Server::start(&["--parallel", "1", "--no-metrics"]);
    assert_eq!(
        off.get("/metrics").assert_error(501)["type"],
        "not_supported_error"
    );
    assert_eq!(off.get("/props").json()["endpoint_metrics"], false);
    assert_eq!(server.get("/props").json()["endpoint_metrics"], true);
}
