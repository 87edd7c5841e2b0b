//! The quantization types `llama-cli quantize` accepts, by llama-quantize's names (and its
//! numeric `llama_ftype` ids), with llama-quantize's aliases (`Q4_K` is `Q4_K_M`, ...).

use std::fmt;

/// One target of `llama-cli quantize`: a llama.cpp file type (`llama_ftype`) or `COPY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QuantType {
    /// The name as llama-quantize spells it, e.g. `Q4_K_M`.
    pub name: &'static str,
    /// llama.cpp's `llama_ftype` id.
    pub ftype: u32,
    /// What llama-quantize says about it.
    pub description: &'static str,
}

const fn t(name: &'static str, ftype: u32, description: &'static str) -> QuantType {
    QuantType {
        name,
        ftype,
        description,
    }
}

/// Every type, in llama-quantize's order. `COPY` comes after `F32`, which has the same id, so
/// that the id 0 means `F32`.
pub const QUANT_TYPES: &[QuantType] = &[
    t("Q1_0", 40, "1.125 bpw quantization"),
    t("Q2_0", 41, "2.25 bpw quantization (group 64)"),
    t("Q4_0", 2, "4.34G, +0.4685 ppl @ Llama-3-8B"),
    t("Q4_1", 3, "4.78G, +0.4511 ppl @ Llama-3-8B"),
    t("MXFP4_MOE", 38, "MXFP4 MoE"),
    t("Q5_0", 8, "5.21G, +0.1316 ppl @ Llama-3-8B"),
    t("Q5_1", 9, "5.65G, +0.1062 ppl @ Llama-3-8B"),
    t("IQ2_XXS", 19, "2.06 bpw quantization"),
    t("IQ2_XS", 20, "2.31 bpw quantization"),
    t("IQ2_S", 28, "2.5 bpw quantization"),
    t("IQ2_M", 29, "2.7 bpw quantization"),
    t("IQ1_S", 24, "1.56 bpw quantization"),
    t("IQ1_M", 31, "1.75 bpw quantization"),
    t("TQ1_0", 36, "1.69 bpw ternarization"),
    t("TQ2_0", 37, "2.06 bpw ternarization"),
    t("Q2_K", 10, "2.96G, +3.5199 ppl @ Llama-3-8B"),
    t("Q2_K_S", 21, "2.96G, +3.1836 ppl @ Llama-3-8B"),
    t("IQ3_XXS", 23, "3.06 bpw quantization"),
    t("IQ3_S", 26, "3.44 bpw quantization"),
    t("IQ3_M", 27, "3.66 bpw quantization mix"),
    t("Q3_K", 12, "alias for Q3_K_M"),
    t("IQ3_XS", 22, "3.3 bpw quantization"),
    t("Q3_K_S", 11, "3.41G, +1.6321 ppl @ Llama-3-8B"),
    t("Q3_K_M", 12, "3.74G, +0.6569 ppl @ Llama-3-8B"),
    t("Q3_K_L", 13, "4.03G, +0.5562 ppl @ Llama-3-8B"),
    t("IQ4_NL", 25, "4.50 bpw non-linear quantization"),
    t("IQ4_XS", 30, "4.25 bpw non-linear quantization"),
    t("Q4_K", 15, "alias for Q4_K_M"),
    t("Q4_K_S", 14, "4.37G, +0.2689 ppl @ Llama-3-8B"),
    t("Q4_K_M", 15, "4.58G, +0.1754 ppl @ Llama-3-8B"),
    t("Q5_K", 17, "alias for Q5_K_M"),
    t("Q5_K_S", 16, "5.21G, +0.1049 ppl @ Llama-3-8B"),
    t("Q5_K_M", 17, "5.33G, +0.0569 ppl @ Llama-3-8B"),
    t("Q6_K", 18, "6.14G, +0.0217 ppl @ Llama-3-8B"),
    t("Q8_0", 7, "7.96G, +0.0026 ppl @ Llama-3-8B"),
    t("F16", 1, "14.00G, +0.0020 ppl @ Mistral-7B"),
    t("BF16", 32, "14.00G, -0.0050 ppl @ Mistral-7B"),
    t("F32", 0, "26.00G @ 7B"),
    t("COPY", 0, "only copy tensors, no quantizing"),
];

impl QuantType {
    /// The type called `text`: a name (any case) or a numeric id, as llama-quantize parses it.
    pub fn parse(text: &str) -> Option<QuantType> {
        let text = text.trim();
        if let Some(found) = QUANT_TYPES
            .iter()
            .find(|q| q.name.eq_ignore_ascii_case(text))
        {
            return Some(*found);
        }
        let id: u32 = text.parse().ok()?;
        QUANT_TYPES.iter().find(|q| q.ftype == id).copied()
    }

    /// Whether this is `COPY`: the tensors are copied as they are.
    pub fn is_copy(&self) -> bool {
        self.name == "COPY"
    }

    /// Whether the target stores weights as 32-bit floats (`F32`).
    pub fn is_f32(&self) -> bool {
        self.ftype == 0 && !self.is_copy()
    }

    /// The names, comma-separated, for error messages.
    pub fn names() -> String {
        QUANT_TYPES
            .iter()
            .map(|q| q.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for QuantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ids_and_aliases_parse_as_llama_quantize_does() {
        assert_eq!(QuantType::parse("q8_0").unwrap().ftype, 7);
        assert_eq!(QuantType::parse("Q4_K").unwrap().ftype, 15);
        assert_eq!(QuantType::parse("Q4_K").unwrap().name, "Q4_K");
        assert_eq!(QuantType::parse("15").unwrap().name, "Q4_K");
        assert_eq!(QuantType::parse("0").unwrap().name, "F32");
        assert!(QuantType::parse("COPY").unwrap().is_copy());
        assert!(QuantType::parse("F32").unwrap().is_f32());
        assert!(QuantType::parse("Q9_9").is_none());
        assert!(QuantType::parse("99").is_none());
    }
}
