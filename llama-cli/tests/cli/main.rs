//! Integration tests of the `llama-cli` binary: one test binary, one module per concern.

mod bad_input;
mod budget;
mod chat;
mod config;
mod machine;
mod prompt;
mod serve;
mod session_files;
mod shapes;
mod show;
mod support;
mod weights;
