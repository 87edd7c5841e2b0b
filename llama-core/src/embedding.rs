//! Embeddings and rerank scores: a llama.cpp context created with embeddings on
//! ([`crate::ffi::Context::for_embeddings`]) and the pooling the model's metadata names, or
//! one chosen ([`Pooling`], `--pooling`). [`Embedder`] packs several inputs into one decode
//! (one sequence each, every token an output), reads each sequence's pooled vector (or, without
//! pooling, one per token), clears the cache and goes on. Pooled vectors are L2-normalised, as
//! OpenAI's embeddings are; a rank-pooling model (a reranker) gives one score per input.
//!
//! The context is planned through the run path with one output per batch token
//! ([`crate::run::prepare_with_outputs`]), so `--max-mem` counts the output buffer.

use std::sync::Arc;

use crate::ffi::{Batch, Context, ContextParams, DecodeOutcome, Model, Token};

/// How the vectors of a sequence's tokens become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// As the model's metadata says (`<arch>.pooling_type`).
    #[default]
    Model,
    /// No pooling: one vector per token.
    None,
    /// The mean over the tokens.
    Mean,
    /// The first token's (BERT's CLS).
    Cls,
    /// The last token's.
    Last,
    /// A reranker's classification head: scores per sequence.
    Rank,
}

impl Pooling {
    /// llama.cpp's name (`mean`, `cls`, ...; `model` for the metadata's choice).
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Model => "model",
            Pooling::None => "none",
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Last => "last",
            Pooling::Rank => "rank",
        }
    }
}

impl std::str::FromStr for Pooling {
    type Err = String;

    fn from_str(s: &str) -> Result<Pooling, String> {
        Ok(match s {
            "none" => Pooling::None,
            "mean" => Pooling::Mean,
            "cls" => Pooling::Cls,
            "last" => Pooling::Last,
            "rank" => Pooling::Rank,
            "model" | "unspecified" => Pooling::Model,
            other => {
                return Err(format!(
                    "unknown pooling {other:?}: expected none, mean, cls, last or rank"
                ))
            }
        })
    }
}

/// Why embeddings could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedError {
    /// An input holds no tokens.
    #[error("input {index} is empty")]
    Empty {
        /// Which input.
        index: usize,
    },
    /// An input is longer than one decode can hold.
    #[error("input {index} has {tokens} tokens, more than the {max} one micro-batch holds (--ubatch-size; --ctx-size for `embed`)")]
    TooLong {
        /// Which input.
        index: usize,
        /// Its tokens.
        tokens: usize,
        /// The most that fit.
        max: usize,
    },
    /// llama.cpp could not decode.
    #[error("decoding failed ({0:?})")]
    Decode(DecodeOutcome),
    /// llama.cpp produced no vector for an input.
    #[error("llama.cpp returned no embedding for input {index}")]
    Missing {
        /// Which input.
        index: usize,
    },
    /// Scores were asked of a model without rank pooling, or vectors of a reranker.
    #[error("{0}")]
    WrongPooling(String),
}

/// Scales `v` to unit Euclidean length (left as it is when it is all zeros).
pub fn normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

/// The cosine similarity of two vectors of the same length.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na * nb)) as f32
    }
}

/// One input's result: one vector when pooled, one per token otherwise.
pub type Vectors = Vec<Vec<f32>>;

/// Computes embeddings on its own context.
pub struct Embedder {
    ctx: Context,
    batch: Batch,
    n_seq: usize,
    max_tokens: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("pooling", &self.pooling())
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

/// How the embeddings context next to a generating engine (`serve --embeddings`) is made:
/// `n_seq` inputs per decode, each of up to `max_tokens` tokens (one micro-batch, which a
/// pooled input must fit, as llama-server asks of its `--ubatch-size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddingsContext {
    /// Tokens one input may have: the context, batch and micro-batch of the embeddings
    /// context.
    pub max_tokens: u32,
    /// Inputs decoded together.
    pub n_seq: u32,
    /// The pooling asked for (`Model`: the model's own).
    pub pooling: Pooling,
}

impl EmbeddingsContext {
    /// The context parameters [`Embedder::create`] is given for it, with `threads` and
    /// `threads_batch` for the two phases.
    pub fn params(&self, threads: i32, threads_batch: i32) -> ContextParams {
        let n = self.max_tokens.max(8);
        ContextParams {
            n_ctx: n,
            n_batch: n,
            n_ubatch: n,
            n_seq_max: self.n_seq.max(1),
            n_outputs_max: n,
            n_threads: threads,
            n_threads_batch: if threads_batch > 0 {
                threads_batch
            } else {
                threads
            },
            kv_unified: true,
            ..ContextParams::default()
        }
    }
}

impl Embedder {
    /// An embedder on `ctx`, a context made with [`Context::for_embeddings`] for `n_seq`
    /// sequences.
    pub fn new(ctx: Context, n_seq: u32) -> Embedder {
        // A pooled sequence must sit in one micro-batch; every token is an output.
        let max_tokens = (ctx.n_ubatch().min(ctx.n_batch()).min(ctx.n_ctx()) as usize).max(1);
        Embedder {
            batch: Batch::new(max_tokens),
            ctx,
            n_seq: n_seq.max(1) as usize,
            max_tokens,
        }
    }

    /// Creates the context on `model` for `params` (its `n_outputs_max` raised to the batch)
    /// with `pooling`.
    pub fn create(
        model: Arc<Model>,
        params: &ContextParams,
        pooling: Pooling,
    ) -> Result<Embedder, crate::error::ContextError> {
        // One pool of cells: any input may use the whole context.
        let params = ContextParams {
            n_ubatch: params.n_batch,
            n_outputs_max: params.n_batch,
            kv_unified: true,
            ..params.clone()
        };
        let ctx = Context::for_embeddings(model, &params, pooling)?;
        Ok(Embedder::new(ctx, params.n_seq_max))
    }

    /// The pooling the context applies (the model's when none was chosen).
    pub fn pooling(&self) -> Pooling {
        self.ctx.pooling()
    }

    /// Floats per vector.
    pub fn dimensions(&self) -> usize {
        self.ctx.n_embd_out()
    }

    /// Most tokens one input may have.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        self.ctx.model()
    }

    /// The vectors of each input: pooled ones L2-normalised when `normalize` is set (vectors
    /// of unpooled tokens are returned as they are, as llama-server does). Refused for a
    /// reranker ([`rank`](Self::rank) is its call).
    pub fn embed(
        &mut self,
        inputs: &[Vec<Token>],
        normalize: bool,
    ) -> Result<Vec<Vectors>, EmbedError> {
        if self.pooling() == Pooling::Rank {
            return Err(EmbedError::WrongPooling(
                "this model has rank pooling (a reranker): it scores, it does not embed".into(),
            ));
        }
        let pooled = self.pooling() != Pooling::None;
        let raw = self.run(inputs)?;
        Ok(raw
            .into_iter()
            .map(|mut vectors| {
                if pooled && normalize {
                    for v in &mut vectors {
                        self::normalize(v);
                    }
                }
                vectors
            })
            .collect())
    }

    /// One relevance score per input (a query and a document tokenized together), from a
    /// rank-pooling model.
    pub fn rank(&mut self, inputs: &[Vec<Token>]) -> Result<Vec<f32>, EmbedError> {
        if self.pooling() != Pooling::Rank {
            return Err(EmbedError::WrongPooling(format!(
                "reranking needs a model with rank pooling; this one pools {}",
                self.pooling().name()
            )));
        }
        let raw = self.run(inputs)?;
        Ok(raw
            .into_iter()
            .map(|v| v.first().and_then(|s| s.first()).copied().unwrap_or(-1e6))
            .collect())
    }

    /// Decodes the inputs, several per call, and reads their outputs.
    fn run(&mut self, inputs: &[Vec<Token>]) -> Result<Vec<Vectors>, EmbedError> {
        for (index, tokens) in inputs.iter().enumerate() {
            if tokens.is_empty() {
                return Err(EmbedError::Empty { index });
            }
            if tokens.len() > self.max_tokens {
                return Err(EmbedError::TooLong {
                    index,
                    tokens: tokens.len(),
                    max: self.max_tokens,
                });
            }
        }
        let pooled = self.pooling() != Pooling::None;
        let mut out = Vec::with_capacity(inputs.len());
        let mut start = 0;
        while start < inputs.len() {
            // As many whole inputs as fit the batch and the sequences.
            let mut end = start;
            let mut used = 0;
            while end < inputs.len()
                && end - start < self.n_seq
                && used + inputs[end].len() <= self.max_tokens
            {
                used += inputs[end].len();
                end += 1;
            }
            self.ctx.kv_clear();
            self.batch.clear();
            for (seq, tokens) in inputs[start..end].iter().enumerate() {
                for (pos, &t) in tokens.iter().enumerate() {
                    self.batch.push(t, pos as i32, seq as i32, true);
                }
            }
            match self.ctx.decode(&self.batch) {
                DecodeOutcome::Done => {}
                other => return Err(EmbedError::Decode(other)),
            }
            let mut row = 0i32;
            for (seq, tokens) in inputs[start..end].iter().enumerate() {
                let index = start + seq;
                if pooled {
                    let v = self
                        .ctx
                        .embeddings_seq(seq as i32)
                        .ok_or(EmbedError::Missing { index })?;
                    out.push(vec![v.to_vec()]);
                    row += tokens.len() as i32;
                } else {
                    let mut vectors = Vec::with_capacity(tokens.len());
                    for _ in tokens {
                        let v = self
                            .ctx
                            .embeddings_ith(row)
                            .ok_or(EmbedError::Missing { index })?;
                        vectors.push(v.to_vec());
                        row += 1;
                    }
                    out.push(vectors);
                }
            }
            start = end;
        }
        self.ctx.kv_clear();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_gives_unit_length() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut z = vec![0.0; 3];
        normalize(&mut z);
        assert_eq!(z, vec![0.0; 3]);
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
    }

    #[test]
    fn pooling_names_parse() {
        for p in ["none", "mean", "cls", "last", "rank"] {
            assert_eq!(p.parse::<Pooling>().unwrap().name(), p);
        }
        assert!("max".parse::<Pooling>().is_err());
    }
}
