//! Streamed answers as server-sent events: `data: {chunk}` per piece of text, a chunk with the
//! `finish_reason`, optionally one with `usage`, then `data: [DONE]`. The event stream owns
//! the engine's [`ResponseStream`], so when the client goes away and the connection drops the
//! body, the stream is dropped and the engine cancels the request.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use llama_core::engine::{EngineEvent, ResponseStream};

use super::error::ApiError;
use super::log::RequestRecord;
use super::openai::{Envelope, Kind};
use super::state::Inflight;

/// Seconds between keep-alive comments while no text comes (a queued request), so a client
/// that went away is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

struct Events {
    envelope: Envelope,
    stream: ResponseStream,
    include_usage: bool,
    record: Arc<RequestRecord>,
    pending: VecDeque<Event>,
    finished: bool,
    _inflight: Inflight,
}

fn data(value: &serde_json::Value) -> Event {
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
            match self.stream.next().await {
                Some(EngineEvent::Text(text)) => {
                    return Some(data(&self.envelope.chunk(Some(&text), false, None)));
                }
                Some(EngineEvent::Done(c)) => {
                    self.record.completed(&c);
                    let finish = c.finish_reason.api_name();
                    self.pending
                        .push_back(data(&self.envelope.chunk(None, false, Some(finish))));
                    if self.include_usage {
                        self.pending.push_back(data(&self.envelope.usage_chunk(&c)));
                    }
                    self.pending.push_back(Event::default().data("[DONE]"));
                    self.finished = true;
                }
                Some(EngineEvent::Failed(err)) => self.fail(ApiError::from(err)),
                None => self.fail(ApiError::internal(
                    "the engine ended the request without an answer",
                )),
            }
        }
    }

    fn fail(&mut self, err: ApiError) {
        self.record.failed(&err.message);
        self.pending.push_back(data(&err.body()));
        self.finished = true;
    }
}

/// The streamed response of a submitted request.
pub fn respond(
    envelope: Envelope,
    stream: ResponseStream,
    include_usage: bool,
    record: Arc<RequestRecord>,
    inflight: Inflight,
) -> Response {
    let mut pending = VecDeque::new();
    if envelope.kind == Kind::Chat {
        pending.push_back(data(&envelope.chunk(Some(""), true, None)));
    }
    let events = Events {
        envelope,
        stream,
        include_usage,
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
