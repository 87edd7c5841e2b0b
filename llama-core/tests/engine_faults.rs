//! The engine's per-request failure handling (issue 13) on the real model: prompts that block
//! each other (one is preempted, both finish), a failed decode (retried with half the batch
//! before anyone fails), a consumer that reads late (its final event still arrives), and batch
//! sizes: every combination llama.cpp accepts runs.

mod common;
use common::{greedy, model_path};

use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_core::engine::{Engine, EngineConfig, EngineEvent, EngineRequest};
use llama_core::{load_model, CancelToken, FinishReason, Model, ModelCacheSpec, ModelParams};
use proptest::prelude::*;

fn model() -> (Arc<Model>, ModelCacheSpec) {
    static MODEL: std::sync::OnceLock<(Arc<Model>, ModelCacheSpec)> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            let (m, gguf) = load_model(&model_path(), &ModelParams::default(), None).unwrap();
            (Arc::new(m), ModelCacheSpec::from_gguf(&gguf).unwrap())
        })
        .clone()
}

/// 23040 bytes per token (f16) x 256-token blocks.
const BLOCK_BYTES: u64 = 23040 * 256;

fn config(parallel: u32, n_ctx_per_seq: u32, blocks: u64) -> EngineConfig {
    let mut config = EngineConfig::new(parallel, n_ctx_per_seq, blocks * BLOCK_BYTES, None);
    config.threads = 2;
    config
}

fn prompt(model: &Model, words: usize, seed: usize) -> Vec<i32> {
    let text: String = (0..words)
        .map(|i| format!("w{} ", (i * 7 + seed * 13) % 97))
        .collect();
    model.tokenize(&text, true, false).unwrap()
}

fn submit(engine: &Engine, prompt: Vec<i32>, n: usize) -> llama_core::engine::ResponseStream {
    engine
        .submit(EngineRequest {
            prompt,
            options: greedy(n),
            cancel: CancelToken::new(),
        })
        .unwrap()
}

#[test]
fn two_prompts_that_block_each_other_both_finish() {
    let (model, spec) = model();
    // One pool of 6 blocks (1536 tokens) for two prompts of about 1000 tokens each: admitted
    // chunk by chunk, they run out of blocks half-way, each waiting for the other.
    let mut config = config(2, 2048, 6);
    config.kv_unified = true;
    config.n_batch = 256;
    let engine = Engine::start(model.clone(), &spec, config).unwrap();
    let a = submit(&engine, prompt(&model, 500, 1), 4);
    let b = submit(&engine, prompt(&model, 500, 2), 4);
    assert!(a.collect_blocking().is_ok(), "{:?}", engine.stats());
    assert!(b.collect_blocking().is_ok(), "{:?}", engine.stats());
    assert!(engine.stats().preempted >= 1, "{:?}", engine.stats());
}

#[test]
fn a_failed_decode_is_retried_with_half_the_batch() {
    let (model, spec) = model();
    let mut config = config(2, 1024, 8);
    config.inject_decode_failures = 2;
    let engine = Engine::start(model.clone(), &spec, config).unwrap();
    let a = submit(&engine, prompt(&model, 100, 1), 8);
    let b = submit(&engine, prompt(&model, 100, 2), 8);
    let (_, done_a) = a.collect_blocking().unwrap();
    let (_, done_b) = b.collect_blocking().unwrap();
    assert_eq!(done_a.completion_tokens, 8);
    assert_eq!(done_b.completion_tokens, 8);
    assert_eq!(engine.stats().decode_retries, 2, "{:?}", engine.stats());
}

#[test]
fn a_consumer_that_reads_late_still_gets_its_final_event() {
    let (model, spec) = model();
    let mut config = config(1, 1024, 4);
    config.stream_buffer = 3;
    let engine = Engine::start(model.clone(), &spec, config).unwrap();
    let cancel = CancelToken::new();
    let mut stream = engine
        .submit(EngineRequest {
            prompt: prompt(&model, 20, 1),
            options: llama_core::GenerateOptions {
                ignore_eos: true,
                ..greedy(500)
            },
            cancel: cancel.clone(),
        })
        .unwrap();
    // The consumer reads nothing: its channel fills and its session pauses.
    let started = Instant::now();
    while engine.stats().tokens_out < 2 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    cancel.cancel();
    std::thread::sleep(Duration::from_millis(300));
    let mut last = None;
    while let Some(event) = stream.blocking_next() {
        last = Some(event);
    }
    match last {
        Some(EngineEvent::Done(c)) => assert_eq!(c.finish_reason, FinishReason::Cancelled),
        other => panic!("the final event was lost: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, .. ProptestConfig::default() })]

    /// Whatever llama.cpp accepts for -b, -ub, --parallel and -c, the engine never hands it
    /// more tokens than it takes (llama.cpp would abort), and every request finishes.
    #[test]
    fn every_batch_size_llama_cpp_accepts_runs(
        n_batch in 1u32..48,
        n_ubatch in 1u32..48,
        parallel in 1u32..6,
        n_ctx_per_seq in prop::sample::select(vec![256u32, 512]),
    ) {
        let (model, spec) = model();
        let mut config = config(parallel, n_ctx_per_seq, 16);
        config.n_batch = n_batch;
        config.n_ubatch = n_ubatch.min(n_batch);
        let engine = Engine::start(model.clone(), &spec, config).unwrap();
        let streams: Vec<_> = (0..parallel as usize + 1)
            .map(|k| submit(&engine, prompt(&model, 30 + 5 * k, k), 3))
            .collect();
        for stream in streams {
            let (_, done) = stream.collect_blocking().unwrap();
            prop_assert!(done.completion_tokens <= 3);
        }
    }
}
