//! Shared helpers: the real test model and running the binary.

use std::path::PathBuf;
use std::process::Output;

use assert_cmd::Command;

/// The SmolLM2 test model: `$LLAMA_RS_MODEL`, else the repo cache that
/// `scripts/fetch-model.sh` fills. The README's test command fetches it first.
pub fn model() -> PathBuf {
    if let Some(path) = std::env::var_os("LLAMA_RS_MODEL") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "test model missing at {}: run scripts/fetch-model.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A command for the binary under test, with a quiet log.
pub fn llama_cli() -> Command {
    let mut cmd = Command::cargo_bin("llama-cli").expect("binary built");
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Asserts the process failed cleanly: non-zero exit (not a signal), an `error:` line on
/// stderr, and no panic. Returns stderr.
pub fn assert_clean_failure(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.code().is_some(),
        "killed by a signal: {:?}\n{stderr}",
        output.status
    );
    assert_ne!(output.status.code(), Some(0), "should fail:\n{stderr}");
    assert!(!stderr.contains("panicked"), "panic:\n{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "panic:\n{stderr}");
    assert!(stderr.contains("error"), "no error message:\n{stderr}");
    assert!(
        output.stdout.is_empty(),
        "stdout should stay empty on error"
    );
    stderr
}

/// Arguments for a deterministic, short run on the test model.
pub fn greedy_args(n: u32) -> Vec<String> {
    vec![
        "-m".into(),
        model().display().to_string(),
        "--temp".into(),
        "0".into(),
        "-n".into(),
        n.to_string(),
        "-c".into(),
        "1024".into(),
        "-t".into(),
        "2".into(),
    ]
}

/// One of llama.cpp's own tools (`llama-perplexity`, `llama-quantize`, ...) as
/// `../shared/tools/build-llama-cpp-reference.sh` builds them: `$LLAMA_CPP_REFERENCE_BIN`, else
/// `~/.cache/llama-cpp-reference/llama.cpp/build/bin`. `None` (the comparison is skipped) when
/// it is not built.
pub fn reference_tool(name: &str) -> Option<std::process::Command> {
    let dir = std::env::var_os("LLAMA_CPP_REFERENCE_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/llama-cpp-reference/llama.cpp/build/bin"))
        })?;
    let tool = dir.join(name);
    if !tool.is_file() {
        eprintln!(
            "skipped: the comparison with {name}: not built at {} (run ../shared/tools/build-llama-cpp-reference.sh)",
            tool.display()
        );
        return None;
    }
    let mut cmd = std::process::Command::new(tool);
    cmd.env("LD_LIBRARY_PATH", &dir);
    Some(cmd)
}

/// A file of the test data directory (`llama-cli/tests/data`).
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The python of the venv `scripts/python-env.sh` makes (the `openai`, `anthropic`,
/// `huggingface_hub` and `schemathesis` packages); `None` when the script fails.
pub fn python_env() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(root.join("scripts/python-env.sh"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    Some(PathBuf::from(stdout.lines().last()?.trim()))
}
