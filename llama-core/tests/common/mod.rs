//! Shared by the integration tests that run the real model.

use std::path::PathBuf;

/// The SmolLM2 test model: `$LLAMA_RS_MODEL`, else the cache `scripts/fetch-model.sh` fills.
pub fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LLAMA_RS_MODEL") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "test model missing: run scripts/fetch-model.sh");
    p
}

/// Greedy decoding of at most `n` tokens.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn greedy(n: usize) -> llama_core::GenerateOptions {
    llama_core::GenerateOptions {
        sampling: llama_core::SamplingParams::greedy(),
        max_tokens: Some(n),
        ..Default::default()
    }
}
