//! The budget holds for every model shape (issue 12): generated models (gemma3-style sliding
//! window, a 262,144-token vocabulary, a mixture of experts, Mamba's recurrent state) and
//! SmolLM2, over a grid of budgets and contexts. Every run either is refused before loading or
//! runs with a measured peak RSS at most the budget and at most the plan; the plan is close to
//! the peak. Prompts fill the context but for the answer, so the compute buffers are used as
//! planned. The shapes grown like small real models (`SyntheticModel::scaled_up`) are planned
//! within 5% of their peaks when resident; the small ones and the streamed runs, whose peaks
//! are mostly the process's fixed overhead, within 5% or a few MiB. A streaming window's
//! read-ahead is in the plan but not in the RSS, and is left out of the comparison.

use std::path::{Path, PathBuf};

use llama_core::gguf::synthetic::Shape;
use llama_core::gguf::GgmlType;

use super::support::{assert_clean_failure, llama_cli, model};

/// Bytes of a size llama-cli prints (`12.50 MiB`).
fn size(text: &str) -> u64 {
    let mut parts = text.split_whitespace();
    let v: f64 = parts.next().unwrap().parse().unwrap();
    let unit = match parts.next().unwrap() {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1048576.0,
        "GiB" => 1073741824.0,
        other => panic!("unit {other}"),
    };
    (v * unit) as u64
}

fn stat<'a>(stderr: &'a str, prefix: &str) -> &'a str {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` in:\n{stderr}"))
}

/// What one accepted run measured.
struct Measured {
    planned: u64,
    peak: u64,
    /// The streaming window's read-ahead: counted in the plan, held in the page cache, not in
    /// the process's RSS (`Placement::read_ahead_bytes`); 0 when nothing is streamed.
    read_ahead: u64,
    /// Whether layers were streamed from disk.
    streamed: bool,
}

impl Measured {
    /// The plan, the peak RSS and the read-ahead from a run's `--stats` lines.
    fn from_stats(stderr: &str) -> Measured {
        let planned = size(
            stat(stderr, "stats: planned ")
                .split(" of budget")
                .next()
                .unwrap(),
        );
        let peak = size(stat(stderr, "stats: peak RSS ").split(" (").next().unwrap());
        let streaming = stderr
            .lines()
            .find_map(|l| l.strip_prefix("stats: streaming "));
        let streamed = streaming.is_some_and(|l| !l.starts_with("0 of"));
        let read_ahead = streaming.map_or(0, |l| {
            size(
                l.split("read ahead ")
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap(),
            )
        });
        Measured {
            planned,
            peak,
            read_ahead,
            streamed,
        }
    }

    /// How far what the plan counts in the process's RSS (all of it but the read-ahead) is
    /// above the peak; printed with `label`.
    fn report_over(&self, label: &str) -> u64 {
        let over = (self.planned - self.read_ahead).saturating_sub(self.peak);
        eprintln!(
            "{label}: planned {} (read ahead {}), peak {}, {:.1}% over",
            self.planned,
            self.read_ahead,
            self.peak,
            100.0 * over as f64 / self.peak as f64
        );
        over
    }
}

/// Tokens each run generates.
const N_PREDICT: u32 = 4;

/// Characters of prompt text that fill a context of `ctx` tokens but for [`N_PREDICT`]
/// answer tokens: the generated models' tokenizer makes one token of each `x`, and four more
/// of the beginning of the text.
fn filling_prompt(ctx: u32) -> String {
    "x".repeat(ctx as usize - 4 - N_PREDICT as usize)
}

/// Runs `text` as the prompt under `budget` at context `ctx`, generating [`N_PREDICT`]
/// tokens; `None` when it was refused (cleanly) before loading.
fn run(path: &Path, text: &str, budget: &str, ctx: u32) -> Option<Measured> {
    run_or_refusal(path, text, budget, ctx).ok()
}

/// [`run`], with the refusal's message when it was refused.
fn run_or_refusal(path: &Path, text: &str, budget: &str, ctx: u32) -> Result<Measured, String> {
    let n_predict = N_PREDICT.to_string();
    let output = llama_cli()
        .args([
            "prompt",
            "-m",
            path.to_str().unwrap(),
            "--raw",
            "-n",
            &n_predict,
        ])
        .args(["--temp", "0", "-t", "2", "--stats", "--ignore-eos"])
        .args(["--max-mem", budget, "-c", &ctx.to_string()])
        .write_stdin(text)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let cell = format!("{} --max-mem {budget} -c {ctx}", path.display());
    if !output.status.success() {
        let stderr = assert_clean_failure(&output);
        assert!(
            stderr.contains("does not fit") || stderr.contains("the context holds"),
            "{cell}: {stderr}"
        );
        return Err(stderr);
    }
    assert!(!stderr.contains("budget exceeded"), "{cell}: {stderr}");
    let measured = Measured::from_stats(&stderr);
    let Measured { planned, peak, .. } = measured;
    let budget_bytes = size(
        stat(&stderr, "stats: planned ")
            .split(" of budget ")
            .nth(1)
            .unwrap()
            .split(" (")
            .next()
            .unwrap(),
    );
    assert!(
        peak <= budget_bytes,
        "{cell}: peak {peak} over the budget\n{stderr}"
    );
    assert!(
        peak <= planned,
        "{cell}: peak {peak} over the plan {planned}\n{stderr}"
    );
    assert!(
        planned <= budget_bytes,
        "{cell}: plan {planned} over the budget\n{stderr}"
    );
    Ok(measured)
}

/// The context a refused run said it holds (`the context holds N`).
fn held_context(refusal: &str) -> Option<u32> {
    refusal
        .split("the context holds ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Runs a prompt that fills `n_ctx`, the context `plan` gave `-c ctx` under `budget`. The run
/// plans again, from its own baseline, which may differ from `plan`'s by a few hundred KiB of
/// code pages: a context at the budget's edge may then come out one step (256 tokens)
/// smaller. Then the prompt is too long for it, and the cell runs once more with a prompt that
/// fills the context the run holds. Returns that context and the measurement.
fn run_filling(path: &Path, budget: &str, ctx: u32, n_ctx: u32) -> (u32, Measured) {
    let cell = format!("{} --max-mem {budget} -c {ctx}", path.display());
    match run_or_refusal(path, &filling_prompt(n_ctx), budget, ctx) {
        Ok(m) => (n_ctx, m),
        Err(refusal) => {
            let Some(held) = held_context(&refusal).filter(|&held| held < n_ctx) else {
                panic!("{cell}: refused, but `plan` gave it -c {n_ctx}: {refusal}")
            };
            match run_or_refusal(path, &filling_prompt(held), budget, ctx) {
                Ok(m) => (held, m),
                Err(refusal) => panic!("{cell}: refused at -c {held} too: {refusal}"),
            }
        }
    }
}

/// A generated model of `shape`.
fn generated(dir: &Path, shape: Shape) -> PathBuf {
    let path = dir.join(format!("{shape}.gguf"));
    shape.model(GgmlType::Q8_0).write_to(&path).unwrap();
    path
}

/// How far above the peak the plan of a small generated shape, or of a streamed run, may be
/// when it is not within 5%: their peaks are 25-60 MiB, mostly the process's fixed overhead, so
/// 5% is 1.3-3 MiB, about what the margin's fixed part holds as room for another CPU and the
/// page cache's state (1-3 MiB that no run uses, resident or streamed); a streamed MoE's
/// streamed layers also hold experts the prompt never routed to. Measured 2026-12-02 (AMD
/// EPYC), once the streamed mapping kept small pages and its pinned layers were mapped in full:
/// release, streamed grown shapes up to 3.3 MiB over (Mamba, `-c 2048 --max-mem 48M`); debug
/// (the suite's default profile, whose larger baseline streams the small shapes at 40M), up to
/// 3.4 MiB (grown Mamba, `-c 2048 --max-mem 64M`) and 2.6 MiB (small MoE at 40M); again once
/// the compute buffers' unwritten inputs were left out and the margin's fixed part held their
/// room: release up to 3.4 MiB (grown MoE, `-c 2048 --max-mem 48M`), debug up to 3.4 MiB
/// (small MoE at 40M) and 3.0 MiB (grown llama at 48M). Before that
/// change (Intel Xeon), up to 4.4 MiB, with streamed peaks that moved by up to 1.7 MiB from run
/// to run; this bound was 6 MiB (release) and 8 MiB (debug).
const SMALL_SHAPE_SLACK: u64 = 5 << 20;

/// The plan exceeds the peak by at most 5%, or by at most [`SMALL_SHAPE_SLACK`].
fn assert_close(name: &str, m: &Measured) {
    let over = m.report_over(name);
    assert!(
        over * 20 <= m.peak || over <= SMALL_SHAPE_SLACK,
        "{name}: planned {} for a peak of {} ({:.1}% over)",
        m.planned,
        m.peak,
        100.0 * over as f64 / m.peak as f64
    );
}

/// Prints the plan and the peak of `label`'s run, and checks that what the plan counts in
/// the RSS (all of it but a streaming window's read-ahead) exceeds the peak by at most 5%.
fn assert_within_five_percent(label: &str, m: &Measured) {
    let over = m.report_over(label);
    assert!(
        over * 20 <= m.peak,
        "{label}: planned {} (read ahead {}) for a peak of {} ({:.1}% over)",
        m.planned,
        m.read_ahead,
        m.peak,
        100.0 * over as f64 / m.peak as f64
    );
}

#[test]
fn every_generated_shape_stays_within_budget_and_plan() {
    let dir = tempfile::tempdir().unwrap();
    for shape in Shape::ALL {
        let path = generated(dir.path(), shape);
        let mut accepted = 0;
        for ctx in [512u32, 2048] {
            let text = filling_prompt(ctx);
            for budget in ["40M", "64M", "1G"] {
                if let Some(m) = run(&path, &text, budget, ctx) {
                    accepted += 1;
                    assert_close(&format!("{shape} -c {ctx} {budget}"), &m);
                }
            }
        }
        assert!(accepted >= 2, "{shape}: the larger budgets run");
    }
}

/// The context a `budget` gives `path` at `-c ctx`, as `plan` says; `None` when it refuses.
fn planned_context(path: &Path, budget: &str, ctx: u32) -> Option<u32> {
    let output = llama_cli()
        .args(["plan", "--json", "-m", path.to_str().unwrap()])
        .args(["--max-mem", budget, "-c", &ctx.to_string()])
        .output()
        .unwrap();
    if !output.status.success() {
        assert_clean_failure(&output);
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    Some(v["plan"]["candidate"]["n_ctx"].as_u64().unwrap() as u32)
}

/// The shapes grown like small real models (`SyntheticModel::scaled_up`: 24-58 MiB of
/// weights), over a grid of budgets and contexts: budgets that stream layers from disk, that
/// shorten the context, and that hold everything. Each accepted run's prompt fills the context
/// it was given but for the answer; its peak is at most the plan, and what the plan counts in
/// the RSS is at most 5% above the peak. A streamed run's peak is small (40-60 MiB) next to
/// the margin's fixed room (1-3 MiB of the plan a run does not use, as in every resident run)
/// and, for the MoE, the experts the prompt never routed to: those are held to
/// [`assert_close`] (measured 3.0-7.3% over, release, AMD EPYC, docs/MEMORY.md). Before the
/// graph metadata and the CPU work buffer were counted from the model, the grown gemma3-swa
/// peaked 2.6 MiB above its plan; before the streaming window's read-ahead was told apart and
/// the streaming part measured anew, the streamed runs were planned 8-19% above their peaks.
#[test]
fn every_grown_shape_is_planned_within_five_percent_of_its_peak() {
    let dir = tempfile::tempdir().unwrap();
    let mut streamed = 0;
    for shape in Shape::ALL {
        let model = shape.model(GgmlType::Q8_0).scaled_up();
        let path = dir.path().join(format!("{shape}-grown.gguf"));
        model.write_to(&path).unwrap();
        // The 262,144-token vocabulary's load alone needs about 100 MiB.
        let budgets: &[&str] = if shape == Shape::LargeVocab {
            &["104M", "1G"]
        } else {
            &["48M", "64M", "1G"]
        };
        let mut accepted = 0;
        for ctx in [512u32, 2048] {
            for budget in budgets {
                let cell = format!("{shape} grown -c {ctx} --max-mem {budget}");
                let Some(n_ctx) = planned_context(&path, budget, ctx) else {
                    continue;
                };
                let (n_ctx, m) = run_filling(&path, budget, ctx, n_ctx);
                accepted += 1;
                let label = format!("{cell} (-c {n_ctx})");
                if m.streamed {
                    streamed += 1;
                    assert_close(&label, &m);
                } else {
                    assert_within_five_percent(&label, &m);
                }
            }
        }
        assert!(accepted >= 2, "{shape} grown: the larger budgets run");
        std::fs::remove_file(&path).unwrap();
    }
    assert!(streamed >= 4, "the smallest budgets stream layers");
}

#[test]
fn smollm2_plan_is_within_five_percent_of_the_peak() {
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(70);
    for (ctx, budget) in [(1024u32, "1G"), (4096, "1G"), (4096, "200M")] {
        let Some(m) = run(&model(), &text, budget, ctx) else {
            panic!("SmolLM2 -c {ctx} --max-mem {budget} was refused")
        };
        assert_within_five_percent(&format!("SmolLM2 -c {ctx} --max-mem {budget}"), &m);
    }
}

#[test]
fn sliding_window_layers_are_capped_unless_swa_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = generated(dir.path(), Shape::Gemma3Swa);
    let kv = |extra: &[&str]| {
        let output = llama_cli()
            .args([
                "plan",
                "--json",
                "-m",
                path.to_str().unwrap(),
                "--max-mem",
                "1G",
            ])
            .args(["-c", "8192"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        v["plan"]["breakdown"]["kv"].as_u64().unwrap()
    };
    let capped = kv(&[]);
    let full = kv(&["--swa-full"]);
    // Five of six layers slide over 512 tokens: capped, they hold 512 + 512 cells, not 8192.
    let spec =
        llama_core::ModelCacheSpec::from_gguf(&llama_core::gguf::GgufModel::open(&path).unwrap())
            .unwrap();
    let expected = |swa_full: bool| {
        spec.kv_bytes(&llama_core::cache_spec::KvCacheParams {
            swa_full,
            ..llama_core::cache_spec::KvCacheParams::new(8192)
        })
        .unwrap()
        .total_bytes()
    };
    assert_eq!(
        capped,
        expected(false),
        "llama.cpp's capped KV equals the cache spec's"
    );
    assert_eq!(full, expected(true));
    assert!(capped * 3 < full, "capped {capped}, full {full}");
}

/// Runs `path` with a prompt that fills `ctx` but for the answer, `-t threads`, `extra` flags
/// and `env` under `--max-mem 1G`; asserts that it succeeds and peaks within its plan.
fn assert_runs_within_plan(
    label: &str,
    path: &Path,
    threads: &str,
    ctx: u32,
    extra: &[&str],
    env: &[(&str, &str)],
) {
    let mut command = llama_cli();
    for (key, value) in env {
        command.env(key, value);
    }
    // Greedy unless `extra` names a temperature.
    let temp: &[&str] = if extra.contains(&"--temp") {
        &[]
    } else {
        &["--temp", "0"]
    };
    let output = command
        .args(["prompt", "-m", path.to_str().unwrap(), "--raw"])
        .args(["-n", &N_PREDICT.to_string()])
        .args(temp)
        .args(["-t", threads, "--stats", "--ignore-eos"])
        .args(extra)
        .args(["--max-mem", "1G", "-c", &ctx.to_string()])
        .write_stdin(filling_prompt(ctx))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{label}: {stderr}");
    let Measured { planned, peak, .. } = Measured::from_stats(&stderr);
    assert!(
        peak <= planned,
        "{label}: peak {peak} over the plan {planned}\n{stderr}"
    );
}

/// Compute threads reserve their stacks against the `RLIMIT_DATA` backstop and each uses its own
/// flash-attention scratch: with 16 threads (the default on a 16-core machine) the run starts
/// (it used to abort with `libgomp: Thread creation failed`) and peaks within its plan.
#[test]
fn sixteen_threads_start_under_the_backstop_and_stay_within_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let path = generated(dir.path(), Shape::Gemma3Swa);
    assert_runs_within_plan("-t 16", &path, "16", 512, &[], &[]);
}

#[test]
fn openmp_stacks_of_omp_stacksize_start_under_the_backstop() {
    // Eight 64 MiB stacks reserve 512 MiB of address space: more than the backstop's slack
    // and eight default (8 MiB) stacks, so the backstop must count OMP_STACKSIZE's.
    let dir = tempfile::tempdir().unwrap();
    let path = generated(dir.path(), Shape::Llama);
    let env = [("OMP_STACKSIZE", "64M")];
    assert_runs_within_plan("OMP_STACKSIZE=64M", &path, "8", 512, &[], &env);
}

/// Without flash attention, the attention scores are converted in the CPU work buffer for their
/// product with V, a micro-batch times the context's cells times the heads: at `-c 2048` these
/// runs peaked 2.7-4.3 MiB above their plans before the plan counted it.
#[test]
fn runs_without_flash_attention_stay_within_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    for shape in [Shape::Llama, Shape::Gemma3Swa] {
        let path = generated(dir.path(), shape);
        let label = format!("{shape} -fa off");
        assert_runs_within_plan(&label, &path, "2", 2048, &["-fa", "off"], &[]);
    }
}

/// The overhead `plan` counts for the large vocabulary at `--temp TEMP`.
fn planned_overhead(path: &Path, temp: &str) -> u64 {
    let output = llama_cli()
        .args([
            "plan",
            "-m",
            path.to_str().unwrap(),
            "--json",
            "--max-mem",
            "1G",
        ])
        .args(["-c", "8192", "--temp", temp])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    plan["plan"]["breakdown"]["overhead"].as_u64().unwrap()
}

/// Greedy decoding (without penalties or a grammar) reads the most likely token from the
/// logits, so the plan counts no sampler copies for it: 20 bytes a vocabulary entry less than
/// for sampling, 5 MiB on a 262,144-token vocabulary. Both runs stay within their plans.
#[test]
fn greedy_decoding_plans_no_sampler_copies_and_sampling_stays_within_its_plan() {
    let dir = tempfile::tempdir().unwrap();
    let path = generated(dir.path(), Shape::LargeVocab);
    let sampled = planned_overhead(&path, "0.8");
    let greedy = planned_overhead(&path, "0");
    use llama_core::budget::margin::{ARGMAX_BYTES_PER_VOCAB_TOKEN, BYTES_PER_VOCAB_TOKEN};
    let expected = 262_144 * (BYTES_PER_VOCAB_TOKEN - ARGMAX_BYTES_PER_VOCAB_TOKEN);
    // Each plan measures the process's baseline anew, which moves by up to about 1.2 MiB
    // between processes (`planner::SUGGESTED_ROOM`).
    assert!(
        sampled.abs_diff(greedy + expected) < llama_core::planner::SUGGESTED_ROOM,
        "sampling planned {sampled}, greedy {greedy}: expected {expected} between them"
    );
    assert_runs_within_plan("large-vocab greedy", &path, "2", 8192, &[], &[]);
    let sampling = ["--temp", "0.8", "--seed", "1"];
    assert_runs_within_plan("large-vocab --temp 0.8", &path, "2", 8192, &sampling, &[]);
}
