//! A sequence slot of the engine's context: the tokens its KV holds, and the request it is
//! answering (if any) with that request's sampler, text decoding and consumer channel.

use std::time::Instant;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;

use super::{Completion, EngineEvent, Progress};
use crate::cancel::CancelToken;
use crate::ffi::{SamplerChain, Token};
use crate::session::FinishReason;
use crate::stop::StopMatcher;
use crate::utf8::Utf8Decoder;

/// Events one step may send a consumer: two prompt progress reports (before the first chunk
/// and after the last), a token's progress, log-probabilities, a text piece, the held-back
/// tail and the end.
pub(super) const EVENTS_PER_STEP: usize = 7;

/// What a slot is doing.
pub(super) enum Phase {
    /// No request: the KV (if any) is kept for reuse.
    Idle,
    /// Evaluating the prompt: `prompt[done..]` is still to be decoded.
    Prompt,
    /// Generating: `pending` was sampled and must be decoded next.
    Generate { pending: Token },
}

/// The request a slot is answering.
pub(super) struct Running {
    pub(super) prompt: Vec<Token>,
    /// The request's options, to queue it again if it is preempted.
    pub(super) options: crate::session::GenerateOptions,
    pub(super) sampler: SamplerChain,
    pub(super) utf8: Utf8Decoder,
    pub(super) stop: StopMatcher,
    pub(super) max_tokens: Option<usize>,
    pub(super) ignore_eos: bool,
    /// Greedy without penalties: pick the largest logit directly.
    pub(super) argmax: bool,
    /// Log-probabilities of this many alternatives go with each token (0: none).
    pub(super) n_probs: usize,
    /// The probabilities are those after the sampler chain (`post_sampling_probs`).
    pub(super) post_sampling: bool,
    pub(super) events: Sender<EngineEvent>,
    pub(super) cancel: CancelToken,
    pub(super) submitted: Instant,
    pub(super) first_token: Option<Instant>,
    pub(super) cached_tokens: usize,
    pub(super) generated: usize,
    /// When the first chunk of the prompt went into a batch.
    pub(super) prompt_started: Option<Instant>,
    /// When the prompt's last chunk was decoded (its logits ready).
    pub(super) prompt_done: Option<Instant>,
}

impl Running {
    /// Where the request stands; `processed` prompt tokens are in the cache.
    pub(super) fn progress_at(&self, processed: usize) -> Progress {
        Progress {
            prompt_tokens: self.prompt.len(),
            cached_tokens: self.cached_tokens,
            prompt_processed: processed,
            prompt_time: match (self.prompt_started, self.prompt_done) {
                // The report of the reused tokens stands before any prompt token is decoded.
                _ if processed <= self.cached_tokens => std::time::Duration::ZERO,
                (Some(start), Some(done)) => done - start,
                (Some(start), None) => start.elapsed(),
                _ => std::time::Duration::ZERO,
            },
            completion_tokens: self.generated,
            generation_time: self.prompt_done.map(|t| t.elapsed()).unwrap_or_default(),
        }
    }

    /// Where a generating request stands (its whole prompt evaluated).
    pub(super) fn progress(&self) -> Progress {
        self.progress_at(self.prompt.len())
    }
}

/// One sequence of the context.
pub(super) struct Slot {
    /// llama.cpp sequence id (also the pool's session id).
    pub(super) seq: i32,
    /// Tokens whose KV is in the cache for this sequence, in order.
    pub(super) tokens: Vec<Token>,
    pub(super) phase: Phase,
    pub(super) running: Option<Running>,
    /// When the slot last did work (for least-recently-used eviction).
    pub(super) last_used: Instant,
}

/// What happened to a sampled token.
pub(super) enum Step {
    /// Keep going: decode this token next.
    Continue(Token),
    /// The answer ended.
    Finished(FinishReason),
}

impl Slot {
    pub(super) fn new(seq: i32) -> Slot {
        Slot {
            seq,
            tokens: Vec::new(),
            phase: Phase::Idle,
            running: None,
            last_used: Instant::now(),
        }
    }

    pub(super) fn is_idle(&self) -> bool {
        self.running.is_none()
    }

    /// Whether the consumer can take this step's events (one text piece, the held-back tail and the end),
    /// so sending never blocks and never buffers without bound.
    pub(super) fn consumer_ready(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| r.events.capacity() >= EVENTS_PER_STEP)
    }

    /// Whether the request was cancelled or its consumer went away.
    pub(super) fn abandoned(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| r.cancel.is_cancelled() || r.events.is_closed())
    }

    /// Handles a sampled token: text out, stop strings, limits. `n_ctx_seq` bounds the tokens
    /// the sequence may hold, unless `can_shift` (the context will shift to make room).
    pub(super) fn accept_sample(
        &mut self,
        token: Token,
        is_eog: bool,
        piece: &[u8],
        probs: Option<super::TokenLogprobs>,
        n_ctx_seq: usize,
        can_shift: bool,
    ) -> Step {
        let Some(run) = self.running.as_mut() else {
            return Step::Finished(FinishReason::Cancelled);
        };
        if is_eog && !run.ignore_eos {
            return Step::Finished(FinishReason::EndOfGeneration);
        }
        if let Some(probs) = probs {
            if !send(&run.events, EngineEvent::Logprobs(probs)) {
                return Step::Finished(FinishReason::Cancelled);
            }
        }
        run.generated += 1;
        run.first_token.get_or_insert_with(Instant::now);
        if run.options.token_progress && !send(&run.events, EngineEvent::Progress(run.progress())) {
            return Step::Finished(FinishReason::Cancelled);
        }
        let text = run.utf8.push(piece);
        let check = run.stop.push(&text);
        if !check.emit.is_empty() && !send(&run.events, EngineEvent::Text(check.emit)) {
            return Step::Finished(FinishReason::Cancelled);
        }
        if check.stopped {
            return Step::Finished(FinishReason::StopString);
        }
        if run.max_tokens.is_some_and(|m| run.generated >= m) {
            return Step::Finished(FinishReason::Length);
        }
        if self.tokens.len() + 1 > n_ctx_seq && !can_shift {
            return Step::Finished(FinishReason::ContextFull);
        }
        Step::Continue(token)
    }

    /// Ends the request: flushes held text, sends the completion, leaves the KV for reuse.
    /// Returns the completion (for the engine's counters) and what could not be delivered yet
    /// (a consumer whose channel is full): the scheduler delivers that later, so a final event
    /// is never lost.
    pub(super) fn finish(&mut self, reason: FinishReason) -> Option<(Completion, Undelivered)> {
        let mut run = self.running.take()?;
        self.phase = Phase::Idle;
        self.last_used = Instant::now();
        let mut events = Vec::new();
        if reason != FinishReason::StopString && reason != FinishReason::Cancelled {
            let rest = run.utf8.finish();
            let check = run.stop.push(&rest);
            let tail = check.emit + &run.stop.finish();
            if !tail.is_empty() {
                events.push(EngineEvent::Text(tail));
            }
        }
        let completion = Completion {
            finish_reason: reason,
            prompt_tokens: run.prompt.len(),
            cached_tokens: run.cached_tokens,
            completion_tokens: run.generated,
            time_to_first_token: run.first_token.map(|t| t - run.submitted),
            total_time: run.submitted.elapsed(),
            prompt_time: match (run.prompt_started, run.prompt_done) {
                (Some(start), Some(done)) => done - start,
                _ => std::time::Duration::ZERO,
            },
            generation_time: run.prompt_done.map(|t| t.elapsed()).unwrap_or_default(),
        };
        events.push(EngineEvent::Done(completion.clone()));
        let undelivered = Undelivered::send(run.events, events);
        Some((completion, undelivered))
    }
}

/// Events a consumer's full channel could not take yet, kept for a later attempt.
pub(super) struct Undelivered {
    pub(super) events: Sender<EngineEvent>,
    pub(super) pending: std::collections::VecDeque<EngineEvent>,
}

impl Undelivered {
    /// Sends `events` in order as far as the channel takes them; the rest stay pending.
    pub(super) fn send(events: Sender<EngineEvent>, pending: Vec<EngineEvent>) -> Undelivered {
        let mut u = Undelivered {
            events,
            pending: pending.into(),
        };
        u.flush();
        u
    }

    /// Sends what it can. True when nothing is left to send (all sent, or the consumer is gone).
    pub(super) fn flush(&mut self) -> bool {
        while let Some(event) = self.pending.pop_front() {
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.pending.push_front(event);
                    return false;
                }
                Err(TrySendError::Closed(_)) => {
                    self.pending.clear();
                    return true;
                }
            }
        }
        true
    }
}

/// Sends a piece of text without waiting; false when the consumer is gone. A full channel
/// does not happen here: slots are only stepped when their consumer has room for a step's
/// events ([`Slot::consumer_ready`]).
fn send(events: &Sender<EngineEvent>, event: EngineEvent) -> bool {
    !matches!(events.try_send(event), Err(TrySendError::Closed(_)))
}
