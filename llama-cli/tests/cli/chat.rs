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
    // Ctrl-C stops an answer once the model is loaded and chat has taken SIGINT (before that
    // it ends the process, as any command's does): wait for the handler, whatever the load
    // on the machine, then for the prompt to be under way.
    assert!(
        catches_sigint_within(child.id(), std::time::Duration::from_secs(120)),
        "chat never installed its Ctrl-C handler"
    );
    std::thread::sleep(std::time::Duration::from_millis(700));
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

/// Whether process `pid` catches SIGINT (its `SigCgt` mask in /proc) within `limit`.
fn catches_sigint_within(pid: u32, limit: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok());
        // SIGINT is signal 2: bit 1 of the mask.
        if caught.is_some_and(|mask| mask & (1 << 1) != 0) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// A command running under a pseudo-terminal (`script`), fed keystrokes as a person types them.
struct Terminal {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    seen: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Terminal {
    fn start(command: &str, env: &[(&str, &std::path::Path)]) -> Option<Terminal> {
        use std::io::Read;
        use std::process::{Command, Stdio};
        if Command::new("script").arg("--version").output().is_err() {
            return None;
        }
        let mut cmd = Command::new("script");
        cmd.args(["-qfec", command, "/dev/null"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().ok()?;
        let stdin = child.stdin.take()?;
        let mut stdout = child.stdout.take()?;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Some(Terminal { child, stdin, seen })
    }

    fn text(&self) -> String {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `text` has been shown `n` times, then a moment for the line editor to draw
    /// its prompt.
    fn wait_for(&self, text: &str, n: usize) {
        let start = std::time::Instant::now();
        while self.text().matches(text).count() < n {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "no `{text}` #{n}:\n{}",
                self.text()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    fn type_keys(&mut self, keys: &str) {
        use std::io::Write as _;
        self.stdin.write_all(keys.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }
}

#[test]
fn the_line_editor_recalls_history_and_continues_lines() {
    let data = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("llama-cli");
    let command = format!(
        "{} chat -m {} -n 6 --temp 0 -c 512 -t 2 --stats",
        bin.display(),
        model().display()
    );
    let Some(mut term) = Terminal::start(&command, &[("XDG_DATA_HOME", data.path())]) else {
        eprintln!("skipped: `script` (util-linux) is not available to make a terminal");
        return;
    };
    term.wait_for("chatting with", 1);
    term.type_keys("Hi\r");
    term.wait_for("finish reason", 1);
    // The up arrow brings "Hi" back; Enter sends it again.
    term.type_keys("\x1b[A\r");
    term.wait_for("finish reason", 2);
    // A trailing backslash continues the turn on the next line.
    term.type_keys("Tell me\\\r");
    std::thread::sleep(std::time::Duration::from_millis(300));
    term.type_keys("about cats\r");
    term.wait_for("finish reason", 3);
    term.type_keys("/exit\r");
    let status = term.child.wait().unwrap();
    let text = term.text();
    assert!(status.success(), "{text}");
    let turns: Vec<usize> = text
        .lines()
        .filter_map(|l| l.strip_prefix("stats: prompt "))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(turns.len(), 3, "three turns: {text}");
    assert!(
        !text.contains("^[[A"),
        "the arrow key was not printed as text"
    );
    let history =
        std::fs::read_to_string(data.path().join("llama-rs").join("chat_history")).unwrap();
    assert!(history.contains("Hi"), "{history}");
}

#[test]
fn system_stats_and_continued_lines_over_a_pipe() {
    let output = llama_cli()
        .arg("chat")
        .args(greedy_args(4))
        .write_stdin("/system Answer in French.\nTell me\\\nabout cats\n/stats\n/system\n/exit\n")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("system prompt set"), "{stderr}");
    assert!(stderr.contains("system prompt cleared"), "{stderr}");
    // /stats printed the figures of the one answer: a single turn (the continued line).
    assert_eq!(
        stderr.matches("stats: prompt ").count(),
        1,
        "one turn, its figures shown by /stats: {stderr}"
    );
}
