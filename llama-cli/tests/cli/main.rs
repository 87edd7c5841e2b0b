//! Integration tests of the `llama-cli` binary: one test binary, one module per concern.

mod bad_input;
mod batched_bench;
mod budget;
mod chat;
mod completions;
mod config;
mod doctor;
mod fake_hub;
mod flags;
mod generation;
mod machine;
mod packaging;
mod perplexity;
mod prompt;
mod quantize;
mod serve;
mod session_files;
mod shapes;
mod show;
mod store_fit;
mod store_interop;
mod store_pull;
mod store_support;
mod support;
mod tokenize;
mod weights;
