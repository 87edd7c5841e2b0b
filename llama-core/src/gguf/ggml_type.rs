//! The ggml tensor element types and their storage sizes.
//!
//! Quantised ggml types store elements in blocks: `block_size()` elements take
//! `type_size()` bytes. The numbers match ggml's `type_traits` table (ggml.c) and the
//! `block_*` structs of ggml-common.h; the ids match `enum ggml_type` in ggml.h.

use std::fmt;

/// A ggml tensor element type, as stored in a GGUF tensor description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// 4-bit, 32-element blocks with one f16 scale.
    Q4_0,
    /// 4-bit, 32-element blocks with f16 scale and minimum.
    Q4_1,
    /// 5-bit, 32-element blocks with one f16 scale.
    Q5_0,
    /// 5-bit, 32-element blocks with f16 scale and minimum.
    Q5_1,
    /// 8-bit, 32-element blocks with one f16 scale.
    Q8_0,
    /// 8-bit, 32-element blocks with f16 scale and sum.
    Q8_1,
    /// 2-bit k-quant (256-element super-blocks).
    Q2_K,
    /// 3-bit k-quant.
    Q3_K,
    /// 4-bit k-quant.
    Q4_K,
    /// 5-bit k-quant.
    Q5_K,
    /// 6-bit k-quant.
    Q6_K,
    /// 8-bit k-quant (intermediate type).
    Q8_K,
    /// 2.06 bpw i-quant.
    IQ2_XXS,
    /// 2.31 bpw i-quant.
    IQ2_XS,
    /// 3.06 bpw i-quant.
    IQ3_XXS,
    /// 1.56 bpw i-quant.
    IQ1_S,
    /// 4-bit non-linear, 32-element blocks.
    IQ4_NL,
    /// 3.44 bpw i-quant.
    IQ3_S,
    /// 2.5 bpw i-quant.
    IQ2_S,
    /// 4.25 bpw i-quant.
    IQ4_XS,
    /// 8-bit integer.
    I8,
    /// 16-bit integer.
    I16,
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// 64-bit float.
    F64,
    /// 1.75 bpw i-quant.
    IQ1_M,
    /// bfloat16.
    BF16,
    /// Ternary, 1.69 bpw.
    TQ1_0,
    /// Ternary, 2.06 bpw.
    TQ2_0,
    /// Microscaling FP4, 32-element blocks.
    MXFP4,
    /// NVIDIA FP4, 64-element blocks with E4M3 scales.
    NVFP4,
    /// 1-bit, 128-element blocks.
    Q1_0,
    /// 2-bit, 64-element blocks.
    Q2_0,
}

/// (type, ggml id, display name, ggml name, block size, type size).
const TABLE: &[(GgmlType, u32, &str, &str, u64, u64)] = &[
    (GgmlType::F32, 0, "F32", "f32", 1, 4),
    (GgmlType::F16, 1, "F16", "f16", 1, 2),
    (GgmlType::Q4_0, 2, "Q4_0", "q4_0", 32, 18),
    (GgmlType::Q4_1, 3, "Q4_1", "q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "Q5_0", "q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "Q5_1", "q5_1", 32, 24),
    (GgmlType::Q8_0, 8, "Q8_0", "q8_0", 32, 34),
    (GgmlType::Q8_1, 9, "Q8_1", "q8_1", 32, 36),
    (GgmlType::Q2_K, 10, "Q2_K", "q2_K", 256, 84),
    (GgmlType::Q3_K, 11, "Q3_K", "q3_K", 256, 110),
    (GgmlType::Q4_K, 12, "Q4_K", "q4_K", 256, 144),
    (GgmlType::Q5_K, 13, "Q5_K", "q5_K", 256, 176),
    (GgmlType::Q6_K, 14, "Q6_K", "q6_K", 256, 210),
    (GgmlType::Q8_K, 15, "Q8_K", "q8_K", 256, 292),
    (GgmlType::IQ2_XXS, 16, "IQ2_XXS", "iq2_xxs", 256, 66),
    (GgmlType::IQ2_XS, 17, "IQ2_XS", "iq2_xs", 256, 74),
    (GgmlType::IQ3_XXS, 18, "IQ3_XXS", "iq3_xxs", 256, 98),
    (GgmlType::IQ1_S, 19, "IQ1_S", "iq1_s", 256, 50),
    (GgmlType::IQ4_NL, 20, "IQ4_NL", "iq4_nl", 32, 18),
    (GgmlType::IQ3_S, 21, "IQ3_S", "iq3_s", 256, 110),
    (GgmlType::IQ2_S, 22, "IQ2_S", "iq2_s", 256, 82),
    (GgmlType::IQ4_XS, 23, "IQ4_XS", "iq4_xs", 256, 136),
    (GgmlType::I8, 24, "I8", "i8", 1, 1),
    (GgmlType::I16, 25, "I16", "i16", 1, 2),
    (GgmlType::I32, 26, "I32", "i32", 1, 4),
    (GgmlType::I64, 27, "I64", "i64", 1, 8),
    (GgmlType::F64, 28, "F64", "f64", 1, 8),
    (GgmlType::IQ1_M, 29, "IQ1_M", "iq1_m", 256, 56),
    (GgmlType::BF16, 30, "BF16", "bf16", 1, 2),
    (GgmlType::TQ1_0, 34, "TQ1_0", "tq1_0", 256, 54),
    (GgmlType::TQ2_0, 35, "TQ2_0", "tq2_0", 256, 66),
    (GgmlType::MXFP4, 39, "MXFP4", "mxfp4", 32, 17),
    (GgmlType::NVFP4, 40, "NVFP4", "nvfp4", 64, 36),
    (GgmlType::Q1_0, 41, "Q1_0", "q1_0", 128, 18),
    (GgmlType::Q2_0, 42, "Q2_0", "q2_0", 64, 18),
];

impl GgmlType {
    /// Every type this reader knows, in ggml id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        TABLE.iter().map(|row| row.0)
    }

    fn row(self) -> (GgmlType, u32, &'static str, &'static str, u64, u64) {
        // Every variant has a row; the fallback is never taken but keeps this panic-free.
        TABLE.iter().copied().find(|row| row.0 == self).unwrap_or((
            GgmlType::F32,
            0,
            "F32",
            "f32",
            1,
            4,
        ))
    }

    /// The type with ggml id `id`, or `None` for ids that are unknown or removed.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|row| row.1 == id).map(|row| row.0)
    }

    /// Parses a type name such as `"Q4_K"`, `"q8_0"` or `"bf16"` (case-insensitive).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        TABLE
            .iter()
            .find(|row| row.2.eq_ignore_ascii_case(name))
            .map(|row| row.0)
    }

    /// The ggml id (`enum ggml_type` value).
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// The upper-case display name, e.g. `"Q4_K"`, `"IQ2_XXS"`, `"F16"`.
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// ggml's own name for the type (`ggml_type_name`), e.g. `"q4_K"`.
    pub fn ggml_name(self) -> &'static str {
        self.row().3
    }

    /// Elements per block (1 for unquantised types).
    pub fn block_size(self) -> u64 {
        self.row().4
    }

    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        self.row().5
    }

    /// Whether the type is a block-quantised type.
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes taken by `n_elements` elements (`ggml_row_size`), or `None` when
    /// `n_elements` is not a multiple of the block size or the size overflows.
    pub fn row_size(self, n_elements: u64) -> Option<u64> {
        let block = self.block_size();
        if n_elements % block != 0 {
            return None;
        }
        (n_elements / block).checked_mul(self.type_size())
    }

    /// Bits per element, e.g. 5.0 for Q4_1.
    pub fn bits_per_element(self) -> f64 {
        // Both values are small, so the conversions are exact.
        (self.type_size() as f64) * 8.0 / (self.block_size() as f64)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for GgmlType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}
