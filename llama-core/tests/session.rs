//! The safe API on the real SmolLM2 model: loading, tokenizer, templates, generation,
//! prefix reuse, context-full handling and cancellation inside a decode.

mod common;
use common::{greedy, model_path};

use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_core::{
    load_model, ChatMessage, ChatTemplate, ContextParams, FinishReason, GenerateOptions, Model,
    ModelParams, Role, SamplingParams, Session, TemplateChoice,
};

fn model() -> Arc<Model> {
    static MODEL: std::sync::OnceLock<Arc<Model>> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            Arc::new(
                load_model(&model_path(), &ModelParams::default(), None)
                    .unwrap()
                    .0,
            )
        })
        .clone()
}

fn session(n_ctx: u32) -> Session {
    Session::start(
        model(),
        &ContextParams {
            n_ctx,
            n_threads: 2,
            n_threads_batch: 2,
            ..ContextParams::default()
        },
    )
    .unwrap()
}

fn chat_tokens(messages: &[ChatMessage]) -> Vec<i32> {
    let m = model();
    let TemplateChoice::Template(t) = ChatTemplate::resolve(&m, None).unwrap() else {
        panic!("SmolLM2 has a chat template")
    };
    m.tokenize(&t.render(messages, true).unwrap(), true, true)
        .unwrap()
}

#[test]
fn model_metadata_and_tokenizer() {
    let m = model();
    assert_eq!(m.n_layer(), 30);
    assert_eq!(m.n_ctx_train(), 8192);
    assert!(m.description().contains("llama"), "{}", m.description());
    let tokens = m.tokenize("Hello, world! Ünïcödé €", false, false).unwrap();
    assert!(!tokens.is_empty());
    assert_eq!(m.detokenize(&tokens, false), "Hello, world! Ünïcödé €");
    let special = m.tokenize("<|im_start|>user", false, true).unwrap();
    let plain = m.tokenize("<|im_start|>user", false, false).unwrap();
    assert!(special.len() < plain.len(), "special tokens parsed");
}

#[test]
fn chat_template_from_metadata_and_by_name() {
    let m = model();
    assert!(m.chat_template().unwrap().contains("im_start"));
    let msgs = [ChatMessage::new(Role::User, "Hi")];
    let TemplateChoice::Template(own) = ChatTemplate::resolve(&m, None).unwrap() else {
        panic!()
    };
    let text = own.render(&msgs, true).unwrap();
    assert!(
        text.contains("<|im_start|>user\nHi<|im_end|>")
            && text.ends_with("<|im_start|>assistant\n"),
        "{text}"
    );
    // SmolLM2's own (Jinja) template adds its default system prompt; llama.cpp's chatml has
    // none.
    assert!(
        text.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
        "{text}"
    );
    let TemplateChoice::Template(named) = ChatTemplate::resolve(&m, Some("chatml")).unwrap() else {
        panic!()
    };
    assert_eq!(
        named.render(&msgs, true).unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    assert!(ChatTemplate::resolve(&m, Some("no-such-template")).is_err());
}

#[test]
fn greedy_generation_is_repeatable_and_reuses_the_prefix() {
    let mut s = session(1024);
    let prompt = chat_tokens(&[ChatMessage::new(
        Role::User,
        "What is the capital of France? Answer in one sentence.",
    )]);
    let (a, stats_a) = s
        .generate(&prompt, &greedy(20))
        .unwrap()
        .collect_text()
        .unwrap();
    assert!(a.contains("Paris"), "{a}");
    assert_eq!(stats_a.prompt.n_reused, 0);
    // The model answers in one short sentence and ends its turn by itself.
    assert_eq!(stats_a.finish_reason, Some(FinishReason::EndOfGeneration));
    assert!(stats_a.n_generated > 0 && stats_a.n_generated < 20);
    assert_eq!(
        model().tokenize(&a, false, false).unwrap().len(),
        stats_a.n_generated
    );
    // Same prompt again: everything but the last token comes from the cache, same answer.
    let (b, stats_b) = s
        .generate(&prompt, &greedy(20))
        .unwrap()
        .collect_text()
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(stats_b.prompt.n_reused, prompt.len() - 1);
    assert_eq!(stats_b.prompt.n_evaluated, 1);
    // After a reset, evaluated from scratch, still the same answer.
    s.reset();
    let (c, stats_c) = s
        .generate(&prompt, &greedy(20))
        .unwrap()
        .collect_text()
        .unwrap();
    assert_eq!(a, c);
    assert_eq!(stats_c.prompt.n_reused, 0);
}

#[test]
fn full_context_ends_the_answer_cleanly() {
    let mut s = session(256);
    let prompt = model().tokenize("Once upon a time", true, false).unwrap();
    let options = GenerateOptions {
        sampling: SamplingParams {
            seed: 3,
            temperature: 1.0,
            ..SamplingParams::default()
        },
        max_tokens: None,
        stop: vec![],
        ..Default::default()
    };
    let (text, stats) = s
        .generate(&prompt, &options)
        .unwrap()
        .collect_text()
        .unwrap();
    assert!(!text.is_empty());
    if stats.finish_reason == Some(FinishReason::ContextFull) {
        assert_eq!(s.tokens().len(), 256);
    }
    let too_long: Vec<i32> = std::iter::repeat_n(prompt[1], 300).collect();
    let err = s.generate(&too_long, &greedy(1)).unwrap_err();
    assert!(err.to_string().contains("raise --ctx-size"), "{err}");
}

#[test]
fn cancel_stops_a_long_prompt_inside_decode() {
    let mut s = session(8192);
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(600);
    let prompt = model().tokenize(&text, true, false).unwrap();
    assert!(prompt.len() > 5000);
    let cancel = s.cancel_token();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
        Instant::now()
    });
    // The answer streams from the engine: it ends (cancelled) once the prompt is aborted.
    let mut generation = s.generate(&prompt, &greedy(10)).unwrap();
    for piece in generation.by_ref() {
        piece.unwrap();
    }
    let stats = generation.stats();
    drop(generation);
    let stopped = Instant::now();
    let cancelled_at = canceller.join().unwrap();
    assert!(
        stats.prompt.cancelled,
        "prompt evaluation should have been aborted"
    );
    assert!(stopped.duration_since(cancelled_at) < Duration::from_secs(2));
    // The session's token list matches what the cache kept, and it still works afterwards.
    assert!(s.tokens().len() < prompt.len());
    assert_eq!(&prompt[..s.tokens().len()], s.tokens());
    let short = chat_tokens(&[ChatMessage::new(Role::User, "Hi")]);
    let (answer, _) = s
        .generate(&short, &greedy(5))
        .unwrap()
        .collect_text()
        .unwrap();
    assert!(!answer.is_empty());
}

#[test]
fn cache_spec_matches_the_kv_buffer_llama_cpp_allocates() {
    use llama_core::cache_spec::{KvCacheParams, KvCacheType};
    use llama_core::gguf::GgufModel;
    use llama_core::memory_probe::MemoryProbe;

    let path = model_path();
    let spec = llama_core::ModelCacheSpec::from_gguf(&GgufModel::open(&path).unwrap()).unwrap();
    let probe = MemoryProbe::new(&path, &ModelParams::default()).unwrap();
    for (n_ctx, t) in [
        (512u32, KvCacheType::F16),
        (4096, KvCacheType::F16),
        (8192, KvCacheType::Q8_0),
    ] {
        let params = ContextParams {
            n_ctx,
            type_k: t,
            type_v: t,
            flash_attention: llama_core::FlashAttention::On,
            ..ContextParams::default()
        };
        let reported = probe.measure(&params).unwrap();
        let ours = spec
            .kv_bytes(&KvCacheParams {
                type_k: t,
                type_v: t,
                ..KvCacheParams::new(u64::from(n_ctx))
            })
            .unwrap()
            .total_bytes();
        assert_eq!(ours, reported.kv, "ctx {n_ctx} {t:?}: ours vs llama.cpp");
        assert!(reported.compute > 0);
    }
}

#[test]
fn saving_a_long_session_streams_it_to_disk() {
    // 4000 tokens of SmolLM2's KV cache are 88 MiB; saving them must not copy them into RAM.
    let mut s = session(8192);
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(600);
    let prompt: Vec<i32> = model().tokenize(&text, true, false).unwrap()[..4000].to_vec();
    s.feed_prompt(&prompt).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.session");
    // Reset the peak RSS (VmHWM) to the current RSS, then save.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = llama_core::ProcessMemory::current();
    let n = s.save_state(&path, b"extra").unwrap();
    let after = llama_core::ProcessMemory::current();
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(n, prompt.len());
    assert!(size > 80 << 20, "the state is in the file: {size}");
    let growth = after.peak_rss.saturating_sub(before.rss);
    eprintln!("saving {size} bytes raised the peak RSS by {growth} bytes");
    assert!(
        growth < size / 4,
        "peak grew by {growth} for a {size}-byte state"
    );
    // And it reads back into a fresh session.
    let mut t = session(8192);
    assert_eq!(t.load_state(&path).unwrap(), b"extra");
    assert_eq!(t.tokens(), prompt);
}
