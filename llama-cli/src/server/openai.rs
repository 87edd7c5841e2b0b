//! OpenAI's request and response shapes for `/v1/chat/completions` and `/v1/completions`, and
//! the checks that turn a request into generation options. Unknown fields are ignored; a value
//! out of range is an [`ApiError`] naming the field.

use llama_core::engine::Completion;
use llama_core::{ChatMessage, GenerateOptions, Role, SamplingParams};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;

/// A string or a list of strings (`stop`, `prompt`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// A message's content: text, or a list of parts of which only text parts are supported.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts.
    Parts(Vec<ContentPart>),
}

/// One part of a message's content.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct ContentPart {
    /// `text` (others are refused).
    #[serde(rename = "type")]
    #[schema(pattern = "^text$")]
    pub kind: String,
    /// The text of a text part.
    #[serde(default)]
    pub text: Option<String>,
}

/// One chat message as sent.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct Message {
    /// `system`, `developer`, `user` or `assistant`.
    #[schema(pattern = "^(system|developer|user|assistant)$")]
    pub role: String,
    /// The content; may be null for assistant messages.
    #[serde(default)]
    pub content: Option<Content>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with `usage`.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// Reads a request's fields as `T`; a field of the wrong type is a 400 naming it.
pub fn parse<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        if path == "." || path.is_empty() {
            ApiError::invalid(format!("invalid request: {message}"), None)
        } else {
            ApiError::invalid(format!("invalid value for {path}: {message}"), Some(&path))
        }
    })
}

/// The fields both endpoints share.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct Common {
    /// Most tokens to generate.
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// Newer name of `max_tokens` (chat).
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    /// Temperature.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Seed.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Option<OneOrMany>,
    /// Stream with server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Choices to generate (only 1).
    #[serde(default)]
    pub n: Option<i64>,
    /// Presence penalty.
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    /// Frequency penalty.
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    /// Extension: top-k.
    #[serde(default)]
    pub top_k: Option<i32>,
    /// Extension: min-p.
    #[serde(default)]
    pub min_p: Option<f32>,
    /// Extension: repetition penalty.
    #[serde(default)]
    pub repeat_penalty: Option<f32>,
    /// Log probabilities (not supported: only false or absent).
    #[serde(default)]
    pub logprobs: Option<Value>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct CompletionRequest {
    /// The prompt: a string or a list of one string.
    pub prompt: OneOrMany,
}

/// The server's defaults for fields a request leaves out (from flags and the config file).
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Sampling.
    pub sampling: SamplingParams,
    /// Whether each request without a seed draws a random one.
    pub random_seed: bool,
    /// Token limit when the request sets none.
    pub max_tokens: Option<usize>,
    /// Stop strings when the request sets none.
    pub stop: Vec<String>,
    /// The largest `max_tokens` a request may ask for.
    pub max_tokens_cap: usize,
    /// System prompt put first when a conversation has none (`--system`).
    pub system: Option<String>,
}

/// What a checked request asks for, besides its prompt.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Generation options.
    pub options: GenerateOptions,
    /// Stream with SSE.
    pub stream: bool,
    /// Send usage in a last streamed chunk.
    pub include_usage: bool,
}

impl Common {
    /// Checks the fields and layers them over the server's defaults.
    pub fn prepare(&self, defaults: &Defaults) -> Result<Prepared, ApiError> {
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::invalid(
                    format!("n = {n} is not supported: this server generates one choice (n = 1)"),
                    Some("n"),
                ));
            }
        }
        match &self.logprobs {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(_) => {
                return Err(ApiError::invalid(
                    "logprobs are not supported",
                    Some("logprobs"),
                ))
            }
        }
        let max_tokens = match (self.max_completion_tokens, self.max_tokens) {
            (Some(n), _) => Some((n, "max_completion_tokens")),
            (None, Some(n)) => Some((n, "max_tokens")),
            (None, None) => None,
        };
        let max_tokens = match max_tokens {
            None => defaults
                .max_tokens
                .unwrap_or(defaults.max_tokens_cap)
                .min(defaults.max_tokens_cap),
            Some((n, field)) => {
                if n < 1 || n as u64 > defaults.max_tokens_cap as u64 {
                    return Err(ApiError::invalid(
                        format!(
                            "{field} = {n} is out of range: expected 1 to {} (--max-tokens-cap)",
                            defaults.max_tokens_cap
                        ),
                        Some(field),
                    ));
                }
                n as usize
            }
        };
        let d = &defaults.sampling;
        let seed = match self.seed {
            Some(s) if (0..=u32::MAX as i64).contains(&s) => s as u32,
            // OpenAI clients send any 64-bit integer: fold it into 32 bits.
            Some(s) => (s as u64 ^ ((s as u64) >> 32)) as u32,
            None if defaults.random_seed => random_seed(),
            None => d.seed,
        };
        let sampling = SamplingParams {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(d.repeat_penalty),
            frequency_penalty: self.frequency_penalty.unwrap_or(d.frequency_penalty),
            presence_penalty: self.presence_penalty.unwrap_or(d.presence_penalty),
            seed,
            ..d.clone()
        };
        sampling.validate().map_err(|e| {
            let param = api_param(e.name);
            ApiError::invalid(
                format!("{param} = {} is invalid: expected {}", e.value, e.expected),
                Some(param),
            )
        })?;
        check_penalty("presence_penalty", sampling.presence_penalty)?;
        check_penalty("frequency_penalty", sampling.frequency_penalty)?;
        let stop = match &self.stop {
            None => defaults.stop.clone(),
            Some(OneOrMany::One(s)) => vec![s.clone()],
            Some(OneOrMany::Many(v)) => v.clone(),
        };
        if stop.len() > 16 || stop.iter().any(String::is_empty) {
            return Err(ApiError::invalid(
                "stop must be at most 16 non-empty strings",
                Some("stop"),
            ));
        }
        Ok(Prepared {
            options: GenerateOptions {
                sampling,
                max_tokens: Some(max_tokens),
                stop,
                ..Default::default()
            },
            stream: self.stream.unwrap_or(false),
            include_usage: self
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        })
    }
}

fn check_penalty(name: &'static str, value: f32) -> Result<(), ApiError> {
    if (-2.0..=2.0).contains(&value) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            format!("{name} = {value} is invalid: expected a number from -2 to 2"),
            Some(name),
        ))
    }
}

/// The request field for a sampling parameter named as its flag.
fn api_param(flag: &'static str) -> &'static str {
    match flag {
        "temp" => "temperature",
        "top-k" => "top_k",
        "top-p" => "top_p",
        "min-p" => "min_p",
        "repeat-penalty" => "repeat_penalty",
        "frequency-penalty" => "frequency_penalty",
        "presence-penalty" => "presence_penalty",
        other => other,
    }
}

/// A seed for a request that asks for none when the server's default is random.
fn random_seed() -> u32 {
    rand::random()
}

impl ChatRequest {
    /// The conversation as chat messages.
    pub fn chat_messages(&self) -> Result<Vec<ChatMessage>, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid(
                "messages must hold at least one message",
                Some("messages"),
            ));
        }
        self.messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let role = match m.role.as_str() {
                    "system" | "developer" => Role::System,
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    other => {
                        return Err(ApiError::invalid(
                            format!("unsupported role {other:?}: expected system, developer, user or assistant"),
                            Some(&format!("messages[{i}].role")),
                        ))
                    }
                };
                let content = match &m.content {
                    None => String::new(),
                    Some(Content::Text(t)) => t.clone(),
                    Some(Content::Parts(parts)) => {
                        let mut text = String::new();
                        for part in parts {
                            match (part.kind.as_str(), &part.text) {
                                ("text", Some(t)) => text.push_str(t),
                                (kind, _) => {
                                    return Err(ApiError::invalid(
                                        format!("unsupported content part {kind:?}: only text parts are supported"),
                                        Some(&format!("messages[{i}].content")),
                                    ))
                                }
                            }
                        }
                        text
                    }
                };
                Ok(ChatMessage::new(role, content))
            })
            .collect()
    }
}

impl CompletionRequest {
    /// The prompt text.
    pub fn prompt_text(&self) -> Result<String, ApiError> {
        match &self.prompt {
            OneOrMany::One(s) => Ok(s.clone()),
            OneOrMany::Many(v) if v.len() == 1 => Ok(v[0].clone()),
            OneOrMany::Many(v) => Err(ApiError::invalid(
                format!(
                    "prompt holds {} strings: this server answers one prompt per request",
                    v.len()
                ),
                Some("prompt"),
            )),
        }
    }
}

/// Which endpoint a response is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completion,
}

/// What every response and chunk of one request repeats.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The endpoint.
    pub kind: Kind,
    /// `chatcmpl-...` or `cmpl-...`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model's id.
    pub model: String,
}

/// `usage` from a completion.
pub fn usage(c: &Completion) -> Value {
    json!({
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "total_tokens": c.prompt_tokens + c.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": c.cached_tokens},
    })
}

impl Envelope {
    /// An envelope for a new request.
    pub fn new(kind: Kind, request_id: &str, model: &str) -> Envelope {
        let prefix = match kind {
            Kind::Chat => "chatcmpl",
            Kind::Completion => "cmpl",
        };
        Envelope {
            kind,
            id: format!("{prefix}-{request_id}"),
            created: unix_now(),
            model: model.to_string(),
        }
    }

    /// The whole (non-streamed) response.
    pub fn response(&self, text: String, c: &Completion) -> Value {
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": c.finish_reason.api_name(),
            }),
            Kind::Completion => json!({
                "index": 0,
                "text": text,
                "logprobs": null,
                "finish_reason": c.finish_reason.api_name(),
            }),
        };
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": fingerprint(),
            "choices": [choice],
            "usage": usage(c),
        })
    }

    /// A streamed chunk: `text` (chat: a content delta; `role` opens the message),
    /// `finish` closes it.
    pub fn chunk(&self, text: Option<&str>, role: bool, finish: Option<&str>) -> Value {
        let choice = match self.kind {
            Kind::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
            Kind::Completion => json!({
                "index": 0,
                "text": text.unwrap_or(""),
                "logprobs": null,
                "finish_reason": finish,
            }),
        };
        self.chunk_with(vec![choice], None)
    }

    /// The last chunk with `usage` and no choices (`stream_options.include_usage`).
    pub fn usage_chunk(&self, c: &Completion) -> Value {
        self.chunk_with(vec![], Some(usage(c)))
    }

    fn chunk_with(&self, choices: Vec<Value>, usage: Option<Value>) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": fingerprint(),
            "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }
}

fn fingerprint() -> String {
    format!("llama-rs-{}", env!("CARGO_PKG_VERSION"))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            sampling: SamplingParams::default(),
            random_seed: false,
            max_tokens: None,
            stop: vec![],
            max_tokens_cap: 100,
            system: None,
        }
    }

    fn common(v: Value) -> Common {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn fields_layer_over_defaults() {
        let p = common(
            json!({"temperature": 0, "top_k": 3, "stop": "x", "max_tokens": 7, "unknown": 1}),
        )
        .prepare(&defaults())
        .unwrap();
        assert_eq!(p.options.sampling.temperature, 0.0);
        assert_eq!(p.options.sampling.top_k, 3);
        assert_eq!(p.options.stop, vec!["x".to_string()]);
        assert_eq!(p.options.max_tokens, Some(7));
        assert!(!p.stream);
        let p = common(json!({})).prepare(&defaults()).unwrap();
        assert_eq!(p.options.max_tokens, Some(100));
    }

    #[test]
    fn bad_values_name_the_field() {
        for (body, param) in [
            (json!({"temperature": -1}), "temperature"),
            (json!({"top_p": 2}), "top_p"),
            (json!({"n": 2}), "n"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (
                json!({"max_completion_tokens": 1000}),
                "max_completion_tokens",
            ),
            (json!({"presence_penalty": 3}), "presence_penalty"),
            (json!({"stop": [""]}), "stop"),
            (json!({"logprobs": true}), "logprobs"),
        ] {
            let err = common(body.clone()).prepare(&defaults()).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{body}");
            assert_eq!(err.status, 400);
        }
    }

    #[test]
    fn messages_accept_text_parts_and_refuse_others() {
        let req: ChatRequest = serde_json::from_value(json!({
            "messages": [{"role": "developer", "content": [{"type": "text", "text": "a"}]},
                         {"role": "user", "content": "b"}]
        }))
        .unwrap();
        let m = req.chat_messages().unwrap();
        assert_eq!(m[0].role, Role::System);
        assert_eq!(m[1].content, "b");
        let req: ChatRequest = serde_json::from_value(json!({
            "messages": [{"role": "tool", "content": "x"}]
        }))
        .unwrap();
        assert_eq!(
            req.chat_messages().unwrap_err().param.as_deref(),
            Some("messages[0].role")
        );
    }

    #[test]
    fn completion_prompt_is_one_string() {
        let req: CompletionRequest = serde_json::from_value(json!({"prompt": ["a", "b"]})).unwrap();
        assert!(req.prompt_text().is_err());
        let req: CompletionRequest = serde_json::from_value(json!({"prompt": ["a"]})).unwrap();
        assert_eq!(req.prompt_text().unwrap(), "a");
    }
}
