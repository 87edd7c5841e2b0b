//! Throughput measurement in the manner of llama.cpp's `llama-bench`: prompt processing of
//! `n_prompt` tokens in batches, and generation of `n_gen` tokens one at a time, each repeated
//! and reported as mean and standard deviation of tokens per second.

use std::time::Instant;

use crate::error::GenerateError;
use crate::ffi::{Batch, Context, DecodeOutcome, Token};

/// Which kind of test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchKind {
    /// Prompt processing: `n` tokens in batches (`ppN`).
    Pp,
    /// Text generation: `n` tokens one by one (`tgN`).
    Tg,
}

/// The result of one test.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    /// Kind of test.
    pub kind: BenchKind,
    /// Tokens per repetition.
    pub n_tokens: u32,
    /// Tokens per second of each repetition.
    pub samples_ts: Vec<f64>,
    /// Mean tokens per second.
    pub avg_ts: f64,
    /// Standard deviation of tokens per second.
    pub stddev_ts: f64,
}

impl BenchResult {
    /// `pp512`, `tg128`, ...
    pub fn name(&self) -> String {
        match self.kind {
            BenchKind::Pp => format!("pp{}", self.n_tokens),
            BenchKind::Tg => format!("tg{}", self.n_tokens),
        }
    }

    fn from_samples(kind: BenchKind, n_tokens: u32, samples_ts: Vec<f64>) -> BenchResult {
        let n = samples_ts.len().max(1) as f64;
        let avg = samples_ts.iter().sum::<f64>() / n;
        let var = if samples_ts.len() > 1 {
            samples_ts.iter().map(|s| (s - avg).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        BenchResult {
            kind,
            n_tokens,
            samples_ts,
            avg_ts: avg,
            stddev_ts: var.sqrt(),
        }
    }
}

/// A deterministic token stream (llama-bench uses random tokens too).
struct TokenSource {
    state: u64,
    n_vocab: u64,
}

impl TokenSource {
    fn next(&mut self) -> Token {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.state >> 33) % self.n_vocab.max(1)) as Token
    }
}

fn check(outcome: DecodeOutcome, pos: usize) -> Result<(), GenerateError> {
    match outcome {
        DecodeOutcome::Done => Ok(()),
        DecodeOutcome::NoKvSlot => Err(GenerateError::NoKvSlot { n_tokens: 1, pos }),
        DecodeOutcome::Aborted => Err(GenerateError::Decode { code: 2, pos }),
        DecodeOutcome::Failed(code) => Err(GenerateError::Decode { code, pos }),
    }
}

fn run_pp(
    ctx: &mut Context,
    batch: &mut Batch,
    src: &mut TokenSource,
    n: u32,
) -> Result<f64, GenerateError> {
    let bos = ctx.model().token_bos();
    let tokens: Vec<Token> = (0..n)
        .map(|i| if i == 0 { bos } else { src.next() })
        .collect();
    ctx.kv_clear();
    let start = Instant::now();
    let (done, outcome) = ctx.decode_tokens(batch, &tokens, 0, 0);
    check(outcome, done)?;
    ctx.synchronize();
    Ok(start.elapsed().as_secs_f64())
}

fn run_tg(
    ctx: &mut Context,
    batch: &mut Batch,
    src: &mut TokenSource,
    n: u32,
) -> Result<f64, GenerateError> {
    ctx.kv_clear();
    let mut token = ctx.model().token_bos();
    let start = Instant::now();
    for pos in 0..n as usize {
        let (_, outcome) = ctx.decode_tokens(batch, &[token], pos as i32, 0);
        check(outcome, pos)?;
        ctx.synchronize();
        token = src.next();
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Runs the prompt-processing test (if `n_prompt > 0`) and the generation test (if
/// `n_gen > 0`), each after one warm-up run, `repetitions` times. The context must hold
/// `max(n_prompt, n_gen)` tokens.
pub fn run(
    ctx: &mut Context,
    n_prompt: u32,
    n_gen: u32,
    repetitions: u32,
) -> Result<Vec<BenchResult>, GenerateError> {
    let mut batch = Batch::new(ctx.n_batch() as usize);
    let mut src = TokenSource {
        state: 1234,
        n_vocab: u64::from(ctx.model().n_vocab()),
    };
    let reps = repetitions.max(1);
    let mut results = Vec::new();
    if n_prompt > 0 {
        run_pp(ctx, &mut batch, &mut src, n_prompt)?;
        let samples = (0..reps)
            .map(|_| run_pp(ctx, &mut batch, &mut src, n_prompt).map(|s| f64::from(n_prompt) / s))
            .collect::<Result<Vec<_>, _>>()?;
        results.push(BenchResult::from_samples(BenchKind::Pp, n_prompt, samples));
    }
    if n_gen > 0 {
        run_tg(ctx, &mut batch, &mut src, 1)?;
        let samples = (0..reps)
            .map(|_| run_tg(ctx, &mut batch, &mut src, n_gen).map(|s| f64::from(n_gen) / s))
            .collect::<Result<Vec<_>, _>>()?;
        results.push(BenchResult::from_samples(BenchKind::Tg, n_gen, samples));
    }
    Ok(results)
}
