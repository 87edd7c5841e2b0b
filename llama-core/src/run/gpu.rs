//! GPU layers: `-ngl N`, or with `--max-vram` as many as fit in it (and in the device's free
//! memory), sized by llama.cpp's own dry run. A build without a GPU backend, or a machine
//! without a GPU device, runs on the CPU with a warning when GPU layers were asked for.

use crate::arena::{gpu_layers_within, Ledger};
use crate::ffi::{ContextParams, ModelParams};
use crate::gguf::GgufModel;
use crate::memory_probe::{BufferSizes, MemoryProbe, ProbeError};

use super::{weight_params, RunSettings};

/// The GPU layers to use; notes for the user go to `notes`.
pub(super) fn gpu_layers(
    settings: &RunSettings,
    gguf: &GgufModel,
    ledger: Option<&Ledger>,
    ctx_params: &ContextParams,
    notes: &mut Vec<String>,
) -> i32 {
    let asked = settings.gpu_layers != 0 || settings.max_vram.is_some();
    if !asked {
        return 0;
    }
    let info = crate::SystemInfo::query();
    if info.gpu_backends.is_empty() {
        notes.push(
            "warning: this build has no GPU backend; ignoring --gpu-layers and --max-vram and running on the CPU (rebuild with --features cuda, metal or vulkan)".to_string(),
        );
        return 0;
    }
    let free = info
        .devices
        .iter()
        .filter(|d| d.kind == "gpu" || d.kind == "igpu")
        .map(|d| d.free_bytes)
        .max();
    let Some(free) = free else {
        notes.push("warning: no GPU device found; running on the CPU".to_string());
        return 0;
    };
    let Some(max_vram) = settings.max_vram else {
        return settings.gpu_layers;
    };
    let Some(ledger) = ledger else {
        notes.push(
            "warning: --max-vram needs a model whose layers can be described; running on the CPU"
                .to_string(),
        );
        return 0;
    };
    let budget = max_vram.min(free);
    // llama.cpp's own estimate of the device's buffers: a dry run (nothing allocated) with every
    // layer offloaded gives the device's compute buffer and its KV cache for all layers.
    let n_layers = ledger.layers.len().max(1) as u64;
    let dry_run = dry_run(settings, ledger.layers.len() as i32 + 1, ctx_params);
    let (reserve, kv_per_layer) = match dry_run {
        // A dry run reports the KV total only (not where it lives): per layer, it is the same.
        Ok(sizes) => (
            sizes.device.compute,
            (sizes.kv + sizes.device.kv) / n_layers,
        ),
        Err(err) => {
            notes.push(format!(
                "warning: could not size the GPU buffers ({err}); reserving 512 MiB for them"
            ));
            (
                512 << 20,
                kv_bytes_per_layer(settings, gguf, ctx_params.n_ctx),
            )
        }
    };
    let fit = gpu_layers_within(ledger, budget, kv_per_layer, reserve);
    let n = match settings.gpu_layers {
        0 => fit.n_gpu_layers as i32,
        asked if asked < 0 => fit.n_gpu_layers as i32,
        asked => asked.min(fit.n_gpu_layers as i32),
    };
    notes.push(format!(
        "--max-vram {}: offloading {n} of {} layers to the GPU ({} of VRAM free)",
        crate::ByteSize(max_vram),
        ledger.layers.len(),
        crate::ByteSize(free)
    ));
    n
}

/// Buffer sizes llama.cpp reports for `settings` with `n_gpu_layers` offloaded, from a dry run
/// that allocates nothing.
fn dry_run(
    settings: &RunSettings,
    n_gpu_layers: i32,
    ctx_params: &ContextParams,
) -> Result<BufferSizes, ProbeError> {
    let probe = MemoryProbe::new(
        &settings.model,
        &ModelParams {
            n_gpu_layers,
            ..weight_params(settings)
        },
    )?;
    probe.measure(ctx_params)
}

/// KV cache bytes one layer needs for `n_ctx` tokens (0 when the model's cache cannot be
/// described).
fn kv_bytes_per_layer(settings: &RunSettings, gguf: &GgufModel, n_ctx: u32) -> u64 {
    crate::ModelCacheSpec::from_gguf(gguf)
        .ok()
        .and_then(|spec| {
            let per_token = spec
                .kv_bytes_per_token(settings.type_k, settings.type_v)
                .ok()?;
            let n_layers = spec.layers.len().max(1) as u64;
            Some(per_token * u64::from(n_ctx) / n_layers)
        })
        .unwrap_or(0)
}
