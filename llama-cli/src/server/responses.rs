//! OpenAI's Responses API: `POST /v1/responses` (and `/responses`), on the same generation
//! path as `/v1/chat/completions` ([`chat_path`]). `input` is a string (one user message) or
//! a list of messages (`{"role", "content"}`, optionally `"type": "message"`; content a string
//! or `input_text`/`output_text` parts); `instructions` is a system message put first;
//! `max_output_tokens`, `temperature`, `top_p` and `stream` as OpenAI defines them. Streams send
//! the named events `response.created`, `response.in_progress`,
//! `response.output_item.added`, `response.content_part.added`, `response.output_text.delta`,
//! `response.output_text.done`, `response.content_part.done`, `response.output_item.done` and
//! `response.completed`, each with a `sequence_number`. Nothing is stored: `store` and
//! `previous_response_id` other than false/null are refused.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use llama_core::engine::{Completion, Progress};
use llama_core::{ChatMessage, FinishReason, Role};
use serde_json::{json, Value};

use super::chat_path::{self, Submitted};
use super::error::ApiError;
use super::events::{self, Frames};
use super::limits::JsonBody;
use super::log::RequestRecord;
use super::openai::unix_now;
use super::state::AppState;
use super::timings;

/// The routes of this module.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/responses", post(responses))
        .route("/responses", post(responses))
        .route("/v1/responses/input_tokens", post(input_tokens))
        .route("/responses/input_tokens", post(input_tokens))
}

/// `POST /v1/responses/input_tokens`: the prompt tokens of a request, `{"input_tokens"}`.
async fn input_tokens(
    State(state): State<Arc<AppState>>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let JsonBody(body) = body?;
    let n = chat_path::count(&state, conversation(&body)?).await?;
    Ok(Json(json!({"input_tokens": n})))
}

fn text_of(value: &Value, field: &str) -> Result<String, ApiError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (i, part) in parts.iter().enumerate() {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("input_text" | "output_text" | "text"), Some(Value::String(t))) => {
                        text.push_str(t)
                    }
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            format!(
                                "unsupported content part {}: only text parts are supported",
                                kind.unwrap_or("without a type")
                            ),
                            Some(&format!("{field}[{i}]")),
                        ))
                    }
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::invalid(
            "content must be a string or a list of parts",
            Some(field),
        )),
    }
}

/// The conversation: `instructions` first, then `input`.
fn conversation(body: &Value) -> Result<Vec<ChatMessage>, ApiError> {
    for field in ["previous_response_id", "tools"] {
        if body
            .get(field)
            .is_some_and(|v| !v.is_null() && v != &json!([]))
        {
            return Err(ApiError::invalid(
                format!("{field} is not supported by this server"),
                Some(field),
            ));
        }
    }
    let mut out = Vec::new();
    if let Some(Value::String(s)) = body.get("instructions") {
        out.push(ChatMessage::new(Role::System, s.clone()));
    }
    match body.get("input") {
        Some(Value::String(s)) => out.push(ChatMessage::new(Role::User, s.clone())),
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                let kind = item
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("message");
                if kind != "message" {
                    return Err(ApiError::invalid(
                        format!("unsupported input item type {kind:?}: only messages"),
                        Some(&format!("input[{i}].type")),
                    ));
                }
                let role = match item.get("role").and_then(Value::as_str) {
                    Some("system" | "developer") => Role::System,
                    Some("user") => Role::User,
                    Some("assistant") => Role::Assistant,
                    other => {
                        return Err(ApiError::invalid(
                            format!("unsupported role {other:?}"),
                            Some(&format!("input[{i}].role")),
                        ))
                    }
                };
                let content = item.get("content").unwrap_or(&Value::Null);
                out.push(ChatMessage::new(
                    role,
                    text_of(content, &format!("input[{i}].content"))?,
                ));
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "input must be a string or a non-empty list of messages",
                Some("input"),
            ))
        }
    }
    Ok(out)
}

/// What every event of one response repeats.
#[derive(Debug, Clone)]
struct Envelope {
    id: String,
    message_id: String,
    created: u64,
    model: String,
}

impl Envelope {
    fn message(&self, text: &str, done: bool) -> Value {
        let content = if done || !text.is_empty() {
            json!([{"type": "output_text", "text": text, "annotations": []}])
        } else {
            json!([])
        };
        json!({
            "type": "message",
            "id": self.message_id,
            "status": if done { "completed" } else { "in_progress" },
            "role": "assistant",
            "content": content,
        })
    }

    /// The response object; `finished`: its text and completion.
    fn response(&self, finished: Option<(&str, &Completion)>) -> Value {
        let (status, output, usage, incomplete) = match finished {
            None => ("in_progress", json!([]), Value::Null, Value::Null),
            Some((text, c)) => {
                let length = matches!(
                    c.finish_reason,
                    FinishReason::Length | FinishReason::ContextFull
                );
                (
                    if length { "incomplete" } else { "completed" },
                    json!([self.message(text, true)]),
                    json!({
                        "input_tokens": c.prompt_tokens,
                        "input_tokens_details": {"cached_tokens": c.cached_tokens},
                        "output_tokens": c.completion_tokens,
                        "output_tokens_details": {"reasoning_tokens": 0},
                        "total_tokens": c.prompt_tokens + c.completion_tokens,
                    }),
                    if length {
                        json!({"reason": "max_output_tokens"})
                    } else {
                        Value::Null
                    },
                )
            }
        };
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "model": self.model,
            "output": output,
            "usage": usage,
            "incomplete_details": incomplete,
            "error": null,
            "parallel_tool_calls": false,
            "tools": [],
        })
    }
}

/// The stream's events.
struct ResponseFrames {
    envelope: Envelope,
    text: String,
    sequence: u64,
    /// The figures to send with the next text delta (`timings_per_token`).
    timings: Option<Value>,
}

impl ResponseFrames {
    fn event(&mut self, kind: &str, mut value: Value) -> Event {
        value["type"] = json!(kind);
        value["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        events::named(kind, &value)
    }

    fn part(&self, text: &str) -> Value {
        json!({
            "item_id": self.envelope.message_id, "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": text, "annotations": []},
        })
    }
}

impl Frames for ResponseFrames {
    fn start(&mut self) -> Vec<Event> {
        let response = self.envelope.response(None);
        let item = self.envelope.message("", false);
        let part = self.part("");
        vec![
            self.event("response.created", json!({"response": response})),
            self.event("response.in_progress", json!({"response": response})),
            self.event(
                "response.output_item.added",
                json!({"output_index": 0, "item": item}),
            ),
            self.event("response.content_part.added", part),
        ]
    }

    fn text(&mut self, text: &str) -> Vec<Event> {
        self.text.push_str(text);
        let id = self.envelope.message_id.clone();
        let mut delta = json!({"item_id": id, "output_index": 0, "content_index": 0, "delta": text, "logprobs": []});
        if let Some(t) = self.timings.take() {
            delta["timings"] = t;
        }
        vec![self.event("response.output_text.delta", delta)]
    }

    /// llama-server's telemetry: a prompt report is a `response.in_progress` event with
    /// `prompt_progress`; a token's figures go with the next text delta.
    fn progress(&mut self, p: &Progress) -> Vec<Event> {
        if timings::is_prompt_report(p) {
            let response = self.envelope.response(None);
            let value =
                json!({"response": response, "prompt_progress": timings::prompt_progress(p)});
            vec![self.event("response.in_progress", value)]
        } else {
            self.timings = Some(timings::of_progress(p));
            Vec::new()
        }
    }

    fn done(&mut self, c: &Completion) -> Vec<Event> {
        let text = self.text.clone();
        let id = self.envelope.message_id.clone();
        let part = self.part(&text);
        let item = self.envelope.message(&text, true);
        let response = self.envelope.response(Some((&text, c)));
        vec![
            self.event(
                "response.output_text.done",
                json!({"item_id": id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
            ),
            self.event("response.content_part.done", part),
            self.event(
                "response.output_item.done",
                json!({"output_index": 0, "item": item}),
            ),
            self.event(
                "response.completed",
                json!({"response": response, "timings": super::native::timings(c)}),
            ),
        ]
    }

    fn failed(&mut self, err: &ApiError) -> Vec<Event> {
        let value = json!({"code": err.code, "message": err.message, "param": err.param});
        vec![self.event("error", value)]
    }
}

#[utoipa::path(post, path = "/v1/responses", tag = "openai", request_body(content = Object, content_type = "application/json", description = "OpenAI's Responses request: input (text or messages), instructions, max_output_tokens, stream"), responses(
    (status = 200, description = "The answer (JSON, or the response.* event stream with `stream`)"),
    (status = 400, description = "An invalid field, named", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn responses(
    State(state): State<Arc<AppState>>,
    Extension(record): Extension<Arc<RequestRecord>>,
    body: Result<JsonBody, ApiError>,
) -> Response {
    match answer(state, Arc::clone(&record), body).await {
        Ok(response) => response,
        Err(err) => {
            record.failed(&err.message);
            err.into_response()
        }
    }
}

async fn answer(
    state: Arc<AppState>,
    record: Arc<RequestRecord>,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(body) = body?;
    let messages = conversation(&body)?;
    let openai = chat_path::rename(
        &body,
        &[
            ("max_output_tokens", "max_tokens"),
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("stream", "stream"),
            ("timings_per_token", "timings_per_token"),
            ("return_progress", "return_progress"),
        ],
    );
    let Submitted {
        prepared,
        stream,
        inflight,
        ..
    } = chat_path::submit(&state, messages, &openai)
        .await
        .map_err(|mut err| {
            if err.param.as_deref() == Some("max_tokens") {
                err.param = Some("max_output_tokens".into());
            }
            err
        })?;
    let envelope = Envelope {
        id: format!("resp_{}", record.id),
        message_id: format!("msg_{}", record.id),
        created: unix_now(),
        model: state.model_id.clone(),
    };
    if prepared.stream {
        let frames = ResponseFrames {
            envelope,
            text: String::new(),
            sequence: 0,
            timings: None,
        };
        return Ok(events::respond(frames, stream, record, inflight));
    }
    let (text, c) = events::collect(stream).await?;
    drop(inflight);
    record.completed(&c);
    Ok(Json(envelope.response(Some((&text, &c)))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_takes_text_or_messages() {
        let m = conversation(&json!({"input": "Hi", "instructions": "Be brief."})).unwrap();
        assert_eq!((m[0].role, m[1].role), (Role::System, Role::User));
        let m = conversation(&json!({"input": [
            {"role": "user", "content": [{"type": "input_text", "text": "a"}]},
            {"type": "message", "role": "assistant", "content": "b"},
        ]}))
        .unwrap();
        assert_eq!(m[1].content, "b");
        for bad in [
            json!({}),
            json!({"input": []}),
            json!({"input": "x", "previous_response_id": "r"}),
        ] {
            assert!(conversation(&bad).is_err(), "{bad}");
        }
    }
}
