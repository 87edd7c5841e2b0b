//! The child process: loads one model through llama.cpp *without* our checks
//! (`Model::load_unchecked`), creates a small context, tokenizes, decodes a prompt and one
//! generated token, renders every token and the chat template, and reports how far it got through its exit
//! status. A signal (abort, segfault) or a hang is what the parent is looking for.

use std::path::Path;
use std::sync::Arc;

use llama_core::ffi::{Batch, DecodeOutcome};
use llama_core::{Backend, Context, ContextParams, Model, ModelParams, ProcessMemory};

/// The child's anonymous memory cap (`RLIMIT_DATA`): far above what any base model needs, so
/// an allocation past it is one the file asked for. `LOAD_FUZZ_DATA_LIMIT` (bytes) overrides.
pub const DATA_LIMIT: u64 = 2 << 30;

/// Exit codes: how far the child got.
pub mod status {
    /// Loaded, decoded, rendered: llama.cpp took the file.
    pub const OK: u8 = 0;
    /// `llama_model_load_from_file` returned NULL (a clean refusal).
    pub const LOAD_ERROR: u8 = 3;
    /// `llama_init_from_model` returned NULL.
    pub const CONTEXT_ERROR: u8 = 4;
    /// Tokenizing failed.
    pub const TOKENIZE_ERROR: u8 = 5;
    /// `llama_decode` failed.
    pub const DECODE_ERROR: u8 = 6;
    /// The child could not set itself up (no such file, rlimit refused).
    pub const SETUP_ERROR: u8 = 7;
}

/// Runs the child on `path` and returns its exit status (see [`status`]); prints its peak
/// RSS on stdout as `peak_rss BYTES`. (`llama-core/tests/preflight.rs` runs this too.)
pub fn run(path: &Path) -> u8 {
    if let Err(e) = limit_data() {
        eprintln!("child: cannot set RLIMIT_DATA: {e}");
        return status::SETUP_ERROR;
    }
    Backend::init();
    // llama.cpp's log goes to stderr, where the parent keeps its tail.
    let _tap = Backend::tap_log(|line| eprintln!("llama.cpp: {line}"));
    let code = stages(path);
    let peak = ProcessMemory::current().peak_rss;
    println!("peak_rss {peak}");
    code
}

fn limit_data() -> std::io::Result<()> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let limit = std::env::var("LOAD_FUZZ_DATA_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DATA_LIMIT);
    setrlimit(
        Resource::Data,
        Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        },
    )
    .map_err(std::io::Error::from)
}

/// A string whose UTF-8 holds every byte valid UTF-8 without NUL can: U+0001 to U+007F, the
/// continuation bytes (U+0080 to U+00BF), and each lead byte 0xC2 to 0xF4.
fn every_byte() -> String {
    let ascii = (1u32..0x80).filter_map(char::from_u32);
    let continuation = (0x80u32..0xC0).filter_map(char::from_u32);
    let two = (0u32..30).filter_map(|i| char::from_u32(0x80 + (i << 6)));
    let three = (0u32..16).filter_map(|i| char::from_u32(if i == 0 { 0x800 } else { i << 12 }));
    let four = (0u32..5).filter_map(|i| char::from_u32(if i == 0 { 0x10000 } else { i << 18 }));
    ascii.chain(continuation).chain(two).chain(three).chain(four).collect()
}

fn stages(path: &Path) -> u8 {
    let model = match Model::load_unchecked(path, &ModelParams::default(), None) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("child: {e}");
            return status::LOAD_ERROR;
        }
    };
    let params = ContextParams {
        n_ctx: 256,
        n_batch: 64,
        n_ubatch: 64,
        n_outputs_max: 1,
        n_threads: 1,
        n_threads_batch: 1,
        ..ContextParams::default()
    };
    let mut ctx = match Context::new(model.clone(), &params) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("child: {e}");
            return status::CONTEXT_ERROR;
        }
    };
    let mut tokens = match model.tokenize("Hello, world! The capital of France is", true, true) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("child: {e}");
            return status::TOKENIZE_ERROR;
        }
    };
    if tokens.is_empty() {
        tokens.push(0);
    }
    // Text holding every byte UTF-8 text can (a prompt or request could hold any of them).
    if let Err(e) = model.tokenize(&every_byte(), false, false) {
        eprintln!("child: {e}");
        return status::TOKENIZE_ERROR;
    }
    let mut batch = Batch::new(64);
    let (_, outcome) = ctx.decode_tokens(&mut batch, &tokens, 0, 0);
    if outcome != DecodeOutcome::Done {
        eprintln!("child: decode: {outcome:?}");
        return status::DECODE_ERROR;
    }
    let next = ctx
        .logits(-1)
        .and_then(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i as i32)
        })
        .unwrap_or(0);
    let piece = model.token_to_piece(next, true);
    let pos = i32::try_from(tokens.len()).unwrap_or(0);
    let (_, outcome) = ctx.decode_tokens(&mut batch, &[next], pos, 0);
    if outcome != DecodeOutcome::Done {
        eprintln!("child: decode: {outcome:?}");
        return status::DECODE_ERROR;
    }
    let _ = model.is_end_of_generation(next);
    // Every token's text, as a generation that samples it would render it.
    for token in 0..i32::try_from(model.n_vocab()).unwrap_or(i32::MAX) {
        let _ = model.token_to_piece(token, false);
        let _ = model.token_to_piece(token, true);
    }
    if let Some(template) = model.chat_template() {
        let _ = Model::apply_chat_template(&template, &[("user", "hi")], true);
    }
    eprintln!("child: ok, next token {next} = {:?}", String::from_utf8_lossy(&piece));
    status::OK
}
