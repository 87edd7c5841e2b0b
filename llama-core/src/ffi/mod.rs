//! The one module of llama-core that talks to llama.cpp, and so the only one allowed `unsafe`.
//!
//! Every llama.cpp handle is owned by a RAII type defined here ([`Model`], [`Context`],
//! [`SamplerChain`], [`GrammarSampler`], [`Batch`]) whose `Drop` frees it exactly once. The types expose safe methods;
//! each `unsafe` block states why the call is sound in a `// SAFETY:` comment. Code outside this
//! module cannot reach a raw pointer.

mod backend;
mod batch;
pub mod buffers;
mod context;
mod grammar;
mod lora;
mod model;
mod quantize;
mod residency;
mod sampler;
mod system;

pub use backend::{Backend, LogTapGuard};
pub use batch::Batch;
pub use buffers::BufferUsage;
pub use context::{Context, DecodeOutcome};
pub use grammar::{json_schema_to_gbnf, GrammarFailure, GrammarSampler};
pub use lora::LoraAdapter;
pub use model::Model;
pub use quantize::{
    quantize_file, ImatrixValues, MetadataValue, QuantizeCallError, QuantizeParams,
};
pub use residency::{
    populate_cleared_count, streaming_load_supported, EvalObserver, ModelMapping, StreamingLoad,
    TensorInput,
};
pub use sampler::SamplerChain;
pub use system::{
    compiled_gpu_backends, cpu_has_amx, AmxInfo, DeviceInfo, ExtraBufferType, SystemInfo,
};

pub use crate::params::{ContextParams, FlashAttention, LoadMode, ModelParams, Token};

/// Returns freed heap memory to the operating system (after a dry run, before a real load).
pub fn release_free_heap() {
    llama_sys::release_free_heap();
}

/// The heap's fixed mmap threshold ([`pin_heap_thresholds`]): 1 MiB, so that the large blocks
/// a model load frees (the vocabulary's token strings and tables, megabytes each) go back to
/// the operating system when freed, while the per-token working arrays of a vocabulary below
/// ~87,000 tokens (12 bytes an entry) stay in the heap and are reused without page faults.
pub const HEAP_MMAP_THRESHOLD: usize = 1 << 20;

/// Fixes the C allocator's mmap threshold at [`HEAP_MMAP_THRESHOLD`], so that a process's peak
/// RSS does not depend on the order of its frees (glibc's dynamic threshold kept the 8 MiB
/// blocks a large vocabulary's load frees in the heap in some runs and not in others). The
/// planner's runtime margin was measured with it; [`Backend::init`] calls it, and a binary calls
/// it first thing so that its own early allocations are placed the same way. Returns false
/// where the C library has no such setting.
pub fn pin_heap_thresholds() -> bool {
    llama_sys::pin_mmap_threshold(HEAP_MMAP_THRESHOLD)
}

/// The heap's mmap threshold while llama.cpp loads a model or makes a context
/// ([`with_loading_heap`]): 256 KiB, so that the quarter- to one-MiB blocks made then (and only
/// partly written) get fresh pages of their own, not heap pages that blocks freed before had
/// dirtied. With the run's 1 MiB threshold, the heap of a 24-layer gemma3-style model held
/// 3.8 MiB after its load in some runs and 5.4 MiB in others, by the order its threads freed
/// in, and its peak moved by the same 1.5 MiB; with 256 KiB it held 1.6 MiB in every run.
pub const LOADING_MMAP_THRESHOLD: usize = 256 << 10;

/// Loads and context creations under way ([`with_loading_heap`]).
static LOADING: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// Runs `load` (a model load or a context creation) with the heap's mmap threshold at
/// [`LOADING_MMAP_THRESHOLD`], then puts it back at [`HEAP_MMAP_THRESHOLD`] once no other load
/// is under way, and returns the heap's free pages to the operating system: the heap then
/// holds what the model or context keeps, as the plan measured it, however the frees fell.
pub(crate) fn with_loading_heap<T>(load: impl FnOnce() -> T) -> T {
    {
        let mut loading = LOADING.lock().unwrap_or_else(|e| e.into_inner());
        *loading += 1;
        llama_sys::pin_mmap_threshold(LOADING_MMAP_THRESHOLD);
    }
    let result = load();
    {
        let mut loading = LOADING.lock().unwrap_or_else(|e| e.into_inner());
        *loading -= 1;
        if *loading == 0 {
            llama_sys::pin_mmap_threshold(HEAP_MMAP_THRESHOLD);
        }
    }
    release_free_heap();
    result
}

/// Bytes of one graph's metadata buffer as llama.cpp makes it for graphs of `max_nodes` nodes
/// (`llm_graph_result`'s `buf_compute_meta`: a tensor header per node and the graph's node,
/// leaf and hash arrays). llama.cpp zero-fills it, so all of it is resident.
pub fn graph_metadata_bytes(max_nodes: u64) -> u64 {
    let nodes = usize::try_from(max_nodes).unwrap_or(usize::MAX / 1024);
    // SAFETY: both functions compute a size from their arguments; they take no pointers and
    // touch no state.
    let (per_tensor, graph) = unsafe {
        (
            llama_sys::ggml_tensor_overhead(),
            llama_sys::ggml_graph_overhead_custom(nodes, false),
        )
    };
    (per_tensor as u64)
        .saturating_mul(max_nodes)
        .saturating_add(graph as u64)
}

/// Converts a Rust string into a C string, or `None` when it holds a NUL byte.
fn c_string(text: &str) -> Option<std::ffi::CString> {
    std::ffi::CString::new(text).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_graph_of_1024_nodes_takes_about_0_4_mib_of_metadata() {
        let small = super::graph_metadata_bytes(1024);
        assert!((300 << 10..600 << 10).contains(&small), "{small}");
        // A tensor header and the graph's arrays per node: linear in the nodes.
        let large = super::graph_metadata_bytes(4096);
        assert!(large > 3 * small && large < 5 * small, "{small} {large}");
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_fixed_mmap_threshold() {
        assert!(super::pin_heap_thresholds());
        // Pinning again (as every binary and `Backend::init` do) is harmless.
        assert!(super::pin_heap_thresholds());
    }
}
