//! A conversation's state on one llama.cpp context: the tokens whose keys and values are in the
//! KV cache, prompt evaluation that reuses the longest common prefix, and generation as a
//! stream of UTF-8-safe text pieces.

use std::time::{Duration, Instant};

use crate::cancel::CancelToken;
use crate::error::GenerateError;
use crate::ffi::{Batch, Context, DecodeOutcome, SamplerChain, Token};
use crate::sampling::SamplingParams;
use crate::stop::StopMatcher;
use crate::utf8::Utf8Decoder;

/// The sequence id a single-conversation session uses.
const SEQ: i32 = 0;

/// Options for one answer.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    /// How tokens are chosen.
    pub sampling: SamplingParams,
    /// Most tokens to generate; `None` runs until the model ends its turn or the context fills.
    pub max_tokens: Option<usize>,
    /// Generation ends before any of these strings would be shown.
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens (for benchmarks, like llama.cpp's
    /// `--ignore-eos`).
    pub ignore_eos: bool,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// A stop string appeared.
    StopString,
    /// The token limit was reached.
    Length,
    /// The context is full: no room for another token.
    ContextFull,
    /// The cancel token fired.
    Cancelled,
}

impl FinishReason {
    /// The OpenAI-style name: `stop`, `length` or `cancelled`.
    pub fn api_name(self) -> &'static str {
        match self {
            FinishReason::EndOfGeneration | FinishReason::StopString => "stop",
            FinishReason::Length | FinishReason::ContextFull => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// What evaluating a prompt cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PromptStats {
    /// Tokens in the whole prompt.
    pub n_prompt: usize,
    /// Leading tokens already in the KV cache from earlier turns, not evaluated again.
    pub n_reused: usize,
    /// Tokens evaluated now.
    pub n_evaluated: usize,
    /// Time spent evaluating.
    #[serde(skip)]
    pub duration: Duration,
    /// Whether evaluation was cancelled part-way.
    pub cancelled: bool,
}

/// Figures of one generation.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GenerationStats {
    /// Prompt evaluation.
    pub prompt: PromptStats,
    /// Tokens generated.
    pub n_generated: usize,
    /// From the start of prompt evaluation to the first generated token.
    #[serde(skip)]
    pub time_to_first_token: Option<Duration>,
    /// Time spent generating (after the prompt).
    #[serde(skip)]
    pub generation_time: Duration,
    /// Why it ended (set once the stream is exhausted).
    pub finish_reason: Option<FinishReason>,
}

/// A conversation bound to a context.
#[derive(Debug)]
pub struct Session {
    ctx: Context,
    batch: Batch,
    tokens: Vec<Token>,
}

impl Session {
    /// A session with an empty KV cache.
    pub fn new(ctx: Context) -> Session {
        let batch = Batch::new(ctx.n_batch() as usize);
        Session {
            ctx,
            batch,
            tokens: Vec::new(),
        }
    }

    /// The context.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Tokens currently held in the KV cache, in order.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// Context capacity in tokens.
    pub fn n_ctx(&self) -> usize {
        self.ctx.n_ctx() as usize
    }

    /// Cancels the current or next evaluation; reset at the start of each [`generate`](Self::generate).
    pub fn cancel_token(&self) -> CancelToken {
        self.ctx.cancel_token().clone()
    }

    /// Saves the KV cache and tokens to `path` (atomically), with `extra` bytes of the caller's.
    pub fn save_state(
        &mut self,
        path: &std::path::Path,
        extra: &[u8],
    ) -> Result<usize, crate::state_file::StateFileError> {
        let (k, v) = self.ctx.cache_types();
        let identity = crate::state_file::model_identity(self.ctx.model(), k, v);
        let state = self.ctx.seq_state(SEQ);
        crate::state_file::write_state(path, &identity, &self.tokens, extra, &state)?;
        Ok(self.tokens.len())
    }

    /// Replaces the conversation with the one saved at `path`; returns the caller's extra
    /// bytes. A file saved for another model or cache type is refused, and the session is
    /// left empty if llama.cpp rejects the state.
    pub fn load_state(
        &mut self,
        path: &std::path::Path,
    ) -> Result<Vec<u8>, crate::state_file::StateFileError> {
        let (k, v) = self.ctx.cache_types();
        let identity = crate::state_file::model_identity(self.ctx.model(), k, v);
        let file = crate::state_file::read_state(path, &identity)?;
        if file.tokens.len() >= self.n_ctx() {
            return Err(crate::state_file::StateFileError::Malformed {
                path: path.to_path_buf(),
            });
        }
        self.reset();
        if !self.ctx.set_seq_state(SEQ, &file.state) {
            self.reset();
            return Err(crate::state_file::StateFileError::Malformed {
                path: path.to_path_buf(),
            });
        }
        self.tokens = file.tokens;
        Ok(file.extra)
    }

    /// Forgets the conversation and empties the KV cache.
    pub fn reset(&mut self) {
        self.ctx.kv_clear();
        self.tokens.clear();
    }

    /// Brings the KV cache to hold exactly `prompt`, evaluating only what differs from what it
    /// holds now (the longest common prefix is kept). Afterwards the logits of the prompt's
    /// last token are ready for sampling.
    pub fn feed_prompt(&mut self, prompt: &[Token]) -> Result<PromptStats, GenerateError> {
        let start = Instant::now();
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        let n_ctx = self.n_ctx();
        if prompt.len() >= n_ctx {
            return Err(GenerateError::PromptTooLong {
                n_prompt: prompt.len(),
                n_ctx,
            });
        }
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        // Evaluate at least the last token, so there are logits to sample from.
        let keep = common.min(prompt.len() - 1);
        if keep < self.tokens.len() && !self.ctx.kv_remove(SEQ, keep as i32, -1) {
            // This cache cannot drop a partial range: start over.
            self.reset();
        }
        let keep = keep.min(self.tokens.len());
        self.tokens.truncate(keep);
        let new = &prompt[keep..];
        let (done, outcome) = self
            .ctx
            .decode_tokens(&mut self.batch, new, keep as i32, SEQ);
        let mut stats = PromptStats {
            n_prompt: prompt.len(),
            n_reused: keep,
            n_evaluated: new.len(),
            duration: Duration::ZERO,
            cancelled: false,
        };
        match outcome {
            DecodeOutcome::Done => self.tokens.extend_from_slice(new),
            other => {
                self.tokens.extend_from_slice(&new[..done]);
                self.resync_with_cache();
                match other {
                    DecodeOutcome::Aborted => stats.cancelled = true,
                    DecodeOutcome::NoKvSlot => {
                        return Err(GenerateError::NoKvSlot {
                            n_tokens: new.len() - done,
                            pos: keep + done,
                        })
                    }
                    _ => {
                        return Err(GenerateError::Decode {
                            code: code_of(other),
                            pos: keep + done,
                        })
                    }
                }
            }
        }
        stats.duration = start.elapsed();
        Ok(stats)
    }

    /// After an aborted or failed decode, trims the token list to what the cache really holds.
    fn resync_with_cache(&mut self) {
        let held = (self.ctx.kv_pos_max(SEQ) + 1).max(0) as usize;
        if held < self.tokens.len() {
            self.tokens.truncate(held);
        }
        self.ctx.kv_remove(SEQ, self.tokens.len() as i32, -1);
    }

    /// Evaluates `prompt` (reusing the common prefix) and returns the answer as a stream of
    /// text pieces. Each piece is valid UTF-8; stop strings are never part of it.
    pub fn generate(
        &mut self,
        prompt: &[Token],
        options: &GenerateOptions,
    ) -> Result<Generation<'_>, GenerateError> {
        let started = Instant::now();
        self.ctx.cancel_token().reset();
        let prompt_stats = self.feed_prompt(prompt)?;
        let mut sampler = SamplerChain::new(&options.sampling, self.ctx.model().n_vocab());
        let last_n = match options.sampling.repeat_last_n {
            n if n < 0 => self.tokens.len(),
            n => n as usize,
        };
        for &t in &self.tokens[self.tokens.len().saturating_sub(last_n)..] {
            sampler.accept(t);
        }
        let finish = prompt_stats.cancelled.then_some(FinishReason::Cancelled);
        Ok(Generation {
            session: self,
            sampler,
            utf8: Utf8Decoder::new(),
            stop: StopMatcher::new(&options.stop),
            max_tokens: options.max_tokens,
            ignore_eos: options.ignore_eos,
            started,
            generation_started: Instant::now(),
            stats: GenerationStats {
                prompt: prompt_stats,
                ..GenerationStats::default()
            },
            finish,
            flushed: false,
        })
    }
}

fn code_of(outcome: DecodeOutcome) -> i32 {
    match outcome {
        DecodeOutcome::Done => 0,
        DecodeOutcome::NoKvSlot => 1,
        DecodeOutcome::Aborted => 2,
        DecodeOutcome::Failed(code) => code,
    }
}

/// An answer being generated; iterate it for text pieces.
#[derive(Debug)]
pub struct Generation<'s> {
    session: &'s mut Session,
    sampler: SamplerChain,
    utf8: Utf8Decoder,
    stop: StopMatcher,
    max_tokens: Option<usize>,
    ignore_eos: bool,
    started: Instant,
    generation_started: Instant,
    stats: GenerationStats,
    finish: Option<FinishReason>,
    flushed: bool,
}

impl Generation<'_> {
    /// Figures so far; `finish_reason` is set once the stream is exhausted.
    pub fn stats(&self) -> GenerationStats {
        let mut stats = self.stats.clone();
        stats.finish_reason = self.finish;
        stats
    }

    /// Why generation ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// Runs to the end, returning the whole text and the figures.
    pub fn collect_text(mut self) -> Result<(String, GenerationStats), GenerateError> {
        let mut text = String::new();
        for piece in self.by_ref() {
            text.push_str(&piece?);
        }
        Ok((text, self.stats()))
    }

    fn end(&mut self, reason: FinishReason) {
        self.finish = Some(reason);
        self.stats.generation_time = self.generation_started.elapsed();
    }

    /// Produces the next token's text (possibly empty while characters or stop strings are
    /// incomplete), or ends the generation.
    fn step(&mut self) -> Result<String, GenerateError> {
        let session = &mut *self.session;
        if session.ctx.cancel_token().is_cancelled() {
            self.end(FinishReason::Cancelled);
            return Ok(String::new());
        }
        if self
            .max_tokens
            .is_some_and(|max| self.stats.n_generated >= max)
        {
            self.end(FinishReason::Length);
            return Ok(String::new());
        }
        let token = self.sampler.sample(&session.ctx, -1);
        let model = session.ctx.model().clone();
        if !self.ignore_eos && model.is_end_of_generation(token) {
            self.end(FinishReason::EndOfGeneration);
            return Ok(String::new());
        }
        self.stats.n_generated += 1;
        if self.stats.time_to_first_token.is_none() {
            self.stats.time_to_first_token = Some(self.started.elapsed());
        }
        let text = self.utf8.push(&model.token_to_piece(token, false));
        let check = self.stop.push(&text);
        if check.stopped {
            self.end(FinishReason::StopString);
            return Ok(check.emit);
        }
        if self
            .max_tokens
            .is_some_and(|max| self.stats.n_generated >= max)
        {
            self.end(FinishReason::Length);
            return Ok(check.emit);
        }
        if session.tokens.len() + 1 > session.n_ctx() {
            self.end(FinishReason::ContextFull);
            return Ok(check.emit);
        }
        let pos = session.tokens.len();
        let (_, outcome) = session
            .ctx
            .decode_tokens(&mut session.batch, &[token], pos as i32, SEQ);
        match outcome {
            DecodeOutcome::Done => session.tokens.push(token),
            DecodeOutcome::Aborted => {
                session.resync_with_cache();
                self.end(FinishReason::Cancelled);
            }
            DecodeOutcome::NoKvSlot => {
                session.resync_with_cache();
                self.end(FinishReason::ContextFull);
            }
            DecodeOutcome::Failed(code) => {
                session.resync_with_cache();
                self.end(FinishReason::Cancelled);
                return Err(GenerateError::Decode { code, pos });
            }
        }
        Ok(check.emit)
    }
}

impl Iterator for Generation<'_> {
    type Item = Result<String, GenerateError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.finish.is_some() {
                if self.flushed {
                    return None;
                }
                self.flushed = true;
                let mut rest = self.utf8.finish();
                if self.finish != Some(FinishReason::StopString) {
                    rest = self.stop.push(&rest).emit + &self.stop.finish();
                }
                return (!rest.is_empty()).then_some(Ok(rest));
            }
            match self.step() {
                Ok(piece) if piece.is_empty() => continue,
                other => return Some(other),
            }
        }
    }
}
