//! `llama-cli serve` as a drop-in llama-server: its routes and shapes (native `/completion`,
//! `/tokenize`, `/detokenize`, `/apply-template`, `/props`, `/slots`, un-prefixed aliases),
//! auth before routing with `X-Api-Key`, CORS, the context-overflow error, `--alias` and
//! `--host` lists, and `-c` split across `--parallel`.

use serde_json::{json, Value};

use crate::serve::{bearer, request, EventStream, Server, KEY};

/// The `data:` payloads of a stream without `[DONE]` (llama-server's native stream).
fn native_events(mut stream: EventStream) -> Vec<Value> {
    let mut events = Vec::new();
    while let Some(data) = stream.next_data() {
        assert_ne!(data, "[DONE]", "a native stream has no [DONE]");
        events.push(serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}")));
    }
    events
}

#[test]
fn serve_answers_llama_server_routes_in_its_shapes() {
    let server = Server::start(&["--parallel", "2", "--api-key", KEY, "--alias", "smol,alpha"]);

    // Auth before routing: an unknown path without the key is 401, not 404.
    let r = server.request("GET", "/no/such/route", &[], b"");
    let error = r.assert_error(401);
    assert_eq!(error["type"], "authentication_error");
    let r = server.request("GET", "/v1/health", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = server.get("/no/such/route");
    r.assert_error(404);
    // Anthropic's header is a key too.
    let r = server.request("GET", "/v1/models", &[("x-api-key", KEY)], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = server.request("GET", "/v1/models", &[("x-api-key", "nope")], b"");
    r.assert_error(401);

    // --alias is a list: the first in sorted order is the id; every name is served.
    let models = server.get("/models").json();
    assert_eq!(models["data"][0]["id"], "alpha", "{models}");
    assert_eq!(models["data"][0]["aliases"], json!(["alpha", "smol"]));
    assert_eq!(server.get("/v1/models/smol").status, 200);

    // CORS: a preflight without the key is answered, with llama-server's defaults.
    let r = server.request(
        "OPTIONS",
        "/v1/chat/completions",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type",
            ),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let r = server.request(
        "GET",
        "/v1/models",
        &[
            ("origin", "https://app.example"),
            ("authorization", &bearer()),
        ],
        b"",
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );

    // /props and /slots: two slots of 512 tokens (-c 1024 split across --parallel 2).
    let props = server.get("/props").json();
    assert_eq!(props["total_slots"], 2, "{props}");
    assert_eq!(props["default_generation_settings"]["n_ctx"], 512);
    assert!(props["chat_template"]
        .as_str()
        .is_some_and(|t| t.contains("im_start")));
    let slots = server.get("/slots").json();
    assert_eq!(slots.as_array().map(Vec::len), Some(2), "{slots}");
    assert_eq!(slots[1]["id"], 1);
    assert_eq!(slots[0]["n_ctx"], 512);
    assert_eq!(slots[0]["is_processing"], false);

    // /tokenize and /detokenize round-trip; pieces are the tokens' text.
    let text = "What is the capital of France?";
    let tokens = server.post("/tokenize", &json!({"content": text})).json()["tokens"].clone();
    let ids: Vec<i64> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    assert!(ids.len() > 5, "{tokens}");
    let back = server.post("/detokenize", &json!({"tokens": ids})).json();
    assert_eq!(back["content"], text);
    let pieces = server
        .post("/tokenize", &json!({"content": text, "with_pieces": true}))
        .json();
    let joined: String = pieces["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["piece"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(joined, text);
    assert_eq!(pieces["tokens"][0]["id"], ids[0]);
    let r = server.post("/detokenize", &json!({"tokens": [99999999]}));
    assert_eq!(r.assert_error(400)["param"], "tokens");

    // /apply-template renders the chat prompt the chat route would send.
    let rendered = server
        .post(
            "/apply-template",
            &json!({"messages": [{"role": "user", "content": "Say hi"}]}),
        )
        .json();
    let prompt = rendered["prompt"].as_str().unwrap();
    assert!(prompt.contains("<|im_start|>user\nSay hi"), "{prompt}");
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt}");

    // Native /completion: content, counts, timings, stop_type; deterministic.
    let body = json!({"prompt": "The capital of France is", "n_predict": 6, "temperature": 0});
    let first = server.post("/completion", &body).json();
    let content = first["content"].as_str().unwrap().to_string();
    assert!(!content.is_empty(), "{first}");
    assert_eq!(first["stop"], true);
    assert_eq!(first["tokens_predicted"], 6);
    assert_eq!(first["stop_type"], "limit");
    assert_eq!(first["truncated"], false);
    assert_eq!(first["model"], "alpha");
    assert_eq!(first["tokens"], json!([]));
    assert_eq!(first["generation_settings"]["n_predict"], 6);
    let n_prompt = first["tokens_evaluated"].as_u64().unwrap();
    let timings = &first["timings"];
    assert_eq!(timings["predicted_n"], 6, "{timings}");
    assert_eq!(
        timings["prompt_n"].as_u64().unwrap() + timings["cache_n"].as_u64().unwrap(),
        n_prompt
    );
    assert!(timings["predicted_per_second"].as_f64().unwrap() > 0.0);
    // The same prompt as token ids (with BOS, as text is tokenized) gives the same answer,
    // through the /completions alias.
    let ids = server
        .post(
            "/tokenize",
            &json!({"content": "The capital of France is", "add_special": true}),
        )
        .json()["tokens"]
        .clone();
    assert_eq!(ids.as_array().unwrap().len() as u64, n_prompt);
    let by_ids = server
        .post(
            "/completions",
            &json!({"prompt": ids, "n_predict": 6, "temperature": 0, "cache_prompt": true}),
        )
        .json();
    assert_eq!(by_ids["content"], content.as_str(), "{by_ids}");
    // Several prompts: an array of answers.
    let two = server
        .post(
            "/completion",
            &json!({"prompt": ["Hello", "The sky is"], "n_predict": 2, "temperature": 0}),
        )
        .json();
    assert_eq!(two.as_array().map(Vec::len), Some(2), "{two}");
    assert_eq!(two[1]["index"], 1);
    // n_predict -1: no limit but the server's; a stop word ends it.
    let r = server.post(
        "/completion",
        &json!({"prompt": "1, 2, 3, 4,", "n_predict": -1, "temperature": 0, "stop": [" 7"]}),
    );
    let stopped = r.json();
    assert_eq!(stopped["stop_type"], "word", "{stopped}");
    assert_eq!(stopped["stopping_word"], " 7");
    // A prompt object is its text; response_fields picks (nested) fields.
    let picked = server
        .post(
            "/completion",
            &json!({"prompt": {"prompt_string": "The capital of France is"}, "n_predict": 6,
                    "temperature": 0, "response_fields": ["content", "generation_settings/n_predict"]}),
        )
        .json();
    assert_eq!(
        picked,
        json!({"content": content, "generation_settings/n_predict": 6})
    );
    let r = server.post("/completion", &json!({"prompt": "x", "n_probs": 101}));
    assert_eq!(r.assert_error(400)["param"], "n_probs");
    let r = server.post("/completion", &json!({"prompt": {"a": 1}}));
    assert_eq!(r.assert_error(400)["param"], "prompt");

    // Native streaming: pieces with stop false, then one final object; no [DONE].
    let stream = EventStream::open(
        server.port,
        "/completion",
        &json!({"prompt": "The capital of France is", "n_predict": 6, "temperature": 0, "stream": true}),
    );
    assert_eq!(stream.status, 200);
    let events = native_events(stream);
    let (last, pieces) = events.split_last().expect("events");
    assert!(pieces.iter().all(|e| e["stop"] == false), "{events:?}");
    let streamed: String = pieces
        .iter()
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, content);
    assert_eq!(last["stop"], true);
    assert_eq!(last["timings"]["predicted_n"], 6);
    assert_eq!(last["stop_type"], "limit");

    // The un-prefixed chat route is the OpenAI one.
    let chat = server
        .post(
            "/chat/completions",
            &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}),
        )
        .json();
    assert_eq!(chat["object"], "chat.completion", "{chat}");

    // A prompt over a slot's context: llama-server's error shape.
    let long = "word ".repeat(700);
    let r = server.post("/v1/completions", &json!({"prompt": long, "max_tokens": 4}));
    let error = r.assert_error(400);
    assert_eq!(error["type"], "exceed_context_size_error", "{error}");
    assert!(error["n_prompt_tokens"].as_u64().unwrap() > 512, "{error}");
    assert_eq!(error["n_ctx"], 512);
    let r = server.post("/completion", &json!({"prompt": long}));
    assert_eq!(r.assert_error(400)["type"], "exceed_context_size_error");
}

#[test]
fn serve_listens_on_every_host_of_a_list() {
    let server = Server::start(&[
        "--parallel",
        "1",
        "--host",
        "127.0.0.1,::1",
        "--no-slots",
        "--tags",
        "small,chat",
    ]);
    // --no-slots: /slots is 501 as llama-server answers; --tags are listed, sorted.
    let r = server.get("/slots");
    assert_eq!(r.assert_error(501)["type"], "not_supported_error");
    assert_eq!(server.get("/props").json()["endpoint_slots"], false);
    assert_eq!(
        server.get("/v1/models").json()["data"][0]["tags"],
        json!(["chat", "small"])
    );
    let log = server.log();
    let ports: Vec<(String, u16)> = log
        .lines()
        .filter_map(|l| l.strip_prefix("listening on http://"))
        .map(|rest| {
            let (host, port) = rest.rsplit_once(':').unwrap();
            (host.to_string(), port.parse().unwrap())
        })
        .collect();
    // Both lines are printed before the first is read, or soon after.
    let ports = if ports.len() == 2 {
        ports
    } else {
        std::thread::sleep(std::time::Duration::from_millis(500));
        server
            .log()
            .lines()
            .filter_map(|l| l.strip_prefix("listening on http://"))
            .map(|rest| {
                let (host, port) = rest.rsplit_once(':').unwrap();
                (host.to_string(), port.parse().unwrap())
            })
            .collect()
    };
    assert_eq!(ports.len(), 2, "{log}");
    assert_eq!(ports[1].0, "[::1]");
    let v6 = std::net::TcpStream::connect(("::1", ports[1].1));
    if v6.is_err() {
        println!("skipped: ::1 is not reachable here");
        return;
    }
    drop(v6);
    let r = request(ports[0].1, "GET", "/health", &[], b"");
    assert_eq!(r.status, 200);
    // `request` connects to 127.0.0.1; the IPv6 listener is asked directly.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("::1", ports[1].1)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The named events of an SSE body, in order: (event name, data).
fn named_events(port: u16, path: &str, body: &Value) -> Vec<(String, Value)> {
    let r = request(
        port,
        "POST",
        path,
        &[
            ("authorization", &bearer()),
            ("content-type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    text.split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            Some((name.to_string(), serde_json::from_str(&data).unwrap()))
        })
        .collect()
}

#[test]
fn serve_speaks_anthropic_messages_and_openai_responses() {
    let server = Server::start(&["--parallel", "1", "--api-key", KEY]);
    let question = json!([{"role": "user", "content": "What is the capital of France?"}]);
    let body = json!({"model": "m", "max_tokens": 16, "temperature": 0, "messages": question,
                      "system": "Be brief."});
    let whole = server.post("/v1/messages", &body).json();
    assert_eq!(whole["type"], "message", "{whole}");
    let text = whole["content"][0]["text"].as_str().unwrap().to_string();
    let mut streaming = body.clone();
    streaming["stream"] = json!(true);
    let events = named_events(server.port, "/v1/messages", &streaming);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names[..3],
        ["message_start", "ping", "content_block_start"],
        "{names:?}"
    );
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(deltas, text);
    assert_eq!(
        events[0].1["message"]["usage"]["input_tokens"],
        whole["usage"]["input_tokens"]
    );
    let counted = server
        .post(
            "/v1/messages/count_tokens",
            &json!({"messages": question, "system": "Be brief."}),
        )
        .json();
    assert_eq!(counted["input_tokens"], whole["usage"]["input_tokens"]);
    // Errors in Anthropic's shape.
    let r = server.post("/v1/messages", &json!({"messages": question}));
    assert_eq!(r.status, 400);
    let error = r.json();
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["type"], "invalid_request_error");

    // Responses: the same answer, and its stream's events in order.
    let body = json!({"model": "m", "input": question, "instructions": "Be brief.",
                      "max_output_tokens": 16, "temperature": 0});
    let whole = server.post("/responses", &body).json();
    assert_eq!(whole["object"], "response", "{whole}");
    assert_eq!(whole["output"][0]["content"][0]["text"], text.as_str());
    let mut streaming = body.clone();
    streaming["stream"] = json!(true);
    let events = named_events(server.port, "/v1/responses", &streaming);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    assert_eq!(names.last(), Some(&"response.completed"));
    let sequence: Vec<u64> = events
        .iter()
        .map(|(_, d)| d["sequence_number"].as_u64().unwrap())
        .collect();
    assert!(
        sequence.windows(2).all(|w| w[1] == w[0] + 1),
        "{sequence:?}"
    );
    let (_, done) = events.last().unwrap();
    assert_eq!(
        done["response"]["output"][0]["content"][0]["text"],
        text.as_str()
    );
    assert_eq!(done["response"]["usage"], whole["usage"]);
}

/// The content blocks of an Anthropic stream, rebuilt from its events as a client does
/// (text and thinking deltas appended, `input_json_delta` fragments joined and parsed);
/// asserts that blocks start and stop in order with consecutive indices.
fn anthropic_blocks(events: &[(String, Value)]) -> Vec<Value> {
    let mut blocks: Vec<Value> = Vec::new();
    let mut inputs: Vec<String> = Vec::new();
    let mut open = None;
    for (name, data) in events {
        let index = data["index"].as_u64().map(|i| i as usize);
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(open, None, "a block starts while {open:?} is open");
                assert_eq!(index, Some(blocks.len()), "{data}");
                open = index;
                blocks.push(data["content_block"].clone());
                inputs.push(String::new());
            }
            "content_block_delta" => {
                let i = index.unwrap();
                assert_eq!(open, Some(i), "{data}");
                let d = &data["delta"];
                match d["type"].as_str().unwrap() {
                    "text_delta" => {
                        let t = blocks[i]["text"].as_str().unwrap().to_string();
                        blocks[i]["text"] = json!(t + d["text"].as_str().unwrap());
                    }
                    "input_json_delta" => inputs[i].push_str(d["partial_json"].as_str().unwrap()),
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                assert_eq!(open, index, "{data}");
                open = None;
            }
            _ => {}
        }
    }
    assert_eq!(open, None);
    for (block, input) in blocks.iter_mut().zip(inputs) {
        if block["type"] == "tool_use" {
            block["input"] =
                serde_json::from_str(&input).unwrap_or_else(|e| panic!("{e}: {input}"));
        }
    }
    blocks
}

#[test]
fn serve_calls_tools_on_anthropic_messages_and_openai_responses() {
    let server = Server::start(&["--parallel", "1", "--api-key", KEY]);
    let tools = json!([{"name": "get_weather", "description": "The current weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    let question = json!([{"role": "user", "content": "What is the weather in Paris?"}]);
    let body = json!({"max_tokens": 80, "temperature": 0, "messages": question, "tools": tools,
                      "tool_choice": {"type": "any"}});
    let whole = server.post("/v1/messages", &body).json();
    assert_eq!(whole["stop_reason"], "tool_use", "{whole}");
    let blocks = whole["content"].as_array().unwrap();
    let call = blocks.iter().find(|b| b["type"] == "tool_use").unwrap();
    assert_eq!(call["name"], "get_weather");
    assert!(call["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(call["input"]["city"].is_string(), "{call}");
    // Streamed: the tool_use block's input comes as several input_json_delta fragments.
    let mut streaming = body.clone();
    streaming["stream"] = json!(true);
    let events = named_events(server.port, "/v1/messages", &streaming);
    let fragments = events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
        .count();
    assert!(fragments > 2, "{events:?}");
    let streamed = anthropic_blocks(&events);
    let last = streamed.last().unwrap();
    assert_eq!(
        (&last["name"], &last["input"]),
        (&call["name"], &call["input"])
    );
    let (_, delta) = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    // The round trip: the call and its result (and reasoning) in the history.
    let history = json!([
        question[0],
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "The tool knows."}, call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "Sunny, 21 degrees"}]},
    ]);
    let answer = server
        .post(
            "/v1/messages",
            &json!({"max_tokens": 24, "temperature": 0, "messages": history,
                                       "tools": tools, "tool_choice": {"type": "none"}}),
        )
        .json();
    assert_eq!(answer["content"][0]["type"], "text", "{answer}");
    let reason = answer["stop_reason"].as_str().unwrap();
    assert!(["max_tokens", "end_turn"].contains(&reason), "{answer}");
    // Thinking blocks are the template's reasoning_content: a template that renders it
    // counts them.
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("t.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}{{ m.role }}: {% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}\n{% endfor %}",
    )
    .unwrap();
    let thinking = Server::start(&[
        "--parallel",
        "1",
        "--api-key",
        KEY,
        "--chat-template-file",
        template.to_str().unwrap(),
    ]);
    let count = |messages: &Value| {
        thinking
            .post("/v1/messages/count_tokens", &json!({"messages": messages}))
            .json()["input_tokens"]
            .as_u64()
            .unwrap()
    };
    let mut without = history.clone();
    without[1]["content"] = json!([call]);
    assert!(
        count(&history) >= count(&without) + 4,
        "{} {}",
        count(&history),
        count(&without)
    );
    drop(thinking);
    // An image is refused in Anthropic's shape, named.
    let image = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}});
    let r = server.post("/v1/messages", &json!({"max_tokens": 4, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": [image]}]}]}));
    assert_eq!(r.status, 400);
    let error = r.json();
    assert_eq!(error["type"], "error");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("image input is not supported"));

    // Responses: a function_call item, continued with previous_response_id.
    let tools = json!([{"type": "function", "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    let body = json!({"input": "What is the weather in Paris?", "tools": tools,
                      "tool_choice": "required", "max_output_tokens": 80, "temperature": 0});
    let first = server.post("/v1/responses", &body).json();
    let item = &first["output"][0];
    assert_eq!(item["type"], "function_call", "{first}");
    assert_eq!(item["name"], "get_weather");
    let args: Value = serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string(), "{item}");
    // The response repeats the request's settings, its tools in the request's shape.
    assert_eq!(first["tools"], tools, "{first}");
    assert_eq!(first["tool_choice"], "required");
    assert_eq!(first["max_output_tokens"], 80);
    assert_eq!(first["parallel_tool_calls"], false);
    let next = json!({"previous_response_id": first["id"], "max_output_tokens": 8,
        "input": [{"type": "function_call_output", "call_id": item["call_id"], "output": "Sunny"}]});
    let counted = |body: &Value| {
        server.post("/v1/responses/input_tokens", body).json()["input_tokens"]
            .as_u64()
            .unwrap()
    };
    // The stored conversation (question, call, result) is in the prompt.
    assert!(counted(&next) > counted(&json!({"input": "Sunny"})) + 10);
    let second = server.post("/v1/responses", &next).json();
    assert_eq!(second["object"], "response", "{second}");
    let mut unknown = next.clone();
    unknown["previous_response_id"] = json!("resp_unknown");
    let r = server.post("/v1/responses", &unknown);
    assert_eq!(r.assert_error(400)["param"], "previous_response_id");
    // store: false keeps nothing.
    let mut unstored = body.clone();
    unstored["store"] = json!(false);
    unstored["max_output_tokens"] = json!(4);
    let gone = server.post("/v1/responses", &unstored).json();
    let mut after = next.clone();
    after["previous_response_id"] = gone["id"].clone();
    assert_eq!(server.post("/v1/responses", &after).status, 400);
    // Streamed: the item is added, its arguments come as deltas, and done events close it.
    let mut streaming = body.clone();
    streaming["stream"] = json!(true);
    let events = named_events(server.port, "/v1/responses", &streaming);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let deltas: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, d)| d)
        .collect();
    assert!(deltas.len() > 2, "{names:?}");
    let joined: String = deltas
        .iter()
        .map(|d| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&joined).unwrap(), args);
    let (_, added) = events
        .iter()
        .find(|(n, _)| n == "response.output_item.added")
        .unwrap();
    assert_eq!(added["item"]["type"], "function_call");
    assert_eq!(deltas[0]["item_id"], added["item"]["id"]);
    let (_, done) = events.last().unwrap();
    assert_eq!(done["type"], "response.completed");
    assert_eq!(done["response"]["output"][0]["arguments"], json!(joined));
}

#[test]
fn anthropic_python_client() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let Some(python) = crate::support::python_env() else {
        println!("skipped: scripts/python-env.sh could not make a Python environment");
        return;
    };
    let out = std::process::Command::new(python)
        .arg(root.join("tests/python/test_anthropic_client.py"))
        .arg("--binary")
        .arg(assert_cmd::cargo::cargo_bin("llama-cli"))
        .arg("--model")
        .arg(crate::support::model())
        .output()
        .expect("run the Python test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    if stdout.contains("skipped") {
        println!("skipped: the anthropic package is not installed");
        return;
    }
    assert!(stdout.contains("7 passed, 0 failed"), "{stdout}\n{stderr}");
}

#[test]
fn kv_unified_lets_one_request_use_the_whole_context() {
    // -c 1024 over two sequences: 512 each, unless --kv-unified pools them.
    let server = Server::start(&["--parallel", "2", "--kv-unified"]);
    let props = server.get("/props").json();
    assert_eq!(
        props["default_generation_settings"]["n_ctx"], 1024,
        "{props}"
    );
    let long = "word ".repeat(700);
    let r = server.post(
        "/v1/completions",
        &json!({"prompt": long, "max_tokens": 2, "temperature": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["usage"]["prompt_tokens"].as_u64().unwrap() > 512);
}

#[test]
fn a_degraded_context_is_told_as_the_total_c() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("llama-cli"))
        .args(["serve", "-m"])
        .arg(crate::support::model())
        .args([
            "--port",
            "0",
            "-c",
            "65536",
            "--parallel",
            "4",
            "--max-mem",
            "300M",
            "-t",
            "2",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("listening on") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // -c is the total of the four sequences, in the note too.
    assert!(seen.contains("reduced --ctx-size from 65536 to"), "{seen}");
}
