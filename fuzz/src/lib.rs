//! Shared code of the GGUF fuzz targets: the check every input goes through, and the seeds.
//!
//! The reader is llama-core's, built without its `ffi` feature (`default-features = false`),
//! so fuzzing never builds llama.cpp.

pub use llama_core::{cache_spec, gguf};

use cache_spec::{KvCacheParams, KvCacheType, ModelCacheSpec};
use gguf::writer::GgufWriter;
use gguf::{GgmlType, GgufFile, GgufModel};

/// Parses `data` as a GGUF file and, when that succeeds, exercises everything built on
/// the result (summaries, display, KV-cache sizing). Panics only on a bug: the reader
/// must turn every malformed input into an error.
pub fn check(data: &[u8]) {
    let Ok(file) = GgufFile::parse(data) else {
        return;
    };
    assert!(file.data_offset >= file.header_size);
    assert!(file.data_offset % file.alignment == 0);
    for t in &file.tensors {
        assert!(t.n_bytes == 0 || t.file_offset + t.n_bytes <= file.file_size);
        assert!(t.offset % file.alignment == 0);
    }
    let model = GgufModel::from_file(file);
    let _ = model.summary();
    let _ = model.weight_groups();
    for (key, value) in model.metadata().iter() {
        let _ = format!("{key} = {value}");
    }
    if let Ok(spec) = ModelCacheSpec::from_gguf(&model) {
        for t in [KvCacheType::F16, KvCacheType::Q8_0, KvCacheType::Q4_0] {
            let _ = spec.kv_bytes_per_token(t, t);
            let _ = spec.kv_bytes_per_block(t, t);
        }
        let mut p = KvCacheParams::new(4096);
        p.swa_full = false;
        let _ = spec.kv_bytes(&p);
    }
}

/// Small valid GGUF files to start fuzzing from.
pub fn seed_files() -> Vec<Vec<u8>> {
    let mut llama = GgufWriter::new();
    llama
        .add("general.architecture", "llama")
        .add("general.file_type", 3u32)
        .add("llama.block_count", 2u32)
        .add("llama.context_length", 2048u32)
        .add("llama.embedding_length", 64u32)
        .add("llama.attention.head_count", 4u32)
        .add("llama.attention.head_count_kv", vec![2u32, 1])
        .add("tokenizer.ggml.tokens", vec!["<s>", "</s>", "a", "b"])
        .add("tokenizer.ggml.scores", vec![0.0f32, 0.0, -1.0, -2.0])
        .add("tokenizer.chat_template", "{{ x }}")
        .add_tensor_zeroed("token_embd.weight", &[64, 4], GgmlType::Q8_0)
        .add_tensor_zeroed("blk.0.attn_q.weight", &[64, 64], GgmlType::Q4_1)
        .add_tensor_zeroed("blk.1.ffn_down.weight", &[256, 2], GgmlType::Q4_K)
        .add_tensor_zeroed("output_norm.weight", &[64], GgmlType::F32);

    let mut gemma = GgufWriter::new();
    gemma
        .version(2)
        .add("general.architecture", "gemma3")
        .add("general.alignment", 64u32)
        .add("gemma3.block_count", 6u32)
        .add("gemma3.embedding_length", 256u32)
        .add("gemma3.attention.head_count", 4u32)
        .add("gemma3.attention.key_length", 64u32)
        .add("gemma3.attention.sliding_window", 512u32)
        .add(
            "gemma3.attention.sliding_window_pattern",
            vec![true, true, false, true, true, false],
        )
        .add(
            "nested",
            gguf::ArrayValue::Array(vec![gguf::ArrayValue::I64(vec![-1, 2])]),
        )
        .add("f64", 1.5f64)
        .add("i8", -3i8)
        .add_tensor_zeroed("blk.0.attn_k.weight", &[256, 2], GgmlType::BF16);

    vec![llama.to_bytes(), gemma.to_bytes()]
}
