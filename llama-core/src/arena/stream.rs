//! The streaming residency protocol, driven by llama.cpp's eval callback.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::ledger::{ArenaError, Ledger, Placement, Tier};
use super::node_layer;
use crate::ffi::{EvalObserver, ModelMapping};

/// `--stream`: whether layers are streamed from the mapped file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamMode {
    /// Stream only when the weights do not fit in the budget.
    #[default]
    Auto,
    /// Always stream (with the smallest window when there is no budget).
    On,
    /// Never stream.
    Off,
}

impl std::str::FromStr for StreamMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(StreamMode::Auto),
            "on" => Ok(StreamMode::On),
            "off" => Ok(StreamMode::Off),
            other => Err(format!("expected auto, on or off, not `{other}`")),
        }
    }
}

impl StreamMode {
    /// The placement to stream with, or `None` to load fully resident. `weight_budget` is what
    /// the budget leaves for weights after the anonymous memory (KV, compute, outputs).
    pub fn placement(
        self,
        ledger: &Ledger,
        weight_budget: Option<u64>,
    ) -> Result<Option<Placement>, ArenaError> {
        let plan = |budget| Placement::plan(ledger, budget).map(Some);
        match (self, weight_budget) {
            (StreamMode::Off, _) | (StreamMode::Auto, None) => Ok(None),
            (StreamMode::Auto, Some(b)) if ledger.total_bytes() <= b => Ok(None),
            (_, Some(b)) => plan(b),
            // On without a budget: stream every layer through a window of two.
            (StreamMode::On, None) => {
                let b = ledger.global_bytes + 2 * ledger.max_layer_bytes();
                plan(b.min(ledger.total_bytes().saturating_sub(1)))
            }
        }
    }
}

/// Counters of the arena, shared with whoever reads them while the model runs.
#[derive(Debug, Default)]
pub struct ArenaCounters {
    resident_bytes: AtomicU64,
    peak_resident_bytes: AtomicU64,
    layer_loads: AtomicU64,
    layer_evictions: AtomicU64,
    bytes_prefetched: AtomicU64,
    bytes_released: AtomicU64,
}

/// A copy of [`ArenaCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CounterSnapshot {
    /// Weight bytes the ledger counts resident now (pinned plus loaded streamed layers).
    pub resident_bytes: u64,
    /// The most that was ever resident.
    pub peak_resident_bytes: u64,
    /// Streamed layers prefetched.
    pub layer_loads: u64,
    /// Streamed layers released.
    pub layer_evictions: u64,
    /// Bytes asked to be read ahead.
    pub bytes_prefetched: u64,
    /// Bytes released.
    pub bytes_released: u64,
}

impl ArenaCounters {
    /// Current values.
    pub fn snapshot(&self) -> CounterSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            resident_bytes: get(&self.resident_bytes),
            peak_resident_bytes: get(&self.peak_resident_bytes),
            layer_loads: get(&self.layer_loads),
            layer_evictions: get(&self.layer_evictions),
            bytes_prefetched: get(&self.bytes_prefetched),
            bytes_released: get(&self.bytes_released),
        }
    }

    fn add_resident(&self, bytes: u64) {
        let now = self.resident_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak_resident_bytes.fetch_max(now, Ordering::Relaxed);
    }

    fn sub_resident(&self, bytes: u64) {
        self.resident_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Bytes this process caused to be read from storage (`read_bytes` of `/proc/self/io`).
pub fn disk_read_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("read_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Keeps a window of streamed layers resident: when llama.cpp has computed layer L (node
/// `l_out-L`), L is released if streamed, and the next `window` streamed layers (wrapping to
/// the first ones for the next token) are prefetched.
#[derive(Debug)]
pub struct LayerStreamer {
    mapping: Arc<ModelMapping>,
    ledger: Ledger,
    placement: Placement,
    /// Position in the ledger of each block index.
    position: Vec<Option<usize>>,
    /// Whether each streamed layer is currently loaded (prefetched and not released).
    loaded: Vec<bool>,
    counters: Arc<ArenaCounters>,
}

impl LayerStreamer {
    /// Starts streaming `ledger` as `placement` says over `mapping`: releases every streamed
    /// layer and prefetches the pinned ones and the first window.
    pub fn new(mapping: Arc<ModelMapping>, ledger: Ledger, placement: Placement) -> LayerStreamer {
        let max_index = ledger.layers.iter().map(|l| l.index).max().unwrap_or(0) as usize;
        let mut position = vec![None; max_index + 1];
        for (i, l) in ledger.layers.iter().enumerate() {
            position[l.index as usize] = Some(i);
        }
        let n = ledger.layers.len();
        let mut streamer = LayerStreamer {
            mapping,
            ledger,
            placement,
            position,
            loaded: vec![false; n],
            counters: Arc::new(ArenaCounters::default()),
        };
        streamer
            .counters
            .add_resident(streamer.placement.pinned_bytes);
        for r in &streamer.ledger.global_ranges {
            streamer.mapping.prefetch(r.clone());
        }
        for i in 0..n {
            if streamer.placement.tiers[i] == Tier::Resident {
                for r in &streamer.ledger.layers[i].ranges {
                    streamer.mapping.prefetch(r.clone());
                }
            } else {
                streamer.release(i, false);
            }
        }
        streamer.prefetch_after(None);
        streamer
    }

    /// The counters, shared.
    pub fn counters(&self) -> Arc<ArenaCounters> {
        Arc::clone(&self.counters)
    }

    /// The mapping, shared.
    pub fn mapping(&self) -> Arc<ModelMapping> {
        Arc::clone(&self.mapping)
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The placement.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    fn release(&mut self, i: usize, count: bool) {
        let layer = &self.ledger.layers[i];
        for r in &layer.ranges {
            self.mapping.release(r.clone());
        }
        if count {
            self.counters
                .layer_evictions
                .fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes_released
                .fetch_add(layer.n_bytes, Ordering::Relaxed);
        }
        if std::mem::take(&mut self.loaded[i]) {
            self.counters.sub_resident(layer.n_bytes);
        }
    }

    fn load(&mut self, i: usize) {
        if self.loaded[i] {
            return;
        }
        let layer = &self.ledger.layers[i];
        for r in &layer.ranges {
            self.mapping.prefetch(r.clone());
        }
        self.loaded[i] = true;
        self.counters.layer_loads.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_prefetched
            .fetch_add(layer.n_bytes, Ordering::Relaxed);
        self.counters.add_resident(layer.n_bytes);
    }

    /// Loads the `window` streamed layers following position `after` (from the start when
    /// `None`), wrapping around.
    fn prefetch_after(&mut self, after: Option<usize>) {
        let n = self.ledger.layers.len();
        let start = after.map_or(0, |a| a + 1);
        let next: Vec<usize> = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| self.placement.tiers[i] == Tier::Streamed)
            .take(self.placement.window)
            .collect();
        for i in next {
            self.load(i);
        }
    }
}

impl EvalObserver for LayerStreamer {
    fn wants(&mut self, name: &str) -> bool {
        matches!(node_layer(name), Some(("l_out", _)))
    }

    fn computed(&mut self, name: &str) {
        let Some(("l_out", index)) = node_layer(name) else {
            return;
        };
        let Some(Some(i)) = self.position.get(index as usize).copied() else {
            return;
        };
        if self.placement.tiers[i] == Tier::Streamed {
            self.release(i, true);
        }
        self.prefetch_after(Some(i));
    }
}
