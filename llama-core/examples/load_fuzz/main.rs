//! Load fuzzer: semantically mutated models through llama.cpp, each in a child process.
//!
//!   cargo run --release -p llama-core --example load_fuzz -- [--seconds 120] [--seed 1]
//!       [--out DIR] [--model FILE]... [--reader-only] [--max-mutations 2] [--timeout 60]
//!
//! Mutants start from every generated shape (`gguf::synthetic`, Q8_0, and the llama shape in
//! F16 and Q4_0) and the real models given with `--model` (default: the SmolLM2 test model
//! when present), edited through the GGUF writer: odd hyperparameters, wrong types and
//! per-layer arrays, NaN and infinite floats, reshaped, missing, extra and retyped tensors,
//! vocabularies of other lengths or with duplicates, out-of-range special tokens, other
//! tokenizers, rope scaling types, alignments and architectures (see `mutate.rs`).
//!
//! Each mutant goes through our check in this process (`check_model_file`: the reader and
//! the preflight; `--reader-only`: the reader alone, to see what llama.cpp would get without
//! the preflight), then through llama.cpp in a child (`--child FILE`: load without our
//! checks, create a context, tokenize, decode, render the chat template; `RLIMIT_DATA` 2
//! GiB). The child's end is classified: ok, a clean refusal, a signal, a timeout, a peak RSS
//! over 1 GiB. Two things are findings, saved under `DIR/findings/`:
//!
//! - *unprotected*: llama.cpp crashed, hung or blew up on a file our check accepted;
//! - *over-rejected*: llama.cpp ran a file the preflight refused.
//!
//! The report gives the counts per mutation class and the distinct crash signatures. The
//! exit status is 1 when there is any finding. `scripts/fuzz-load.sh` runs it.

mod child;
mod mutate;
mod run;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use llama_core::gguf::synthetic::hostile::{Hostile, Unchecked};
use llama_core::gguf::synthetic::Shape;
use llama_core::gguf::writer::GgufWriter;
use llama_core::gguf::{GgmlType, GgufFile};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use self::mutate::{Base, Class, Mutant};
use self::run::{ChildRun, Outcome, Verdict};

const USAGE: &str = "usage: load_fuzz [--seconds N] [--seed N] [--out DIR] [--model FILE]... \
    [--reader-only] [--max-mutations N] [--timeout SECONDS]\n       \
    load_fuzz --catalogue [--reader-only] [--out DIR]\n       load_fuzz --write NAME FILE\n       \
    load_fuzz --child FILE";

/// Command-line settings.
struct Settings {
    seconds: u64,
    seed: u64,
    out: PathBuf,
    models: Vec<PathBuf>,
    reader_only: bool,
    max_mutations: usize,
    timeout: Duration,
    catalogue: bool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, path] if flag == "--child" => return ExitCode::from(child::run(Path::new(path))),
        [flag, name, path] if flag == "--write" => return write_one(name, Path::new(path)),
        _ => {}
    }
    let run = |s: Settings| {
        if s.catalogue {
            catalogue(&s)
        } else {
            fuzz(&s)
        }
    };
    match parse(&args).and_then(run) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// Writes the catalogue's file `name` (`gguf::synthetic::hostile`) to `path`.
fn write_one(name: &str, path: &Path) -> ExitCode {
    let Some(h) = Hostile::from_name(name) else {
        let names: Vec<&str> = Hostile::ALL.iter().map(|h| h.name()).collect();
        eprintln!("error: no catalogue file {name}; one of: {}", names.join(", "));
        return ExitCode::from(2);
    };
    match h.build().write_to_path(path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

fn parse(args: &[String]) -> Result<Settings, String> {
    let default_model = PathBuf::from(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut s = Settings {
        seconds: 120,
        seed: 1,
        out: PathBuf::from("fuzz/artifacts/load_fuzz"),
        models: Vec::new(),
        reader_only: false,
        max_mutations: 2,
        timeout: Duration::from_secs(60),
        catalogue: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value\n{USAGE}"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--seconds" => s.seconds = number(value()?)?,
            "--seed" => s.seed = number(value()?)?,
            "--out" => s.out = PathBuf::from(value()?),
            "--model" => s.models.push(PathBuf::from(value()?)),
            "--reader-only" => s.reader_only = true,
            "--catalogue" => s.catalogue = true,
            "--max-mutations" => s.max_mutations = number(value()?)?.max(1) as usize,
            "--timeout" => s.timeout = Duration::from_secs(number(value()?)?),
            _ => return Err(format!("unexpected argument {flag}\n{USAGE}")),
        }
    }
    if s.models.is_empty() && default_model.exists() {
        s.models.push(default_model);
    }
    Ok(s)
}

/// The models mutants start from.
fn bases(settings: &Settings) -> Result<Vec<Base>, String> {
    let mut bases: Vec<Base> = Shape::ALL
        .into_iter()
        .map(|shape| (shape, GgmlType::Q8_0))
        .chain([(Shape::Llama, GgmlType::F16), (Shape::Llama, GgmlType::Q4_0)])
        .map(|(shape, t)| Base {
            name: format!("{shape}-{t}"),
            writer: shape.model(t).to_writer(),
        })
        .collect();
    for path in &settings.models {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file = GgufFile::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().into_owned());
        bases.push(Base {
            name,
            writer: GgufWriter::from_parsed(&file, &bytes),
        });
    }
    Ok(bases)
}

/// Counts for one mutation class.
#[derive(Default)]
struct Counts {
    mutants: u64,
    reader: u64,
    preflight: u64,
    ok: u64,
    refused: u64,
    bad_protected: u64,
    bad_unprotected: u64,
    over_rejected: u64,
}

/// One distinct bad outcome.
struct Signature {
    count: u64,
    protected: u64,
    example: String,
}

fn fuzz(settings: &Settings) -> Result<bool, String> {
    let io = |e: std::io::Error| e.to_string();
    let findings = settings.out.join("findings");
    std::fs::create_dir_all(&findings).map_err(io)?;
    let bases = bases(settings)?;
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let current = settings.out.join("current.gguf");
    let scratch = settings.out.join("child.stderr");

    // The bases themselves first: each must pass our check and run in llama.cpp.
    let mut sane = true;
    for base in &bases {
        let run = write_and_run(&base.writer, &current, settings, &scratch)?;
        if !run.0.accepted() || run.1.outcome != Outcome::Ok {
            eprintln!(
                "base {} does not load cleanly: {:?}, {:?}\n{}",
                base.name, run.0, run.1.outcome, run.1.stderr_tail
            );
            sane = false;
        }
    }
    if !sane {
        return Err("a base model fails without mutation".into());
    }

    let mut per_class: BTreeMap<Class, Counts> = BTreeMap::new();
    let mut signatures: BTreeMap<String, Signature> = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let (mut executions, mut unprotected, mut over_rejected) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let deadline = Duration::from_secs(settings.seconds);
    while start.elapsed() < deadline {
        // The real models are large: one mutant in eight starts from one.
        let synthetic = bases.len() - settings.models.len();
        let index = if settings.models.is_empty() || rng.random_range(0..8) != 0 {
            rng.random_range(0..synthetic)
        } else {
            rng.random_range(synthetic..bases.len())
        };
        let mutant = mutate::mutate(&bases[index], &mut rng, settings.max_mutations);
        if mutant.classes.is_empty() {
            continue;
        }
        let (verdict, run) = write_and_run(&mutant.writer, &current, settings, &scratch)?;
        executions += 1;
        let bad = run.outcome.is_bad();
        let over = run.outcome == Outcome::Ok && matches!(verdict, Verdict::Preflight(_));
        for class in &mutant.classes {
            let c = per_class.entry(*class).or_default();
            c.mutants += 1;
            match &verdict {
                Verdict::Reader(_) => c.reader += 1,
                Verdict::Preflight(_) => c.preflight += 1,
                Verdict::Accepted => {}
            }
            match (&run.outcome, bad) {
                (Outcome::Ok, _) => c.ok += 1,
                (Outcome::Refused(_), _) => c.refused += 1,
                (_, true) if verdict.accepted() => c.bad_unprotected += 1,
                _ => c.bad_protected += 1,
            }
            c.over_rejected += u64::from(over);
        }
        if let (Outcome::Refused(_), Some(reason)) = (&run.outcome, run::refusal_reason(&run)) {
            *reasons.entry(reason).or_default() += 1;
        }
        if bad {
            let sig = run::signature(&run);
            let entry = signatures.entry(sig.clone()).or_insert(Signature {
                count: 0,
                protected: 0,
                example: mutant.description.clone(),
            });
            entry.count += 1;
            if verdict.accepted() {
                unprotected += 1;
                if entry.count - entry.protected <= 3 {
                    save_finding(&findings, "unprotected", unprotected, &mutant, &run, &current)?;
                }
            } else {
                entry.protected += 1;
            }
        }
        if over {
            over_rejected += 1;
            if over_rejected <= 20 {
                save_finding(&findings, "over-rejected", over_rejected, &mutant, &run, &current)?;
                eprintln!("over-rejected: {} ({verdict:?})", mutant.description);
            }
        }
    }
    let _ = std::fs::remove_file(&current);
    report(
        settings,
        executions,
        start.elapsed(),
        &per_class,
        &signatures,
        &reasons,
    );
    println!(
        "\nfindings: {unprotected} unprotected (llama.cpp crashed, hung or blew up on a file we \
         accept), {over_rejected} over-rejected (the preflight refused a file llama.cpp runs)"
    );
    Ok(unprotected == 0 && over_rejected == 0)
}

/// Runs every file of `gguf::synthetic::hostile` once and prints what our check and llama.cpp
/// did with it. Fails when an outcome disagrees with the catalogue's own claim.
fn catalogue(settings: &Settings) -> Result<bool, String> {
    std::fs::create_dir_all(&settings.out).map_err(|e| e.to_string())?;
    let current = settings.out.join("current.gguf");
    let scratch = settings.out.join("child.stderr");
    let mut agree = true;
    println!("{:<38} {:<22} {:<20} {:<14} what", "file", "llama.cpp", "expected", "our check");
    for h in Hostile::ALL {
        let (verdict, run) = write_and_run(&h.build(), &current, settings, &scratch)?;
        let got = match &run.outcome {
            Outcome::Ok => "runs".to_string(),
            Outcome::Refused(stage) => format!("refuses ({stage})"),
            Outcome::Signal(6) => "SIGABRT".to_string(),
            Outcome::Signal(8) => "SIGFPE".to_string(),
            Outcome::Signal(11) => "SIGSEGV".to_string(),
            other => format!("{other:?}"),
        };
        let matches = match h.unchecked() {
            Unchecked::Aborts => run.outcome == Outcome::Signal(6),
            Unchecked::Segfaults => run.outcome == Outcome::Signal(11),
            Unchecked::DividesByZero => run.outcome == Outcome::Signal(8),
            Unchecked::LoopsAllocating => {
                run.outcome == Outcome::Signal(6) && run.stderr_tail.contains("bad_alloc")
            }
            Unchecked::OverflowsStack => {
                run.outcome == Outcome::Signal(6) && run.stderr_tail.contains("overflowed its stack")
            }
            Unchecked::AllocatesGigabytes => matches!(run.outcome, Outcome::HugeRss(_)),
            Unchecked::RefusesCleanly => matches!(run.outcome, Outcome::Refused(_)),
            Unchecked::Runs => run.outcome == Outcome::Ok,
        };
        let ours_agree = settings.reader_only || verdict.accepted() != h.refused_by_preflight();
        let ours = match (&verdict, ours_agree) {
            (Verdict::Accepted, true) => "accepts",
            (Verdict::Accepted, false) => "accepts (NO)",
            (Verdict::Reader(_), _) => "reader (NO)",
            (Verdict::Preflight(_), true) => "preflight",
            (Verdict::Preflight(_), false) => "preflight (NO)",
        };
        let detail = match (&verdict, run.outcome.is_bad()) {
            (Verdict::Preflight(e) | Verdict::Reader(e), _) => e.clone(),
            (_, true) => run::signature(&run),
            _ => run::refusal_reason(&run).unwrap_or_default(),
        };
        println!(
            "{:<38} {:<22} {:<20} {:<14} {}",
            h.name(),
            got,
            format!("{:?}{}", h.unchecked(), if matches { "" } else { " (NO)" }),
            ours,
            detail
        );
        agree &= matches && ours_agree && !matches!(verdict, Verdict::Reader(_));
    }
    let _ = std::fs::remove_file(&current);
    Ok(agree)
}

fn write_and_run(
    writer: &GgufWriter,
    path: &Path,
    settings: &Settings,
    scratch: &Path,
) -> Result<(Verdict, ChildRun), String> {
    writer
        .write_to_path(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let verdict = run::check(path, settings.reader_only);
    let child = run::run_child(path, settings.timeout, scratch).map_err(|e| e.to_string())?;
    Ok((verdict, child))
}

/// Files above this size are recorded by description only.
const MAX_SAVED_BYTES: u64 = 32 << 20;

fn save_finding(
    dir: &Path,
    kind: &str,
    n: u64,
    mutant: &Mutant,
    run: &ChildRun,
    current: &Path,
) -> Result<(), String> {
    let stem = dir.join(format!("{kind}-{n:04}"));
    let size = std::fs::metadata(current).map_or(0, |m| m.len());
    if size <= MAX_SAVED_BYTES {
        std::fs::copy(current, stem.with_extension("gguf")).map_err(|e| e.to_string())?;
    }
    let text = format!(
        "{}\noutcome: {:?}\nsignature: {}\n--- child stderr (tail) ---\n{}\n",
        mutant.description,
        run.outcome,
        run::signature(run),
        run.stderr_tail
    );
    std::fs::write(stem.with_extension("txt"), text).map_err(|e| e.to_string())
}

fn report(
    settings: &Settings,
    executions: u64,
    elapsed: Duration,
    per_class: &BTreeMap<Class, Counts>,
    signatures: &BTreeMap<String, Signature>,
    reasons: &BTreeMap<String, u64>,
) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!(
        "load_fuzz: {executions} mutants in {secs:.0} s ({:.1}/s), seed {}, check: {}",
        executions as f64 / secs,
        settings.seed,
        if settings.reader_only {
            "reader only"
        } else {
            "reader + preflight"
        }
    );
    println!(
        "\n{:<15} {:>7} {:>7} {:>9} {:>6} {:>8} {:>10} {:>11} {:>6}",
        "class",
        "mutants",
        "reader",
        "preflight",
        "ok",
        "refused",
        "bad:caught",
        "bad:missed",
        "over"
    );
    for (class, c) in per_class {
        println!(
            "{:<15} {:>7} {:>7} {:>9} {:>6} {:>8} {:>10} {:>11} {:>6}",
            class,
            c.mutants,
            c.reader,
            c.preflight,
            c.ok,
            c.refused,
            c.bad_protected,
            c.bad_unprotected,
            c.over_rejected
        );
    }
    println!("\nbad outcomes by signature (count, caught by our check, example):");
    for (sig, s) in signatures {
        println!("  {:>5} {:>5}  {sig}\n              e.g. {}", s.count, s.protected, s.example);
    }
    println!("\nllama.cpp's clean refusals, most frequent reasons:");
    let mut reasons: Vec<_> = reasons.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1));
    for (reason, n) in reasons.into_iter().take(15) {
        println!("  {n:>5}  {reason}");
    }
}
