//! The dry run's sizes come from llama.cpp's structured memory breakdown. Checked here against
//! what a real (allocating) load and context report, and against llama.cpp's own log lines
//! (rounded to 0.01 MiB), on the test model and a generated one.

mod common;

use std::sync::{Arc, Mutex};

use llama_core::gguf::synthetic::SyntheticModel;
use llama_core::gguf::GgmlType;
use llama_core::memory_probe::{output_buffer_bytes, MemoryProbe};
use llama_core::{Backend, Context, ContextParams, Model, ModelParams};

fn params(n_ctx: u32) -> ContextParams {
    ContextParams {
        n_ctx,
        n_outputs_max: 1,
        n_threads: 1,
        n_threads_batch: 1,
        ..ContextParams::default()
    }
}

/// The MiB figure after `marker` in a llama.cpp log line.
fn mib_after(line: &str, marker: &str) -> Option<f64> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn the_dry_run_reports_what_a_real_context_allocates() {
    let dir = tempfile::tempdir().unwrap();
    let synthetic = dir.path().join("llama-q8_0.gguf");
    SyntheticModel::llama(GgmlType::Q8_0)
        .write_to(&synthetic)
        .unwrap();
    for path in [common::model_path(), synthetic] {
        let probe = MemoryProbe::new(&path, &ModelParams::default()).unwrap();
        let model = Arc::new(Model::load_unchecked(&path, &ModelParams::default(), None).unwrap());
        for n_ctx in [256u32, 2048] {
            let dry = probe.measure(&params(n_ctx)).unwrap();
            let lines = Arc::new(Mutex::new(Vec::<String>::new()));
            let sink = lines.clone();
            let me = std::thread::current().id();
            let tap = Backend::tap_log(move |line| {
                if std::thread::current().id() == me {
                    sink.lock().unwrap().push(line.to_string());
                }
            });
            let ctx = Context::new(model.clone(), &params(n_ctx)).unwrap();
            drop(tap);
            let real = ctx.memory_breakdown();
            let kv: u64 = real.iter().map(|b| b.context).sum();
            let compute: u64 = real.iter().map(|b| b.compute).sum();
            assert_eq!(dry.kv, kv, "{} ctx {n_ctx}: KV", path.display());
            assert_eq!(
                dry.compute,
                compute,
                "{} ctx {n_ctx}: compute",
                path.display()
            );
            // llama.cpp's log says the same, to its 0.01 MiB.
            let lines = lines.lock().unwrap();
            let logged =
                |marker: &str| -> f64 { lines.iter().filter_map(|l| mib_after(l, marker)).sum() };
            let mib = |b: u64| b as f64 / 1048576.0;
            assert!(
                (logged("KV buffer size =") - mib(kv)).abs() < 0.011,
                "{lines:?}"
            );
            assert!(
                (logged("compute buffer size =") - mib(compute)).abs() < 0.011,
                "{lines:?}"
            );
            assert!(
                (logged("output buffer size =")
                    - mib(output_buffer_bytes(model.n_vocab(), &params(n_ctx))))
                .abs()
                    < 0.011,
                "{lines:?}"
            );
        }
    }
}
