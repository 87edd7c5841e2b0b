//! The per-layer offload arena: where every layer's weights live, under a hard host-RAM budget,
//! and the residency protocol that streams layers from the memory-mapped file when they do not
//! all fit (see docs/design.md).
//!
//! - [`Ledger`]: each transformer block's file byte ranges and weight bytes, and the global
//!   tensors, from the GGUF reader.
//! - [`Placement`]: the deterministic assignment of every layer to a [`Tier`] for a budget, and
//!   the streaming window.
//! - [`StreamMode`]: `--stream`, and the placement a load streams with.
//! - `LayerStreamer` (feature `ffi`): the `ffi::EvalObserver` that releases a streamed layer
//!   when llama.cpp has computed it and prefetches the next ones, with `ArenaCounters`.
//! - [`gpu_layers_within`]: how many layers a VRAM budget holds (`--max-vram`).
//!
//! All but the streamer are pure arithmetic over the GGUF reader's tensors.

mod gpu;
mod ledger;
mod mode;
#[cfg(feature = "ffi")]
mod stream;

pub use gpu::{gpu_layers_within, GpuFit};
pub use ledger::{ArenaError, LayerSpan, LayerStage, Ledger, Placement, StageEnd, Tier};
pub use mode::StreamMode;
#[cfg(feature = "ffi")]
pub use stream::{disk_read_bytes, ArenaCounters, CounterSnapshot, LayerStreamer};

/// Layer index of a graph node name such as `l_out-12` (llama.cpp's per-layer node names).
pub fn node_layer(name: &str) -> Option<(&str, u32)> {
    let (base, layer) = name.rsplit_once('-')?;
    Some((base, layer.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_names() {
        assert_eq!(node_layer("l_out-12"), Some(("l_out", 12)));
        assert_eq!(node_layer("attn_norm-0"), Some(("attn_norm", 0)));
        assert_eq!(node_layer("result_output"), None);
        assert_eq!(node_layer("ffn-out-x"), None);
    }
}
