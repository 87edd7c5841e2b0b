//! The run options shared by `prompt` and `chat`: one struct that is both the command-line flags
//! (clap) and the config file's keys (serde), so a key is spelled the same in both places.
//! Precedence: flag > config file > built-in default.

use std::path::PathBuf;

use clap::Args;
use llama_core::{ByteSize, FlashAttention, KvCacheType, SamplingParams};
use serde::{Deserialize, Serialize};

/// Options for running a model. Every field is optional so that flags and config files can be
/// layered; [`RunOptions::resolve`] fills the defaults.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RunOptions {
    /// Path of the GGUF model file.
    #[arg(short = 'm', long = "model", value_name = "FILE")]
    pub model: Option<PathBuf>,

    /// Hugging Face repository instead of -m (also -hf): REPO[:QUANT], from the cache or
    /// downloaded into it (llama.cpp's flag).
    #[arg(long = "hf-repo", value_name = "REPO[:QUANT]")]
    pub hf_repo: Option<String>,

    /// Context size in tokens (0: the model's training context) [default: 4096].
    #[arg(short = 'c', long = "ctx-size", value_name = "N")]
    pub ctx_size: Option<u32>,

    /// Logical batch size for prompt processing [default: 2048].
    #[arg(short = 'b', long = "batch-size", value_name = "N")]
    pub batch_size: Option<u32>,

    /// Physical batch size (also -ub) [default: 512].
    #[arg(long = "ubatch-size", value_name = "N")]
    pub ubatch_size: Option<u32>,

    /// Threads for generation and prompt processing [default: the number of CPUs].
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<i32>,

    /// Layers to offload to the GPU (also -ngl); ignored with a warning by CPU-only builds.
    #[arg(long = "gpu-layers", visible_alias = "n-gpu-layers", value_name = "N")]
    pub gpu_layers: Option<i32>,

    /// Memory budget, e.g. 512M or 2G (parsed now; enforced by the planner).
    #[arg(long = "max-mem", value_name = "SIZE")]
    pub max_mem: Option<ByteSize>,

    /// GPU memory budget, e.g. 6G: offload as many layers as fit (with their KV cache and the
    /// device's compute buffer); needs a GPU build and device, else runs on the CPU with a
    /// warning.
    #[arg(long = "max-vram", value_name = "SIZE")]
    pub max_vram: Option<ByteSize>,

    /// Refuse instead of degrading when the request does not fit --max-mem.
    #[arg(long = "strict", num_args = 0, default_missing_value = "true")]
    pub strict: Option<bool>,

    /// When a conversation fills the planned context: `stop` ends the answer early (finish
    /// reason "length"), `reject` refuses a turn whose prompt plus --n-predict would not fit
    /// [default: stop].
    #[arg(long = "on-full", value_name = "POLICY", value_parser = ["stop", "reject"])]
    pub on_full: Option<String>,

    /// KV cache type for both K and V: f16, q8_0, q4_0, ... [default: f16].
    #[arg(long = "cache-type", value_name = "TYPE")]
    pub cache_type: Option<String>,

    /// KV cache type for K (also -ctk) [default: f16].
    #[arg(long = "cache-type-k", value_name = "TYPE")]
    pub cache_type_k: Option<String>,

    /// KV cache type for V (also -ctv; a quantised V needs flash attention) [default: f16].
    #[arg(long = "cache-type-v", value_name = "TYPE")]
    pub cache_type_v: Option<String>,

    /// Flash attention: auto, on or off [default: auto].
    #[arg(long = "flash-attn", value_name = "MODE", value_parser = parse_flash_attention)]
    pub flash_attn: Option<FlashAttention>,

    /// Layer streaming from the mapped file: auto (only when the weights do not fit), on or
    /// off [default: auto].
    #[arg(long = "stream", value_name = "MODE", value_parser = parse_stream_mode)]
    pub stream: Option<llama_core::arena::StreamMode>,

    /// Keep the weights in the mapped file: no repacking into the CPU backend's extra buffer
    /// types (also -nr; llama.cpp's --no-repack). Costs prompt speed on the types those
    /// kernels speed up (Q4_0, Q4_K, IQ4_NL, Q8_0).
    #[arg(long = "no-repack", num_args = 0, default_missing_value = "true")]
    pub no_repack: Option<bool>,

    /// Let weights go to the AMX buffer type on CPUs with AMX (off by default: llama.cpp's AMX
    /// kernels crash on some of them, llama.cpp #20824).
    #[arg(long = "amx", num_args = 0, default_missing_value = "true")]
    pub amx: Option<bool>,

    /// Tokens to generate; -1 runs until the model stops or the context fills [default: -1].
    #[arg(
        short = 'n',
        long = "n-predict",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub n_predict: Option<i64>,

    /// Temperature; 0 is greedy [default: 0.8].
    #[arg(long = "temp", value_name = "T", allow_negative_numbers = true)]
    pub temp: Option<f32>,

    /// Top-k sampling; 0 disables [default: 40].
    #[arg(long = "top-k", value_name = "K", allow_negative_numbers = true)]
    pub top_k: Option<i32>,

    /// Top-p (nucleus) sampling; 1 disables [default: 0.95].
    #[arg(long = "top-p", value_name = "P", allow_negative_numbers = true)]
    pub top_p: Option<f32>,

    /// Min-p sampling; 0 disables [default: 0.05].
    #[arg(long = "min-p", value_name = "P", allow_negative_numbers = true)]
    pub min_p: Option<f32>,

    /// Locally typical sampling; 1 disables [default: 1.0].
    #[arg(long = "typical", value_name = "P", allow_negative_numbers = true)]
    pub typical: Option<f32>,

    /// Penalty for repeated tokens; 1 disables [default: 1.0].
    #[arg(
        long = "repeat-penalty",
        value_name = "X",
        allow_negative_numbers = true
    )]
    pub repeat_penalty: Option<f32>,

    /// Recent tokens the penalties consider; 0 disables, -1 the context size [default: 64].
    #[arg(
        long = "repeat-last-n",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub repeat_last_n: Option<i32>,

    /// Presence penalty; 0 disables [default: 0].
    #[arg(
        long = "presence-penalty",
        value_name = "X",
        allow_negative_numbers = true
    )]
    pub presence_penalty: Option<f32>,

    /// Frequency penalty; 0 disables [default: 0].
    #[arg(
        long = "frequency-penalty",
        value_name = "X",
        allow_negative_numbers = true
    )]
    pub frequency_penalty: Option<f32>,

    /// Random seed; -1 picks one at random [default: -1].
    #[arg(long = "seed", value_name = "N", allow_negative_numbers = true)]
    pub seed: Option<i64>,

    /// Keep generating past the model's end-of-generation tokens (as llama.cpp's --ignore-eos).
    #[arg(long = "ignore-eos", num_args = 0, default_missing_value = "true")]
    pub ignore_eos: Option<bool>,

    /// Stop generating before this text (repeatable).
    #[arg(long = "stop", value_name = "TEXT")]
    pub stop: Option<Vec<String>>,

    /// System prompt.
    #[arg(short = 's', long = "system", value_name = "TEXT")]
    pub system: Option<String>,

    /// Use this built-in chat template instead of the model's (e.g. chatml, llama3).
    #[arg(long = "chat-template", value_name = "NAME")]
    pub chat_template: Option<String>,

    /// Print load time, time to first token and tokens/s to stderr.
    #[arg(long = "stats", num_args = 0, default_missing_value = "true")]
    pub stats: Option<bool>,
}

fn parse_stream_mode(text: &str) -> Result<llama_core::arena::StreamMode, String> {
    text.parse()
}

fn parse_flash_attention(text: &str) -> Result<FlashAttention, String> {
    match text {
        "auto" => Ok(FlashAttention::Auto),
        "on" | "1" | "true" => Ok(FlashAttention::On),
        "off" | "0" | "false" => Ok(FlashAttention::Off),
        _ => Err("expected auto, on or off".to_string()),
    }
}

/// Layers `Option` fields: the first `Some` wins.
macro_rules! layer {
    ($high:expr, $low:expr, $($field:ident),* $(,)?) => {
        RunOptions { $($field: $high.$field.or($low.$field),)* }
    };
}

impl RunOptions {
    /// Fills every field this one leaves empty from `lower` (this one takes precedence).
    pub fn over(self, lower: RunOptions) -> RunOptions {
        // -m and -hf name one thing: the layer that names either wins for both.
        let (model, hf_repo) = match self.model.is_some() || self.hf_repo.is_some() {
            true => (self.model.clone(), self.hf_repo.clone()),
            false => (lower.model.clone(), lower.hf_repo.clone()),
        };
        let merged = layer!(
            self,
            lower,
            model,
            hf_repo,
            ctx_size,
            batch_size,
            ubatch_size,
            threads,
            gpu_layers,
            max_mem,
            max_vram,
            strict,
            on_full,
            cache_type,
            cache_type_k,
            cache_type_v,
            flash_attn,
            stream,
            no_repack,
            amx,
            n_predict,
            temp,
            top_k,
            top_p,
            min_p,
            typical,
            repeat_penalty,
            repeat_last_n,
            presence_penalty,
            frequency_penalty,
            seed,
            ignore_eos,
            stop,
            system,
            chat_template,
            stats,
        );
        RunOptions {
            model,
            hf_repo,
            ..merged
        }
    }

    /// The effective settings: this layer over the built-in defaults, checked.
    pub fn resolve(self) -> Result<Settings, crate::error::CliError> {
        let d = SamplingParams::default();
        let seed = match self.seed.unwrap_or(-1) {
            -1 => None,
            s if (0..=u32::MAX as i64).contains(&s) => Some(s as u32),
            s => {
                return Err(llama_core::ParamError {
                    name: "seed",
                    value: s.to_string(),
                    expected: "-1 (random) or an integer from 0 to 4294967295",
                }
                .into())
            }
        };
        let sampling = SamplingParams {
            temperature: self.temp.unwrap_or(d.temperature),
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
            typical_p: self.typical.unwrap_or(d.typical_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(d.repeat_penalty),
            repeat_last_n: self.repeat_last_n.unwrap_or(d.repeat_last_n),
            frequency_penalty: self.frequency_penalty.unwrap_or(d.frequency_penalty),
            presence_penalty: self.presence_penalty.unwrap_or(d.presence_penalty),
            seed: seed.unwrap_or_else(random_seed),
        };
        sampling.validate()?;
        let n_predict = match self.n_predict.unwrap_or(-1) {
            n if n < -1 => {
                return Err(llama_core::ParamError {
                    name: "n-predict",
                    value: n.to_string(),
                    expected: "-1 (no limit) or a number of tokens >= 0",
                }
                .into())
            }
            -1 => None,
            n => Some(n as usize),
        };
        let positive = |name: &'static str, value: u32| -> Result<u32, crate::error::CliError> {
            if value == 0 {
                return Err(llama_core::ParamError {
                    name,
                    value: "0".into(),
                    expected: "a positive number",
                }
                .into());
            }
            Ok(value)
        };
        let threads = self.threads.unwrap_or_else(default_threads);
        if threads < 1 {
            return Err(llama_core::ParamError {
                name: "threads",
                value: threads.to_string(),
                expected: "a positive number of threads",
            }
            .into());
        }
        let cache_type = |name: &'static str,
                          value: Option<&String>|
         -> Result<KvCacheType, crate::error::CliError> {
            match value {
                None => Ok(KvCacheType::F16),
                Some(v) => KvCacheType::from_name(v).ok_or_else(|| {
                    llama_core::ParamError {
                        name,
                        value: v.clone(),
                        expected: "one of f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1",
                    }
                    .into()
                }),
            }
        };
        let type_k = cache_type(
            "cache-type-k",
            self.cache_type_k.as_ref().or(self.cache_type.as_ref()),
        )?;
        let type_v = cache_type(
            "cache-type-v",
            self.cache_type_v.as_ref().or(self.cache_type.as_ref()),
        )?;
        let on_full = match self.on_full.as_deref() {
            None | Some("stop") => OnFull::Stop,
            Some("reject") => OnFull::Reject,
            Some(other) => {
                return Err(llama_core::ParamError {
                    name: "on-full",
                    value: other.to_string(),
                    expected: "stop or reject",
                }
                .into())
            }
        };
        Ok(Settings {
            strict: self.strict.unwrap_or(false),
            on_full,
            type_k,
            type_v,
            model: self.model,
            hf_repo: self.hf_repo,
            ctx_size: self.ctx_size.unwrap_or(4096),
            batch_size: positive("batch-size", self.batch_size.unwrap_or(2048))?,
            ubatch_size: positive("ubatch-size", self.ubatch_size.unwrap_or(512))?,
            threads,
            gpu_layers: self.gpu_layers.unwrap_or(0),
            max_mem: self.max_mem,
            max_vram: self.max_vram,
            flash_attn: self.flash_attn.unwrap_or_default(),
            stream: self.stream.unwrap_or_default(),
            repack: !self.no_repack.unwrap_or(false),
            amx: self.amx.unwrap_or(false),
            n_predict,
            seed_was_random: seed.is_none(),
            sampling,
            stop: self.stop.unwrap_or_default(),
            ignore_eos: self.ignore_eos.unwrap_or(false),
            system: self.system,
            chat_template: self.chat_template,
            stats: self.stats.unwrap_or(false),
        })
    }
}

/// What happens when a conversation reaches the planned context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFull {
    /// End the answer early with finish reason "length".
    Stop,
    /// Refuse a turn whose prompt plus --n-predict would not fit.
    Reject,
}

/// The effective settings of a run, after layering and defaults.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Refuse instead of degrading.
    pub strict: bool,
    /// Policy at the planned capacity.
    pub on_full: OnFull,
    /// K cache type.
    pub type_k: KvCacheType,
    /// V cache type.
    pub type_v: KvCacheType,
    /// Model file.
    pub model: Option<PathBuf>,
    /// Hugging Face repository (`REPO[:QUANT]`), resolved to a file in the cache.
    pub hf_repo: Option<String>,
    /// Context size (0: the model's).
    pub ctx_size: u32,
    /// Logical batch size.
    pub batch_size: u32,
    /// Physical batch size.
    pub ubatch_size: u32,
    /// Threads.
    pub threads: i32,
    /// GPU layers.
    pub gpu_layers: i32,
    /// Memory budget.
    pub max_mem: Option<ByteSize>,
    /// GPU memory budget.
    pub max_vram: Option<ByteSize>,
    /// Flash attention.
    pub flash_attn: FlashAttention,
    /// Layer streaming.
    pub stream: llama_core::arena::StreamMode,
    /// Weights may be repacked into the CPU backend's extra buffer types.
    pub repack: bool,
    /// The AMX buffer type is offered too.
    pub amx: bool,
    /// Token limit.
    pub n_predict: Option<usize>,
    /// Sampling.
    pub sampling: SamplingParams,
    /// Whether the seed was drawn at random.
    pub seed_was_random: bool,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Generate past end-of-generation tokens.
    pub ignore_eos: bool,
    /// System prompt.
    pub system: Option<String>,
    /// Chat template override.
    pub chat_template: Option<String>,
    /// Print figures.
    pub stats: bool,
}

/// llama.cpp's default: one thread per available CPU.
pub fn default_threads() -> i32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as i32)
        .unwrap_or(4)
}

fn random_seed() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_config_and_config_over_defaults() {
        let flags = RunOptions {
            temp: Some(0.1),
            ..Default::default()
        };
        let file = RunOptions {
            temp: Some(0.5),
            top_k: Some(7),
            ..Default::default()
        };
        let s = flags.over(file).resolve().unwrap();
        assert_eq!(s.sampling.temperature, 0.1);
        assert_eq!(s.sampling.top_k, 7);
        assert_eq!(s.sampling.top_p, 0.95);
        assert_eq!(s.ctx_size, 4096);
    }

    #[test]
    fn bad_values_are_named() {
        let err = RunOptions {
            top_p: Some(1.5),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("top-p"), "{err}");
        let err = RunOptions {
            seed: Some(-5),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("seed"), "{err}");
    }
}
