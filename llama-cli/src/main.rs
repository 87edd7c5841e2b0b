//! `llama-cli`: parse the command line, set up logging, dispatch, report errors.
//! The work lives in llama-core; each subcommand is a module in `commands/`. The binary reaches
//! llama.cpp only through llama-core's safe API.
#![forbid(unsafe_code)]

mod chat_setup;
mod cli;
mod commands;
mod config;
mod context_args;
mod error;
mod model_source;
mod option_group;
mod options;
mod progress;
mod runtime;
mod server;

use std::process::ExitCode;

use cli::{Cli, Command, VersionArgs};

fn main() -> ExitCode {
    // Before anything large is allocated: the memory plan's margins assume a fixed threshold.
    llama_core::ffi::pin_heap_thresholds();
    let parsed = cli::command()
        .try_get_matches_from(cli::normalize_args(std::env::args_os()))
        .and_then(|matches| <Cli as clap::FromArgMatches>::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
        }
    };
    let serving = matches!(cli.command, Some(Command::Serve(_)));
    init_logging(cli.verbose, serving);
    let command = match (cli.version, cli.command) {
        (true, _) => Command::Version(VersionArgs { json: false }),
        (false, Some(command)) => command,
        (false, None) => {
            let _ = cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Prompt(args) => commands::prompt::run(args),
        Command::Chat(args) => commands::chat::run(args),
        Command::Plan(args) => commands::plan::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Show(args) => commands::show::run(args),
        Command::Serve(args) => commands::serve::run(args, cli.verbose > 0),
        Command::Pull(args) => commands::pull::run(args),
        Command::List(args) => commands::list::run(args),
        Command::Rm(args) => commands::rm::run(args),
        Command::Version(args) => commands::version::run(args),
        Command::Quantize(args) => commands::quantize::run(args),
        Command::Perplexity(args) => commands::perplexity::run(args),
        Command::Embed(args) => commands::embed::run(args),
        Command::BatchedBench(args) => commands::batched_bench::run(args),
        Command::Tokenize(args) => commands::tokenize::run(args),
        Command::Doctor(args) => commands::doctor::run(args),
        Command::Completions(args) => commands::completions::run(args),
        Command::Man(args) => commands::man::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr. Quiet by default (our warnings, llama.cpp's errors); `-v` adds info
/// and llama.cpp's log, `-vv` debug. `RUST_LOG` overrides. `serve` also shows its one line
/// per request (target `llama_rs::server`, info) by default.
fn init_logging(verbose: u8, serving: bool) {
    let default = match (verbose, serving) {
        (0, false) => "warn,llama_cpp=error",
        (0, true) => "warn,llama_cpp=error,llama_rs::server=info",
        (1, _) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(verbose > 0)
        .compact()
        .init();
}
