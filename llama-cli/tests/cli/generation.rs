//! The generation features of issue 14 on the real model, over raw HTTP and on the command
//! line: Jinja templates (SmolLM2's default system prompt: 32 prompt tokens for "Say hi", as
//! llama-server counts), grammars and JSON schemas (answers parse and match), tool calls
//! (required, streamed, a round trip with the tool's result), reasoning split, log-probs,
//! `n` > 1, logit biases, the completion prompt shapes, llama-server's leniencies and the
//! refusal of unknown fields.

use serde_json::{json, Value};

use crate::serve::{EventStream, Server, KEY};
use crate::support::{llama_cli, model};

fn chat(messages: Value, extra: Value) -> Value {
    let mut body = json!({"messages": messages, "temperature": 0, "max_tokens": 48});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }}])
}

fn content(r: &Value) -> String {
    r["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn serve_templates_grammars_tools_logprobs_and_choices() {
    let server = Server::start(&["--parallel", "1", "--api-key", KEY]);
    let post = |body: Value| {
        let r = server.post("/v1/chat/completions", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };

    // SmolLM2's Jinja template adds its default system prompt: 32 tokens, as llama-server.
    let r = post(chat(user("Say hi"), json!({"max_tokens": 4})));
    assert_eq!(r["usage"]["prompt_tokens"], 32, "{r}");

    // The first streamed chunk: the role and `content: null`.
    let chunks = EventStream::open(
        server.port,
        "/v1/chat/completions",
        &chat(user("Say hi"), json!({"max_tokens": 4, "stream": true})),
    )
    .collect();
    let first = &chunks[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    assert!(first.get("content").is_some_and(Value::is_null), "{first}");

    // GBNF grammar.
    let r = post(chat(
        user("hi"),
        json!({"grammar": "root ::= \"a\"{5,5}", "max_tokens": 8}),
    ));
    assert_eq!(content(&r), "aaaaa");
    // JSON schema, strict: the answer parses and matches.
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]});
    let r = post(chat(
        user("Describe a person as JSON."),
        json!({"max_tokens": 80, "response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": true, "schema": schema}}}),
    ));
    let person: Value = serde_json::from_str(&content(&r)).expect("the answer is JSON");
    assert!(
        person["name"].is_string() && person["age"].is_i64(),
        "{person}"
    );
    let r = post(chat(
        user("Give me a JSON object."),
        json!({"max_tokens": 60, "response_format": {"type": "json_object"}}),
    ));
    // Any object: the small model rambles past the limit, but it writes an object.
    assert!(content(&r).starts_with('{'), "{r}");
    let r = post(chat(
        user("Give me a JSON object."),
        json!({"max_tokens": 60, "response_format": {"type": "json_object", "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false}}}),
    ));
    let object: Value = serde_json::from_str(&content(&r)).expect("the answer is JSON");
    assert!(object["ok"].is_boolean(), "{object}");
    let r = post(chat(
        user("The answer?"),
        json!({"json_schema": {"const": "42"}, "max_tokens": 8}),
    ));
    assert_eq!(content(&r), "\"42\"");

    // Invalid grammars and schemas: 400s naming the field, never an abort.
    for (extra, param) in [
        (
            json!({"grammar": "root ::= this is (not valid GBNF"}),
            "grammar",
        ),
        (json!({"grammar": "start ::= \"a\""}), "grammar"),
        (json!({"json_schema": {"type": "hiccup"}}), "json_schema"),
        (
            json!({"response_format": {"type": "json_object", "schema": 123}}),
            "response_format",
        ),
        (
            json!({"response_format": {"type": "sound"}}),
            "response_format",
        ),
        (
            json!({"grammar": "root ::= \"a\"", "tools": weather_tool()}),
            "grammar",
        ),
    ] {
        let r = server.post("/v1/chat/completions", &chat(user("hi"), extra.clone()));
        assert_eq!(r.assert_error(400)["param"], param, "{extra}");
    }

    // Tools: SmolLM2's template knows none, so the generic grammar-constrained format makes
    // it call one with tool_choice "required".
    let r = post(chat(
        user("What is the weather in Paris?"),
        json!({"tools": weather_tool(), "tool_choice": "required", "max_tokens": 80}),
    ));
    let choice = &r["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{r}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert!(call["id"].as_str().is_some_and(|id| !id.is_empty()));
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap())
        .expect("arguments are JSON");
    assert!(args["city"].is_string(), "{args}");
    // A named function forces that function.
    let r = post(chat(
        user("Hello"),
        json!({"tools": weather_tool(), "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "max_tokens": 80}),
    ));
    assert_eq!(
        r["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    // The round trip: the call and its result in the history.
    let history = json!([
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "{\"temperature\": 21, \"sky\": \"clear\"}"},
    ]);
    let r = post(chat(
        history,
        json!({"tools": weather_tool(), "tool_choice": "none"}),
    ));
    assert!(
        r["choices"][0]["message"].get("tool_calls").is_none(),
        "{r}"
    );
    assert!(!content(&r).is_empty(), "{r}");
    // Streamed: the call's first delta has its index, id, type, name and empty arguments; the
    // arguments follow in fragments that join to the arguments of the whole answer; then
    // finish_reason.
    let chunks = EventStream::open(
        server.port,
        "/v1/chat/completions",
        &chat(
            user("What is the weather in Paris?"),
            json!({"tools": weather_tool(), "tool_choice": "required", "max_tokens": 80, "stream": true}),
        ),
    )
    .collect();
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert!(deltas.len() > 2, "{chunks:?}");
    let first = &deltas[0][0];
    assert_eq!(
        (&first["index"], &first["type"], &first["function"]["name"]),
        (&json!(0), &json!("function"), &json!("get_weather")),
        "{first}"
    );
    assert!(first["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("call_")));
    assert_eq!(first["function"]["arguments"], "");
    let mut joined = String::new();
    for d in &deltas[1..] {
        assert_eq!(d[0]["index"], 0);
        assert!(
            d[0].get("id").is_none() && d[0]["function"].get("name").is_none(),
            "{d}"
        );
        joined.push_str(d[0]["function"]["arguments"].as_str().unwrap());
    }
    let streamed: Value = serde_json::from_str(&joined).expect("the fragments join to JSON");
    assert_eq!(streamed, args, "{joined}");
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str())
        .unwrap();
    assert_eq!(finish, "tool_calls");

    // Reasoning: <think> goes to reasoning_content (a grammar makes the model write it).
    let think = json!({"grammar": "root ::= \"<think>plan</think>Hello\"", "max_tokens": 16});
    let r = post(chat(user("hi"), think.clone()));
    let m = &r["choices"][0]["message"];
    assert_eq!(
        (m["reasoning_content"].as_str(), m["content"].as_str()),
        (Some("plan"), Some("Hello")),
        "{r}"
    );
    let mut none = think.clone();
    none["reasoning_format"] = json!("none");
    assert_eq!(
        content(&post(chat(user("hi"), none))),
        "<think>plan</think>Hello"
    );
    let mut streamed = think;
    streamed["stream"] = json!(true);
    let chunks = EventStream::open(
        server.port,
        "/v1/chat/completions",
        &chat(user("hi"), streamed),
    )
    .collect();
    let field = |name: &str| -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"][name].as_str())
            .collect()
    };
    assert_eq!(
        (field("reasoning_content"), field("content")),
        ("plan".into(), "Hello".into())
    );

    // Log-probabilities: the tokens spell the answer; each has its alternatives.
    let r = post(chat(
        user("Say hi"),
        json!({"max_tokens": 6, "logprobs": true, "top_logprobs": 3}),
    ));
    let tokens = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    let spelled: String = tokens
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(spelled, content(&r));
    for t in tokens {
        assert!(t["logprob"].as_f64().unwrap() <= 0.0);
        assert_eq!(t["top_logprobs"].as_array().unwrap().len(), 3);
        assert!(t["bytes"].is_array());
    }

    // n > 1: several choices; greedy ones agree.
    let r = post(chat(user("Say hi"), json!({"max_tokens": 5, "n": 3})));
    let choices = r["choices"].as_array().unwrap();
    assert_eq!(
        choices
            .iter()
            .map(|c| c["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(choices
        .iter()
        .all(|c| c["message"] == choices[0]["message"]));
    assert_eq!(r["usage"]["completion_tokens"], 15);
    let chunks = EventStream::open(
        server.port,
        "/v1/chat/completions",
        &chat(user("Say hi"), json!({"max_tokens": 5, "n": 2, "stream": true, "stream_options": {"include_usage": true}})),
    )
    .collect();
    let finished: Vec<u64> = chunks
        .iter()
        .filter(|c| c["choices"][0]["finish_reason"].is_string())
        .map(|c| c["choices"][0]["index"].as_u64().unwrap())
        .collect();
    assert_eq!(finished.len(), 2);
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 10);

    // logit_bias: banning the greedy answer's first token changes the answer.
    let plain = post(chat(
        user("Say hi"),
        json!({"max_tokens": 6, "logprobs": true}),
    ));
    let first_token = plain["choices"][0]["logprobs"]["content"][0]["token"].clone();
    let r = server.post("/tokenize", &json!({"content": first_token}));
    let banned = if r.status == 200 {
        r.json()["tokens"][0].clone()
    } else {
        Value::Null
    };
    let mut bias = serde_json::Map::new();
    match banned.as_i64() {
        Some(id) => bias.insert(id.to_string(), json!(-100)),
        // Without /tokenize: a key that is text is tokenized by the server.
        None => bias.insert(first_token.as_str().unwrap().to_string(), json!(-100)),
    };
    let r = post(chat(
        user("Say hi"),
        json!({"max_tokens": 6, "logit_bias": bias, "logprobs": true}),
    ));
    assert_ne!(
        r["choices"][0]["logprobs"]["content"][0]["token"], first_token,
        "{r}"
    );
    let r = server.post(
        "/v1/chat/completions",
        &chat(user("hi"), json!({"logit_bias": {"99999999": 1}})),
    );
    assert_eq!(r.assert_error(400)["param"], "logit_bias");

    // llama-server's leniencies: more than 16 stops, max_tokens -1, a negative temperature.
    let stops: Vec<String> = (0..20).map(|i| format!("zz{i}")).collect();
    let r = post(chat(
        user("Say hi"),
        json!({"stop": stops, "max_tokens": -1, "temperature": -1}),
    ));
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    // Unknown fields are refused by name; OpenAI's optional hints are not.
    let r = server.post(
        "/v1/chat/completions",
        &chat(user("hi"), json!({"frobnicate": true})),
    );
    assert_eq!(r.assert_error(400)["param"], "frobnicate");
    post(chat(
        user("hi"),
        json!({"user": "u1", "metadata": {"a": "b"}, "store": false, "max_tokens": 2}),
    ));

    // An assistant message at the end is continued (a prefill, as llama-server does).
    let prefill = json!([{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "My favourite colour is"}]);
    let continued = post(chat(prefill.clone(), json!({"max_tokens": 4})));
    let explicit = post(chat(
        prefill.clone(),
        json!({"max_tokens": 4, "add_generation_prompt": false, "continue_final_message": true}),
    ));
    assert_eq!(content(&continued), content(&explicit));
    assert_eq!(
        continued["usage"]["prompt_tokens"],
        explicit["usage"]["prompt_tokens"]
    );
    let r = server.post(
        "/v1/chat/completions",
        &chat(
            prefill,
            json!({"add_generation_prompt": true, "continue_final_message": true}),
        ),
    );
    assert_eq!(r.assert_error(400)["param"], "continue_final_message");
    let two = json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "assistant", "content": "c"}]);
    let r = server.post("/v1/chat/completions", &chat(two, json!({})));
    assert_eq!(r.assert_error(400)["param"], "messages");

    // Text completions: token arrays, several prompts, legacy logprobs.
    let completion = |body: Value| {
        let r = server.post("/v1/completions", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    let by_text = completion(
        json!({"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}),
    );
    let r = server.post("/tokenize", &json!({"content": "The capital of France is"}));
    if r.status == 200 {
        let tokens = r.json()["tokens"].clone();
        let by_tokens = completion(json!({"prompt": tokens, "max_tokens": 4, "temperature": 0}));
        assert_eq!(
            by_tokens["choices"][0]["text"],
            by_text["choices"][0]["text"]
        );
    }
    let two = completion(
        json!({"prompt": ["One, two,", "A, B,"], "max_tokens": 3, "temperature": 0, "logprobs": 2}),
    );
    let choices = two["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_ne!(choices[0]["text"], choices[1]["text"]);
    let lp = &choices[0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 3, "{lp}");
    assert_eq!(lp["top_logprobs"][0].as_object().unwrap().len(), 2, "{lp}");
    let r = server.post("/v1/completions", &json!({"prompt": [1, 99999999]}));
    assert_eq!(r.assert_error(400)["param"], "prompt");
}

fn prompt_cmd(extra: &[&str], text: &str) -> std::process::Output {
    llama_cli()
        .args([
            "prompt",
            "-m",
            model().to_str().unwrap(),
            "--temp",
            "0",
            "-c",
            "512",
            "-t",
            "2",
        ])
        .args(extra)
        .arg(text)
        .output()
        .unwrap()
}

#[test]
fn prompt_grammars_schemas_and_templates() {
    let out = prompt_cmd(
        &["-n", "8", "--grammar", "root ::= \"yes\" | \"no\""],
        "Is water wet?",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(answer == "yes" || answer == "no", "{answer:?}");

    let schema =
        r#"{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}"#;
    let out = prompt_cmd(
        &["-n", "40", "--json-schema", schema],
        "Name a city as JSON.",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    assert!(value["city"].is_string(), "{value}");

    // Bad grammars: a typed error naming the flag, a non-zero exit, no abort.
    for (flags, needle) in [
        (vec!["--grammar", "root ::= (("], "--grammar"),
        (vec!["--json-schema", "{\"type\": 5}"], "--json-schema"),
        (vec!["--json-schema", "not json"], "--json-schema"),
        (
            vec!["--grammar-file", "/nonexistent/g.gbnf"],
            "--grammar-file",
        ),
        (
            vec!["--grammar", "root ::= \"a\"", "--json-schema", "{}"],
            "at most one",
        ),
    ] {
        let mut args = vec!["-n", "2"];
        args.extend(flags.iter().copied());
        let out = prompt_cmd(&args, "hi");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {stderr}");
        assert!(stderr.contains(needle), "{flags:?}: {stderr}");
    }

    // --chat-template-file renders the file: one that sends the text as-is answers as --raw.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.jinja");
    std::fs::write(&file, "{{ messages[-1]['content'] }}").unwrap();
    let text = "The capital of France is";
    let with_file = prompt_cmd(
        &["-n", "6", "--chat-template-file", file.to_str().unwrap()],
        text,
    );
    let raw = prompt_cmd(&["-n", "6", "--raw"], text);
    assert!(
        with_file.status.success(),
        "{}",
        String::from_utf8_lossy(&with_file.stderr)
    );
    assert_eq!(with_file.stdout, raw.stdout);
    // A template that raises is an error naming the template's message.
    std::fs::write(&file, "{{ raise_exception('roles must alternate') }}").unwrap();
    let out = prompt_cmd(
        &["-n", "2", "--chat-template-file", file.to_str().unwrap()],
        "hi",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("roles must alternate"), "{stderr}");

    // Jinja (the default) counts SmolLM2's default system prompt; --no-jinja uses llama.cpp's
    // built-in chatml, which has none.
    let tokens = |flags: &[&str]| -> usize {
        let mut args = vec!["-n", "1", "--stats"];
        args.extend_from_slice(flags);
        let out = prompt_cmd(&args, "Say hi");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let line = stderr
            .lines()
            .find(|l| l.starts_with("stats: prompt "))
            .unwrap_or_else(|| panic!("{stderr}"));
        line["stats: prompt ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(tokens(&[]), 32);
    assert_eq!(tokens(&["--no-jinja"]), 11);
    assert_eq!(tokens(&["--jinja=false"]), 11);
}

/// The official `openai` Python client (tests/python/test_openai_tools.py): `parse` with a
/// Pydantic model, a tools round trip, streamed tool calls. Prints "skipped" when Python or
/// the `openai` package cannot be had (scripts/python-env.sh fails).
#[test]
fn openai_python_tools() {
    use std::process::Command;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = match crate::support::python_env() {
        Some(python) => python,
        None => {
            println!("skipped: no Python with the openai package (scripts/python-env.sh failed)");
            return;
        }
    };
    let out = Command::new(python)
        .arg(root.join("tests/python/test_openai_tools.py"))
        .arg("--binary")
        .arg(assert_cmd::cargo::cargo_bin("llama-cli"))
        .arg("--model")
        .arg(model())
        .output()
        .expect("run the Python test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("5 passed, 0 failed"), "{stdout}\n{stderr}");
}

/// A model whose Jinja template minijinja cannot compile falls back to llama.cpp's built-in
/// template for it, with a warning; a template neither can use is an error.
#[test]
fn unrenderable_templates_fall_back_to_the_builtin_with_a_warning() {
    use llama_core::gguf::synthetic::SyntheticModel;
    use llama_core::gguf::GgmlType;
    let dir = tempfile::tempdir().unwrap();
    let with_template = |name: &str, template: &str| {
        let path = dir.path().join(name);
        let mut w = SyntheticModel::llama(GgmlType::F16).to_writer();
        w.set("tokenizer.chat_template", template);
        w.write_to_path(&path).unwrap();
        path
    };
    let run = |path: &std::path::Path, extra: &[&str]| {
        llama_cli()
            .args([
                "prompt",
                "-m",
                path.to_str().unwrap(),
                "-n",
                "2",
                "-c",
                "256",
                "-t",
                "2",
            ])
            .args(extra)
            .arg("hi")
            .output()
            .unwrap()
    };
    // ChatML as llama.cpp recognises it, with a tag minijinja does not know.
    let chatml = with_template(
        "chatml.gguf",
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% frobnicate %}",
    );
    let out = run(&chatml, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning:") && stderr.contains("llama.cpp's built-in template"),
        "{stderr}"
    );
    // --no-jinja takes the built-in one without a warning.
    let out = run(&chatml, &["--no-jinja"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("warning:"),
        "{stderr}"
    );
    // Neither Jinja nor llama.cpp: an error, not a guess.
    let nothing = with_template("broken.gguf", "{% frobnicate %} no known markers");
    let out = run(&nothing, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
