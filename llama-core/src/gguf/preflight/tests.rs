use super::*;
use crate::gguf::synthetic::hostile::{Hostile, Unchecked};
use crate::gguf::synthetic::Shape;
use crate::gguf::writer::GgufWriter;
use crate::gguf::{GgmlType, GgufFile};

fn model_of(w: &crate::gguf::writer::GgufWriter) -> GgufModel {
    GgufModel::from_file(GgufFile::parse(&w.to_bytes()).unwrap())
}

#[test]
fn every_generated_shape_passes() {
    for shape in Shape::ALL {
        for t in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::F16] {
            if shape == Shape::LargeVocab && t == GgmlType::F16 {
                continue; // 40 MB, and slow to generate in a debug build
            }
            let model = model_of(&shape.model(t).to_writer());
            assert_eq!(preflight(&model), Ok(()), "{shape} {t}");
        }
    }
}

#[test]
fn each_hostile_file_is_refused_by_the_check_of_its_class() {
    for h in Hostile::ALL {
        let model = model_of(&h.build());
        let result = preflight(&model);
        assert_eq!(result.as_ref().err().map(|e| e.check), h.check(), "{h}: {result:?}");
        // What the preflight refuses is what llama.cpp mishandles, and only that.
        assert_eq!(
            h.check().is_some(),
            !matches!(h.unchecked(), Unchecked::RefusesCleanly | Unchecked::Runs),
            "{h}"
        );
    }
}

/// The generated llama model with `edit` applied.
fn llama_with(edit: impl FnOnce(&mut GgufWriter)) -> Result<(), PreflightError> {
    let mut w = Shape::Llama.model(GgmlType::Q8_0).to_writer();
    edit(&mut w);
    preflight(&model_of(&w))
}

fn moe_with(edit: impl FnOnce(&mut GgufWriter)) -> Result<(), PreflightError> {
    let mut w = Shape::Moe.model(GgmlType::Q8_0).to_writer();
    edit(&mut w);
    preflight(&model_of(&w))
}

fn check_of(result: Result<(), PreflightError>) -> Option<Check> {
    result.err().map(|e| e.check)
}

#[test]
fn expert_groups_follow_load_hparams() {
    let groups = |count: u32, used: u32| {
        moe_with(|w| {
            w.set("llama.expert_group_count", count);
            w.set("llama.expert_group_used_count", used);
        })
    };
    assert_eq!(groups(2, 1), Ok(()));
    assert_eq!(groups(4, 3), Ok(()));
    assert_eq!(check_of(groups(3, 1)), Some(Check::Experts), "3 does not divide 8");
    assert_eq!(check_of(groups(2, 0)), Some(Check::Experts), "no group used");
    assert_eq!(check_of(groups(2, 2)), Some(Check::Experts), "every group used");
    assert_eq!(check_of(groups(8, 1)), Some(Check::Experts), "as many groups as experts");
    assert_eq!(
        check_of(llama_with(|w| {
            w.set("llama.expert_group_count", 2u32);
        })),
        Some(Check::Experts),
        "groups without experts"
    );
}

#[test]
fn a_single_hunyuan_expert_is_none() {
    let mut w = Shape::Llama.model(GgmlType::Q8_0).to_writer();
    for key in w.keys().map(str::to_string).collect::<Vec<_>>() {
        if let Some(rest) = key.strip_prefix("llama.") {
            let value = w.get(&key).cloned().unwrap();
            w.remove(&key);
            w.set(format!("hunyuan-dense.{rest}"), value);
        }
    }
    w.set("general.architecture", "hunyuan-dense");
    w.set("hunyuan-dense.expert_count", 1u32);
    w.set("hunyuan-dense.expert_used_count", 1u32);
    assert_eq!(preflight(&model_of(&w)), Ok(()));
}

#[test]
fn known_rope_scaling_types_pass() {
    for scaling in ["none", "linear", "yarn", "longrope"] {
        assert_eq!(
            llama_with(|w| {
                w.set("llama.rope.scaling.type", scaling);
            }),
            Ok(()),
            "{scaling}"
        );
    }
}

#[test]
fn vectors_that_may_be_multiplied_may_be_f16() {
    // A one-column matrix written as 1-D (as llama-quantize writes `[n, 1]`) in F16.
    let head = llama_with(|w| {
        w.add_tensor_zeroed("cls.output.weight", &[256], GgmlType::F16);
    });
    assert_eq!(head, Ok(()));
    let norm = llama_with(|w| {
        w.reshape_tensor("blk.0.attn_norm.weight", &[256], GgmlType::F16);
    });
    assert_eq!(check_of(norm), Some(Check::VectorType));
    let bias = llama_with(|w| {
        w.add_tensor_zeroed("blk.0.attn_q.bias", &[256], GgmlType::BF16);
    });
    assert_eq!(check_of(bias), Some(Check::VectorType));
    let quantized = llama_with(|w| {
        w.add_tensor_zeroed("cls.output.weight", &[256], GgmlType::Q8_0);
    });
    assert_eq!(check_of(quantized), Some(Check::VectorType), "no tool writes it");
}

#[test]
fn only_multiplied_matrices_need_a_multiplication() {
    // The token embedding is looked up by row when the model has its own output matrix ...
    let looked_up = llama_with(|w| {
        w.reshape_tensor("token_embd.weight", &[256, 1024], GgmlType::I32);
    });
    assert_eq!(looked_up, Ok(()));
    // ... and multiplied as the output matrix when it has not.
    let tied = llama_with(|w| {
        w.remove_tensor("output.weight");
        w.reshape_tensor("token_embd.weight", &[256, 1024], GgmlType::I32);
    });
    assert_eq!(check_of(tied), Some(Check::MatrixType));
}

#[test]
fn alignment_is_checked_where_the_mapped_buffer_surely_starts() {
    let aligned_8 = |first_type: GgmlType| {
        let mut w = Shape::Llama.model(GgmlType::Q8_0).to_writer();
        w.set("general.alignment", 8u32);
        // The first tensor's type decides whether it surely stays in the mapped buffer.
        let name = w.tensor_names().next().unwrap().to_string();
        let dims = w.tensor_dims(&name).unwrap().to_vec();
        w.rename_tensor(&name, "blk.0.first.weight");
        w.reshape_tensor("blk.0.first.weight", &dims, first_type);
        for pad in 0..32usize {
            w.set("general.padding", "x".repeat(pad).as_str());
            let file = GgufFile::parse(&w.to_bytes()).unwrap();
            if file.data_offset % 32 == 8 {
                return preflight(&GgufModel::from_file(file));
            }
        }
        unreachable!("some padding puts the data 8 bytes past a multiple of 32")
    };
    assert_eq!(check_of(aligned_8(GgmlType::F32)), Some(Check::TensorAlignment));
    // A quantised matrix may be repacked out of the mapping: the base is then another tensor.
    assert_eq!(aligned_8(GgmlType::Q8_0), Ok(()));
}

#[test]
fn special_tokens_resolve_as_llama_cpp_does() {
    // An out-of-range BOS id falls back to the SentencePiece default, 1, which exists.
    let fallback = llama_with(|w| {
        w.set("tokenizer.ggml.bos_token_id", 5000u32);
    });
    assert_eq!(fallback, Ok(()));
    // No BOS added: nothing to resolve.
    let unused = llama_with(|w| {
        w.set("tokenizer.ggml.add_bos_token", false);
        w.set("tokenizer.ggml.model", "t5");
        w.set("tokenizer.ggml.eos_token_id", 5000u32);
    });
    assert_eq!(unused, Ok(()), "t5's default EOS, 1, exists");
    // WordPiece adds BOS and the separator whatever the flags say.
    let bert = llama_with(|w| {
        w.set("tokenizer.ggml.model", "bert");
        w.remove("tokenizer.ggml.token_type");
        w.set("tokenizer.ggml.add_bos_token", false);
        w.set("tokenizer.ggml.seperator_token_id", 4096u32);
    });
    assert_eq!(check_of(bert), None, "defaults 101 and 102 exist in 1024 tokens");
    // Gemma 4 adds BOS whatever the flag says, and has no default.
    let gemma4 = llama_with(|w| {
        w.set("tokenizer.ggml.model", "gemma4");
        w.set("tokenizer.ggml.add_bos_token", false);
        w.remove("tokenizer.ggml.bos_token_id");
    });
    assert_eq!(check_of(gemma4), Some(Check::MissingSpecialToken));
}

#[test]
fn per_layer_counts_llama_uses_per_layer_are_free() {
    // Uniform per-layer arrays are the scalar.
    let uniform = llama_with(|w| {
        w.set(
            "llama.attention.head_count_kv",
            Value::Array(crate::gguf::ArrayValue::U32(vec![2; 4])),
        );
    });
    assert_eq!(uniform, Ok(()));
    // The KV heads default to the heads, per layer.
    let kv_from_heads = llama_with(|w| {
        w.remove("llama.attention.head_count_kv");
        w.set(
            "llama.attention.head_count",
            Value::Array(crate::gguf::ArrayValue::U32(vec![4, 4, 2, 4])),
        );
    });
    assert_eq!(check_of(kv_from_heads), Some(Check::AttentionHeads));
}
