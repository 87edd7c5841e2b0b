//! Writes a small model with random weights (see `llama_core::gguf::synthetic`), for trying
//! commands and benchmarks on shapes other than the test model's.
//!
//!   cargo run --release -p llama-core --example synthetic_model -- OUT.gguf [TYPE]
//!
//! TYPE is the weight type of the matrices: f32, f16, q4_0 (default), q4_1 or q8_0.

use llama_core::gguf::synthetic::SyntheticModel;
use llama_core::gguf::GgmlType;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .ok_or("usage: synthetic_model OUT.gguf [TYPE]")?;
    let type_name = args.next().unwrap_or_else(|| "q4_0".to_string());
    let weight_type = GgmlType::from_name(&type_name)
        .ok_or_else(|| format!("unknown weight type {type_name}"))?;
    SyntheticModel::llama(weight_type).write_to(std::path::Path::new(&out))?;
    println!("{out}");
    Ok(())
}
