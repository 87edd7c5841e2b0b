//! Where the weights go, as a user sets it (issue 10): `--no-repack` and `--amx` on every
//! command that loads a model, their config keys, and a plan that counts repacked weights only
//! when repacking happens, within the budget in both modes.

use std::io::Write;
use std::path::{Path, PathBuf};

use llama_core::gguf::synthetic::SyntheticModel;
use llama_core::gguf::GgmlType;

use super::support::{llama_cli, model};

/// A generated llama model with Q4_0 matrices, which CPU_REPACK repacks on x86 with AVX2.
fn q4_0_model(dir: &Path) -> PathBuf {
    let path = dir.join("llama-q4_0.gguf");
    SyntheticModel::llama(GgmlType::Q4_0)
        .write_to(&path)
        .unwrap();
    path
}

fn plan_json(path: &Path, extra: &[&str]) -> serde_json::Value {
    let output = llama_cli()
        .args(["plan", "--json", "-m", path.to_str().unwrap()])
        .args(["--max-mem", "256M", "-c", "1024"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_plan_counts_repacked_weights_only_when_repacking() {
    let dir = tempfile::tempdir().unwrap();
    let path = q4_0_model(dir.path());
    let file_size = std::fs::metadata(&path).unwrap().len();
    let plain = plan_json(&path, &["--no-repack"]);
    assert_eq!(plain["repack"], false);
    assert_eq!(plain["repacked_bytes"], 0);
    assert_eq!(plain["plan"]["breakdown"]["weights"], file_size);
    let repacking = plan_json(&path, &[]);
    assert_eq!(repacking["repack"], true);
    let repacked = repacking["repacked_bytes"].as_u64().unwrap();
    if std::is_x86_feature_detected!("avx2") {
        assert!(repacked > 0, "Q4_0 is repacked with AVX2: {repacking}");
    }
    assert_eq!(
        repacking["plan"]["breakdown"]["weights"].as_u64().unwrap(),
        file_size + repacked
    );
}

/// Peak RSS from `--stats` and the planned total, in bytes.
fn run_under_budget(path: &Path, extra: &[&str]) -> (u64, String) {
    let output = llama_cli()
        .args(["prompt", "-m", path.to_str().unwrap(), "--raw", "-n", "8"])
        .args(["--temp", "0", "-t", "2", "-c", "512", "--stats"])
        .args(["--max-mem", "64M"])
        .args(extra)
        .arg("hello")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{extra:?}: {stderr}");
    assert!(!stderr.contains("budget exceeded"), "{extra:?}: {stderr}");
    let peak = stderr
        .lines()
        .find_map(|l| l.strip_prefix("stats: peak RSS "))
        .expect("peak RSS reported")
        .split(" (")
        .next()
        .unwrap()
        .to_string();
    (parse_mib(&peak), stderr)
}

fn parse_mib(text: &str) -> u64 {
    let mut parts = text.split_whitespace();
    let v: f64 = parts.next().unwrap().parse().unwrap();
    let scale = match parts.next().unwrap() {
        "KiB" => 1024.0,
        "MiB" => 1048576.0,
        "GiB" => 1073741824.0,
        _ => 1.0,
    };
    (v * scale) as u64
}

#[test]
fn both_modes_run_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = q4_0_model(dir.path());
    for extra in [&[][..], &["--no-repack"][..], &["--amx"][..]] {
        let (peak, stderr) = run_under_budget(&path, extra);
        assert!(peak <= 64 << 20, "{extra:?}: peak {peak}\n{stderr}");
    }
}

#[test]
fn no_repack_is_a_config_key_and_a_short_flag() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "no-repack = true\namx = false").unwrap();
    let output = llama_cli()
        .args([
            "prompt",
            "--config",
            f.path().to_str().unwrap(),
            "--print-config",
            "x",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let t: toml::Table = text.parse().unwrap();
    assert_eq!(t["no-repack"].as_bool(), Some(true), "{text}");
    assert_eq!(t["amx"].as_bool(), Some(false), "{text}");
    let output = llama_cli()
        .args(["chat", "-nr", "--print-config"])
        .output()
        .unwrap();
    let t: toml::Table = String::from_utf8(output.stdout).unwrap().parse().unwrap();
    assert_eq!(t["no-repack"].as_bool(), Some(true));
}

#[test]
fn bench_takes_no_repack() {
    let m = model();
    let output = llama_cli()
        .args([
            "bench",
            "-m",
            m.to_str().unwrap(),
            "-p",
            "16",
            "-n",
            "4",
            "-r",
            "1",
        ])
        .args(["-t", "2", "-nr", "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(rows[0]["repack"], false);
}

#[test]
fn version_reports_amx_and_the_weight_buffer_types() {
    let output = llama_cli().args(["version", "--json"]).output().unwrap();
    assert!(output.status.success());
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let amx = &v["llama_cpp"]["amx"];
    assert_eq!(amx["used_by_default"], false, "{v}");
    assert_eq!(amx["cpu"], llama_core::ffi::cpu_has_amx());
    let types = v["llama_cpp"]["extra_buffer_types"].as_array().unwrap();
    for t in types {
        let by_default = t["used_by_default"].as_bool().unwrap();
        assert_eq!(by_default, t["name"] != "AMX", "{t}");
    }
    let text = llama_cli().arg("version").output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("AMX: "), "{text}");
    assert!(text.contains("CPU weight buffer types: "), "{text}");
}
