//! Writes a small model with random weights (see `llama_core::gguf::synthetic`), for trying
//! commands and benchmarks on shapes other than the test model's.
//!
//!   cargo run --release -p llama-core --example synthetic_model -- OUT.gguf [SHAPE] [TYPE]
//!   [CONTEXT_LENGTH] [--scaled] [--layers N]
//!
//! SHAPE is llama (default), gemma3-swa, large-vocab, moe or mamba. TYPE is the weight type of
//! the matrices: f32, f16, q4_0 (default), q4_1 or q8_0. `OUT.gguf TYPE` (no shape) writes the
//! llama shape. A number last sets the training context length (`{arch}.context_length`).
//! `--scaled` grows the layers' weights like a small real model's (`SyntheticModel::scaled_up`).
//! `--layers N` sets the number of layers (after `--scaled`), for measuring what grows with depth.

use llama_core::gguf::synthetic::Shape;
use llama_core::gguf::GgmlType;

const USAGE: &str =
    "usage: synthetic_model OUT.gguf [SHAPE] [TYPE] [CONTEXT_LENGTH] [--scaled] [--layers N]\n  \
    SHAPE: llama (default), gemma3-swa, large-vocab, moe, mamba\n  \
    TYPE: f32, f16, q4_0 (default), q4_1, q8_0";

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let out = args.next().ok_or(USAGE)?;
    if out.starts_with('-') {
        // `--help` or a misplaced flag, not a file to write.
        return Err(format!("the output path {out:?} starts with '-'\n{USAGE}"));
    }
    let mut shape = Shape::Llama;
    let mut weight_type = GgmlType::Q4_0;
    let mut context_length = None;
    let mut scaled = false;
    let mut layers = None;
    let mut positional = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--scaled" => scaled = true,
            "--layers" => {
                let n = args
                    .next()
                    .ok_or(format!("--layers needs a number\n{USAGE}"))?;
                match n.parse::<u32>() {
                    Ok(n) if n > 0 => layers = Some(n),
                    _ => return Err(format!("--layers {n:?}: not a positive number\n{USAGE}")),
                }
            }
            _ => positional.push(arg),
        }
    }
    for (i, arg) in positional.into_iter().enumerate() {
        match (i, Shape::from_name(&arg), GgmlType::from_name(&arg)) {
            (0, Some(s), _) => shape = s,
            (0 | 1, None, Some(t)) => weight_type = t,
            (_, None, None) if arg.parse::<u32>().is_ok() => context_length = arg.parse().ok(),
            _ => return Err(format!("unexpected argument {arg}\n{USAGE}")),
        }
    }
    let mut model = shape.model(weight_type);
    if scaled {
        model = model.scaled_up();
    }
    if let Some(n) = layers {
        model.n_layer = n;
    }
    if let Some(n) = context_length {
        model.context_length = n;
    }
    let path = std::path::Path::new(&out);
    model
        .write_to(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    println!(
        "{out}: {shape} ({} architecture, {} layers, width {}, {} tokens, {weight_type}), {:.1} MiB",
        model.architecture.name(),
        model.n_layer,
        model.n_embd,
        model.n_vocab,
        size as f64 / 1048576.0
    );
    Ok(())
}
