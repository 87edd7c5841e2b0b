//! One conversation, as `prompt` and `chat` hold it: a thin facade over an [`Engine`] with one
//! sequence, so the terminal runs on the same generation loop as the server (sampling, stop
//! strings, cancellation, prefix reuse and session files exist once, in the engine). Each turn
//! sends the whole conversation; the engine evaluates only what differs from what the sequence
//! holds, and streams the answer as UTF-8-safe text pieces.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::cancel::CancelToken;
use crate::engine::{Completion, Engine, EngineEvent, EngineRequest, ResponseStream, SubmitError};
use crate::error::GenerateError;
use crate::ffi::{Model, Token};
use crate::sampling::SamplingParams;
use crate::state_file::StateFileError;

/// The sequence a session's conversation lives in.
const SEQ: u32 = 0;

/// Options for one answer.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    /// How tokens are chosen.
    pub sampling: SamplingParams,
    /// Most tokens to generate; `None` runs until the model ends its turn or the context fills.
    pub max_tokens: Option<usize>,
    /// Generation ends before any of these strings would be shown.
    pub stop: Vec<String>,
    /// Generation ends after any of these strings, which are shown (llama.cpp's reverse
    /// prompts, `-r`).
    pub reverse_prompts: Vec<String>,
    /// Keep generating past end-of-generation tokens (for benchmarks, like llama.cpp's
    /// `--ignore-eos`).
    pub ignore_eos: bool,
    /// The grammar the answer is held to (checked beforehand: see [`crate::grammar`]).
    pub grammar: Option<crate::grammar::GrammarSpec>,
    /// Added to these tokens' logits before sampling (OpenAI's `logit_bias`; -infinity bans).
    pub logit_bias: Vec<(Token, f32)>,
    /// With each generated token, send its log-probability and those of the `n_probs` most
    /// likely tokens ([`crate::engine::EngineEvent::Logprobs`]); 0 sends none.
    pub n_probs: usize,
    /// Send [`crate::engine::EngineEvent::Progress`] while the prompt is evaluated: with its
    /// first chunk a report of the reused tokens only, then one after each chunk
    /// (llama-server's `return_progress`).
    pub prompt_progress: bool,
    /// Send [`crate::engine::EngineEvent::Progress`] before each generated token's text, with
    /// the figures so far (llama-server's `timings_per_token`).
    pub token_progress: bool,
    /// Report the probabilities after the sampler chain instead (llama-server's
    /// `post_sampling_probs`): the candidates the chain left, most likely first, and
    /// `logprob` the log of their probability under the distribution the token was drawn from.
    pub post_sampling_probs: bool,
    /// Evaluate the whole prompt again, reusing no cached prefix (llama-server's
    /// `cache_prompt: false`): the answer does not depend on what the cache held.
    pub fresh_prompt: bool,
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

/// A conversation on a one-sequence engine.
#[derive(Debug)]
pub struct Session {
    engine: Engine,
    cancel: CancelToken,
}

impl Session {
    /// A session on `engine`, whose sequence 0 holds the conversation.
    pub fn new(engine: Engine) -> Session {
        Session {
            engine,
            cancel: CancelToken::new(),
        }
    }

    /// A session on a new one-sequence engine over `model`, sized as `params` describes (its
    /// context, batch sizes, threads, flash attention and cache types).
    pub fn start(
        model: Arc<Model>,
        params: &crate::ffi::ContextParams,
    ) -> Result<Session, crate::engine::EngineError> {
        let start = |message: String| crate::engine::EngineError::Start { message };
        let gguf = crate::gguf::GgufModel::open(model.path()).map_err(|e| start(e.to_string()))?;
        let cache = crate::ModelCacheSpec::from_gguf(&gguf).map_err(|e| start(e.to_string()))?;
        let mut config = crate::engine::EngineConfig::for_context(params, 1, &cache)
            .map_err(|e| start(e.to_string()))?;
        config.model_fingerprint = gguf.fingerprint().ok();
        Ok(Session::new(Engine::start(model, &cache, config)?))
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        self.engine.model()
    }

    /// Tokens the KV cache holds for the conversation, in order.
    pub fn tokens(&self) -> Vec<Token> {
        self.engine.sequence_tokens(SEQ)
    }

    /// Most tokens the conversation may hold.
    pub fn n_ctx(&self) -> usize {
        self.engine.max_tokens_per_request()
    }

    /// Cancels the current or next answer (also a prompt being evaluated, within one graph
    /// node); re-armed at the start of each [`generate`](Self::generate).
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Saves the conversation (tokens and KV cache) to `path`, atomically, with `extra` bytes
    /// of the caller's. Returns the number of tokens saved.
    pub fn save_state(&mut self, path: &Path, extra: &[u8]) -> Result<usize, StateFileError> {
        self.engine.save_sequence(SEQ, path, extra)
    }

    /// Replaces the conversation with the one saved at `path`; returns the caller's extra
    /// bytes. A file saved for another model or cache type is refused, and the session is
    /// left empty if llama.cpp rejects the state.
    pub fn load_state(&mut self, path: &Path) -> Result<Vec<u8>, StateFileError> {
        self.engine.load_sequence(SEQ, path).map(|(extra, _)| extra)
    }

    /// Forgets the conversation and empties its KV cache.
    pub fn reset(&mut self) {
        self.engine.clear_sequence(SEQ);
    }

    /// Brings the KV cache to hold `prompt` without generating (what `--prompt-cache` saves):
    /// only what differs from what it holds now is evaluated.
    pub fn feed_prompt(&mut self, prompt: &[Token]) -> Result<PromptStats, GenerateError> {
        let options = GenerateOptions {
            max_tokens: Some(0),
            ..GenerateOptions::default()
        };
        let mut generation = self.generate(prompt, &options)?;
        for piece in generation.by_ref() {
            piece?;
        }
        Ok(generation.stats().prompt)
    }

    /// Sends `prompt` (the whole conversation so far) and returns the answer as a stream of
    /// text pieces. Each piece is valid UTF-8; stop strings are never part of it.
    pub fn generate(
        &mut self,
        prompt: &[Token],
        options: &GenerateOptions,
    ) -> Result<Generation<'_>, GenerateError> {
        self.cancel.reset();
        let stream = self
            .engine
            .submit(EngineRequest {
                prompt: prompt.to_vec(),
                options: options.clone(),
                cancel: self.cancel.clone(),
            })
            .map_err(|err| match err {
                SubmitError::EmptyPrompt => GenerateError::EmptyPrompt,
                SubmitError::TooLarge { max, .. } => GenerateError::PromptTooLong {
                    n_prompt: prompt.len(),
                    n_ctx: max,
                },
                other => GenerateError::Engine(other.to_string()),
            })?;
        Ok(Generation {
            _session: self,
            stream: Some(stream),
            n_prompt: prompt.len(),
            stats: GenerationStats::default(),
        })
    }
}

/// An answer being generated; iterate it for text pieces.
#[derive(Debug)]
pub struct Generation<'s> {
    _session: &'s mut Session,
    stream: Option<ResponseStream>,
    n_prompt: usize,
    stats: GenerationStats,
}

impl Generation<'_> {
    /// Figures so far; `finish_reason` is set once the stream is exhausted.
    pub fn stats(&self) -> GenerationStats {
        self.stats.clone()
    }

    /// Why generation ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.stats.finish_reason
    }

    /// Runs to the end, returning the whole text and the figures.
    pub fn collect_text(mut self) -> Result<(String, GenerationStats), GenerateError> {
        let mut text = String::new();
        for piece in self.by_ref() {
            text.push_str(&piece?);
        }
        Ok((text, self.stats()))
    }

    fn finish(&mut self, c: &Completion) {
        let evaluated = c.prompt_tokens.saturating_sub(c.cached_tokens);
        self.stats = GenerationStats {
            prompt: PromptStats {
                n_prompt: c.prompt_tokens,
                n_reused: c.cached_tokens,
                n_evaluated: evaluated,
                duration: c.prompt_time,
                cancelled: c.finish_reason == FinishReason::Cancelled && c.completion_tokens == 0,
            },
            n_generated: c.completion_tokens,
            time_to_first_token: c.time_to_first_token,
            generation_time: c.generation_time,
            finish_reason: Some(c.finish_reason),
        };
    }
}

impl Iterator for Generation<'_> {
    type Item = Result<String, GenerateError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let event = self.stream.as_mut()?.blocking_next();
            match event {
                Some(EngineEvent::Text(text)) if text.is_empty() => continue,
                Some(EngineEvent::Text(text)) => return Some(Ok(text)),
                Some(EngineEvent::Logprobs(_) | EngineEvent::Progress(_)) => continue,
                Some(EngineEvent::Done(completion)) => {
                    self.finish(&completion);
                    self.stream = None;
                    return None;
                }
                Some(EngineEvent::Failed(err)) => {
                    self.stream = None;
                    self.stats.finish_reason = Some(FinishReason::Cancelled);
                    return Some(Err(GenerateError::Engine(err.to_string())));
                }
                None => {
                    self.stream = None;
                    if self.stats.finish_reason.is_none() {
                        self.stats.prompt.n_prompt = self.n_prompt;
                        self.stats.finish_reason = Some(FinishReason::Cancelled);
                    }
                    return None;
                }
            }
        }
    }
}
