//! Anthropic's Messages API: `POST /v1/messages` (JSON, or with `stream: true` Anthropic's
//! named SSE events: `message_start`, `ping`, `content_block_start`, `content_block_delta`,
//! `content_block_stop`, `message_delta`, `message_stop`) and `POST /v1/messages/count_tokens`,
//! on the same generation path as `/v1/chat/completions` ([`chat_path`]).
//!
//! Fields: `messages` (roles `user` and `assistant`; content a string or blocks: `text`,
//! `thinking` (the assistant's earlier reasoning, rendered as the template renders
//! `reasoning_content`), `tool_use` (an assistant's call) and `tool_result` (a user's answer to
//! a call: text, text blocks, `is_error`)), `system` (a string or text blocks), `max_tokens`
//! (required, as Anthropic requires it), `tools` (`name`, `description`, `input_schema`),
//! `tool_choice` (`auto`, `any`, `tool` with `name`, `none`), `stop_sequences`, `temperature`,
//! `top_p`, `top_k`, `stream`, `chat_template_kwargs` (llama-server's extension); an empty
//! `messages` list is accepted, as llama-server accepts it; `thinking` (`{"type": "enabled"}` or
//! `{"type": "disabled"}`) turns the template's `enable_thinking` on or off (its
//! `budget_tokens` is accepted, not enforced: generation stops only at `max_tokens`);
//! `metadata` is accepted and ignored. Image blocks are refused (400, "image input is not supported"): this
//! server has no vision projector. Errors have Anthropic's body,
//! `{"type": "error", "error": {"type", "message"}}`.
//!
//! The answer's blocks are `thinking` (reasoning split out by the template's format), `text`
//! and `tool_use` (`stop_reason: "tool_use"`), in that order; a stream opens each block when
//! its first piece comes, with consecutive indices, and sends a call's input as
//! `input_json_delta` fragments as the model writes it.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use llama_core::chat::{MessageDelta, ParsedMessage};
use llama_core::engine::Completion;
use llama_core::FinishReason;
use serde_json::{json, Map, Value};

use super::chat_path::{self, Answer, ChatFrames};
use super::error::ApiError;
use super::events;
use super::limits::JsonBody;
use super::log::RequestRecord;
use super::state::AppState;

/// The routes of this module.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
}

/// An error in Anthropic's shape.
fn anthropic_error(err: ApiError) -> Response {
    let body = json!({
        "type": "error",
        "error": {"type": err.kind, "message": err.message},
    });
    let mut response = err.clone().into_response();
    *response.body_mut() = axum::body::Body::from(body.to_string());
    response
        .headers_mut()
        .remove(axum::http::header::CONTENT_LENGTH);
    response
}

/// The refusal of an image block.
fn no_images(field: &str) -> ApiError {
    ApiError::invalid(
        "image input is not supported: this server has no vision projector (mmproj)",
        Some(field),
    )
}

/// The text of a system prompt or a tool result: a string, or text blocks.
fn text_of(value: &Value, field: &str) -> Result<String, ApiError> {
    match value {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut text = String::new();
            for (i, block) in blocks.iter().enumerate() {
                let field = format!("{field}[{i}]");
                match (block.get("type").and_then(Value::as_str), block.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    (Some("image"), _) => return Err(no_images(&field)),
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            format!(
                                "unsupported content block {}: only text blocks are supported here",
                                kind.unwrap_or("without a type")
                            ),
                            Some(&field),
                        ))
                    }
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::invalid(
            "content must be a string or an array of content blocks",
            Some(field),
        )),
    }
}

/// A string field of a block, required.
fn string_field<'v>(block: &'v Value, name: &str, field: &str) -> Result<&'v str, ApiError> {
    block.get(name).and_then(Value::as_str).ok_or_else(|| {
        ApiError::invalid(
            format!("{name} must be a string"),
            Some(&format!("{field}.{name}")),
        )
    })
}

/// One Anthropic message as OpenAI chat messages: the message itself (text, reasoning, tool
/// calls), then a `tool` message per `tool_result` block.
fn convert_message(m: &Value, field: &str, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let role = match m.get("role").and_then(Value::as_str) {
        Some(role @ ("user" | "assistant")) => role,
        other => {
            return Err(ApiError::invalid(
                format!("unsupported role {other:?}: expected user or assistant"),
                Some(&format!("{field}.role")),
            ))
        }
    };
    let content_field = format!("{field}.content");
    let blocks = match m.get("content").unwrap_or(&Value::Null) {
        Value::String(s) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => {
            return Err(ApiError::invalid(
                "content must be a string or an array of content blocks",
                Some(&content_field),
            ))
        }
    };
    let (mut text, mut reasoning) = (String::new(), String::new());
    let (mut calls, mut results) = (Vec::new(), Vec::new());
    for (i, block) in blocks.iter().enumerate() {
        let field = format!("{content_field}[{i}]");
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(string_field(block, "text", &field)?),
            Some("thinking") => reasoning.push_str(string_field(block, "thinking", &field)?),
            // Redacted reasoning is encrypted: nothing a local model can read.
            Some("redacted_thinking") => {}
            Some("image") => return Err(no_images(&field)),
            Some("tool_use") if role == "assistant" => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                if !input.is_object() {
                    return Err(ApiError::invalid(
                        "a tool_use block's input must be an object",
                        Some(&format!("{field}.input")),
                    ));
                }
                calls.push(json!({
                    "id": string_field(block, "id", &field)?,
                    "type": "function",
                    "function": {
                        "name": string_field(block, "name", &field)?,
                        "arguments": input.to_string(),
                    },
                }));
            }
            Some("tool_result") if role == "user" => {
                let id = string_field(block, "tool_use_id", &field)?;
                let content = block.get("content").unwrap_or(&Value::Null);
                let mut result = text_of(content, &format!("{field}.content"))?;
                if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                    result = format!("Error: {result}");
                }
                results.push(json!({"role": "tool", "tool_call_id": id, "content": result}));
            }
            kind => {
                return Err(ApiError::invalid(
                    format!(
                        "unsupported content block {} in a {role} message",
                        kind.unwrap_or("without a type")
                    ),
                    Some(&field),
                ))
            }
        }
    }
    if !text.is_empty() || !calls.is_empty() || !reasoning.is_empty() || results.is_empty() {
        let mut message = json!({"role": role, "content": text});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        if !reasoning.is_empty() {
            message["reasoning_content"] = Value::String(reasoning);
        }
        out.push(message);
    }
    out.extend(results);
    Ok(())
}

/// An Anthropic tool as an OpenAI function tool.
fn convert_tool(tool: &Value, field: &str) -> Result<Value, ApiError> {
    let name = string_field(tool, "name", field)?;
    let mut function = json!({
        "name": name,
        "parameters": tool.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"})),
    });
    if let Some(d) = tool.get("description").and_then(Value::as_str) {
        function["description"] = json!(d);
    }
    Ok(json!({"type": "function", "function": function}))
}

/// `tool_choice` in OpenAI's terms.
fn convert_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    let bad = || {
        ApiError::invalid(
            "tool_choice must be {\"type\": \"auto\" | \"any\" | \"none\"} or {\"type\": \"tool\", \"name\": ...}",
            Some("tool_choice"),
        )
    };
    Ok(match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice.get("name").and_then(Value::as_str).ok_or_else(bad)?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => return Err(bad()),
    })
}

/// The OpenAI chat request an Anthropic request stands for; `generating`: `max_tokens` is
/// required (a `/v1/messages` request, not a count).
fn openai_request(body: &Value, generating: bool) -> Result<Value, ApiError> {
    if generating {
        match body.get("max_tokens") {
            Some(v) if v.is_i64() || v.is_u64() => {}
            _ => {
                return Err(ApiError::invalid(
                    "max_tokens is required (a positive integer)",
                    Some("max_tokens"),
                ))
            }
        }
    }
    let mut messages = Vec::new();
    if let Some(system) = body.get("system").filter(|s| !s.is_null()) {
        messages.push(json!({"role": "system", "content": text_of(system, "system")?}));
    }
    let list = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("messages must be an array", Some("messages")))?;
    for (i, m) in list.iter().enumerate() {
        convert_message(m, &format!("messages[{i}]"), &mut messages)?;
    }
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages));
    chat_path::convert_tools_into(&mut out, body, "an array", convert_tool)?;
    if let Some(choice) = body.get("tool_choice").filter(|c| !c.is_null()) {
        out.insert("tool_choice".into(), convert_tool_choice(choice)?);
        if choice
            .get("disable_parallel_tool_use")
            .and_then(Value::as_bool)
            == Some(false)
        {
            out.insert("parallel_tool_calls".into(), json!(true));
        }
    }
    let names: &[(&str, &str)] = if generating {
        &[
            ("max_tokens", "max_tokens"),
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("top_k", "top_k"),
            ("stop_sequences", "stop"),
            ("stream", "stream"),
            ("chat_template_kwargs", "chat_template_kwargs"),
        ]
    } else {
        &[("chat_template_kwargs", "chat_template_kwargs")]
    };
    chat_path::rename_into(&mut out, body, names);
    if let Some(enable) = thinking_enabled(body)? {
        out.insert("enable_thinking".into(), enable.into());
    }
    Ok(Value::Object(out))
}

/// `thinking`: `{"type": "enabled", "budget_tokens": n}` or `{"type": "disabled"}`, as the
/// template's `enable_thinking`; absent, the server's `--reasoning` decides.
fn thinking_enabled(body: &Value) -> Result<Option<bool>, ApiError> {
    let Some(thinking) = body.get("thinking").filter(|t| !t.is_null()) else {
        return Ok(None);
    };
    match thinking.get("type").and_then(Value::as_str) {
        Some("enabled") => match thinking.get("budget_tokens") {
            None | Some(Value::Null) => Ok(Some(true)),
            Some(n) if n.as_u64().is_some() => Ok(Some(true)),
            Some(_) => Err(ApiError::invalid(
                "thinking.budget_tokens must be a positive integer",
                Some("thinking.budget_tokens"),
            )),
        },
        Some("disabled") => Ok(Some(false)),
        _ => Err(ApiError::invalid(
            "thinking must be {\"type\": \"enabled\", \"budget_tokens\": n} or {\"type\": \"disabled\"}",
            Some("thinking.type"),
        )),
    }
}

/// Anthropic's `stop_reason` and `stop_sequence`.
fn stop(message: &ParsedMessage, c: &Completion, stops: &[String]) -> (&'static str, Value) {
    match c.finish_reason {
        FinishReason::Length | FinishReason::ContextFull => ("max_tokens", Value::Null),
        _ if !message.tool_calls.is_empty() => ("tool_use", Value::Null),
        FinishReason::StopString => (
            "stop_sequence",
            // The engine does not say which stop string matched: named when there is one.
            match stops {
                [only] => json!(only),
                _ => Value::Null,
            },
        ),
        FinishReason::EndOfGeneration | FinishReason::Cancelled => ("end_turn", Value::Null),
    }
}

fn usage(c: &Completion) -> Value {
    json!({
        "input_tokens": c.prompt_tokens,
        "output_tokens": c.completion_tokens,
        "cache_read_input_tokens": c.cached_tokens,
    })
}

/// The answer's content blocks: thinking, text, tool uses (an empty text block when there
/// is nothing else).
fn content_blocks(message: &ParsedMessage) -> Vec<Value> {
    let mut blocks = Vec::new();
    if !message.reasoning_content.is_empty() {
        blocks.push(
            json!({"type": "thinking", "thinking": message.reasoning_content, "signature": ""}),
        );
    }
    if !message.content.is_empty() || (blocks.is_empty() && message.tool_calls.is_empty()) {
        blocks.push(json!({"type": "text", "text": message.content}));
    }
    for call in &message.tool_calls {
        let input: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    blocks
}

/// Which kind of block is open in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Thinking,
    Text,
    Tool(usize),
}

/// The stream's events, named as Anthropic names them.
struct MessageFrames {
    id: String,
    model: String,
    input_tokens: usize,
    stops: Vec<String>,
    /// The open block and its index.
    open: Option<(Block, usize)>,
    /// Blocks opened so far.
    opened: usize,
}

impl MessageFrames {
    fn event(name: &str, value: Value) -> Event {
        events::named(name, &value)
    }

    /// Closes the open block unless it is `block`, and opens `block` (`start`: its
    /// `content_block`); returns the block's index.
    fn enter(&mut self, block: Block, start: Value, out: &mut Vec<Event>) -> usize {
        if let Some((open, index)) = self.open {
            if open == block {
                return index;
            }
            out.push(Self::event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
        let index = self.opened;
        self.opened += 1;
        self.open = Some((block, index));
        out.push(Self::event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        index
    }
}

impl ChatFrames for MessageFrames {
    fn start(&mut self) -> Vec<Event> {
        vec![
            Self::event(
                "message_start",
                json!({
                    "type": "message_start",
                    "message": {
                        "id": self.id, "type": "message", "role": "assistant",
                        "model": self.model, "content": [],
                        "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
                    },
                }),
            ),
            Self::event("ping", json!({"type": "ping"})),
        ]
    }

    fn delta(&mut self, delta: MessageDelta) -> Vec<Event> {
        let mut out = Vec::new();
        let (index, delta) = match delta {
            MessageDelta::Reasoning(text) => (
                self.enter(
                    Block::Thinking,
                    json!({"type": "thinking", "thinking": ""}),
                    &mut out,
                ),
                json!({"type": "thinking_delta", "thinking": text}),
            ),
            MessageDelta::Content(text) => (
                self.enter(Block::Text, json!({"type": "text", "text": ""}), &mut out),
                json!({"type": "text_delta", "text": text}),
            ),
            MessageDelta::ToolCall { index, id, name } => {
                self.enter(
                    Block::Tool(index),
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    &mut out,
                );
                return out;
            }
            MessageDelta::ToolArguments { index, text } => (
                self.enter(Block::Tool(index), json!({}), &mut out),
                json!({"type": "input_json_delta", "partial_json": text}),
            ),
        };
        out.push(Self::event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
        out
    }

    fn done(&mut self, message: &ParsedMessage, c: &Completion) -> Vec<Event> {
        let mut out = Vec::new();
        if self.open.is_none() {
            // An empty answer still has its (empty) text block.
            self.enter(Block::Text, json!({"type": "text", "text": ""}), &mut out);
        }
        if let Some((_, index)) = self.open.take() {
            out.push(Self::event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
        let (reason, sequence) = stop(message, c, &self.stops);
        out.push(Self::event(
            "message_delta",
            json!({"type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": sequence},
                    "usage": {"output_tokens": c.completion_tokens}}),
        ));
        out.push(Self::event("message_stop", json!({"type": "message_stop"})));
        out
    }

    fn failed(&mut self, err: &ApiError) -> Vec<Event> {
        vec![Self::event(
            "error",
            json!({"type": "error", "error": {"type": err.kind, "message": err.message}}),
        )]
    }
}

#[utoipa::path(post, path = "/v1/messages", tag = "anthropic", request_body(content = Object, content_type = "application/json", description = "Anthropic's Messages request: model, messages (text, thinking, tool_use, tool_result blocks), system, max_tokens, tools, tool_choice, stop_sequences, stream"), responses(
    (status = 200, description = "The answer (JSON, or Anthropic's event stream with `stream`)"),
    (status = 400, description = "An invalid field, named", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn messages(
    State(state): State<Arc<AppState>>,
    Extension(record): Extension<Arc<RequestRecord>>,
    body: Result<JsonBody, ApiError>,
) -> Response {
    chat_path::respond(
        &record,
        answer(state, Arc::clone(&record), body),
        anthropic_error,
    )
    .await
}

async fn answer(
    state: Arc<AppState>,
    record: Arc<RequestRecord>,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(body) = body?;
    let submitted = chat_path::submit(&state, &openai_request(&body, true)?).await?;
    let id = format!("msg_{}", record.id);
    let stops = submitted.prepared.options.stop.clone();
    let frames = MessageFrames {
        id: id.clone(),
        model: state.model_id.clone(),
        input_tokens: submitted.prompt_tokens,
        stops: stops.clone(),
        open: None,
        opened: 0,
    };
    let (message, c) = match chat_path::run(submitted, record, frames).await? {
        Answer::Streamed(response) => return Ok(response),
        Answer::Whole(message, c) => (message, c),
    };
    let (reason, sequence) = stop(&message, &c, &stops);
    Ok(Json(json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": state.model_id,
        "content": content_blocks(&message),
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage(&c),
    }))
    .into_response())
}

#[utoipa::path(post, path = "/v1/messages/count_tokens", tag = "anthropic", request_body(content = Object, content_type = "application/json", description = "messages, system and tools, as for /v1/messages"), responses(
    (status = 200, description = "The answer"),
    (status = 400, description = "An invalid field, named", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn count_tokens(
    State(state): State<Arc<AppState>>,
    body: Result<JsonBody, ApiError>,
) -> Response {
    let result = async {
        let JsonBody(body) = body?;
        let n = chat_path::count_request(&state, &openai_request(&body, false)?).await?;
        Ok::<_, ApiError>(Json(json!({"input_tokens": n})).into_response())
    }
    .await;
    result.unwrap_or_else(anthropic_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinking_turns_the_templates_enable_thinking_on_or_off() {
        let with = |thinking: Value| {
            openai_request(
                &json!({"max_tokens": 5, "messages": [], "thinking": thinking}),
                true,
            )
        };
        let on = with(json!({"type": "enabled", "budget_tokens": 1024})).unwrap();
        assert_eq!(on["enable_thinking"], true);
        let off = with(json!({"type": "disabled"})).unwrap();
        assert_eq!(off["enable_thinking"], false);
        let absent = openai_request(&json!({"max_tokens": 5, "messages": []}), true).unwrap();
        assert!(absent.get("enable_thinking").is_none());
        let err = with(json!({"type": "sometimes"})).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("thinking.type"));
        let err = with(json!({"type": "enabled", "budget_tokens": "lots"})).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("thinking.budget_tokens"));
    }

    #[test]
    fn blocks_become_the_openai_conversation() {
        let body = json!({
            "max_tokens": 5,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Ask the tool."},
                    {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}},
                ]},
                {"role": "user", "content": [
                    {"type": "text", "text": "Here:"},
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "Sunny"}]},
                    {"type": "tool_result", "tool_use_id": "t2", "is_error": true, "content": "no city"},
                ]},
            ],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "stop_sequences": ["x"],
            "metadata": {},
        });
        let r = openai_request(&body, true).unwrap();
        let m = r["messages"].as_array().unwrap();
        assert_eq!(m.len(), 6, "{m:?}");
        assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(m[2]["reasoning_content"], "Ask the tool.");
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(m[3], json!({"role": "user", "content": "Here:"}));
        assert_eq!(
            m[4],
            json!({"role": "tool", "tool_call_id": "t1", "content": "Sunny"})
        );
        assert_eq!(m[5]["content"], "Error: no city");
        assert_eq!(r["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(r["tool_choice"]["function"]["name"], "get_weather");
        assert_eq!(r["stop"], json!(["x"]));
        assert!(r.get("metadata").is_none());
    }

    #[test]
    fn bad_blocks_are_named() {
        let image = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}});
        for (body, param) in [
            (
                json!({"max_tokens": 1, "messages": [{"role": "user", "content": [image.clone()]}]}),
                "messages[0].content[0]",
            ),
            (
                json!({"max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "a", "content": [image]}]}]}),
                "messages[0].content[0].content[0]",
            ),
            (
                json!({"max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "tool_use"}]}]}),
                "messages[0].content[0]",
            ),
            (
                json!({"max_tokens": 1, "messages": [], "tool_choice": {"type": "x"}}),
                "tool_choice",
            ),
            (json!({"messages": []}), "max_tokens"),
            (json!({"max_tokens": 1}), "messages"),
        ] {
            let err = openai_request(&body, true).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{body}");
        }
        // count_tokens needs no max_tokens.
        assert!(openai_request(&json!({"messages": []}), false).is_ok());
    }

    #[test]
    fn answers_have_thinking_text_and_tool_use_blocks() {
        let message = ParsedMessage {
            content: "Sure.".into(),
            reasoning_content: "Hm.".into(),
            tool_calls: vec![llama_core::ToolCall {
                id: "call_1".into(),
                name: "f".into(),
                arguments: "{\"a\":1}".into(),
            }],
        };
        let blocks = content_blocks(&message);
        let kinds: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["thinking", "text", "tool_use"]);
        assert_eq!(blocks[2]["input"], json!({"a": 1}));
        assert_eq!(content_blocks(&ParsedMessage::default()).len(), 1);
    }
}
