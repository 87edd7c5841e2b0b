//! `llama-cli embed -m MODEL -p TEXT [-p TEXT ...] [-f FILE]`: embeddings of texts, as
//! llama.cpp's `llama-embedding` computes them (llama-core's
//! [`embedding`](llama_core::embedding)): pooled as the model says or `--pooling`,
//! L2-normalised (`--embd-normalize -1`: raw). With several inputs the cosine similarities
//! follow. The context is planned under `--max-mem` with one output per batch token.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use llama_core::embedding::{cosine, Pooling};
use llama_core::run::RunSettings;

use crate::context_args::ContextArgs;
use crate::error::CliError;

/// `llama-cli embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// A text to embed (repeatable).
    #[arg(short = 'p', long = "prompt", value_name = "TEXT")]
    pub prompt: Vec<String>,

    /// A file whose lines are the texts to embed (empty lines skipped).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Pooling: none, mean, cls, last or rank [default: the model's].
    #[arg(long = "pooling", value_name = "TYPE")]
    pub pooling: Option<Pooling>,

    /// Normalisation of pooled vectors: 2 (Euclidean, as OpenAI returns them) or -1 (none).
    #[arg(
        long = "embd-normalize",
        value_name = "N",
        default_value_t = 2,
        allow_negative_numbers = true
    )]
    pub embd_normalize: i32,

    /// Most tokens of one input (the context).
    #[arg(
        short = 'c',
        long = "ctx-size",
        value_name = "N",
        default_value_t = 512
    )]
    pub ctx_size: u32,

    /// Inputs decoded together.
    #[arg(long = "parallel", value_name = "N", default_value_t = 4)]
    pub parallel: u32,

    /// Print JSON (OpenAI's `data` list, with the model and pooling).
    #[arg(long = "json")]
    pub json: bool,

    #[command(flatten)]
    pub context: ContextArgs,
}

/// The inputs: `-p` texts, then the file's lines.
fn inputs(args: &EmbedArgs) -> Result<Vec<String>, CliError> {
    let mut texts = args.prompt.clone();
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::ReadFile {
            path: path.clone(),
            source,
        })?;
        texts.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    if texts.is_empty() {
        return Err(CliError::NoEmbedInput);
    }
    Ok(texts)
}

/// Runs the command.
pub fn run(args: EmbedArgs) -> Result<(), CliError> {
    let normalize = match args.embd_normalize {
        2 => true,
        -1 => false,
        n => return Err(CliError::EmbdNormalize(n)),
    };
    let texts = inputs(&args)?;
    let n_seq = args.parallel.clamp(1, 64);
    // A pooled input sits in one micro-batch: batch and micro-batch are the context, which
    // `n_seq` short inputs share (the cache is cleared after each decode).
    let n_ctx = args.ctx_size.max(8);
    let settings = args.context.settings((n_ctx / n_seq).max(1), n_ctx)?;
    let run = RunSettings {
        ubatch_size: n_ctx,
        ..crate::runtime::run_settings(&settings, n_seq)?
    };
    // Every token of a batch is an output: the planner counts them.
    let prepared = llama_core::run::prepare_with_outputs(&run, n_ctx)?;
    crate::runtime::print_notes(&prepared.notes);
    let model_path = run.model.clone();
    let (mut embedder, _) = prepared.open_embedder(args.pooling.unwrap_or_default(), None)?;
    let tokens = texts
        .iter()
        .map(|t| embedder.model().tokenize(t, true, true))
        .collect::<Result<Vec<_>, _>>()?;
    let vectors = embedder.embed(&tokens, normalize)?;
    let pooling = embedder.pooling();
    let mut out = std::io::stdout().lock();
    if args.json {
        let data: Vec<_> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let embedding = if pooling == Pooling::None {
                    serde_json::json!(v)
                } else {
                    serde_json::json!(v.first())
                };
                serde_json::json!({
                    "object": "embedding",
                    "index": i,
                    "tokens": tokens[i].len(),
                    "embedding": embedding,
                })
            })
            .collect();
        let value = serde_json::json!({
            "object": "list",
            "model": model_path.display().to_string(),
            "pooling": pooling.name(),
            "dimensions": embedder.dimensions(),
            "normalized": normalize && pooling != Pooling::None,
            "data": data,
        });
        return super::write_json(&mut out, &value);
    }
    eprintln!(
        "pooling {}, {} dimensions, {} input(s)",
        pooling.name(),
        embedder.dimensions(),
        texts.len()
    );
    for (i, v) in vectors.iter().enumerate() {
        for (j, row) in v.iter().enumerate() {
            let values: Vec<String> = row.iter().map(|x| format!("{x:.6}")).collect();
            match pooling {
                Pooling::None => writeln!(out, "embedding {i} token {j}: {}", values.join(" "))?,
                _ => writeln!(out, "embedding {i}: {}", values.join(" "))?,
            }
        }
    }
    if vectors.len() > 1 && pooling != Pooling::None {
        writeln!(out, "cosine similarity:")?;
        for a in &vectors {
            let row: Vec<String> = vectors
                .iter()
                .map(|b| format!("{:6.3}", cosine(&a[0], &b[0])))
                .collect();
            writeln!(out, "{}", row.join(" "))?;
        }
    }
    Ok(())
}
