//! Anthropic's Messages API: `POST /v1/messages` (JSON, or with `stream: true` Anthropic's
//! named SSE events: `message_start`, `content_block_start`, `ping`, `content_block_delta`,
//! `content_block_stop`, `message_delta`, `message_stop`) and `POST /v1/messages/count_tokens`,
//! on the same generation path as `/v1/chat/completions` ([`chat_path`]).
//!
//! Fields: `messages` (roles `user` and `assistant`; content a string or text blocks),
//! `system` (a string or text blocks), `max_tokens` (required, as Anthropic requires it),
//! `stop_sequences`, `temperature`, `top_p`, `top_k`, `stream` (an empty `messages` list is
//! accepted, as llama-server accepts it); `metadata` is accepted and
//! ignored. `tools` is refused (400) until the chat path calls tools. Errors have Anthropic's
//! body, `{"type": "error", "error": {"type", "message"}}`.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use llama_core::engine::Completion;
use llama_core::{ChatMessage, FinishReason, Role};
use serde_json::{json, Value};

use super::chat_path::{self, Submitted};
use super::error::ApiError;
use super::events::{self, Frames};
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

/// The text of a content value: a string, or blocks of which only text is supported.
fn text_of(value: &Value, field: &str) -> Result<String, ApiError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut text = String::new();
            for (i, block) in blocks.iter().enumerate() {
                match (block.get("type").and_then(Value::as_str), block.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            format!(
                                "unsupported content block {}: only text blocks are supported",
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
            "content must be a string or an array of content blocks",
            Some(field),
        )),
    }
}

/// The conversation: `system` first, then `messages`.
fn conversation(body: &Value) -> Result<Vec<ChatMessage>, ApiError> {
    if body
        .get("tools")
        .is_some_and(|t| t.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err(ApiError::invalid(
            "tools are not supported on /v1/messages yet",
            Some("tools"),
        ));
    }
    let mut out = Vec::new();
    if let Some(system) = body.get("system").filter(|s| !s.is_null()) {
        out.push(ChatMessage::new(Role::System, text_of(system, "system")?));
    }
    // An empty list is accepted, as llama-server accepts it: the model opens its turn.
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("messages must be an array", Some("messages")))?;
    for (i, m) in messages.iter().enumerate() {
        let role = match m.get("role").and_then(Value::as_str) {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            other => {
                return Err(ApiError::invalid(
                    format!("unsupported role {other:?}: expected user or assistant"),
                    Some(&format!("messages[{i}].role")),
                ))
            }
        };
        let content = m.get("content").unwrap_or(&Value::Null);
        out.push(ChatMessage::new(
            role,
            text_of(content, &format!("messages[{i}].content"))?,
        ));
    }
    Ok(out)
}

/// Anthropic's `stop_reason` and `stop_sequence`.
fn stop(c: &Completion, stops: &[String]) -> (&'static str, Value) {
    match c.finish_reason {
        FinishReason::StopString => (
            "stop_sequence",
            // The engine does not say which stop string matched: named when there is one.
            match stops {
                [only] => json!(only),
                _ => Value::Null,
            },
        ),
        FinishReason::Length | FinishReason::ContextFull => ("max_tokens", Value::Null),
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

/// The stream's events, named as Anthropic names them.
struct MessageFrames {
    id: String,
    model: String,
    input_tokens: usize,
    stops: Vec<String>,
}

impl Frames for MessageFrames {
    fn start(&mut self) -> Vec<Event> {
        vec![
            events::named(
                "message_start",
                &json!({
                    "type": "message_start",
                    "message": {
                        "id": self.id, "type": "message", "role": "assistant",
                        "model": self.model, "content": [],
                        "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
                    },
                }),
            ),
            events::named(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "text", "text": ""}}),
            ),
            events::named("ping", &json!({"type": "ping"})),
        ]
    }

    fn text(&mut self, text: &str) -> Vec<Event> {
        vec![events::named(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": text}}),
        )]
    }

    fn done(&mut self, c: &Completion) -> Vec<Event> {
        let (reason, sequence) = stop(c, &self.stops);
        vec![
            events::named(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ),
            events::named(
                "message_delta",
                &json!({"type": "message_delta",
                        "delta": {"stop_reason": reason, "stop_sequence": sequence},
                        "usage": {"output_tokens": c.completion_tokens}}),
            ),
            events::named("message_stop", &json!({"type": "message_stop"})),
        ]
    }

    fn failed(&mut self, err: &ApiError) -> Vec<Event> {
        vec![events::named(
            "error",
            &json!({"type": "error", "error": {"type": err.kind, "message": err.message}}),
        )]
    }
}

/// The OpenAI fields an Anthropic request stands for.
fn openai_body(body: &Value) -> Result<Value, ApiError> {
    match body.get("max_tokens") {
        Some(v) if v.is_i64() || v.is_u64() => {}
        _ => {
            return Err(ApiError::invalid(
                "max_tokens is required (a positive integer)",
                Some("max_tokens"),
            ))
        }
    }
    Ok(chat_path::rename(
        body,
        &[
            ("max_tokens", "max_tokens"),
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("top_k", "top_k"),
            ("stop_sequences", "stop"),
            ("stream", "stream"),
        ],
    ))
}

#[utoipa::path(post, path = "/v1/messages", tag = "anthropic", request_body(content = Object, content_type = "application/json", description = "Anthropic's Messages request: model, messages, system, max_tokens, stop_sequences, stream"), responses(
    (status = 200, description = "The answer (JSON, or Anthropic's event stream with `stream`)"),
    (status = 400, description = "An invalid field, named", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn messages(
    State(state): State<Arc<AppState>>,
    Extension(record): Extension<Arc<RequestRecord>>,
    body: Result<JsonBody, ApiError>,
) -> Response {
    match answer(state, Arc::clone(&record), body).await {
        Ok(response) => response,
        Err(err) => {
            record.failed(&err.message);
            anthropic_error(err)
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
    let Submitted {
        prepared,
        stream,
        inflight,
        prompt_tokens,
    } = chat_path::submit(&state, messages, &openai_body(&body)?).await?;
    let id = format!("msg_{}", record.id);
    let stops = prepared.options.stop.clone();
    if prepared.stream {
        let frames = MessageFrames {
            id,
            model: state.model_id.clone(),
            input_tokens: prompt_tokens,
            stops,
        };
        return Ok(events::respond(frames, stream, record, inflight));
    }
    let (text, c) = events::collect(stream).await?;
    drop(inflight);
    record.completed(&c);
    let (reason, sequence) = stop(&c, &stops);
    Ok(Json(json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": state.model_id,
        "content": [{"type": "text", "text": text}],
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage(&c),
    }))
    .into_response())
}

#[utoipa::path(post, path = "/v1/messages/count_tokens", tag = "anthropic", request_body(content = Object, content_type = "application/json", description = "messages and system, as for /v1/messages"), responses(
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
        let n = chat_path::count(&state, conversation(&body)?).await?;
        Ok::<_, ApiError>(Json(json!({"input_tokens": n})).into_response())
    }
    .await;
    result.unwrap_or_else(anthropic_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_and_text_blocks_make_the_conversation() {
        let body = json!({
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
            ],
        });
        let m = conversation(&body).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].role, Role::System);
        assert_eq!(m[2].content, "Hello");
        let bad = json!({"messages": [{"role": "user", "content": [{"type": "image"}]}]});
        assert_eq!(
            conversation(&bad).unwrap_err().param.as_deref(),
            Some("messages[0].content[0]")
        );
        assert!(conversation(&json!({"messages": []})).unwrap().is_empty());
        assert!(conversation(&json!({})).is_err());
        let tools = json!({"messages": [{"role": "user", "content": "x"}], "tools": [{}]});
        assert_eq!(
            conversation(&tools).unwrap_err().param.as_deref(),
            Some("tools")
        );
        assert!(openai_body(&json!({})).is_err());
        assert_eq!(
            openai_body(&json!({"max_tokens": 5, "stop_sequences": ["x"], "metadata": {}}))
                .unwrap(),
            json!({"max_tokens": 5, "stop": ["x"]})
        );
    }
}
