//! `llama-cli completions bash|zsh|fish|elvish|powershell`: the shell's completion script for
//! every command and flag (clap_complete over [`crate::cli::command`]), on stdout.
//!
//! Install, e.g.: `llama-cli completions bash > /etc/bash_completion.d/llama-cli`,
//! `llama-cli completions zsh > "${fpath[1]}/_llama-cli"`,
//! `llama-cli completions fish > ~/.config/fish/completions/llama-cli.fish`.

use clap::Args;

use crate::error::CliError;

/// `llama-cli completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// Runs the command.
pub fn run(args: CompletionsArgs) -> Result<(), CliError> {
    let mut command = crate::cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "llama-cli", &mut out);
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, &out)?;
    Ok(())
}
