//! `llama-cli man [--dir DIR]`: the manual page (roff, clap_mangen over
//! [`crate::cli::command`], so it shows the same flags and defaults as `--help`). Without
//! `--dir` the main page goes to stdout (`llama-cli man | man -l -`); with it, one page per
//! command is written there (`llama-cli.1`, `llama-cli-prompt.1`, ...), as the Debian package
//! installs them.

use std::path::PathBuf;

use clap::Args;

use crate::error::CliError;

/// `llama-cli man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command into this directory instead of the main page to stdout.
    #[arg(long = "dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: ManArgs) -> Result<(), CliError> {
    let command = crate::cli::command().version(env!("CARGO_PKG_VERSION"));
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|source| CliError::WriteFile {
                path: dir.clone(),
                source,
            })?;
            clap_mangen::generate_to(command, &dir)
                .map_err(|source| CliError::WriteFile { path: dir, source })
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command).render(&mut out)?;
            let mut stdout = std::io::stdout().lock();
            std::io::Write::write_all(&mut stdout, &out)?;
            Ok(())
        }
    }
}
