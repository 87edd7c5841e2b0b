//! `llama-cli pull REPO[:QUANT]`: fetches a model into the Hugging Face cache through
//! llama-core's store. With `--max-mem`, the model is planned from its GGUF headers first and
//! refused before the download when it cannot run.

use clap::Args;
use llama_core::store::{FitRequest, ModelRef, PullOptions, Store};
use llama_core::ByteSize;

use crate::error::CliError;
use crate::model_source::{planner, DownloadProgress};
use crate::options::RunOptions;

/// `llama-cli pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The model: REPO[:QUANT] (e.g. bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M),
    /// REPO:FILE.gguf, REPO/PATH/FILE.gguf, or an https:// URL.
    #[arg(value_name = "REPO[:QUANT]")]
    pub model: String,

    /// Refuse before downloading unless the model runs within this memory budget.
    #[arg(long = "max-mem", value_name = "SIZE")]
    pub max_mem: Option<ByteSize>,

    /// Context size the fit check plans for (0: the model's training context) [default: 4096].
    #[arg(short = 'c', long = "ctx-size", value_name = "N")]
    pub ctx_size: Option<u32>,

    /// Fit check: refuse instead of degrading the context, micro-batch or cache type.
    #[arg(long = "strict")]
    pub strict: bool,

    /// Fit check: layer streaming allowed (auto, on, off) [default: auto].
    #[arg(long = "stream", value_name = "MODE")]
    pub stream: Option<String>,

    /// Fit check: KV cache type for K and V [default: f16].
    #[arg(long = "cache-type", value_name = "TYPE")]
    pub cache_type: Option<String>,

    /// Fit check: plan the weights kept in the mapped file, without repacking (also -nr).
    #[arg(long = "no-repack")]
    pub no_repack: bool,
}

/// Runs the command.
pub fn run(args: PullArgs) -> Result<(), CliError> {
    let store = Store::from_env()?;
    let model = ModelRef::parse(&args.model)?;
    let mut progress = DownloadProgress::new();
    let mut fit_planner = None;
    if let Some(budget) = args.max_mem {
        let stream = match args.stream.as_deref() {
            None => None,
            Some(mode) => Some(mode.parse().map_err(|_| llama_core::ParamError {
                name: "stream",
                value: mode.to_string(),
                expected: "auto, on or off",
            })?),
        };
        let settings = RunOptions {
            max_mem: Some(budget),
            ctx_size: args.ctx_size,
            strict: Some(args.strict),
            stream,
            cache_type: args.cache_type.clone(),
            no_repack: Some(args.no_repack),
            ..RunOptions::default()
        }
        .resolve()?;
        fit_planner = Some(planner(settings));
    }
    let fit = match (&mut fit_planner, args.max_mem) {
        (Some(planner), Some(budget)) => Some(FitRequest {
            budget,
            planner: planner.as_mut(),
        }),
        _ => None,
    };
    let report = store.pull(
        &model,
        PullOptions {
            progress: &mut progress,
            fit,
        },
    )?;
    for note in &report.fit_notes {
        eprintln!("note: fit check: {note}");
    }
    if let Some(budget) = args.max_mem {
        if !report.already_cached {
            eprintln!("fit check: {model} runs under --max-mem {budget}");
        }
    }
    let status = if report.already_cached {
        "already in the cache".to_string()
    } else {
        format!("fetched {}", ByteSize(report.fetched))
    };
    eprintln!("{model}: {status}");
    println!("{}", report.model.path().display());
    Ok(())
}
