//! The parameters of llama.cpp's model and context as plain Rust values, with no FFI: what the
//! planner, the engine and the commands build, and what `ffi` (feature `ffi`) turns into
//! llama.cpp's structs. They are re-exported from `ffi` and the crate root.

use crate::cache_spec::KvCacheType;

/// A token id in the model's vocabulary.
pub type Token = i32;

/// When llama.cpp uses flash attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashAttention {
    /// llama.cpp decides (its default).
    #[default]
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// Parameters for `ffi::Context::new`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextParams {
    /// Context length in tokens (llama.cpp rounds it up to a multiple of 256).
    pub n_ctx: u32,
    /// Largest batch submitted to one decode call.
    pub n_batch: u32,
    /// Physical batch size the compute buffers are sized for.
    pub n_ubatch: u32,
    /// Number of sequences sharing the context.
    pub n_seq_max: u32,
    /// Most logits rows one decode call produces (0: `n_batch`). Sessions that only sample
    /// after the last token of each sequence need one per sequence, which shrinks the compute
    /// and output buffers llama.cpp reserves.
    pub n_outputs_max: u32,
    /// Threads for single-token generation.
    pub n_threads: i32,
    /// Threads for prompt processing.
    pub n_threads_batch: i32,
    /// Flash attention.
    pub flash_attention: FlashAttention,
    /// K cache element type.
    pub type_k: KvCacheType,
    /// V cache element type (quantised V needs flash attention).
    pub type_v: KvCacheType,
    /// Whether all sequences share one pool of cells.
    pub kv_unified: bool,
    /// Whether sliding-window layers get a cache of the whole context (`true`, llama.cpp's
    /// library default) or only of the window plus a micro-batch (`false`, what llama-server
    /// and llama-cli use, and our default: `--swa-full` turns it on).
    pub swa_full: bool,
}

impl Default for ContextParams {
    fn default() -> Self {
        ContextParams {
            n_ctx: 4096,
            n_batch: 2048,
            n_ubatch: 512,
            n_seq_max: 1,
            n_outputs_max: 0,
            n_threads: 4,
            n_threads_batch: 4,
            flash_attention: FlashAttention::Auto,
            type_k: KvCacheType::F16,
            type_v: KvCacheType::F16,
            kv_unified: false,
            swa_full: false,
        }
    }
}

/// How llama.cpp brings the weights into memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    /// Memory-map the file (llama.cpp's default): pages are shared with the page cache.
    #[default]
    Mmap,
    /// Read the file into anonymous memory (llama.cpp's `--no-mmap`).
    Read,
    /// Map the file and lock its pages in RAM (`--mlock`).
    MmapLocked,
    /// Read the file into anonymous memory and lock it (`--no-mmap --mlock`).
    ReadLocked,
}

impl LoadMode {
    /// The mode for llama.cpp's `--no-mmap` and `--mlock` flags.
    pub fn from_flags(mmap: bool, mlock: bool) -> LoadMode {
        match (mmap, mlock) {
            (true, false) => LoadMode::Mmap,
            (false, false) => LoadMode::Read,
            (true, true) => LoadMode::MmapLocked,
            (false, true) => LoadMode::ReadLocked,
        }
    }

    /// Whether the weights stay in the mapped file (else they are copied into anonymous memory).
    pub fn maps(self) -> bool {
        matches!(self, LoadMode::Mmap | LoadMode::MmapLocked)
    }
}

/// Parameters for `ffi::Model::load`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelParams {
    /// Layers to offload to a GPU; negative means all. Ignored by CPU-only builds.
    pub n_gpu_layers: i32,
    /// How the weights are loaded.
    pub load_mode: LoadMode,
    /// Let llama.cpp put weights in the CPU backend's extra buffer types, which repack some
    /// quantised types for faster kernels (copies them into anonymous memory). `false` is
    /// llama.cpp's `--no-repack`.
    pub repack: bool,
    /// Offer the AMX buffer type too (off by default: its kernels crash on some CPUs, llama.cpp
    /// #20824; see `ffi::buffers`).
    pub amx: bool,
    /// Further extra buffer types (by llama.cpp's name, e.g. `CPU_REPACK`) no weight may go to.
    pub excluded_buffer_types: Vec<String>,
    /// Only size the allocations without making them (for planning).
    pub no_alloc: bool,
    /// Load only the vocabulary, no weights.
    pub vocab_only: bool,
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            n_gpu_layers: 0,
            load_mode: LoadMode::Mmap,
            repack: true,
            amx: false,
            excluded_buffer_types: Vec::new(),
            no_alloc: false,
            vocab_only: false,
        }
    }
}
