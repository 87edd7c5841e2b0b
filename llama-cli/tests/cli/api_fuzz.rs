//! The API fuzzer: schemathesis (from PyPI, in the venv `scripts/python-env.sh` makes) reads
//! the server's own OpenAPI document (`/openapi.json`, generated from the handlers) and sends
//! a fixed number of generated requests per operation (boundary values, then random ones)
//! to every documented route (embeddings on),
//! with the key: no answer may be a 5xx, and the server must live through it.

use std::process::Command;

use crate::serve::{Server, KEY};

#[test]
fn schemathesis_finds_no_server_error() {
    let python = crate::support::python_env().expect("scripts/python-env.sh failed");
    // Generation kept short (4 tokens at most), two sequences.
    let server = Server::start(&["--api-key", KEY, "--max-tokens-cap", "4", "--parallel", "2"]);
    // As a module: the venv's console scripts name the python of wherever the venv was made.
    let out = Command::new(&python)
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("http://127.0.0.1:{}/openapi.json", server.port))
        .args(["-H", &format!("Authorization: Bearer {KEY}")])
        .args(["--checks", "not_a_server_error"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "25", "--seed", "1"])
        .args(["--request-timeout", "120"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", server.log());
    let cases = stdout
        .lines()
        .filter(|l| l.contains(" generated, "))
        .find_map(|l| l.trim().strip_suffix(" passed"))
        .and_then(|l| l.split_once(" generated, "))
        .map(|(generated, passed)| (generated.trim().to_string(), passed.trim().to_string()));
    let (generated, passed) = cases.unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    assert_eq!(generated, passed, "{stdout}");
    assert!(generated.parse::<u32>().unwrap() >= 100, "{stdout}");
    assert!(
        stdout.contains("Tested: 19"),
        "every operation tested:\n{stdout}"
    );
    let r = server.request("GET", "/health", &[], b"");
    assert_eq!(r.status, 200, "the server lives: {}", server.log());
}
