//! The engine on the real SmolLM2 model: many sessions over a KV budget smaller than their sum
//! (eviction to disk and restore), prefix reuse across turns, cancellation, slow consumers,
//! queue limits.

mod common;
use common::{greedy, model_path};

use std::sync::Arc;
use std::time::Duration;

use llama_core::engine::{Engine, EngineConfig, EngineEvent, EngineRequest, SubmitError};
use llama_core::gguf::GgufModel;
use llama_core::{
    load_model, CancelToken, ChatMessage, ChatTemplate, GenerateOptions, Model, ModelCacheSpec,
    ModelParams, Role, SamplingParams, TemplateChoice,
};

fn model() -> (Arc<Model>, ModelCacheSpec) {
    let (m, gguf) = load_model(&model_path(), &ModelParams::default(), None).unwrap();
    let spec = ModelCacheSpec::from_gguf(&gguf).unwrap();
    (Arc::new(m), spec)
}

/// 23040 bytes per token (f16) x 256-token blocks.
const BLOCK_BYTES: u64 = 23040 * 256;

fn engine(
    model: &Arc<Model>,
    spec: &ModelCacheSpec,
    parallel: u32,
    blocks: u64,
    dir: &std::path::Path,
) -> Engine {
    let mut config = EngineConfig::new(parallel, 2048, blocks * BLOCK_BYTES, dir.to_path_buf());
    config.threads = 2;
    config.n_batch = 512;
    // One pool of cells: a tight budget is shared by every sequence.
    config.kv_unified = true;
    Engine::start(model.clone(), spec, config).unwrap()
}

fn render(model: &Model, messages: &[ChatMessage]) -> Vec<i32> {
    let TemplateChoice::Template(t) = ChatTemplate::resolve(model, None).unwrap() else {
        panic!()
    };
    model
        .tokenize(&t.render(messages, true).unwrap(), true, true)
        .unwrap()
}

fn ask(engine: &Engine, prompt: Vec<i32>, n: usize) -> (String, llama_core::engine::Completion) {
    engine
        .submit(EngineRequest {
            prompt,
            options: greedy(n),
            cancel: CancelToken::new(),
        })
        .unwrap()
        .collect_blocking()
        .unwrap()
}

const TOPICS: [&str; 8] = [
    "the moon",
    "bread",
    "rivers",
    "chess",
    "volcanoes",
    "bicycles",
    "owls",
    "tea",
];

/// Two-turn conversations: each session's second turn continues its first.
fn conversation(engine: &Engine, model: &Model, topic: &str) -> (String, String, usize) {
    let system = ChatMessage::new(
        Role::System,
        "You are a helpful assistant who answers in two sentences.",
    );
    let mut messages = vec![
        system,
        ChatMessage::new(Role::User, format!("Tell me about {topic}.")),
    ];
    let (first, _) = ask(engine, render(model, &messages), 48);
    messages.push(ChatMessage::new(Role::Assistant, first.clone()));
    messages.push(ChatMessage::new(Role::User, "Tell me one more fact."));
    let (second, done) = ask(engine, render(model, &messages), 48);
    (first, second, done.cached_tokens)
}

fn conversation_start(topic: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new(
            Role::System,
            "You are a helpful assistant who answers in two sentences.",
        ),
        ChatMessage::new(Role::User, format!("Tell me about {topic}.")),
    ]
}

fn add_turn(messages: &mut Vec<ChatMessage>, answer: &str) {
    messages.push(ChatMessage::new(Role::Assistant, answer));
    messages.push(ChatMessage::new(Role::User, "Tell me one more fact."));
}

#[test]
fn evicted_and_restored_sessions_continue_exactly_as_uninterrupted_ones() {
    let (model, spec) = model();
    let dir = tempfile::tempdir().unwrap();
    // One sequence and 3 blocks (768 tokens) of KV: room for one conversation at a time.
    // Reference: each conversation runs both turns back to back (uninterrupted: its second
    // turn continues the KV of its first).
    let reference_engine = engine(&model, &spec, 1, 3, dir.path());
    let reference: Vec<(String, String, usize)> = TOPICS
        .iter()
        .map(|t| conversation(&reference_engine, &model, t))
        .collect();
    assert_eq!(reference_engine.stats().restores, 0);
    assert!(
        reference.iter().all(|r| r.2 > 30),
        "the second turn reuses the first: {:?}",
        reference.iter().map(|r| r.2).collect::<Vec<_>>()
    );
    drop(reference_engine);
    // Interrupted: all first turns run, then all second turns, so every session is saved to
    // disk in between and restored for its second turn. (Same engine shape, so llama.cpp lays
    // the cells out the same way and greedy decoding must agree token for token.)
    let tight = engine(&model, &spec, 1, 3, dir.path());
    let mut conversations: Vec<Vec<ChatMessage>> =
        TOPICS.iter().map(|t| conversation_start(t)).collect();
    for (messages, want) in conversations.iter_mut().zip(&reference) {
        let (first, _) = ask(&tight, render(&model, messages), 48);
        assert_eq!(first, want.0);
        add_turn(messages, &first);
    }
    for ((messages, want), topic) in conversations.iter().zip(&reference).zip(TOPICS) {
        let (second, done) = ask(&tight, render(&model, messages), 48);
        assert_eq!(second, want.1, "second turn about {topic}, token for token");
        assert!(
            done.cached_tokens > 30,
            "restored, not recomputed: {done:?}"
        );
    }
    let stats = tight.stats();
    assert!(stats.evictions >= 8 && stats.restores >= 7, "{stats:?}");
    assert!(stats.blocks_used <= 3 && stats.kv_bytes_used <= 3 * BLOCK_BYTES);
}

#[test]
fn eight_concurrent_sessions_over_budget_all_finish() {
    let (model, spec) = model();
    let dir = tempfile::tempdir().unwrap();
    let tight = Arc::new(engine(&model, &spec, 4, 3, dir.path()));
    let handles: Vec<_> = TOPICS
        .iter()
        .map(|t| {
            let (tight, model, topic) = (tight.clone(), model.clone(), t.to_string());
            std::thread::spawn(move || conversation(&tight, &model, &topic))
        })
        .collect();
    for h in handles {
        let (first, second, _) = h.join().unwrap();
        assert!(!first.trim().is_empty() && !second.trim().is_empty());
    }
    let stats = tight.stats();
    assert!(stats.evictions > 0, "{stats:?}");
    assert!(
        stats.blocks_used <= 3 && stats.kv_bytes_used <= 3 * BLOCK_BYTES,
        "{stats:?}"
    );
    assert_eq!(stats.finished, 16);
}

#[test]
fn cancelling_one_session_frees_its_blocks_and_spares_the_others() {
    let (model, spec) = model();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&model, &spec, 3, 16, dir.path());
    let long = model.tokenize("Once upon a time", true, false).unwrap();
    let cancel = CancelToken::new();
    let mut doomed = engine
        .submit(EngineRequest {
            prompt: long.clone(),
            options: GenerateOptions {
                sampling: SamplingParams {
                    seed: 1,
                    temperature: 1.0,
                    ..Default::default()
                },
                max_tokens: Some(100_000),
                stop: vec![],
                ..Default::default()
            },
            cancel: cancel.clone(),
        })
        .unwrap();
    let survivor = engine
        .submit(EngineRequest {
            prompt: render(
                &model,
                &[ChatMessage::new(
                    Role::User,
                    "What is the capital of France? Answer in one sentence.",
                )],
            ),
            options: greedy(24),
            cancel: CancelToken::new(),
        })
        .unwrap();
    // Let the long one run a little, then cancel it.
    let mut got_text = false;
    while let Some(EngineEvent::Text(_)) = doomed.blocking_next() {
        got_text = true;
        if engine.stats().tokens_out > 20 {
            break;
        }
    }
    assert!(got_text);
    cancel.cancel();
    let mut finish = None;
    while let Some(event) = doomed.blocking_next() {
        if let EngineEvent::Done(c) = event {
            finish = Some(c.finish_reason);
        }
    }
    assert_eq!(finish, Some(llama_core::FinishReason::Cancelled));
    let (answer, _) = survivor.collect_blocking().unwrap();
    assert!(answer.contains("Paris"), "{answer}");
    std::thread::sleep(Duration::from_millis(50));
    let stats = engine.stats();
    assert_eq!(stats.active, 0);
    assert!(stats.cancelled >= 1);
    // Only the finished survivor's KV (kept for reuse) remains: one block.
    assert!(stats.blocks_used <= 1, "{stats:?}");
}

#[test]
fn a_dropped_or_slow_consumer_never_blocks_the_others() {
    let (model, spec) = model();
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(3, 2048, 16 * BLOCK_BYTES, dir.path().to_path_buf());
    config.threads = 2;
    config.stream_buffer = 4;
    let engine = Engine::start(model.clone(), &spec, config).unwrap();
    let prompt = render(
        &model,
        &[ChatMessage::new(
            Role::User,
            "Write a long poem about the sea.",
        )],
    );
    let request = |n| EngineRequest {
        prompt: prompt.clone(),
        options: greedy(n),
        cancel: CancelToken::new(),
    };
    let slow = engine.submit(request(64)).unwrap(); // never read until the end
    let dropped = engine.submit(request(64)).unwrap();
    drop(dropped);
    let (fast_text, fast) = engine
        .submit(request(48))
        .unwrap()
        .collect_blocking()
        .unwrap();
    assert!(!fast_text.is_empty());
    assert_eq!(fast.completion_tokens, 48);
    // The slow consumer's session paused with a full buffer; it finishes once read.
    let (slow_text, slow_done) = slow.collect_blocking().unwrap();
    assert_eq!(slow_done.completion_tokens, 64);
    assert!(
        slow_text.starts_with(&fast_text),
        "greedy: same prompt, same start"
    );
    assert!(
        engine.stats().cancelled >= 1,
        "the dropped stream was cancelled"
    );
}

#[test]
fn a_full_queue_and_an_oversized_prompt_are_refused() {
    let (model, spec) = model();
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(1, 512, 4 * BLOCK_BYTES, dir.path().to_path_buf());
    config.threads = 2;
    config.queue_capacity = 2;
    let engine = Engine::start(model.clone(), &spec, config).unwrap();
    let huge = vec![model.token_bos(); 600];
    let err = engine
        .submit(EngineRequest {
            prompt: huge,
            options: greedy(1),
            cancel: CancelToken::new(),
        })
        .unwrap_err();
    assert!(matches!(err, SubmitError::TooLarge { .. }), "{err}");
    let prompt = model.tokenize("Once upon a time", true, false).unwrap();
    let mut streams = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        match engine.submit(EngineRequest {
            prompt: prompt.clone(),
            options: greedy(200),
            cancel: CancelToken::new(),
        }) {
            Ok(s) => streams.push(s),
            Err(SubmitError::QueueFull { capacity }) => {
                assert_eq!(capacity, 2);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused >= 4, "refused {refused}");
    drop(streams);
    engine.shutdown(Duration::from_secs(5));
    let _ = GgufModel::open(&model_path()).unwrap();
}

#[test]
fn sessions_sharing_a_system_prompt_share_its_blocks() {
    let (model, spec) = model();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&model, &spec, 2, 8, dir.path());
    let system = "You are a careful assistant. ".repeat(60);
    let prompt = |question: &str| {
        render(
            &model,
            &[
                ChatMessage::new(Role::System, system.clone()),
                ChatMessage::new(Role::User, question),
            ],
        )
    };
    let a = prompt("Name a colour.");
    assert!(a.len() > 300, "the system prompt spans more than one block");
    let first = engine
        .submit(EngineRequest {
            prompt: a,
            options: GenerateOptions {
                max_tokens: Some(64),
                ignore_eos: true,
                ..greedy(64)
            },
            cancel: CancelToken::new(),
        })
        .unwrap();
    // Wait until the first session is generating, then start the second beside it.
    let mut first = first;
    assert!(matches!(first.blocking_next(), Some(EngineEvent::Text(_))));
    let (_, second) = ask(&engine, prompt("Name a fruit."), 8);
    assert!(
        second.cached_tokens >= 256,
        "the shared system prompt's first block was not evaluated again: {second:?}"
    );
    let (_, first_done) = first.collect_blocking().unwrap();
    assert_eq!(first_done.completion_tokens, 64);
}

/// `Engine::park` saves every idle session and hands them over; a new engine of the same model
/// adopts them and continues each conversation from its saved KV, with the same greedy answer
/// as an engine that never stopped (the router's unload and reload of a model).
#[test]
fn parked_sessions_continue_in_a_new_engine_exactly() {
    let (model, spec) = model();
    let dir = tempfile::tempdir().unwrap();
    let topics = &TOPICS[..2];
    let reference_engine = engine(&model, &spec, 2, 8, dir.path());
    let reference: Vec<(String, String, usize)> = topics
        .iter()
        .map(|t| conversation(&reference_engine, &model, t))
        .collect();
    drop(reference_engine);
    let first_engine = engine(&model, &spec, 2, 8, dir.path());
    let mut conversations: Vec<Vec<ChatMessage>> =
        topics.iter().map(|t| conversation_start(t)).collect();
    for (messages, want) in conversations.iter_mut().zip(&reference) {
        let (first, _) = ask(&first_engine, render(&model, messages), 48);
        assert_eq!(first, want.0);
        add_turn(messages, &first);
    }
    let parked = first_engine.park(Duration::from_secs(5));
    assert_eq!(parked.len(), 2, "both idle sessions are saved");
    assert!(
        parked.iter().all(|s| s.path.exists()),
        "their files are kept"
    );
    let second_engine = engine(&model, &spec, 2, 8, dir.path());
    second_engine.adopt_sessions(parked.clone());
    for ((messages, want), topic) in conversations.iter().zip(&reference).zip(topics) {
        let (second, done) = ask(&second_engine, render(&model, messages), 48);
        assert_eq!(second, want.1, "second turn about {topic}, token for token");
        assert!(
            done.cached_tokens > 30,
            "restored from the parked file: {done:?}"
        );
    }
    assert!(
        second_engine.stats().restores >= 2,
        "{:?}",
        second_engine.stats()
    );
    // A parked engine's files are not reused by the next one's saves.
    let more = second_engine.park(Duration::from_secs(5));
    let mut paths: Vec<_> = more.iter().map(|s| s.path.clone()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), more.len());
}

#[test]
fn progress_reports_the_prompt_chunks_and_each_token() {
    let (model, spec) = model();
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(1, 2048, 4 * BLOCK_BYTES, dir.path().to_path_buf());
    config.threads = 2;
    config.n_batch = 16;
    config.n_ubatch = 16;
    let engine = Engine::start(model.clone(), &spec, config).unwrap();
    let prompt = render(
        &model,
        &[ChatMessage::new(Role::User, "This is a test. ".repeat(6))],
    );
    let request = |prompt_progress, token_progress| EngineRequest {
        prompt: prompt.clone(),
        options: llama_core::GenerateOptions {
            prompt_progress,
            token_progress,
            ..greedy(5)
        },
        cancel: CancelToken::new(),
    };
    for run in 0..2 {
        let mut stream = engine.submit(request(true, true)).unwrap();
        let (mut prompt_reports, mut token_reports) = (Vec::new(), Vec::new());
        let completion = loop {
            match stream.blocking_next() {
                Some(EngineEvent::Progress(p)) if p.completion_tokens == 0 => {
                    assert!(token_reports.is_empty(), "prompt reports come first");
                    prompt_reports.push(p)
                }
                Some(EngineEvent::Progress(p)) => token_reports.push(p),
                Some(EngineEvent::Done(c)) => break c,
                Some(_) => {}
                None => panic!("no end"),
            }
        };
        let cached = completion.cached_tokens;
        if run == 1 {
            assert!(cached > 0, "the second run reuses the first one's prompt");
        }
        // The reused tokens, then one report per 16-token chunk up to the whole prompt.
        assert_eq!(prompt_reports[0].prompt_processed, cached);
        assert_eq!(
            prompt_reports.len(),
            (prompt.len() - cached).div_ceil(16) + 1,
            "{prompt_reports:?}"
        );
        for pair in prompt_reports.windows(2) {
            assert!(pair[1].prompt_processed > pair[0].prompt_processed);
            assert!(pair[1].prompt_time >= pair[0].prompt_time);
        }
        let last = prompt_reports.last().unwrap();
        assert_eq!(last.prompt_processed, prompt.len());
        assert!(prompt_reports
            .iter()
            .all(|p| p.prompt_tokens == prompt.len() && p.cached_tokens == cached));
        // One report per generated token, counting up.
        let counts: Vec<usize> = token_reports.iter().map(|p| p.completion_tokens).collect();
        assert_eq!(
            counts,
            (1..=completion.completion_tokens).collect::<Vec<_>>()
        );
    }
    // Not asked for: none.
    let mut stream = engine.submit(request(false, false)).unwrap();
    while let Some(event) = stream.blocking_next() {
        assert!(!matches!(event, EngineEvent::Progress(_)), "{event:?}");
    }
}
