//! `llama-cli perplexity -m MODEL -f FILE [-c N] [-b N]`: perplexity chunked and scored as
//! llama.cpp's `llama-perplexity` does (llama-core's [`perplexity`](llama_core::perplexity)),
//! so the figures compare; with `--kl-divergence-base FILE` the base model's log-probabilities
//! are saved in llama.cpp's format, and with `--kl-divergence` too, another model is compared
//! with them. The context is planned under `--max-mem` before the model is loaded.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use llama_core::perplexity::{
    self, logits_file::LogitsReader, logits_file::LogitsWriter, Base, Chunking,
};
use llama_core::{ByteSize, ModelParams, Token};

use crate::context_args::ContextArgs;
use crate::error::CliError;

/// `llama-cli perplexity`.
#[derive(Debug, Args)]
pub struct PerplexityArgs {
    /// The text to score (the whole file; one trailing newline is dropped, as llama.cpp does).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Tokens per chunk; the second half of each chunk is scored.
    #[arg(
        short = 'c',
        long = "ctx-size",
        value_name = "N",
        default_value_t = 512
    )]
    pub ctx_size: u32,

    /// Tokens per decode call: batch-size / ctx-size chunks are decoded together.
    #[arg(
        short = 'b',
        long = "batch-size",
        value_name = "N",
        default_value_t = 2048
    )]
    pub batch_size: u32,

    /// Score at most this many chunks (llama-perplexity's --chunks) [default: all].
    #[arg(long = "chunks", value_name = "N")]
    pub chunks: Option<usize>,

    /// The base model's log-probabilities: written to FILE (llama.cpp's format), or with
    /// --kl-divergence read from it.
    #[arg(long = "kl-divergence-base", value_name = "FILE")]
    pub kl_divergence_base: Option<PathBuf>,

    /// Compare with the log-probabilities in --kl-divergence-base (the text and context come
    /// from that file): KL divergence, perplexity ratio, top-token agreement.
    #[arg(long = "kl-divergence", requires = "kl_divergence_base")]
    pub kl_divergence: bool,

    /// Print the result as JSON.
    #[arg(long = "json")]
    pub json: bool,

    #[command(flatten)]
    pub context: ContextArgs,
}

/// The tokens of `path`'s text, tokenized as llama-perplexity does (with the model's special
/// tokens, no parsing of special-token text), with only the vocabulary loaded.
fn tokenize_file(model_path: &std::path::Path, path: &PathBuf) -> Result<Vec<Token>, CliError> {
    let bytes = std::fs::read(path).map_err(|source| CliError::ReadFile {
        path: path.clone(),
        source,
    })?;
    let mut text =
        String::from_utf8(bytes).map_err(|_| CliError::NotText { path: path.clone() })?;
    if text.ends_with('\n') {
        text.pop();
    }
    let (vocab, _) = llama_core::load_model(
        model_path,
        &ModelParams {
            vocab_only: true,
            ..ModelParams::default()
        },
        None,
    )?;
    Ok(vocab.tokenize(&text, true, false)?)
}

/// Runs the command.
pub fn run(args: PerplexityArgs) -> Result<(), CliError> {
    let settings = args.context.settings(args.ctx_size, args.batch_size)?;
    let run_settings = crate::runtime::run_settings(&settings, 1)?;
    let model_path = run_settings.model.clone();
    // The tokens and the context: from the text, or (comparing) from the base file.
    let (tokens, n_ctx, reader) = match (&args.kl_divergence_base, args.kl_divergence) {
        (Some(base), true) => {
            let (reader, header) =
                LogitsReader::open(base).map_err(perplexity::PerplexityError::from)?;
            if header.n_ctx != args.ctx_size {
                eprintln!(
                    "note: using the base file's context of {} tokens and its {} chunks of text",
                    header.n_ctx, header.n_chunk
                );
            }
            let n_ctx = header.n_ctx;
            (header.tokens.clone(), n_ctx, Some((reader, header)))
        }
        _ => {
            let file = args.file.as_ref().ok_or(CliError::NoTextFile)?;
            let tokens = tokenize_file(&model_path, file)?;
            // Refuse a short text before anything is planned or loaded.
            Chunking::new(tokens.len(), args.ctx_size, args.batch_size, 1, args.chunks)?;
            (tokens, args.ctx_size, None)
        }
    };
    let (prepared, n_seq, n_batch) = perplexity::prepare(&run_settings, n_ctx, args.batch_size)?;
    crate::runtime::print_notes(&prepared.notes);
    let plan_line = prepared.plan.as_ref().map(|p| {
        format!(
            "planned {} of budget {}",
            ByteSize(p.breakdown.total()),
            ByteSize(p.budget)
        )
    });
    let streams = prepared.streams;
    let mut opened = prepared.open_context(None)?;
    let context = serde_json::json!({
        "n_ctx": opened.context.n_ctx(),
        "n_batch": opened.context.n_batch(),
        "n_ubatch": opened.context.n_ubatch(),
        "streams_layers": streams,
    });
    let n_vocab = opened.context.model().n_vocab();
    let mut reader = reader;
    let chunking = match &reader {
        Some((_, header)) => perplexity::chunking_of_base(header, n_vocab, n_batch, n_seq)?,
        None => Chunking::new(tokens.len(), n_ctx, n_batch, n_seq, args.chunks)?,
    };
    let mut writer = match (&args.kl_divergence_base, args.kl_divergence) {
        (Some(path), false) => Some(
            LogitsWriter::create(path, n_ctx, n_vocab, chunking.n_chunk as u32, &tokens)
                .map_err(perplexity::PerplexityError::from)?,
        ),
        _ => None,
    };
    eprintln!(
        "perplexity: {} chunks of {} tokens ({} tokens in all), {} per decode, batch {}{}",
        chunking.n_chunk,
        chunking.n_ctx,
        tokens.len(),
        chunking.n_seq,
        chunking.n_batch,
        plan_line.map(|l| format!(", {l}")).unwrap_or_default()
    );
    let base = match (&mut writer, &mut reader) {
        (Some(w), _) => Base::Save(w),
        (None, Some((r, _))) => Base::Compare(r),
        (None, None) => Base::None,
    };
    let bar = progress_bar(chunking.n_chunk as u64);
    let threads = usize::try_from(settings.threads).unwrap_or(1);
    let result = perplexity::evaluate(
        &mut opened.context,
        &tokens,
        &chunking,
        base,
        threads,
        |done| match &bar {
            Some(bar) => {
                bar.set_position(done.chunk as u64);
                bar.set_message(format!("PPL {:.4}", done.ppl));
            }
            None => tracing::info!(chunk = done.chunk, ppl = done.ppl, "chunk done"),
        },
    );
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let result = result?;
    let saved = match writer {
        Some(w) => Some(w.finish().map_err(perplexity::PerplexityError::from)?),
        None => None,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let value = serde_json::json!({
            "model": model_path.display().to_string(),
            "n_tokens": tokens.len(),
            "context": context,
            "result": result,
            "kl_divergence_base_written": saved.as_ref().map(|p| p.display().to_string()),
        });
        return super::write_json(&mut out, &value);
    }
    let running: Vec<String> = result
        .running_ppl
        .iter()
        .enumerate()
        .map(|(i, p)| format!("[{}]{p:.4}", i + 1))
        .collect();
    writeln!(out, "{}", running.join(","))?;
    match result.uncertainty {
        Some(u) => writeln!(out, "Final estimate: PPL = {:.4} +/- {u:.5}", result.ppl)?,
        None => writeln!(out, "Final estimate: PPL = {:.4}", result.ppl)?,
    }
    writeln!(
        out,
        "({} positions scored: the second half of {} chunks of {} tokens)",
        result.n_scored, chunking.n_chunk, chunking.n_ctx
    )?;
    if let Some(path) = saved {
        writeln!(
            out,
            "saved the base log-probabilities to {}",
            path.display()
        )?;
    }
    if let Some(kl) = &result.kl {
        print_kl(&mut out, kl)?;
    }
    Ok(())
}

fn print_kl(out: &mut impl Write, kl: &perplexity::kl::KlSummary) -> Result<(), CliError> {
    writeln!(out, "====== Perplexity statistics ======")?;
    writeln!(
        out,
        "Mean PPL(Q)                   : {:10.6} ± {:10.6}",
        kl.ppl.value, kl.ppl.uncertainty
    )?;
    writeln!(
        out,
        "Mean PPL(base)                : {:10.6} ± {:10.6}",
        kl.ppl_base.value, kl.ppl_base.uncertainty
    )?;
    writeln!(
        out,
        "Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%",
        100.0 * kl.ln_ppl_correlation
    )?;
    writeln!(
        out,
        "Mean ln(PPL(Q)/PPL(base))     : {:10.6} ± {:10.6}",
        kl.ln_ppl_ratio.value, kl.ln_ppl_ratio.uncertainty
    )?;
    writeln!(out)?;
    writeln!(out, "====== KL divergence statistics ======")?;
    writeln!(
        out,
        "Mean    KLD: {:10.6} ± {:10.6}",
        kl.kld_mean.value, kl.kld_mean.uncertainty
    )?;
    for (name, v) in &kl.kld_percentiles {
        writeln!(out, "{name:<8}KLD: {v:10.6}")?;
    }
    writeln!(out)?;
    writeln!(out, "====== Token probability statistics ======")?;
    writeln!(
        out,
        "Mean    Δp: {:6.3} ± {:5.3} %",
        100.0 * kl.p_diff_mean.value,
        100.0 * kl.p_diff_mean.uncertainty
    )?;
    writeln!(
        out,
        "RMS Δp    : {:6.3} ± {:5.3} %",
        100.0 * kl.p_diff_rms.value,
        100.0 * kl.p_diff_rms.uncertainty
    )?;
    writeln!(
        out,
        "Same top p: {:6.3} ± {:5.3} %",
        100.0 * kl.same_top.value,
        100.0 * kl.same_top.uncertainty
    )?;
    Ok(())
}

fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    crate::progress::terminal_bar(
        total,
        "perplexity [{bar:30}] {pos}/{len} chunks, eta {eta} {msg}",
    )
}
