//! Tensors llama.cpp cannot place or compute with on the CPU: data off ggml's 32-byte
//! alignment in the mapped file, element-wise 1-D tensors other than F32, matrices in types
//! without a CPU matrix multiplication, and state-space `ssm_a` and `ssm_conv1d` tensors in
//! types their kernels do not read.

use super::error::{Check, PreflightError};
use crate::gguf::ggml_type::GgmlType;
use crate::gguf::model::GgufModel;
use crate::gguf::tensor::TensorInfo;

/// ggml's `TENSOR_ALIGNMENT`: a mapped tensor's data must start at a multiple of it.
const TENSOR_ALIGNMENT: u64 = 32;

/// Types with no CPU `vec_dot` (ggml-cpu's type traits): a matrix of them is multiplied
/// through a null function pointer. No model llama.cpp supports stores weights in them.
const NO_MATRIX_MULTIPLICATION: [GgmlType; 7] = [
    GgmlType::I8,
    GgmlType::I16,
    GgmlType::I32,
    GgmlType::I64,
    GgmlType::F64,
    GgmlType::Q8_1,
    GgmlType::Q8_K,
];

pub(super) fn check(model: &GgufModel) -> Result<(), PreflightError> {
    for split in 0..model.n_splits() {
        alignment(model, split)?;
    }
    for t in model.tensors() {
        tensor_type(model, t)?;
    }
    Ok(())
}

/// Whether `t` stays in the mapped file in every CPU configuration: the extra buffer types
/// (CPU_REPACK, AMX) take only block-quantised matrices that are multiplied, so not F32, F16,
/// BF16 or integer tensors, 1-D tensors, or the token embedding (looked up by row).
fn always_mapped(t: &TensorInfo) -> bool {
    !t.ggml_type.is_quantized() || t.dims.len() <= 1 || t.name == "token_embd.weight"
}

/// llama.cpp maps each file and makes the mapped tensors one buffer whose base is the first
/// of them, asserting that base is 32-byte aligned (`ggml_backend_cpu_buffer_from_ptr`);
/// `general.alignment` below 32 can break that. The file's first tensor is that base when it
/// is always mapped; otherwise which tensors are mapped depends on the CPU, and the file is
/// let through.
fn alignment(model: &GgufModel, split: usize) -> Result<(), PreflightError> {
    let first = model
        .tensors()
        .iter()
        .filter(|t| t.split == split)
        .min_by_key(|t| t.file_offset);
    let Some(t) = first.filter(|t| always_mapped(t)) else {
        return Ok(());
    };
    if t.file_offset % TENSOR_ALIGNMENT != 0 {
        return Err(PreflightError::tensor(
            Check::TensorAlignment,
            &t.name,
            format!("the first tensor of its file, at byte {}", t.file_offset),
            format!("data at a multiple of {TENSOR_ALIGNMENT} bytes (general.alignment of at least {TENSOR_ALIGNMENT})"),
        ));
    }
    Ok(())
}

/// Whether a 1-D tensor is the second operand of an element-wise kernel (`ggml_mul`,
/// `ggml_add`), which the CPU takes only in F32: norm weights, biases, and the state-space
/// `ssm_d` and (Mamba-2's 1-D) `ssm_a`.
fn is_elementwise(name: &str) -> bool {
    name.ends_with("norm.weight")
        || name.ends_with(".bias")
        || name.ends_with(".ssm_d")
        || name.ends_with(".ssm_a")
}

/// Whether `t` is written as a 1-D tensor in a type no tool writes 1-D tensors in: block
/// quantisations (llama-quantize quantises only tensors of 2 or more dimensions; converters
/// keep 1-D tensors in F32), integers and F64.
fn is_odd_vector_type(t: GgmlType) -> bool {
    t.is_quantized() || NO_MATRIX_MULTIPLICATION.contains(&t)
}

/// Whether a matrix is multiplied (`ggml_mul_mat`). Not: state-space convolutions and state
/// matrices (their own kernels), and tables looked up by row (embeddings), except the token
/// embedding of a model without `output.weight`, which is also its output matrix.
fn is_multiplied(model: &GgufModel, t: &TensorInfo) -> bool {
    let name = t.name.as_str();
    if name.ends_with(".ssm_conv1d.weight") || name.ends_with(".ssm_a") {
        return false;
    }
    if name == "token_embd.weight" {
        return model.tensor("output.weight").is_none();
    }
    !(name.ends_with("_embd.weight") || name == "token_types.weight")
}

fn tensor_type(model: &GgufModel, t: &TensorInfo) -> Result<(), PreflightError> {
    let is_ssm_a = t.layer().is_some() && t.name.ends_with(".ssm_a");
    let is_conv = t.layer().is_some() && t.name.ends_with(".ssm_conv1d.weight");
    if t.dims.len() <= 1 {
        // A 1-D F16 tensor can be a matrix of one column (llama-quantize writes `[n, 1]` as
        // 1-D), which F16 multiplies fine; element-wise operands must be F32.
        let refused = is_odd_vector_type(t.ggml_type)
            || (is_elementwise(&t.name) && t.ggml_type != GgmlType::F32);
        if refused {
            return Err(PreflightError::tensor(
                Check::VectorType,
                &t.name,
                format!("a 1-D tensor in {}", t.ggml_type),
                "F32 (element-wise kernels take only F32 weights)",
            ));
        }
    } else if NO_MATRIX_MULTIPLICATION.contains(&t.ggml_type) && is_multiplied(model, t) {
        return Err(PreflightError::tensor(
            Check::MatrixType,
            &t.name,
            format!("a matrix in {}", t.ggml_type),
            "a type the CPU can multiply (F32, F16, BF16 or a weight quantisation)",
        ));
    } else if is_ssm_a && t.ggml_type != GgmlType::F32 {
        return Err(PreflightError::tensor(
            Check::StateSpaceType,
            &t.name,
            format!("a state matrix in {}", t.ggml_type),
            "F32 (ssm_scan reads it as floats)",
        ));
    } else if is_conv && !matches!(t.ggml_type, GgmlType::F32 | GgmlType::I32) {
        // ssm_conv asserts 4-byte elements (an I32 kernel runs, read as floats).
        return Err(PreflightError::tensor(
            Check::StateSpaceType,
            &t.name,
            format!("a convolution kernel in {}", t.ggml_type),
            "F32 (ssm_conv reads 4-byte floats)",
        ));
    }
    Ok(())
}
