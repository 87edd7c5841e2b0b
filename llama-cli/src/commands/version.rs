//! `llama-cli version`: our version, llama.cpp's, the compiled backends and the devices.

use llama_core::SystemInfo;

use crate::cli::VersionArgs;
use std::io::Write;

use crate::error::CliError;

/// Runs the command.
pub fn run(args: VersionArgs) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let info = SystemInfo::query();
    if args.json {
        let value = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "llama_cpp": info,
        });
        super::write_json(&mut out, &value)?;
        return Ok(());
    }
    writeln!(out, "llama-cli {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(
        out,
        "llama.cpp: carried by llama-cpp-sys-2 {} (OpenMP: {})",
        info.llama_cpp_sys_version,
        if info.openmp { "yes" } else { "no" }
    )?;
    let gpu = if info.gpu_backends.is_empty() {
        "none (CPU only)".to_string()
    } else {
        info.gpu_backends.join(", ")
    };
    writeln!(out, "GPU backends compiled in: {gpu}")?;
    writeln!(
        out,
        "backends registered: {}",
        info.registered_backends.join(", ")
    )?;
    writeln!(out, "devices:")?;
    for d in &info.devices {
        writeln!(
            out,
            "  {} ({}): {} - {} free of {}",
            d.name,
            d.kind,
            d.description,
            llama_core::ByteSize(d.free_bytes),
            llama_core::ByteSize(d.total_bytes)
        )?;
    }
    writeln!(out, "CPU features: {}", info.features)?;
    let amx = &info.amx;
    let state = match (amx.cpu, amx.compiled, amx.registered) {
        (false, _, _) => "the CPU has none".to_string(),
        (true, false, _) => "the CPU has it; this build has no AMX kernels".to_string(),
        (true, true, false) => {
            "the CPU has it and the kernels are built in, but the kernel refused AMX tiles"
                .to_string()
        }
        (true, true, true) => {
            "the CPU has it; not used unless --amx (llama.cpp #20824)".to_string()
        }
    };
    writeln!(out, "AMX: {state}")?;
    let extra: Vec<String> = info
        .extra_buffer_types
        .iter()
        .map(|b| {
            let used = if b.used_by_default {
                "used"
            } else {
                "not used by default"
            };
            format!("{} ({used})", b.name)
        })
        .collect();
    writeln!(
        out,
        "CPU weight buffer types: CPU, CPU_Mapped{}{} (--no-repack: only CPU and CPU_Mapped)",
        if extra.is_empty() { "" } else { ", " },
        extra.join(", ")
    )?;
    Ok(())
}
