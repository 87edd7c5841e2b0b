//! CPU layer streaming on the real SmolLM2 model: a streaming load does not fault the file in,
//! greedy output with streaming equals the fully resident run token for token, and after a
//! decode only a window of streamed layers is resident.

mod common;
use common::model_path;

use std::sync::{Arc, Mutex};

use llama_core::arena::{LayerStreamer, Ledger, Placement, Tier};
use llama_core::ffi::{self, Batch, ModelMapping};
use llama_core::gguf::GgufModel;
use llama_core::{load_model, Context, ContextParams, Model, ModelParams, ProcessMemory};

/// The tests of this file take turns: the page cache is shared, so a test loading the model
/// resident would page in the layers another test checks are not in the cache.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The streaming flag is process-wide: tests that load models take turns.
static LOADS: Mutex<()> = Mutex::new(());

const N_TOKENS: usize = 32;
const PROMPT: &str = "The three primary colours are";

fn params() -> ModelParams {
    ModelParams {
        repack: false,
        ..ModelParams::default()
    }
}

fn ctx_params() -> ContextParams {
    ContextParams {
        n_ctx: 256,
        n_batch: 64,
        n_ubatch: 64,
        n_threads: 2,
        n_threads_batch: 2,
        ..ContextParams::default()
    }
}

fn greedy(ctx: &mut Context) -> Vec<i32> {
    let model = Arc::clone(ctx.model());
    let mut tokens = model.tokenize(PROMPT, true, false).unwrap();
    let mut batch = Batch::new(64);
    let (_, outcome) = ctx.decode_tokens(&mut batch, &tokens, 0, 0);
    assert_eq!(outcome, ffi::DecodeOutcome::Done);
    let mut out = Vec::new();
    for _ in 0..N_TOKENS {
        let logits = ctx.logits(-1).unwrap();
        let next = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap() as i32;
        out.push(next);
        let pos = tokens.len() as i32;
        tokens.push(next);
        let (_, outcome) = ctx.decode_tokens(&mut batch, &[next], pos, 0);
        assert_eq!(outcome, ffi::DecodeOutcome::Done);
    }
    out
}

/// A streaming load of the test model and the mapping it made.
fn streaming_load() -> (Arc<Model>, ModelMapping) {
    assert!(ffi::streaming_load_supported());
    let before = ffi::populate_cleared_count();
    let load = ffi::StreamingLoad::begin();
    let loaded = load_model(&model_path(), &params(), None);
    let maps = load.finish();
    let model = Arc::new(loaded.unwrap().0);
    assert_eq!(
        ffi::populate_cleared_count(),
        before + 1,
        "the interposer saw llama.cpp's MAP_POPULATE mapping"
    );
    let mapping = ModelMapping::of_model(&model, &maps).expect("the model's mapping is found");
    (model, mapping)
}

fn fraction(pages: (usize, usize)) -> f64 {
    pages.0 as f64 / pages.1.max(1) as f64
}

#[test]
fn streaming_load_does_not_fault_the_file_in() {
    let _serial = serial();
    let _turn = LOADS.lock().unwrap_or_else(|e| e.into_inner());
    let (_model, mapping) = streaming_load();
    let file_len = std::fs::metadata(model_path()).unwrap().len();
    assert_eq!(mapping.len() as u64, file_len);
    let resident = mapping.resident_pages(0..file_len);
    eprintln!(
        "after a streaming load: {} of {} pages of the mapping resident, RssFile {} KiB",
        resident.0,
        resident.1,
        ProcessMemory::current().rss_file / 1024
    );
    assert!(fraction(resident) < 0.10, "{resident:?}");
}

#[test]
fn streaming_output_equals_resident_and_keeps_a_window() {
    let _serial = serial();
    let _turn = LOADS.lock().unwrap_or_else(|e| e.into_inner());
    let resident_tokens = {
        let model = Arc::new(load_model(&model_path(), &params(), None).unwrap().0);
        greedy(&mut Context::new(model, &ctx_params()).unwrap())
    };

    let (model, mapping) = streaming_load();
    let ledger = Ledger::from_gguf(&GgufModel::open(&model_path()).unwrap()).unwrap();
    let layer_bytes = ledger.total_bytes() - ledger.global_bytes;
    let budget = ledger.global_bytes + layer_bytes / 2;
    let placement = Placement::plan(&ledger, budget).unwrap();
    assert!(placement.streams() && placement.window >= 1);
    assert!(placement.peak_bytes <= budget);
    let mapping = Arc::new(mapping);
    let streamer = LayerStreamer::new(Arc::clone(&mapping), ledger.clone(), placement.clone());
    let counters = streamer.counters();
    let mut ctx = Context::with_eval_observer(model, &ctx_params(), Box::new(streamer)).unwrap();
    let streamed_tokens = greedy(&mut ctx);
    assert_eq!(
        streamed_tokens, resident_tokens,
        "greedy output is unchanged"
    );

    let c = counters.snapshot();
    let n_streamed = placement
        .tiers
        .iter()
        .filter(|t| **t == Tier::Streamed)
        .count() as u64;
    // One prompt decode plus N_TOKENS single-token decodes, each releasing every streamed layer.
    assert_eq!(
        c.layer_evictions,
        n_streamed * (N_TOKENS as u64 + 1),
        "{c:?}"
    );
    assert!(c.peak_resident_bytes <= placement.peak_bytes, "{c:?}");
    // Every weight the graph read in the first pass was at the mapping's base plus its GGUF
    // offset: the ranges the streamer advises are the ones llama.cpp reads.
    assert!(
        c.addresses_checked >= ledger.layers.len() as u64 * 7,
        "{c:?}"
    );
    assert_eq!(c.addresses_wrong, 0, "{c:?}");

    // After the decode, residency: streamed layers were released from the process
    // (`/proc/self/pagemap`) and from the page cache (`mincore`), except the window read ahead
    // for the next token. Pages a release must keep (shared with a neighbouring tensor at a
    // range's edge) are allowed for: a few per layer.
    let page = 4096u64;
    let edge_pages = 8 * page;
    let (mut streamed_mapped, mut streamed_cached, mut n_streamed_layers) = (0u64, 0u64, 0u64);
    for (layer, tier) in ledger.layers.iter().zip(&placement.tiers) {
        let sum = |f: &dyn Fn(std::ops::Range<u64>) -> (usize, usize)| {
            layer
                .ranges
                .iter()
                .map(|r| f(r.clone()))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        };
        let mapped = sum(&|r| mapping.resident_pages(r));
        let cached = sum(&|r| mapping.cached_pages(r));
        eprintln!(
            "layer {:2} {:?}: mapped {:.2}, in page cache {:.2}",
            layer.index,
            tier,
            fraction(mapped),
            fraction(cached)
        );
        // Pinned layers are mapped in full when streaming starts (`ModelMapping::populate`)
        // and never released (the exact eviction count above shows it). The kernel could still
        // reclaim a page (these machines run DAMON with a `pageout` scheme), but a pinned
        // layer is read every token, so it stays hot. Before the mapping refused huge-page
        // mappings (`MADV_NOHUGEPAGE`), releasing the first streamed layer unmapped the whole
        // 2 MiB folio it shares with the last pinned one, which then stayed out between uses.
        if *tier == Tier::Resident {
            assert!(
                fraction(mapped) >= 0.9,
                "pinned layer {} is {:.2} mapped",
                layer.index,
                fraction(mapped)
            );
        }
        if *tier == Tier::Streamed {
            streamed_mapped += mapped.0 as u64 * page;
            streamed_cached += cached.0 as u64 * page;
            n_streamed_layers += 1;
        }
    }
    let bound = (placement.peak_bytes - placement.pinned_bytes) + n_streamed_layers * edge_pages;
    assert!(
        streamed_mapped <= bound,
        "{streamed_mapped} bytes of streamed layers mapped, bound {bound}"
    );
    // The page cache may also hold the kernel's readahead past the last page read: the
    // block device's window (`read_ahead_kb`, 128 KiB by default; 8 MiB on some machines).
    let readahead = readahead_window();
    assert!(
        streamed_cached <= bound + readahead,
        "{streamed_cached} bytes of streamed layers in the page cache, bound {bound}"
    );
    eprintln!(
        "counters {c:?}, RssFile {} KiB",
        ProcessMemory::current().rss_file / 1024
    );
}

#[test]
fn every_weight_is_where_its_gguf_offset_says() {
    let _serial = serial();
    let _turn = LOADS.lock().unwrap_or_else(|e| e.into_inner());
    let (_model, mapping) = streaming_load();
    let gguf = GgufModel::open(&model_path()).unwrap();
    let checked = mapping.check_tensor_addresses(gguf.tensors()).unwrap();
    assert!(
        checked >= gguf.tensors().len() - 1,
        "{checked} of {}",
        gguf.tensors().len()
    );
    // Offsets from another file's table do not match: the check refuses.
    let mut shifted = gguf.tensors().to_vec();
    for t in &mut shifted {
        t.file_offset += 4096;
    }
    assert!(mapping.check_tensor_addresses(&shifted).is_err());
}

#[test]
fn concurrent_loads_keep_their_own_mappings() {
    let _serial = serial();
    let _turn = LOADS.lock().unwrap_or_else(|e| e.into_inner());
    // One thread loads streaming, another plainly at the same time: only the first one's
    // mapping is recorded for it (and only it loses MAP_POPULATE).
    let before = ffi::populate_cleared_count();
    let plain = std::thread::spawn(|| {
        let load = ffi::StreamingLoad::begin();
        drop(load);
        let (m, _) = load_model(&model_path(), &params(), None).unwrap();
        m
    });
    let load = ffi::StreamingLoad::begin();
    let loaded = load_model(&model_path(), &params(), None).unwrap();
    let maps = load.finish();
    let plain = plain.join().unwrap();
    assert_eq!(maps.len(), 1, "{maps:?}");
    assert_eq!(ffi::populate_cleared_count(), before + 1);
    let model = Arc::new(loaded.0);
    let mapping = ModelMapping::of_model(&model, &maps).unwrap();
    // Advice over the whole file (header and all) only reaches what is still the model's.
    mapping.release(0..mapping.len() as u64);
    let tokens = greedy(&mut Context::new(model, &ctx_params()).unwrap());
    assert_eq!(tokens.len(), N_TOKENS);
    drop(plain);
}

/// The largest readahead window of the machine's block devices (`/sys/block/*/queue/read_ahead_kb`),
/// or the kernel's default of 128 KiB when none can be read.
fn readahead_window() -> u64 {
    std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let path = entry.ok()?.path().join("queue/read_ahead_kb");
            std::fs::read_to_string(path)
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .max()
        .map_or(128 << 10, |kib| kib << 10)
}
