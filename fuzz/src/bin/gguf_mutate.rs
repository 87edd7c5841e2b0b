//! A libFuzzer-free mutation fuzzer for the GGUF reader, for toolchains where
//! cargo-fuzz cannot run (no nightly, no sanitizer support).
//!
//! It mutates seed files (the generated seeds, plus every file in the directories given
//! with `--corpus`) with byte flips, random bytes, "interesting" 32/64-bit values,
//! truncation, chunk duplication and deletion, runs `llama_rs_fuzz::check` on each
//! result under `catch_unwind`, and saves panicking inputs to `artifacts/gguf_mutate/`.
//!
//! Usage: `gguf_mutate [--seconds N] [--seed S] [--corpus DIR]... [--write-seeds DIR]`

use std::panic;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// xorshift64*: small, fast, deterministic for a given seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [u64; 14] = [
    0,
    1,
    2,
    3,
    4,
    32,
    255,
    65535,
    1 << 30,
    (1 << 30) + 1,
    u32::MAX as u64,
    1 << 63,
    u64::MAX,
    i64::MAX as u64,
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    let n_mutations = 1 + rng.below(6);
    for _ in 0..n_mutations {
        if input.is_empty() {
            input.push(rng.next() as u8);
            continue;
        }
        let at = rng.below(input.len());
        match rng.below(8) {
            0 => input[at] ^= 1 << rng.below(8),
            1 => input[at] = rng.next() as u8,
            2 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let end = (at + 8).min(input.len());
                let bytes = v.to_le_bytes();
                input[at..end].copy_from_slice(&bytes[..end - at]);
            }
            3 => {
                let v = INTERESTING[rng.below(INTERESTING.len())] as u32;
                let end = (at + 4).min(input.len());
                let bytes = v.to_le_bytes();
                input[at..end].copy_from_slice(&bytes[..end - at]);
            }
            4 => input.truncate(at),
            5 => {
                let len = rng.below(64).min(input.len() - at);
                let chunk = input[at..at + len].to_vec();
                let to = rng.below(input.len());
                input.splice(to..to, chunk);
            }
            6 => {
                let len = rng.below(64).min(input.len() - at);
                input.drain(at..at + len);
            }
            _ => {
                let v = rng.below(256) as u8;
                input.insert(at, v);
            }
        }
    }
}

struct Args {
    seconds: u64,
    seed: u64,
    corpus: Vec<PathBuf>,
    write_seeds: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 60,
        seed: 0x9e37_79b9_7f4a_7c15,
        corpus: Vec::new(),
        write_seeds: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => args.seconds = value()?.parse().map_err(|e| format!("{e}"))?,
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("{e}"))?,
            "--corpus" => args.corpus.push(value()?.into()),
            "--write-seeds" => args.write_seeds = Some(value()?.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gguf_mutate: {e}");
            std::process::exit(2);
        }
    };
    let mut seeds = llama_rs_fuzz::seed_files();
    if let Some(dir) = &args.write_seeds {
        std::fs::create_dir_all(dir).expect("create seed dir");
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}.gguf")), s).expect("write seed");
        }
        println!("wrote {} seeds to {}", seeds.len(), dir.display());
        return;
    }
    for dir in &args.corpus {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if let Ok(bytes) = std::fs::read(entry.path()) {
                    if bytes.len() <= 1 << 20 {
                        seeds.push(bytes);
                    }
                }
            }
        }
    }

    // Keep panic messages from flooding the output; panics are counted and saved.
    panic::set_hook(Box::new(|_| {}));
    let artifacts = PathBuf::from("artifacts/gguf_mutate");
    let mut rng = Rng(args.seed.max(1));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let (mut execs, mut panics) = (0u64, 0u64);
    let mut input = Vec::new();
    while Instant::now() < deadline {
        for _ in 0..256 {
            input.clear();
            input.extend_from_slice(&seeds[rng.below(seeds.len())]);
            mutate(&mut rng, &mut input);
            execs += 1;
            if panic::catch_unwind(|| llama_rs_fuzz::check(&input)).is_err() {
                panics += 1;
                let _ = std::fs::create_dir_all(&artifacts);
                let path = artifacts.join(format!("crash-{execs}.gguf"));
                let _ = std::fs::write(&path, &input);
                eprintln!("panic on input saved to {}", path.display());
            }
        }
    }
    println!(
        "gguf_mutate: {execs} executions in {} s from {} seeds, {panics} panics",
        args.seconds,
        seeds.len()
    );
    if panics > 0 {
        std::process::exit(1);
    }
}
