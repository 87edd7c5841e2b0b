//! `chat` over a pipe: both turns answered, the second evaluating only the new tokens.

use super::support::{greedy_args, llama_cli, model};

/// Parses `stats: prompt N tokens (R reused, E evaluated)` lines.
fn prompt_stats(stderr: &str) -> Vec<(usize, usize, usize)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("stats: prompt "))
        .map(|rest| {
            let nums: Vec<usize> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .take(3)
                .map(|s| s.parse().unwrap())
                .collect();
            (nums[0], nums[1], nums[2])
        })
        .collect()
}

#[test]
fn two_turns_over_a_pipe_reuse_the_kv_cache() {
    let output = llama_cli()
        .arg("chat")
        .args(greedy_args(16))
        .args(["--stats", "-s", "You are a helpful assistant."])
        .write_stdin("What is the capital of France?\nAnd of Germany?\n")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let answers: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(answers.len() >= 2, "expected two answers, got: {stdout:?}");
    let stats = prompt_stats(&stderr);
    assert_eq!(stats.len(), 2, "{stderr}");
    let (n1, reused1, eval1) = stats[0];
    let (n2, reused2, eval2) = stats[1];
    assert_eq!((reused1, eval1), (0, n1), "first turn evaluates everything");
    // The second turn keeps the whole first prompt (and the first answer) in the cache and
    // evaluates only the rest.
    assert!(
        reused2 >= n1,
        "turn 2 reused {reused2} of turn 1's {n1} prompt tokens"
    );
    assert_eq!(reused2 + eval2, n2);
    assert!(
        eval2 < n2 - n1 + 2,
        "turn 2 evaluated {eval2} of {n2} tokens"
    );
}

#[test]
fn commands_reset_help_exit() {
    let output = llama_cli()
        .arg("chat")
        .args(greedy_args(4))
        .arg("--stats")
        .write_stdin("Hi\n/help\n/reset\nHi\n/exit\nnever sent\n")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("/reset"), "help shown: {stderr}");
    for command in ["/save FILE", "/load FILE", "/help", "/exit"] {
        assert!(stderr.contains(command), "/help lists {command}: {stderr}");
    }
    assert!(stderr.contains("conversation reset"));
    let stats = prompt_stats(&stderr);
    assert_eq!(stats.len(), 2, "two turns before /exit: {stderr}");
    // After /reset the same first turn is evaluated from scratch... except what the cache
    // still shares: reset clears it, so nothing is reused.
    assert_eq!(stats[1].1, 0, "{stderr}");
    assert_eq!(stats[0].0, stats[1].0);
}

#[test]
fn ctrl_c_during_a_long_prompt_prints_no_llama_cpp_errors() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let bin = assert_cmd::cargo::cargo_bin("llama-cli");
    let mut child = Command::new(bin)
        .args([
            "chat",
            "-m",
            model().to_str().unwrap(),
            "-c",
            "8192",
            "-t",
            "2",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // One turn of about 5000 tokens: its prompt takes seconds to evaluate.
    let turn = "The quick brown fox jumps over the lazy dog. ".repeat(500);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{turn}").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(stderr.contains("(answer stopped)"), "{stderr}");
    assert!(
        !stderr.contains("ERROR"),
        "llama.cpp's abort errors shown: {stderr}"
    );
    assert!(!stderr.contains("failed to decode"), "{stderr}");
}
