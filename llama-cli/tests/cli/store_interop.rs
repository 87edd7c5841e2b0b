//! The store's cache and huggingface_hub's (the official Python client, from PyPI, in the
//! venv `scripts/python-env.sh` makes) are one: each finds what the other downloaded
//! (tests/python/test_hf_cache.py).

use std::path::PathBuf;
use std::process::Command;

use super::store_support::{ok, tiny_repo, Sandbox};

/// The venv's python (scripts/test.sh makes the venv first; a failure to make it fails the
/// test, as the `openai` client's test does).
fn python() -> PathBuf {
    crate::support::python_env().expect("scripts/python-env.sh failed")
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python/test_hf_cache.py")
}

#[test]
fn store_huggingface_hub_reads_our_cache() {
    let python = python();
    let sandbox = Sandbox::new(vec![tiny_repo()]);
    let (stdout, _) = ok(&sandbox
        .cli()
        .args(["pull", "test/tiny:Q4_0"])
        .output()
        .unwrap());
    let path = stdout.trim();
    let mut cmd = Command::new(python);
    cmd.arg(script()).args([
        "read",
        &sandbox.cache().display().to_string(),
        "test/tiny",
        "tiny-Q4_0.gguf",
        path,
    ]);
    for (k, v) in sandbox.vars() {
        cmd.env(k, v);
    }
    let out = cmd.env("HF_HUB_OFFLINE", "1").output().unwrap();
    let (stdout, stderr) = ok(&out);
    assert!(stdout.contains("8 passed, 0 failed"), "{stdout}\n{stderr}");
}

#[test]
fn store_finds_what_huggingface_hub_downloaded() {
    let python = python();
    let sandbox = Sandbox::new(vec![tiny_repo()]);
    let mut cmd = Command::new(python);
    cmd.arg(script())
        .args(["download", "test/tiny", "tiny-Q8_0.gguf"]);
    for (k, v) in sandbox.vars() {
        cmd.env(k, v);
    }
    let (hf_path, _) = ok(&cmd.env("HF_HUB_DISABLE_XET", "1").output().unwrap());
    let size = tiny_repo().files[2].content.len() as u64;
    assert_eq!(sandbox.hub.served("test/tiny", "tiny-Q8_0.gguf"), size);
    // Offline, llama-cli finds it; online, pulling it fetches nothing.
    let (stdout, _) = ok(&sandbox
        .cli()
        .args(["show", "test/tiny:Q8_0"])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap());
    assert!(stdout.contains(hf_path.trim()), "{stdout} vs {hf_path}");
    let (stdout, stderr) = ok(&sandbox
        .cli()
        .args(["pull", "test/tiny:Q8_0"])
        .output()
        .unwrap());
    assert_eq!(stdout.trim(), hf_path.trim());
    assert!(stderr.contains("already in the cache"), "{stderr}");
    assert_eq!(sandbox.hub.served("test/tiny", "tiny-Q8_0.gguf"), size);
}
