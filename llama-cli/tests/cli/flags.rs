//! llama.cpp's flags that users type (issue 17): `-f`, `-tb`, `--mlock`, `--no-mmap`, `-r`,
//! the Mirostat, DRY and XTC samplers, `--keep` with `--context-shift`, `-fa auto` under a
//! budget, `--repeat-last-n -1`, and the thread default.

use std::io::Write;

use super::support::{greedy_args, llama_cli, model};

fn stdout_of(args: &[&str], text: &str) -> (String, String) {
    let output = llama_cli().args(args).arg(text).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{args:?}: {stderr}");
    (String::from_utf8(output.stdout).unwrap(), stderr)
}

fn prompt_args(n: u32, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["prompt".to_string()];
    args.extend(greedy_args(n));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run(n: u32, extra: &[&str], text: &str) -> (String, String) {
    let args = prompt_args(n, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    stdout_of(&args, text)
}

const QUESTION: &str = "What is the capital of France? Answer in one sentence.";

#[test]
fn prompt_from_a_file_equals_the_argument() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    write!(f, "{QUESTION}").unwrap();
    let (from_arg, _) = run(12, &[], QUESTION);
    let args = prompt_args(12, &["-f", f.path().to_str().unwrap()]);
    let output = llama_cli().args(&args).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8(output.stdout).unwrap(), from_arg);
}

#[test]
fn load_modes_and_batch_threads_give_the_same_answer() {
    let (mapped, _) = run(12, &["--stats"], QUESTION);
    let (read, stats) = run(12, &["--no-mmap", "-tb", "1", "--stats"], QUESTION);
    assert_eq!(read, mapped, "--no-mmap reads the same weights");
    // Read into memory, the weights are anonymous: almost nothing of the file is mapped.
    let file_backed = stats
        .lines()
        .find_map(|l| l.split("file-backed ").nth(1))
        .expect("stats line");
    assert!(
        file_backed.starts_with(|c: char| c.is_ascii_digit()) && !file_backed.contains("GiB"),
        "{stats}"
    );
    let (locked, _) = run(12, &["--mlock"], QUESTION);
    assert_eq!(locked, mapped);
}

#[test]
fn a_reverse_prompt_ends_the_answer_after_it() {
    let (full, _) = run(24, &[], QUESTION);
    let word = "capital";
    let at = full
        .find(word)
        .expect("the greedy answer names the capital");
    let (cut, _) = run(24, &["-r", word], QUESTION);
    assert_eq!(cut.trim_end(), &full[..at + word.len()], "{full:?}");
}

#[test]
fn mirostat_dry_and_xtc_run_and_are_seeded() {
    let story = "Once upon a time there was a cat. The cat";
    let m = model().display().to_string();
    let sampled = |extra: &[&str]| {
        let mut args = vec![
            "prompt",
            "-m",
            m.as_str(),
            "-n",
            "24",
            "-c",
            "1024",
            "-t",
            "2",
        ];
        args.extend(["--temp", "0.8", "--seed", "7"]);
        args.extend_from_slice(extra);
        stdout_of(&args, story).0
    };
    for sampler in [
        &["--mirostat", "2"][..],
        &["--mirostat", "1", "--mirostat-ent", "3"][..],
        &["--xtc-probability", "0.5", "--xtc-threshold", "0.1"][..],
        &["--dry-multiplier", "0.8", "--dry-sequence-breaker", "."][..],
    ] {
        let (a, b) = (sampled(sampler), sampled(sampler));
        assert!(!a.trim().is_empty(), "{sampler:?}");
        assert_eq!(a, b, "{sampler:?}: the same seed gives the same text");
    }
    // DRY changes what greedy decoding repeats.
    let echo = "one two three one two three one two three one two three";
    let (plain, _) = run(32, &["--raw"], echo);
    let (dry, _) = run(32, &["--raw", "--dry-multiplier", "2.0"], echo);
    assert_ne!(plain, dry, "DRY penalises the repetition");
    let err = llama_cli()
        .args(prompt_args(4, &["--mirostat", "3"]))
        .arg("x")
        .output()
        .unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("mirostat"));
}

#[test]
fn context_shift_lets_an_answer_outgrow_the_context() {
    let args = |shift: bool| {
        let mut a: Vec<&str> = vec!["prompt", "-m"];
        a.push(Box::leak(model().display().to_string().into_boxed_str()));
        a.extend([
            "--raw",
            "--ignore-eos",
            "--temp",
            "0",
            "-t",
            "2",
            "-c",
            "256",
        ]);
        a.extend(["-n", "400", "--stats", "--keep", "4"]);
        if shift {
            a.push("--context-shift");
        }
        a
    };
    let (_, stopped) = stdout_of(&args(false), "Once upon a time");
    assert!(stopped.contains("finish reason context_full"), "{stopped}");
    let (_, shifted) = stdout_of(&args(true), "Once upon a time");
    assert!(shifted.contains("finish reason length"), "{shifted}");
    assert!(shifted.contains("generation 400 tokens"), "{shifted}");
}

#[test]
fn flash_attention_stays_auto_under_a_budget_unless_the_plan_needs_it() {
    let plan = |extra: &[&str]| {
        let output = llama_cli()
            .args(["plan", "-m", model().to_str().unwrap(), "--max-mem", "1G"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    assert!(plan(&[]).contains("| flash-attn | auto"), "{}", plan(&[]));
    let quantised = plan(&["--cache-type-v", "q8_0"]);
    assert!(quantised.contains("| flash-attn | on |"), "{quantised}");
    assert!(quantised.contains("needs it"), "{quantised}");
}

#[test]
fn repeat_last_n_minus_one_and_the_thread_default() {
    let (a, _) = run(
        8,
        &["--repeat-penalty", "1.3", "--repeat-last-n", "-1"],
        QUESTION,
    );
    assert!(!a.trim().is_empty());
    let output = llama_cli()
        .args(["prompt", "--print-config", "x"])
        .output()
        .unwrap();
    let t: toml::Table = String::from_utf8(output.stdout).unwrap().parse().unwrap();
    let threads = t["threads"].as_integer().unwrap() as usize;
    let logical = std::thread::available_parallelism().unwrap().get();
    assert!(threads >= 1 && threads <= logical, "{threads} of {logical}");
    if let Some(physical) = llama_core::machine::physical_cores() {
        assert_eq!(threads, physical, "the default is the physical cores");
    }
}

#[test]
fn lora_adapters_change_the_answer_by_their_scale() {
    use llama_core::gguf::synthetic::SyntheticModel;
    use llama_core::gguf::GgmlType;
    let dir = tempfile::tempdir().unwrap();
    let base = SyntheticModel::llama(GgmlType::F16);
    let model_path = dir.path().join("base.gguf");
    base.write_to(&model_path).unwrap();
    let adapter = dir.path().join("adapter.gguf");
    base.lora_adapter(8, 3).write_to_path(&adapter).unwrap();
    let m = model_path.display().to_string();
    let a = adapter.display().to_string();
    let answer = |extra: &[&str]| {
        let mut args = vec![
            "prompt",
            "-m",
            m.as_str(),
            "--raw",
            "--temp",
            "0",
            "-n",
            "24",
        ];
        args.extend(["-t", "2", "-c", "256", "--ignore-eos"]);
        args.extend_from_slice(extra);
        stdout_of(&args, "hello world").0
    };
    let plain = answer(&[]);
    assert_eq!(
        answer(&["--lora-scaled", &a, "0"]),
        plain,
        "scale 0 is the base model"
    );
    let adapted = answer(&["--lora", &a]);
    assert_ne!(adapted, plain, "the adapter changes the greedy answer");
    assert_eq!(answer(&["--lora-scaled", &a, "1"]), adapted);
    // The plan counts the adapter with the weights.
    let weights = |extra: &[&str]| {
        let output = llama_cli()
            .args([
                "plan",
                "--json",
                "-m",
                m.as_str(),
                "--max-mem",
                "1G",
                "-c",
                "256",
            ])
            .args(extra)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        v["plan"]["breakdown"]["weights"].as_u64().unwrap()
    };
    let adapter_bytes = std::fs::metadata(&adapter).unwrap().len();
    assert_eq!(weights(&["--lora", &a]), weights(&[]) + adapter_bytes);
    // An adapter for another model, or no file, is a clean error.
    let other = dir.path().join("other.gguf");
    SyntheticModel {
        n_embd: 128,
        ..SyntheticModel::llama(GgmlType::F16)
    }
    .lora_adapter(4, 1)
    .write_to_path(&other)
    .unwrap();
    for bad in [other.display().to_string(), "/nonexistent.gguf".to_string()] {
        let output = llama_cli()
            .args(["prompt", "-m", m.as_str(), "-n", "2", "--lora", &bad, "hi"])
            .output()
            .unwrap();
        let stderr = super::support::assert_clean_failure(&output);
        assert!(stderr.contains(bad.as_str()), "{stderr}");
    }
}
