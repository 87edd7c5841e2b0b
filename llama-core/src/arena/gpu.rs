//! How many layers go to the GPU under a VRAM budget (`--max-vram`).
//!
//! llama.cpp offloads the last `n_gpu_layers` repeating layers (and the output head once
//! `n_gpu_layers` exceeds the layer count); each offloaded layer brings its weights and its
//! share of the KV cache into VRAM. The device's compute buffer is reserved first.

use serde::Serialize;

use super::ledger::Ledger;

/// The VRAM side of a placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GpuFit {
    /// Layers to offload (`-ngl`), counted from the last layer down.
    pub n_gpu_layers: u32,
    /// VRAM those layers need: weights plus their KV cache, plus the reserve.
    pub vram_bytes: u64,
}

/// The most layers that fit in `vram_budget` bytes: the reserve (the device's compute buffer)
/// first, then the last layers' weights plus `kv_bytes_per_layer` each, taken from the last
/// layer down while they fit. Deterministic; 0 when even the reserve does not fit.
pub fn gpu_layers_within(
    ledger: &Ledger,
    vram_budget: u64,
    kv_bytes_per_layer: u64,
    reserve: u64,
) -> GpuFit {
    let mut used = reserve;
    let mut n = 0u32;
    if used <= vram_budget {
        for layer in ledger.layers.iter().rev() {
            let need = layer.n_bytes + kv_bytes_per_layer;
            if used + need > vram_budget {
                break;
            }
            used += need;
            n += 1;
        }
    }
    GpuFit {
        n_gpu_layers: n,
        vram_bytes: if n == 0 { 0 } else { used },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::{LayerSpan, LayerStage, StageEnd};

    fn ledger(sizes: &[u64]) -> Ledger {
        let layers = sizes
            .iter()
            .enumerate()
            .map(|(i, &b)| LayerSpan {
                index: i as u32,
                ranges: std::iter::once(0..b).collect(),
                n_bytes: b,
                stages: vec![LayerStage {
                    end: StageEnd::Layer,
                    ranges: std::iter::once(0..b).collect(),
                    n_bytes: b,
                }],
            })
            .collect();
        Ledger {
            layers,
            global_ranges: vec![],
            global_bytes: 100,
            tensor_offsets: Default::default(),
        }
    }

    #[test]
    fn takes_layers_from_the_last_down_while_they_fit() {
        let l = ledger(&[10, 10, 20, 30]);
        // reserve 5, KV 2 per layer: last layer 32, then 22, then 12.
        assert_eq!(gpu_layers_within(&l, 5 + 32, 2, 5).n_gpu_layers, 1);
        assert_eq!(gpu_layers_within(&l, 5 + 32 + 21, 2, 5).n_gpu_layers, 1);
        let fit = gpu_layers_within(&l, 5 + 32 + 22 + 12, 2, 5);
        assert_eq!(fit.n_gpu_layers, 3);
        assert_eq!(fit.vram_bytes, 71);
        assert_eq!(gpu_layers_within(&l, 1000, 2, 5).n_gpu_layers, 4);
    }

    #[test]
    fn nothing_when_the_reserve_does_not_fit() {
        let l = ledger(&[1, 1]);
        assert_eq!(
            gpu_layers_within(&l, 4, 0, 5),
            GpuFit {
                n_gpu_layers: 0,
                vram_bytes: 0
            }
        );
    }
}
