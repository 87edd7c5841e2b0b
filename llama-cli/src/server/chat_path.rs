//! The chat generation path that the Anthropic and Responses routes share with
//! `/v1/chat/completions`: their request becomes an OpenAI chat request (messages with tool
//! calls and results, `tools`, `tool_choice`) that is checked by [`openai::Common`], planned by
//! the same code as `/v1/chat/completions` ([`generation::plan`]: template, tools, tool-call
//! grammar) and submitted to the engine. The answer is parsed as it comes ([`StreamParser`]):
//! a route spells the parsed deltas as its stream ([`ChatFrames`]) or takes the whole
//! message ([`run`]), and [`respond`] maps an error to the route's error shape.

use std::future::Future;
use std::sync::Arc;

use axum::response::sse::Event;
use axum::response::Response;
use llama_core::chat::{ChatFormat, MessageDelta, ParsedMessage, StreamParser};
use llama_core::engine::{Completion, EngineRequest, ResponseStream};
use llama_core::CancelToken;
use serde_json::Value;

use super::app::{self, Prompt};
use super::error::ApiError;
use super::events::{self, Frames};
use super::generation;
use super::log::RequestRecord;
use super::openai::{self, Common, Kind, Prepared};
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
    /// Reads the answer (content, reasoning, tool calls).
    pub parser: StreamParser,
}

/// The prompt of an OpenAI chat request, and how to read its answer.
struct Planned {
    tokens: Vec<llama_core::Token>,
    format: ChatFormat,
    grammar: Option<llama_core::grammar::GrammarSpec>,
    logit_bias: Vec<(llama_core::Token, f32)>,
}

/// Renders `body` as `/v1/chat/completions` does (an empty `messages` list is rendered
/// as it is, as llama-server accepts it for Anthropic's Messages).
async fn plan(state: &Arc<AppState>, body: &Value, common: &Common) -> Result<Planned, ApiError> {
    let empty = body
        .get("messages")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty);
    if empty {
        let prompt = Prompt::Chat(app::with_default_system(state, Vec::new()));
        return Ok(Planned {
            tokens: app::tokenize_async(state, prompt).await?,
            format: ChatFormat {
                reasoning: state.defaults.reasoning_format,
                ..ChatFormat::default()
            },
            grammar: state.defaults.grammar.clone(),
            logit_bias: Vec::new(),
        });
    }
    let (state, body, common) = (Arc::clone(state), body.clone(), common.clone());
    let plan =
        tokio::task::spawn_blocking(move || generation::plan(&state, Kind::Chat, &body, &common))
            .await
            .map_err(|e| ApiError::internal(format!("preparing the prompt failed: {e}")))??;
    Ok(Planned {
        tokens: plan.prompts.into_iter().next().unwrap_or_default(),
        format: plan.format.unwrap_or_default(),
        grammar: plan.grammar,
        logit_bias: plan.logit_bias,
    })
}

/// Checks and renders `openai_body` (an OpenAI chat request) and submits it.
pub async fn submit(state: &Arc<AppState>, openai_body: &Value) -> Result<Submitted, ApiError> {
    let common: Common = openai::parse(openai_body)?;
    let prepared = common.prepare(&state.defaults, Kind::Chat)?;
    let planned = plan(state, openai_body, &common).await?;
    let prompt_tokens = planned.tokens.len();
    let mut options = prepared.options.clone();
    options.grammar = planned.grammar;
    options.logit_bias = planned.logit_bias;
    let (stream, inflight) = state.submit(EngineRequest {
        prompt: planned.tokens,
        options,
        cancel: CancelToken::new(),
    })?;
    Ok(Submitted {
        prepared,
        stream,
        inflight,
        prompt_tokens,
        parser: StreamParser::new(planned.format),
    })
}

/// Tokens of `openai_body`'s prompt as the chat path renders it (tools included).
pub async fn count_request(state: &Arc<AppState>, openai_body: &Value) -> Result<usize, ApiError> {
    let common: Common = openai::parse(openai_body)?;
    Ok(plan(state, openai_body, &common).await?.tokens.len())
}

/// Tokens of `messages` as the chat template renders them, without tools (the native
/// routes' count).
pub async fn count(
    state: &Arc<AppState>,
    messages: Vec<llama_core::ChatMessage>,
) -> Result<usize, ApiError> {
    let prompt = Prompt::Chat(app::with_default_system(state, messages));
    Ok(app::tokenize_async(state, prompt).await?.len())
}

/// How one API spells a chat answer's stream, from the parsed deltas.
pub trait ChatFrames: Send + 'static {
    /// Events sent before any text.
    fn start(&mut self) -> Vec<Event>;
    /// Events for a change of the message.
    fn delta(&mut self, delta: MessageDelta) -> Vec<Event>;
    /// Events that end the answer: the whole message and its completion.
    fn done(&mut self, message: &ParsedMessage, completion: &Completion) -> Vec<Event>;
    /// Events that end a failed answer.
    fn failed(&mut self, err: &ApiError) -> Vec<Event>;
    /// Events for a progress report of the engine (asked for with `return_progress` or
    /// `timings_per_token`); none by default.
    fn progress(&mut self, _progress: &llama_core::engine::Progress) -> Vec<Event> {
        Vec::new()
    }
}

/// A [`ChatFrames`] fed by the parser.
struct Parsed<F> {
    frames: F,
    parser: StreamParser,
}

impl<F: ChatFrames> Parsed<F> {
    fn deltas(&mut self, deltas: Vec<MessageDelta>) -> Vec<Event> {
        deltas
            .into_iter()
            .flat_map(|d| self.frames.delta(d))
            .collect()
    }
}

impl<F: ChatFrames> Frames for Parsed<F> {
    fn start(&mut self) -> Vec<Event> {
        self.frames.start()
    }

    fn text(&mut self, text: &str) -> Vec<Event> {
        let deltas = self.parser.push(text);
        self.deltas(deltas)
    }

    fn done(&mut self, completion: &Completion) -> Vec<Event> {
        let (message, deltas) = self.parser.finish();
        let mut events = self.deltas(deltas);
        events.extend(self.frames.done(&message, completion));
        events
    }

    fn failed(&mut self, err: &ApiError) -> Vec<Event> {
        self.frames.failed(err)
    }

    fn progress(&mut self, progress: &llama_core::engine::Progress) -> Vec<Event> {
        self.frames.progress(progress)
    }
}

/// What [`run`] gives: a stream already spelled, or the whole answer.
pub enum Answer {
    /// The streamed response.
    Streamed(Response),
    /// The parsed message and its completion.
    Whole(ParsedMessage, Completion),
}

/// Streams a submitted answer (with `frames`, when the request asked for a stream) or reads
/// it to the end and parses it.
pub async fn run<F: ChatFrames>(
    submitted: Submitted,
    record: Arc<RequestRecord>,
    frames: F,
) -> Result<Answer, ApiError> {
    let Submitted {
        prepared,
        stream,
        inflight,
        mut parser,
        ..
    } = submitted;
    if prepared.stream {
        let frames = Parsed { frames, parser };
        return Ok(Answer::Streamed(events::respond(
            frames, stream, record, inflight,
        )));
    }
    let (text, completion) = events::collect(stream).await?;
    drop(inflight);
    record.completed(&completion);
    parser.push(&text);
    let (message, _) = parser.finish();
    Ok(Answer::Whole(message, completion))
}

/// The response of a route's `answer`; an error is recorded and spelled by `error`.
pub async fn respond(
    record: &RequestRecord,
    answer: impl Future<Output = Result<Response, ApiError>>,
    error: fn(ApiError) -> Response,
) -> Response {
    match answer.await {
        Ok(response) => response,
        Err(err) => {
            record.failed(&err.message);
            error(err)
        }
    }
}

/// Converts the request's `tools` (a list; absent or null: none) into OpenAI's `tools` of `out`
/// with `convert` (given each tool and its path, `tools[i]`); an empty list adds nothing, and
/// anything but a list is a 400 saying it must be `list_word` ("an array", "a list").
pub fn convert_tools_into(
    out: &mut serde_json::Map<String, Value>,
    body: &Value,
    list_word: &str,
    convert: impl Fn(&Value, &str) -> Result<Value, ApiError>,
) -> Result<(), ApiError> {
    match body.get("tools") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(tools)) => {
            let tools = tools
                .iter()
                .enumerate()
                .map(|(i, t)| convert(t, &format!("tools[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            if !tools.is_empty() {
                out.insert("tools".into(), Value::Array(tools));
            }
            Ok(())
        }
        Some(_) => Err(ApiError::invalid(
            format!("tools must be {list_word}"),
            Some("tools"),
        )),
    }
}

/// Copies the fields of `body` named in `names` (source name, OpenAI name) into `out`.
pub fn rename_into(out: &mut serde_json::Map<String, Value>, body: &Value, names: &[(&str, &str)]) {
    for (from, to) in names {
        if let Some(v) = body.get(*from).filter(|v| !v.is_null()) {
            out.insert((*to).to_string(), v.clone());
        }
    }
}
