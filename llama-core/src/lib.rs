//! llama-core: the safe llama-rs API over llama.cpp.
//!
//! - [`ffi`]: the only module with `unsafe`; RAII owners of llama.cpp's model, context, batch
//!   and sampler handles.
//! - [`session`]: a conversation on a context: prompt evaluation with KV-cache prefix reuse,
//!   generation as a stream of UTF-8-safe text pieces, stop strings, cancellation.
//! - [`chat`]: chat templates from GGUF metadata or by name.
//! - [`gguf`]: a pure-Rust GGUF reader that vets files before llama.cpp sees them.
//! - [`sampling`], [`size`], [`process_memory`], [`cancel`]: parameters and measurements.
//! - [`store`]: the model store (pull from the Hugging Face Hub into its cache, list, rm); no
//!   llama.cpp.
#![deny(unsafe_code)]

pub mod arena;
pub mod batched_bench;
pub mod bench;
pub mod budget;
pub mod cache_spec;
pub mod cancel;
pub mod chat;
pub mod doctor;
pub mod engine;
pub mod error;
#[allow(unsafe_code)]
pub mod ffi;
pub mod gguf;
pub mod kv_pool;
pub mod machine;
pub mod memory_probe;
pub mod metrics;
pub mod model_file;
pub mod perplexity;
pub mod planner;
pub mod process_memory;
pub mod quantize;
pub mod run;
pub mod sampling;
pub mod session;
pub mod size;
pub mod state_file;
pub mod stop;
pub mod store;
pub mod utf8;

pub use cache_spec::{KvCacheType, ModelCacheSpec};
pub use cancel::CancelToken;
pub use chat::{ChatMessage, ChatTemplate, Role, TemplateChoice};
pub use error::{
    ContextError, Error, GenerateError, LoadError, ParamError, TemplateError, TokenizeError,
};
pub use ffi::{
    Backend, BufferUsage, Context, ContextParams, FlashAttention, LoadMode, Model, ModelParams,
    SystemInfo, Token,
};
pub use model_file::{check_model_file, load_model};
pub use process_memory::ProcessMemory;
pub use sampling::SamplingParams;
pub use session::{
    FinishReason, GenerateOptions, Generation, GenerationStats, PromptStats, Session,
};
pub use size::ByteSize;
