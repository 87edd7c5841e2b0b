//! The model and context flags of the commands that drive a context themselves (`perplexity`,
//! `batched-bench`), named as llama.cpp's tools name them. They become [`RunOptions`], so the
//! settings go through the same checks and the same run path (`--max-mem` planning) as every
//! other command; each command adds its own `-c` and `-b` with its tool's defaults.

use std::path::PathBuf;

use clap::Args;
use llama_core::{ByteSize, FlashAttention};

use crate::error::CliError;
use crate::options::{RunOptions, Settings};

/// Model, memory and context flags.
#[derive(Debug, Clone, Args)]
pub struct ContextArgs {
    /// Path of the GGUF model file.
    #[arg(short = 'm', long = "model", value_name = "FILE")]
    pub model: Option<PathBuf>,

    /// Hugging Face repository (also -hf): REPO[:QUANT], from the cache or downloaded.
    #[arg(long = "hf-repo", value_name = "REPO[:QUANT]")]
    pub hf_repo: Option<String>,

    /// Physical batch size (also -ub) [default: 512].
    #[arg(long = "ubatch-size", value_name = "N")]
    pub ubatch_size: Option<u32>,

    /// Threads [default: the number of CPUs].
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<i32>,

    /// Layers to offload to the GPU (also -ngl) [default: 0].
    #[arg(long = "gpu-layers", visible_alias = "n-gpu-layers", value_name = "N")]
    pub gpu_layers: Option<i32>,

    /// Memory budget, e.g. 512M or 2G: the context is planned to fit it before anything is
    /// allocated.
    #[arg(long = "max-mem", value_name = "SIZE")]
    pub max_mem: Option<ByteSize>,

    /// Flash attention: auto, on or off [default: auto].
    #[arg(long = "flash-attn", value_name = "MODE", value_parser = ["auto", "on", "off"])]
    pub flash_attn: Option<String>,

    /// KV cache type for both K and V: f16, q8_0, q4_0, ... [default: f16].
    #[arg(long = "cache-type", value_name = "TYPE")]
    pub cache_type: Option<String>,

    /// KV cache type for K (also -ctk).
    #[arg(long = "cache-type-k", value_name = "TYPE")]
    pub cache_type_k: Option<String>,

    /// KV cache type for V (also -ctv).
    #[arg(long = "cache-type-v", value_name = "TYPE")]
    pub cache_type_v: Option<String>,

    /// Keep the weights in the mapped file: no repacking (also -nr).
    #[arg(long = "no-repack")]
    pub no_repack: bool,

    /// Let weights go to the AMX buffer type on CPUs with AMX (llama.cpp #20824).
    #[arg(long = "amx")]
    pub amx: bool,

    /// Apply this LoRA adapter at full scale (repeatable).
    #[arg(long = "lora", value_name = "FILE")]
    pub lora: Vec<PathBuf>,

    /// Apply this LoRA adapter at this scale (repeatable).
    #[arg(long = "lora-scaled", value_names = ["FILE", "SCALE"], num_args = 2)]
    pub lora_scaled: Vec<String>,
}

impl ContextArgs {
    /// The run options these flags and the command's context and batch sizes stand for.
    pub fn run_options(&self, ctx_size: u32, batch_size: u32) -> RunOptions {
        RunOptions {
            model: self.model.clone(),
            hf_repo: self.hf_repo.clone(),
            ctx_size: Some(ctx_size),
            batch_size: Some(batch_size),
            ubatch_size: self.ubatch_size,
            threads: self.threads,
            gpu_layers: self.gpu_layers,
            max_mem: self.max_mem,
            flash_attn: self.flash_attn.as_deref().map(|m| match m {
                "on" => FlashAttention::On,
                "off" => FlashAttention::Off,
                _ => FlashAttention::Auto,
            }),
            cache_type: self.cache_type.clone(),
            cache_type_k: self.cache_type_k.clone(),
            cache_type_v: self.cache_type_v.clone(),
            no_repack: self.no_repack.then_some(true),
            amx: self.amx.then_some(true),
            lora: (!self.lora.is_empty()).then(|| self.lora.clone()),
            lora_scaled: (!self.lora_scaled.is_empty()).then(|| self.lora_scaled.clone()),
            ..RunOptions::default()
        }
    }

    /// The checked settings, with `-hf` resolved to a file.
    pub fn settings(&self, ctx_size: u32, batch_size: u32) -> Result<Settings, CliError> {
        let settings = self
            .run_options(ctx_size, batch_size)
            .over(RunOptions::defaults())
            .resolve()?;
        if settings.model.is_none() && settings.hf_repo.is_none() {
            return Err(CliError::NoModel);
        }
        crate::model_source::resolved(&settings)
    }
}
