//! llama-core: the safe llama-rs API over llama.cpp.
//!
//! - `ffi` (feature `ffi`): the only module with `unsafe`; RAII owners of llama.cpp's model,
//!   context, batch and sampler handles.
//! - `session` (feature `ffi`): a conversation on a context: prompt evaluation with KV-cache
//!   prefix reuse, generation as a stream of UTF-8-safe text pieces, stop strings, cancellation.
//! - [`chat`]: conversations, Jinja chat templates (minijinja, as transformers renders them),
//!   tool-call formats and the parsing of answers into content, reasoning and tool calls;
//!   with `ffi`, [`ChatTemplate::apply`] renders a conversation for a model.
//! - [`grammar`]: grammar-constrained sampling (GBNF, JSON schema), checked by llama.cpp with
//!   `ffi`.
//! - [`gguf`]: a pure-Rust GGUF reader that vets files before llama.cpp sees them.
//! - [`sampling`], [`size`], [`process_memory`], [`cancel`], [`params`]: parameters and
//!   measurements.
//! - `store` (feature `store`): the model store (pull from the Hugging Face Hub into its cache,
//!   list, rm); no llama.cpp.
//!
//! # Features
//!
//! `ffi` (default) links llama.cpp through `llama-sys`; the backend features (`cuda`, `metal`,
//! `vulkan`, `openmp`) imply it. `store` (default) adds the model store and its HTTPS client.
//! Without them (`default-features = false`) only the pure parts build, with no C toolchain: the GGUF reader and writer ([`gguf`], including
//! [`gguf::synthetic`]), [`cache_spec`], [`kv_pool`], [`planner`], the [`arena`]'s ledger and
//! placement, [`chat`]'s templates and parsers, [`grammar`]'s specs, [`params`], [`sampling`],
//! [`size`], [`stop`], [`utf8`], [`process_memory`], [`cancel`], [`metrics`], [`machine`],
//! [`router`] (the multi-model policy) and the [`error`] types.
#![deny(unsafe_code)]

pub mod arena;
#[cfg(feature = "ffi")]
pub mod batched_bench;
#[cfg(feature = "ffi")]
pub mod bench;
#[cfg(feature = "ffi")]
pub mod budget;
pub mod cache_spec;
pub mod cancel;
pub mod chat;
#[cfg(feature = "ffi")]
pub mod doctor;
#[cfg(feature = "ffi")]
pub mod embedding;
#[cfg(feature = "ffi")]
pub mod engine;
pub mod error;
#[cfg(feature = "ffi")]
#[allow(unsafe_code)]
pub mod ffi;
pub mod gguf;
pub mod grammar;
pub mod kv_pool;
pub mod machine;
#[cfg(feature = "ffi")]
pub mod memory_probe;
pub mod metrics;
#[cfg(feature = "ffi")]
pub mod model_file;
pub mod params;
#[cfg(feature = "ffi")]
pub mod perplexity;
pub mod planner;
pub mod process_memory;
#[cfg(feature = "ffi")]
pub mod quantize;
pub mod router;
#[cfg(feature = "ffi")]
pub mod run;
pub mod sampling;
#[cfg(feature = "ffi")]
pub mod session;
pub mod size;
#[cfg(feature = "ffi")]
pub mod state_file;
pub mod stop;
#[cfg(feature = "store")]
pub mod store;
pub mod utf8;

pub use cache_spec::{KvCacheType, ModelCacheSpec};
pub use cancel::CancelToken;
#[cfg(feature = "ffi")]
pub use chat::{ChatInputs, ChatPrompt, ChatTemplate, TemplateChoice, TemplateOptions};
pub use chat::{ChatMessage, Role, Tool, ToolCall, ToolChoice};
pub use error::{
    ContextError, Error, GenerateError, LoadError, ParamError, TemplateError, TokenizeError,
};
#[cfg(feature = "ffi")]
pub use ffi::{Backend, BufferUsage, Context, Model, SystemInfo};
#[cfg(feature = "ffi")]
pub use model_file::{check_model_file, load_model};
pub use params::{ContextParams, FlashAttention, LoadMode, ModelParams, Token};
pub use process_memory::ProcessMemory;
pub use sampling::SamplingParams;
#[cfg(feature = "ffi")]
pub use session::{
    FinishReason, GenerateOptions, Generation, GenerationStats, PromptStats, Session,
};
pub use size::ByteSize;
