//! Streamed answers as server-sent events, in OpenAI's shape: for chat a first chunk per
//! choice with the role (and `content: null`, as llama-server sends it), then deltas of
//! `content`, `reasoning_content` and `tool_calls` as the
//! answer's parser finds them (a call starts with its index, id, type, name and empty
//! arguments; fragments of its arguments follow as they are written, as OpenAI streams them),
//! with `logprobs` when asked for; then a chunk with the
//! `finish_reason` per choice (`tool_calls` when the model called tools), optionally one with
//! `usage`, then `data: [DONE]`. The last chunk carries llama-server's `timings`; with
//! `timings_per_token` each piece of text carries the figures so far, and with
//! `return_progress` the prompt's evaluation is reported in chunks with an empty delta and
//! `prompt_progress` (`total`, `cache`, `processed`, `time_ms`). With `n` > 1 the choices' events interleave, each chunk
//! naming its index.
//!
//! The event stream owns the engine's [`ResponseStream`]s, so when the client goes away and
//! the connection drops the body, the streams are dropped and the engine cancels the
//! requests.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SelectAll, Stream, StreamExt};
use llama_core::chat::{MessageDelta, StreamParser};
use llama_core::engine::{Completion, EngineEvent, Progress, ResponseStream, TokenLogprobs};
use serde_json::{json, Value};

use super::error::ApiError;
use super::log::RequestRecord;
use super::openai::{self, Envelope, Kind};
use super::state::Inflight;
use super::timings;

/// Seconds between keep-alive comments while no text comes (a queued request), so a client
/// that went away is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// One choice of a streamed request.
pub struct StreamChoice {
    /// Its index in the response.
    pub index: usize,
    /// Which prompt it answers (for `usage`).
    pub prompt_index: usize,
    /// The engine's events.
    pub stream: ResponseStream,
    /// Chat: the answer's parser (content, reasoning, tool calls).
    pub parser: Option<StreamParser>,
}

type Merged = SelectAll<Pin<Box<dyn Stream<Item = (usize, EngineEvent)> + Send>>>;

/// A choice's state while it streams.
struct ChoiceState {
    prompt_index: usize,
    parser: Option<StreamParser>,
    logprobs: Vec<TokenLogprobs>,
    /// Bytes of text sent (completions' `text_offset`).
    offset: usize,
    /// The figures to send with the next piece of text (`timings_per_token`).
    timings: Option<Value>,
    done: Option<Completion>,
}

struct Events {
    envelope: Envelope,
    merged: Merged,
    choices: Vec<ChoiceState>,
    include_usage: bool,
    logprobs: Option<usize>,
    record: Arc<RequestRecord>,
    pending: VecDeque<Event>,
    finished: bool,
    _inflight: Vec<Inflight>,
}

fn data(value: &Value) -> Event {
    Event::default().data(value.to_string())
}

impl Events {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.finished {
                return None;
            }
            match self.merged.next().await {
                Some((i, EngineEvent::Text(text))) => self.text(i, &text),
                Some((i, EngineEvent::Logprobs(l))) => self.choices[i].logprobs.push(l),
                Some((i, EngineEvent::Progress(p))) => self.progress(i, &p),
                Some((i, EngineEvent::Done(c))) => self.done(i, c),
                Some((_, EngineEvent::Failed(err))) => self.fail(ApiError::from(err)),
                None => self.fail(ApiError::internal(
                    "the engine ended the request without an answer",
                )),
            }
        }
    }

    /// The pending log-probabilities of choice `i`, in the endpoint's shape.
    fn take_logprobs(&mut self, i: usize, text_len: usize) -> Option<Value> {
        let n = self.logprobs?;
        let state = &mut self.choices[i];
        let tokens = std::mem::take(&mut state.logprobs);
        let offset = state.offset;
        state.offset += text_len;
        Some(match self.envelope.kind {
            Kind::Chat => openai::chat_logprobs(n, &tokens),
            Kind::Completion => openai::completion_logprobs(n, &tokens, offset),
        })
    }

    /// A prompt report becomes a chunk of its own (`prompt_progress`, an empty delta); a
    /// token's figures go with the next piece of text (`timings`).
    fn progress(&mut self, i: usize, p: &Progress) {
        if timings::is_prompt_report(p) {
            let delta = match self.envelope.kind {
                Kind::Chat => json!({}),
                Kind::Completion => json!({"text": ""}),
            };
            let mut chunk = self.envelope.chunk(i, delta, None, None);
            chunk["prompt_progress"] = timings::prompt_progress(p);
            self.pending.push_back(data(&chunk));
        } else {
            self.choices[i].timings = Some(timings::of_progress(p));
        }
    }

    /// A chunk of choice `i`, with the figures of its last token when they are pending.
    fn push_chunk(&mut self, i: usize, mut chunk: Value) {
        if let Some(t) = self.choices[i].timings.take() {
            chunk["timings"] = t;
        }
        self.pending.push_back(data(&chunk));
    }

    fn text(&mut self, i: usize, text: &str) {
        match self.choices[i].parser.as_mut() {
            Some(parser) => {
                let deltas = parser.push(text);
                self.send_deltas(i, deltas);
            }
            None => {
                let logprobs = self.take_logprobs(i, text.len());
                let chunk = self
                    .envelope
                    .chunk(i, json!({"text": text}), logprobs, None);
                self.push_chunk(i, chunk);
            }
        }
    }

    fn send_deltas(&mut self, i: usize, deltas: Vec<MessageDelta>) {
        for delta in deltas {
            let (delta, logprobs) = match delta {
                MessageDelta::Content(text) => {
                    let logprobs = self.take_logprobs(i, text.len());
                    (json!({"content": text}), logprobs)
                }
                MessageDelta::Reasoning(text) => (json!({"reasoning_content": text}), None),
                MessageDelta::ToolCall { index, id, name } => (
                    json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                        "function": {"name": name, "arguments": ""}}]}),
                    None,
                ),
                MessageDelta::ToolArguments { index, text } => (
                    json!({"tool_calls": [{"index": index, "function": {"arguments": text}}]}),
                    None,
                ),
            };
            let chunk = self.envelope.chunk(i, delta, logprobs, None);
            self.push_chunk(i, chunk);
        }
    }

    fn done(&mut self, i: usize, c: Completion) {
        self.record.completed(&c);
        let mut called_tools = false;
        if let Some(parser) = self.choices[i].parser.as_mut() {
            let (message, deltas) = parser.finish();
            called_tools = !message.tool_calls.is_empty();
            self.send_deltas(i, deltas);
        }
        let finish = if called_tools {
            "tool_calls"
        } else {
            c.finish_reason.api_name()
        };
        let delta = match self.envelope.kind {
            Kind::Chat => json!({}),
            Kind::Completion => json!({"text": ""}),
        };
        let mut chunk = self.envelope.chunk(i, delta, None, Some(finish));
        let timings = super::native::timings(&c);
        self.choices[i].done = Some(c);
        let last = self.choices.iter().all(|s| s.done.is_some());
        if last && !self.include_usage {
            // The last chunk carries the final figures, as llama-server's.
            chunk["timings"] = timings.clone();
        }
        self.pending.push_back(data(&chunk));
        if last {
            if self.include_usage {
                let usage = openai::usage_sum(
                    self.choices
                        .iter()
                        .filter_map(|s| s.done.as_ref().map(|c| (s.prompt_index, c))),
                );
                let mut chunk = self.envelope.usage_chunk(usage);
                chunk["timings"] = timings;
                self.pending.push_back(data(&chunk));
            }
            self.pending.push_back(Event::default().data("[DONE]"));
            self.finished = true;
        }
    }

    fn fail(&mut self, err: ApiError) {
        self.record.failed(&err.message);
        self.pending.push_back(data(&err.body()));
        self.finished = true;
    }
}

/// The streamed response of submitted choices.
pub fn respond(
    envelope: Envelope,
    choices: Vec<StreamChoice>,
    include_usage: bool,
    logprobs: Option<usize>,
    record: Arc<RequestRecord>,
    inflight: Vec<Inflight>,
) -> Response {
    let mut pending = VecDeque::new();
    if envelope.kind == Kind::Chat {
        for c in &choices {
            let first = envelope.chunk(
                c.index,
                json!({"role": "assistant", "content": null}),
                None,
                None,
            );
            pending.push_back(data(&first));
        }
    }
    let mut merged: Merged = SelectAll::new();
    let mut states = Vec::new();
    for c in choices {
        let index = c.index;
        let events = futures_util::stream::unfold(c.stream, super::generation::next_event)
            .map(move |event| (index, event));
        merged.push(Box::pin(events));
        states.push(ChoiceState {
            prompt_index: c.prompt_index,
            parser: c.parser,
            logprobs: Vec::new(),
            offset: 0,
            timings: None,
            done: None,
        });
    }
    let events = Events {
        envelope,
        merged,
        choices: states,
        include_usage,
        logprobs,
        record,
        pending,
        finished: false,
        _inflight: inflight,
    };
    let body = futures_util::stream::unfold(events, |mut events| async move {
        let event = events.next().await?;
        Some((Ok::<Event, Infallible>(event), events))
    });
    Sse::new(body)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}
