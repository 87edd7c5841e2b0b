//! The chat generation path that the Anthropic and Responses routes share with
//! `/v1/chat/completions`: their fields become an OpenAI request checked by
//! [`openai::Common`], the conversation is rendered by the same template call
//! ([`app::tokenize_async`]) and submitted to the engine.

use std::sync::Arc;

use llama_core::engine::{EngineRequest, ResponseStream};
use llama_core::{CancelToken, ChatMessage};
use serde_json::Value;

use super::app::{self, Prompt};
use super::error::ApiError;
use super::openai::{self, Common, Prepared};
use super::state::{AppState, Inflight};

/// A request on its way: its options, the engine's stream and the prompt's size.
pub struct Submitted {
    /// The checked options.
    pub prepared: Prepared,
    /// The engine's events.
    pub stream: ResponseStream,
    /// Keeps the request registered until the answer ends.
    pub inflight: Inflight,
    /// Tokens of the rendered prompt.
    pub prompt_tokens: usize,
}

/// Checks `openai_body` (OpenAI's field names), renders `messages` (the server's `--system`
/// first when they have none) and submits them.
pub async fn submit(
    state: &Arc<AppState>,
    messages: Vec<ChatMessage>,
    openai_body: &Value,
) -> Result<Submitted, ApiError> {
    let common: Common = openai::parse(openai_body)?;
    let prepared = common.prepare(&state.defaults, openai::Kind::Chat)?;
    let prompt = Prompt::Chat(app::with_default_system(state, messages));
    let tokens = app::tokenize_async(state, prompt).await?;
    let prompt_tokens = tokens.len();
    let (stream, inflight) = state.submit(EngineRequest {
        prompt: tokens,
        options: prepared.options.clone(),
        cancel: CancelToken::new(),
    })?;
    Ok(Submitted {
        prepared,
        stream,
        inflight,
        prompt_tokens,
    })
}

/// Tokens of `messages` as the chat path renders them.
pub async fn count(state: &Arc<AppState>, messages: Vec<ChatMessage>) -> Result<usize, ApiError> {
    let prompt = Prompt::Chat(app::with_default_system(state, messages));
    Ok(app::tokenize_async(state, prompt).await?.len())
}

/// Copies the fields of `body` named in `names` (source name, OpenAI name) into a new object.
pub fn rename(body: &Value, names: &[(&str, &str)]) -> Value {
    let mut out = serde_json::Map::new();
    for (from, to) in names {
        if let Some(v) = body.get(*from).filter(|v| !v.is_null()) {
            out.insert((*to).to_string(), v.clone());
        }
    }
    Value::Object(out)
}
