//! The streaming residency protocol, driven by llama.cpp's eval callback.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::ledger::{Ledger, Placement, StageEnd, Tier};
use super::node_layer;
use crate::ffi::{EvalObserver, ModelMapping, TensorInput};

/// Counters of the arena, shared with whoever reads them while the model runs.
#[derive(Debug, Default)]
pub struct ArenaCounters {
    resident_bytes: AtomicU64,
    peak_resident_bytes: AtomicU64,
    layer_loads: AtomicU64,
    layer_evictions: AtomicU64,
    bytes_prefetched: AtomicU64,
    bytes_released: AtomicU64,
    passes: AtomicU64,
    disk_read_bytes: AtomicU64,
    addresses_checked: AtomicU64,
    addresses_wrong: AtomicU64,
}

/// A copy of [`ArenaCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CounterSnapshot {
    /// Weight bytes the ledger counts resident now (pinned plus loaded streamed layers).
    pub resident_bytes: u64,
    /// The most that was ever resident.
    pub peak_resident_bytes: u64,
    /// Streamed layers whose read-ahead began.
    pub layer_loads: u64,
    /// Streamed layers released (all their weights, once per pass).
    pub layer_evictions: u64,
    /// Bytes asked to be read ahead.
    pub bytes_prefetched: u64,
    /// Bytes released.
    pub bytes_released: u64,
    /// Forward passes through every layer (one per decode call).
    pub passes: u64,
    /// Bytes the process read from storage since streaming started (`/proc/self/io`), as of
    /// the end of the last pass.
    pub disk_read_bytes: u64,
    /// Weight tensors whose data address in llama.cpp's graph was checked against the
    /// mapping's base plus the tensor's GGUF file offset (during the first pass).
    pub addresses_checked: u64,
    /// Of those, how many were elsewhere (then the streamer's advice would miss them).
    pub addresses_wrong: u64,
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
            passes: get(&self.passes),
            disk_read_bytes: get(&self.disk_read_bytes),
            addresses_checked: get(&self.addresses_checked),
            addresses_wrong: get(&self.addresses_wrong),
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

/// How far past a released range the page-cache drop may reach into bytes nothing needs: the
/// largest folio the page cache uses for file data (a PMD, 2 MiB on x86-64).
const FOLIO_REACH: u64 = 2 << 20;

/// One streamed stage of a layer, in the order the graph reads them, with the state the
/// decoding thread and the prefetch thread share. The lock orders the two: a release waits for
/// a read-ahead of the same segment to finish, and a read-ahead of a segment released meanwhile
/// is skipped, so a released segment never comes back.
#[derive(Debug)]
struct Segment {
    /// Ledger position of its layer.
    layer: usize,
    /// Its stage of the layer.
    end: StageEnd,
    ranges: Vec<Range<u64>>,
    n_bytes: u64,
    /// Whether it is wanted resident (loaded and not yet released).
    wanted: Mutex<bool>,
}

impl Segment {
    fn set_wanted(&self, wanted: bool) -> std::sync::MutexGuard<'_, bool> {
        let mut guard = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        *guard = wanted;
        guard
    }
}

/// Reads segments ahead on a background thread with `MADV_WILLNEED`, which allocates the
/// page-cache pages and queues the reads without waiting for them; the decoding thread's faults
/// then find the pages (waiting for any read still in flight). Measured on 2 cores
/// (docs/PERFORMANCE.md): 6-8% faster than advising on the decoding thread. `MADV_POPULATE_READ`
/// on this thread (mapping the pages as well) was 25-45% slower: it spends CPU that llama.cpp's
/// threads need.
#[derive(Debug)]
struct Prefetcher {
    jobs: Option<std::sync::mpsc::Sender<usize>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prefetcher {
    fn start(mapping: Arc<ModelMapping>, segments: Arc<[Segment]>) -> Prefetcher {
        let (tx, rx) = std::sync::mpsc::channel::<usize>();
        let thread = std::thread::Builder::new()
            .name("layer-prefetch".into())
            .spawn(move || {
                for i in rx {
                    let segment = &segments[i];
                    let wanted = segment.wanted.lock().unwrap_or_else(|e| e.into_inner());
                    if *wanted {
                        for r in &segment.ranges {
                            mapping.prefetch(r.clone());
                        }
                    }
                }
            })
            .ok();
        Prefetcher {
            jobs: thread.as_ref().map(|_| tx),
            thread,
        }
    }

    /// Queues segment `i`; false when there is no prefetch thread.
    fn send(&self, i: usize) -> bool {
        self.jobs.as_ref().is_some_and(|tx| tx.send(i).is_ok())
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Streams the layers a [`Placement`] does not pin through a window of `peak_bytes -
/// pinned_bytes` bytes, driven by llama.cpp's eval callback. The streamed layers' stages
/// (attention weights, then the rest; see [`StageEnd`]) form a cyclic sequence in execution
/// order. When the graph finishes a stage of a streamed layer (node `ffn_inp-L` or `l_out-L`),
/// its weights are released, and the following segments are read ahead while they fit in the
/// window, wrapping to the first layers for the next token. Releasing the attention weights
/// before the feed-forward ones are done lets the next layer's attention weights be read while
/// this layer's feed-forward runs, within the same bytes: the disk always has the next read
/// queued, even with a window of one layer.
#[derive(Debug)]
pub struct LayerStreamer {
    mapping: Arc<ModelMapping>,
    ledger: Ledger,
    placement: Placement,
    /// Position in the ledger of each block index.
    position: Vec<Option<usize>>,
    /// The streamed segments in execution order.
    segments: Arc<[Segment]>,
    /// Per ledger position: its segments' indices (empty for pinned layers).
    segments_of: Vec<Vec<usize>>,
    /// Whether each segment is counted loaded.
    loaded: Vec<bool>,
    /// Bytes of the loaded segments.
    loaded_bytes: u64,
    /// The streaming window in bytes.
    window_bytes: u64,
    /// The next segment to load.
    cursor: usize,
    counters: Arc<ArenaCounters>,
    /// `read_bytes` of the process when streaming started.
    disk_read_at_start: Option<u64>,
    prefetcher: Prefetcher,
    /// A weight was found away from its GGUF offset: the streamer stops dropping pages, since
    /// its file ranges no longer say where the weights are.
    refused: bool,
}

impl LayerStreamer {
    /// Starts streaming `ledger` as `placement` says over `mapping`: turns off fault
    /// read-around and huge-page mappings, releases every streamed layer, maps the pinned ones
    /// and the global tensors in full ([`ModelMapping::populate`]) and prefetches the first
    /// window.
    pub fn new(mapping: Arc<ModelMapping>, ledger: Ledger, placement: Placement) -> LayerStreamer {
        let max_index = ledger.layers.iter().map(|l| l.index).max().unwrap_or(0) as usize;
        let mut position = vec![None; max_index + 1];
        for (i, l) in ledger.layers.iter().enumerate() {
            position[l.index as usize] = Some(i);
        }
        let n = ledger.layers.len();
        let mut segments = Vec::new();
        let mut segments_of = vec![Vec::new(); n];
        for (i, layer) in ledger.layers.iter().enumerate() {
            if placement.tiers[i] != Tier::Streamed {
                continue;
            }
            for stage in &layer.stages {
                segments_of[i].push(segments.len());
                segments.push(Segment {
                    layer: i,
                    end: stage.end,
                    ranges: stage.ranges.clone(),
                    n_bytes: stage.n_bytes,
                    wanted: Mutex::new(false),
                });
            }
        }
        let segments: Arc<[Segment]> = segments.into();
        mapping.write_back();
        mapping.advise_streaming();
        let prefetcher = Prefetcher::start(Arc::clone(&mapping), Arc::clone(&segments));
        let window_bytes = placement.peak_bytes.saturating_sub(placement.pinned_bytes);
        let mut streamer = LayerStreamer {
            loaded: vec![false; segments.len()],
            mapping,
            ledger,
            placement,
            position,
            segments,
            segments_of,
            loaded_bytes: 0,
            window_bytes,
            cursor: 0,
            counters: Arc::new(ArenaCounters::default()),
            disk_read_at_start: disk_read_bytes(),
            prefetcher,
            refused: false,
        };
        streamer
            .counters
            .add_resident(streamer.placement.pinned_bytes);
        for i in 0..streamer.segments.len() {
            streamer.release(i);
        }
        for r in &streamer.ledger.global_ranges {
            streamer.mapping.populate(r.clone());
        }
        for (layer, tier) in streamer.ledger.layers.iter().zip(&streamer.placement.tiers) {
            if *tier == Tier::Resident {
                for r in &layer.ranges {
                    streamer.mapping.populate(r.clone());
                }
            }
        }
        streamer.fill(0);
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

    /// The streaming window in bytes.
    pub fn window_bytes(&self) -> u64 {
        self.window_bytes
    }

    /// Drops segment `i` from the process and the page cache.
    fn release(&mut self, i: usize) {
        if self.refused {
            return;
        }
        let segment = &self.segments[i];
        {
            let _guard = segment.set_wanted(false);
            for r in &segment.ranges {
                self.mapping.unmap(r.clone());
            }
            if std::mem::take(&mut self.loaded[i]) {
                self.loaded_bytes -= segment.n_bytes;
                self.counters.sub_resident(segment.n_bytes);
                self.counters
                    .bytes_released
                    .fetch_add(segment.n_bytes, Ordering::Relaxed);
            }
            for r in &segment.ranges {
                self.mapping.drop_cached(self.uncached_extent(r));
            }
        }
    }

    /// `range` widened over the neighbouring bytes nothing needs (up to [`FOLIO_REACH`] each
    /// way): no pinned layer, global tensor or loaded segment lies there. The page cache may
    /// hold the file in large folios, which `POSIX_FADV_DONTNEED` drops only when they lie wholly
    /// inside the range: without the widening, the folio straddling the border with the previous
    /// (already released) segment would stay cached for good.
    fn uncached_extent(&self, range: &Range<u64>) -> Range<u64> {
        let mut lo = range.start.saturating_sub(FOLIO_REACH);
        let mut hi = range.end.saturating_add(FOLIO_REACH);
        let mut fence = |r: &Range<u64>| {
            if r.end <= range.start {
                lo = lo.max(r.end);
            } else if r.start >= range.end {
                hi = hi.min(r.start);
            }
        };
        self.ledger.global_ranges.iter().for_each(&mut fence);
        for (layer, tier) in self.ledger.layers.iter().zip(&self.placement.tiers) {
            if *tier != Tier::Streamed {
                layer.ranges.iter().for_each(&mut fence);
            }
        }
        for (segment, loaded) in self.segments.iter().zip(&self.loaded) {
            if *loaded {
                segment.ranges.iter().for_each(&mut fence);
            }
        }
        lo..hi.min(self.mapping.len() as u64)
    }

    /// Loads the segments from the cursor on while they fit in the window. Those of layer
    /// `running` (the one the graph runs now or next) are advised here, so the graph's own
    /// faults cannot overtake the read-ahead; later ones go to the prefetch thread.
    fn fill(&mut self, running: usize) {
        let n = self.segments.len();
        for _ in 0..n {
            let i = self.cursor;
            let segment = &self.segments[i];
            if self.loaded[i] || self.loaded_bytes + segment.n_bytes > self.window_bytes {
                break;
            }
            drop(segment.set_wanted(true));
            if segment.layer == running || !self.prefetcher.send(i) {
                for r in &segment.ranges {
                    self.mapping.prefetch(r.clone());
                }
            }
            if self.segments_of[segment.layer].first() == Some(&i) {
                self.counters.layer_loads.fetch_add(1, Ordering::Relaxed);
            }
            self.loaded[i] = true;
            self.loaded_bytes += segment.n_bytes;
            self.counters.add_resident(segment.n_bytes);
            self.counters
                .bytes_prefetched
                .fetch_add(segment.n_bytes, Ordering::Relaxed);
            self.cursor = (i + 1) % n;
        }
    }
}

impl EvalObserver for LayerStreamer {
    fn wants_inputs(&mut self) -> bool {
        self.counters.passes.load(Ordering::Relaxed) == 0
    }

    /// Checks that each weight a node reads is where the GGUF offsets say: at the mapping's
    /// base plus the tensor's file offset.
    fn inputs(&mut self, _name: &str, inputs: &[TensorInput<'_>]) {
        for input in inputs {
            let Some(&offset) = self.ledger.tensor_offsets.get(input.name) else {
                continue;
            };
            self.counters
                .addresses_checked
                .fetch_add(1, Ordering::Relaxed);
            let expected = self.mapping.base_address() + offset as usize;
            if input.address != expected {
                let before = self
                    .counters
                    .addresses_wrong
                    .fetch_add(1, Ordering::Relaxed);
                if before == 0 {
                    tracing::error!(
                        tensor = input.name,
                        address = input.address,
                        expected,
                        "a weight is not where the GGUF offsets place it in the mapping; streaming stops releasing memory"
                    );
                }
                self.refused = true;
            }
        }
    }

    fn wants(&mut self, name: &str) -> bool {
        let Some((base, index)) = node_layer(name) else {
            return false;
        };
        match StageEnd::of_node(base) {
            Some(StageEnd::Layer) => true,
            // A split for the attention stage only where it lets a streamed layer go early.
            Some(StageEnd::Attention) => matches!(
                self.position.get(index as usize),
                Some(Some(i)) if self.segments_of[*i].len() > 1
            ),
            None => false,
        }
    }

    fn computed(&mut self, name: &str) {
        let Some((base, index)) = node_layer(name) else {
            return;
        };
        let (Some(end), Some(Some(i))) = (
            StageEnd::of_node(base),
            self.position.get(index as usize).copied(),
        ) else {
            return;
        };
        // Indexed (no collected list): this runs twice per layer per token.
        for k in 0..self.segments_of[i].len() {
            let s = self.segments_of[i][k];
            if self.segments[s].end <= end && self.loaded[s] {
                self.release(s);
            }
        }
        let n = self.ledger.layers.len();
        let running = if end == StageEnd::Layer {
            if self.placement.tiers[i] == Tier::Streamed {
                self.counters
                    .layer_evictions
                    .fetch_add(1, Ordering::Relaxed);
            }
            if i + 1 == n {
                self.counters.passes.fetch_add(1, Ordering::Relaxed);
                if let (Some(start), Some(now)) = (self.disk_read_at_start, disk_read_bytes()) {
                    self.counters
                        .disk_read_bytes
                        .store(now.saturating_sub(start), Ordering::Relaxed);
                }
            }
            (i + 1) % n
        } else {
            i
        };
        self.fill(running);
    }
}
