//! The Debian package's configuration and systemd unit (issue 17): the shipped
//! `/etc/llama-rs/serve.toml` is a config file `serve` accepts, and the unit passes
//! `systemd-analyze verify` and its security review (where systemd-analyze is installed; the
//! package itself is built and installed by hand, docs/PACKAGING.md).

use std::path::PathBuf;

use super::support::llama_cli;

fn debian(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("debian")
        .join(name)
}

#[test]
fn the_packaged_configuration_is_one_serve_accepts() {
    let out = llama_cli()
        .arg("serve")
        .arg("--config")
        .arg(debian("serve.toml"))
        .arg("--print-config")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("host = \"127.0.0.1\""), "{stdout}");
    assert!(stdout.contains("ctx-size = 16384"), "{stdout}");
}

#[test]
fn the_systemd_unit_passes_systemd_analyze() {
    let unit = std::fs::read_to_string(debian("llama-rs.service")).unwrap();
    assert!(unit.contains("DynamicUser=yes") && unit.contains("NoNewPrivileges=yes"));
    assert!(unit.contains("ExecStart=/usr/bin/llama-cli serve --config /etc/llama-rs/serve.toml"));
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    // The installed binary and man page do not exist here: point ExecStart at the binary under
    // test and leave the documentation link out.
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_llama-cli"));
    let local: String = unit
        .lines()
        .filter(|l| !l.starts_with("Documentation="))
        .map(|l| l.replace("/usr/bin/llama-cli", &binary.display().to_string()) + "\n")
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama-rs.service");
    std::fs::write(&path, local).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let level: f64 = text
        .split("Overall exposure level for llama-rs.service: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(level <= 2.0, "exposure {level}:\n{text}");
}
