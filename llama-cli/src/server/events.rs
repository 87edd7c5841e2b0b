//! Server-sent events for the routes whose streams are not OpenAI's chunks (llama-server's
//! native `/completion`, Anthropic's Messages, OpenAI's Responses): a [`Frames`] turns the
//! engine's events into SSE events (named or not), and [`respond`] streams them. As in
//! [`super::sse`], the event stream owns the engine's [`ResponseStream`]: a client that goes
//! away drops it and the engine cancels the request.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use llama_core::engine::{Completion, EngineEvent, Progress, ResponseStream, TokenLogprobs};
use serde_json::Value;

use super::error::ApiError;
use super::log::RequestRecord;
use super::state::Inflight;

/// Seconds between keep-alive comments while no text comes.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// How one API spells a stream.
pub trait Frames: Send + 'static {
    /// Events sent before any text.
    fn start(&mut self) -> Vec<Event> {
        Vec::new()
    }
    /// Events for a piece of the answer.
    fn text(&mut self, text: &str) -> Vec<Event>;
    /// Events for the log-probabilities of a token, sent before its text (only when they
    /// were asked for); by default none: most of these APIs carry none.
    fn logprobs(&mut self, _logprobs: TokenLogprobs) -> Vec<Event> {
        Vec::new()
    }
    /// Events that end an answer.
    fn done(&mut self, completion: &Completion) -> Vec<Event>;
    /// Events for a progress report (only sent when the request asked for
    /// `return_progress` or `timings_per_token`); none by default.
    fn progress(&mut self, _progress: &Progress) -> Vec<Event> {
        Vec::new()
    }
    /// Events that end a failed answer.
    fn failed(&mut self, err: &ApiError) -> Vec<Event> {
        vec![data(&err.body())]
    }
}

/// An unnamed `data:` event holding `value`.
pub fn data(value: &Value) -> Event {
    Event::default().data(value.to_string())
}

/// A named event (`event: NAME`) holding `value`.
pub fn named(name: &str, value: &Value) -> Event {
    Event::default().event(name).data(value.to_string())
}

struct Events<F> {
    frames: F,
    stream: ResponseStream,
    record: Arc<RequestRecord>,
    pending: VecDeque<Event>,
    finished: bool,
    _inflight: Inflight,
}

impl<F: Frames> Events<F> {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.finished {
                return None;
            }
            let events = match self.stream.next().await {
                Some(EngineEvent::Text(text)) => self.frames.text(&text),
                Some(EngineEvent::Logprobs(l)) => self.frames.logprobs(l),
                Some(EngineEvent::Progress(p)) => self.frames.progress(&p),
                Some(EngineEvent::Done(c)) => {
                    self.record.completed(&c);
                    self.finished = true;
                    self.frames.done(&c)
                }
                Some(EngineEvent::Failed(err)) => self.fail(ApiError::from(err)),
                None => self.fail(ApiError::internal(
                    "the engine ended the request without an answer",
                )),
            };
            self.pending.extend(events);
        }
    }

    fn fail(&mut self, err: ApiError) -> Vec<Event> {
        self.record.failed(&err.message);
        self.finished = true;
        self.frames.failed(&err)
    }
}

/// The streamed response of a submitted request, spelled by `frames`.
pub fn respond<F: Frames>(
    mut frames: F,
    stream: ResponseStream,
    record: Arc<RequestRecord>,
    inflight: Inflight,
) -> Response {
    let pending = frames.start().into();
    let events = Events {
        frames,
        stream,
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

/// Reads a non-streamed answer to the end: its text and completion.
pub async fn collect(stream: ResponseStream) -> Result<(String, Completion), ApiError> {
    collect_with_logprobs(stream)
        .await
        .map(|(text, _, c)| (text, c))
}

/// Reads a non-streamed answer to the end: its text, its tokens' log-probabilities (when
/// they were asked for) and completion.
pub async fn collect_with_logprobs(
    mut stream: ResponseStream,
) -> Result<(String, Vec<TokenLogprobs>, Completion), ApiError> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    loop {
        match stream.next().await {
            Some(EngineEvent::Text(t)) => text.push_str(&t),
            Some(EngineEvent::Progress(_)) => {}
            Some(EngineEvent::Logprobs(l)) => logprobs.push(l),
            Some(EngineEvent::Done(c)) => return Ok((text, logprobs, c)),
            Some(EngineEvent::Failed(err)) => return Err(err.into()),
            None => {
                return Err(ApiError::internal(
                    "the engine ended the request without an answer",
                ))
            }
        }
    }
}
