//! `llama-cli tokenize -m MODEL TEXT`: the model's tokenizer on a text, as llama.cpp's
//! `llama-tokenize` shows it (one `id -> 'piece'` line per token, or the ids alone), or as
//! JSON. Only the vocabulary is loaded, not the weights.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Args;
use llama_core::ModelParams;

use crate::error::CliError;

/// `llama-cli tokenize`.
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// Path of the GGUF model file.
    #[arg(short = 'm', long = "model", value_name = "FILE")]
    pub model: Option<PathBuf>,

    /// Hugging Face repository (also -hf): REPO[:QUANT], from the cache or downloaded.
    #[arg(long = "hf-repo", value_name = "REPO[:QUANT]")]
    pub hf_repo: Option<String>,

    /// The text; read from stdin when absent or `-`.
    #[arg(value_name = "TEXT", conflicts_with = "file")]
    pub text: Option<String>,

    /// Read the text from this file.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Do not add the model's special tokens (BOS) at the start.
    #[arg(long = "no-bos")]
    pub no_bos: bool,

    /// Treat special-token text such as `<|im_start|>` as plain text.
    #[arg(long = "no-parse-special")]
    pub no_parse_special: bool,

    /// Print only the ids, as a list (llama-tokenize's --ids).
    #[arg(long = "ids")]
    pub ids: bool,

    /// Print as JSON: the ids, pieces and count.
    #[arg(long = "json")]
    pub json: bool,
}

/// Reads the text of `--file`, the argument, or stdin.
fn text_of(args: &TokenizeArgs) -> Result<String, CliError> {
    if let Some(path) = &args.file {
        let bytes = std::fs::read(path).map_err(|source| CliError::ReadFile {
            path: path.clone(),
            source,
        })?;
        return String::from_utf8(bytes).map_err(|_| CliError::NotText { path: path.clone() });
    }
    match args.text.as_deref() {
        Some(text) if text != "-" => Ok(text.to_string()),
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| CliError::Io {
                    what: "cannot read the text from stdin",
                    source,
                })?;
            Ok(text)
        }
    }
}

/// Runs the command.
pub fn run(args: TokenizeArgs) -> Result<(), CliError> {
    let path = crate::model_source::model_path_of(args.model.as_deref(), args.hf_repo.as_deref())?;
    let text = text_of(&args)?;
    let (model, _) = llama_core::load_model(
        &path,
        &ModelParams {
            vocab_only: true,
            ..ModelParams::default()
        },
        None,
    )?;
    let tokens = model.tokenize(&text, !args.no_bos, !args.no_parse_special)?;
    let pieces: Vec<String> = tokens
        .iter()
        .map(|&t| String::from_utf8_lossy(&model.token_to_piece(t, true)).into_owned())
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        let list: Vec<serde_json::Value> = tokens
            .iter()
            .zip(&pieces)
            .map(|(id, piece)| serde_json::json!({"id": id, "piece": piece}))
            .collect();
        let value = serde_json::json!({
            "model": path.display().to_string(),
            "count": tokens.len(),
            "tokens": list,
        });
        return super::write_json(&mut out, &value);
    }
    if args.ids {
        let ids: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        writeln!(out, "[{}]", ids.join(", "))?;
        return Ok(());
    }
    for (id, piece) in tokens.iter().zip(&pieces) {
        writeln!(out, "{id:>6} -> '{piece}'")?;
    }
    Ok(())
}
