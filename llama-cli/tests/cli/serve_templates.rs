//! llama-server's template and chat-completion extensions on the real model: `--reasoning`
//! (the templates' `enable_thinking`, in `serve`, `prompt` and the config file), today's date
//! in templates (`date_string`, `datetime`), `/apply-template` with tools and
//! `add_generation_prompt`, assistant prefill, `__verbose`, the final `timings`, and the
//! streamed telemetry (`return_progress`'s `prompt_progress`, `timings_per_token`) in chat
//! completions and the Responses stream.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::serve::{EventStream, Server};
use crate::support::{llama_cli, model};

/// A template in the shape of DeepSeek-R1's in llama.cpp's tree: the generation prompt opens a
/// thinking block and closes it when `enable_thinking` is false; the date comes first.
const THINKING_TEMPLATE: &str = "[{{ date_string }}|{{ datetime }}]\
{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}\
{% if add_generation_prompt %}<|assistant|><think>\n\
{% if not enable_thinking %}</think>{% endif %}{% endif %}";

fn template_file(dir: &Path) -> PathBuf {
    let path = dir.join("thinking.jinja");
    std::fs::write(&path, THINKING_TEMPLATE).unwrap();
    path
}

/// Today's date (UTC) as `date +FORMAT` writes it.
fn today(format: &str) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", &format!("+{format}")])
        .output()
        .expect("run date");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn apply(server: &Server, body: Value) -> String {
    let r = server.post("/apply-template", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["prompt"].as_str().unwrap().to_string()
}

#[test]
fn reasoning_and_dates_reach_the_template() {
    let dir = tempfile::tempdir().unwrap();
    let file = template_file(dir.path());
    let file = file.to_str().unwrap();
    let hi = json!([{"role": "user", "content": "What is today?"}]);

    let off = Server::start(&[
        "--parallel",
        "1",
        "--chat-template-file",
        file,
        "-rea",
        "off",
    ]);
    let prompt = apply(&off, json!({"messages": hi}));
    assert!(
        prompt.ends_with("<|assistant|><think>\n</think>"),
        "{prompt}"
    );
    // llama.cpp's date variables, as its templating formats them.
    assert!(
        prompt.starts_with(&format!("[{}|{}]", today("%d %b %Y"), today("%b %d %Y"))),
        "{prompt}"
    );
    // A request's template variable overrides the server's setting.
    let prompt = apply(
        &off,
        json!({"messages": hi, "chat_template_kwargs": {"enable_thinking": true}}),
    );
    assert!(prompt.ends_with("<think>\n"), "{prompt}");
    // Tools (null, empty or given) are taken; add_generation_prompt: false leaves the turn
    // closed.
    let tool = json!({"type": "function", "function": {"name": "get_time", "description": "The time.",
        "parameters": {"type": "object", "properties": {}}}});
    for tools in [Value::Null, json!([]), json!([tool])] {
        let prompt = apply(&off, json!({"messages": hi, "tools": tools}));
        assert!(prompt.ends_with("<think>\n</think>"), "{tools}: {prompt}");
    }
    let prompt = apply(
        &off,
        json!({"messages": hi, "add_generation_prompt": false}),
    );
    assert!(!prompt.contains("<|assistant|>"), "{prompt}");
    // Anthropic's `thinking` is the template's enable_thinking: enabled leaves the block open
    // (no `</think>`, fewer tokens), disabled closes it as the server's `off` does.
    let counted = |thinking: Value| {
        let r = off.post(
            "/v1/messages/count_tokens",
            &json!({"messages": hi, "thinking": thinking}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["input_tokens"].as_u64().unwrap()
    };
    let closed = counted(Value::Null);
    assert!(counted(json!({"type": "enabled", "budget_tokens": 1024})) < closed);
    assert_eq!(counted(json!({"type": "disabled"})), closed);
    let r = off.post(
        "/v1/messages",
        &json!({"messages": hi, "max_tokens": 1, "thinking": {"type": "sometimes"}}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("thinking"), "{}", r.text());
    drop(off);

    // auto (the default) and on leave the thinking block open.
    for flags in [&[][..], &["--reasoning", "on"][..]] {
        let mut args = vec!["--parallel", "1", "--chat-template-file", file];
        args.extend_from_slice(flags);
        let server = Server::start(&args);
        let prompt = apply(&server, json!({"messages": hi}));
        assert!(
            prompt.ends_with("<|assistant|><think>\n"),
            "{flags:?}: {prompt}"
        );
    }

    // A value llama.cpp does not know is refused before anything loads.
    let out = llama_cli()
        .args([
            "serve",
            "-m",
            model().to_str().unwrap(),
            "--reasoning",
            "maybe",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--reasoning"), "{stderr}");
}

/// Prompt tokens `prompt --stats` reports for one turn with `args`.
fn prompt_tokens(args: &[&str]) -> usize {
    let model = model();
    let mut all = vec![
        "prompt",
        "-m",
        model.to_str().unwrap(),
        "-n",
        "1",
        "--stats",
    ];
    all.extend_from_slice(args);
    all.push("Hi");
    let out = llama_cli().args(&all).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("stats: prompt "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no prompt figure in:\n{stderr}"))
}

#[test]
fn prompt_renders_with_reasoning_from_flag_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = template_file(dir.path());
    let file = file.to_str().unwrap();
    let on = prompt_tokens(&["--chat-template-file", file, "--reasoning", "on"]);
    let off = prompt_tokens(&["--chat-template-file", file, "--reasoning", "off"]);
    // Off closes the thinking block: `</think>` is in the prompt.
    assert!(off > on, "off {off} tokens, on {on}");
    let config = dir.path().join("run.toml");
    std::fs::write(&config, "reasoning = \"off\"\n").unwrap();
    let from_config = prompt_tokens(&[
        "--chat-template-file",
        file,
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(from_config, off);
}

/// The JSON payloads of a stream, `[DONE]` left out.
fn chunks(mut stream: EventStream) -> Vec<Value> {
    assert_eq!(stream.status, 200);
    let mut out = Vec::new();
    while let Some(data) = stream.next_data() {
        if data != "[DONE]" {
            out.push(serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}")));
        }
    }
    out
}

#[test]
fn chat_completions_carry_llama_server_telemetry() {
    // A batch of 16 tokens: the prompt is evaluated in several chunks.
    let server = Server::start(&["--parallel", "1", "-b", "16", "--verbose"]);
    let book = json!([
        {"role": "system", "content": "Book"},
        {"role": "user", "content": "What is the best book"},
    ]);

    // `serve --verbose`: `__verbose` holds the prompt as evaluated; a request can say no.
    let r = server.post(
        "/v1/chat/completions",
        &json!({"messages": book, "max_tokens": 3}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let verbose = &body["__verbose"];
    assert!(
        verbose["prompt"].as_str().unwrap().contains("Book"),
        "{body}"
    );
    assert_eq!(verbose["tokens_evaluated"], body["usage"]["prompt_tokens"]);
    assert_eq!(verbose["content"], body["choices"][0]["message"]["content"]);
    assert_eq!(
        body["timings"]["predicted_n"],
        body["usage"]["completion_tokens"]
    );
    let r = server.post(
        "/v1/chat/completions",
        &json!({"messages": book, "max_tokens": 2, "verbose": false}),
    );
    assert!(r.json().get("__verbose").is_none());

    // A final assistant message is continued: the prompt ends with its text, parts joined.
    let mut prefill = book.as_array().unwrap().clone();
    prefill.push(json!({"role": "assistant", "content": [
        {"type": "text", "text": "Wh"}, {"type": "text", "text": "ill"}]}));
    let r = server.post(
        "/v1/chat/completions",
        &json!({"messages": prefill, "max_tokens": 2}),
    );
    let prompt = r.json()["__verbose"]["prompt"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(prompt.ends_with("Wh\n\nill"), "{prompt}");
    let last = prefill.len() - 1;
    prefill[last] = json!({"role": "assistant", "content": "Whill"});
    let r = server.post(
        "/v1/chat/completions",
        &json!({"messages": prefill, "max_tokens": 2, "add_generation_prompt": false, "continue_final_message": true}),
    );
    let prompt = r.json()["__verbose"]["prompt"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(prompt.ends_with("Whill"), "{prompt}");

    // return_progress: one report of the reused tokens, then one per 16-token chunk.
    let long = json!([{"role": "user", "content": "This is a test".repeat(10)}]);
    let body = json!({"messages": long, "max_tokens": 4, "stream": true, "return_progress": true,
        "stream_options": {"include_usage": true}});
    for run in 0..2 {
        let all = chunks(EventStream::open(
            server.port,
            "/v1/chat/completions",
            &body,
        ));
        let reports: Vec<&Value> = all
            .iter()
            .filter_map(|c| c.get("prompt_progress"))
            .collect();
        let usage = &all.last().unwrap()["usage"];
        let total = usage["prompt_tokens"].as_u64().unwrap();
        let cache = usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0);
        assert!(!reports.is_empty(), "{all:?}");
        assert_eq!(reports[0]["cache"], reports[0]["processed"], "{reports:?}");
        assert_eq!(reports[0]["cache"], cache);
        for pair in reports.windows(2) {
            assert!(pair[1]["processed"].as_u64() > pair[0]["processed"].as_u64());
            assert_eq!(pair[1]["total"], total);
        }
        assert_eq!(reports.last().unwrap()["processed"], total);
        assert_eq!(
            reports.len() as u64,
            (total - cache).div_ceil(16) + 1,
            "{reports:?}"
        );
        if run == 1 {
            assert!(
                cache > 0,
                "the second request reuses the first one's prompt"
            );
        }
    }

    // timings_per_token: each piece of text carries the figures so far; the last chunk has
    // the final ones.
    let body = json!({"messages": book, "max_tokens": 6, "stream": true, "timings_per_token": true,
        "stream_options": {"include_usage": true}});
    let all = chunks(EventStream::open(
        server.port,
        "/v1/chat/completions",
        &body,
    ));
    assert!(all[0].get("timings").is_none(), "the role chunk has none");
    let mut predicted = 0;
    for c in &all[1..all.len() - 1] {
        if c["choices"][0]["delta"]["content"].is_string() {
            let n = c["timings"]["predicted_n"].as_u64().expect("timings");
            assert!(n > predicted, "{c}");
            assert!(c["timings"]["prompt_per_second"].as_f64().unwrap() > 0.0);
            predicted = n;
        }
    }
    let last = all.last().unwrap();
    assert_eq!(
        last["timings"]["predicted_n"],
        last["usage"]["completion_tokens"]
    );

    // The Responses stream: prompt reports as response.in_progress, figures with the deltas.
    let body = json!({"input": "This is a test".repeat(10), "max_output_tokens": 4, "stream": true,
        "timings_per_token": true, "return_progress": true});
    let all = chunks(EventStream::open(server.port, "/v1/responses", &body));
    let progress = all
        .iter()
        .filter(|e| e.get("prompt_progress").is_some())
        .collect::<Vec<_>>();
    assert!(!progress.is_empty(), "{all:?}");
    assert!(progress.iter().all(|e| e["type"] == "response.in_progress"));
    assert!(all
        .iter()
        .any(|e| e["type"] == "response.output_text.delta" && e["timings"].is_object()));
    let completed = all
        .iter()
        .find(|e| e["type"] == "response.completed")
        .unwrap();
    assert!(
        completed["timings"]["predicted_per_second"].is_number(),
        "{completed}"
    );
}

/// The native `/completion` stream carries the same telemetry as llama-server's (what its
/// `test_metrics_timings_on_prompt_progress` checks): with `return_progress`, the prompt's
/// evaluation in pieces of their own (`prompt_progress` and `timings`, the first before any
/// prompt token is decoded, `prompt_ms` never going back); with `timings_per_token`, each
/// piece of text its `timings`.
#[test]
fn native_completion_stream_carries_prompt_progress_and_timings() {
    let server = Server::start(&["--parallel", "1", "-b", "32"]);
    let prompt = "the quick brown fox jumps over the lazy dog ".repeat(8);
    let body = json!({"prompt": prompt, "n_predict": 4, "stream": true,
        "timings_per_token": true, "return_progress": true});
    let all = chunks(EventStream::open(server.port, "/completion", &body));
    let progress: Vec<&Value> = all
        .iter()
        .filter(|c| c.get("prompt_progress").is_some())
        .collect();
    assert!(progress.len() > 2, "{all:?}");
    let first = &progress[0]["timings"];
    assert_eq!(
        (first["prompt_n"].as_u64(), first["predicted_n"].as_u64()),
        (Some(0), Some(0)),
        "{first}"
    );
    assert_eq!(first["prompt_ms"].as_f64(), Some(0.0), "{first}");
    let mut last_ms = 0.0;
    for p in &progress {
        assert_eq!(p["content"], "", "{p}");
        let ms = p["timings"]["prompt_ms"].as_f64().unwrap();
        assert!(ms >= last_ms, "{progress:?}");
        last_ms = ms;
    }
    assert!(last_ms > 0.0, "{progress:?}");
    let last = progress.last().unwrap();
    assert_eq!(
        last["prompt_progress"]["processed"], last["prompt_progress"]["total"],
        "{last}"
    );
    // Every piece of text carries the figures so far, predicted_n rising.
    let texts: Vec<&Value> = all
        .iter()
        .filter(|c| c.get("prompt_progress").is_none() && c["stop"] == false)
        .collect();
    assert!(!texts.is_empty(), "{all:?}");
    let predicted: Vec<u64> = texts
        .iter()
        .map(|c| {
            c["timings"]["predicted_n"]
                .as_u64()
                .unwrap_or_else(|| panic!("{c}"))
        })
        .collect();
    assert!(predicted.windows(2).all(|w| w[0] <= w[1]), "{predicted:?}");
    // Without the fields: no telemetry.
    let plain = json!({"prompt": prompt, "n_predict": 4, "stream": true});
    let all = chunks(EventStream::open(server.port, "/completion", &plain));
    assert!(
        all.iter().all(|c| c.get("prompt_progress").is_none()),
        "{all:?}"
    );
}
