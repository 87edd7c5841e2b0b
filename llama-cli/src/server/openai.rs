//! OpenAI's request and response shapes for `/v1/chat/completions` and `/v1/completions`, and
//! the checks that turn a request into generation options. A field this server does not know
//! is a 400 naming it, unless OpenAI treats it as an optional hint (`user`, `metadata`,
//! `store`, ...); a value out of range is a 400 naming the field. llama.cpp's extensions
//! (`top_k`, `min_p`, `grammar`, `json_schema`, `n_probs`, `chat_template_kwargs`, ...) are
//! accepted as llama-server accepts them.

use llama_core::chat::{ParsedMessage, Reasoning, ReasoningFormat, Tool, ToolCall, ToolChoice};
use llama_core::engine::{Completion, TokenLogprobs};
use llama_core::grammar::GrammarSpec;
use llama_core::{ChatMessage, GenerateOptions, Role, SamplingParams, Token};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;

/// A string or a list of strings (`stop`).
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
    pub kind: String,
    /// The text of a text part.
    #[serde(default)]
    pub text: Option<String>,
}

/// A tool call in an assistant message of the history.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct MessageToolCall {
    /// The call's id.
    #[serde(default)]
    pub id: Option<String>,
    /// `function`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The function called.
    pub function: MessageFunction,
}

/// The function of a tool call.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct MessageFunction {
    /// Its name.
    pub name: String,
    /// Its arguments, JSON text (an object is accepted too).
    #[serde(default)]
    pub arguments: Option<Value>,
}

/// One chat message as sent.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct Message {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The content; may be null for assistant messages.
    #[serde(default)]
    pub content: Option<Content>,
    /// An assistant's tool calls.
    #[serde(default)]
    pub tool_calls: Option<Vec<MessageToolCall>>,
    /// A tool result's call id.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// A tool result's tool name (or a participant's name, ignored).
    #[serde(default)]
    pub name: Option<String>,
    /// An assistant's earlier reasoning (llama-server's extension).
    #[serde(default)]
    pub reasoning_content: Option<String>,
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

/// Which endpoint a request or response is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completion,
}

/// Fields both endpoints implement.
const COMMON_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "n_predict",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "repeat_last_n",
    "presence_penalty",
    "frequency_penalty",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "dry_multiplier",
    "dry_base",
    "dry_allowed_length",
    "dry_penalty_last_n",
    "xtc_probability",
    "xtc_threshold",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "n",
    "logprobs",
    "n_probs",
    "logit_bias",
    "ignore_eos",
    "grammar",
    "json_schema",
    "response_format",
    "timings_per_token",
    "return_progress",
    "verbose",
];
/// Fields only chat implements.
const CHAT_FIELDS: &[&str] = &[
    "messages",
    "max_completion_tokens",
    "top_logprobs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "chat_template_kwargs",
    "reasoning_format",
    "enable_thinking",
    "add_generation_prompt",
    "continue_final_message",
];
/// Fields only text completion implements.
const COMPLETION_FIELDS: &[&str] = &["prompt", "echo", "best_of"];
/// Optional hints: accepted and ignored (OpenAI's bookkeeping, llama-server's cache and slot
/// hints, which this server handles by itself).
const HINTS: &[&str] = &[
    "user",
    "metadata",
    "store",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "reasoning_effort",
    "verbosity",
    "cache_prompt",
    "id_slot",
    "t_max_predict_ms",
    "n_keep",
    "min_keep",
    "n_indent",
    "post_sampling_probs",
    "return_tokens",
    "modalities",
];

/// Refuses a field this endpoint does not implement, naming it (OpenAI's optional hints pass).
pub fn check_fields(body: &Value, kind: Kind) -> Result<(), ApiError> {
    let Some(map) = body.as_object() else {
        return Err(ApiError::invalid(
            "the request body must be a JSON object",
            None,
        ));
    };
    let own = match kind {
        Kind::Chat => CHAT_FIELDS,
        Kind::Completion => COMPLETION_FIELDS,
    };
    for key in map.keys() {
        let k = key.as_str();
        if COMMON_FIELDS.contains(&k) || own.contains(&k) || HINTS.contains(&k) {
            continue;
        }
        let hint = match k {
            "functions" | "function_call" => {
                "; the deprecated function calling is not supported, use tools and tool_choice"
            }
            _ => "",
        };
        return Err(ApiError::invalid(
            format!("unsupported field {k:?}: this server does not implement it{hint}"),
            Some(k),
        ));
    }
    if let Some(modalities) = map.get("modalities") {
        if !matches!(modalities.as_array(), Some(m) if m.iter().all(|x| x == "text")) {
            return Err(ApiError::invalid(
                "only the text modality is supported",
                Some("modalities"),
            ));
        }
    }
    Ok(())
}

/// The fields both endpoints share.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct Common {
    /// Most tokens to generate (-1: no limit).
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// Newer name of `max_tokens` (chat).
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    /// llama-server's name of `max_tokens`.
    #[serde(default)]
    pub n_predict: Option<i64>,
    /// Temperature (negative: greedy, as llama-server).
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
    /// Choices to generate.
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
    /// Extension: typical-p.
    #[serde(default)]
    pub typical_p: Option<f32>,
    /// Extension: repetition penalty.
    #[serde(default)]
    pub repeat_penalty: Option<f32>,
    /// Extension: tokens the penalties look at.
    #[serde(default)]
    pub repeat_last_n: Option<i32>,
    /// Extension: Mirostat mode.
    #[serde(default)]
    pub mirostat: Option<u8>,
    /// Extension: Mirostat tau.
    #[serde(default)]
    pub mirostat_tau: Option<f32>,
    /// Extension: Mirostat eta.
    #[serde(default)]
    pub mirostat_eta: Option<f32>,
    /// Extension: DRY multiplier.
    #[serde(default)]
    pub dry_multiplier: Option<f32>,
    /// Extension: DRY base.
    #[serde(default)]
    pub dry_base: Option<f32>,
    /// Extension: DRY allowed length.
    #[serde(default)]
    pub dry_allowed_length: Option<i32>,
    /// Extension: DRY window.
    #[serde(default)]
    pub dry_penalty_last_n: Option<i32>,
    /// Extension: XTC probability.
    #[serde(default)]
    pub xtc_probability: Option<f32>,
    /// Extension: XTC threshold.
    #[serde(default)]
    pub xtc_threshold: Option<f32>,
    /// Extension: keep generating past end-of-generation tokens.
    #[serde(default)]
    pub ignore_eos: Option<bool>,
    /// Chat: `true` for log-probabilities; completions: how many alternatives (0-5).
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// Chat: alternatives per token (0-20).
    #[serde(default)]
    pub top_logprobs: Option<i64>,
    /// Extension: alternatives per token (llama-server's `n_probs`).
    #[serde(default)]
    pub n_probs: Option<i64>,
    /// Token id (as a string) -> bias from -100 (ban) to 100.
    #[serde(default)]
    pub logit_bias: Option<Value>,
    /// Extension: a GBNF grammar.
    #[serde(default)]
    pub grammar: Option<String>,
    /// Extension: a JSON schema the answer must match.
    #[serde(default)]
    pub json_schema: Option<Value>,
    /// `{"type": "text" | "json_object" | "json_schema", ...}`.
    #[serde(default)]
    pub response_format: Option<Value>,
    /// Extension: streamed chunks carry `timings` (the figures so far) with each token.
    #[serde(default)]
    pub timings_per_token: Option<bool>,
    /// Extension: a stream reports the prompt's evaluation (`prompt_progress` chunks).
    #[serde(default)]
    pub return_progress: Option<bool>,
    /// Extension: the answer carries `__verbose` (the prompt as evaluated, the figures).
    #[serde(default)]
    pub verbose: Option<bool>,
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
    /// The grammar of `--grammar` / `--json-schema` for requests that give none.
    pub grammar: Option<GrammarSpec>,
    /// `--reasoning-format`, for chat requests that do not say.
    pub reasoning_format: ReasoningFormat,
    /// `--reasoning`: the templates' `enable_thinking`, unless a request's
    /// `chat_template_kwargs` set it.
    pub reasoning: Reasoning,
    /// Answers carry `__verbose` unless a request says `verbose: false` (`serve --verbose`,
    /// as llama-server's).
    pub verbose: bool,
}

/// Most choices one request may ask for (`n` times the prompts).
pub const MAX_CHOICES: usize = 16;

/// What a checked request asks for, besides its prompt and grammar.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Generation options (the grammar and logit biases are added by the caller).
    pub options: GenerateOptions,
    /// Stream with SSE.
    pub stream: bool,
    /// Send usage in a last streamed chunk.
    pub include_usage: bool,
    /// Choices per prompt.
    pub n: usize,
    /// Log-probabilities: how many alternatives per token, when asked for.
    pub logprobs: Option<usize>,
    /// Add `__verbose` to the answer.
    pub verbose: bool,
}

impl Common {
    /// Checks the fields and layers them over the server's defaults.
    pub fn prepare(&self, defaults: &Defaults, kind: Kind) -> Result<Prepared, ApiError> {
        let n = match self.n {
            None => 1,
            Some(n) if (1..=MAX_CHOICES as i64).contains(&n) => n as usize,
            Some(n) => {
                return Err(ApiError::invalid(
                    format!("n = {n} is out of range: expected 1 to {MAX_CHOICES}"),
                    Some("n"),
                ))
            }
        };
        let logprobs = self.logprobs(kind)?;
        let max_tokens = [
            (self.max_completion_tokens, "max_completion_tokens"),
            (self.max_tokens, "max_tokens"),
            (self.n_predict, "n_predict"),
        ]
        .into_iter()
        .find_map(|(v, field)| v.map(|v| (v, field)));
        let cap = defaults.max_tokens_cap;
        let max_tokens = match max_tokens {
            None => defaults.max_tokens.unwrap_or(cap).min(cap),
            // -1: no limit but the context's (llama-server's meaning).
            Some((-1, _)) => cap,
            Some((n, field)) => {
                if n < 1 || n as u64 > cap as u64 {
                    return Err(ApiError::invalid(
                        format!(
                            "{field} = {n} is out of range: expected 1 to {cap} (--max-tokens-cap), or -1 for no limit"
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
            // -1 asks for a random seed (llama-server).
            Some(-1) => random_seed(),
            // OpenAI clients send any 64-bit integer: fold it into 32 bits.
            Some(s) => (s as u64 ^ ((s as u64) >> 32)) as u32,
            None if defaults.random_seed => random_seed(),
            None => d.seed,
        };
        let sampling = SamplingParams {
            // A negative temperature is greedy, as llama-server takes it.
            temperature: self.temperature.unwrap_or(d.temperature).max(0.0),
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
            typical_p: self.typical_p.unwrap_or(d.typical_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(d.repeat_penalty),
            repeat_last_n: self.repeat_last_n.unwrap_or(d.repeat_last_n),
            frequency_penalty: self.frequency_penalty.unwrap_or(d.frequency_penalty),
            presence_penalty: self.presence_penalty.unwrap_or(d.presence_penalty),
            mirostat: self.mirostat.unwrap_or(d.mirostat),
            mirostat_tau: self.mirostat_tau.unwrap_or(d.mirostat_tau),
            mirostat_eta: self.mirostat_eta.unwrap_or(d.mirostat_eta),
            dry_multiplier: self.dry_multiplier.unwrap_or(d.dry_multiplier),
            dry_base: self.dry_base.unwrap_or(d.dry_base),
            dry_allowed_length: self.dry_allowed_length.unwrap_or(d.dry_allowed_length),
            dry_penalty_last_n: self.dry_penalty_last_n.unwrap_or(d.dry_penalty_last_n),
            xtc_probability: self.xtc_probability.unwrap_or(d.xtc_probability),
            xtc_threshold: self.xtc_threshold.unwrap_or(d.xtc_threshold),
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
        // Empty strings stop nothing; any number of others is accepted (llama-server).
        let stop: Vec<String> = stop.into_iter().filter(|s| !s.is_empty()).collect();
        let stream = self.stream.unwrap_or(false);
        Ok(Prepared {
            options: GenerateOptions {
                sampling,
                max_tokens: Some(max_tokens),
                stop,
                ignore_eos: self.ignore_eos.unwrap_or(false),
                // The engine sends the chosen token's log-probability with the alternatives.
                n_probs: logprobs.map_or(0, |n| n.max(1)),
                // Only a stream has chunks to report them in.
                prompt_progress: stream && self.return_progress.unwrap_or(false),
                token_progress: stream && self.timings_per_token.unwrap_or(false),
                ..Default::default()
            },
            stream,
            verbose: self.verbose.unwrap_or(defaults.verbose),
            include_usage: self
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            n,
            logprobs,
        })
    }

    /// How many alternatives per token, when log-probabilities are asked for.
    fn logprobs(&self, kind: Kind) -> Result<Option<usize>, ApiError> {
        let range = |field: &str, n: i64, max: i64| -> Result<usize, ApiError> {
            if (0..=max).contains(&n) {
                Ok(n as usize)
            } else {
                Err(ApiError::invalid(
                    format!("{field} = {n} is out of range: expected 0 to {max}"),
                    Some(field),
                ))
            }
        };
        if let Some(n) = self.n_probs {
            if n > 0 {
                return range("n_probs", n, 100).map(Some);
            }
        }
        match (kind, &self.logprobs) {
            (_, None | Some(Value::Null) | Some(Value::Bool(false))) => {
                if self.top_logprobs.is_some_and(|n| n > 0) {
                    return Err(ApiError::invalid(
                        "top_logprobs needs logprobs: true",
                        Some("top_logprobs"),
                    ));
                }
                Ok(None)
            }
            (Kind::Chat, Some(Value::Bool(true))) => {
                range("top_logprobs", self.top_logprobs.unwrap_or(0), 20).map(Some)
            }
            (Kind::Completion, Some(Value::Number(n))) => match n.as_i64() {
                Some(n) => range("logprobs", n, 5).map(Some),
                None => Err(ApiError::invalid(
                    "logprobs must be an integer from 0 to 5",
                    Some("logprobs"),
                )),
            },
            (Kind::Chat, Some(_)) => Err(ApiError::invalid(
                "logprobs must be true or false",
                Some("logprobs"),
            )),
            (Kind::Completion, Some(_)) => Err(ApiError::invalid(
                "logprobs must be an integer from 0 to 5",
                Some("logprobs"),
            )),
        }
    }

    /// The constraint on the answer: `grammar`, `json_schema` or `response_format` (at most
    /// one), as (field, what). `None`: unconstrained.
    pub fn constraint(&self) -> Result<Option<(&'static str, Constraint)>, ApiError> {
        let mut found: Vec<(&'static str, Constraint)> = Vec::new();
        if let Some(g) = &self.grammar {
            if !g.trim().is_empty() {
                found.push(("grammar", Constraint::Gbnf(g.clone())));
            }
        }
        if let Some(schema) = &self.json_schema {
            found.push(("json_schema", Constraint::Schema(schema.clone())));
        }
        if let Some(format) = &self.response_format {
            if let Some(c) = response_format(format)? {
                found.push(("response_format", c));
            }
        }
        if found.len() > 1 {
            let names: Vec<&str> = found.iter().map(|(f, _)| *f).collect();
            return Err(ApiError::invalid(
                format!(
                    "{} cannot be combined: give one constraint",
                    names.join(" and ")
                ),
                Some(names[1]),
            ));
        }
        Ok(found.pop())
    }

    /// `logit_bias` as (token, bias) pairs; `tokenize` turns a key that is not a token id into
    /// its tokens (llama-server's extension). -100 or less bans the token.
    pub fn logit_bias(
        &self,
        n_vocab: u32,
        tokenize: impl Fn(&str) -> Vec<Token>,
    ) -> Result<Vec<(Token, f32)>, ApiError> {
        let bad = |message: String| ApiError::invalid(message, Some("logit_bias"));
        let value_of = |v: &Value| -> Result<f32, ApiError> {
            match v {
                Value::Bool(false) => Ok(f32::NEG_INFINITY),
                Value::Number(n) => {
                    let b = n.as_f64().unwrap_or(0.0) as f32;
                    if !b.is_finite() {
                        return Err(bad(format!("bias {b} is not a finite number")));
                    }
                    Ok(if b <= -100.0 { f32::NEG_INFINITY } else { b })
                }
                other => Err(bad(format!("bias {other} is not a number"))),
            }
        };
        let mut out = Vec::new();
        let mut add = |key: &Value, bias: f32| -> Result<(), ApiError> {
            let tokens: Vec<Token> = match key {
                Value::Number(n) => vec![n.as_i64().unwrap_or(-1) as Token],
                Value::String(s) => match s.parse::<i64>() {
                    Ok(id) => vec![id as Token],
                    Err(_) => tokenize(s),
                },
                other => return Err(bad(format!("{other} is not a token id"))),
            };
            for t in tokens {
                if t < 0 || t as u32 >= n_vocab {
                    return Err(bad(format!(
                        "token id {t} is out of range: the vocabulary has {n_vocab} tokens"
                    )));
                }
                out.push((t, bias));
            }
            Ok(())
        };
        match &self.logit_bias {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    add(&Value::String(k.clone()), value_of(v)?)?;
                }
            }
            Some(Value::Array(pairs)) => {
                for pair in pairs {
                    match pair.as_array().map(Vec::as_slice) {
                        Some([k, v]) => add(k, value_of(v)?)?,
                        _ => return Err(bad("expected [token, bias] pairs".into())),
                    }
                }
            }
            Some(other) => return Err(bad(format!("expected an object, not {other}"))),
        }
        Ok(out)
    }
}

/// A constraint on the answer before it is compiled for the model.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// GBNF text.
    Gbnf(String),
    /// A JSON schema.
    Schema(Value),
}

/// `response_format`: `text` (none), `json_object` (any object, or llama.cpp's `schema`),
/// `json_schema` (`json_schema.schema`).
fn response_format(format: &Value) -> Result<Option<Constraint>, ApiError> {
    let bad = |message: String| ApiError::invalid(message, Some("response_format"));
    let kind = format.get("type").and_then(Value::as_str).ok_or_else(|| {
        bad("response_format needs a type: text, json_object or json_schema".into())
    })?;
    match kind {
        "text" => Ok(None),
        "json_object" => Ok(Some(Constraint::Schema(
            format
                .get("schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"})),
        ))),
        "json_schema" => {
            let inner = format.get("json_schema").unwrap_or(&Value::Null);
            let schema = inner
                .get("schema")
                .or_else(|| format.get("schema"))
                .cloned()
                .ok_or_else(|| bad("response_format.json_schema.schema is missing".into()))?;
            Ok(Some(Constraint::Schema(schema)))
        }
        other => Err(bad(format!(
            "response_format type {other:?} is not supported: expected text, json_object or json_schema"
        ))),
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
        "typical" => "typical_p",
        "repeat-penalty" => "repeat_penalty",
        "repeat-last-n" => "repeat_last_n",
        "frequency-penalty" => "frequency_penalty",
        "presence-penalty" => "presence_penalty",
        "mirostat-ent" => "mirostat_tau",
        "mirostat-lr" => "mirostat_eta",
        "dry-multiplier" => "dry_multiplier",
        "dry-base" => "dry_base",
        "dry-allowed-length" => "dry_allowed_length",
        "dry-penalty-last-n" => "dry_penalty_last_n",
        "xtc-probability" => "xtc_probability",
        "xtc-threshold" => "xtc_threshold",
        other => other,
    }
}

/// A seed for a request that asks for none when the server's default is random.
fn random_seed() -> u32 {
    rand::random()
}

/// A tool definition as sent.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct ToolDef {
    /// `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    #[serde(default)]
    pub function: Option<FunctionDef>,
}

/// A function definition.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct FunctionDef {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: Option<String>,
    /// JSON schema of its arguments.
    #[serde(default)]
    pub parameters: Option<Value>,
    /// OpenAI's strict mode (the grammar always holds calls to the schema).
    #[serde(default)]
    pub strict: Option<bool>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    #[serde(default)]
    pub tools: Option<Vec<ToolDef>>,
    /// `auto`, `none`, `required` or `{"type": "function", "function": {"name": ...}}`.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// Several calls in one answer.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// Template variables (llama-server's extension), e.g. `{"enable_thinking": false}`.
    #[serde(default)]
    pub chat_template_kwargs: Option<serde_json::Map<String, Value>>,
    /// `none`, `auto`, `deepseek` (llama-server's extension).
    #[serde(default)]
    pub reasoning_format: Option<String>,
    /// Shorthand for `chat_template_kwargs.enable_thinking`.
    #[serde(default)]
    pub enable_thinking: Option<bool>,
    /// Open the assistant's turn (default).
    #[serde(default)]
    pub add_generation_prompt: Option<bool>,
    /// Continue the last assistant message (a prefill; vLLM's and transformers' name).
    #[serde(default)]
    pub continue_final_message: Option<bool>,
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
        if self.continue_final_message == Some(true) && self.add_generation_prompt == Some(true) {
            return Err(ApiError::invalid(
                "continue_final_message and add_generation_prompt cannot both be true",
                Some("continue_final_message"),
            ));
        }
        let n = self.messages.len();
        if n >= 2 && self.messages[n - 2..].iter().all(|m| m.role == "assistant") {
            return Err(ApiError::invalid(
                "the conversation ends with two assistant messages: at most one can be continued",
                Some("messages"),
            ));
        }
        // Text parts are joined with a newline (as llama.cpp passes them to templates that take
        // text only); those of a final assistant message that is continued with a blank line
        // (as llama.cpp renders a prefill).
        let continued = (self.add_generation_prompt != Some(false)
            || self.continue_final_message == Some(true))
            && self.messages.last().is_some_and(|m| m.role == "assistant");
        self.messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let separator = if continued && i + 1 == n { "\n\n" } else { "\n" };
                let role = match m.role.as_str() {
                    "system" | "developer" => Role::System,
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    "tool" => Role::Tool,
                    other => {
                        return Err(ApiError::invalid(
                            format!("unsupported role {other:?}: expected system, developer, user, assistant or tool"),
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
                                ("text", Some(t)) => {
                                    if !text.is_empty() {
                                        text.push_str(separator);
                                    }
                                    text.push_str(t)
                                }
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
                let mut message = ChatMessage::new(role, content);
                message.reasoning_content = m.reasoning_content.clone();
                if let Some(calls) = &m.tool_calls {
                    if role != Role::Assistant {
                        return Err(ApiError::invalid(
                            "only assistant messages carry tool_calls",
                            Some(&format!("messages[{i}].tool_calls")),
                        ));
                    }
                    for (j, c) in calls.iter().enumerate() {
                        if c.kind.as_deref().is_some_and(|k| k != "function") {
                            return Err(ApiError::invalid(
                                "tool calls must be of type function",
                                Some(&format!("messages[{i}].tool_calls[{j}].type")),
                            ));
                        }
                        let arguments = match &c.function.arguments {
                            None | Some(Value::Null) => "{}".to_string(),
                            Some(Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                        };
                        message.tool_calls.push(ToolCall {
                            id: c.id.clone().unwrap_or_else(|| format!("call_{i}_{j}")),
                            name: c.function.name.clone(),
                            arguments,
                        });
                    }
                }
                if role == Role::Tool {
                    message.tool_call_id = m.tool_call_id.clone();
                    message.name = m.name.clone();
                } else if m.content.is_none() && message.tool_calls.is_empty() && role != Role::Assistant {
                    return Err(ApiError::invalid(
                        "content is missing",
                        Some(&format!("messages[{i}].content")),
                    ));
                }
                Ok(message)
            })
            .collect()
    }

    /// The tools offered.
    pub fn tools(&self) -> Result<Vec<Tool>, ApiError> {
        let Some(defs) = &self.tools else {
            return Ok(Vec::new());
        };
        defs.iter()
            .enumerate()
            .map(|(i, d)| {
                let field = format!("tools[{i}]");
                if d.kind != "function" {
                    return Err(ApiError::invalid(
                        format!(
                            "tool type {:?} is not supported: only function tools",
                            d.kind
                        ),
                        Some(&format!("{field}.type")),
                    ));
                }
                let f = d.function.as_ref().ok_or_else(|| {
                    ApiError::invalid("a function tool needs its function", Some(&field))
                })?;
                if f.name.is_empty() {
                    return Err(ApiError::invalid(
                        "a function needs a name",
                        Some(&format!("{field}.function.name")),
                    ));
                }
                let _ = f.strict;
                Ok(Tool {
                    name: f.name.clone(),
                    description: f.description.clone(),
                    parameters: f
                        .parameters
                        .clone()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                })
            })
            .collect()
    }

    /// The tool choice (`auto` when tools are given and it is not).
    pub fn tool_choice(&self) -> Result<ToolChoice, ApiError> {
        let bad = |message: &str| ApiError::invalid(message.to_string(), Some("tool_choice"));
        match &self.tool_choice {
            None | Some(Value::Null) => Ok(ToolChoice::Auto),
            Some(Value::String(s)) => match s.as_str() {
                "auto" => Ok(ToolChoice::Auto),
                "none" => Ok(ToolChoice::None),
                "required" => Ok(ToolChoice::Required),
                _ => Err(bad("expected auto, none, required or a named function")),
            },
            Some(v) => v
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .map(|n| ToolChoice::Function(n.to_string()))
                .ok_or_else(|| {
                    bad("expected {\"type\": \"function\", \"function\": {\"name\": ...}}")
                }),
        }
    }

    /// Template variables: `chat_template_kwargs` and `enable_thinking`.
    pub fn template_vars(&self) -> serde_json::Map<String, Value> {
        let mut vars = self.chat_template_kwargs.clone().unwrap_or_default();
        if let Some(b) = self.enable_thinking {
            vars.insert("enable_thinking".into(), b.into());
        }
        vars
    }

    /// The reasoning format asked for, else the server's.
    pub fn reasoning_format(&self, default: ReasoningFormat) -> Result<ReasoningFormat, ApiError> {
        match &self.reasoning_format {
            None => Ok(default),
            Some(name) => ReasoningFormat::from_name(name).ok_or_else(|| {
                ApiError::invalid(
                    format!("reasoning_format {name:?}: expected none, auto or deepseek"),
                    Some("reasoning_format"),
                )
            }),
        }
    }
}

/// A prompt of `/v1/completions`: text or token ids.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    /// Text, tokenized by the server.
    Text(String),
    /// Token ids, used as they are.
    Tokens(Vec<Token>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct CompletionRequest {
    /// A string, a list of strings, a list of token ids, or a list of such lists.
    pub prompt: Value,
    /// Echo the prompt (only false).
    #[serde(default)]
    pub echo: Option<bool>,
    /// Candidates per choice (only 1).
    #[serde(default)]
    pub best_of: Option<i64>,
}

impl CompletionRequest {
    /// The prompts, each answered with `n` choices.
    pub fn prompts(&self) -> Result<Vec<PromptInput>, ApiError> {
        if self.echo == Some(true) {
            return Err(ApiError::invalid("echo is not supported", Some("echo")));
        }
        if self.best_of.is_some_and(|b| b != 1) {
            return Err(ApiError::invalid("best_of must be 1", Some("best_of")));
        }
        let bad = || {
            ApiError::invalid(
                "prompt must be a string, a list of strings, a list of token ids or a list of such lists",
                Some("prompt"),
            )
        };
        let tokens = |items: &[Value]| -> Option<Vec<Token>> {
            items
                .iter()
                .map(|t| t.as_i64().and_then(|t| Token::try_from(t).ok()))
                .collect()
        };
        let prompts = match &self.prompt {
            Value::String(s) => vec![PromptInput::Text(s.clone())],
            Value::Array(items) if items.is_empty() => return Err(bad()),
            Value::Array(items) if items.iter().all(Value::is_number) => {
                vec![PromptInput::Tokens(tokens(items).ok_or_else(bad)?)]
            }
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(PromptInput::Text(s.clone())),
                    Value::Array(t) => tokens(t).map(PromptInput::Tokens).ok_or_else(bad),
                    _ => Err(bad()),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(bad()),
        };
        if prompts.len() > MAX_CHOICES {
            return Err(ApiError::invalid(
                format!(
                    "prompt holds {} prompts: at most {MAX_CHOICES}",
                    prompts.len()
                ),
                Some("prompt"),
            ));
        }
        Ok(prompts)
    }
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

/// `usage` from figures.
pub fn usage_of(prompt: usize, completion: usize, cached: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

/// `usage` over several choices: the prompts counted once each, the answers summed.
pub fn usage_sum<'a>(choices: impl IntoIterator<Item = (usize, &'a Completion)>) -> Value {
    let (mut prompt, mut completion, mut cached) = (0, 0, 0);
    let mut seen = std::collections::HashSet::new();
    for (prompt_index, c) in choices {
        if seen.insert(prompt_index) {
            prompt += c.prompt_tokens;
            cached += c.cached_tokens;
        }
        completion += c.completion_tokens;
    }
    usage_of(prompt, completion, cached)
}

/// One finished choice.
#[derive(Debug, Clone)]
pub struct ChoiceResult {
    /// Its index.
    pub index: usize,
    /// The answer (chat: parsed; completion: the content is the text).
    pub message: ParsedMessage,
    /// OpenAI's finish reason.
    pub finish_reason: &'static str,
    /// Per-token log-probabilities, when asked for (with this many alternatives).
    pub logprobs: Option<(usize, Vec<TokenLogprobs>)>,
}

/// A token's text (its bytes, invalid UTF-8 replaced).
fn token_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Chat's `logprobs.content` entries.
pub fn chat_logprobs(top: usize, tokens: &[TokenLogprobs]) -> Value {
    let entry = |p: &llama_core::engine::TokenProb| json!({"token": token_text(&p.bytes), "logprob": p.logprob, "bytes": p.bytes});
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let mut e = entry(&t.chosen);
            e["top_logprobs"] = Value::Array(t.top.iter().take(top).map(entry).collect());
            e
        })
        .collect();
    json!({"content": content})
}

/// Legacy completions' `logprobs` (`tokens`, `token_logprobs`, `top_logprobs`,
/// `text_offset`), offsets counted from `offset`.
pub fn completion_logprobs(top: usize, tokens: &[TokenLogprobs], mut offset: usize) -> Value {
    let mut texts = Vec::new();
    let mut lps = Vec::new();
    let mut tops = Vec::new();
    let mut offsets = Vec::new();
    for t in tokens {
        let text = token_text(&t.chosen.bytes);
        offsets.push(offset);
        offset += text.len();
        texts.push(text);
        lps.push(t.chosen.logprob);
        let mut alts = serde_json::Map::new();
        for p in t.top.iter().take(top) {
            alts.insert(token_text(&p.bytes), json!(p.logprob));
        }
        tops.push(Value::Object(alts));
    }
    json!({"tokens": texts, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
}

/// A tool call as OpenAI sends it (`index` for streamed deltas).
pub fn tool_call_json(call: &ToolCall, index: Option<usize>) -> Value {
    let mut v = json!({
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    });
    if let Some(i) = index {
        v["index"] = json!(i);
    }
    v
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
    pub fn response(&self, choices: &[ChoiceResult], usage: Value) -> Value {
        let choices: Vec<Value> = choices
            .iter()
            .map(|c| match self.kind {
                Kind::Chat => {
                    let m = &c.message;
                    let mut message = json!({"role": "assistant"});
                    message["content"] = if m.content.is_empty() && !m.tool_calls.is_empty() {
                        Value::Null
                    } else {
                        json!(m.content)
                    };
                    if !m.reasoning_content.is_empty() {
                        message["reasoning_content"] = json!(m.reasoning_content);
                    }
                    if !m.tool_calls.is_empty() {
                        message["tool_calls"] = Value::Array(
                            m.tool_calls
                                .iter()
                                .map(|t| tool_call_json(t, None))
                                .collect(),
                        );
                    }
                    json!({
                        "index": c.index,
                        "message": message,
                        "logprobs": c.logprobs.as_ref().map(|(n, l)| chat_logprobs(*n, l)),
                        "finish_reason": c.finish_reason,
                    })
                }
                Kind::Completion => json!({
                    "index": c.index,
                    "text": c.message.content,
                    "logprobs": c.logprobs.as_ref().map(|(n, l)| completion_logprobs(*n, l, 0)),
                    "finish_reason": c.finish_reason,
                }),
            })
            .collect();
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": fingerprint(),
            "choices": choices,
            "usage": usage,
        })
    }

    /// A streamed chat chunk for choice `index` with `delta`; completions take the delta's
    /// `text`.
    pub fn chunk(
        &self,
        index: usize,
        delta: Value,
        logprobs: Option<Value>,
        finish: Option<&str>,
    ) -> Value {
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": index,
                "delta": delta,
                "logprobs": logprobs,
                "finish_reason": finish,
            }),
            Kind::Completion => json!({
                "index": index,
                "text": delta.get("text").cloned().unwrap_or(json!("")),
                "logprobs": logprobs,
                "finish_reason": finish,
            }),
        };
        self.chunk_with(vec![choice], None)
    }

    /// The last chunk with `usage` and no choices (`stream_options.include_usage`).
    pub fn usage_chunk(&self, usage: Value) -> Value {
        self.chunk_with(vec![], Some(usage))
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
    format!("b-llama-rs-{}", env!("CARGO_PKG_VERSION"))
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
            grammar: None,
            reasoning_format: ReasoningFormat::Auto,
            reasoning: Reasoning::Auto,
            verbose: false,
        }
    }

    fn common(v: Value) -> Common {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn fields_layer_over_defaults() {
        let p = common(json!({"temperature": 0, "top_k": 3, "stop": "x", "max_tokens": 7}))
            .prepare(&defaults(), Kind::Chat)
            .unwrap();
        assert_eq!(p.options.sampling.temperature, 0.0);
        assert_eq!(p.options.sampling.top_k, 3);
        assert_eq!(p.options.stop, vec!["x".to_string()]);
        assert_eq!(p.options.max_tokens, Some(7));
        assert!(!p.stream);
        let p = common(json!({})).prepare(&defaults(), Kind::Chat).unwrap();
        assert_eq!(p.options.max_tokens, Some(100));
    }

    #[test]
    fn llama_server_leniencies() {
        let stops: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        let p = common(json!({"temperature": -1, "max_tokens": -1, "stop": stops, "n": 3}))
            .prepare(&defaults(), Kind::Chat)
            .unwrap();
        assert_eq!(p.options.sampling.temperature, 0.0);
        assert_eq!(p.options.max_tokens, Some(100));
        assert_eq!(p.options.stop.len(), 40);
        assert_eq!(p.n, 3);
        let p = common(json!({"stop": ["", "a"]}))
            .prepare(&defaults(), Kind::Chat)
            .unwrap();
        assert_eq!(p.options.stop, vec!["a".to_string()]);
    }

    #[test]
    fn bad_values_name_the_field() {
        for (body, param, kind) in [
            (json!({"top_p": 2}), "top_p", Kind::Chat),
            (json!({"n": 0}), "n", Kind::Chat),
            (json!({"n": 100}), "n", Kind::Chat),
            (json!({"max_tokens": 0}), "max_tokens", Kind::Chat),
            (
                json!({"max_completion_tokens": 1000}),
                "max_completion_tokens",
                Kind::Chat,
            ),
            (
                json!({"presence_penalty": 3}),
                "presence_penalty",
                Kind::Chat,
            ),
            (json!({"logprobs": 3}), "logprobs", Kind::Chat),
            (
                json!({"logprobs": true, "top_logprobs": 21}),
                "top_logprobs",
                Kind::Chat,
            ),
            (json!({"top_logprobs": 2}), "top_logprobs", Kind::Chat),
            (json!({"logprobs": 6}), "logprobs", Kind::Completion),
        ] {
            let err = common(body.clone()).prepare(&defaults(), kind).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{body}");
            assert_eq!(err.status, 400);
        }
    }

    #[test]
    fn logprobs_ask_the_engine_for_alternatives() {
        let p = common(json!({"logprobs": true, "top_logprobs": 3}))
            .prepare(&defaults(), Kind::Chat)
            .unwrap();
        assert_eq!((p.logprobs, p.options.n_probs), (Some(3), 3));
        let p = common(json!({"logprobs": true}))
            .prepare(&defaults(), Kind::Chat)
            .unwrap();
        assert_eq!((p.logprobs, p.options.n_probs), (Some(0), 1));
        let p = common(json!({"logprobs": 2}))
            .prepare(&defaults(), Kind::Completion)
            .unwrap();
        assert_eq!(p.logprobs, Some(2));
    }

    #[test]
    fn unknown_fields_are_refused_and_hints_pass() {
        let err = check_fields(&json!({"messages": [], "frobnicate": 1}), Kind::Chat).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("frobnicate"));
        let err = check_fields(&json!({"prompt": "x", "tools": []}), Kind::Completion).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("tools"));
        let err = check_fields(&json!({"functions": []}), Kind::Chat).unwrap_err();
        assert!(err.message.contains("tools"), "{}", err.message);
        check_fields(
            &json!({"messages": [], "user": "u", "metadata": {}, "store": false, "cache_prompt": true}),
            Kind::Chat,
        )
        .unwrap();
        assert!(check_fields(&json!({"modalities": ["audio"]}), Kind::Chat).is_err());
    }

    #[test]
    fn constraints_from_the_three_fields() {
        let c = common(json!({"response_format": {"type": "json_object"}}));
        assert_eq!(
            c.constraint().unwrap(),
            Some((
                "response_format",
                Constraint::Schema(json!({"type": "object"}))
            ))
        );
        let c = common(
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"const": 1}, "strict": true}}}),
        );
        assert_eq!(
            c.constraint().unwrap(),
            Some(("response_format", Constraint::Schema(json!({"const": 1}))))
        );
        assert_eq!(
            common(json!({"response_format": {"type": "text"}}))
                .constraint()
                .unwrap(),
            None
        );
        let err = common(json!({"response_format": {"type": "sound"}}))
            .constraint()
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("response_format"));
        let err = common(json!({"grammar": "root ::= \"a\"", "json_schema": {}}))
            .constraint()
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("json_schema"));
    }

    #[test]
    fn logit_bias_keys_and_values() {
        let c = common(json!({"logit_bias": {"5": -100, "7": 2.5, "hi": 1}}));
        let bias = c.logit_bias(10, |_| vec![1, 2]).unwrap();
        assert_eq!(
            bias,
            vec![(5, f32::NEG_INFINITY), (7, 2.5), (1, 1.0), (2, 1.0)]
        );
        let c = common(json!({"logit_bias": [[3, false]]}));
        assert_eq!(
            c.logit_bias(10, |_| vec![]).unwrap(),
            vec![(3, f32::NEG_INFINITY)]
        );
        let err = common(json!({"logit_bias": {"99": 1}}))
            .logit_bias(10, |_| vec![])
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("logit_bias"));
    }

    #[test]
    fn messages_with_tools_and_results() {
        let req: ChatRequest = serde_json::from_value(json!({
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "a"}]},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}}
        }))
        .unwrap();
        let m = req.chat_messages().unwrap();
        assert_eq!(m[0].role, Role::System);
        assert_eq!(m[2].tool_calls[0].arguments, "{\"x\":1}");
        assert_eq!(
            (m[3].role, m[3].tool_call_id.as_deref()),
            (Role::Tool, Some("c1"))
        );
        assert_eq!(req.tools().unwrap()[0].name, "f");
        assert_eq!(req.tool_choice().unwrap(), ToolChoice::Function("f".into()));
        let req: ChatRequest = serde_json::from_value(json!({
            "messages": [{"role": "robot", "content": "x"}]
        }))
        .unwrap();
        assert_eq!(
            req.chat_messages().unwrap_err().param.as_deref(),
            Some("messages[0].role")
        );
    }

    #[test]
    fn completion_prompts_in_every_shape() {
        let prompts = |v: Value| {
            serde_json::from_value::<CompletionRequest>(json!({"prompt": v}))
                .unwrap()
                .prompts()
        };
        assert_eq!(
            prompts(json!("a")).unwrap(),
            vec![PromptInput::Text("a".into())]
        );
        assert_eq!(
            prompts(json!([1, 2])).unwrap(),
            vec![PromptInput::Tokens(vec![1, 2])]
        );
        assert_eq!(prompts(json!(["a", "b"])).unwrap().len(), 2);
        assert_eq!(
            prompts(json!([[1], [2, 3]])).unwrap(),
            vec![
                PromptInput::Tokens(vec![1]),
                PromptInput::Tokens(vec![2, 3])
            ]
        );
        assert!(prompts(json!([])).is_err());
        assert!(prompts(json!({"x": 1})).is_err());
    }
}
