//! The vocabulary of a generated model: SentencePiece-style ("llama" tokenizer) metadata that
//! llama.cpp loads in time linear in its size, whatever the architecture.

use crate::gguf::value::{ArrayValue, Value};
use crate::gguf::writer::GgufWriter;

const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const BYTE: i32 = 6;

/// Control and byte tokens every generated vocabulary starts with: `<unk>`, `<s>`, `</s>`
/// and the 256 byte tokens.
pub(super) const N_FIXED_TOKENS: u32 = 3 + 256;

/// Adds `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then filler words (`▁w0`, `▁w1`, ...) up
/// to `n_vocab` tokens (at least [`N_FIXED_TOKENS`]), with decreasing scores.
pub(super) fn add_spm_vocabulary(w: &mut GgufWriter, n_vocab: u32) {
    let n = n_vocab as usize;
    let mut tokens: Vec<String> = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    tokens.extend(["<unk>".to_string(), "<s>".into(), "</s>".into()]);
    types.extend([UNKNOWN, CONTROL, CONTROL]);
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(BYTE);
    }
    for k in 0..n.saturating_sub(tokens.len()) {
        tokens.push(format!("\u{2581}w{k}"));
        types.push(NORMAL);
    }
    let scores: Vec<f32> = (0..tokens.len()).map(|i| -(i as f32)).collect();
    w.add("tokenizer.ggml.model", "llama")
        .add(
            "tokenizer.ggml.tokens",
            Value::Array(ArrayValue::String(tokens.into())),
        )
        .add("tokenizer.ggml.scores", Value::Array(scores.into()))
        .add("tokenizer.ggml.token_type", Value::Array(types.into()))
        .add("tokenizer.ggml.bos_token_id", 1u32)
        .add("tokenizer.ggml.eos_token_id", 2u32)
        .add("tokenizer.ggml.unknown_token_id", 0u32);
}
