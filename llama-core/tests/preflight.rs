//! The preflight against llama.cpp. Every file of `gguf::synthetic::hostile` goes through
//! `check_model_file`, which refuses it with `LoadError::Hostile` naming the check of its class
//! (or lets it through, for the files llama.cpp refuses cleanly or runs), and then, without
//! the preflight, through llama.cpp in a child process (the load fuzzer's child: load,
//! context, tokenize, decode, render every token; this test binary re-run): each file the
//! preflight refuses ends the child with the signal its class claims (or a peak RSS over
//! 1 GiB), each file it lets through does not. The real model and every generated shape pass.

#[path = "../examples/load_fuzz/child.rs"]
#[allow(dead_code)] // the example's entry points the test does not use
mod child;
mod common;

use std::path::Path;
use std::process::Command;

use llama_core::gguf::synthetic::hostile::{Hostile, Unchecked};
use llama_core::gguf::synthetic::Shape;
use llama_core::gguf::GgmlType;
use llama_core::{check_model_file, LoadError};

/// Set in the environment of the re-run test binary: the file its child test loads.
const CHILD_ENV: &str = "LLAMA_RS_PREFLIGHT_CHILD";

/// In the re-run test binary (`CHILD_ENV` set), the child: loads the file unchecked and exits
/// with the child's status. Otherwise does nothing.
#[test]
fn child_process() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        let code = child::run(Path::new(&path));
        std::process::exit(i32::from(code));
    }
}

/// How the child ended.
#[derive(Debug, PartialEq)]
enum End {
    Signal(i32),
    Exit(i32),
}

/// Runs `path` through llama.cpp without the preflight, in a child process whose anonymous
/// memory is capped at `data_limit` bytes: how it ended, and its peak RSS when it finished.
fn run_unchecked(path: &Path, data_limit: u64) -> (End, Option<u64>) {
    use std::os::unix::process::ExitStatusExt;
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .env("LOAD_FUZZ_DATA_LIMIT", data_limit.to_string())
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let peak = stdout
        .lines()
        .find_map(|l| l.split_once("peak_rss ").map(|(_, v)| v))
        .and_then(|v| v.trim().parse().ok());
    let end = match (output.status.signal(), output.status.code()) {
        (Some(signal), _) => End::Signal(signal),
        (None, code) => End::Exit(code.unwrap_or(-1)),
    };
    (end, peak)
}

#[test]
fn hostile_files_are_refused_before_llama_cpp_and_llama_cpp_mishandles_each() {
    let dir = tempfile::tempdir().unwrap();
    for h in Hostile::ALL {
        let path = dir.path().join(format!("{h}.gguf"));
        h.build().write_to_path(&path).unwrap();

        match (check_model_file(&path), h.check()) {
            (Err(LoadError::Hostile { path: at, source }), Some(check)) => {
                assert_eq!(source.check, check, "{h}: {source}");
                assert_eq!(at, path, "{h}: the error names the file");
                let message = LoadError::Hostile { path: at, source }.to_string();
                assert!(message.contains("cannot be loaded safely"), "{message}");
            }
            (Ok(_), None) => {}
            (result, expected) => panic!("{h}: expected {expected:?}, got {result:?}"),
        }

        // The child's RLIMIT_DATA: what the huge vocabulary needs to show its allocation; a
        // smaller cap for the rest, so the endless tokenizer loop fails its allocation early.
        let data_limit = match h.unchecked() {
            Unchecked::AllocatesGigabytes => 2 << 30,
            _ => 512 << 20,
        };
        let (end, peak) = run_unchecked(&path, data_limit);
        let clean = [child::status::LOAD_ERROR, child::status::CONTEXT_ERROR];
        let agrees = match h.unchecked() {
            Unchecked::Aborts => end == End::Signal(6),
            Unchecked::Segfaults => end == End::Signal(11),
            Unchecked::DividesByZero => end == End::Signal(8),
            Unchecked::OverflowsStack | Unchecked::LoopsAllocating => end == End::Signal(6),
            Unchecked::AllocatesGigabytes => peak.is_some_and(|p| p > 1 << 30),
            Unchecked::RefusesCleanly => {
                matches!(end, End::Exit(c) if clean.iter().any(|&s| i32::from(s) == c))
            }
            Unchecked::Runs => end == End::Exit(i32::from(child::status::OK)),
        };
        assert!(
            agrees,
            "{h}: llama.cpp was expected to {:?}, the child ended with {end:?} (peak RSS {peak:?})",
            h.unchecked()
        );
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn the_real_model_and_every_generated_shape_pass() {
    check_model_file(&common::model_path()).expect("SmolLM2 passes the preflight");
    let dir = tempfile::tempdir().unwrap();
    for shape in Shape::ALL {
        for t in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::F16] {
            if shape == Shape::LargeVocab && t == GgmlType::F16 {
                continue; // 40 MB, and slow to generate in a debug build
            }
            let path = dir.path().join(format!("{shape}-{t}.gguf"));
            shape.model(t).write_to(&path).unwrap();
            if let Err(e) = check_model_file(&path) {
                panic!("{shape} {t}: {e}");
            }
            std::fs::remove_file(&path).unwrap();
        }
    }
}
