//! Bad input of every kind gets a one-line error and a non-zero exit, never a panic or abort.

use std::io::Write;

use super::support::{assert_clean_failure, llama_cli, model};

fn fails_with(args: &[&str], expect: &str) {
    let output = llama_cli().args(args).output().unwrap();
    let stderr = assert_clean_failure(&output);
    assert!(stderr.contains(expect), "expected '{expect}' in:\n{stderr}");
}

#[test]
fn missing_model_path() {
    fails_with(
        &["prompt", "-m", "/nonexistent/model.gguf", "hi"],
        "does not exist",
    );
}

#[test]
fn directory_as_model() {
    let dir = tempfile::tempdir().unwrap();
    fails_with(
        &["prompt", "-m", dir.path().to_str().unwrap(), "hi"],
        "is a directory",
    );
}

#[test]
fn non_gguf_file() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"this is not a model, just some text that is long enough to read")
        .unwrap();
    fails_with(
        &["prompt", "-m", f.path().to_str().unwrap(), "hi"],
        "not a valid GGUF model",
    );
}

#[test]
fn empty_file() {
    let f = tempfile::NamedTempFile::new().unwrap();
    fails_with(
        &["prompt", "-m", f.path().to_str().unwrap(), "hi"],
        "not a valid GGUF model",
    );
}

#[test]
fn truncated_gguf() {
    let bytes = std::fs::read(model()).unwrap();
    for keep in [100usize, 4096, bytes.len() / 2, bytes.len() - 1] {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&bytes[..keep]).unwrap();
        fails_with(
            &["prompt", "-m", f.path().to_str().unwrap(), "hi"],
            "not a valid GGUF model",
        );
    }
}

#[test]
fn bad_size_string() {
    let m = model();
    fails_with(
        &[
            "prompt",
            "-m",
            m.to_str().unwrap(),
            "--max-mem",
            "12X",
            "hi",
        ],
        "invalid size",
    );
}

#[test]
fn top_p_out_of_range() {
    let m = model();
    fails_with(
        &["prompt", "-m", m.to_str().unwrap(), "--top-p", "1.5", "hi"],
        "top-p",
    );
}

#[test]
fn negative_temperature() {
    let m = model();
    fails_with(
        &["prompt", "-m", m.to_str().unwrap(), "--temp", "-1", "hi"],
        "temp",
    );
}

#[test]
fn unknown_config_key() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "ctx-size = 512\ncontext-size = 9").unwrap();
    let path = f.path().to_str().unwrap().to_string();
    let output = llama_cli()
        .args(["prompt", "--config", &path, "hi"])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&output);
    assert!(
        stderr.contains("context-size") && stderr.contains(&path),
        "{stderr}"
    );
}

#[test]
fn wrong_config_type() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "top-k = \"forty\"").unwrap();
    let path = f.path().to_str().unwrap().to_string();
    let output = llama_cli()
        .args(["chat", "--config", &path])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&output);
    assert!(
        stderr.contains("top-k") && stderr.contains(&path),
        "{stderr}"
    );
}

#[test]
fn missing_config_file() {
    fails_with(
        &["prompt", "--config", "/nonexistent/cfg.toml", "hi"],
        "cannot read config file",
    );
}

#[test]
fn unknown_flag_and_missing_model() {
    let output = llama_cli()
        .args(["prompt", "--no-such-flag"])
        .output()
        .unwrap();
    assert_clean_failure(&output);
    fails_with(&["prompt", "hi"], "no model given");
}

#[test]
fn unknown_chat_template_name() {
    let m = model();
    fails_with(
        &[
            "prompt",
            "-m",
            m.to_str().unwrap(),
            "--no-jinja",
            "--chat-template",
            "nope",
            "-n",
            "1",
            "hi",
        ],
        "unknown chat template",
    );
}

#[test]
fn closed_stdout_is_not_a_panic() {
    // `show | head -1`: the reader goes away; we must exit quietly, not panic.
    let bin = assert_cmd::cargo::cargo_bin("llama-cli");
    let m = model();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' show --tensors -m '{}' | head -n 1",
            bin.display(),
            m.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
}

/// Well-formed GGUF that llama.cpp would abort or crash on (`gguf::synthetic::hostile`, one
/// file per kind of check): refused by the preflight with the key or tensor at fault, by
/// every command that reads a model, before llama.cpp sees it.
#[test]
fn hostile_models_are_refused_before_llama_cpp() {
    use llama_core::gguf::synthetic::hostile::Hostile;
    let dir = tempfile::tempdir().unwrap();
    for (hostile, names) in [
        (Hostile::UnknownRopeScaling, "key llama.rope.scaling.type"),
        (Hostile::TooManyExperts, "key llama.expert_count"),
        (Hostile::DuplicateToken, "token 301"),
        (Hostile::MissingByteToken, "key tokenizer.ggml.tokens"),
        (Hostile::QuantizedNorm, "tensor output_norm.weight"),
        (Hostile::IntegerMatrix, "tensor blk.0.attn_q.weight"),
        (Hostile::UnalignedTensorData, "tensor token_embd.weight"),
        (Hostile::UnevenKvHeads, "key llama.attention.head_count_kv"),
        (Hostile::ZeroTimeStepRank, "key mamba.ssm.time_step_rank"),
    ] {
        let path = dir.path().join(format!("{hostile}.gguf"));
        hostile.build().write_to_path(&path).unwrap();
        let m = path.to_str().unwrap();
        for args in [
            vec!["prompt", "-m", m, "hi"],
            vec!["show", "-m", m],
            vec!["bench", "-m", m, "-p", "8", "-n", "1", "-r", "1"],
        ] {
            let output = llama_cli().args(&args).output().unwrap();
            let stderr = assert_clean_failure(&output);
            assert!(
                stderr.contains("cannot be loaded safely") && stderr.contains(names),
                "{hostile} ({}): expected '{names}' in:\n{stderr}",
                args[0]
            );
        }
    }
}

/// A file llama.cpp refuses cleanly (a missing tensor) gets past the preflight, and
/// llama.cpp's own refusal is the error.
#[test]
fn broken_but_harmless_model_is_left_to_llama_cpp() {
    use llama_core::gguf::synthetic::hostile::Hostile;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-tensor.gguf");
    Hostile::MissingTensor.build().write_to_path(&path).unwrap();
    fails_with(
        &["prompt", "-m", path.to_str().unwrap(), "hi"],
        "llama.cpp could not load",
    );
}
