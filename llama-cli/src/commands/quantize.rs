//! `llama-cli quantize IN OUT TYPE`: llama.cpp's quantizer through llama-core's
//! [`quantize`](llama_core::quantize): the memory it will take is said first (and refused when
//! it cannot fit `--max-mem`), a progress bar follows the tensors, and the output appears only
//! once it is complete.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use llama_core::quantize::{self, QuantType, QuantizeRequest};
use llama_core::ByteSize;

use crate::error::CliError;
use crate::options::default_threads;

/// `llama-cli quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The GGUF model to quantize (from F32, F16 or BF16 for the best quality).
    #[arg(value_name = "IN")]
    pub input: PathBuf,

    /// The file to write (it must not exist, unless --force; never the input).
    #[arg(value_name = "OUT")]
    pub output: PathBuf,

    /// The type, by llama-quantize's name or number: Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q4_0, IQ4_XS,
    /// F16, BF16, COPY, ...
    #[arg(value_name = "TYPE")]
    pub target: String,

    /// Allow requantizing tensors that are already quantized (quality suffers).
    #[arg(long = "allow-requantize")]
    pub allow_requantize: bool,

    /// Threads [default: the number of CPUs].
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<i32>,

    /// Importance matrix (from llama-imatrix, GGUF or legacy format) for better low-bit types.
    #[arg(long = "imatrix", value_name = "FILE")]
    pub imatrix: Option<PathBuf>,

    /// Memory budget, e.g. 512M: the row buffers are sized to fit it, or it is refused before
    /// anything is written.
    #[arg(long = "max-mem", value_name = "SIZE")]
    pub max_mem: Option<ByteSize>,

    /// Replace OUT if it exists (atomically, once the new file is complete).
    #[arg(long = "force")]
    pub force: bool,

    /// Print the result as JSON.
    #[arg(long = "json")]
    pub json: bool,
}

/// The `--help` text listing every type.
pub fn types_help() -> String {
    let mut text =
        String::from("The type, by llama-quantize's name (any case) or llama_ftype number:\n");
    for q in quantize::QUANT_TYPES {
        text.push_str(&format!(
            "  {:>2}  {:<9}  {}\n",
            q.ftype, q.name, q.description
        ));
    }
    text
}

/// Runs the command.
pub fn run(args: QuantizeArgs) -> Result<(), CliError> {
    let target = QuantType::parse(&args.target).ok_or_else(|| llama_core::ParamError {
        name: "TYPE",
        value: args.target.clone(),
        expected: "a llama-quantize type (see `llama-cli quantize --help`), e.g. Q4_K_M, Q8_0, F16",
    })?;
    let threads = args.threads.unwrap_or_else(default_threads);
    if threads < 1 {
        return Err(llama_core::ParamError {
            name: "threads",
            value: threads.to_string(),
            expected: "a positive number of threads",
        }
        .into());
    }
    let request = QuantizeRequest {
        input: args.input.clone(),
        output: args.output.clone(),
        target,
        threads,
        allow_requantize: args.allow_requantize,
        imatrix: args.imatrix.clone(),
        max_mem: args.max_mem.map(|b| b.0),
        force: args.force,
    };
    let plan = quantize::plan(&request)?;
    crate::runtime::print_notes(&plan.notes);
    let m = &plan.memory;
    let file_type = plan.input.file_type_name().unwrap_or("unknown type");
    eprintln!(
        "quantizing {} ({}, {file_type}, {} tensors) to {} as {target} with {threads} threads",
        args.input.display(),
        ByteSize(plan.input.file_size()),
        plan.input.tensors().len(),
        args.output.display()
    );
    let budget = match plan.budget {
        Some(b) => format!(" of a budget of {}", ByteSize(b)),
        None => String::new(),
    };
    eprintln!(
        "memory: about {}{budget} ({})",
        ByteSize(m.total()),
        quantize::describe(m)
    );
    let bar = progress_bar(plan.input.tensors().len() as u64);
    // llama.cpp's quantizer cannot be stopped: Ctrl-C ends the process, and the handler removes
    // the unfinished temporary file first (the output itself is never touched).
    let partial: std::sync::Arc<std::sync::Mutex<Option<PathBuf>>> = Default::default();
    {
        let partial = std::sync::Arc::clone(&partial);
        let _ = ctrlc::set_handler(move || {
            if let Some(path) = partial.lock().ok().and_then(|mut p| p.take()) {
                let _ = std::fs::remove_file(&path);
            }
            eprintln!("interrupted: nothing was written");
            std::process::exit(130);
        });
    }
    let remember = |path: &std::path::Path| {
        if let Ok(mut p) = partial.lock() {
            *p = Some(path.to_path_buf());
        }
    };
    let outcome = plan.run(remember, |p| {
        if let Some(bar) = &bar {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            bar.set_message(p.tensor.clone());
        } else {
            tracing::info!(done = p.done, total = p.total, tensor = %p.tensor, "quantized");
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    // Done (or failed and cleaned up): from here the temporary file is gone either way.
    if let Ok(mut p) = partial.lock() {
        p.take();
    }
    let outcome = outcome?;
    let mut out = std::io::stdout().lock();
    if args.json {
        return super::write_json(&mut out, &outcome);
    }
    let types: Vec<String> = outcome
        .tensor_types
        .iter()
        .map(|(t, b)| format!("{t} {}", ByteSize(*b)))
        .collect();
    writeln!(
        out,
        "wrote {}: {} ({}), from {} in {:.1} s",
        outcome.output.display(),
        ByteSize(outcome.output_bytes),
        outcome.file_type.as_deref().unwrap_or("unknown type"),
        ByteSize(outcome.input_bytes),
        outcome.elapsed.as_secs_f64()
    )?;
    writeln!(out, "tensors: {}", types.join(", "))?;
    writeln!(
        out,
        "memory: peak RSS {} (planned {})",
        ByteSize(outcome.peak_rss),
        ByteSize(outcome.planned.total())
    )?;
    Ok(())
}

fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    crate::progress::terminal_bar(
        total,
        "quantizing [{bar:30}] {pos}/{len} tensors, eta {eta} {msg}",
    )
}
