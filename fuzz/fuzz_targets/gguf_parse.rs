//! libFuzzer target: `GgufFile::parse` on arbitrary bytes, then everything built on a
//! successful parse (see `llama_rs_fuzz::check`). Run with `cargo fuzz run gguf_parse`
//! (scripts/fuzz-gguf.sh does).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    llama_rs_fuzz::check(data);
});
