//! Aggregate generation throughput of the engine with 1, 2, 4 and 8 concurrent sessions, in
//! the manner of llama.cpp's `llama-batched-bench` (random prompts of `npp` tokens, `ntg`
//! generated tokens per session, end-of-generation ignored), and the time to first token of
//! turn 10 of a conversation against turn 1.
//!
//!   cargo run --release -p llama-core --example batched_bench -- MODEL [THREADS] [NPP] [NTG]
//!
//! `scripts/bench-batched.sh` runs it next to llama-batched-bench.

use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_core::engine::{Engine, EngineConfig, EngineRequest};
use llama_core::{
    load_model, CancelToken, ChatMessage, ChatTemplate, GenerateOptions, ModelCacheSpec,
    ModelParams, Role, SamplingParams, TemplateChoice,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: batched_bench MODEL [THREADS] [NPP] [NTG]");
        std::process::exit(2);
    };
    let arg = |i: usize, default: u32| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (threads, npp, ntg) = (arg(2, 2) as i32, arg(3, 128), arg(4, 128));
    let (model, gguf) = match load_model(std::path::Path::new(path), &ModelParams::default(), None)
    {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let model = Arc::new(model);
    let spec = ModelCacheSpec::from_gguf(&gguf).expect("cache spec");
    let per_token = spec
        .kv_bytes_per_token(llama_core::KvCacheType::F16, llama_core::KvCacheType::F16)
        .expect("kv bytes");
    let dir = std::env::temp_dir().join(format!("llama-rs-bench-{}", std::process::id()));
    println!("## Engine: aggregate generation (npp {npp}, ntg {ntg}, {threads} threads)");
    println!("| sessions | tokens generated | generation time (s) | aggregate t/s |");
    println!("| ---: | ---: | ---: | ---: |");
    for npl in [1u32, 2, 4, 8] {
        let per_seq = (npp + ntg + 256).div_ceil(256) * 256;
        let mut config = EngineConfig::new(
            npl,
            per_seq,
            u64::from(npl * per_seq) * per_token,
            dir.clone(),
        );
        config.threads = threads;
        let engine = Engine::start(model.clone(), &spec, config).expect("engine");
        // Warm-up.
        let _ = run_batch(&engine, 1, 16, 8, model.n_vocab(), 99);
        let (tokens, seconds) = run_batch(&engine, npl, npp, ntg, model.n_vocab(), 1);
        println!(
            "| {npl} | {tokens} | {seconds:.3} | {:.2} |",
            tokens as f64 / seconds
        );
    }
    // Time to first token across the turns of one conversation.
    let mut config = EngineConfig::new(1, 8192, 8192 * per_token, dir.clone());
    config.threads = threads;
    let engine = Engine::start(model.clone(), &spec, config).expect("engine");
    let TemplateChoice::Template(template) = ChatTemplate::resolve(&model, None).expect("template")
    else {
        eprintln!("the model has no chat template");
        std::process::exit(1);
    };
    let mut messages = vec![ChatMessage::new(
        Role::System,
        "You are a helpful assistant.",
    )];
    let mut ttft = Vec::new();
    for turn in 1..=10 {
        messages.push(ChatMessage::new(
            Role::User,
            format!("Tell me fact number {turn} about the sea."),
        ));
        let prompt = model
            .tokenize(
                &template.render(&messages, true).expect("render"),
                true,
                true,
            )
            .expect("tokenize");
        let (text, done) = engine
            .submit(EngineRequest {
                prompt,
                options: GenerateOptions {
                    sampling: SamplingParams::greedy(),
                    max_tokens: Some(48),
                    ..Default::default()
                },
                cancel: CancelToken::new(),
            })
            .expect("submit")
            .collect_blocking()
            .expect("generate");
        ttft.push((
            done.prompt_tokens,
            done.cached_tokens,
            done.time_to_first_token.unwrap_or_default(),
        ));
        messages.push(ChatMessage::new(Role::Assistant, text));
    }
    println!();
    println!("## Time to first token by conversation turn");
    println!("| turn | prompt tokens | reused from cache | time to first token (ms) |");
    println!("| ---: | ---: | ---: | ---: |");
    for (i, (n, cached, t)) in ttft.iter().enumerate() {
        println!(
            "| {} | {n} | {cached} | {:.1} |",
            i + 1,
            t.as_secs_f64() * 1000.0
        );
    }
    let ratio = ttft[9].2.as_secs_f64() / ttft[0].2.as_secs_f64();
    println!();
    println!("turn 10 / turn 1 time to first token: {ratio:.2}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Submits `npl` sessions with distinct random prompts; returns the tokens generated after
/// the first one of each and the time from the last first token to the end.
fn run_batch(engine: &Engine, npl: u32, npp: u32, ntg: u32, n_vocab: u32, seed: u64) -> (u64, f64) {
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % u64::from(n_vocab)) as i32
    };
    let started = Instant::now();
    let streams: Vec<_> = (0..npl)
        .map(|_| {
            let prompt: Vec<i32> = (0..npp).map(|_| next()).collect();
            engine
                .submit(EngineRequest {
                    prompt,
                    options: GenerateOptions {
                        sampling: SamplingParams::greedy(),
                        max_tokens: Some(ntg as usize),
                        ignore_eos: true,
                        ..Default::default()
                    },
                    cancel: CancelToken::new(),
                })
                .expect("submit")
        })
        .collect();
    let handles: Vec<_> = streams
        .into_iter()
        .map(|s| std::thread::spawn(move || s.collect_blocking().expect("generate").1))
        .collect();
    let done: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let first_all = done
        .iter()
        .filter_map(|d| d.time_to_first_token)
        .max()
        .unwrap_or(Duration::ZERO);
    let end = started.elapsed().max(first_all);
    let tokens: u64 = done
        .iter()
        .map(|d| d.completion_tokens.saturating_sub(1) as u64)
        .sum();
    (tokens, (end - first_all).as_secs_f64())
}
