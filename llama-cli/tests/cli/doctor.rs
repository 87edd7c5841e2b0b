//! `doctor` (issue 17): the report has every part a bug report needs (version, CPU features and
//! AMX, devices, memory and cgroup limit, the model's GGUF and fit checks, the configuration
//! in force), a failed check is reported rather than fatal, and the bundle holds the report
//! and the logs with API keys and tokens redacted.

use std::io::Read;

use super::support::{llama_cli, model};

const KEY: &str = "sk-live-0123456789abcdefghijkl";
const HF: &str = "hf_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

#[test]
fn doctor_reports_and_bundles_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!("ctx-size = 1024\nport = 9000\napi-key = \"{KEY}\"\n"),
    )
    .unwrap();
    let log = dir.path().join("server.log");
    std::fs::write(
        &log,
        format!("started\nrequest with Authorization: Bearer {KEY}\nHF_TOKEN={HF}\ndone\n"),
    )
    .unwrap();
    let bundle = dir.path().join("report.tar.gz");
    let out = llama_cli()
        .env("HF_TOKEN", HF)
        .arg("doctor")
        .arg("--config")
        .arg(&config)
        .arg("-m")
        .arg(model())
        .args(["--max-mem", "1G", "--json", "--bundle"])
        .arg(&bundle)
        .arg("--log")
        .arg(&log)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(KEY) && !stdout.contains(HF), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["llama_cpp"]["features"].as_str().unwrap().contains("CPU"));
    assert!(v["llama_cpp"]["amx"]["cpu"].is_boolean());
    assert!(!v["llama_cpp"]["devices"].as_array().unwrap().is_empty());
    assert!(v["memory"]["machine"]["physical"].as_u64().unwrap() > 0);
    assert_eq!(v["model"]["gguf"]["status"], "ok");
    assert_eq!(v["model"]["gguf"]["architecture"], "llama");
    assert_eq!(v["model"]["fit"]["status"], "ok");
    assert_eq!(
        v["model"]["fit"]["n_ctx"], 1024,
        "the config file's ctx-size is in force"
    );
    assert_eq!(v["configuration"]["run"]["ctx-size"], 1024);
    assert_eq!(v["configuration"]["serve"]["port"], 9000);
    assert_eq!(v["configuration"]["serve"]["api-key"], "[REDACTED]");
    let env = v["environment"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e[0] == "HF_TOKEN" && e[1] == "[REDACTED]"),
        "{env:?}"
    );
    // The bundle: report, llama.cpp's log of the checks, the config file and the log given.
    let file = std::fs::File::open(&bundle).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        files.insert(entry.path().unwrap().display().to_string(), text);
    }
    for name in [
        "llama-cli-doctor/report.txt",
        "llama-cli-doctor/report.json",
        "llama-cli-doctor/logs/llama-cpp.log",
        "llama-cli-doctor/config.toml",
        "llama-cli-doctor/logs/0-server.log",
    ] {
        assert!(
            files.contains_key(name),
            "{name} missing: {:?}",
            files.keys()
        );
    }
    for (name, text) in &files {
        assert!(
            !text.contains(KEY) && !text.contains(HF),
            "{name} leaks a secret:\n{text}"
        );
    }
    assert!(files["llama-cli-doctor/logs/0-server.log"].contains("Bearer [REDACTED]"));
    assert!(files["llama-cli-doctor/config.toml"].contains("api-key = \"[REDACTED]\""));
    assert!(files["llama-cli-doctor/logs/llama-cpp.log"].contains("llama_model_loader"));
    let report = &files["llama-cli-doctor/report.txt"];
    for section in [
        "## version",
        "## system",
        "AMX:",
        "## memory",
        "## model",
        "## configuration in force",
    ] {
        assert!(report.contains(section), "{section} missing:\n{report}");
    }
}

#[test]
fn doctor_reports_a_bad_model_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF but not really").unwrap();
    let out = llama_cli()
        .arg("doctor")
        .arg("-m")
        .arg(&bad)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("GGUF check: FAILED"), "{stdout}");
    assert!(stdout.contains("fit: skipped"), "{stdout}");
    assert!(stdout.contains("- model file:"), "{stdout}");
    // Without a model, the rest of the report is still there.
    let out = llama_cli().arg("doctor").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no model given"));
}
