use super::*;
use crate::cache_spec::ModelCacheSpec;
use crate::gguf::{GgufFile, GgufModel};

const TYPES: [GgmlType; 5] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q8_0,
];

fn parse(model: &SyntheticModel) -> (Vec<u8>, GgufModel) {
    let bytes = model.to_writer().to_bytes();
    let file = GgufFile::parse(&bytes).unwrap();
    (bytes, GgufModel::from_file(file))
}

/// Every tensor's data lies within the file and has the size its type and shape need.
fn assert_consistent(shape: &str, bytes: &[u8], model: &GgufModel) {
    for tensor in model.tensors() {
        let end = tensor.file_offset + tensor.n_bytes;
        assert!(
            end <= bytes.len() as u64,
            "{shape}: {} overruns the file",
            tensor.name
        );
        assert_eq!(
            Some(tensor.n_bytes),
            tensor.ggml_type.row_size(tensor.n_elements()),
            "{shape}: {} has the bytes of its type",
            tensor.name
        );
    }
}

#[test]
fn tensor_sizes_match_their_types() {
    for t in TYPES {
        let model = SyntheticModel::llama(t);
        let (bytes, file) = parse(&model);
        assert_consistent("llama", &bytes, &file);
        let embd = file.tensor("token_embd.weight").unwrap();
        assert_eq!(
            embd.n_bytes,
            t.row_size(256).unwrap() * 1024,
            "{t}: embedding bytes"
        );
    }
}

#[test]
fn every_shape_is_consistent() {
    for shape in Shape::ALL {
        // Every type's block layout is checked on the llama model above; here one type with
        // 16-byte blocks, one with 32-byte blocks, and one without blocks.
        for t in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::F16] {
            if shape == Shape::LargeVocab && t == GgmlType::F16 {
                continue; // 40 MB, and slow to generate in a debug build
            }
            let model = shape.model(t);
            let (bytes, file) = parse(&model);
            assert_consistent(shape.name(), &bytes, &file);
            assert_eq!(file.architecture(), Some(model.architecture.name()));
            assert_eq!(
                file.get_array_str("tokenizer.ggml.tokens").unwrap().len(),
                model.n_vocab as usize,
                "{shape}"
            );
            assert_eq!(
                file.tensor("token_embd.weight").unwrap().dims,
                [u64::from(model.n_embd), u64::from(model.n_vocab)]
            );
            assert_eq!(
                file.tensor("output.weight").is_some(),
                model.separate_output,
                "{shape}"
            );
            assert_eq!(file.arch_u64("block_count"), Some(u64::from(model.n_layer)));
        }
    }
}

#[test]
fn shapes_have_the_tensors_of_their_architecture() {
    let count = |m: &SyntheticModel| parse(m).1.tensors().len();
    let llama = SyntheticModel::llama(GgmlType::Q8_0);
    assert_eq!(count(&llama), 3 + 9 * 4);
    let gemma = SyntheticModel::gemma3_swa(GgmlType::Q8_0);
    assert_eq!(count(&gemma), 2 + 13 * 6, "tied output, 13 tensors a layer");
    let moe = SyntheticModel::moe(GgmlType::Q8_0);
    assert_eq!(
        count(&moe),
        3 + 10 * 4,
        "router and 3 expert stacks a layer"
    );
    let mamba = SyntheticModel::mamba(GgmlType::Q8_0);
    assert_eq!(count(&mamba), 2 + 10 * 4);

    let (_, file) = parse(&gemma);
    let q = file.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.dims, [256, 4 * 256], "4 heads of 256 from a width of 256");
    assert_eq!(file.tensor("blk.0.attn_k.weight").unwrap().dims, [256, 256]);
    assert_eq!(file.tensor("blk.5.attn_k_norm.weight").unwrap().dims, [256]);
    assert_eq!(file.arch_u64("attention.sliding_window"), Some(512));
    assert_eq!(file.arch_u64("attention.key_length"), Some(256));
    assert_eq!(file.arch_u64("attention.value_length"), Some(256));
    assert_eq!(file.arch_u64("attention.sliding_window_pattern"), None);

    let (_, file) = parse(&moe);
    let up = file.tensor("blk.3.ffn_up_exps.weight").unwrap();
    assert_eq!(up.dims, [256, 256, 8]);
    assert_eq!(up.ggml_type, GgmlType::Q8_0);
    let router = file.tensor("blk.3.ffn_gate_inp.weight").unwrap();
    assert_eq!(
        (router.dims.as_slice(), router.ggml_type),
        (&[256, 8][..], GgmlType::F32)
    );
    assert_eq!(file.arch_u64("expert_count"), Some(8));
    assert_eq!(file.arch_u64("expert_used_count"), Some(2));

    let (_, file) = parse(&mamba);
    assert_eq!(file.arch_u64("ssm.inner_size"), Some(512));
    assert_eq!(file.arch_u64("attention.head_count"), Some(0));
    let dt = file.tensor("blk.0.ssm_dt.weight").unwrap();
    assert_eq!(
        (dt.dims.as_slice(), dt.ggml_type),
        (&[16, 512][..], GgmlType::F32),
        "rows of 16 are not a whole Q8_0 block"
    );
    assert_eq!(
        file.tensor("blk.0.ssm_x.weight").unwrap().ggml_type,
        GgmlType::Q8_0
    );
    assert!(file.tensor("blk.0.ssm_a").is_some(), "no .weight suffix");
}

#[test]
fn mamba_state_matrix_decays() {
    let (bytes, file) = parse(&SyntheticModel::mamba(GgmlType::Q8_0));
    let a = file.tensor("blk.2.ssm_a").unwrap();
    let start = a.file_offset as usize;
    let values: Vec<f32> = bytes[start..start + a.n_bytes as usize]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(&values[..3], &[-1.0, -2.0, -3.0]);
    assert!(values.iter().all(|&v| v <= -1.0));
}

#[test]
fn the_large_vocabulary_stays_small() {
    let model = SyntheticModel::large_vocab(GgmlType::Q8_0);
    assert!(model.n_vocab >= 200_000);
    let bytes = model.to_writer().to_bytes();
    assert!(
        bytes.len() < 40 << 20,
        "{} MiB",
        bytes.len() as f64 / 1048576.0
    );
}

#[test]
fn cache_spec_reads_the_gemma3_window_and_pattern() {
    let (_, file) = parse(&SyntheticModel::gemma3_swa(GgmlType::Q8_0));
    let spec = ModelCacheSpec::from_gguf(&file).unwrap();
    assert_eq!(spec.sliding_window, Some(512));
    let sliding: Vec<bool> = spec.layers.iter().map(|l| l.sliding).collect();
    assert_eq!(
        sliding,
        [true, true, true, true, true, false],
        "every sixth layer is global"
    );
    assert!(spec
        .layers
        .iter()
        .all(|l| l.n_head_kv == 1 && l.head_dim_k == 256));
}

#[test]
fn shape_names_round_trip() {
    for shape in Shape::ALL {
        assert_eq!(Shape::from_name(shape.name()), Some(shape));
        assert_eq!(shape.to_string(), shape.name());
    }
    assert_eq!(Shape::from_name("gemma3"), None);
}

#[test]
fn the_same_seed_gives_the_same_file() {
    for shape in [Shape::Llama, Shape::Moe, Shape::Mamba] {
        let a = shape.model(GgmlType::Q4_0).to_writer().to_bytes();
        let b = shape.model(GgmlType::Q4_0).to_writer().to_bytes();
        assert_eq!(a, b, "{shape}");
        let c = SyntheticModel {
            seed: 2,
            ..shape.model(GgmlType::Q4_0)
        };
        assert_ne!(a, c.to_writer().to_bytes(), "{shape}");
    }
}

#[test]
#[should_panic(expected = "at least 259 tokens")]
fn a_vocabulary_below_the_fixed_tokens_is_refused() {
    let _ = SyntheticModel {
        n_vocab: 100,
        ..SyntheticModel::llama(GgmlType::Q8_0)
    }
    .to_writer();
}

#[test]
fn scaled_up_shapes_are_consistent_and_carry_more_weights() {
    let weights = |m: &SyntheticModel| m.to_writer().to_bytes().len() as u64;
    for shape in [Shape::Llama, Shape::Gemma3Swa, Shape::Moe, Shape::Mamba] {
        let small = shape.model(GgmlType::Q4_0);
        let large = small.clone().scaled_up();
        let depth = if shape == Shape::Mamba { 8 } else { 4 };
        assert_eq!(large.n_layer, depth * small.n_layer, "{shape}");
        assert_eq!(large.architecture.name(), small.architecture.name());
        assert_eq!(large.n_vocab, small.n_vocab, "{shape}");
        let (bytes, file) = parse(&large);
        assert_consistent(shape.name(), &bytes, &file);
        assert_eq!(file.arch_u64("block_count"), Some(u64::from(large.n_layer)));
        // Four times the layers (the MoE's experts keep their width), wider ones elsewhere;
        // the embedding stays.
        assert!(weights(&large) > 3 * weights(&small), "{shape}");
        ModelCacheSpec::from_gguf(&file).unwrap();
    }
    // Mamba's inner width follows the embedding width (llama.cpp requires twice it).
    let Architecture::Mamba(ssm) = SyntheticModel::mamba(GgmlType::Q8_0)
        .scaled_up()
        .architecture
    else {
        panic!("not mamba")
    };
    assert_eq!(ssm.d_inner, 2 * 512);
}
