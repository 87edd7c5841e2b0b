//! The ledger of layer weights and their placement into tiers.

use std::ops::Range;

use serde::Serialize;

use crate::gguf::{GgufModel, TensorInfo};

/// Why a placement or a streaming setup was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArenaError {
    /// The budget cannot hold the global tensors plus one layer (plus the other memory).
    #[error(
        "a budget of {budget} bytes for weights is too small to stream this model: it needs at \
         least {minimum} bytes (global tensors plus the largest layer)"
    )]
    BudgetTooSmall {
        /// The budget given for weights.
        budget: u64,
        /// The smallest budget that works.
        minimum: u64,
    },
    /// Streaming works on single-file models only.
    #[error("streaming needs a single-file model; this one is split into {files} files")]
    SplitModel {
        /// Number of files.
        files: usize,
    },
    /// The model has no `blk.N.*` tensors to stream.
    #[error("the model has no per-layer tensors to stream")]
    NoLayers,
}

/// One transformer block's weights in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerSpan {
    /// Block index `N` of `blk.N.*`.
    pub index: u32,
    /// File byte ranges of its tensors, merged where contiguous, in file order.
    pub ranges: Vec<Range<u64>>,
    /// Total tensor bytes.
    pub n_bytes: u64,
}

/// Every layer's weights and the global tensors of a single-file model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ledger {
    /// Per-block spans, by ascending index.
    pub layers: Vec<LayerSpan>,
    /// File ranges of the tensors outside any block (embeddings, output norm and head).
    pub global_ranges: Vec<Range<u64>>,
    /// Their total bytes.
    pub global_bytes: u64,
}

fn merged_ranges<'a>(tensors: impl IntoIterator<Item = &'a TensorInfo>) -> Vec<Range<u64>> {
    let mut ranges: Vec<Range<u64>> = tensors
        .into_iter()
        .map(|t| t.file_offset..t.file_offset.saturating_add(t.n_bytes))
        .collect();
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            // Tensors are aligned (32 bytes by default): a gap below the alignment is padding.
            Some(last) if r.start <= last.end + 64 => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

impl Ledger {
    /// The ledger of `model`. Split models are refused (streaming maps one file).
    pub fn from_gguf(model: &GgufModel) -> Result<Ledger, ArenaError> {
        let groups = model.weight_groups();
        let files = model.tensors().iter().map(|t| t.split).max().unwrap_or(0) + 1;
        if files > 1 {
            return Err(ArenaError::SplitModel { files });
        }
        if groups.layers.is_empty() {
            return Err(ArenaError::NoLayers);
        }
        let layers = groups
            .layers
            .iter()
            .map(|l| LayerSpan {
                index: l.index,
                ranges: merged_ranges(&l.tensors),
                n_bytes: l.n_bytes,
            })
            .collect();
        Ok(Ledger {
            layers,
            global_ranges: merged_ranges(&groups.globals),
            global_bytes: groups.global_bytes,
        })
    }

    /// Total weight bytes.
    pub fn total_bytes(&self) -> u64 {
        self.global_bytes + self.layers.iter().map(|l| l.n_bytes).sum::<u64>()
    }

    /// Bytes of the largest layer.
    pub fn max_layer_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.n_bytes).max().unwrap_or(0)
    }

    /// The smallest weight budget that can stream: globals plus one layer.
    pub fn minimum_budget(&self) -> u64 {
        self.global_bytes + self.max_layer_bytes()
    }
}

/// Where a layer's weights live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Mapped and kept resident in host RAM for the whole run.
    Resident,
    /// Read from the mapped file when its turn comes and released after it.
    Streamed,
}

/// The tier of every layer for one weight budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// The weight budget placed against.
    pub budget: u64,
    /// Tier of each layer, in ledger order.
    pub tiers: Vec<Tier>,
    /// Streamed layers resident at once (the running one plus those prefetched); 0 when none
    /// are streamed.
    pub window: usize,
    /// Bytes pinned resident: globals and resident layers.
    pub pinned_bytes: u64,
    /// Bound on resident weight bytes: pinned plus the window of the largest streamed layers.
    pub peak_bytes: u64,
}

impl Placement {
    /// Places `ledger` within `budget` bytes of weights. Everything is resident when it fits.
    /// Otherwise the window is two streamed layers (the running one and the next) when that
    /// fits, else one; what remains pins layers from the first one up. Deterministic.
    pub fn plan(ledger: &Ledger, budget: u64) -> Result<Placement, ArenaError> {
        let n = ledger.layers.len();
        if ledger.total_bytes() <= budget {
            return Ok(Placement {
                budget,
                tiers: vec![Tier::Resident; n],
                window: 0,
                pinned_bytes: ledger.total_bytes(),
                peak_bytes: ledger.total_bytes(),
            });
        }
        let minimum = ledger.minimum_budget();
        if budget < minimum {
            return Err(ArenaError::BudgetTooSmall { budget, minimum });
        }
        let largest = ledger.max_layer_bytes();
        let window = if ledger.global_bytes + 2 * largest <= budget && n > 1 {
            2
        } else {
            1
        };
        let stream_room = window as u64 * largest;
        let mut pinned = ledger.global_bytes;
        let mut tiers = vec![Tier::Streamed; n];
        // Pin layers in order while the window of the largest layer still fits after them (at
        // least one layer stays streamed, or everything would have fit).
        for (i, layer) in ledger.layers.iter().enumerate().take(n - 1) {
            if pinned + layer.n_bytes + stream_room > budget {
                break;
            }
            pinned += layer.n_bytes;
            tiers[i] = Tier::Resident;
        }
        let streamed_max: Vec<u64> = {
            let mut v: Vec<u64> = ledger
                .layers
                .iter()
                .zip(&tiers)
                .filter(|(_, t)| **t == Tier::Streamed)
                .map(|(l, _)| l.n_bytes)
                .collect();
            v.sort_unstable_by(|a, b| b.cmp(a));
            v
        };
        let window = window.min(streamed_max.len());
        let peak_bytes = pinned + streamed_max.iter().take(window).sum::<u64>();
        Ok(Placement {
            budget,
            tiers,
            window,
            pinned_bytes: pinned,
            peak_bytes,
        })
    }

    /// Whether any layer is streamed.
    pub fn streams(&self) -> bool {
        self.tiers.contains(&Tier::Streamed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(layer_bytes: &[u64], global: u64) -> Ledger {
        let mut off = global;
        let layers = layer_bytes
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                let span = LayerSpan {
                    index: i as u32,
                    ranges: std::iter::once(off..off + b).collect(),
                    n_bytes: b,
                };
                off += b;
                span
            })
            .collect();
        Ledger {
            layers,
            global_ranges: std::iter::once(0..global).collect(),
            global_bytes: global,
        }
    }

    #[test]
    fn everything_resident_when_it_fits() {
        let l = ledger(&[10; 4], 5);
        let p = Placement::plan(&l, 45).unwrap();
        assert!(!p.streams());
        assert_eq!(p.window, 0);
    }

    #[test]
    fn too_small_names_the_minimum() {
        let l = ledger(&[10, 12, 10], 5);
        assert_eq!(
            Placement::plan(&l, 16),
            Err(ArenaError::BudgetTooSmall {
                budget: 16,
                minimum: 17
            })
        );
        let p = Placement::plan(&l, 17).unwrap();
        assert_eq!(p.window, 1);
        assert_eq!(p.tiers, vec![Tier::Streamed; 3]);
        assert!(p.peak_bytes <= 17);
    }

    #[test]
    fn pins_leading_layers_and_keeps_a_window() {
        let l = ledger(&[10; 6], 5);
        let p = Placement::plan(&l, 45).unwrap();
        assert_eq!(p.window, 2);
        // 5 + 2 pinned layers (20) + window 20 = 45.
        assert_eq!(
            p.tiers,
            [Tier::Resident, Tier::Resident]
                .into_iter()
                .chain([Tier::Streamed; 4])
                .collect::<Vec<_>>()
        );
        assert_eq!(p.peak_bytes, 45);
        assert_eq!(Placement::plan(&l, 45), Ok(p), "deterministic");
    }

    #[test]
    fn merges_contiguous_tensor_ranges() {
        let t = |off: u64, n: u64| TensorInfo {
            name: String::new(),
            dims: vec![n],
            ggml_type: crate::gguf::GgmlType::F32,
            offset: off,
            file_offset: off,
            n_bytes: n,
            split: 0,
        };
        let r = merged_ranges(&[t(100, 50), t(0, 96), t(1000, 8)]);
        assert_eq!(r, vec![0..150, 1000..1008]);
    }
}
