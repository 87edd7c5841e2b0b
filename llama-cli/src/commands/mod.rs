//! One module per subcommand.

pub mod batched_bench;
pub mod bench;
pub mod chat;
pub mod completions;
pub mod doctor;
pub mod embed;
pub mod list;
pub mod man;
pub mod perplexity;
pub mod plan;
pub mod prompt;
pub mod pull;
pub mod quantize;
pub mod rm;
pub mod serve;
pub mod show;
pub mod tokenize;
pub mod version;

use std::io::Write;

use crate::error::CliError;

/// Writes a piece of the answer to stdout at once (streaming).
pub fn write_out(out: &mut impl Write, text: &str) -> Result<(), CliError> {
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|source| CliError::Io {
            what: "cannot write to stdout",
            source,
        })
}

/// Prints `value` as pretty JSON on its own line.
pub fn write_json(out: &mut impl Write, value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    writeln!(out, "{text}")?;
    Ok(())
}
