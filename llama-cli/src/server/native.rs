//! llama-server's own API (tools/server in llama.cpp), in its shapes: the native completion
//! (`POST /completion`, `/completions`), `/tokenize`, `/detokenize`, `/apply-template`,
//! `/chat/completions/input_tokens`, `/props` and `/slots`.
//!
//! The native completion runs on the same path as the OpenAI routes: its fields are
//! translated into an OpenAI request ([`openai::Common`]: `n_predict` is `max_tokens`, `-1`
//! or absent is the server's limit), checked there, and the prompt is submitted to the engine.
//! Native-only fields other than those read here (`id_slot`, `timings_per_token`, ...) are
//! accepted without effect; `cache_prompt: false` evaluates the whole prompt again.
//! A prompt is text (tokenized with BOS and special tokens, as llama-server does), a token
//! array, an array mixing both, an object `{"prompt_string": TEXT}`, or a list of such prompts
//! (answered as an array, not streamed). `response_fields` picks fields of the answer.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Query, State};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use llama_core::engine::{Completion, EngineRequest, TokenLogprobs, TokenProb};
use llama_core::grammar::GrammarSpec;
use llama_core::{CancelToken, FinishReason, Token};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::events::{self, Frames};
use super::generation;
use super::limits::JsonBody;
use super::log::RequestRecord;
use super::openai::{self, ChatRequest, Common, Prepared};
use super::state::AppState;

/// Settings of these routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeConfig {
    /// Whether `GET /slots` answers (`--no-slots`: 501, as llama-server).
    pub slots: bool,
    /// Whether `GET /metrics` answers (`--no-metrics`: 501, as llama-server without
    /// `--metrics`).
    pub metrics: bool,
}

impl Default for NativeConfig {
    fn default() -> NativeConfig {
        NativeConfig {
            slots: true,
            metrics: true,
        }
    }
}

/// The routes of this module.
pub fn routes(config: NativeConfig) -> Router<Arc<AppState>> {
    Router::new()
        .route("/completion", post(completion))
        .route("/completions", post(completion))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/apply-template", post(apply_template))
        .route("/chat/completions/input_tokens", post(chat_input_tokens))
        .route("/v1/chat/completions/input_tokens", post(chat_input_tokens))
        .route("/props", get(props))
        .route("/slots", get(slots))
        .layer(Extension(config))
}

/// Fields of a native request that are OpenAI's too, under the same name.
const SHARED_FIELDS: [&str; 17] = [
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "seed",
    "stop",
    "stream",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "grammar",
    "json_schema",
    "response_format",
    "logit_bias",
    "n_probs",
    "timings_per_token",
    "return_progress",
];

/// The native fields this module reads itself.
#[derive(Debug, Default, Deserialize)]
struct NativeFields {
    #[serde(default)]
    prompt: Option<Value>,
    #[serde(default)]
    n_predict: Option<i64>,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    post_sampling_probs: Option<bool>,
    #[serde(default)]
    cache_prompt: Option<bool>,
    #[serde(default)]
    return_tokens: Option<bool>,
    #[serde(default)]
    ignore_eos: Option<bool>,
    #[serde(default)]
    response_fields: Vec<String>,
}

/// Only the `fields` of `answer` (paths like `generation_settings/n_predict`, named as they are
/// asked), as llama-server's `response_fields` picks them; a path that is not there is left out.
fn pick_fields(answer: Value, fields: &[String]) -> Value {
    if fields.is_empty() {
        return answer;
    }
    let mut out = Map::new();
    for path in fields {
        let found = path
            .split('/')
            .try_fold(&answer, |v, key| v.as_object().and_then(|o| o.get(key)));
        if let Some(v) = found {
            out.insert(path.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// The OpenAI request a native one stands for (for [`Common`]'s checks).
fn openai_body(body: &Value, fields: &NativeFields) -> Value {
    let mut out = Map::new();
    for name in SHARED_FIELDS {
        if let Some(v) = body.get(name) {
            if !v.is_null() {
                out.insert(name.into(), v.clone());
            }
        }
    }
    // `n_predict: -1` (and absent) is no limit but the server's.
    match fields.n_predict.or(fields.max_tokens) {
        Some(n) if n >= 0 => {
            out.insert("max_tokens".into(), json!(n));
        }
        _ => {}
    }
    Value::Object(out)
}

/// A request's grammar and logit biases.
type Constraints = (Option<GrammarSpec>, Vec<(Token, f32)>);

/// The request's grammar (`grammar`, `json_schema`, `response_format`, else the server's
/// `--grammar`) and `logit_bias` (string keys tokenized without special tokens, as
/// llama-server does), checked against the model (blocking: compiling and tokenizing).
fn constraints(state: &AppState, common: &Common) -> Result<Constraints, ApiError> {
    let model = &state.model;
    let logit_bias = common.logit_bias(model.n_vocab(), |text| {
        model.tokenize(text, false, false).unwrap_or_default()
    })?;
    let grammar = match common.constraint()? {
        Some((field, c)) => Some(generation::compile(state, field, c)?),
        None => state.defaults.grammar.clone(),
    };
    Ok((grammar, logit_bias))
}

/// One prompt of a native request: text, token ids, or both in order.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Tokens(Vec<Token>),
}

/// Reads `prompt`: a string, an array of ids and strings (one prompt), or an array of
/// strings and id arrays (several prompts).
fn prompts(value: &Value) -> Result<Vec<Vec<Piece>>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "prompt must be a string, an array of token ids and strings, or an array of such prompts",
            Some("prompt"),
        )
    };
    match value {
        Value::String(s) => Ok(vec![vec![Piece::Text(s.clone())]]),
        Value::Object(_) => Ok(vec![object_prompt(value)?]),
        Value::Array(items) if items.iter().any(Value::is_number) => Ok(vec![mixed(items)?]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(vec![Piece::Text(s.clone())]),
                Value::Array(inner) => mixed(inner),
                Value::Object(_) => object_prompt(item),
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

/// llama-server's prompt object, `{"prompt_string": TEXT}`; `multimodal_data` is refused (the
/// server has no multimodal projector).
fn object_prompt(value: &Value) -> Result<Vec<Piece>, ApiError> {
    if value.get("multimodal_data").is_some_and(|m| !m.is_null()) {
        return Err(ApiError::invalid(
            "multimodal_data is not supported: this server has no multimodal projector",
            Some("prompt"),
        ));
    }
    match value.get("prompt_string") {
        Some(Value::String(s)) => Ok(vec![Piece::Text(s.clone())]),
        _ => Err(ApiError::invalid(
            "a prompt object needs prompt_string (a string)",
            Some("prompt"),
        )),
    }
}

/// One prompt of ids and strings, in order.
fn mixed(items: &[Value]) -> Result<Vec<Piece>, ApiError> {
    let mut pieces = Vec::new();
    for item in items {
        match item {
            Value::String(s) => pieces.push(Piece::Text(s.clone())),
            Value::Number(n) => {
                let id = n
                    .as_i64()
                    .and_then(|n| Token::try_from(n).ok())
                    .ok_or_else(|| {
                        ApiError::invalid(format!("invalid token id {n}"), Some("prompt"))
                    })?;
                match pieces.last_mut() {
                    Some(Piece::Tokens(ids)) => ids.push(id),
                    _ => pieces.push(Piece::Tokens(vec![id])),
                }
            }
            _ => {
                return Err(ApiError::invalid(
                    "a prompt array holds token ids and strings only",
                    Some("prompt"),
                ))
            }
        }
    }
    Ok(pieces)
}

/// Tokenizes one prompt: text with BOS (first piece only) and special tokens parsed; ids
/// checked against the vocabulary.
fn tokenize_pieces(state: &AppState, pieces: &[Piece]) -> Result<Vec<Token>, ApiError> {
    let n_vocab = state.model.n_vocab() as i64;
    let mut tokens = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        match piece {
            Piece::Text(text) => tokens.extend(
                state
                    .model
                    .tokenize(text, i == 0, true)
                    .map_err(|e| ApiError::invalid(format!("cannot tokenize: {e}"), None))?,
            ),
            Piece::Tokens(ids) => {
                if let Some(bad) = ids.iter().find(|&&t| t < 0 || i64::from(t) >= n_vocab) {
                    return Err(ApiError::invalid(
                        format!(
                            "token id {bad} is out of the vocabulary (0 to {})",
                            n_vocab - 1
                        ),
                        Some("prompt"),
                    ));
                }
                tokens.extend_from_slice(ids);
            }
        }
    }
    Ok(tokens)
}

/// llama-server's `stop_type`.
fn stop_type(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::EndOfGeneration => "eos",
        FinishReason::StopString => "word",
        FinishReason::Length | FinishReason::ContextFull => "limit",
        FinishReason::Cancelled => "none",
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// llama-server's `timings` of a finished request. The generation rate is over the decode
/// steps after the first token (which comes from the prompt's logits), as llama-server's:
/// one token is 0 per second.
pub fn timings(c: &Completion) -> Value {
    let prompt_n = c.prompt_tokens.saturating_sub(c.cached_tokens);
    let per = |n: usize, d: Duration| {
        let t = ms(d);
        let per_token = if n > 0 { t / n as f64 } else { 0.0 };
        let per_second = if t > 0.0 { 1e3 / t * n as f64 } else { 0.0 };
        (t, per_token, per_second)
    };
    let (prompt_ms, prompt_per_token_ms, prompt_per_second) = per(prompt_n, c.prompt_time);
    let (predicted_ms, predicted_per_token_ms, predicted_per_second) =
        per(c.completion_tokens.saturating_sub(1), c.generation_time);
    json!({
        "cache_n": c.cached_tokens,
        "prompt_n": prompt_n,
        "prompt_ms": prompt_ms,
        "prompt_per_token_ms": prompt_per_token_ms,
        "prompt_per_second": prompt_per_second,
        "predicted_n": c.completion_tokens,
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": predicted_per_token_ms,
        "predicted_per_second": predicted_per_second,
    })
}

/// What the answers to one native request repeat.
#[derive(Debug, Clone)]
struct Answer {
    index: usize,
    model: String,
    prompt_text: String,
    settings: Value,
    stop: Vec<String>,
    return_tokens: bool,
    /// `n_probs` (0: no `completion_probabilities`).
    n_probs: usize,
    /// `post_sampling_probs`: probabilities (`prob`, `top_probs`), not log-probabilities.
    post_sampling: bool,
    state: Arc<AppState>,
}

impl Answer {
    /// llama-server's `completion_probabilities` for these tokens: per token its `id`,
    /// `token`, `bytes` and `logprob` with `top_logprobs`, or with `post_sampling_probs` its
    /// `prob` with `top_probs`.
    fn probabilities(&self, tokens: &[TokenLogprobs]) -> Value {
        let post = self.post_sampling;
        let entry = |p: &TokenProb| {
            let mut e = json!({
                "id": p.token,
                "token": String::from_utf8_lossy(&p.bytes),
                "bytes": p.bytes,
            });
            if post {
                e["prob"] = json!(p.logprob.exp());
            } else {
                e["logprob"] = json!(p.logprob);
            }
            e
        };
        let top = if post { "top_probs" } else { "top_logprobs" };
        Value::Array(
            tokens
                .iter()
                .map(|t| {
                    let mut e = entry(&t.chosen);
                    e[top] = Value::Array(t.top.iter().take(self.n_probs).map(entry).collect());
                    e
                })
                .collect(),
        )
    }

    /// The final object (`stop: true`) for `content`, with the probabilities of `probs`' tokens
    /// when they were asked for.
    fn finished(
        &self,
        content: &str,
        c: &Completion,
        full: &str,
        probs: &[TokenLogprobs],
    ) -> Value {
        let stopping_word = match (c.finish_reason, self.stop.as_slice()) {
            (FinishReason::StopString, [only]) => only.clone(),
            _ => String::new(),
        };
        let tokens: Vec<Token> = if self.return_tokens {
            // The engine streams text, not ids: the answer's text tokenized again.
            self.state
                .model
                .tokenize(full, false, false)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut out = json!({
            "index": self.index,
            "content": content,
            "tokens": tokens,
            "id_slot": -1,
            "stop": true,
            "model": self.model,
            "tokens_predicted": c.completion_tokens,
            "tokens_evaluated": c.prompt_tokens,
            "generation_settings": self.settings,
            "prompt": self.prompt_text,
            "has_new_line": full.contains('\n'),
            "truncated": false,
            "stop_type": stop_type(c.finish_reason),
            "stopping_word": stopping_word,
            "tokens_cached": c.prompt_tokens + c.completion_tokens,
            "timings": timings(c),
        });
        if self.n_probs > 0 && !probs.is_empty() {
            out["completion_probabilities"] = self.probabilities(probs);
        }
        out
    }
}

/// The stream of a native completion: one `data:` object per piece (`stop: false`), then the
/// final object (`stop: true`, empty `content`); no `[DONE]`, as llama-server sends it.
/// With `n_probs`, a piece carries the probabilities of the tokens it ends (several when the
/// text of some was held back: a possible stop string, an unfinished UTF-8 sequence).
struct NativeFrames {
    answer: Answer,
    text: String,
    /// Probabilities of tokens whose text has not been sent yet.
    probs: Vec<TokenLogprobs>,
    /// The figures to send with the next piece (`timings_per_token`).
    timings: Option<Value>,
}

impl Frames for NativeFrames {
    fn text(&mut self, text: &str) -> Vec<Event> {
        self.text.push_str(text);
        let mut chunk = json!({
            "index": self.answer.index,
            "content": text,
            "tokens": [],
            "stop": false,
            "id_slot": -1,
        });
        if !self.probs.is_empty() {
            chunk["completion_probabilities"] = self.answer.probabilities(&self.probs);
            self.probs.clear();
        }
        if let Some(t) = self.timings.take() {
            chunk["timings"] = t;
        }
        vec![events::data(&chunk)]
    }

    /// llama-server's `return_progress`: a prompt report is a piece of its own with no
    /// content, `prompt_progress` and the `timings` so far; with `timings_per_token` a token's
    /// figures go with its piece.
    fn progress(&mut self, p: &llama_core::engine::Progress) -> Vec<Event> {
        if super::timings::is_prompt_report(p) {
            let chunk = json!({
                "index": self.answer.index,
                "content": "",
                "tokens": [],
                "stop": false,
                "id_slot": -1,
                "prompt_progress": super::timings::prompt_progress(p),
                "timings": super::timings::of_progress(p),
            });
            vec![events::data(&chunk)]
        } else {
            self.timings = Some(super::timings::of_progress(p));
            Vec::new()
        }
    }

    fn logprobs(&mut self, logprobs: TokenLogprobs) -> Vec<Event> {
        self.probs.push(logprobs);
        Vec::new()
    }

    fn done(&mut self, c: &Completion) -> Vec<Event> {
        let probs = std::mem::take(&mut self.probs);
        vec![events::data(
            &self.answer.finished("", c, &self.text, &probs),
        )]
    }
}

/// llama-server's `generation_settings` for prepared options.
fn generation_settings(p: &Prepared, n_probs: usize) -> Value {
    let s = &p.options.sampling;
    json!({
        "n_predict": p.options.max_tokens.map_or(-1, |n| n as i64),
        "seed": s.seed,
        "temperature": s.temperature,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "min_p": s.min_p,
        "typical_p": s.typical_p,
        "repeat_penalty": s.repeat_penalty,
        "repeat_last_n": s.repeat_last_n,
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty,
        "mirostat": s.mirostat,
        "mirostat_tau": s.mirostat_tau,
        "mirostat_eta": s.mirostat_eta,
        "stop": p.options.stop,
        "ignore_eos": p.options.ignore_eos,
        "stream": p.stream,
        "n_probs": n_probs,
        "post_sampling_probs": p.options.post_sampling_probs,
        // -infinity (a ban) is null, as llama-server writes it.
        "logit_bias": p.options.logit_bias.iter()
            .map(|&(token, bias)| json!({"bias": if bias.is_finite() { json!(bias) } else { Value::Null }, "token": token}))
            .collect::<Vec<_>>(),
    })
}

#[utoipa::path(post, path = "/completion", tag = "llama-server", request_body(content = Object, content_type = "application/json", description = "llama-server's native completion: prompt (text, tokens or several), n_predict, stop, stream, ..."), responses(
    (status = 200, description = "The answer (JSON, or an event stream with `stream`)"),
    (status = 400, description = "An invalid field, named", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn completion(
    State(state): State<Arc<AppState>>,
    Extension(record): Extension<Arc<RequestRecord>>,
    body: Result<JsonBody, ApiError>,
) -> Response {
    let result = match body {
        Ok(JsonBody(body)) => native_completion(state, Arc::clone(&record), body).await,
        Err(err) => Err(err),
    };
    result.unwrap_or_else(|err| {
        record.failed(&err.message);
        err.into_response()
    })
}

async fn native_completion(
    state: Arc<AppState>,
    record: Arc<RequestRecord>,
    body: Value,
) -> Result<Response, ApiError> {
    let fields: NativeFields = openai::parse(&body)?;
    let common: Common = openai::parse(&openai_body(&body, &fields))?;
    let mut prepared = common
        .prepare(&state.defaults, openai::Kind::Completion)
        .map_err(|mut err| {
            if err.param.as_deref() == Some("max_tokens") {
                err.param = Some("n_predict".into());
            }
            err
        })?;
    prepared.options.ignore_eos = fields.ignore_eos.unwrap_or(false);
    prepared.options.post_sampling_probs = fields.post_sampling_probs.unwrap_or(false);
    prepared.options.fresh_prompt = fields.cache_prompt == Some(false);
    let (grammar, logit_bias) = {
        let state = Arc::clone(&state);
        tokio::task::spawn_blocking(move || constraints(&state, &common))
            .await
            .map_err(|e| ApiError::internal(format!("checking the request failed: {e}")))??
    };
    prepared.options.grammar = grammar;
    prepared.options.logit_bias = logit_bias;
    if prepared.options.ignore_eos {
        // As llama-server: the end-of-generation tokens are banned (a -infinity bias, shown
        // in generation_settings), so that none is sampled at all.
        let model = &state.model;
        let bias = &mut prepared.options.logit_bias;
        for token in 0..model.n_vocab() as Token {
            if model.is_end_of_generation(token) && !bias.iter().any(|&(t, _)| t == token) {
                bias.push((token, f32::NEG_INFINITY));
            }
        }
    }
    let value = fields
        .prompt
        .as_ref()
        .ok_or_else(|| ApiError::invalid("prompt is required", Some("prompt")))?;
    let prompts = prompts(value)?;
    if prompts.len() > 1 && prepared.stream {
        return Err(ApiError::invalid(
            "several prompts cannot be streamed: send them one per request",
            Some("stream"),
        ));
    }
    let settings = generation_settings(&prepared, prepared.logprobs.unwrap_or(0));
    let mut answers = Vec::new();
    for (index, pieces) in prompts.into_iter().enumerate() {
        let tokens = {
            let state = Arc::clone(&state);
            tokio::task::spawn_blocking(move || {
                let tokens = tokenize_pieces(&state, &pieces)?;
                let text = state.model.detokenize(&tokens, true);
                Ok::<_, ApiError>((tokens, text))
            })
            .await
            .map_err(|e| ApiError::internal(format!("tokenizing failed: {e}")))??
        };
        let (tokens, prompt_text) = tokens;
        let (stream, inflight) = state
            .submit(EngineRequest {
                prompt: tokens,
                options: prepared.options.clone(),
                cancel: CancelToken::new(),
            })
            .map_err(|mut err| {
                if err.param.as_deref() == Some("messages") {
                    err.param = Some("prompt".into());
                }
                err
            })?;
        let answer = Answer {
            index,
            model: state.model_id.clone(),
            prompt_text,
            settings: settings.clone(),
            stop: prepared.options.stop.clone(),
            return_tokens: fields.return_tokens.unwrap_or(false),
            n_probs: prepared.logprobs.unwrap_or(0),
            post_sampling: prepared.options.post_sampling_probs,
            state: Arc::clone(&state),
        };
        if prepared.stream {
            let frames = NativeFrames {
                answer,
                text: String::new(),
                probs: Vec::new(),
                timings: None,
            };
            return Ok(events::respond(frames, stream, record, inflight));
        }
        answers.push((answer, stream, inflight));
    }
    let mut results = Vec::new();
    for (answer, stream, inflight) in answers {
        let (text, probs, c) = events::collect_with_logprobs(stream).await?;
        drop(inflight);
        record.completed(&c);
        results.push(pick_fields(
            answer.finished(&text, &c, &text, &probs),
            &fields.response_fields,
        ));
    }
    Ok(match results.len() {
        1 => Json(results.remove(0)).into_response(),
        _ => Json(Value::Array(results)).into_response(),
    })
}

/// `POST /tokenize`.
#[derive(Debug, Deserialize)]
struct TokenizeRequest {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    add_special: bool,
    #[serde(default = "yes")]
    parse_special: bool,
    #[serde(default)]
    with_pieces: bool,
}

fn yes() -> bool {
    true
}

#[utoipa::path(post, path = "/tokenize", tag = "llama-server", request_body(content = Object, content_type = "application/json", description = "`content`, `add_special`, `with_pieces`"), responses(
    (status = 200, description = "The answer"),
    (status = 400, description = "An invalid field, named", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn tokenize(
    State(state): State<Arc<AppState>>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let JsonBody(body) = body?;
    let req: TokenizeRequest = openai::parse(&body)?;
    let Some(content) = req.content else {
        return Ok(Json(json!({"tokens": []})));
    };
    let pieces = match &content {
        Value::String(s) => vec![Piece::Text(s.clone())],
        Value::Array(items) => mixed(items)?,
        _ => {
            return Err(ApiError::invalid(
                "content must be a string or an array of strings and token ids",
                Some("content"),
            ))
        }
    };
    let tokens = tokio::task::spawn_blocking(move || {
        let mut tokens = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            match piece {
                Piece::Text(t) => tokens.extend(
                    state
                        .model
                        .tokenize(t, req.add_special && i == 0, req.parse_special)
                        .map_err(|e| ApiError::invalid(format!("cannot tokenize: {e}"), None))?,
                ),
                Piece::Tokens(ids) => tokens.extend_from_slice(ids),
            }
        }
        let value: Vec<Value> = if req.with_pieces {
            tokens
                .iter()
                .map(|&t| {
                    let bytes = state.model.token_to_piece(t, true);
                    // Text when the piece is valid UTF-8, else its bytes, as llama-server.
                    let piece = match String::from_utf8(bytes) {
                        Ok(s) => json!(s),
                        Err(e) => json!(e.into_bytes()),
                    };
                    json!({"id": t, "piece": piece})
                })
                .collect()
        } else {
            tokens.iter().map(|&t| json!(t)).collect()
        };
        Ok::<_, ApiError>(value)
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizing failed: {e}")))??;
    Ok(Json(json!({"tokens": tokens})))
}

/// `POST /detokenize`.
#[derive(Debug, Deserialize)]
struct DetokenizeRequest {
    #[serde(default)]
    tokens: Vec<i64>,
}

#[utoipa::path(post, path = "/detokenize", tag = "llama-server", request_body(content = Object, content_type = "application/json", description = "`tokens`"), responses(
    (status = 200, description = "The answer"),
    (status = 400, description = "An invalid field, named", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn detokenize(
    State(state): State<Arc<AppState>>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let JsonBody(body) = body?;
    let req: DetokenizeRequest = openai::parse(&body)?;
    let n_vocab = i64::from(state.model.n_vocab());
    let tokens = req
        .tokens
        .iter()
        .map(|&t| {
            Token::try_from(t)
                .ok()
                .filter(|_| (0..n_vocab).contains(&t))
                .ok_or_else(|| {
                    ApiError::invalid(
                        format!(
                            "token id {t} is out of the vocabulary (0 to {})",
                            n_vocab - 1
                        ),
                        Some("tokens"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let content = tokio::task::spawn_blocking(move || state.model.detokenize(&tokens, true))
        .await
        .map_err(|e| ApiError::internal(format!("detokenizing failed: {e}")))?;
    Ok(Json(json!({"content": content})))
}

/// `POST /apply-template`: the prompt a chat request would send (its messages, `tools`,
/// `add_generation_prompt`, `continue_final_message`, `chat_template_kwargs` and the server's
/// `--reasoning`), rendered by the same template path as `/v1/chat/completions`.
#[utoipa::path(post, path = "/apply-template", tag = "llama-server", request_body(content = Object, content_type = "application/json", description = "`messages` as in a chat completion"), responses(
    (status = 200, description = "The answer"),
    (status = 400, description = "An invalid field, named", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn apply_template(
    State(state): State<Arc<AppState>>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let JsonBody(body) = body?;
    let request = openai::parse::<ChatRequest>(&body)?;
    let prompt = tokio::task::spawn_blocking(move || {
        let inputs = super::generation::chat_inputs(&state, &request, None)?;
        super::generation::render_chat(&state, &inputs).map(|(prompt, ..)| prompt)
    })
    .await
    .map_err(|e| ApiError::internal(format!("rendering the template failed: {e}")))??;
    Ok(Json(json!({"prompt": prompt})))
}

/// `POST /v1/chat/completions/input_tokens` (and un-prefixed): the prompt tokens a chat
/// request would send, `{"input_tokens"}`.
async fn chat_input_tokens(
    State(state): State<Arc<AppState>>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let JsonBody(body) = body?;
    let messages = openai::parse::<ChatRequest>(&body)?.chat_messages()?;
    let n = super::chat_path::count(&state, messages).await?;
    Ok(Json(json!({"input_tokens": n})))
}

/// `GET /props`.
#[utoipa::path(get, path = "/props", tag = "llama-server", responses(
    (status = 200, description = "The server's properties in llama-server's shape", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn props(
    State(state): State<Arc<AppState>>,
    Extension(slots): Extension<NativeConfig>,
) -> Json<Value> {
    let parallel = state.parallel();
    let model = &state.model;
    let bos = model.detokenize(&[model.token_bos()], true);
    let d = &state.defaults;
    Json(json!({
        "default_generation_settings": {
            "n_ctx": state.ctx_per_slot(),
            "params": {
                "n_predict": d.max_tokens.map_or(-1, |n| n as i64),
                "seed": d.sampling.seed,
                "temperature": d.sampling.temperature,
                "top_k": d.sampling.top_k,
                "top_p": d.sampling.top_p,
                "min_p": d.sampling.min_p,
                "repeat_penalty": d.sampling.repeat_penalty,
                "stop": d.stop,
            },
        },
        "total_slots": parallel,
        "model_alias": state.model_id,
        "model_path": model.path().display().to_string(),
        "modalities": {"vision": false, "video": false, "audio": false},
        "endpoint_slots": slots.slots,
        "endpoint_props": false,
        "endpoint_metrics": slots.metrics,
        "chat_template": model.chat_template().unwrap_or_default(),
        "bos_token": bos,
        "build_info": format!("llama-rs {}", env!("CARGO_PKG_VERSION")),
        "is_sleeping": false,
    }))
}

/// `GET /slots` query.
#[derive(Debug, Deserialize)]
pub(super) struct SlotsQuery {
    #[serde(default)]
    fail_on_no_slot: Option<String>,
}

/// `GET /slots`: one entry per sequence. The engine does not say which sequence answers
/// which request, so the first `active` are shown processing.
#[utoipa::path(get, path = "/slots", tag = "llama-server", responses(
    (status = 200, description = "One entry per sequence", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn slots(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<NativeConfig>,
    Query(query): Query<SlotsQuery>,
) -> Result<Json<Value>, ApiError> {
    if !config.slots {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            "not_supported_error",
            "this server does not serve /slots: it was started with --no-slots",
        ));
    }
    let parallel = state.parallel();
    let active = state.stats().map_or(0, |s| s.active);
    if query.fail_on_no_slot.is_some_and(|v| !v.is_empty()) && active >= parallel {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable_error",
            "no slot available",
        ));
    }
    let n_ctx = state.ctx_per_slot();
    let slots: Vec<Value> = (0..parallel)
        .map(|id| {
            json!({
                "id": id,
                "n_ctx": n_ctx,
                "speculative": false,
                "is_processing": id < active,
            })
        })
        .collect();
    Ok(Json(Value::Array(slots)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_take_llama_server_shapes() {
        assert_eq!(
            prompts(&json!("hi")).unwrap(),
            vec![vec![Piece::Text("hi".into())]]
        );
        assert_eq!(
            prompts(&json!([1, 2, "x", 3])).unwrap(),
            vec![vec![
                Piece::Tokens(vec![1, 2]),
                Piece::Text("x".into()),
                Piece::Tokens(vec![3])
            ]]
        );
        assert_eq!(prompts(&json!(["a", [5, 6]])).unwrap().len(), 2);
        for bad in [json!(3), json!([]), json!([{"a": 1}]), json!([1, null])] {
            assert_eq!(
                prompts(&bad).unwrap_err().param.as_deref(),
                Some("prompt"),
                "{bad}"
            );
        }
        assert!(prompts(&json!([1, 1e20])).is_err());
        assert_eq!(
            prompts(&json!({"prompt_string": "a"})).unwrap(),
            vec![vec![Piece::Text("a".into())]]
        );
        assert_eq!(
            prompts(&json!([[1], {"prompt_string": "b"}]))
                .unwrap()
                .len(),
            2
        );
        assert!(prompts(&json!({"prompt_string": "a", "multimodal_data": ["x"]})).is_err());
    }

    #[test]
    fn response_fields_pick_nested_paths() {
        let answer = json!({"content": "x", "generation_settings": {"n_predict": 8}, "stop": true});
        let fields = [
            "content".to_string(),
            "generation_settings/n_predict".into(),
            "nope".into(),
        ];
        assert_eq!(
            pick_fields(answer.clone(), &fields),
            json!({"content": "x", "generation_settings/n_predict": 8})
        );
        assert_eq!(pick_fields(answer.clone(), &[]), answer);
    }

    #[test]
    fn native_fields_become_openai_ones() {
        let fields = NativeFields {
            n_predict: Some(-1),
            ..Default::default()
        };
        let body = json!({"n_predict": -1, "temperature": 0, "cache_prompt": true, "stop": ["x"]});
        let out = openai_body(&body, &fields);
        assert_eq!(out, json!({"temperature": 0, "stop": ["x"]}));
        let fields = NativeFields {
            n_predict: Some(8),
            ..Default::default()
        };
        assert_eq!(openai_body(&json!({}), &fields), json!({"max_tokens": 8}));
    }

    #[test]
    fn timings_divide_by_the_counts() {
        let c = Completion {
            finish_reason: FinishReason::Length,
            prompt_tokens: 10,
            cached_tokens: 2,
            completion_tokens: 4,
            time_to_first_token: None,
            total_time: Duration::from_millis(300),
            prompt_time: Duration::from_millis(80),
            generation_time: Duration::from_millis(200),
        };
        let t = timings(&c);
        assert_eq!(t["prompt_n"], 8);
        assert_eq!(t["cache_n"], 2);
        assert_eq!(t["predicted_n"], 4);
        // Three decode steps after the first token.
        assert!((t["predicted_per_token_ms"].as_f64().unwrap() - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(t["prompt_per_second"], 100.0);
        assert_eq!(stop_type(FinishReason::EndOfGeneration), "eos");
    }
}
