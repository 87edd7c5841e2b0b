//! Serving many models under one memory budget (`llama-cli serve` without `-m`): pure policy,
//! no llama.cpp.
//!
//! - [`catalog`]: the models by id and alias;
//! - [`scan`]: the models in a `--models-dir` (GGUF files, split models, sub-folders);
//! - [`policy`]: admission by planned bytes: which model loads, which idle ones are unloaded
//!   (least recently used first) to make room, which requests wait, what is refused and why;
//!   pinning, idle unloading, a count limit.
//!
//! The server (llama-cli's `server::router`) does the loading and unloading the policy asks
//! for, on llama-core's run path.

pub mod catalog;
pub mod policy;
pub mod scan;

pub use catalog::{Catalog, CatalogEntry, DuplicateName};
pub use policy::{Acquire, ModelView, Phase, Policy, Refusal, UnloadRefusal, Wait};
pub use scan::{scan_models_dir, FoundModel};
