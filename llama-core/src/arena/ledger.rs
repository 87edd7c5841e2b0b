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

/// The graph node of a layer after which a stage's weights are no longer read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageEnd {
    /// `ffn_inp-L`: the attention block (norm, Q/K/V, output projection) and its residual add
    /// are done.
    Attention,
    /// `l_out-L`: the whole layer is done.
    Layer,
}

impl StageEnd {
    /// The stage end that graph node `base` (a node name without its `-L` suffix) marks.
    pub fn of_node(base: &str) -> Option<StageEnd> {
        match base {
            "ffn_inp" => Some(StageEnd::Attention),
            "l_out" => Some(StageEnd::Layer),
            _ => None,
        }
    }

    /// Which stage a block tensor named `blk.N.<rest>` belongs to: `attn_*` tensors are read
    /// by the attention block; everything else by the rest of the layer.
    fn of_tensor(name: &str) -> StageEnd {
        let rest = name.splitn(3, '.').nth(2).unwrap_or(name);
        if rest.starts_with("attn_") {
            StageEnd::Attention
        } else {
            StageEnd::Layer
        }
    }
}

/// The weights of one layer read by one part of its graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerStage {
    /// The node after which they are no longer read.
    pub end: StageEnd,
    /// File byte ranges, merged where contiguous.
    pub ranges: Vec<Range<u64>>,
    /// Total bytes.
    pub n_bytes: u64,
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
    /// Its tensors by the part of the graph that reads them, in execution order (attention
    /// first); one stage when the layer has no `attn_*` tensors or only those.
    pub stages: Vec<LayerStage>,
}

impl LayerSpan {
    /// A layer from its tensors.
    pub fn new<'a>(index: u32, tensors: impl IntoIterator<Item = &'a TensorInfo>) -> LayerSpan {
        let tensors: Vec<&TensorInfo> = tensors.into_iter().collect();
        let mut stages = Vec::new();
        for end in [StageEnd::Attention, StageEnd::Layer] {
            let part: Vec<&TensorInfo> = tensors
                .iter()
                .copied()
                .filter(|t| StageEnd::of_tensor(&t.name) == end)
                .collect();
            if !part.is_empty() {
                stages.push(LayerStage {
                    end,
                    ranges: merged_ranges(part.iter().copied()),
                    n_bytes: part.iter().map(|t| t.n_bytes).sum(),
                });
            }
        }
        LayerSpan {
            index,
            ranges: merged_ranges(tensors.iter().copied()),
            n_bytes: tensors.iter().map(|t| t.n_bytes).sum(),
            stages,
        }
    }
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
    /// File offset of every tensor's data, by name (to check the addresses llama.cpp uses).
    #[serde(skip)]
    pub tensor_offsets: std::collections::BTreeMap<String, u64>,
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
            .map(|l| LayerSpan::new(l.index, &l.tensors))
            .collect();
        Ok(Ledger {
            layers,
            global_ranges: merged_ranges(&groups.globals),
            global_bytes: groups.global_bytes,
            tensor_offsets: model
                .tensors()
                .iter()
                .map(|t| (t.name.clone(), t.file_offset))
                .collect(),
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
    /// Offloaded to a GPU (`-ngl`): its weights live in VRAM.
    Gpu,
}

impl Tier {
    /// How `llama-cli plan` names the tier.
    pub fn label(self) -> &'static str {
        match self {
            Tier::Resident => "ram",
            Tier::Streamed => "disk (streamed)",
            Tier::Gpu => "gpu",
        }
    }
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
    /// The part of the window beyond the largest streamed layer: layers read ahead of the
    /// running one (`MADV_WILLNEED`) into the page cache, which the process maps only when the
    /// graph reaches them, after the layer before is released. Counted against the budget (a
    /// cgroup charges the page cache) but not in the process's RSS: with a window of two
    /// layers, the streamed runs' weights measured within 0.8 MiB of the pinned bytes plus one
    /// layer (docs/MEMORY.md). 0 with a window of one layer or none.
    pub read_ahead_bytes: u64,
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
                read_ahead_bytes: 0,
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
        let window_bytes: u64 = streamed_max.iter().take(window).sum();
        Ok(Placement {
            budget,
            tiers,
            window,
            pinned_bytes: pinned,
            peak_bytes: pinned + window_bytes,
            read_ahead_bytes: window_bytes - streamed_max.first().copied().unwrap_or(0),
        })
    }

    /// [`Placement::plan`] for the layers left on the host once the last `n_gpu` layers are
    /// offloaded to a GPU (llama.cpp offloads from the last layer down); those get
    /// [`Tier::Gpu`] and do not count against `budget`.
    pub fn plan_with_gpu(
        ledger: &Ledger,
        n_gpu: usize,
        budget: u64,
    ) -> Result<Placement, ArenaError> {
        let n = ledger.layers.len();
        let n_gpu = n_gpu.min(n);
        if n_gpu == 0 {
            return Placement::plan(ledger, budget);
        }
        let host = Ledger {
            layers: ledger.layers[..n - n_gpu].to_vec(),
            ..ledger.clone()
        };
        let mut placement = if host.layers.is_empty() {
            if host.global_bytes > budget {
                return Err(ArenaError::BudgetTooSmall {
                    budget,
                    minimum: host.global_bytes,
                });
            }
            Placement {
                budget,
                tiers: Vec::new(),
                window: 0,
                pinned_bytes: host.global_bytes,
                peak_bytes: host.global_bytes,
                read_ahead_bytes: 0,
            }
        } else {
            Placement::plan(&host, budget)?
        };
        placement
            .tiers
            .extend(std::iter::repeat_n(Tier::Gpu, n_gpu));
        Ok(placement)
    }

    /// How many layers are streamed.
    pub fn n_streamed(&self) -> usize {
        self.tiers.iter().filter(|t| **t == Tier::Streamed).count()
    }

    /// Whether any layer is streamed.
    pub fn streams(&self) -> bool {
        self.tiers.contains(&Tier::Streamed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An F32 tensor `name` of `n` bytes at file offset `off`.
    fn tensor(name: &str, off: u64, n: u64) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dims: vec![n],
            ggml_type: crate::gguf::GgmlType::F32,
            offset: off,
            file_offset: off,
            n_bytes: n,
            split: 0,
        }
    }

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
                    stages: vec![LayerStage {
                        end: StageEnd::Layer,
                        ranges: std::iter::once(off..off + b).collect(),
                        n_bytes: b,
                    }],
                };
                off += b;
                span
            })
            .collect();
        Ledger {
            layers,
            global_ranges: std::iter::once(0..global).collect(),
            global_bytes: global,
            tensor_offsets: Default::default(),
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
        assert_eq!(
            p.read_ahead_bytes, 0,
            "one layer's window reads nothing ahead"
        );
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
        assert_eq!(p.read_ahead_bytes, 10, "the layer after the running one");
        assert_eq!(Placement::plan(&l, 45), Ok(p), "deterministic");
    }

    #[test]
    fn splits_a_layer_into_attention_and_the_rest() {
        let t = tensor;
        let tensors = [
            t("blk.3.attn_k.weight", 0, 64),
            t("blk.3.attn_norm.weight", 64, 64),
            t("blk.3.ffn_down.weight", 128, 128),
            t("blk.3.ffn_norm.weight", 256, 64),
        ];
        let span = LayerSpan::new(3, &tensors);
        assert_eq!(span.ranges, vec![0..320]);
        assert_eq!(span.n_bytes, 320);
        assert_eq!(span.stages.len(), 2);
        assert_eq!(span.stages[0].end, StageEnd::Attention);
        assert_eq!(span.stages[0].ranges, vec![0..128]);
        assert_eq!(span.stages[1].end, StageEnd::Layer);
        assert_eq!(
            (span.stages[1].ranges.clone(), span.stages[1].n_bytes),
            (std::iter::once(128..320).collect::<Vec<_>>(), 192)
        );
        let ffn_only = LayerSpan::new(0, &tensors[2..]);
        assert_eq!(ffn_only.stages.len(), 1);
        assert_eq!(StageEnd::of_node("ffn_inp"), Some(StageEnd::Attention));
        assert_eq!(StageEnd::of_node("l_out"), Some(StageEnd::Layer));
        assert_eq!(StageEnd::of_node("attn_norm"), None);
    }

    #[test]
    fn gpu_layers_are_the_last_ones_and_leave_the_host_budget() {
        let l = ledger(&[10; 6], 5);
        let p = Placement::plan_with_gpu(&l, 2, 45).unwrap();
        assert_eq!(p.tiers[4..], [Tier::Gpu, Tier::Gpu]);
        assert!(!p.streams(), "4 host layers (40) and globals (5) fit in 45");
        let p = Placement::plan_with_gpu(&l, 2, 30).unwrap();
        assert!(p.streams());
        assert_eq!(p.tiers[4..], [Tier::Gpu, Tier::Gpu]);
        assert!(p.tiers[..4].iter().all(|t| *t != Tier::Gpu));
        let all = Placement::plan_with_gpu(&l, 9, 5).unwrap();
        assert_eq!(all.tiers, vec![Tier::Gpu; 6]);
        assert!(Placement::plan_with_gpu(&l, 6, 4).is_err());
    }

    #[test]
    fn merges_contiguous_tensor_ranges() {
        let t = |off, n| tensor("", off, n);
        let r = merged_ranges(&[t(100, 50), t(0, 96), t(1000, 8)]);
        assert_eq!(r, vec![0..150, 1000..1008]);
    }
}
