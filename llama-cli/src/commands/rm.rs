//! `llama-cli rm REPO[:QUANT]`: removes a model's snapshot entries from the cache and deletes
//! the blobs nothing else references (the whole repository without `:QUANT`).

use clap::Args;
use llama_core::store::{ModelRef, Store};
use llama_core::ByteSize;

use crate::error::CliError;

/// `llama-cli rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The model: REPO (every model of it), REPO:QUANT, REPO/PATH/FILE.gguf or a URL.
    #[arg(value_name = "REPO[:QUANT]", required = true)]
    pub models: Vec<String>,
}

/// Runs the command.
pub fn run(args: RmArgs) -> Result<(), CliError> {
    let store = Store::from_env()?;
    for text in &args.models {
        let model = ModelRef::parse(text)?;
        let report = store.remove(&model)?;
        println!(
            "removed {model}: {} file(s), {} blob(s), {} freed{}",
            report.links.len(),
            report.blobs.len(),
            ByteSize(report.bytes_freed),
            if report.repo_removed {
                " (repository folder removed)"
            } else {
                ""
            }
        );
    }
    Ok(())
}
