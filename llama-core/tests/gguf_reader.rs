//! Tests of the pure-Rust GGUF reader (`llama_core::gguf`): round trips through the
//! writer, every error variant, truncation and mutation robustness, split models, and
//! (when present) the real SmolLM2 model file.

use std::path::{Path, PathBuf};

use llama_core::gguf::writer::GgufWriter;
use llama_core::gguf::{
    split_file_name, ArrayValue, GgmlType, GgufError, GgufFile, GgufModel, SplitName, StringArray,
    Value, ValueType,
};
use proptest::prelude::*;

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

/// A small but realistic llama-style file: typical metadata, a vocabulary, tensors
/// of several types in two blocks, with data.
fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add("general.architecture", "llama")
        .add("general.name", "tiny test model")
        .add("general.file_type", 3u32)
        .add("llama.block_count", 2u32)
        .add("llama.context_length", 2048u32)
        .add("llama.embedding_length", 64u32)
        .add("llama.attention.head_count", 4u32)
        .add("llama.attention.head_count_kv", 2u32)
        .add("llama.rope.freq_base", 10000.0f32)
        .add("tokenizer.ggml.model", "gpt2")
        .add(
            "tokenizer.ggml.tokens",
            vec!["<s>", "</s>", "hello", "wörld", "🦙"],
        )
        .add("tokenizer.ggml.scores", vec![0.0f32, 0.0, -1.5, -2.5, -3.0])
        .add("tokenizer.ggml.token_type", vec![3i32, 3, 1, 1, 1])
        .add("tokenizer.chat_template", "{{ messages }}")
        .add_tensor_zeroed("token_embd.weight", &[64, 5], GgmlType::Q8_0);
    for layer in 0..2 {
        w.add_tensor_zeroed(
            format!("blk.{layer}.attn_norm.weight"),
            &[64],
            GgmlType::F32,
        )
        .add_tensor_zeroed(
            format!("blk.{layer}.attn_q.weight"),
            &[64, 64],
            GgmlType::Q4_1,
        )
        .add_tensor_zeroed(
            format!("blk.{layer}.ffn_down.weight"),
            &[256, 64],
            GgmlType::Q4_K,
        );
    }
    w.add_tensor_zeroed("output_norm.weight", &[64], GgmlType::F32);
    w
}

fn parse_err(bytes: &[u8]) -> GgufError {
    match GgufFile::parse(bytes) {
        Ok(f) => panic!("expected an error, parsed {} tensors", f.tensors.len()),
        Err(e) => e,
    }
}

/// A header with one metadata pair whose raw value bytes (type id + payload) are
/// `value`, followed by 64 zero bytes (so counts are not rejected for size alone).
fn raw_kv(key: &str, value: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(value);
    b.extend_from_slice(&[0; 64]);
    b
}

#[test]
fn round_trips_every_value_type() {
    let nested = ArrayValue::Array(vec![
        ArrayValue::U32(vec![1, 2, 3]),
        ArrayValue::String(vec!["a", ""].into()),
        ArrayValue::Array(vec![ArrayValue::Bool(vec![true, false])]),
        ArrayValue::F64(vec![]),
    ]);
    let entries: Vec<(&str, Value)> = vec![
        ("u8", Value::U8(200)),
        ("i8", Value::I8(-100)),
        ("u16", Value::U16(65000)),
        ("i16", Value::I16(-32000)),
        ("u32", Value::U32(4_000_000_000)),
        ("i32", Value::I32(-2_000_000_000)),
        ("f32", Value::F32(1.5)),
        ("bool.t", Value::Bool(true)),
        ("bool.f", Value::Bool(false)),
        ("string", Value::from("héllo, 世界")),
        ("empty.string", Value::from("")),
        ("u64", Value::U64(u64::MAX)),
        ("i64", Value::I64(i64::MIN)),
        ("f64", Value::F64(-2.25e300)),
        ("arr.u8", Value::from(vec![0u8, 255])),
        ("arr.i8", Value::from(vec![-1i8, 1])),
        ("arr.u16", Value::from(vec![1u16, 2])),
        ("arr.i16", Value::from(vec![-1i16, 2])),
        ("arr.u32", Value::from(vec![7u32])),
        ("arr.i32", Value::from(vec![-7i32, 7])),
        ("arr.f32", Value::from(vec![0.5f32, -0.5])),
        ("arr.bool", Value::from(vec![true, false, true])),
        (
            "arr.string",
            Value::from(vec!["x".to_string(), "yz".to_string()]),
        ),
        ("arr.u64", Value::from(vec![u64::MAX, 0])),
        ("arr.i64", Value::from(vec![i64::MIN, i64::MAX])),
        ("arr.f64", Value::from(vec![1e-300f64])),
        ("arr.empty", Value::from(Vec::<u32>::new())),
        ("arr.nested", Value::Array(nested)),
    ];
    for version in [2u32, 3] {
        let mut w = GgufWriter::new();
        w.version(version);
        for (k, v) in &entries {
            w.add(*k, v.clone());
        }
        let file = GgufFile::parse(&w.to_bytes()).expect("round trip parses");
        assert_eq!(file.version, version);
        let got: Vec<(&str, &Value)> = file.metadata.iter().collect();
        assert_eq!(got.len(), entries.len());
        for ((gk, gv), (ek, ev)) in got.iter().zip(&entries) {
            assert_eq!(gk, ek);
            assert_eq!(*gv, ev, "value of {ek}");
        }
        assert!(file.tensors.is_empty());
        assert_eq!(file.alignment, 32);
        assert_eq!(file.data_offset % 32, 0);
    }
}

#[test]
fn typed_getters_convert_widths() {
    let mut w = GgufWriter::new();
    w.add("a", 5u8)
        .add("b", -1i32)
        .add("c", 2.5f64)
        .add("d", vec![1u16, 2, 3])
        .add(
            "e",
            vec!["x", "y"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>(),
        );
    let model = GgufModel::from_file(GgufFile::parse(&w.to_bytes()).unwrap());
    assert_eq!(model.get_u64("a"), Some(5));
    assert_eq!(model.get_u64("b"), None);
    assert_eq!(model.get_i64("b"), Some(-1));
    assert_eq!(model.get_f32("c"), Some(2.5));
    assert_eq!(model.get_array_u64("d"), Some(vec![1, 2, 3]));
    assert_eq!(model.get_array_str("e").map(StringArray::len), Some(2));
    assert_eq!(model.get_str("a"), None);
    assert_eq!(model.get("missing"), None);
    assert_eq!(model.get("a").map(Value::value_type), Some(ValueType::U8));
}

#[test]
fn tensors_sizes_offsets_and_summary() {
    let bytes = sample_writer().to_bytes();
    let file = GgufFile::parse(&bytes).unwrap();
    assert_eq!(file.tensors.len(), 8);
    assert_eq!(file.file_size, bytes.len() as u64);
    assert_eq!(file.data_offset % file.alignment, 0);
    assert!(file.data_offset >= file.header_size);
    let embd = file.tensor("token_embd.weight").unwrap();
    // Q8_0: 34 bytes per 32 elements; 64 * 5 elements = 10 blocks.
    assert_eq!(embd.n_bytes, 340);
    assert_eq!(embd.offset, 0);
    assert_eq!(embd.file_offset, file.data_offset);
    let q = file.tensor("blk.0.attn_q.weight").unwrap();
    // Q4_1: 20 bytes per 32 elements; 4096 elements = 128 blocks.
    assert_eq!(q.n_bytes, 2560);
    assert_eq!(q.ggml_type, GgmlType::Q4_1);
    let down = file.tensor("blk.1.ffn_down.weight").unwrap();
    // Q4_K: 144 bytes per 256 elements; 16384 elements = 64 blocks.
    assert_eq!(down.n_bytes, 9216);
    for t in &file.tensors {
        assert_eq!(t.offset % 32, 0, "{} aligned", t.name);
        assert!(t.file_offset + t.n_bytes <= file.file_size);
    }

    let model = GgufModel::from_file(file);
    assert_eq!(model.architecture(), Some("llama"));
    assert_eq!(model.arch_u64("block_count"), Some(2));
    let groups = model.weight_groups();
    assert_eq!(groups.layers.len(), 2);
    assert_eq!(groups.layers[1].index, 1);
    assert_eq!(groups.layers[0].tensors.len(), 3);
    assert_eq!(groups.layers[0].n_bytes, 256 + 2560 + 9216);
    assert_eq!(groups.globals.len(), 2);
    assert_eq!(groups.global_bytes, 340 + 256);
    assert_eq!(groups.total_bytes, 2 * (256 + 2560 + 9216) + 340 + 256);
    let s = model.summary();
    assert_eq!(s.n_params, 320 + 2 * (64 + 4096 + 16384) + 64);
    assert_eq!(s.file_type.as_deref(), Some("Q4_1"));
    assert_eq!(s.dominant_type, Some(GgmlType::Q4_K));
    assert_eq!(s.context_length, Some(2048));
    assert_eq!(s.head_count_kv, Some(2));
    assert!(s.has_chat_template);
    assert_eq!(s.n_tensors, 8);
}

#[test]
fn ggml_type_table_matches_ggml() {
    let expect = [
        (GgmlType::F32, 0, 1, 4),
        (GgmlType::F16, 1, 1, 2),
        (GgmlType::Q4_0, 2, 32, 18),
        (GgmlType::Q4_1, 3, 32, 20),
        (GgmlType::Q5_0, 6, 32, 22),
        (GgmlType::Q5_1, 7, 32, 24),
        (GgmlType::Q8_0, 8, 32, 34),
        (GgmlType::Q8_1, 9, 32, 36),
        (GgmlType::Q2_K, 10, 256, 84),
        (GgmlType::Q3_K, 11, 256, 110),
        (GgmlType::Q4_K, 12, 256, 144),
        (GgmlType::Q5_K, 13, 256, 176),
        (GgmlType::Q6_K, 14, 256, 210),
        (GgmlType::Q8_K, 15, 256, 292),
        (GgmlType::IQ2_XXS, 16, 256, 66),
        (GgmlType::IQ2_XS, 17, 256, 74),
        (GgmlType::IQ3_XXS, 18, 256, 98),
        (GgmlType::IQ1_S, 19, 256, 50),
        (GgmlType::IQ4_NL, 20, 32, 18),
        (GgmlType::IQ3_S, 21, 256, 110),
        (GgmlType::IQ2_S, 22, 256, 82),
        (GgmlType::IQ4_XS, 23, 256, 136),
        (GgmlType::I8, 24, 1, 1),
        (GgmlType::I16, 25, 1, 2),
        (GgmlType::I32, 26, 1, 4),
        (GgmlType::I64, 27, 1, 8),
        (GgmlType::F64, 28, 1, 8),
        (GgmlType::IQ1_M, 29, 256, 56),
        (GgmlType::BF16, 30, 1, 2),
        (GgmlType::TQ1_0, 34, 256, 54),
        (GgmlType::TQ2_0, 35, 256, 66),
        (GgmlType::MXFP4, 39, 32, 17),
    ];
    for (t, id, block, size) in expect {
        assert_eq!(t.id(), id, "{t}");
        assert_eq!(GgmlType::from_id(id), Some(t));
        assert_eq!((t.block_size(), t.type_size()), (block, size), "{t}");
        assert_eq!(GgmlType::from_name(t.name()), Some(t));
    }
    for removed in [4, 5, 31, 32, 33, 36, 37, 38, 43, 1000] {
        assert_eq!(GgmlType::from_id(removed), None, "id {removed}");
    }
    assert_eq!(GgmlType::Q8_0.row_size(64), Some(68));
    assert_eq!(GgmlType::Q8_0.row_size(33), None);
    assert_eq!(GgmlType::Q4_K.ggml_name(), "q4_K");
}

#[test]
fn rejects_bad_magic_and_versions() {
    let mut bytes = sample_writer().to_bytes();
    bytes[0] = b'X';
    assert!(matches!(parse_err(&bytes), GgufError::BadMagic { found } if found == *b"XGUF"));

    for version in [0u32, 1, 4, 99] {
        let mut w = sample_writer();
        w.version(version);
        let err = parse_err(&w.to_bytes());
        assert!(
            matches!(err, GgufError::UnsupportedVersion { version: v } if v == version),
            "{err}"
        );
    }
    let mut w = sample_writer();
    w.version(3u32.swap_bytes());
    assert!(matches!(
        parse_err(&w.to_bytes()),
        GgufError::BigEndian { .. }
    ));
    assert!(matches!(parse_err(b""), GgufError::Truncated { .. }));
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let bytes = sample_writer().to_bytes();
    let file = GgufFile::parse(&bytes).unwrap();
    for len in 0..bytes.len() {
        let err = match GgufFile::parse(&bytes[..len]) {
            Err(e) => e,
            // Cutting only padding before the data section is harmless only if no
            // tensor data is lost; this file has tensor data up to the very end.
            Ok(_) => panic!("truncation to {len} bytes parsed"),
        };
        if (len as u64) < file.header_size {
            assert!(
                matches!(
                    err,
                    GgufError::Truncated { .. } | GgufError::CountTooLarge { .. }
                ),
                "len {len}: {err}"
            );
        } else {
            assert!(
                matches!(err, GgufError::TensorOutOfBounds { .. }),
                "len {len}: {err}"
            );
        }
    }
}

#[test]
fn huge_lengths_and_counts_fail_fast() {
    // Each case must fail before allocating: the test would abort (or crawl) otherwise.
    let string_of = |len: u64| {
        let mut v = 8u32.to_le_bytes().to_vec();
        v.extend_from_slice(&len.to_le_bytes());
        raw_kv("k", &v)
    };
    let array_of = |elem: u32, n: u64| {
        let mut v = 9u32.to_le_bytes().to_vec();
        v.extend_from_slice(&elem.to_le_bytes());
        v.extend_from_slice(&n.to_le_bytes());
        raw_kv("k", &v)
    };
    // Over llama.cpp's 2^30 limit: a string of length 2^63, 2^62 u64s (whose byte size
    // overflows), u64::MAX strings.
    for bytes in [
        string_of(1 << 63),
        array_of(10, 1 << 62),
        array_of(8, u64::MAX),
    ] {
        let err = parse_err(&bytes);
        assert!(
            matches!(err, GgufError::LimitExceeded { offset: 37 | 41, limit, .. } if limit == 1 << 30),
            "{err}"
        );
    }
    // Within the limit but larger than the file.
    for bytes in [
        string_of(1 << 30),
        array_of(6, 1 << 28),
        array_of(9, 1 << 20),
    ] {
        let err = parse_err(&bytes);
        assert!(
            matches!(err, GgufError::CountTooLarge { available, .. } if available < 100),
            "{err}"
        );
    }
    // Key of length 2^63.
    let mut b = raw_kv("k", &[]);
    b[24..32].copy_from_slice(&(1u64 << 63).to_le_bytes());
    assert!(matches!(
        parse_err(&b),
        GgufError::LimitExceeded { offset: 24, .. }
    ));
    // Metadata and tensor counts of u64::MAX.
    let mut b = GgufWriter::new().to_bytes();
    b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        parse_err(&b),
        GgufError::CountTooLarge { offset: 16, .. }
    ));
    let mut b = GgufWriter::new().to_bytes();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        parse_err(&b),
        GgufError::CountTooLarge { offset: 8, .. }
    ));
}

#[test]
fn malformed_metadata_gives_specific_errors() {
    let mut w = GgufWriter::new();
    w.add("a", 1u8).add("a", 2u8);
    assert!(matches!(parse_err(&w.to_bytes()), GgufError::DuplicateKey { key, .. } if key == "a"));

    let mut w = GgufWriter::new();
    w.add("", 1u8);
    assert!(matches!(
        parse_err(&w.to_bytes()),
        GgufError::EmptyKey { index: 0, .. }
    ));

    let err = parse_err(&raw_kv("k", &13u32.to_le_bytes()));
    assert!(
        matches!(err, GgufError::UnknownValueType { type_id: 13, .. }),
        "{err}"
    );

    let mut bad_utf8 = b"GGUF".to_vec();
    bad_utf8.extend_from_slice(&3u32.to_le_bytes());
    bad_utf8.extend_from_slice(&0u64.to_le_bytes());
    bad_utf8.extend_from_slice(&1u64.to_le_bytes());
    bad_utf8.extend_from_slice(&2u64.to_le_bytes());
    bad_utf8.extend_from_slice(&[0xff, 0xfe, 0, 0, 0, 0, 0]);
    assert!(matches!(
        parse_err(&bad_utf8),
        GgufError::InvalidUtf8 { offset: 32, .. }
    ));

    // Arrays nested 9 deep.
    let mut deep = ArrayValue::U8(vec![1]);
    for _ in 0..8 {
        deep = ArrayValue::Array(vec![deep]);
    }
    let mut w = GgufWriter::new();
    w.add("deep", deep.clone());
    assert!(matches!(
        parse_err(&w.to_bytes()),
        GgufError::NestingTooDeep { max: 8, .. }
    ));
    let ArrayValue::Array(inner) = deep else {
        unreachable!()
    };
    let mut w = GgufWriter::new();
    w.add("deep", inner[0].clone());
    assert!(GgufFile::parse(&w.to_bytes()).is_ok(), "8 levels are fine");
}

#[test]
fn alignment_rules() {
    for bad in [0u32, 3, 48] {
        let mut w = GgufWriter::new();
        w.add("general.alignment", bad);
        let err = parse_err(&w.to_bytes());
        assert!(
            matches!(err, GgufError::BadAlignment { alignment } if alignment == u64::from(bad))
        );
    }
    let mut w = GgufWriter::new();
    w.add("general.alignment", 32u64);
    assert!(matches!(
        parse_err(&w.to_bytes()),
        GgufError::AlignmentType {
            found: ValueType::U64
        }
    ));

    let mut w = sample_writer();
    w.add("general.alignment", 64u32);
    let file = GgufFile::parse(&w.to_bytes()).unwrap();
    assert_eq!(file.alignment, 64);
    assert_eq!(file.data_offset % 64, 0);
    assert!(file.tensors.iter().all(|t| t.offset % 64 == 0));
}

#[test]
fn malformed_tensors_give_specific_errors() {
    let mut w = GgufWriter::new();
    w.add_tensor_zeroed("t", &[32], GgmlType::F32)
        .add_raw_tensor_info("u", &[32], 0, 16);
    assert!(matches!(
        parse_err(&w.to_bytes()),
        GgufError::MisalignedTensor {
            data_offset: 16,
            alignment: 32,
            ..
        }
    ));

    let mut w = GgufWriter::new();
    w.add_raw_tensor_info("t", &[32], 0, 0);
    assert!(matches!(
        parse_err(&w.to_bytes()),
        GgufError::TensorOutOfBounds { name, .. } if name == "t"
    ));
    let mut w = GgufWriter::new();
    w.add_raw_tensor_info("t", &[32], 0, u64::MAX - 31);
    assert!(matches!(
        parse_err(&w.to_bytes()),
        GgufError::Overflow { .. } | GgufError::TensorOutOfBounds { .. }
    ));

    let mut w = GgufWriter::new();
    w.add_tensor_zeroed("t", &[32], GgmlType::F32)
        .add_tensor_zeroed("t", &[32], GgmlType::F32);
    assert!(matches!(
        parse_err(&w.to_bytes()),
        GgufError::DuplicateTensor { index: 1, .. }
    ));

    for id in [4u32, 31, 36, 43, u32::MAX] {
        let mut w = GgufWriter::new();
        w.add_raw_tensor_info("t", &[32], id, 0);
        let err = parse_err(&w.to_bytes());
        assert!(
            matches!(err, GgufError::UnknownGgmlType { type_id, .. } if type_id == id),
            "{err}"
        );
    }

    let mut w = GgufWriter::new();
    w.add_raw_tensor_info("t", &[1, 1, 1, 1, 1], 0, 0);
    assert!(matches!(
        parse_err(&w.to_bytes()),
        GgufError::TooManyDims { n_dims: 5, .. }
    ));

    let mut w = GgufWriter::new();
    w.add_raw_tensor_info("t", &[1 << 32, 1 << 32], 0, 0);
    assert!(matches!(
        parse_err(&w.to_bytes()),
        GgufError::ShapeOverflow { .. }
    ));

    let mut w = GgufWriter::new();
    w.add_raw_tensor_info("t", &[1 << 63], 0, 0);
    assert!(matches!(
        parse_err(&w.to_bytes()),
        GgufError::BadDimension { dim: 0, .. }
    ));

    let mut w = GgufWriter::new();
    w.add_raw_tensor_info("t", &[48], GgmlType::Q4_0.id(), 0);
    assert!(matches!(
        parse_err(&w.to_bytes()),
        GgufError::RowNotBlockAligned {
            row_len: 48,
            block_size: 32,
            ..
        }
    ));

    let mut w = GgufWriter::new();
    w.add_raw_tensor_info("x".repeat(64), &[1], 0, 0);
    assert!(matches!(
        parse_err(&w.to_bytes()),
        GgufError::TensorNameTooLong { len: 64, .. }
    ));

    // Zero-sized tensors need no data.
    let mut w = GgufWriter::new();
    w.add_raw_tensor_info("empty", &[0, 8], 0, 0);
    assert_eq!(
        GgufFile::parse(&w.to_bytes()).unwrap().tensors[0].n_bytes,
        0
    );
}

#[test]
fn reads_files_and_reports_paths() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.gguf");
    sample_writer().write_to_path(&good).unwrap();
    let file = GgufFile::read_from_path(&good).unwrap();
    assert_eq!(
        file,
        GgufFile::parse(&std::fs::read(&good).unwrap()).unwrap()
    );

    let bytes = sample_writer().to_bytes();
    let short = dir.path().join("short.gguf");
    std::fs::write(&short, &bytes[..100]).unwrap();
    let err = GgufFile::read_from_path(&short).unwrap_err();
    assert!(matches!(&err, GgufError::InFile { path, .. } if path == &short));
    assert!(
        matches!(
            err.root(),
            GgufError::Truncated { .. } | GgufError::CountTooLarge { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("short.gguf"), "{err}");

    let missing = dir.path().join("missing.gguf");
    let err = GgufModel::open(&missing).unwrap_err();
    assert!(matches!(err.root(), GgufError::Open { .. }));
    assert!(err.to_string().contains("missing.gguf"));
}

fn write_splits(dir: &Path, count: u16, tensors_count: u64) -> Vec<PathBuf> {
    (0..count)
        .map(|i| {
            let mut w = GgufWriter::new();
            w.add("split.no", i)
                .add("split.count", count)
                .add("split.tensors.count", tensors_count as i32);
            if i == 0 {
                w.add("general.architecture", "llama");
            }
            w.add_tensor_zeroed(format!("blk.{i}.a.weight"), &[64], GgmlType::F32)
                .add_tensor_zeroed(format!("blk.{i}.b.weight"), &[64, 2], GgmlType::F16);
            let path = dir.join(split_file_name("model", u32::from(i), u32::from(count)));
            w.write_to_path(&path).unwrap();
            path
        })
        .collect()
}

#[test]
fn opens_split_models() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_splits(dir.path(), 3, 6);
    assert!(paths[1].ends_with("model-00002-of-00003.gguf"));
    let name = SplitName::parse(&paths[2]).unwrap();
    assert_eq!((name.index, name.count), (2, 3));
    assert_eq!(name.path_of(0), paths[0]);

    for p in &paths {
        let model = GgufModel::open(p).unwrap();
        assert_eq!(model.n_splits(), 3);
        assert_eq!(model.paths(), &paths[..]);
        assert_eq!(model.architecture(), Some("llama"));
        assert_eq!(model.tensors().len(), 6);
        assert_eq!(model.tensor("blk.2.b.weight").unwrap().split, 2);
        assert_eq!(model.layers().len(), 3);
        assert_eq!(model.total_weight_bytes(), 3 * (256 + 256));
        assert_eq!(
            model.file_size(),
            paths
                .iter()
                .map(|p| p.metadata().unwrap().len())
                .sum::<u64>()
        );
    }

    // Wrong total.
    let dir2 = tempfile::tempdir().unwrap();
    let paths = write_splits(dir2.path(), 2, 5);
    assert!(matches!(
        GgufModel::open(&paths[0]).unwrap_err().root(),
        GgufError::SplitTensorCount {
            expected: 5,
            found: 4
        }
    ));

    // A missing sibling.
    std::fs::remove_file(&paths[1]).unwrap();
    let err = GgufModel::open(&paths[0]).unwrap_err();
    assert!(matches!(err.root(), GgufError::Open { .. }));
    assert!(
        err.to_string().contains("model-00002-of-00002.gguf"),
        "{err}"
    );

    // A file whose split.no disagrees with its name.
    let dir3 = tempfile::tempdir().unwrap();
    let paths = write_splits(dir3.path(), 2, 4);
    std::fs::rename(&paths[1], dir3.path().join("tmp")).unwrap();
    std::fs::rename(&paths[0], &paths[1]).unwrap();
    std::fs::rename(dir3.path().join("tmp"), &paths[0]).unwrap();
    assert!(matches!(
        GgufModel::open(&paths[0]).unwrap_err().root(),
        GgufError::SplitMismatch { .. }
    ));

    // A split file under a non-split name.
    let dir4 = tempfile::tempdir().unwrap();
    let paths = write_splits(dir4.path(), 2, 4);
    let renamed = dir4.path().join("renamed.gguf");
    std::fs::rename(&paths[0], &renamed).unwrap();
    assert!(matches!(
        GgufModel::open(&renamed).unwrap_err().root(),
        GgufError::SplitName { count: 2 }
    ));
}

#[test]
fn real_model_parses() {
    let path = test_model_path();
    let model = GgufModel::open(&path).unwrap();
    assert_eq!(model.architecture(), Some("llama"));
    assert_eq!(model.arch_u64("block_count"), Some(30));
    assert_eq!(model.layers().len(), 30);
    let n = model.tensors().len();
    assert!((250..=300).contains(&n), "{n} tensors");
    assert!(model.has_chat_template());
    let file = &model.files()[0];
    assert!(matches!(file.version, 2 | 3));
    let weights = model.total_weight_bytes();
    // Tensor data fills the file after the header, up to alignment padding.
    assert!(weights <= file.file_size - file.data_offset);
    assert!(file.file_size - file.data_offset - weights < 32 * n as u64);
    let s = model.summary();
    assert_eq!(s.file_type.as_deref(), Some("Q4_1"));
    assert_eq!(s.dominant_type, Some(GgmlType::Q4_1));
    assert!(
        (130_000_000..140_000_000).contains(&s.n_params),
        "{}",
        s.n_params
    );
    assert_eq!(s.context_length, Some(8192));
    assert_eq!(s.embedding_length, Some(576));
    assert_eq!(s.head_count, Some(9));
    assert_eq!(s.head_count_kv, Some(3));
    assert_eq!(
        model
            .get_array_str("tokenizer.ggml.tokens")
            .map(StringArray::len),
        Some(49152)
    );
}

/// Seeds for the mutation test: the sample file, and the real model's first 8 KiB.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(load_seeds)
}

fn load_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![sample_writer().to_bytes()];
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(test_model_path())
        .unwrap()
        .take(8192)
        .read_to_end(&mut head)
        .unwrap();
    seeds.push(head);
    seeds
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn mutated_headers_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        words in prop::collection::vec((any::<prop::sample::Index>(), any::<u64>()), 0..3),
        cut in any::<prop::sample::Index>(),
    ) {
        let seeds = seeds();
        let mut bytes = seed.get(seeds).clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        // Overwrite whole 8-byte words too, to hit lengths and counts with big values.
        for (at, value) in words {
            let i = at.index(bytes.len().saturating_sub(8).max(1));
            if let Some(slot) = bytes.get_mut(i..i + 8) {
                slot.copy_from_slice(&value.to_le_bytes());
            }
        }
        let len = bytes.len();
        bytes.truncate(len - cut.index(len / 4 + 1));
        // Ok or a typed error are both fine; a panic fails the test.
        if let Ok(file) = GgufFile::parse(&bytes) {
            prop_assert!(file.data_offset <= u64::MAX - file.alignment);
            for t in &file.tensors {
                prop_assert!(t.n_bytes == 0 || t.file_offset + t.n_bytes <= file.file_size);
            }
        }
    }
}

#[test]
fn tensor_data_span_is_the_file_less_its_metadata() {
    let bytes = sample_writer().to_bytes();
    let file = GgufFile::parse(&bytes).unwrap();
    let data_offset = file.data_offset;
    let model = GgufModel::from_file(file);
    let tensors = model.tensors();
    let first = tensors.iter().map(|t| t.file_offset).min().unwrap();
    let last = tensors
        .iter()
        .map(|t| t.file_offset + t.n_bytes)
        .max()
        .unwrap();
    assert_eq!(first, data_offset);
    assert_eq!(model.tensor_data_span(), last - first);
    assert!(model.tensor_data_span() < model.file_size());
    assert!(model.file_size() - model.tensor_data_span() >= data_offset);
    // No tensors: nothing stays mapped.
    let empty = GgufModel::from_file(GgufFile::parse(&GgufWriter::new().to_bytes()).unwrap());
    assert_eq!(empty.tensor_data_span(), 0);
}

#[test]
fn shedding_large_arrays_keeps_their_lengths_and_the_rest() {
    let tokens: Vec<String> = (0..5000).map(|i| format!("t{i}")).collect();
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.tokens", tokens)
        .add("tokenizer.ggml.scores", vec![0.5f32; 5000])
        .add("layers", vec![1u32; 40])
        .add("name", "kept");
    let mut model = GgufModel::from_file(GgufFile::parse(&w.to_bytes()).unwrap());
    assert_eq!(model.array_len("tokenizer.ggml.tokens"), Some(5000));
    assert_eq!(model.shed_large_arrays(), 2);
    assert_eq!(model.array_len("tokenizer.ggml.tokens"), Some(5000));
    assert_eq!(model.array_len("tokenizer.ggml.scores"), Some(5000));
    assert_eq!(
        model
            .get_array_str("tokenizer.ggml.tokens")
            .map(StringArray::len),
        Some(0)
    );
    assert_eq!(
        model
            .get_array("tokenizer.ggml.scores")
            .map(ArrayValue::element_type),
        Some(ValueType::F32)
    );
    assert_eq!(model.get_array_u64("layers"), Some(vec![1; 40]));
    assert_eq!(model.get_str("name"), Some("kept"));
    assert_eq!(model.array_len("missing"), None);
    // Shedding twice changes nothing more.
    assert_eq!(model.shed_large_arrays(), 0);
    assert_eq!(model.array_len("tokenizer.ggml.tokens"), Some(5000));
}
