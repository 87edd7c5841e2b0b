//! Tests of `llama_core::cache_spec`: KV-cache geometry and sizes for published model
//! configurations (metadata-only GGUF files made with the writer), checked against
//! sizes worked out by hand, and the real SmolLM2 model when present.

use std::path::{Path, PathBuf};

use llama_core::cache_spec::{
    is_swa_layer, CacheSpecError, KvCacheParams, KvCacheType, KvSplit, ModelCacheSpec,
};
use llama_core::gguf::writer::GgufWriter;
use llama_core::gguf::{GgufFile, GgufModel, Value};

use KvCacheType::{F16, Q4_0, Q8_0};

const MIB: u64 = 1024 * 1024;

/// The real model: `$LLAMA_RS_MODEL`, else `<workspace>/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf`.
/// A missing model fails the test with how to fetch it (docs/TEST_STRATEGY.md: no silent skips).
fn test_model_path() -> PathBuf {
    let p = match std::env::var_os("LLAMA_RS_MODEL") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    assert!(
        p.is_file(),
        "test model missing at {}: run scripts/fetch-model.sh (scripts/test.sh does)",
        p.display()
    );
    p
}

/// A metadata-only model of architecture `arch` with the given `{arch}.*` keys.
fn model(arch: &str, keys: &[(&str, Value)]) -> GgufModel {
    let mut w = GgufWriter::new();
    w.add("general.architecture", arch);
    for (k, v) in keys {
        w.add(format!("{arch}.{k}"), v.clone());
    }
    GgufModel::from_file(GgufFile::parse(&w.to_bytes()).expect("fixture parses"))
}

fn spec(arch: &str, keys: &[(&str, Value)]) -> ModelCacheSpec {
    ModelCacheSpec::from_gguf(&model(arch, keys)).expect("spec")
}

/// Llama 3.1 8B: 32 layers, 32 heads, 8 KV heads, embedding 4096 (head dim 4096/32 = 128).
fn llama31_8b() -> ModelCacheSpec {
    spec(
        "llama",
        &[
            ("block_count", 32u32.into()),
            ("context_length", 131072u32.into()),
            ("embedding_length", 4096u32.into()),
            ("attention.head_count", 32u32.into()),
            ("attention.head_count_kv", 8u32.into()),
        ],
    )
}

/// Qwen 2.5 14B: 48 layers, 40 heads, 8 KV heads, embedding 5120 (head dim 128).
fn qwen25_14b() -> ModelCacheSpec {
    spec(
        "qwen2",
        &[
            ("block_count", 48u32.into()),
            ("embedding_length", 5120u32.into()),
            ("attention.head_count", 40u32.into()),
            ("attention.head_count_kv", 8u32.into()),
        ],
    )
}

/// Gemma 3 12B: 48 layers, 16 heads, 8 KV heads, head dim 256 (explicit; 3840/16 would
/// be 240), sliding window 1024, default pattern 6 (every 6th layer global).
fn gemma3_12b(extra: &[(&str, Value)]) -> ModelCacheSpec {
    let mut keys = vec![
        ("block_count", 48u32.into()),
        ("embedding_length", 3840u32.into()),
        ("attention.head_count", 16u32.into()),
        ("attention.head_count_kv", 8u32.into()),
        ("attention.key_length", 256u32.into()),
        ("attention.value_length", 256u32.into()),
        ("attention.sliding_window", 1024u32.into()),
    ];
    keys.extend(extra.iter().cloned());
    spec("gemma3", &keys)
}

/// GPT-OSS 20B: 24 layers, 64 heads, 8 KV heads, head dim 64, sliding window 128,
/// alternating sliding/global layers (llama.cpp's default pattern 2 for gpt-oss).
fn gpt_oss_20b() -> ModelCacheSpec {
    spec(
        "gpt-oss",
        &[
            ("block_count", 24u32.into()),
            ("embedding_length", 2880u32.into()),
            ("attention.head_count", 64u32.into()),
            ("attention.head_count_kv", 8u32.into()),
            ("attention.key_length", 64u32.into()),
            ("attention.value_length", 64u32.into()),
            ("attention.sliding_window", 128u32.into()),
        ],
    )
}

fn split(global: u64, sliding: u64) -> KvSplit {
    KvSplit { global, sliding }
}

#[test]
fn llama31_8b_sizes() {
    let s = llama31_8b();
    assert_eq!(
        (s.n_layers, s.n_global_layers(), s.n_sliding_layers()),
        (32, 32, 0)
    );
    assert!(s
        .layers
        .iter()
        .all(|l| (l.n_head_kv, l.head_dim_k, l.head_dim_v) == (8, 128, 128)));
    // A K (or V) row is 8 heads × 128 = 1024 elements.
    // f16: 1024 × 2 B = 2048 B; K+V = 4096 B per layer; × 32 layers = 131072 B/token.
    assert_eq!(s.kv_bytes_per_token(F16, F16).unwrap(), 131_072);
    // q8_0: 1024/32 = 32 blocks × 34 B = 1088 B; K+V 2176 B; × 32 = 69632 B/token.
    assert_eq!(s.kv_bytes_per_token(Q8_0, Q8_0).unwrap(), 69_632);
    // q4_0: 32 blocks × 18 B = 576 B; K+V 1152 B; × 32 = 36864 B/token.
    assert_eq!(s.kv_bytes_per_token(Q4_0, Q4_0).unwrap(), 36_864);
    // Mixed: q8_0 K (1088) + f16 V (2048) = 3136 B per layer × 32 = 100352.
    assert_eq!(s.kv_bytes_per_token(Q8_0, F16).unwrap(), 100_352);
    // A 256-token block: 131072 × 256 = 32 MiB.
    assert_eq!(s.kv_bytes_per_block(F16, F16).unwrap(), split(32 * MIB, 0));

    // 8192 tokens: 8192 × 131072 = 1 GiB.
    let size = s.kv_bytes(&KvCacheParams::new(8192)).unwrap();
    assert_eq!(size.total_bytes(), 1024 * MIB);
    assert_eq!((size.global_cells, size.sliding_cells), (8192, 0));
    // 1000 tokens are padded to 1024 cells: 4 blocks × 32 MiB = 128 MiB.
    let size = s.kv_bytes(&KvCacheParams::new(1000)).unwrap();
    assert_eq!((size.n_ctx_padded, size.total_bytes()), (1024, 128 * MIB));
}

#[test]
fn qwen25_14b_sizes() {
    let s = qwen25_14b();
    assert_eq!(s.n_layers, 48);
    // 48 layers × (K+V) 2 × 1024 elements × 2 B = 196608 B/token.
    assert_eq!(s.kv_bytes_per_token(F16, F16).unwrap(), 196_608);
    // q8_0: 48 × 2176 = 104448; q4_0: 48 × 1152 = 55296.
    assert_eq!(s.kv_bytes_per_token(Q8_0, Q8_0).unwrap(), 104_448);
    assert_eq!(s.kv_bytes_per_token(Q4_0, Q4_0).unwrap(), 55_296);
    // 256 × 196608 = 48 MiB per block; 32768 tokens = 128 blocks = 6 GiB.
    assert_eq!(s.kv_bytes_per_block(F16, F16).unwrap(), split(48 * MIB, 0));
    let size = s.kv_bytes(&KvCacheParams::new(32768)).unwrap();
    assert_eq!(size.total_bytes(), 6 * 1024 * MIB);
}

#[test]
fn gemma3_12b_sizes() {
    let s = gemma3_12b(&[]);
    // Pattern 6: layer il is global iff il % 6 == 5 → layers 5, 11, …, 47 = 8 global.
    assert_eq!((s.n_global_layers(), s.n_sliding_layers()), (8, 40));
    let globals: Vec<u32> = s
        .layers
        .iter()
        .filter(|l| !l.sliding)
        .map(|l| l.index)
        .collect();
    assert_eq!(globals, [5, 11, 17, 23, 29, 35, 41, 47]);
    assert_eq!(s.sliding_window, Some(1024));
    // Row: 8 heads × 256 = 2048 elements. f16: 4096 B per row, 8192 B (K+V) per layer.
    // Global 8 × 8192 = 65536; sliding 40 × 8192 = 327680; total 393216 B/token.
    assert_eq!(
        s.kv_bytes_per_token_split(F16, F16).unwrap(),
        split(65_536, 327_680)
    );
    assert_eq!(s.kv_bytes_per_token(F16, F16).unwrap(), 393_216);
    // q8_0: 64 blocks × 34 = 2176 per row, 4352 per layer: 8 × 4352 = 34816, 40 × 4352 = 174080.
    assert_eq!(
        s.kv_bytes_per_token_split(Q8_0, Q8_0).unwrap(),
        split(34_816, 174_080)
    );
    // q4_0: 64 × 18 = 1152 per row, 2304 per layer: 18432 and 92160.
    assert_eq!(
        s.kv_bytes_per_token_split(Q4_0, Q4_0).unwrap(),
        split(18_432, 92_160)
    );
    // Per 256-token block (f16): 65536 × 256 = 16 MiB global, 327680 × 256 = 80 MiB sliding.
    assert_eq!(
        s.kv_bytes_per_block(F16, F16).unwrap(),
        split(16 * MIB, 80 * MIB)
    );

    // 32768 tokens, n_ubatch 512, SWA capped: sliding layers hold
    // pad256(min(32768, 1024 + 512)) = 1536 cells.
    // Global 65536 × 32768 = 2 GiB; sliding 327680 × 1536 = 480 MiB.
    let mut p = KvCacheParams::new(32768);
    p.swa_full = false;
    let size = s.kv_bytes(&p).unwrap();
    assert_eq!((size.global_cells, size.sliding_cells), (32768, 1536));
    assert_eq!(size.bytes, split(2048 * MIB, 480 * MIB));
    // With swa_full (llama.cpp's default) sliding layers hold all 32768 cells: 10 GiB.
    p.swa_full = true;
    assert_eq!(
        s.kv_bytes(&p).unwrap().bytes,
        split(2048 * MIB, 10 * 1024 * MIB)
    );
    // A small context caps the SWA cache too: 1000 → 1024 cells for both kinds.
    let mut p = KvCacheParams::new(1000);
    p.swa_full = false;
    let size = s.kv_bytes(&p).unwrap();
    assert_eq!((size.global_cells, size.sliding_cells), (1024, 1024));
    assert_eq!(size.total_bytes(), 393_216 * 1024);
    // 4 unified sequences in 8192 cells: SWA holds pad256(min(8192, 4 × 1024 + 512)) = 4608.
    let mut p = KvCacheParams::new(8192);
    p.swa_full = false;
    p.n_seq = 4;
    p.unified = true;
    let size = s.kv_bytes(&p).unwrap();
    assert_eq!(
        (size.n_stream, size.global_cells, size.sliding_cells),
        (1, 8192, 4608)
    );
    // 4 separate streams: 8192 / 4 = 2048 cells each, SWA pad256(min(2048, 1024 + 512)) = 1536.
    p.unified = false;
    let size = s.kv_bytes(&p).unwrap();
    assert_eq!(
        (size.n_stream, size.global_cells, size.sliding_cells),
        (4, 2048, 1536)
    );
    assert_eq!(size.bytes, split(65_536 * 2048 * 4, 327_680 * 1536 * 4));
}

#[test]
fn gemma3_pattern_variants() {
    // An explicit period overrides the default.
    let s = gemma3_12b(&[("attention.sliding_window_pattern", 4u32.into())]);
    assert_eq!(s.n_global_layers(), 12);
    // A per-layer bool array is taken as is.
    let flags: Vec<bool> = (0..48).map(|il| il % 2 == 0).collect();
    let s = gemma3_12b(&[("attention.sliding_window_pattern", flags.into())]);
    assert_eq!(s.n_sliding_layers(), 24);
    assert!(s.layers[0].sliding && !s.layers[1].sliding);
    // Gemma 3 without a sliding window has no SWA (llama.cpp: swa_type NONE).
    let s = spec(
        "gemma3",
        &[
            ("block_count", 4u32.into()),
            ("embedding_length", 256u32.into()),
            ("attention.head_count", 4u32.into()),
        ],
    );
    assert_eq!(s.n_sliding_layers(), 0);
    assert_eq!(s.sliding_window, None);
}

#[test]
fn gpt_oss_20b_sizes() {
    let s = gpt_oss_20b();
    // Pattern 2: even layers slide, odd layers are global: 12 and 12.
    assert_eq!((s.n_global_layers(), s.n_sliding_layers()), (12, 12));
    assert!(s.layers[0].sliding && !s.layers[1].sliding && !s.layers[23].sliding);
    // Row 8 × 64 = 512 elements: f16 1024 B, K+V 2048 B per layer; 12 layers each = 24576.
    assert_eq!(
        s.kv_bytes_per_token_split(F16, F16).unwrap(),
        split(24_576, 24_576)
    );
    assert_eq!(s.kv_bytes_per_token(F16, F16).unwrap(), 49_152);
    // q8_0: 16 blocks × 34 = 544, 1088 per layer → 13056 each; q4_0: 288, 576 → 6912 each.
    assert_eq!(
        s.kv_bytes_per_token_split(Q8_0, Q8_0).unwrap(),
        split(13_056, 13_056)
    );
    assert_eq!(
        s.kv_bytes_per_token_split(Q4_0, Q4_0).unwrap(),
        split(6_912, 6_912)
    );
    // Per block: 24576 × 256 = 6 MiB each.
    assert_eq!(
        s.kv_bytes_per_block(F16, F16).unwrap(),
        split(6 * MIB, 6 * MIB)
    );
    // 131072 tokens: global 24576 × 131072 = 3 GiB; sliding pad256(128 + 512) = 768 cells
    // × 24576 = 18 MiB.
    let mut p = KvCacheParams::new(131_072);
    p.swa_full = false;
    let size = s.kv_bytes(&p).unwrap();
    assert_eq!(size.sliding_cells, 768);
    assert_eq!(size.bytes, split(3 * 1024 * MIB, 18 * MIB));
    // Quantised caches scale the same way: q8_0 global 13056 × 131072 = 1632 MiB.
    p.type_k = Q8_0;
    p.type_v = Q8_0;
    assert_eq!(s.kv_bytes(&p).unwrap().bytes.global, 1632 * MIB);
}

#[test]
fn per_layer_arrays_and_defaults() {
    // head_count_kv as an array; head_count_kv absent defaults to head_count.
    let s = spec(
        "llama",
        &[
            ("block_count", 3u32.into()),
            ("embedding_length", 256u32.into()),
            ("attention.head_count", 4u32.into()),
            ("attention.head_count_kv", vec![4u32, 0, 2].into()),
        ],
    );
    let heads: Vec<u64> = s.layers.iter().map(|l| l.n_head_kv).collect();
    assert_eq!(heads, [4, 0, 2]);
    // head dim 256/4 = 64; f16 per token: (4 + 0 + 2) heads × 64 × 2 B × (K+V) 2 = 1536.
    assert_eq!(s.kv_bytes_per_token(F16, F16).unwrap(), 1536);
    let s = spec(
        "llama",
        &[
            ("block_count", 2u32.into()),
            ("embedding_length", 256u32.into()),
            ("attention.head_count", 4u32.into()),
        ],
    );
    assert!(s
        .layers
        .iter()
        .all(|l| l.n_head_kv == 4 && l.head_dim_k == 64));

    // gemma2 defaults to a 4096-token window and period 2.
    let s = spec(
        "gemma2",
        &[
            ("block_count", 4u32.into()),
            ("embedding_length", 256u32.into()),
            ("attention.head_count", 4u32.into()),
        ],
    );
    assert_eq!((s.sliding_window, s.n_sliding_layers()), (Some(4096), 2));
}

#[test]
fn errors_name_the_key() {
    let err = ModelCacheSpec::from_gguf(&model("llama", &[])).unwrap_err();
    assert_eq!(
        err,
        CacheSpecError::MissingKey {
            key: "llama.block_count".into()
        }
    );
    assert!(err.to_string().contains("llama.block_count"));

    let err =
        ModelCacheSpec::from_gguf(&model("llama", &[("block_count", 2u32.into())])).unwrap_err();
    assert_eq!(
        err,
        CacheSpecError::MissingKey {
            key: "llama.attention.head_count".into()
        }
    );

    let err = ModelCacheSpec::from_gguf(&model(
        "llama",
        &[
            ("block_count", 2u32.into()),
            ("attention.head_count", 2u32.into()),
        ],
    ))
    .unwrap_err();
    assert_eq!(
        err,
        CacheSpecError::MissingKey {
            key: "llama.embedding_length".into()
        }
    );

    let err = ModelCacheSpec::from_gguf(&model(
        "llama",
        &[
            ("block_count", 3u32.into()),
            ("embedding_length", 256u32.into()),
            ("attention.head_count", vec![4u32, 4].into()),
        ],
    ))
    .unwrap_err();
    assert!(matches!(
        err,
        CacheSpecError::BadLayerArray {
            expected: 3,
            found: 2,
            ..
        }
    ));

    // gpt-oss needs its sliding window.
    let err = ModelCacheSpec::from_gguf(&model(
        "gpt-oss",
        &[
            ("block_count", 2u32.into()),
            ("embedding_length", 256u32.into()),
            ("attention.head_count", 4u32.into()),
        ],
    ))
    .unwrap_err();
    assert_eq!(
        err,
        CacheSpecError::MissingKey {
            key: "gpt-oss.attention.sliding_window".into()
        }
    );

    let mut w = GgufWriter::new();
    w.add("x", 1u8);
    let no_arch = GgufModel::from_file(GgufFile::parse(&w.to_bytes()).unwrap());
    assert_eq!(
        ModelCacheSpec::from_gguf(&no_arch).unwrap_err(),
        CacheSpecError::NoArchitecture
    );

    // Head size 48 is not a whole number of q4_0 blocks (llama.cpp refuses too).
    let s = spec(
        "llama",
        &[
            ("block_count", 1u32.into()),
            ("embedding_length", 192u32.into()),
            ("attention.head_count", 4u32.into()),
        ],
    );
    assert!(matches!(
        s.kv_bytes_per_token(Q4_0, F16),
        Err(CacheSpecError::HeadDimNotBlockAligned {
            head_dim: 48,
            block_size: 32,
            ..
        })
    ));
}

#[test]
fn swa_pattern_semantics() {
    // llama.cpp set_swa_pattern(n): SWA iff n == 0 || il % n < n - 1.
    assert!((0..12).all(|il| is_swa_layer(il, 0, false)));
    assert!((0..12).all(|il| !is_swa_layer(il, 1, false)));
    let p6: Vec<bool> = (0..12).map(|il| is_swa_layer(il, 6, false)).collect();
    assert_eq!(
        p6,
        [true, true, true, true, true, false, true, true, true, true, true, false]
    );
    // dense_first: the first layer of each period is global.
    let p4: Vec<bool> = (0..8).map(|il| is_swa_layer(il, 4, true)).collect();
    assert_eq!(p4, [false, true, true, true, false, true, true, true]);
}

#[test]
fn cache_type_names() {
    assert_eq!(KvCacheType::from_name("q8_0"), Some(Q8_0));
    assert_eq!(KvCacheType::from_name("F16"), Some(F16));
    assert_eq!(KvCacheType::from_name("iq4_nl"), Some(KvCacheType::IQ4_NL));
    assert_eq!(KvCacheType::from_name("q4_k"), None);
    assert_eq!(Q8_0.row_size(32), Some(34));
    assert_eq!(Q4_0.row_size(64), Some(36));
    assert_eq!(F16.row_size(3), Some(6));
    assert_eq!(Q8_0.to_string(), "q8_0");
}

#[test]
fn smollm2_real_model() {
    let path = test_model_path();
    let model = GgufModel::open(&path).unwrap();
    let s = ModelCacheSpec::from_gguf(&model).unwrap();
    assert_eq!(s.n_layers, 30);
    assert!(s
        .layers
        .iter()
        .all(|l| (l.n_head_kv, l.head_dim_k, l.head_dim_v) == (3, 64, 64)));
    // 30 layers × 2 (K+V) × 3 heads × 64 × 2 B = 23040 B/token.
    assert_eq!(s.kv_bytes_per_token(F16, F16).unwrap(), 23_040);
    // llama.cpp's default 512-token context → 512 cells × 23040 = 11.25 MiB.
    assert_eq!(
        s.kv_bytes(&KvCacheParams::new(512)).unwrap().total_bytes(),
        11_796_480
    );
}
