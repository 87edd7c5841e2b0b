//! The KV-cache element types llama.cpp accepts (`--cache-type-k` / `--cache-type-v`).

use serde::Serialize;

use crate::gguf::GgmlType;

/// The element type of the K or V cache (llama.cpp's allowed `--cache-type-k/-v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
#[allow(non_camel_case_types)]
pub enum KvCacheType {
    /// 32-bit float.
    F32,
    /// 16-bit float (llama.cpp's default).
    F16,
    /// bfloat16.
    BF16,
    /// 8-bit blocks: 34 bytes per 32 elements.
    Q8_0,
    /// 4-bit blocks: 18 bytes per 32 elements.
    Q4_0,
    /// 4-bit blocks with minimum: 20 bytes per 32 elements.
    Q4_1,
    /// 4-bit non-linear: 18 bytes per 32 elements.
    IQ4_NL,
    /// 5-bit blocks: 22 bytes per 32 elements.
    Q5_0,
    /// 5-bit blocks with minimum: 24 bytes per 32 elements.
    Q5_1,
}

impl KvCacheType {
    /// Every cache type.
    pub const ALL: [KvCacheType; 9] = [
        KvCacheType::F32,
        KvCacheType::F16,
        KvCacheType::BF16,
        KvCacheType::Q8_0,
        KvCacheType::Q4_0,
        KvCacheType::Q4_1,
        KvCacheType::IQ4_NL,
        KvCacheType::Q5_0,
        KvCacheType::Q5_1,
    ];

    /// The ggml type.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            KvCacheType::F32 => GgmlType::F32,
            KvCacheType::F16 => GgmlType::F16,
            KvCacheType::BF16 => GgmlType::BF16,
            KvCacheType::Q8_0 => GgmlType::Q8_0,
            KvCacheType::Q4_0 => GgmlType::Q4_0,
            KvCacheType::Q4_1 => GgmlType::Q4_1,
            KvCacheType::IQ4_NL => GgmlType::IQ4_NL,
            KvCacheType::Q5_0 => GgmlType::Q5_0,
            KvCacheType::Q5_1 => GgmlType::Q5_1,
        }
    }

    /// ggml's name, as llama.cpp's `--cache-type-k` takes it: `f16`, `q8_0`, ….
    pub fn name(self) -> &'static str {
        self.ggml_type().ggml_name()
    }

    /// Parses a name such as `f16` or `Q8_0` (case-insensitive).
    pub fn from_name(name: &str) -> Option<KvCacheType> {
        KvCacheType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Bytes for `n` elements (`ggml_row_size`), `None` if `n` is not a whole number of
    /// blocks or the size overflows.
    pub fn row_size(self, n: u64) -> Option<u64> {
        self.ggml_type().row_size(n)
    }
}

impl std::fmt::Display for KvCacheType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
