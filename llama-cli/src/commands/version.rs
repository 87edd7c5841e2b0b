//! `llama-cli version`: our version, llama.cpp's, the compiled backends and the devices.

use llama_core::SystemInfo;

use crate::cli::VersionArgs;
use crate::error::CliError;

/// Runs the command.
pub fn run(args: VersionArgs) -> Result<(), CliError> {
    let info = SystemInfo::query();
    if args.json {
        let value = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "llama_cpp": info,
        });
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return Ok(());
    }
    println!("llama-cli {}", env!("CARGO_PKG_VERSION"));
    println!(
        "llama.cpp: carried by llama-cpp-sys-2 {} (OpenMP: {})",
        info.llama_cpp_sys_version,
        if llama_sys::OPENMP { "yes" } else { "no" }
    );
    let gpu = if info.gpu_backends.is_empty() {
        "none (CPU only)".to_string()
    } else {
        info.gpu_backends.join(", ")
    };
    println!("GPU backends compiled in: {gpu}");
    println!("backends registered: {}", info.registered_backends.join(", "));
    println!("devices:");
    for d in &info.devices {
        println!(
            "  {} ({}): {} - {} free of {}",
            d.name,
            d.kind,
            d.description,
            llama_core::ByteSize(d.free_bytes),
            llama_core::ByteSize(d.total_bytes)
        );
    }
    println!("CPU features: {}", info.features);
    Ok(())
}
