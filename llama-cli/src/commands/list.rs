//! `llama-cli list`: the models in the Hugging Face cache (ours, llama.cpp's, huggingface-cli's
//! alike) and plain-URL downloads: name, quantisation, size, path, last used.

use std::io::Write;

use clap::Args;
use llama_core::store::Store;
use llama_core::ByteSize;

use crate::error::CliError;

/// `llama-cli list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print as JSON.
    #[arg(long = "json")]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: ListArgs) -> Result<(), CliError> {
    let store = Store::from_env()?;
    let models = store.list();
    let mut out = std::io::stdout().lock();
    if args.json {
        let value = serde_json::json!({
            "cache": store.cache().root().display().to_string(),
            "models": models,
        });
        return super::write_json(&mut out, &value);
    }
    if models.is_empty() {
        writeln!(out, "no models in {}", store.cache().root().display())?;
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let rows: Vec<[String; 5]> = models
        .iter()
        .map(|m| {
            let incomplete = if m.parts.0 < m.parts.1 {
                format!(" ({} of {} parts)", m.parts.0, m.parts.1)
            } else {
                String::new()
            };
            [
                format!("{}{incomplete}", m.name),
                if m.quant.is_empty() {
                    "-".into()
                } else {
                    m.quant.clone()
                },
                ByteSize(m.size).to_string(),
                m.path.display().to_string(),
                m.last_used
                    .map(|t| ago(now.saturating_sub(t)))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["NAME", "QUANT", "SIZE", "PATH", "LAST USED"];
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let print = |out: &mut std::io::StdoutLock, cells: [&str; 5]| {
        writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        )
    };
    print(&mut out, header)?;
    for r in &rows {
        print(&mut out, [&r[0], &r[1], &r[2], &r[3], &r[4]])?;
    }
    Ok(())
}

/// `3 minutes ago`, `2 days ago`.
fn ago(secs: u64) -> String {
    let (n, unit) = match secs {
        0..60 => return "just now".to_string(),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        _ => (secs / 86400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}
