//! Every generated model shape (`llama_core::gguf::synthetic::Shape`) through llama.cpp: the
//! GGUF reader accepts the file, llama.cpp loads it, a context is created whose KV cache or
//! recurrent state and compute buffers are what the no-alloc dry run (the planner's sizer)
//! reported, and the model decodes a prompt longer than gemma3's sliding window, then tokens
//! one at a time, on a raw context, and (every shape with attention) in two turns of a
//! `Session`. Then each shape's own facts, as llama.cpp reports them: gemma3's sliding-window
//! layers and window, the large vocabulary, the experts, the recurrent state; and what
//! `ModelCacheSpec::from_gguf` makes of each (it sizes the KV cache llama.cpp allocates for the
//! transformers, and finds no KV cache, and no recurrent state, in mamba).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llama_core::cache_spec::KvCacheParams;
use llama_core::ffi::{Batch, DecodeOutcome};
use llama_core::gguf::synthetic::{Architecture, Shape, SyntheticModel};
use llama_core::gguf::{GgmlType, GgufModel};
use llama_core::memory_probe::{output_buffer_bytes, MemoryProbe};
use llama_core::{
    check_model_file, Backend, Context, ContextParams, FinishReason, GenerateOptions, Model,
    ModelCacheSpec, ModelParams, SamplingParams, Session, Token,
};

/// Prompt tokens: more than gemma3's 512-token window, so sliding layers mask part of it.
const N_PROMPT: usize = 600;
/// Tokens generated one at a time after the prompt.
const N_GENERATED: usize = 16;

fn ctx_params() -> ContextParams {
    ContextParams {
        n_ctx: 4096,
        n_batch: 128,
        n_ubatch: 128,
        n_outputs_max: 1,
        n_threads: 2,
        n_threads_batch: 2,
        ..ContextParams::default()
    }
}

/// The KV settings of [`ctx_params`], for `ModelCacheSpec::kv_bytes`.
fn kv_params(swa_full: bool) -> KvCacheParams {
    let p = ctx_params();
    KvCacheParams {
        n_ubatch: u64::from(p.n_ubatch),
        n_seq: u64::from(p.n_seq_max),
        swa_full,
        ..KvCacheParams::new(u64::from(p.n_ctx))
    }
}

/// What running one shape showed.
struct Run {
    shape: Shape,
    model: SyntheticModel,
    file_size: u64,
    gguf: GgufModel,
    llama: Arc<Model>,
    load_time: Duration,
    /// llama.cpp's log lines (this thread's) while loading the model and creating the context.
    log: Vec<String>,
    /// Cache bytes (KV or recurrent state) of the context, from llama.cpp's memory breakdown.
    cache_bytes: u64,
}

impl Run {
    /// The value after `key =` in a log line of llama.cpp's `print_info`.
    fn info(&self, key: &str) -> Option<String> {
        self.log.iter().find_map(|line| {
            let rest = line.strip_prefix("print_info: ")?.strip_prefix(key)?;
            Some(rest.trim_start().strip_prefix('=')?.trim().to_string())
        })
    }

    fn lines_with(&self, marker: &str) -> Vec<&str> {
        self.log
            .iter()
            .filter(|l| l.contains(marker))
            .map(String::as_str)
            .collect()
    }
}

/// Runs `f` with llama.cpp's log lines of this thread collected.
fn logged<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let me = std::thread::current().id();
    let tap = Backend::tap_log(move |line| {
        if std::thread::current().id() == me {
            sink.lock().unwrap().push(line.to_string());
        }
    });
    let out = f();
    drop(tap);
    let lines = std::mem::take(&mut *lines.lock().unwrap());
    (out, lines)
}

/// Writes `shape`, loads it, checks the context's memory against the dry run and decodes.
fn run(shape: Shape, dir: &Path) -> Run {
    let model = shape.model(GgmlType::Q8_0);
    let path = dir.join(format!("{shape}.gguf"));
    model.write_to(&path).unwrap();
    let file_size = std::fs::metadata(&path).unwrap().len();
    let gguf = check_model_file(&path).unwrap();

    let start = Instant::now();
    let (llama, mut log) =
        logged(|| Model::load_unchecked(&path, &ModelParams::default(), None).unwrap());
    let load_time = start.elapsed();
    let llama = Arc::new(llama);
    assert_eq!(llama.n_vocab(), model.n_vocab, "{shape}");
    assert_eq!(llama.n_layer(), model.n_layer, "{shape}");
    assert_eq!(llama.n_embd(), model.n_embd, "{shape}");

    let probe = MemoryProbe::new(&path, &ModelParams::default()).unwrap();
    let dry = probe.measure(&ctx_params()).unwrap();
    let (ctx, ctx_log) = logged(|| Context::new(llama.clone(), &ctx_params()).unwrap());
    log.extend(ctx_log);
    let mut ctx = ctx;
    let breakdown = ctx.memory_breakdown();
    let cache_bytes: u64 = breakdown.iter().map(|b| b.context).sum();
    let compute: u64 = breakdown.iter().map(|b| b.compute).sum();
    assert!(cache_bytes > 0, "{shape}: no cache in {breakdown:?}");
    assert_eq!(dry.kv, cache_bytes, "{shape}: the dry run's cache bytes");
    assert_eq!(dry.compute, compute, "{shape}: the dry run's compute bytes");

    let generated = greedy(&mut ctx, model.n_vocab);
    assert_eq!(generated.len(), N_GENERATED, "{shape}");
    drop(ctx);

    eprintln!(
        "{shape}: {} ({} layers, width {}, {} tokens), {:.1} MiB, loaded in {load_time:?}, \
         cache {:.2} MiB, greedy {generated:?}",
        model.architecture.name(),
        model.n_layer,
        model.n_embd,
        model.n_vocab,
        file_size as f64 / 1048576.0,
        cache_bytes as f64 / 1048576.0,
    );
    Run {
        shape,
        model,
        file_size,
        gguf,
        llama,
        load_time,
        log,
        cache_bytes,
    }
}

/// Decodes [`N_PROMPT`] tokens in batches, then [`N_GENERATED`] greedy tokens one at a time;
/// every logits row must be finite.
fn greedy(ctx: &mut Context, n_vocab: u32) -> Vec<Token> {
    let prompt: Vec<Token> = (0..N_PROMPT)
        .map(|i| 3 + ((i as u32 * 7919) % (n_vocab - 3)) as Token)
        .collect();
    let mut batch = Batch::new(ctx.n_batch() as usize);
    let (done, outcome) = ctx.decode_tokens(&mut batch, &prompt, 0, 0);
    assert_eq!((done, outcome), (N_PROMPT, DecodeOutcome::Done));
    let mut out = Vec::new();
    for pos in (N_PROMPT..N_PROMPT + N_GENERATED).map(|p| p as i32) {
        let logits = ctx.logits(-1).unwrap();
        assert_eq!(logits.len(), n_vocab as usize);
        assert!(logits.iter().all(|x| x.is_finite()), "non-finite logits");
        let next = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap() as Token;
        out.push(next);
        let (_, outcome) = ctx.decode_tokens(&mut batch, &[next], pos, 0);
        assert_eq!(outcome, DecodeOutcome::Done);
    }
    out
}

/// Two turns through the engine (`Session`): a prompt, then the conversation extended.
fn generate_in_session(run: &Run) {
    let (shape, model) = (run.shape, &run.llama);
    let mut session = Session::start(model.clone(), &ctx_params()).unwrap();
    let options = GenerateOptions {
        sampling: SamplingParams::greedy(),
        max_tokens: Some(8),
        ..Default::default()
    };
    let mut prompt = model
        .tokenize("The three primary colours are", true, false)
        .unwrap();
    for turn in 0..2 {
        let (_, stats) = session
            .generate(&prompt, &options)
            .unwrap()
            .collect_text()
            .unwrap();
        assert!(
            matches!(
                stats.finish_reason,
                Some(FinishReason::Length | FinishReason::EndOfGeneration)
            ),
            "{shape} turn {turn}: {stats:?}"
        );
        prompt = session.tokens();
        prompt.extend(model.tokenize(" and", false, false).unwrap());
    }
}

fn spec(run: &Run) -> ModelCacheSpec {
    ModelCacheSpec::from_gguf(&run.gguf).unwrap()
}

#[test]
fn llama_runs_and_matches_its_cache_spec() {
    let dir = tempfile::tempdir().unwrap();
    let run = run(Shape::Llama, dir.path());
    generate_in_session(&run);
    let spec = spec(&run);
    assert_eq!(spec.sliding_window, None);
    assert_eq!(
        spec.kv_bytes(&kv_params(true)).unwrap().total_bytes(),
        run.cache_bytes
    );
}

#[test]
fn gemma3_slides_five_layers_of_six_over_a_512_token_window() {
    let dir = tempfile::tempdir().unwrap();
    let run = run(Shape::Gemma3Swa, dir.path());
    generate_in_session(&run);
    assert_eq!(
        run.llama.meta("general.architecture").as_deref(),
        Some("gemma3")
    );
    assert_eq!(run.info("n_swa").as_deref(), Some("512"));
    assert_eq!(run.info("is_swa_any").as_deref(), Some("1"));
    assert_eq!(run.info("n_embd_head_k").as_deref(), Some("256"));
    assert_eq!(run.info("n_embd_head_v").as_deref(), Some("256"));
    assert_eq!(run.info("n_head_kv").as_deref(), Some("1"));

    // llama_kv_cache_iswa made two caches: the full-attention layers' and the sliding ones'.
    let cells = |marker: &str| -> u64 {
        let line = run.lines_with(marker);
        assert_eq!(line.len(), 1, "{marker}: {:?}", run.log);
        let rest = &line[0][line[0].find("size = ").unwrap() + 7..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let global_cells = cells("creating non-SWA KV cache");
    let swa_cells = cells("creating     SWA KV cache");
    let sizes = run.lines_with("llama_kv_cache: size =");
    assert_eq!(sizes.len(), 2, "{:?}", run.log);
    assert!(
        sizes[0].contains(&format!("{global_cells} cells,   1 layers")),
        "{sizes:?}"
    );
    assert!(
        sizes[1].contains(&format!("{swa_cells} cells,   5 layers")),
        "{sizes:?}"
    );

    // The cache spec reads the same window and pattern from the file, and sizes the cache
    // llama.cpp allocated. The sliding layers' cache is full-size when swa_full is on
    // (llama.cpp's library default); without it, it holds the window plus a micro-batch.
    let spec = spec(&run);
    assert_eq!(spec.sliding_window, Some(512));
    let sliding: Vec<bool> = spec.layers.iter().map(|l| l.sliding).collect();
    assert_eq!(sliding, [true, true, true, true, true, false]);
    let swa_full = swa_cells == global_cells;
    let predicted = spec.kv_bytes(&kv_params(swa_full)).unwrap();
    assert_eq!(predicted.sliding_cells, swa_cells);
    assert_eq!(predicted.total_bytes(), run.cache_bytes);
    let windowed = spec.kv_bytes(&kv_params(false)).unwrap();
    let full = spec.kv_bytes(&kv_params(true)).unwrap();
    assert_eq!(windowed.sliding_cells, 768, "512 + 128 padded to 256");
    assert!(
        windowed.total_bytes() * 3 < full.total_bytes(),
        "{windowed:?} {full:?}"
    );
}

#[test]
fn the_large_vocabulary_loads_and_fills_its_logits() {
    let dir = tempfile::tempdir().unwrap();
    let run = run(Shape::LargeVocab, dir.path());
    generate_in_session(&run);
    assert_eq!(run.llama.n_vocab(), 262_144);
    assert!(run.file_size < 32 << 20, "{} bytes", run.file_size);
    // The last token of the vocabulary is the filler word llama.cpp read last.
    let last = run.llama.token_to_piece(262_143, false);
    assert_eq!(
        String::from_utf8(last).unwrap(),
        format!(" w{}", 262_144 - 260)
    );
    // One logits row is 1 MiB: the output buffer llama.cpp reserved for it.
    let output = run.lines_with("output buffer size =");
    let logged: f64 = output
        .iter()
        .map(|l| {
            l.split('=')
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
        })
        .map(|mib| mib.parse::<f64>().unwrap())
        .sum();
    let planned = output_buffer_bytes(run.llama.n_vocab(), &ctx_params());
    assert_eq!(planned, 262_144 * 4);
    assert!(
        (logged - planned as f64 / 1048576.0).abs() < 0.011,
        "{output:?}"
    );
    let spec = spec(&run);
    assert_eq!(
        spec.kv_bytes(&kv_params(true)).unwrap().total_bytes(),
        run.cache_bytes
    );
    eprintln!("large vocabulary: model load {:?}", run.load_time);
}

#[test]
fn the_mixture_of_experts_routes_two_of_eight() {
    let dir = tempfile::tempdir().unwrap();
    let run = run(Shape::Moe, dir.path());
    generate_in_session(&run);
    assert_eq!(run.info("n_expert").as_deref(), Some("8"));
    assert_eq!(run.info("n_expert_used").as_deref(), Some("2"));
    // llama.cpp counts every expert's weights.
    let params: u64 = run.gguf.tensors().iter().map(|t| t.n_elements()).sum();
    assert_eq!(run.llama.n_params(), params);
    let spec = spec(&run);
    assert_eq!(
        spec.kv_bytes(&kv_params(true)).unwrap().total_bytes(),
        run.cache_bytes
    );
}

#[test]
fn mamba_keeps_a_recurrent_state_and_no_kv_cache() {
    let dir = tempfile::tempdir().unwrap();
    let run = run(Shape::Mamba, dir.path());
    let Architecture::Mamba(ssm) = run.model.architecture else {
        unreachable!()
    };
    // Per layer and sequence: the convolution's last d_conv - 1 inputs and the d_state-wide
    // state of every inner channel, in F32.
    let per_layer = u64::from((ssm.d_conv - 1 + ssm.d_state) * ssm.d_inner) * 4;
    let expected = u64::from(run.model.n_layer) * per_layer * u64::from(ctx_params().n_seq_max);
    assert_eq!(run.cache_bytes, expected);
    let rs = run.lines_with("RS buffer size =");
    assert_eq!(rs.len(), 1, "{:?}", run.log);
    assert!(run.lines_with("KV buffer size").is_empty(), "{:?}", run.log);
    assert_eq!(run.info("ssm_d_inner").as_deref(), Some("512"));

    // The cache spec reads the file (head counts of 0) and finds no KV cache; the recurrent
    // state is not part of what it models (the dry run measures it, above).
    let spec = spec(&run);
    assert!(spec.layers.iter().all(|l| l.n_head_kv == 0));
    assert_eq!(spec.kv_bytes(&kv_params(true)).unwrap().total_bytes(), 0);

    // The engine (and so `Session`) runs it: no KV bytes per token, so its block pool only
    // counts tokens against the context; two turns, the second one reusing the first's state
    // as a prefix (a recurrent state cannot be cut back: a diverging turn is evaluated again).
    let mut session = Session::start(run.llama.clone(), &ctx_params()).unwrap();
    let prompt: Vec<i32> = run
        .llama
        .tokenize("xyz ".repeat(40).as_str(), true, false)
        .unwrap();
    let options = llama_core::GenerateOptions {
        sampling: llama_core::SamplingParams::greedy(),
        max_tokens: Some(8),
        ..Default::default()
    };
    let (_, first) = session
        .generate(&prompt, &options)
        .unwrap()
        .collect_text()
        .unwrap();
    assert_eq!(first.n_generated, 8);
    let mut longer = session.tokens();
    longer.extend(run.llama.tokenize(" more", false, false).unwrap());
    let (_, second) = session
        .generate(&longer, &options)
        .unwrap()
        .collect_text()
        .unwrap();
    assert!(second.prompt.n_reused > 0 || second.prompt.n_evaluated == longer.len());
    let other: Vec<i32> = run
        .llama
        .tokenize("abc ".repeat(10).as_str(), true, false)
        .unwrap();
    let (_, third) = session
        .generate(&other, &options)
        .unwrap()
        .collect_text()
        .unwrap();
    assert_eq!(
        third.prompt.n_evaluated + third.prompt.n_reused,
        other.len()
    );
}

#[test]
fn every_shape_decodes_with_repacked_q4_0_weights() {
    // Q4_0 matrices go to CPU_REPACK on x86 with AVX2 (the experts' 3-D stacks too), which
    // runs other kernels than the Q8_0 models above.
    let dir = tempfile::tempdir().unwrap();
    for shape in Shape::ALL {
        let model = shape.model(GgmlType::Q4_0);
        let path = dir.path().join(format!("{shape}-q4_0.gguf"));
        model.write_to(&path).unwrap();
        check_model_file(&path).unwrap();
        let llama = Arc::new(Model::load_unchecked(&path, &ModelParams::default(), None).unwrap());
        let mut ctx = Context::new(llama, &ctx_params()).unwrap();
        let repacked: u64 = ctx
            .memory_breakdown()
            .iter()
            .filter(|b| b.is_extra_cpu_buffer())
            .map(|b| b.model)
            .sum();
        if std::is_x86_feature_detected!("avx2") {
            assert!(repacked > 0, "{shape}: {:?}", ctx.memory_breakdown());
        }
        assert_eq!(
            greedy(&mut ctx, model.n_vocab).len(),
            N_GENERATED,
            "{shape}"
        );
    }
}
