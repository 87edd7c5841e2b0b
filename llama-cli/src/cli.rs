//! Command-line definitions (clap). Flags are named as llama.cpp names them.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::options::RunOptions;

/// Run GGUF language models on llama.cpp, under a hard memory budget.
#[derive(Debug, Parser)]
#[command(name = "llama-cli", disable_version_flag = true, max_term_width = 100)]
pub struct Cli {
    /// More log output on stderr (-v: info, -vv: debug, including llama.cpp's log).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Print our version, llama.cpp's build, the compiled backends and the devices found.
    #[arg(short = 'V', long = "version")]
    pub version: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
// Parsed once per process: the size of the largest (serve's options) does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Answer one prompt (argument or stdin) and exit; the answer streams to stdout.
    Prompt(PromptArgs),
    /// Interactive chat (one line per turn when stdin is a pipe).
    Chat(ChatArgs),
    /// Plan memory for a model under --max-mem without loading it (our fit-params).
    Plan(PlanArgs),
    /// Measure prompt-processing and generation speed, like llama.cpp's llama-bench.
    Bench(BenchArgs),
    /// Describe a GGUF model: architecture, size, quantisation, KV bytes per token, layers.
    Show(ShowArgs),
    /// Serve an OpenAI-compatible HTTP API (chat and text completions, streaming, metrics).
    Serve(ServeArgs),
    /// Download a GGUF model from the Hugging Face Hub (REPO[:QUANT]) or a URL into the
    /// Hugging Face cache, verified, resumable; with --max-mem, refuses first if it cannot run.
    Pull(crate::commands::pull::PullArgs),
    /// List the models in the cache: name, quantisation, size, path, last used.
    List(crate::commands::list::ListArgs),
    /// Remove a model from the cache and the blobs nothing else references.
    Rm(crate::commands::rm::RmArgs),
    /// Print our version, llama.cpp's build, the compiled backends and the devices found.
    Version(VersionArgs),
    /// Quantize a GGUF model with llama.cpp's quantizer (IN OUT TYPE), within --max-mem;
    /// the output appears only when complete.
    Quantize(crate::commands::quantize::QuantizeArgs),
    /// Perplexity of a model on a text file, chunked and scored as llama-perplexity does;
    /// KL divergence against saved base log-probabilities.
    Perplexity(crate::commands::perplexity::PerplexityArgs),
    /// Throughput with many sequences decoded together, as llama-batched-bench measures it.
    BatchedBench(crate::commands::batched_bench::BatchedBenchArgs),
    /// Embeddings of texts (pooled as the model says or --pooling, L2-normalised), with
    /// their cosine similarities.
    Embed(crate::commands::embed::EmbedArgs),
    /// Tokenize text with a model's tokenizer: token ids and pieces.
    Tokenize(crate::commands::tokenize::TokenizeArgs),
    /// A report for bug reports: version, build, CPU and AMX, devices, memory, the model's
    /// checks, configuration; --bundle writes it with logs into a .tar.gz (secrets redacted).
    Doctor(crate::commands::doctor::DoctorArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(crate::commands::completions::CompletionsArgs),
    /// Print the manual page (roff), or write one page per command into --dir.
    Man(crate::commands::man::ManArgs),
}

/// `llama-cli serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub serve: crate::commands::serve::ServeOptions,

    #[command(flatten)]
    pub config: ConfigArgs,

    #[command(flatten)]
    pub options: RunOptions,
}

/// `llama-cli show`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["stored", "model", "hf_repo"]))]
pub struct ShowArgs {
    /// A model in the cache: REPO[:QUANT] (see `llama-cli list`).
    #[arg(value_name = "REPO[:QUANT]")]
    pub stored: Option<String>,

    /// Path of the GGUF model file.
    #[arg(short = 'm', long = "model", value_name = "FILE")]
    pub model: Option<PathBuf>,

    /// Hugging Face repository (also -hf): REPO[:QUANT], from the cache or downloaded.
    #[arg(long = "hf-repo", value_name = "REPO[:QUANT]")]
    pub hf_repo: Option<String>,

    /// Also list every tensor.
    #[arg(long = "tensors")]
    pub tensors: bool,

    /// Print as JSON.
    #[arg(long = "json")]
    pub json: bool,
}

/// Options every model-running command accepts.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Read options from this TOML file (flags win over it).
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective settings (flags > config file > defaults) and exit.
    #[arg(long = "print-config")]
    pub print_config: bool,
}

/// `llama-cli prompt`.
#[derive(Debug, Args)]
pub struct PromptArgs {
    /// The prompt; read from stdin when absent or `-`.
    #[arg(value_name = "TEXT", conflicts_with = "file")]
    pub text: Option<String>,

    /// Read the prompt from this file (llama.cpp's -f).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Send the text as-is (plain completion), without the chat template.
    #[arg(long = "raw")]
    pub raw: bool,

    /// Reuse the evaluated prompt saved in FILE (and save this prompt's there), like
    /// llama.cpp's --prompt-cache. A file saved for another model is refused.
    #[arg(long = "prompt-cache", value_name = "FILE")]
    pub prompt_cache: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub config: ConfigArgs,

    #[command(flatten)]
    pub options: RunOptions,
}

/// `llama-cli chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    #[command(flatten)]
    pub options: RunOptions,
}

/// `llama-cli plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Print as JSON.
    #[arg(long = "json")]
    pub json: bool,

    #[command(flatten)]
    pub config: ConfigArgs,

    #[command(flatten)]
    pub options: RunOptions,
}

/// `llama-cli bench`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["model", "hf_repo"]))]
pub struct BenchArgs {
    /// Path of the GGUF model file.
    #[arg(short = 'm', long = "model", value_name = "FILE")]
    pub model: Option<PathBuf>,

    /// Hugging Face repository (also -hf): REPO[:QUANT], from the cache or downloaded.
    #[arg(long = "hf-repo", value_name = "REPO[:QUANT]")]
    pub hf_repo: Option<String>,

    /// Prompt tokens per prompt-processing test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: u32,

    /// Tokens per generation test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: u32,

    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub repetitions: u32,

    /// Threads [default: the number of CPUs].
    #[arg(short = 't', long = "threads")]
    pub threads: Option<i32>,

    /// Logical batch size.
    #[arg(short = 'b', long = "batch-size", default_value_t = 2048)]
    pub batch_size: u32,

    /// Physical batch size (also -ub).
    #[arg(long = "ubatch-size", default_value_t = 512)]
    pub ubatch_size: u32,

    /// Layers to offload to the GPU (also -ngl).
    #[arg(
        long = "gpu-layers",
        visible_alias = "n-gpu-layers",
        default_value_t = 0
    )]
    pub gpu_layers: i32,

    /// Flash attention: auto, on or off.
    #[arg(long = "flash-attn", default_value = "auto", value_parser = ["auto", "on", "off"])]
    pub flash_attn: String,

    /// Keep the weights in the mapped file: no repacking into the CPU backend's extra buffer
    /// types (also -nr; llama-bench's `--repack 0`).
    #[arg(long = "no-repack")]
    pub no_repack: bool,

    /// Let weights go to the AMX buffer type on CPUs with AMX (off by default, llama.cpp #20824).
    #[arg(long = "amx")]
    pub amx: bool,

    /// Print results as JSON instead of a table.
    #[arg(long = "json")]
    pub json: bool,
}

/// `llama-cli version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print as JSON.
    #[arg(long = "json")]
    pub json: bool,
}

/// The command line: [`Cli`]'s definition, with each option group's defaults shown in its
/// flags' help.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut command = Cli::command();
    for name in ["prompt", "chat", "plan", "serve"] {
        command = command.mut_subcommand(name, RunOptions::document_defaults);
    }
    command = command.mut_subcommand("quantize", |c| {
        c.mut_arg("target", |a| {
            a.long_help(crate::commands::quantize::types_help())
        })
    });
    command.mut_subcommand(
        "serve",
        crate::commands::serve::ServeOptions::document_defaults,
    )
}

/// Rewrites llama.cpp's multi-letter short flags (`-ub`, `-ngl`), which clap cannot declare,
/// into their long forms, and `--no-jinja` into `--jinja=false`.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    const ALIASES: [(&str, &str); 17] = [
        ("-hf", "--hf-repo"),
        ("-rea", "--reasoning"),
        ("-npp", "--n-pp"),
        ("-ntg", "--n-tg"),
        ("-npl", "--n-pl"),
        ("-pps", "--pp-shared"),
        ("-tgs", "--tg-separate"),
        ("-kvu", "--kv-unified"),
        ("-nr", "--no-repack"),
        ("-tb", "--threads-batch"),
        ("-to", "--timeout"),
        ("-np", "--parallel"),
        ("-ub", "--ubatch-size"),
        ("-ngl", "--gpu-layers"),
        ("-fa", "--flash-attn"),
        ("-ctk", "--cache-type-k"),
        ("-ctv", "--cache-type-v"),
    ];
    args.into_iter()
        .map(|arg| {
            let Some(text) = arg.to_str() else { return arg };
            // One setting, two flags (llama.cpp's): `--no-jinja` is `--jinja=false`.
            if text == "--no-jinja" {
                return OsString::from("--jinja=false");
            }
            for (short, long) in ALIASES {
                if text == short {
                    return OsString::from(long);
                }
                if let Some(value) = text.strip_prefix(short).and_then(|r| r.strip_prefix('=')) {
                    return OsString::from(format!("{long}={value}"));
                }
            }
            arg
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_cpp_short_flags_are_accepted() {
        let args = normalize_args(
            ["llama-cli", "bench", "-m", "x", "-ub", "64", "-ngl=3"].map(OsString::from),
        );
        let cli = Cli::try_parse_from(args).unwrap();
        let Some(Command::Bench(b)) = cli.command else {
            panic!("not bench")
        };
        assert_eq!(b.ubatch_size, 64);
        assert_eq!(b.gpu_layers, 3);
        let args = normalize_args(["llama-cli", "bench", "-hf", "a/b:Q4_0"].map(OsString::from));
        let Some(Command::Bench(b)) = Cli::try_parse_from(args).unwrap().command else {
            panic!("not bench")
        };
        assert_eq!(b.hf_repo.as_deref(), Some("a/b:Q4_0"));
    }

    #[test]
    fn jinja_is_one_setting_with_two_flags() {
        let jinja = |extra: &[&str]| {
            let mut args = vec!["llama-cli", "prompt", "-m", "x"];
            args.extend_from_slice(extra);
            args.push("hi");
            let args = normalize_args(args.into_iter().map(OsString::from));
            let Some(Command::Prompt(p)) = Cli::try_parse_from(args).unwrap().command else {
                panic!("not prompt")
            };
            p.options.jinja
        };
        assert_eq!(jinja(&[]), None);
        assert_eq!(jinja(&["--jinja"]), Some(true));
        assert_eq!(jinja(&["--no-jinja"]), Some(false));
        assert_eq!(jinja(&["--jinja=false"]), Some(false));
    }

    #[test]
    fn clap_definitions_are_consistent() {
        command().debug_assert();
        let mut prompt = command().find_subcommand("prompt").unwrap().clone();
        let help = prompt.render_long_help().to_string();
        assert!(help.contains("[default: 4096]"), "{help}");
    }
}
