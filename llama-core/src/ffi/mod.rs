//! The one module of llama-core that talks to llama.cpp, and so the only one allowed `unsafe`.
//!
//! Every llama.cpp handle is owned by a RAII type defined here ([`Model`], [`Context`],
//! [`SamplerChain`], [`GrammarSampler`], [`Batch`]) whose `Drop` frees it exactly once. The types expose safe methods;
//! each `unsafe` block states why the call is sound in a `// SAFETY:` comment. Code outside this
//! module cannot reach a raw pointer.

mod backend;
mod batch;
pub mod buffers;
mod context;
mod grammar;
mod lora;
mod model;
mod quantize;
mod residency;
mod sampler;
mod system;

pub use backend::{Backend, LogTapGuard};
pub use batch::Batch;
pub use buffers::BufferUsage;
pub use context::{Context, DecodeOutcome};
pub use grammar::{json_schema_to_gbnf, GrammarFailure, GrammarSampler};
pub use lora::LoraAdapter;
pub use model::Model;
pub use quantize::{
    quantize_file, ImatrixValues, MetadataValue, QuantizeCallError, QuantizeParams,
};
pub use residency::{
    populate_cleared_count, streaming_load_supported, EvalObserver, ModelMapping, StreamingLoad,
    TensorInput,
};
pub use sampler::SamplerChain;
pub use system::{
    compiled_gpu_backends, cpu_has_amx, AmxInfo, DeviceInfo, ExtraBufferType, SystemInfo,
};

pub use crate::params::{ContextParams, FlashAttention, LoadMode, ModelParams, Token};

/// Returns freed heap memory to the operating system (after a dry run, before a real load).
pub fn release_free_heap() {
    llama_sys::release_free_heap();
}

/// Converts a Rust string into a C string, or `None` when it holds a NUL byte.
fn c_string(text: &str) -> Option<std::ffi::CString> {
    std::ffi::CString::new(text).ok()
}
