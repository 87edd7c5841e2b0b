//! The preflight: checks a well-formed GGUF model for what llama.cpp's loader would abort,
//! crash or allocate without bound on, so such a file gets our typed error instead.
//!
//! The reader ([`super::GgufFile`]) vouches that a file is well-formed GGUF. llama.cpp then
//! interprets it, and some interpretations end the process rather than failing the load: a
//! `GGML_ASSERT` in `load_hparams`, a null kernel in the first decode, a division by zero
//! in an architecture's tensor loader. [`preflight`] refuses those files and only those; a
//! file llama.cpp refuses cleanly (a missing tensor, a wrong shape, an unknown
//! architecture) gets past it, and llama.cpp's own error stands.
//!
//! Every check is tied to a class of file that the load fuzzer (`llama-core/examples/
//! load_fuzz`) made llama.cpp (llama-cpp-sys-2 0.1.161) abort on; each class has a file in
//! [`super::synthetic::hostile`] and a test. The checks are conservative:
//!
//! - `hparams`: what llama.cpp's generic `load_hparams` asserts for every architecture
//!   (block count, MTP layers, expert counts, rope scaling type);
//! - `vocab`: duplicate token texts, special tokens the tokenizer adds that do not exist,
//!   byte tokens in WordPiece, no vocabulary at all;
//! - `tensors`: data alignment, and tensor types the CPU kernels cannot take (1-D tensors
//!   other than F32; matrices in integer, F64 or intermediate quantisation types;
//!   state-space `ssm_a` other than F32);
//! - `arch`: per-architecture rules, only for architectures whose loader and graph were
//!   read and tested (`llama`, `gemma3`, `mamba`, and `olmo2` / `phimoe`, whose tensor
//!   loaders divide by the head count): head counts, head and rotary widths, norm epsilons,
//!   the state-space block.
//!
//! Values stored with another type than llama.cpp reads (a `u64` block count, say) make
//! llama.cpp refuse the file cleanly; the checks read any integer or float type, so they may
//! refuse such a file first, with a clearer message, but never one llama.cpp would load.
//! The module is pure Rust and reads only the header.

mod arch;
mod error;
mod hparams;
mod tensors;
mod vocab;

pub use self::error::{Check, PreflightError, Subject};

use super::model::GgufModel;
use super::value::Value;

/// Checks `model` (already read by the GGUF reader) for what llama.cpp would abort, crash or
/// allocate without bound on. Returns the first problem found.
pub fn preflight(model: &GgufModel) -> Result<(), PreflightError> {
    hparams::check(model)?;
    vocab::check(model)?;
    tensors::check(model)?;
    arch::check(model)
}

/// The largest value of `{arch}.{suffix}` read as llama.cpp's `get_key_or_arr` does: one
/// integer, or one per layer (the largest is returned). `None` when absent or not integers.
fn scalar_or_max(model: &GgufModel, suffix: &str) -> Option<u64> {
    model.arch_u64_or_max(suffix)
}

/// `{arch}.{suffix}` per layer: a scalar repeated `n_layer` times, or the array as stored.
fn per_layer(model: &GgufModel, suffix: &str, n_layer: u64) -> Option<Vec<u64>> {
    match model.arch_value(suffix)? {
        Value::Array(a) => a.to_u64_vec(),
        v => {
            let value = v.as_u64()?;
            Some(vec![value; usize::try_from(n_layer).ok()?])
        }
    }
}

/// The block count, when it is one llama.cpp accepts (checked by `hparams`).
fn n_layer(model: &GgufModel) -> Option<u64> {
    model
        .arch_u64("block_count")
        .filter(|n| (1..=hparams::MAX_LAYERS).contains(n))
}

#[cfg(test)]
mod tests;
