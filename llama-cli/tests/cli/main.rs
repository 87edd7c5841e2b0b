//! Integration tests of the `llama-cli` binary: one test binary, one module per concern.

mod bad_input;
mod budget;
mod chat;
mod config;
mod fake_hub;
mod flags;
mod machine;
mod prompt;
mod serve;
mod session_files;
mod shapes;
mod show;
mod store_fit;
mod store_interop;
mod store_pull;
mod store_support;
mod support;
mod weights;
