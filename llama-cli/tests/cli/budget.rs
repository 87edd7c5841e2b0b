//! The memory budget as a user meets it: a grid of budgets and contexts on the real model where
//! every cell is either refused before loading or runs within the budget, `plan`, `--strict`,
//! `--on-full reject`, and a grammar run within its plan.

use super::support::{assert_clean_failure, llama_cli, model};

/// Parses a size printed by llama-cli (`138.41 MiB`, `1.00 GiB`, `512 B`) into bytes.
fn parse_size(text: &str) -> u64 {
    let mut parts = text.split_whitespace();
    let value: f64 = parts.next().unwrap().parse().unwrap();
    let scale = match parts.next().unwrap() {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1048576.0,
        "GiB" => 1073741824.0,
        other => panic!("unit {other}"),
    };
    (value * scale) as u64
}

fn stat_after<'a>(stderr: &'a str, prefix: &str) -> Option<&'a str> {
    stderr.lines().find_map(|l| l.strip_prefix(prefix))
}

#[test]
fn grid_of_budgets_and_contexts_never_exceeds_the_budget() {
    let m = model();
    let budgets: [(&str, u64); 6] = [
        ("64M", 64 << 20),
        ("120M", 120 << 20),
        ("160M", 160 << 20),
        ("256M", 256 << 20),
        ("512M", 512 << 20),
        ("1G", 1 << 30),
    ];
    let contexts = [256u32, 1024, 4096, 8192];
    let mut refused = 0;
    let mut ran = 0;
    for (flag, budget) in budgets {
        for ctx in contexts {
            let output = llama_cli()
                .args([
                    "prompt",
                    "-m",
                    m.to_str().unwrap(),
                    "-n",
                    "8",
                    "--temp",
                    "0",
                    "-t",
                    "2",
                ])
                .args(["--stats", "--max-mem", flag, "-c", &ctx.to_string()])
                .arg("Name three colours.")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(
                output.status.code().is_some(),
                "{flag} ctx {ctx}: killed by a signal\n{stderr}"
            );
            assert!(!stderr.contains("panicked"), "{flag} ctx {ctx}: {stderr}");
            if output.status.success() {
                ran += 1;
                let peak = stat_after(&stderr, "stats: peak RSS ").expect("peak RSS reported");
                let peak = parse_size(peak.split(" (").next().unwrap());
                assert!(
                    peak <= budget,
                    "{flag} ctx {ctx}: peak RSS {peak} over budget {budget}\n{stderr}"
                );
                assert!(!stderr.contains("budget exceeded"), "{stderr}");
                assert!(!output.stdout.is_empty());
            } else {
                refused += 1;
                let stderr = assert_clean_failure(&output);
                assert!(
                    stderr.contains("does not fit"),
                    "{flag} ctx {ctx}: {stderr}"
                );
                assert!(stderr.contains("--max-mem"), "tells what to do: {stderr}");
            }
        }
    }
    assert!(
        refused >= contexts.len(),
        "the smallest budget is refused at every context"
    );
    assert!(ran >= 3 * contexts.len(), "larger budgets run");
}

#[test]
fn strict_refuses_with_a_suggestion_that_works() {
    let m = model();
    let base = [
        "prompt",
        "-m",
        m.to_str().unwrap(),
        "-n",
        "4",
        "--temp",
        "0",
        "--max-mem",
        "256M",
    ];
    let output = llama_cli()
        .args(base)
        .args(["-c", "8192", "--strict", "Hi"])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&output);
    let suggested = stderr
        .split("fits with --ctx-size ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or_else(|| panic!("no --ctx-size suggestion: {stderr}"))
        .to_string();
    let output = llama_cli()
        .args(base)
        .args(["-c", &suggested, "--strict", "Hi"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn degrading_is_announced() {
    let m = model();
    let output = llama_cli()
        .args([
            "prompt",
            "-m",
            m.to_str().unwrap(),
            "-n",
            "4",
            "--max-mem",
            "256M",
            "-c",
            "8192",
            "Hi",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("note: reduced --ctx-size from 8192"),
        "{stderr}"
    );
}

#[test]
fn plan_reports_the_breakdown_and_largest_context() {
    let m = model();
    let output = llama_cli()
        .args([
            "plan",
            "--json",
            "-m",
            m.to_str().unwrap(),
            "--max-mem",
            "1G",
            "-c",
            "4096",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let plan = &v["plan"];
    assert_eq!(plan["candidate"]["n_ctx"], 4096);
    // 4096 cells x 23040 bytes (30 layers x 3 KV heads x 64 x 2 x f16).
    assert_eq!(plan["breakdown"]["kv"], 4096 * 23040);
    assert!(plan["breakdown"]["compute"].as_u64().unwrap() > 0);
    assert!(v["total"].as_u64().unwrap() <= 1 << 30);
    assert!(plan["max_ctx_that_fits"].as_u64().unwrap() >= 8192);
    // Planning sizes the buffers without allocating them: the planner's own peak RSS stays far
    // below the KV cache (90 MiB) plus compute buffers it sized.
    let planned_buffers =
        plan["breakdown"]["kv"].as_u64().unwrap() + plan["breakdown"]["compute"].as_u64().unwrap();
    assert!(
        v["planner_peak_rss"].as_u64().unwrap() < planned_buffers,
        "{v}"
    );
    let output = llama_cli()
        .args(["plan", "-m", m.to_str().unwrap(), "--max-mem", "64M"])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&output);
    assert!(stderr.contains("raise --max-mem to at least"), "{stderr}");
    let output = llama_cli()
        .args(["plan", "-m", m.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(assert_clean_failure(&output).contains("--max-mem"));
}

#[test]
fn on_full_reject_refuses_a_turn_that_cannot_fit() {
    let m = model();
    let base = [
        "prompt",
        "-m",
        m.to_str().unwrap(),
        "-c",
        "256",
        "-n",
        "300",
    ];
    let output = llama_cli()
        .args(base)
        .args(["--on-full", "reject", "Hi"])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&output);
    assert!(stderr.contains("--on-full reject"), "{stderr}");
    // The default policy stops the answer early instead.
    let output = llama_cli()
        .args(base)
        .args([
            "--stats",
            "--raw",
            "--temp",
            "1",
            "--seed",
            "7",
            "Once upon a time",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
}

#[test]
fn weights_over_the_budget_stream_from_disk_with_the_same_answer() {
    let m = model();
    let base = [
        "prompt",
        "-m",
        m.to_str().unwrap(),
        "-n",
        "16",
        "--temp",
        "0",
        "-c",
        "256",
        "-t",
        "2",
    ];
    let question = "What is the capital of France?";
    let resident = llama_cli().args(base).arg(question).output().unwrap();
    assert!(resident.status.success());
    // 110M holds the buffers and about half of the 92 MiB of weights.
    let streamed = llama_cli()
        .args(base)
        .args(["--max-mem", "110M", "--stats", question])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&streamed.stderr).into_owned();
    assert!(streamed.status.success(), "{stderr}");
    assert!(stderr.contains("streaming layers from disk"), "{stderr}");
    assert_eq!(
        streamed.stdout, resident.stdout,
        "greedy output is identical"
    );
    let peak = stat_after(&stderr, "stats: peak RSS ").expect("peak reported");
    assert!(
        parse_size(peak.split(" (").next().unwrap()) <= 110 << 20,
        "{stderr}"
    );
    // Without streaming the same budget is refused before loading.
    let refused = llama_cli()
        .args(base)
        .args(["--max-mem", "110M", "--stream", "off", question])
        .output()
        .unwrap();
    assert!(assert_clean_failure(&refused).contains("does not fit"));
}

#[test]
fn budget_below_one_streamed_layer_is_refused_with_the_minimum_that_works() {
    let m = model();
    let base = [
        "prompt",
        "-m",
        m.to_str().unwrap(),
        "-n",
        "4",
        "--temp",
        "0",
        "-t",
        "2",
        "--stats",
    ];
    // 50M cannot hold the runtime, the global tensors and one layer.
    let refused = llama_cli()
        .args(base)
        .args(["--max-mem", "50M", "Hello"])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&refused);
    assert!(stderr.contains("even streaming"), "{stderr}");
    let minimum = stderr
        .split("raise --max-mem to at least ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no minimum in {stderr}"))
        .to_string();
    // The minimum it names works, streaming, within that budget.
    let ran = llama_cli()
        .args(base)
        .args(["--max-mem", &minimum, "Hello"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&ran.stderr).into_owned();
    assert!(ran.status.success(), "--max-mem {minimum}: {stderr}");
    assert!(stderr.contains("stats: streaming"), "{stderr}");
    let budget: llama_core::ByteSize = minimum.parse().unwrap();
    let peak = stat_after(&stderr, "stats: peak RSS ").expect("peak reported");
    assert!(
        parse_size(peak.split(" (").next().unwrap()) <= budget.0,
        "{stderr}"
    );
}

#[test]
fn plan_shows_the_tier_of_every_layer() {
    let m = model();
    let plan = |budget: &str| {
        let out = llama_cli()
            .args([
                "plan",
                "-m",
                m.to_str().unwrap(),
                "--max-mem",
                budget,
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let tiers = |v: &serde_json::Value| -> Vec<String> {
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["tier"].as_str().unwrap().to_string())
            .collect()
    };
    let roomy = plan("400M");
    assert_eq!(roomy["streams"], false);
    assert_eq!(tiers(&roomy), vec!["resident"; 30]);
    let tight = plan("110M");
    assert_eq!(tight["streams"], true);
    let t = tiers(&tight);
    assert_eq!(t.len(), 30);
    assert!(t.iter().any(|t| t == "streamed"), "{t:?}");
    let placement = &tight["placement"];
    assert!(placement["peak_bytes"].as_u64().unwrap() <= placement["budget"].as_u64().unwrap());
    // (Determinism for the same inputs is a unit test of `Placement::plan`: here the weight
    // budget depends on the runtime overhead measured in each process.)
    // The text form names every layer's tier.
    let text = llama_cli()
        .args(["plan", "-m", m.to_str().unwrap(), "--max-mem", "110M"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("| layer | weights | tier |"), "{text}");
    assert_eq!(
        text.matches("disk (streamed)").count() + text.matches("| ram |").count(),
        31
    );
}

#[test]
fn gpu_flags_on_a_cpu_build_warn_and_run_on_the_cpu() {
    if !llama_core::ffi::compiled_gpu_backends().is_empty() {
        eprintln!("skipped: this build has a GPU backend; the test is for CPU-only builds");
        return;
    }
    let m = model();
    let out = llama_cli()
        .args(["prompt", "-m", m.to_str().unwrap(), "-n", "2", "-t", "2"])
        .args(["--max-vram", "4G", "--temp", "0", "Hi"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("this build has no GPU backend"), "{stderr}");
}

/// A grammar costs llama.cpp a decoded copy of every candidate token for each token it samples
/// (14 MiB on SmolLM2's 49,152 tokens with this grammar): the plan counts it, so the peak stays
/// within the plan.
#[test]
fn a_grammar_run_stays_within_its_plan() {
    let m = model();
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(40);
    let run = |grammar: &[&str]| {
        let output = llama_cli()
            .args(["prompt", "-m", m.to_str().unwrap(), "--raw", "-n", "16"])
            .args(["--temp", "0.8", "--ignore-eos", "-t", "2", "--stats"])
            .args(["--max-mem", "1G", "-c", "512"])
            .args(grammar)
            .arg(&prompt)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        assert!(!stderr.contains("budget exceeded"), "{stderr}");
        let planned = stat_after(&stderr, "stats: planned ").expect("plan reported");
        let planned = parse_size(planned.split(" of budget").next().unwrap());
        let peak = stat_after(&stderr, "stats: peak RSS ").expect("peak reported");
        let peak = parse_size(peak.split(" (").next().unwrap());
        (planned, peak, stderr)
    };
    let (_, plain_peak, _) = run(&[]);
    let (planned, peak, stderr) = run(&["--grammar", "root ::= [a-z]+"]);
    assert!(
        peak > plain_peak + (5 << 20),
        "the grammar costs memory: {peak} against {plain_peak}"
    );
    assert!(
        peak <= planned,
        "peak {peak} over the plan {planned}\n{stderr}"
    );
}
