//! Session files: chat `/save` and `/load` across processes, `prompt --prompt-cache`.

use super::support::{assert_clean_failure, greedy_args, llama_cli};

fn stdout_of(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn a_saved_chat_continues_in_another_process_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("owls.session");
    let file = file.to_str().unwrap();
    let uninterrupted = llama_cli()
        .arg("chat")
        .args(greedy_args(24))
        .write_stdin(format!(
            "Tell me about owls.\n/save {file}\nTell me one more fact.\n"
        ))
        .output()
        .unwrap();
    let uninterrupted = stdout_of(&uninterrupted);
    let answers: Vec<&str> = uninterrupted.lines().filter(|l| !l.is_empty()).collect();
    assert!(answers.len() >= 2, "{uninterrupted:?}");
    let resumed = llama_cli()
        .arg("chat")
        .args(greedy_args(24))
        .arg("--stats")
        .write_stdin(format!("/load {file}\nTell me one more fact.\n"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr).into_owned();
    let resumed = stdout_of(&resumed);
    assert!(stderr.contains("loaded 2 messages"), "{stderr}");
    assert_eq!(
        resumed.trim(),
        answers.last().unwrap().trim(),
        "same continuation"
    );
    let reused: usize = stderr
        .split("stats: prompt ")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(reused > 20, "the loaded KV was reused: {stderr}");
}

#[test]
fn prompt_cache_reuses_the_prompt_and_refuses_another_layout() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("prompt.cache");
    let cache = cache.to_str().unwrap();
    let run = |extra: &[&str]| {
        llama_cli()
            .arg("prompt")
            .args(greedy_args(12))
            .args(["--stats", "--prompt-cache", cache])
            .args(extra)
            .arg("Explain photosynthesis in one sentence.")
            .output()
            .unwrap()
    };
    let first = run(&[]);
    let first_stderr = String::from_utf8_lossy(&first.stderr).into_owned();
    let first_text = stdout_of(&first);
    assert!(
        first_stderr.contains("stats: prompt cache"),
        "{first_stderr}"
    );
    assert!(
        first_stderr.contains(": 0 of"),
        "nothing to reuse the first time: {first_stderr}"
    );
    let second = run(&[]);
    let second_stderr = String::from_utf8_lossy(&second.stderr).into_owned();
    assert_eq!(stdout_of(&second), first_text);
    assert!(
        !second_stderr.contains(": 0 of"),
        "the cached prompt is reused: {second_stderr}"
    );
    // A cache saved with f16 K/V is refused for a q8_0 cache.
    let other = run(&["--cache-type-k", "q8_0"]);
    let stderr = assert_clean_failure(&other);
    assert!(stderr.contains("another model or cache type"), "{stderr}");
    // A corrupt file is an error, not a crash.
    std::fs::write(cache, b"LRSSEQ02 garbage").unwrap();
    let stderr = assert_clean_failure(&run(&[]));
    assert!(stderr.contains("not a llama-rs session file"), "{stderr}");
}
