//! The measurement of llama.cpp's `llama-batched-bench`: for every prompt length `pp`,
//! generation length `tg` and number of parallel sequences `pl`, `pl` prompts of `pp` random
//! tokens are decoded (in calls of at most the batch size), then `tg` steps decode one token of
//! every sequence each. Rows whose KV cells (`N_KV`) exceed the context are skipped, as
//! llama-batched-bench does. With a shared prompt (`-pps`) the prompt is decoded once and its
//! cells copied to the other sequences; with separate generation (`-tgs`) each sequence
//! generates its tokens alone, one after another.

use std::time::Instant;

use serde::Serialize;

use crate::error::GenerateError;
use crate::ffi::{Batch, Context, DecodeOutcome, Token};

/// What to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchedBenchConfig {
    /// Prompt lengths (`-npp`).
    pub n_pp: Vec<u32>,
    /// Generation lengths (`-ntg`).
    pub n_tg: Vec<u32>,
    /// Parallel sequences (`-npl`).
    pub n_pl: Vec<u32>,
    /// One prompt shared by all sequences (`-pps`).
    pub pp_shared: bool,
    /// Sequences generate one after another (`-tgs`).
    pub tg_separate: bool,
}

/// One row of llama-batched-bench's table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BatchedBenchRow {
    /// Prompt tokens per sequence (`PP`).
    pub pp: u32,
    /// Generated tokens per sequence (`TG`).
    pub tg: u32,
    /// Parallel sequences (`B`).
    pub pl: u32,
    /// KV cells the row needs (`N_KV`).
    pub n_kv: u32,
    /// Prompt time in seconds (`T_PP s`).
    pub t_pp: f64,
    /// Prompt tokens per second (`S_PP t/s`).
    pub speed_pp: f64,
    /// Generation time in seconds (`T_TG s`).
    pub t_tg: f64,
    /// Generated tokens per second over all sequences (`S_TG t/s`).
    pub speed_tg: f64,
    /// Total time (`T s`).
    pub t: f64,
    /// All tokens per second (`S t/s`).
    pub speed: f64,
}

/// The KV cells a row needs: llama-batched-bench's `n_ctx_req`.
pub fn cells_needed(pp: u32, tg: u32, pl: u32, pp_shared: bool, kv_unified: bool) -> u64 {
    let (pp, tg, pl) = (u64::from(pp), u64::from(tg), u64::from(pl));
    if pp_shared {
        (if kv_unified { pp } else { pl * pp }) + pl * tg
    } else {
        pl * (pp + tg)
    }
}

/// Random tokens, deterministic for a run.
struct Tokens {
    state: u64,
    n_vocab: u64,
}

impl Tokens {
    fn next(&mut self) -> Token {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.state >> 33) % self.n_vocab.max(1)) as Token
    }
}

/// One token for a decode: id, position, sequence, whether it produces logits.
type Entry = (Token, i32, i32, bool);

/// Decodes `entries` in calls of at most the context's batch size; synchronizes after each
/// call when `sync`.
fn decode_all(
    ctx: &mut Context,
    batch: &mut Batch,
    entries: &[Entry],
    sync: bool,
) -> Result<(), GenerateError> {
    let n_batch = (ctx.n_batch() as usize).min(batch.capacity()).max(1);
    for (i, piece) in entries.chunks(n_batch).enumerate() {
        batch.clear();
        for &(t, pos, seq, logits) in piece {
            batch.push(t, pos, seq, logits);
        }
        let at = i * n_batch;
        match ctx.decode(batch) {
            DecodeOutcome::Done => {}
            DecodeOutcome::NoKvSlot => {
                return Err(GenerateError::NoKvSlot {
                    n_tokens: piece.len(),
                    pos: at,
                })
            }
            DecodeOutcome::Aborted => return Err(GenerateError::Decode { code: 2, pos: at }),
            DecodeOutcome::Failed(code) => return Err(GenerateError::Decode { code, pos: at }),
        }
        if sync {
            ctx.synchronize();
        }
    }
    Ok(())
}

fn rate(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// How the context's KV cells are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayout {
    /// All sequences share one pool of cells (`-kvu`).
    pub unified: bool,
    /// The sequences the context holds (each gets `n_ctx / n_seq_max` cells unless unified).
    pub n_seq_max: u32,
}

/// What a run measured, and the rows it skipped because their cells exceed the context.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchedBenchRun {
    /// The rows measured.
    pub rows: Vec<BatchedBenchRow>,
    /// `[pp, tg, pl]` of each row skipped.
    pub skipped: Vec<[u32; 3]>,
}

/// Runs `config` on `ctx` (which holds at least the largest `pl` sequences), after a warm-up of
/// 16 tokens, calling `on_row` with each row as it is measured. Rows whose cells exceed the
/// context (`N_KV` over its size, as llama-batched-bench checks, or one sequence's tokens over
/// its share of the cells when they are not unified) are skipped.
pub fn run(
    ctx: &mut Context,
    config: &BatchedBenchConfig,
    layout: KvLayout,
    mut on_row: impl FnMut(&BatchedBenchRow),
) -> Result<BatchedBenchRun, GenerateError> {
    let kv_unified = layout.unified;
    let mut tokens = Tokens {
        state: 42,
        n_vocab: u64::from(ctx.model().n_vocab()),
    };
    let mut batch = Batch::new(ctx.n_batch() as usize);
    let warm_up: Vec<Entry> = (0..16).map(|i| (tokens.next(), i, 0, false)).collect();
    decode_all(ctx, &mut batch, &warm_up, true)?;
    let n_kv_max = u64::from(ctx.n_ctx());
    let per_seq = n_kv_max / u64::from(layout.n_seq_max.max(1));
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for &pp in &config.n_pp {
        for &tg in &config.n_tg {
            for &pl in &config.n_pl {
                let n_kv = cells_needed(pp, tg, pl, config.pp_shared, kv_unified);
                let one_seq = u64::from(pp) + u64::from(tg);
                if n_kv > n_kv_max || pl == 0 || (!kv_unified && one_seq > per_seq) {
                    skipped.push([pp, tg, pl]);
                    continue;
                }
                let prompts = if config.pp_shared { 1 } else { pl };
                let mut prompt = Vec::with_capacity((prompts * pp) as usize);
                for seq in 0..prompts {
                    for i in 0..pp {
                        prompt.push((tokens.next(), i as i32, seq as i32, i + 1 == pp));
                    }
                }
                ctx.kv_clear();
                let t_pp_start = Instant::now();
                decode_all(ctx, &mut batch, &prompt, false)?;
                ctx.synchronize();
                let t_pp = t_pp_start.elapsed().as_secs_f64();
                if config.pp_shared {
                    for seq in 1..pl as i32 {
                        ctx.kv_copy(0, seq, -1, -1);
                    }
                    if !kv_unified {
                        // One dummy token applies the copy, as llama-batched-bench does.
                        decode_all(
                            ctx,
                            &mut batch,
                            &[(tokens.next(), pp as i32, 0, true)],
                            true,
                        )?;
                        ctx.kv_remove(0, pp as i32, -1);
                    }
                }
                let t_tg_start = Instant::now();
                if config.tg_separate {
                    for seq in 0..pl as i32 {
                        for i in 0..tg {
                            let step = [(tokens.next(), (pp + i) as i32, seq, true)];
                            decode_all(ctx, &mut batch, &step, true)?;
                        }
                    }
                } else {
                    for i in 0..tg {
                        let step: Vec<Entry> = (0..pl as i32)
                            .map(|seq| (tokens.next(), (pp + i) as i32, seq, true))
                            .collect();
                        decode_all(ctx, &mut batch, &step, true)?;
                    }
                }
                let t_tg = t_tg_start.elapsed().as_secs_f64();
                let t = t_pp + t_tg;
                let prompt_tokens = u64::from(if config.pp_shared { pp } else { pl * pp });
                let generated = u64::from(pl) * u64::from(tg);
                let row = BatchedBenchRow {
                    pp,
                    tg,
                    pl,
                    n_kv: n_kv.min(u64::from(u32::MAX)) as u32,
                    t_pp,
                    speed_pp: rate(prompt_tokens, t_pp),
                    t_tg,
                    speed_tg: rate(generated, t_tg),
                    t,
                    speed: rate(prompt_tokens + generated, t),
                };
                on_row(&row);
                rows.push(row);
            }
        }
    }
    Ok(BatchedBenchRun { rows, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_needed_is_llama_batched_benchs_n_ctx_req() {
        assert_eq!(cells_needed(128, 128, 4, false, false), 4 * 256);
        assert_eq!(cells_needed(128, 128, 4, true, false), 4 * 128 + 4 * 128);
        assert_eq!(cells_needed(128, 128, 4, true, true), 128 + 4 * 128);
    }
}
