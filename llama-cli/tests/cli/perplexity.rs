//! `perplexity` (issue 17): the figure agrees with llama.cpp's llama-perplexity on the same
//! text, context and batch (within 1%; in practice to every printed digit), the chunking and
//! scoring are llama-perplexity's, KL-divergence base files move between llama.cpp and
//! llama-cli in both directions, the context is planned under --max-mem, and bad input is a
//! clean error.

use std::path::Path;

use super::support::{assert_clean_failure, data, llama_cli, model, reference_tool};

fn ours(args: &[&str]) -> serde_json::Value {
    let output = llama_cli()
        .arg("perplexity")
        .arg("-m")
        .arg(model())
        .args(["-t", "2", "--json"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

/// `Final estimate: PPL = 17.1063 +/- 2.28748` in llama-perplexity's log.
fn final_estimate(log: &str) -> f64 {
    log.lines()
        .find_map(|l| l.split("Final estimate: PPL = ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no final estimate in:\n{log}"))
}

/// `Mean    KLD:   0.084536 ±   0.006043` in a KL-divergence report.
fn mean_kld(text: &str) -> f64 {
    text.lines()
        .find_map(|l| l.split("Mean    KLD:").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no mean KLD in:\n{text}"))
}

fn text() -> String {
    data("perplexity.txt").display().to_string()
}

#[test]
fn perplexity_agrees_with_llama_perplexity() {
    // 850 tokens: 6 chunks of 128, two per decode (-b 256).
    let v = ours(&["-f", &text(), "-c", "128", "-b", "256"]);
    let r = &v["result"];
    assert_eq!(r["chunking"]["n_ctx"], 128);
    assert_eq!(r["chunking"]["n_seq"], 2);
    let n_chunk = r["chunking"]["n_chunk"].as_u64().unwrap();
    assert_eq!(n_chunk, v["n_tokens"].as_u64().unwrap() / 128);
    // The second half of each chunk, less its last position: 63 of 128.
    assert_eq!(r["n_scored"].as_u64().unwrap(), n_chunk * 63);
    assert_eq!(r["running_ppl"].as_array().unwrap().len() as u64, n_chunk);
    let ppl = r["ppl"].as_f64().unwrap();
    assert!(ppl.is_finite() && ppl > 1.0, "{v}");
    // One chunk at a time (-b 128) and in pieces (-b 64) score the same positions.
    for batch in ["128", "64"] {
        let other = ours(&["-f", &text(), "-c", "128", "-b", batch])["result"]["ppl"]
            .as_f64()
            .unwrap();
        assert!(
            (other - ppl).abs() / ppl < 0.01,
            "-b {batch}: {other} vs {ppl}"
        );
    }
    let Some(mut reference) = reference_tool("llama-perplexity") else {
        return;
    };
    let out = reference
        .arg("-m")
        .arg(model())
        .args(["-f", &text(), "-c", "128", "-b", "256", "-t", "2"])
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    let theirs = final_estimate(&log);
    let diff = (ppl - theirs).abs() / theirs;
    eprintln!(
        "perplexity: llama-cli {ppl:.4}, llama-perplexity {theirs:.4} ({:.4}% apart)",
        diff * 100.0
    );
    assert!(diff < 0.01, "llama-cli {ppl} vs llama-perplexity {theirs}");
}

#[test]
fn kl_divergence_base_files_move_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.kld");
    let base_str = base.to_str().unwrap();
    let plain = ours(&["-f", &text(), "-c", "128", "-b", "256", "--chunks", "3"]);
    let saved = ours(&[
        "-f",
        &text(),
        "-c",
        "128",
        "-b",
        "256",
        "--chunks",
        "3",
        "--kl-divergence-base",
        base_str,
    ]);
    // Saving computes the log-likelihood in single precision, as llama-perplexity does.
    let (a, b) = (
        saved["result"]["ppl"].as_f64().unwrap(),
        plain["result"]["ppl"].as_f64().unwrap(),
    );
    assert!((a - b).abs() / b < 1e-5, "{a} vs {b}");
    // llama.cpp's layout: header, 3 x 128 tokens, 3 x 63 rows of (49152 + 4) 16-bit values.
    let n_vocab = 49152u64;
    assert_eq!(
        std::fs::metadata(&base).unwrap().len(),
        20 + 3 * 128 * 4 + 3 * 63 * (n_vocab + 4) * 2
    );
    // The same model against its own base: nothing diverges (16-bit log-probabilities).
    let compared = ours(&["--kl-divergence", "--kl-divergence-base", base_str]);
    let kl = &compared["result"]["kl"];
    assert_eq!(kl["count"], 3 * 63);
    assert!(kl["kld_mean"]["value"].as_f64().unwrap() < 1e-3, "{kl}");
    assert!(kl["same_top"]["value"].as_f64().unwrap() > 0.99, "{kl}");
    let ratio = kl["ln_ppl_ratio"]["value"].as_f64().unwrap();
    assert!(ratio.abs() < 1e-3, "{kl}");
    let Some(mut reference) = reference_tool("llama-perplexity") else {
        return;
    };
    // llama-perplexity reads our base file ...
    let out = reference
        .arg("-m")
        .arg(model())
        .args([
            "-c",
            "128",
            "-b",
            "256",
            "-t",
            "2",
            "--kl-divergence",
            "--kl-divergence-base",
            base_str,
        ])
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{log}");
    let theirs = mean_kld(&log);
    assert!(theirs < 1e-3, "{log}");
    // ... and we read the one it writes, with the same statistics.
    let their_base = dir.path().join("theirs.kld");
    let out = reference_tool("llama-perplexity")
        .unwrap()
        .arg("-m")
        .arg(model())
        .args([
            "-f",
            &text(),
            "-c",
            "128",
            "-b",
            "256",
            "-t",
            "2",
            "--chunks",
            "3",
        ])
        .arg("--kl-divergence-base")
        .arg(&their_base)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let identical = std::fs::read(&base).unwrap() == std::fs::read(&their_base).unwrap();
    eprintln!("base files of llama-cli and llama-perplexity byte-identical: {identical}");
    let from_theirs = ours(&[
        "--kl-divergence",
        "--kl-divergence-base",
        their_base.to_str().unwrap(),
    ]);
    let k = from_theirs["result"]["kl"]["kld_mean"]["value"]
        .as_f64()
        .unwrap();
    assert!(
        (k - theirs).abs() < 1e-4,
        "ours {k} vs llama-perplexity {theirs}"
    );
}

#[test]
fn perplexity_plans_the_context_under_max_mem() {
    // 1G holds everything; under 150M the weights (92 MiB) do not fit beside the context and
    // are streamed from disk. The figure is that of an unlimited run with the micro-batch the
    // plan chose (llama.cpp's own figure moves a little with the micro-batch).
    for budget in ["1G", "150M"] {
        let fits = ours(&["-f", &text(), "-c", "128", "-b", "256", "--max-mem", budget]);
        let ub = fits["context"]["n_ubatch"].to_string();
        let free = ours(&["-f", &text(), "-c", "128", "-b", "256", "-ub", &ub]);
        let (ppl, free) = (
            fits["result"]["ppl"].as_f64().unwrap(),
            free["result"]["ppl"].as_f64().unwrap(),
        );
        assert!(
            (ppl - free).abs() / free < 1e-4,
            "--max-mem {budget}: {ppl} vs {free}"
        );
        assert_eq!(
            fits["context"]["streams_layers"],
            budget == "150M",
            "--max-mem {budget}: {fits}"
        );
    }
    let out = llama_cli()
        .arg("perplexity")
        .arg("-m")
        .arg(model())
        .args(["-f", &text(), "-c", "128", "--max-mem", "64M"])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("--max-mem"), "{stderr}");
}

#[test]
fn perplexity_bad_input_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "Only a few words.").unwrap();
    let not_text = dir.path().join("binary.txt");
    std::fs::write(&not_text, [0xffu8, 0xfe, 0x00, 0x80]).unwrap();
    let cut = dir.path().join("cut.kld");
    std::fs::write(&cut, b"_logits_\x80\x00\x00\x00").unwrap();
    let run = |args: &[&str]| llama_cli().arg("perplexity").args(args).output().unwrap();
    let m = model().display().to_string();
    let t = text();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["-m", &m, "-f", short.to_str().unwrap()],
            "needs at least 1024",
        ),
        (
            vec!["-m", &m, "-f", "/no/such/text.txt"],
            "cannot read /no/such/text.txt",
        ),
        (
            vec!["-m", &m, "-f", not_text.to_str().unwrap()],
            "not UTF-8",
        ),
        (vec!["-m", &m], "no text"),
        (vec!["-m", &m, "-f", &t, "-c", "2"], "at least 4"),
        (vec!["-m", "/no/model.gguf", "-f", &t], "does not exist"),
        (
            vec![
                "-m",
                &m,
                "--kl-divergence",
                "--kl-divergence-base",
                cut.to_str().unwrap(),
            ],
            "not a KL-divergence base file",
        ),
    ];
    for (args, expected) in cases {
        let stderr = assert_clean_failure(&run(&args));
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(!Path::new("/no/such/text.txt").exists());
}

#[test]
fn lora_adapters_apply_to_the_perplexity_context() {
    use llama_core::gguf::synthetic::SyntheticModel;
    use llama_core::gguf::GgmlType;
    let dir = tempfile::tempdir().unwrap();
    let base = SyntheticModel::llama(GgmlType::F16);
    let model_path = dir.path().join("base.gguf");
    base.write_to(&model_path).unwrap();
    let adapter = dir.path().join("adapter.gguf");
    base.lora_adapter(8, 3).write_to_path(&adapter).unwrap();
    let a = adapter.display().to_string();
    let ppl = |extra: &[&str]| {
        let output = llama_cli()
            .arg("perplexity")
            .arg("-m")
            .arg(&model_path)
            .args(["-t", "2", "--json", "-f", &text(), "-c", "128", "-b", "128"])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        v["result"]["ppl"].as_f64().unwrap()
    };
    let plain = ppl(&[]);
    assert_eq!(
        ppl(&["--lora-scaled", &a, "0"]),
        plain,
        "scale 0 is the base model"
    );
    let adapted = ppl(&["--lora", &a]);
    assert_ne!(adapted, plain, "the adapter changes the figure");
    assert_eq!(ppl(&["--lora-scaled", &a, "1"]), adapted);
}
