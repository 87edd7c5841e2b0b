//! Where the weights go on the CPU, read from what llama.cpp reports about the loaded buffers
//! (its structured memory breakdown), not from our own flags:
//!
//! - by default no weight lands in an AMX buffer (its kernels crash, llama.cpp #20824);
//! - CPU_REPACK stays in use where it applies, and `--no-repack` keeps every weight in the
//!   mapped file;
//! - the mechanism that withholds a buffer type from llama.cpp works on any machine: a machine
//!   without AMX does not register the AMX buffer type at all, so it is tested on CPU_REPACK;
//! - the dry run counts repacked weights only when repacking happens.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use llama_core::ffi::buffers::{
    offered_extra_buffer_types, registered_extra_buffer_types, AMX_BUFFER_TYPE, REPACK_BUFFER_TYPE,
};
use llama_core::gguf::synthetic::SyntheticModel;
use llama_core::gguf::GgmlType;
use llama_core::memory_probe::MemoryProbe;
use llama_core::{BufferUsage, Context, ContextParams, Model, ModelParams};

/// A generated llama model with Q4_0 matrices (the type CPU_REPACK takes on x86 with AVX2).
fn q4_0_model(dir: &Path) -> PathBuf {
    let path = dir.join("llama-q4_0.gguf");
    SyntheticModel::llama(GgmlType::Q4_0)
        .write_to(&path)
        .unwrap();
    path
}

/// The offer of extra buffer types is process-wide while a load runs: the tests of this file
/// (which load and then read it) take turns.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The buffer types holding weights after a real load of `path` with `params`.
fn weight_buffers(path: &Path, params: &ModelParams) -> Vec<BufferUsage> {
    let model = Arc::new(Model::load_unchecked(path, params, None).unwrap());
    let ctx = Context::new(
        model,
        &ContextParams {
            n_ctx: 256,
            n_threads: 1,
            n_threads_batch: 1,
            ..ContextParams::default()
        },
    )
    .unwrap();
    ctx.memory_breakdown()
        .into_iter()
        .filter(|b| b.model > 0)
        .collect()
}

fn bytes_in(buffers: &[BufferUsage], name: &str) -> u64 {
    buffers
        .iter()
        .filter(|b| b.name == name)
        .map(|b| b.model)
        .sum()
}

/// Whether CPU_REPACK has kernels for Q4_0 on this machine; prints a skip line when not.
fn repack_applies() -> bool {
    let registered = registered_extra_buffer_types();
    let applies =
        registered.iter().any(|n| n == REPACK_BUFFER_TYPE) && std::is_x86_feature_detected!("avx2");
    if !applies {
        eprintln!(
            "skipped: CPU_REPACK has no Q4_0 kernels here (registered: {registered:?}, AVX2: {})",
            std::is_x86_feature_detected!("avx2")
        );
    }
    applies
}

#[test]
fn no_weight_lands_in_an_amx_buffer_by_default() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let registered = registered_extra_buffer_types();
    if llama_core::ffi::cpu_has_amx() && llama_core::ffi::buffers::amx_compiled() {
        // The case the default exists for: the AMX buffer type is there and would be used.
        eprintln!("this CPU has AMX and the kernels are built in; registered: {registered:?}");
    }
    for path in [common::model_path(), q4_0_model(dir.path())] {
        let buffers = weight_buffers(&path, &ModelParams::default());
        assert_eq!(
            bytes_in(&buffers, AMX_BUFFER_TYPE),
            0,
            "{}: {buffers:?}",
            path.display()
        );
        assert!(
            !offered_extra_buffer_types().contains(&AMX_BUFFER_TYPE.to_string()),
            "AMX offered to a default load"
        );
        let total: u64 = buffers.iter().map(|b| b.model).sum();
        assert!(total > 0, "{}: no weights reported", path.display());
    }
}

#[test]
fn amx_is_offered_only_when_asked_for() {
    let _serial = serial();
    let registered = registered_extra_buffer_types();
    let dir = tempfile::tempdir().unwrap();
    let path = q4_0_model(dir.path());
    let buffers = weight_buffers(
        &path,
        &ModelParams {
            amx: true,
            ..ModelParams::default()
        },
    );
    let offered = offered_extra_buffer_types();
    // Everything registered is offered with the opt-in; AMX only where it is registered.
    for name in &registered {
        assert!(offered.contains(name), "{name} not offered: {offered:?}");
    }
    if !registered.iter().any(|n| n == AMX_BUFFER_TYPE) {
        eprintln!(
            "this machine registers no AMX buffer type; checked the opt-in offers {offered:?}"
        );
        assert_eq!(bytes_in(&buffers, AMX_BUFFER_TYPE), 0);
    }
}

#[test]
fn cpu_repack_stays_in_use_where_it_applies() {
    let _serial = serial();
    if !repack_applies() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let buffers = weight_buffers(&q4_0_model(dir.path()), &ModelParams::default());
    assert!(
        bytes_in(&buffers, REPACK_BUFFER_TYPE) > 0,
        "Q4_0 weights not repacked: {buffers:?}"
    );
}

#[test]
fn a_withheld_buffer_type_gets_no_weights_and_comes_back() {
    let _serial = serial();
    if !repack_applies() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = q4_0_model(dir.path());
    let withheld = weight_buffers(
        &path,
        &ModelParams {
            excluded_buffer_types: vec![REPACK_BUFFER_TYPE.to_string()],
            ..ModelParams::default()
        },
    );
    assert_eq!(bytes_in(&withheld, REPACK_BUFFER_TYPE), 0, "{withheld:?}");
    assert!(
        withheld.iter().all(|b| !b.is_extra_cpu_buffer()),
        "{withheld:?}"
    );
    // The offer is rewritten per load: the next default load uses CPU_REPACK again.
    let again = weight_buffers(&path, &ModelParams::default());
    assert!(bytes_in(&again, REPACK_BUFFER_TYPE) > 0, "{again:?}");
}

#[test]
fn no_repack_keeps_every_weight_in_the_mapped_file() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    for path in [common::model_path(), q4_0_model(dir.path())] {
        let buffers = weight_buffers(
            &path,
            &ModelParams {
                repack: false,
                ..ModelParams::default()
            },
        );
        assert!(
            buffers.iter().all(|b| b.name == "CPU_Mapped"),
            "{}: {buffers:?}",
            path.display()
        );
    }
}

#[test]
fn the_dry_run_counts_repacked_weights_only_when_repacking() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = q4_0_model(dir.path());
    let plain = MemoryProbe::new(
        &path,
        &ModelParams {
            repack: false,
            ..ModelParams::default()
        },
    )
    .unwrap();
    assert_eq!(plain.repacked_bytes(), 0);
    if !repack_applies() {
        return;
    }
    let probe = MemoryProbe::new(&path, &ModelParams::default()).unwrap();
    let real = weight_buffers(&path, &ModelParams::default());
    let repacked: u64 = real
        .iter()
        .filter(|b| b.is_extra_cpu_buffer())
        .map(|b| b.model)
        .sum();
    assert!(repacked > 0);
    assert_eq!(
        probe.repacked_bytes(),
        repacked,
        "dry run vs load: {real:?}"
    );
}
