//! `prompt` on the real model: determinism, seeds, raw mode, stdin, stats, cancellation.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support::{greedy_args, llama_cli, model};

fn run_prompt(extra: &[&str], text: &str) -> String {
    let output = llama_cli()
        .arg("prompt")
        .args(extra)
        .arg(text)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "failed: {stderr}");
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

#[test]
fn greedy_prompt_is_deterministic_across_processes() {
    let args = greedy_args(24);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = run_prompt(
        &args,
        "What is the capital of France? Answer in one sentence.",
    );
    let second = run_prompt(
        &args,
        "What is the capital of France? Answer in one sentence.",
    );
    assert!(!first.trim().is_empty());
    assert_eq!(first, second);
    assert!(first.contains("Paris"), "unexpected answer: {first}");
}

#[test]
fn same_seed_same_sample() {
    let m = model();
    let base = [
        "-m",
        m.to_str().unwrap(),
        "-n",
        "24",
        "--temp",
        "1.0",
        "-c",
        "512",
    ];
    let a = run_prompt(&[&base[..], &["--seed", "42"]].concat(), "Tell me a story.");
    let b = run_prompt(&[&base[..], &["--seed", "42"]].concat(), "Tell me a story.");
    assert_eq!(a, b);
    let others: Vec<String> = (1..=3)
        .map(|s| {
            run_prompt(
                &[&base[..], &["--seed", &s.to_string()]].concat(),
                "Tell me a story.",
            )
        })
        .collect();
    assert!(
        others.iter().any(|o| o != &a),
        "seeds 1..3 all gave the seed-42 text"
    );
}

#[test]
fn prompt_from_stdin_and_raw_mode() {
    let args = greedy_args(8);
    let output = llama_cli()
        .arg("prompt")
        .args(&args)
        .arg("--raw")
        .write_stdin("The capital of France is")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(!text.trim().is_empty());
    assert!(output.stderr.is_empty() || !String::from_utf8_lossy(&output.stderr).contains("error"));
}

#[test]
fn stats_and_stdout_stay_separate() {
    let args = greedy_args(8);
    let output = llama_cli()
        .arg("prompt")
        .args(&args)
        .args(["--stats", "Tell me about Paris."])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!stdout.contains("stats:"), "stats leaked to stdout");
    assert!(stderr.contains("stats: load time"), "{stderr}");
    assert!(stderr.contains("stats: generation 8 tokens"), "{stderr}");
    assert!(stderr.contains("stats: finish reason length"), "{stderr}");
}

#[test]
fn stop_string_ends_the_answer_before_it() {
    let args = greedy_args(40);
    let full = run_prompt(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "Count from 1 to 10.",
    );
    // Pick a word in the greedy answer and stop on it: the output must end right before it.
    let word = full
        .split_whitespace()
        .nth(3)
        .expect("answer has a few words")
        .to_string();
    let cut = full.find(&word).unwrap();
    let stopped = run_prompt(
        &[
            args.iter().map(String::as_str).collect::<Vec<_>>(),
            vec!["--stop", &word],
        ]
        .concat(),
        "Count from 1 to 10.",
    );
    assert_eq!(stopped.trim_end(), full[..cut].trim_end());
}

#[test]
fn ctrl_c_stops_a_long_generation_promptly() {
    use std::io::Read;
    let bin = assert_cmd::cargo::cargo_bin("llama-cli");
    let m = model();
    let mut child = Command::new(bin)
        .args([
            "prompt",
            "-m",
            m.to_str().unwrap(),
            "--raw",
            "--ignore-eos",
            "-c",
            "8192",
        ])
        .args(["--temp", "1.0", "--seed", "1", "-t", "2"])
        .arg("Once upon a time")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the answer is streaming (8000 tokens to go), then interrupt it.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    let n = stdout.read(&mut first).unwrap();
    assert!(n > 0, "some text was streamed before the interrupt");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let sent = Instant::now();
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let output = child.wait_with_output().unwrap();
    let waited = sent.elapsed();
    assert!(waited < Duration::from_secs(5), "took {waited:?} to stop");
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        rest.len() < 8000 * 8,
        "stopped long before the 8000-token context filled"
    );
}
