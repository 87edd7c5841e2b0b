//! Perplexity as llama.cpp's `llama-perplexity` computes it, so the figures compare:
//!
//! - the text is tokenized with the model's special tokens (a BOS where the model adds one)
//!   and cut into `n_chunk = n_tokens / n_ctx` chunks of `n_ctx` tokens (at least two);
//! - each chunk is evaluated from an empty KV cache with its first token replaced by BOS
//!   (when the model adds one); `n_batch / n_ctx` chunks are decoded together, one sequence
//!   each, and a chunk longer than the batch is decoded in pieces of `n_batch`;
//! - only the second half of each chunk is scored: the logits at positions `n_ctx / 2` to
//!   `n_ctx - 2` predict the next token, so every prediction sees at least half a context;
//! - the perplexity is `exp` of the mean negative log-likelihood, with llama.cpp's uncertainty
//!   (standard error of the mean, times the perplexity).
//!
//! With a base file ([`logits_file`], llama.cpp's format), the same chunks are scored against
//! the base model's saved log-probabilities instead: KL divergence and the other statistics of
//! `--kl-divergence` ([`kl`]). [`prepare`] plans the context through the run path
//! ([`crate::run::prepare_with_outputs`]) under `--max-mem` before anything is allocated.

pub mod kl;
pub mod logits_file;
pub mod score;

use serde::Serialize;

use self::kl::{KlStats, KlSummary};
use self::logits_file::{scored_per_chunk, LogitsFileError, LogitsReader, LogitsWriter};
use self::score::encoded_row_len;
use crate::error::TokenizeError;
use crate::ffi::{Batch, Context, DecodeOutcome, Token};
use crate::planner::PlanError;
use crate::run::{Prepared, RunError, RunSettings};

/// Why perplexity could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum PerplexityError {
    /// The context is too small to score anything.
    #[error("perplexity needs --ctx-size of at least 4 tokens, got {n_ctx}")]
    ContextTooSmall {
        /// The context asked for.
        n_ctx: u32,
    },
    /// The text is shorter than two contexts.
    #[error("the text has {n_tokens} tokens, but perplexity with --ctx-size {n_ctx} needs at least {needed} (two contexts); use a longer text or a smaller --ctx-size")]
    TooShort {
        /// Tokens in the text.
        n_tokens: usize,
        /// The context.
        n_ctx: u32,
        /// Tokens needed.
        needed: usize,
    },
    /// The budget cannot hold one chunk's context.
    #[error("--max-mem {} leaves room for a context of {fits} tokens, but perplexity scores chunks of exactly --ctx-size {n_ctx}; raise --max-mem, or lower --ctx-size (figures for other context sizes differ)", crate::ByteSize(*budget))]
    ContextDoesNotFit {
        /// The context asked for.
        n_ctx: u32,
        /// The largest context the plan found.
        fits: u32,
        /// The budget.
        budget: u64,
    },
    /// The run could not be prepared or the model loaded.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The text could not be tokenized.
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// The base file could not be read or written.
    #[error(transparent)]
    LogitsFile(#[from] LogitsFileError),
    /// The base file is for another vocabulary.
    #[error("the base file was computed with a vocabulary of {file} tokens, this model has {model}: compare models of the same family")]
    VocabMismatch {
        /// The file's vocabulary size.
        file: u32,
        /// The model's.
        model: u32,
    },
    /// A decode call failed.
    #[error("decoding chunk {chunk} failed ({outcome})")]
    Decode {
        /// The chunk (1-based).
        chunk: usize,
        /// What llama.cpp returned.
        outcome: String,
    },
    /// llama.cpp returned no logits where it was asked for them.
    #[error("llama.cpp returned no logits for position {pos} of chunk {chunk}")]
    NoLogits {
        /// The chunk (1-based).
        chunk: usize,
        /// The position.
        pos: u32,
    },
}

/// How the tokens are cut and decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Chunking {
    /// Tokens per chunk (`--ctx-size`).
    pub n_ctx: u32,
    /// Tokens per decode call.
    pub n_batch: u32,
    /// Chunks decoded together, one sequence each.
    pub n_seq: u32,
    /// Chunks scored.
    pub n_chunk: usize,
}

/// llama-perplexity's chunks per decode for `--ctx-size n_ctx` and `--batch-size n_batch`.
pub fn sequences_for(n_ctx: u32, n_batch: u32) -> u32 {
    (n_batch / n_ctx.max(1)).max(1)
}

impl Chunking {
    /// The chunking of `n_tokens` tokens (at most `max_chunks` chunks) with `n_seq` chunks of
    /// `n_ctx` decoded together in calls of at most `n_batch` tokens.
    pub fn new(
        n_tokens: usize,
        n_ctx: u32,
        n_batch: u32,
        n_seq: u32,
        max_chunks: Option<usize>,
    ) -> Result<Chunking, PerplexityError> {
        if n_ctx < 4 {
            return Err(PerplexityError::ContextTooSmall { n_ctx });
        }
        let needed = 2 * n_ctx as usize;
        if n_tokens < needed {
            return Err(PerplexityError::TooShort {
                n_tokens,
                n_ctx,
                needed,
            });
        }
        let all = n_tokens / n_ctx as usize;
        let n_seq = n_seq.max(1);
        Ok(Chunking {
            n_ctx,
            n_batch: n_batch.max(1).min(n_seq * n_ctx),
            n_seq,
            n_chunk: max_chunks.map_or(all, |m| m.clamp(1, all)),
        })
    }

    /// Positions scored per chunk.
    pub fn scored_per_chunk(&self) -> usize {
        scored_per_chunk(self.n_ctx)
    }

    /// The most logits rows one decode call produces.
    pub fn n_outputs_max(&self) -> u32 {
        self.n_seq * self.n_batch.min(self.n_ctx - self.n_ctx / 2)
    }
}

/// Plans the context of a perplexity run: `base` (model, budget, threads, cache types, ...)
/// with chunks of `n_ctx` tokens, `n_batch / n_ctx` of them per decode. When the budget cannot
/// hold them all at full context, one chunk at a time; when it cannot hold one, an error
/// (perplexity never shrinks the context: the figure would mean something else). Returns the
/// plan and the chunks per decode and the batch size it is for.
pub fn prepare(
    base: &RunSettings,
    n_ctx: u32,
    n_batch: u32,
) -> Result<(Prepared, u32, u32), PerplexityError> {
    if n_ctx < 4 {
        return Err(PerplexityError::ContextTooSmall { n_ctx });
    }
    let mut n_seq = sequences_for(n_ctx, n_batch);
    loop {
        let batch = n_batch.max(1).min(n_seq * n_ctx);
        let settings = RunSettings {
            ctx_size: n_ctx,
            n_seq,
            batch_size: batch,
            ubatch_size: base.ubatch_size.min(batch),
            ..base.clone()
        };
        let outputs = n_seq * batch.min(n_ctx - n_ctx / 2);
        let mut prepared = match crate::run::prepare_with_outputs(&settings, outputs) {
            // Fewer chunks per decode need less: try one at a time before refusing.
            Err(RunError::Plan(PlanError::DoesNotFit { .. }))
            | Err(RunError::StreamingDoesNotFit { .. })
                if n_seq > 1 =>
            {
                n_seq = 1;
                continue;
            }
            other => other?,
        };
        let per_seq = prepared.ctx_params.n_ctx / n_seq;
        if per_seq >= n_ctx {
            return Ok((prepared, n_seq, batch));
        }
        if n_seq > 1 {
            n_seq = 1;
            continue;
        }
        let budget = prepared.plan.take().map(|p| p.budget).unwrap_or(0);
        return Err(PerplexityError::ContextDoesNotFit {
            n_ctx,
            fits: per_seq,
            budget,
        });
    }
}

/// What is done with a llama.cpp base file.
#[derive(Debug)]
pub enum Base<'a> {
    /// Plain perplexity.
    None,
    /// Save every scored position's log-probabilities (`--kl-divergence-base` without
    /// `--kl-divergence`).
    Save(&'a mut LogitsWriter),
    /// Compare with the saved ones (`--kl-divergence`).
    Compare(&'a mut LogitsReader),
}

/// Progress after each chunk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkDone {
    /// Chunks done.
    pub chunk: usize,
    /// Chunks in all.
    pub n_chunk: usize,
    /// The perplexity over the chunks done.
    pub ppl: f64,
    /// The mean KL divergence so far (comparing with a base).
    pub kld: Option<f64>,
}

/// The result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerplexityResult {
    /// How the tokens were cut.
    pub chunking: Chunking,
    /// Positions scored.
    pub n_scored: u64,
    /// The perplexity.
    pub ppl: f64,
    /// Its uncertainty (one standard error), when there are enough positions.
    pub uncertainty: Option<f64>,
    /// The perplexity over the first `k` chunks, for every `k` (llama-perplexity's `[k]` list).
    pub running_ppl: Vec<f64>,
    /// The comparison with the base, with `--kl-divergence`.
    pub kl: Option<KlSummary>,
}

/// The sums of negative log-likelihoods.
#[derive(Debug, Clone, Copy, Default)]
struct Nll {
    sum: f64,
    sum2: f64,
    count: u64,
}

impl Nll {
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.sum2 += v * v;
        self.count += 1;
    }

    fn merge(&mut self, other: Nll) {
        self.sum += other.sum;
        self.sum2 += other.sum2;
        self.count += other.count;
    }

    fn ppl(&self) -> f64 {
        (self.sum / self.count.max(1) as f64).exp()
    }

    fn uncertainty(&self) -> Option<f64> {
        let n = self.count as f64;
        let mean = self.sum / n;
        let var = self.sum2 / n - mean * mean;
        (self.count > 1 && var > 0.0).then(|| (var / (n - 1.0)).sqrt() * mean.exp())
    }
}

/// One scored position: where its logits are in the batch, and which chunk it is in.
struct Row {
    batch_index: i32,
    seq: usize,
    pos: u32,
    next: Token,
}

/// What scoring one row gave.
enum Scored {
    Nll(f64),
    Encoded(f64, Vec<u16>),
    Compared(score::KlRow),
}

/// Evaluates `tokens` as `chunking` says on `ctx` (a context planned by [`prepare`]), scoring
/// with up to `threads` threads, calling `on_chunk` after each chunk.
pub fn evaluate(
    ctx: &mut Context,
    tokens: &[Token],
    chunking: &Chunking,
    mut base: Base<'_>,
    threads: usize,
    mut on_chunk: impl FnMut(&ChunkDone),
) -> Result<PerplexityResult, PerplexityError> {
    let model = ctx.model().clone();
    let n_vocab = model.n_vocab() as usize;
    let (add_bos, bos) = (model.adds_bos(), model.token_bos());
    let Chunking {
        n_ctx,
        n_batch,
        n_seq,
        n_chunk,
    } = *chunking;
    let first = n_ctx / 2;
    let num_batches = n_ctx.div_ceil(n_batch);
    let row_len = encoded_row_len(n_vocab);
    let threads = threads.max(1);
    // A decode holds n_seq whole chunks (n_batch = n_seq * n_ctx) or a piece of one chunk.
    let mut batch = Batch::new(n_batch as usize);
    let mut total = Nll::default();
    let mut kl = KlStats::default();
    let mut running = Vec::with_capacity(n_chunk);
    let mut base_rows: Vec<Vec<u16>> = Vec::new();
    let mut i = 0usize;
    while i < n_chunk {
        let n_seq_batch = (n_seq as usize).min(n_chunk - i);
        let start = i * n_ctx as usize;
        ctx.kv_clear();
        let mut per_seq = vec![Nll::default(); n_seq_batch];
        for j in 0..num_batches {
            let batch_pos = j * n_batch;
            let batch_size = (n_ctx - batch_pos).min(n_batch);
            batch.clear();
            let mut rows = Vec::new();
            for seq in 0..n_seq_batch {
                let seq_start = start + seq * n_ctx as usize;
                for k in 0..batch_size {
                    let pos = batch_pos + k;
                    let token = if add_bos && pos == 0 {
                        bos
                    } else {
                        tokens[seq_start + pos as usize]
                    };
                    let need = pos >= first;
                    if need && pos + 1 < n_ctx {
                        rows.push(Row {
                            batch_index: batch.len() as i32,
                            seq,
                            pos,
                            next: tokens[seq_start + pos as usize + 1],
                        });
                    }
                    batch.push(token, pos as i32, seq as i32, need);
                }
            }
            match ctx.decode(&batch) {
                DecodeOutcome::Done => {}
                other => {
                    return Err(PerplexityError::Decode {
                        chunk: i + 1,
                        outcome: format!("{other:?}"),
                    })
                }
            }
            for group in rows.chunks(threads) {
                let mut logits = Vec::with_capacity(group.len());
                for row in group {
                    logits.push(
                        ctx.logits(row.batch_index)
                            .ok_or(PerplexityError::NoLogits {
                                chunk: i + row.seq + 1,
                                pos: row.pos,
                            })?,
                    );
                }
                if let Base::Compare(reader) = &mut base {
                    base_rows.resize_with(group.len(), || vec![0u16; row_len]);
                    for r in base_rows.iter_mut().take(group.len()) {
                        reader.next_row(r)?;
                    }
                }
                let mode = &base;
                let scored: Vec<Scored> = std::thread::scope(|scope| {
                    let handles: Vec<_> = group
                        .iter()
                        .zip(&logits)
                        .enumerate()
                        .map(|(k, (row, l))| {
                            let base_row = base_rows.get(k);
                            let work = move || match mode {
                                Base::None => Scored::Nll(score::nll(l, row.next)),
                                Base::Save(_) => {
                                    let mut out = vec![0u16; row_len];
                                    let v = score::encode_row(l, row.next, &mut out);
                                    Scored::Encoded(v, out)
                                }
                                Base::Compare(_) => Scored::Compared(score::compare_row(
                                    l,
                                    base_row.map(Vec::as_slice).unwrap_or(&[]),
                                    row.next,
                                )),
                            };
                            if k + 1 == group.len() {
                                // The last row runs on this thread.
                                Err(work())
                            } else {
                                Ok(scope.spawn(work))
                            }
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| match h {
                            Ok(handle) => handle.join().unwrap_or(Scored::Nll(f64::NAN)),
                            Err(done) => done,
                        })
                        .collect()
                });
                for (row, s) in group.iter().zip(scored) {
                    match s {
                        Scored::Nll(v) => per_seq[row.seq].add(v),
                        Scored::Encoded(v, out) => {
                            per_seq[row.seq].add(v);
                            if let Base::Save(writer) = &mut base {
                                writer.write_row(&out)?;
                            }
                        }
                        Scored::Compared(k) => {
                            per_seq[row.seq].add(f64::from(k.nll));
                            kl.add(&k);
                        }
                    }
                }
            }
        }
        for (seq, nll) in per_seq.into_iter().enumerate() {
            total.merge(nll);
            running.push(total.ppl());
            on_chunk(&ChunkDone {
                chunk: i + seq + 1,
                n_chunk,
                ppl: total.ppl(),
                kld: matches!(base, Base::Compare(_)).then(|| kl.kld_mean()),
            });
        }
        i += n_seq_batch;
    }
    let compared = matches!(base, Base::Compare(_));
    Ok(PerplexityResult {
        chunking: *chunking,
        n_scored: total.count,
        ppl: total.ppl(),
        uncertainty: total.uncertainty(),
        running_ppl: running,
        kl: compared.then(|| kl.summary()),
    })
}

/// Checks a base file's header against the model and returns the chunking it implies
/// (`n_batch / n_ctx` of its chunks per decode, at most `max_seq`).
pub fn chunking_of_base(
    header: &logits_file::LogitsHeader,
    n_vocab: u32,
    n_batch: u32,
    max_seq: u32,
) -> Result<Chunking, PerplexityError> {
    if header.n_vocab != n_vocab {
        return Err(PerplexityError::VocabMismatch {
            file: header.n_vocab,
            model: n_vocab,
        });
    }
    let n_seq = sequences_for(header.n_ctx, n_batch).min(max_seq.max(1));
    let mut chunking = Chunking::new(
        header.tokens.len().max(2 * header.n_ctx as usize),
        header.n_ctx,
        n_batch,
        n_seq,
        None,
    )?;
    chunking.n_chunk = header.n_chunk as usize;
    Ok(chunking)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_follows_llama_perplexity() {
        // -c 512 -b 2048: four chunks per decode, of 1000 tokens one chunk is left over.
        let c = Chunking::new(2100, 512, 2048, sequences_for(512, 2048), None).unwrap();
        assert_eq!((c.n_seq, c.n_batch, c.n_chunk), (4, 2048, 4));
        assert_eq!(c.scored_per_chunk(), 255);
        assert_eq!(c.n_outputs_max(), 4 * 256);
        // -c 512 -b 128: one chunk, four decodes each.
        let c = Chunking::new(1024, 512, 128, sequences_for(512, 128), None).unwrap();
        assert_eq!((c.n_seq, c.n_batch, c.n_chunk), (1, 128, 2));
        assert_eq!(c.n_outputs_max(), 128);
        // --chunks limits.
        let c = Chunking::new(10_000, 128, 128, 1, Some(3)).unwrap();
        assert_eq!(c.n_chunk, 3);
        assert!(matches!(
            Chunking::new(1023, 512, 2048, 4, None),
            Err(PerplexityError::TooShort { needed: 1024, .. })
        ));
        assert!(matches!(
            Chunking::new(100, 2, 2048, 4, None),
            Err(PerplexityError::ContextTooSmall { .. })
        ));
    }

    #[test]
    fn uncertainty_is_the_standard_error_times_the_perplexity() {
        let mut n = Nll::default();
        for v in [1.0, 2.0, 3.0] {
            n.add(v);
        }
        assert!((n.ppl() - 2f64.exp()).abs() < 1e-12);
        let se = (2.0f64 / 3.0 / 2.0).sqrt();
        assert!((n.uncertainty().unwrap() - se * 2f64.exp()).abs() < 1e-9);
    }
}
