//! `llama-cli doctor`: a report to paste into a bug report (llama-core's
//! [`doctor`](llama_core::doctor)): version and build, CPU features and AMX, devices, memory
//! and cgroup limits, the model's checks (GGUF, where it fits), the configuration in force and
//! the environment, secrets redacted. `--json` prints it as JSON; `--bundle FILE` writes a
//! `.tar.gz` of the report, llama.cpp's log of the checks, the service's journal and the logs
//! given with `--log`.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use llama_core::doctor::{self, bundle, Check, Report};
use llama_core::ByteSize;

use crate::commands::serve::ServeOptions;
use crate::error::CliError;
use crate::options::RunOptions;

/// The systemd unit the package installs (its journal goes into the bundle).
pub const SERVICE_UNIT: &str = "llama-rs.service";

/// How much of each log file goes into a bundle.
const LOG_TAIL_BYTES: u64 = 1 << 20;

/// How many of llama.cpp's log lines go into a bundle: the first ones (the model's load) and
/// the last ones (the planner's dry runs log a context after it, many times).
const LOG_LINES: usize = 2500;

fn head_and_tail(lines: &[String], n: usize) -> String {
    let mut text = if lines.len() <= 2 * n {
        lines.join("\n")
    } else {
        format!(
            "{}\n... ({} lines left out) ...\n{}",
            lines[..n].join("\n"),
            lines.len() - 2 * n,
            lines[lines.len() - n..].join("\n")
        )
    };
    text.push('\n');
    text
}

/// `llama-cli doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long = "json")]
    pub json: bool,

    /// Also write a .tar.gz with the report, logs and the configuration (secrets redacted).
    #[arg(long = "bundle", value_name = "FILE")]
    pub bundle: Option<PathBuf>,

    /// A log file to include in the bundle (its last MiB, redacted); repeatable.
    #[arg(long = "log", value_name = "FILE")]
    pub log: Vec<PathBuf>,

    /// Read options from this TOML file (flags win over it), as the other commands do.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub options: RunOptions,
}

fn build_info() -> serde_json::Value {
    serde_json::json!({
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "target": format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
        "gpu_backends": llama_core::ffi::compiled_gpu_backends(),
    })
}

fn check_line<T>(check: &Check<T>, ok: impl Fn(&T) -> String) -> String {
    match check {
        Check::Ok(v) => format!("ok: {}", ok(v)),
        Check::Failed { error } => format!("FAILED: {error}"),
        Check::Skipped { reason } => format!("skipped: {reason}"),
    }
}

/// The report as text.
fn render(report: &Report, config_text: &str) -> String {
    let mut t = String::new();
    let mut line = |s: String| {
        t.push_str(&s);
        t.push('\n');
    };
    line("# llama-cli doctor".into());
    line(String::new());
    line("## version".into());
    let l = &report.llama_cpp;
    line(format!(
        "llama-cli {} ({} build, {})",
        report.version,
        report.build["profile"].as_str().unwrap_or("?"),
        report.build["target"].as_str().unwrap_or("?")
    ));
    line(format!(
        "llama.cpp: carried by llama-cpp-sys-2 {} (OpenMP: {})",
        l.llama_cpp_sys_version,
        if l.openmp { "yes" } else { "no" }
    ));
    let gpu = if l.gpu_backends.is_empty() {
        "none (CPU only)".to_string()
    } else {
        l.gpu_backends.join(", ")
    };
    line(format!(
        "GPU backends compiled in: {gpu}; registered backends: {}",
        l.registered_backends.join(", ")
    ));
    line(String::new());
    line("## system".into());
    let os = &report.os;
    line(format!(
        "{} {}, kernel {}",
        os.distribution.as_deref().unwrap_or("unknown distribution"),
        os.arch,
        os.kernel.as_deref().unwrap_or("?")
    ));
    line(format!(
        "CPU: {}, {} logical CPUs, {} available to this process",
        os.cpu_model.as_deref().unwrap_or("unknown"),
        os.logical_cpus,
        os.available_cpus
    ));
    line(format!("CPU features: {}", l.features));
    let amx = &l.amx;
    line(format!(
        "AMX: CPU {}, kernels compiled {}, registered {}, used by default {}",
        yes(amx.cpu),
        yes(amx.compiled),
        yes(amx.registered),
        yes(amx.used_by_default)
    ));
    let extra: Vec<String> = l
        .extra_buffer_types
        .iter()
        .map(|b| {
            format!(
                "{}{}",
                b.name,
                if b.used_by_default {
                    ""
                } else {
                    " (not by default)"
                }
            )
        })
        .collect();
    line(format!(
        "CPU weight buffer types: CPU, CPU_Mapped{}{}",
        if extra.is_empty() { "" } else { ", " },
        extra.join(", ")
    ));
    line("devices:".into());
    for d in &l.devices {
        line(format!(
            "  {} ({}): {} - {} free of {}",
            d.name,
            d.kind,
            d.description,
            ByteSize(d.free_bytes),
            ByteSize(d.total_bytes)
        ));
    }
    line(String::new());
    line("## memory".into());
    let m = &report.memory;
    line(format!("physical memory: {}", ByteSize(m.machine.physical)));
    line(match &m.machine.cgroup {
        Some(c) => format!(
            "cgroup memory limit: {} ({})",
            ByteSize(c.bytes),
            c.file.display()
        ),
        None => "cgroup memory limit: none".into(),
    });
    line(format!(
        "this process: RSS {}, peak {}",
        ByteSize(m.process.rss),
        ByteSize(m.process.peak_rss)
    ));
    line(String::new());
    line("## model".into());
    match &report.model {
        None => line("no model given (-m FILE or -hf REPO[:QUANT] checks one)".into()),
        Some(model) => {
            line(format!("file: {}", model.path.display()));
            line(format!(
                "GGUF check: {}",
                check_line(&model.gguf, |s| format!(
                    "{} {}, {:.2} M parameters, {} layers, training context {}, {}",
                    s.architecture.as_deref().unwrap_or("?"),
                    s.file_type.as_deref().unwrap_or("?"),
                    s.n_params as f64 / 1e6,
                    s.block_count.map_or("?".into(), |n| n.to_string()),
                    s.context_length.map_or("?".into(), |n| n.to_string()),
                    ByteSize(s.file_size)
                ))
            ));
            line(format!(
                "fit: {}",
                check_line(&model.fit, |f| {
                    let plan = match &f.plan {
                        Some(p) => format!(
                            ", planned {} of budget {} ({})",
                            ByteSize(p.breakdown.total()),
                            ByteSize(p.budget),
                            p.breakdown
                        ),
                        None => ", no budget (pass --max-mem to plan one)".into(),
                    };
                    format!(
                        "context {}, batch {}/{}, GPU layers {}, {}{plan}",
                        f.n_ctx,
                        f.n_batch,
                        f.n_ubatch,
                        f.gpu_layers,
                        if f.streams {
                            "layers streamed from disk"
                        } else {
                            "weights resident"
                        }
                    )
                })
            ));
            if let Check::Ok(f) = &model.fit {
                for note in &f.notes {
                    line(format!("  note: {note}"));
                }
            }
        }
    }
    line(String::new());
    line("## configuration in force".into());
    t.push_str(config_text);
    if !config_text.ends_with('\n') {
        t.push('\n');
    }
    let mut line = |s: String| {
        t.push_str(&s);
        t.push('\n');
    };
    line(String::new());
    line("## environment".into());
    if report.environment.is_empty() {
        line("(none of LLAMA_*, HF_*, GGML_*, OMP_*, CUDA_*, RUST_* set)".into());
    }
    for (k, v) in &report.environment {
        line(format!("{k}={v}"));
    }
    line(String::new());
    line("## problems".into());
    if report.problems.is_empty() {
        line("none found".into());
    }
    for p in &report.problems {
        line(format!("- {p}"));
    }
    t
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Runs the command.
pub fn run(args: DoctorArgs) -> Result<(), CliError> {
    let file = match &args.config {
        Some(path) => crate::config::load(path)?,
        None => Default::default(),
    };
    let options = args.options.clone().over(file.run.clone());
    let effective = options.clone().over(RunOptions::defaults());
    let serve = file.serve.clone().over(ServeOptions::defaults());
    let settings = options.resolve()?;
    let run = if settings.model.is_some() || settings.hf_repo.is_some() {
        let settings = crate::model_source::resolved(&settings)?;
        Some(crate::runtime::run_settings(&settings, 1)?)
    } else {
        None
    };
    let config_text = llama_core::doctor::redact::redact(&format!(
        "{}# the server's options (serve)\n{}",
        crate::config::print(&effective),
        crate::config::print(&serve)
    ));
    let configuration = serde_json::json!({
        "config_file": args.config.as_ref().map(|p| p.display().to_string()),
        "run": effective,
        "serve": serve,
    });
    let collected = doctor::collect(doctor::DoctorInput {
        version: env!("CARGO_PKG_VERSION").to_string(),
        build: build_info(),
        run,
        configuration,
    });
    let report = &collected.report;
    let text = render(report, &config_text);
    let json = serde_json::to_string_pretty(report).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{json}")?;
    } else {
        write!(out, "{text}")?;
    }
    let Some(path) = &args.bundle else {
        return Ok(());
    };
    let mut entries = vec![
        bundle::Entry {
            name: "report.txt".into(),
            contents: text.into_bytes(),
        },
        bundle::Entry {
            name: "report.json".into(),
            contents: json.into_bytes(),
        },
        bundle::Entry {
            name: "logs/llama-cpp.log".into(),
            contents: head_and_tail(&collected.llama_cpp_log, LOG_LINES).into_bytes(),
        },
    ];
    if let Some(config) = &args.config {
        let text = std::fs::read_to_string(config).map_err(|source| CliError::ReadFile {
            path: config.clone(),
            source,
        })?;
        entries.push(bundle::Entry {
            name: "config.toml".into(),
            contents: llama_core::doctor::redact::redact(&text).into_bytes(),
        });
    }
    if let Some(journal) = doctor::journal(SERVICE_UNIT, 1000) {
        entries.push(bundle::Entry {
            name: format!("logs/journal-{SERVICE_UNIT}.log"),
            contents: journal.into_bytes(),
        });
    }
    for (i, log) in args.log.iter().enumerate() {
        let tail = doctor::tail(log, LOG_TAIL_BYTES).map_err(|source| CliError::ReadFile {
            path: log.clone(),
            source,
        })?;
        let name = log
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "log".into());
        entries.push(bundle::Entry {
            name: format!("logs/{i}-{name}"),
            contents: tail.into_bytes(),
        });
    }
    bundle::write(path, "llama-cli-doctor", &entries).map_err(|source| CliError::WriteFile {
        path: path.clone(),
        source,
    })?;
    eprintln!(
        "wrote {} ({} files, secrets redacted)",
        path.display(),
        entries.len()
    );
    Ok(())
}
