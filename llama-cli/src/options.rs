//! The run options every model-running command shares, declared once each ([`option_group!`]):
//! the flag, the config-file key, the default and `--print-config` come from one declaration.
//! Precedence: flag > config file > built-in default.

use std::path::PathBuf;

use llama_core::{ByteSize, FlashAttention, KvCacheType, SamplingParams};
use serde::Serialize;

use crate::option_group::option_group;

option_group! {
    /// Options for running a model. Every field is optional so that flags and config files can
    /// be layered; [`RunOptions::resolve`] fills the defaults and checks the values.
    pub struct RunOptions exclusive(model, hf_repo) {
        /// Path of the GGUF model file.
        #[arg(short = 'm', long = "model", value_name = "FILE")]
        model: PathBuf = None,

        /// Hugging Face repository instead of -m (also -hf): REPO[:QUANT], from the cache or
        /// downloaded into it (llama.cpp's flag).
        #[arg(long = "hf-repo", value_name = "REPO[:QUANT]")]
        hf_repo: String = None,

        /// Context size in tokens (0: the model's training context).
        #[arg(short = 'c', long = "ctx-size", value_name = "N")]
        ctx_size: u32 = Some(4096),

        /// Logical batch size for prompt processing.
        #[arg(short = 'b', long = "batch-size", value_name = "N")]
        batch_size: u32 = Some(2048),

        /// Physical batch size (also -ub).
        #[arg(long = "ubatch-size", value_name = "N")]
        ubatch_size: u32 = Some(512),

        /// Threads for generation (the default is the number of physical cores, as llama.cpp's).
        #[arg(short = 't', long = "threads", value_name = "N")]
        threads: i32 = Some(default_threads()),

        /// Threads for prompt processing (also -tb; default: --threads).
        #[arg(long = "threads-batch", value_name = "N")]
        threads_batch: i32 = None,

        /// Lock the model's pages in RAM so they are never swapped out (llama.cpp's --mlock).
        #[arg(long = "mlock", num_args = 0, default_missing_value = "true")]
        mlock: bool = Some(false),

        /// Read the model into memory instead of mapping the file (llama.cpp's --no-mmap): the
        /// weights are then anonymous memory, and layers cannot be streamed.
        #[arg(long = "no-mmap", num_args = 0, default_missing_value = "true")]
        no_mmap: bool = Some(false),

        /// Layers to offload to the GPU (also -ngl); ignored with a warning by CPU-only builds.
        #[arg(long = "gpu-layers", visible_alias = "n-gpu-layers", value_name = "N")]
        gpu_layers: i32 = Some(0),

        /// Memory budget, e.g. 512M or 2G: the planner fits the run in it before anything is
        /// allocated.
        #[arg(long = "max-mem", value_name = "SIZE")]
        max_mem: ByteSize = None,

        /// GPU memory budget, e.g. 6G: offload as many layers as fit (with their KV cache and
        /// the device's compute buffer); needs a GPU build and device, else runs on the CPU
        /// with a warning.
        #[arg(long = "max-vram", value_name = "SIZE")]
        max_vram: ByteSize = None,

        /// Refuse instead of degrading when the request does not fit --max-mem.
        #[arg(long = "strict", num_args = 0, default_missing_value = "true")]
        strict: bool = Some(false),

        /// When a conversation fills the planned context: `stop` ends the answer early (finish
        /// reason "length"), `reject` refuses a turn whose prompt plus --n-predict would not
        /// fit.
        #[arg(long = "on-full", value_name = "POLICY", value_parser = ["stop", "reject"])]
        on_full: String = Some("stop".to_string()),

        /// KV cache type for both K and V: f16, q8_0, q4_0, ... (f16 when not given).
        #[arg(long = "cache-type", value_name = "TYPE")]
        cache_type: String = None,

        /// KV cache type for K (also -ctk; default: --cache-type, else f16).
        #[arg(long = "cache-type-k", value_name = "TYPE")]
        cache_type_k: String = None,

        /// KV cache type for V (also -ctv; a quantised V needs flash attention; default:
        /// --cache-type, else f16).
        #[arg(long = "cache-type-v", value_name = "TYPE")]
        cache_type_v: String = None,

        /// Flash attention: auto, on or off.
        #[arg(long = "flash-attn", value_name = "MODE", value_parser = parse_flash_attention)]
        flash_attn: FlashAttention = Some(FlashAttention::Auto),

        /// Layer streaming from the mapped file: auto (only when the weights do not fit), on or
        /// off.
        #[arg(long = "stream", value_name = "MODE", value_parser = parse_stream_mode)]
        stream: llama_core::arena::StreamMode = Some(llama_core::arena::StreamMode::Auto),

        /// Give sliding-window layers (Gemma 2/3, GPT-OSS, ...) a cache of the whole context
        /// instead of the window plus a micro-batch (llama.cpp's --swa-full). More memory; a
        /// conversation can then be cut back anywhere without evaluating it again.
        #[arg(long = "swa-full", num_args = 0, default_missing_value = "true")]
        swa_full: bool = Some(false),

        /// Keep the weights in the mapped file: no repacking into the CPU backend's extra
        /// buffer types (also -nr; llama.cpp's --no-repack). Costs prompt speed on the types
        /// those kernels speed up (Q4_0, Q4_K, IQ4_NL, Q8_0).
        #[arg(long = "no-repack", num_args = 0, default_missing_value = "true")]
        no_repack: bool = Some(false),

        /// Let weights go to the AMX buffer type on CPUs with AMX (off by default: llama.cpp's
        /// AMX kernels crash on some of them, llama.cpp #20824).
        #[arg(long = "amx", num_args = 0, default_missing_value = "true")]
        amx: bool = Some(false),

        /// Apply this LoRA adapter at full scale (repeatable; llama.cpp's --lora).
        #[arg(long = "lora", value_name = "FILE")]
        lora: Vec<PathBuf> = None,

        /// Apply this LoRA adapter at this scale (repeatable; llama.cpp's --lora-scaled).
        #[arg(long = "lora-scaled", value_names = ["FILE", "SCALE"], num_args = 2)]
        lora_scaled: Vec<String> = None,

        /// When a conversation fills the context, drop the oldest half of what follows the
        /// first --keep tokens and go on, instead of ending the answer (llama.cpp's
        /// --context-shift); chat also drops its oldest turns to fit a new one.
        #[arg(long = "context-shift", num_args = 0, default_missing_value = "true")]
        context_shift: bool = Some(false),

        /// Tokens of the conversation's start a context shift keeps (llama.cpp's --keep).
        #[arg(long = "keep", value_name = "N")]
        keep: u32 = Some(0),

        /// Tokens to generate; -1 runs until the model stops or the context fills.
        #[arg(
            short = 'n',
            long = "n-predict",
            value_name = "N",
            allow_negative_numbers = true
        )]
        n_predict: i64 = Some(-1),

        /// Temperature; 0 is greedy.
        #[arg(long = "temp", value_name = "T", allow_negative_numbers = true)]
        temp: f32 = Some(SamplingParams::default().temperature),

        /// Top-k sampling; 0 disables.
        #[arg(long = "top-k", value_name = "K", allow_negative_numbers = true)]
        top_k: i32 = Some(SamplingParams::default().top_k),

        /// Top-p (nucleus) sampling; 1 disables.
        #[arg(long = "top-p", value_name = "P", allow_negative_numbers = true)]
        top_p: f32 = Some(SamplingParams::default().top_p),

        /// Min-p sampling; 0 disables.
        #[arg(long = "min-p", value_name = "P", allow_negative_numbers = true)]
        min_p: f32 = Some(SamplingParams::default().min_p),

        /// Locally typical sampling; 1 disables.
        #[arg(long = "typical", value_name = "P", allow_negative_numbers = true)]
        typical: f32 = Some(SamplingParams::default().typical_p),

        /// Penalty for repeated tokens; 1 disables.
        #[arg(
            long = "repeat-penalty",
            value_name = "X",
            allow_negative_numbers = true
        )]
        repeat_penalty: f32 = Some(SamplingParams::default().repeat_penalty),

        /// Recent tokens the penalties consider; 0 disables, -1 the context size.
        #[arg(
            long = "repeat-last-n",
            value_name = "N",
            allow_negative_numbers = true
        )]
        repeat_last_n: i32 = Some(SamplingParams::default().repeat_last_n),

        /// Presence penalty; 0 disables.
        #[arg(
            long = "presence-penalty",
            value_name = "X",
            allow_negative_numbers = true
        )]
        presence_penalty: f32 = Some(SamplingParams::default().presence_penalty),

        /// Frequency penalty; 0 disables.
        #[arg(
            long = "frequency-penalty",
            value_name = "X",
            allow_negative_numbers = true
        )]
        frequency_penalty: f32 = Some(SamplingParams::default().frequency_penalty),

        /// Mirostat sampling: 0 off, 1 Mirostat, 2 Mirostat 2.0 (replaces top-k, top-p, min-p and
        /// typical).
        #[arg(long = "mirostat", value_name = "N")]
        mirostat: u8 = Some(SamplingParams::default().mirostat),

        /// Mirostat learning rate (eta).
        #[arg(long = "mirostat-lr", value_name = "ETA")]
        mirostat_lr: f32 = Some(SamplingParams::default().mirostat_eta),

        /// Mirostat target entropy (tau).
        #[arg(long = "mirostat-ent", value_name = "TAU")]
        mirostat_ent: f32 = Some(SamplingParams::default().mirostat_tau),

        /// DRY repetition penalty multiplier; 0 disables.
        #[arg(long = "dry-multiplier", value_name = "X")]
        dry_multiplier: f32 = Some(SamplingParams::default().dry_multiplier),

        /// DRY penalty base.
        #[arg(long = "dry-base", value_name = "X")]
        dry_base: f32 = Some(SamplingParams::default().dry_base),

        /// Repeated sequences at most this long are not penalised by DRY.
        #[arg(long = "dry-allowed-length", value_name = "N")]
        dry_allowed_length: i32 = Some(SamplingParams::default().dry_allowed_length),

        /// Recent tokens DRY looks at; 0 disables, -1 the context size.
        #[arg(long = "dry-penalty-last-n", value_name = "N", allow_negative_numbers = true)]
        dry_penalty_last_n: i32 = Some(SamplingParams::default().dry_penalty_last_n),

        /// A string that breaks a repeated sequence for DRY (repeatable; replaces the default
        /// newline, colon, quote and asterisk).
        #[arg(long = "dry-sequence-breaker", value_name = "TEXT")]
        dry_sequence_breaker: Vec<String> = None,

        /// XTC sampling probability; 0 disables.
        #[arg(long = "xtc-probability", value_name = "P")]
        xtc_probability: f32 = Some(SamplingParams::default().xtc_probability),

        /// XTC threshold.
        #[arg(long = "xtc-threshold", value_name = "P")]
        xtc_threshold: f32 = Some(SamplingParams::default().xtc_threshold),

        /// Random seed; -1 picks one at random.
        #[arg(long = "seed", value_name = "N", allow_negative_numbers = true)]
        seed: i64 = Some(-1),

        /// Keep generating past the model's end-of-generation tokens (as llama.cpp's
        /// --ignore-eos).
        #[arg(long = "ignore-eos", num_args = 0, default_missing_value = "true")]
        ignore_eos: bool = Some(false),

        /// Stop generating before this text (repeatable).
        #[arg(long = "stop", value_name = "TEXT")]
        stop: Vec<String> = None,

        /// Hand the turn back when the model writes this text (also -r, repeatable; llama.cpp's
        /// --reverse-prompt): the answer stops after it, as with --stop, but the text is shown.
        #[arg(short = 'r', long = "reverse-prompt", value_name = "TEXT")]
        reverse_prompt: Vec<String> = None,

        /// System prompt.
        #[arg(short = 's', long = "system", value_name = "TEXT")]
        system: String = None,

        /// Use this chat template instead of the model's: a llama.cpp built-in name (chatml,
        /// llama3, ...) or, with Jinja, the template's source.
        #[arg(long = "chat-template", value_name = "NAME|JINJA")]
        chat_template: String = None,

        /// Render this Jinja chat template file instead of the model's template.
        #[arg(long = "chat-template-file", value_name = "FILE")]
        chat_template_file: PathBuf = None,

        /// Render chat templates with the Jinja engine, as transformers and llama-server do
        /// (tools, template variables); `--no-jinja` (or `--jinja=false`) uses llama.cpp's
        /// built-in templates only.
        #[arg(long = "jinja", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        jinja: bool = Some(true),

        /// Split `<think>` reasoning out of answers into `reasoning_content`: auto (as
        /// llama-server's default, also `deepseek`) or none (leave it in the content).
        #[arg(long = "reasoning-format", value_name = "FORMAT", value_parser = ["auto", "deepseek", "deepseek-legacy", "none"])]
        reasoning_format: String = Some("auto".to_string()),

        /// Whether the model thinks before answering (also -rea; llama.cpp's --reasoning): on,
        /// off (templates of reasoning models then open the answer without thinking, or with
        /// an empty thinking block) or auto (as the template does by default). Passed to the
        /// chat template as `enable_thinking`.
        #[arg(long = "reasoning", value_name = "on|off|auto", value_parser = ["on", "off", "auto"])]
        reasoning: String = Some("auto".to_string()),

        /// Hold answers to this GBNF grammar (llama.cpp's --grammar).
        #[arg(long = "grammar", value_name = "GBNF")]
        grammar: String = None,

        /// Hold answers to the GBNF grammar in this file.
        #[arg(long = "grammar-file", value_name = "FILE")]
        grammar_file: PathBuf = None,

        /// Hold answers to this JSON schema (converted to a grammar, as llama.cpp's
        /// --json-schema; `{}` is any JSON value).
        #[arg(long = "json-schema", value_name = "SCHEMA")]
        json_schema: String = None,

        /// Hold answers to the JSON schema in this file.
        #[arg(long = "json-schema-file", value_name = "FILE")]
        json_schema_file: PathBuf = None,

        /// Print load time, time to first token and tokens/s to stderr.
        #[arg(long = "stats", num_args = 0, default_missing_value = "true")]
        stats: bool = Some(false),
    }
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

impl RunOptions {
    /// The effective settings: this layer over the built-in defaults, checked.
    pub fn resolve(self) -> Result<Settings, crate::error::CliError> {
        let o = self.over(RunOptions::defaults());
        let seed = match o.seed.unwrap_or(-1) {
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
            temperature: o.temp.unwrap_or_default(),
            top_k: o.top_k.unwrap_or_default(),
            top_p: o.top_p.unwrap_or_default(),
            min_p: o.min_p.unwrap_or_default(),
            typical_p: o.typical.unwrap_or_default(),
            repeat_penalty: o.repeat_penalty.unwrap_or_default(),
            repeat_last_n: o.repeat_last_n.unwrap_or_default(),
            frequency_penalty: o.frequency_penalty.unwrap_or_default(),
            presence_penalty: o.presence_penalty.unwrap_or_default(),
            mirostat: o.mirostat.unwrap_or_default(),
            mirostat_tau: o.mirostat_ent.unwrap_or_default(),
            mirostat_eta: o.mirostat_lr.unwrap_or_default(),
            dry_multiplier: o.dry_multiplier.unwrap_or_default(),
            dry_base: o.dry_base.unwrap_or_default(),
            dry_allowed_length: o.dry_allowed_length.unwrap_or_default(),
            dry_penalty_last_n: o.dry_penalty_last_n.unwrap_or_default(),
            dry_sequence_breakers: o
                .dry_sequence_breaker
                .clone()
                .unwrap_or_else(|| SamplingParams::default().dry_sequence_breakers),
            xtc_probability: o.xtc_probability.unwrap_or_default(),
            xtc_threshold: o.xtc_threshold.unwrap_or_default(),
            seed: seed.unwrap_or_else(rand::random::<u32>),
        };
        sampling.validate()?;
        let n_predict = match o.n_predict.unwrap_or(-1) {
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
        let threads = o.threads.unwrap_or_else(default_threads);
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
            o.cache_type_k.as_ref().or(o.cache_type.as_ref()),
        )?;
        let type_v = cache_type(
            "cache-type-v",
            o.cache_type_v.as_ref().or(o.cache_type.as_ref()),
        )?;
        let on_full = match o.on_full.as_deref() {
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
            strict: o.strict.unwrap_or_default(),
            on_full,
            type_k,
            type_v,
            model: o.model,
            hf_repo: o.hf_repo,
            ctx_size: o.ctx_size.unwrap_or_default(),
            batch_size: positive("batch-size", o.batch_size.unwrap_or_default())?,
            ubatch_size: positive("ubatch-size", o.ubatch_size.unwrap_or_default())?,
            threads,
            threads_batch: o.threads_batch.filter(|&n| n > 0).unwrap_or(threads),
            mlock: o.mlock.unwrap_or_default(),
            mmap: !o.no_mmap.unwrap_or_default(),
            context_shift: o.context_shift.unwrap_or_default(),
            keep: o.keep.unwrap_or_default(),
            reverse_prompt: o.reverse_prompt.unwrap_or_default(),
            loras: loras(o.lora.as_deref(), o.lora_scaled.as_deref())?,
            gpu_layers: o.gpu_layers.unwrap_or_default(),
            max_mem: o.max_mem,
            max_vram: o.max_vram,
            flash_attn: o.flash_attn.unwrap_or_default(),
            stream: o.stream.unwrap_or_default(),
            repack: !o.no_repack.unwrap_or_default(),
            amx: o.amx.unwrap_or_default(),
            swa_full: o.swa_full.unwrap_or_default(),
            n_predict,
            seed_was_random: seed.is_none(),
            sampling,
            stop: o.stop.unwrap_or_default(),
            ignore_eos: o.ignore_eos.unwrap_or_default(),
            system: o.system,
            chat_template: o.chat_template,
            chat_template_file: o.chat_template_file,
            jinja: o.jinja.unwrap_or(true),
            reasoning_format: match o.reasoning_format.as_deref() {
                None => llama_core::chat::ReasoningFormat::Auto,
                Some(name) => {
                    llama_core::chat::ReasoningFormat::from_name(name).ok_or_else(|| {
                        llama_core::ParamError {
                            name: "reasoning-format",
                            value: name.to_string(),
                            expected: "auto, deepseek, deepseek-legacy or none",
                        }
                    })?
                }
            },
            reasoning: match o.reasoning.as_deref() {
                None => llama_core::chat::Reasoning::Auto,
                Some(name) => llama_core::chat::Reasoning::from_name(name).ok_or_else(|| {
                    llama_core::ParamError {
                        name: "reasoning",
                        value: name.to_string(),
                        expected: "on, off or auto",
                    }
                })?,
            },
            grammar: grammar_source(o.grammar, o.grammar_file, o.json_schema, o.json_schema_file)?,
            stats: o.stats.unwrap_or_default(),
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
    /// Threads for generation.
    pub threads: i32,
    /// Threads for prompt processing.
    pub threads_batch: i32,
    /// Lock the model in RAM.
    pub mlock: bool,
    /// Map the model file (else read it into memory).
    pub mmap: bool,
    /// Shift a full context instead of ending the answer.
    pub context_shift: bool,
    /// Tokens a context shift keeps.
    pub keep: u32,
    /// Texts that hand the turn back (shown, then the answer stops).
    pub reverse_prompt: Vec<String>,
    /// LoRA adapters and their scales.
    pub loras: Vec<(PathBuf, f32)>,
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
    /// Sliding-window layers sized for the whole context.
    pub swa_full: bool,
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
    /// Jinja chat template file.
    pub chat_template_file: Option<PathBuf>,
    /// Render Jinja templates.
    pub jinja: bool,
    /// Split reasoning out of answers.
    #[serde(skip)]
    pub reasoning_format: llama_core::chat::ReasoningFormat,
    /// Whether the model thinks (the templates' `enable_thinking`).
    pub reasoning: llama_core::chat::Reasoning,
    /// The grammar answers are held to.
    pub grammar: Option<GrammarSource>,
    /// Print figures.
    pub stats: bool,
}

/// Where the grammar answers are held to comes from (one of the four flags).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum GrammarSource {
    /// `--grammar GBNF`.
    Gbnf(String),
    /// `--grammar-file FILE`.
    GbnfFile(PathBuf),
    /// `--json-schema SCHEMA`.
    Schema(String),
    /// `--json-schema-file FILE`.
    SchemaFile(PathBuf),
}

impl GrammarSource {
    /// The flag it came from.
    pub fn flag(&self) -> &'static str {
        match self {
            GrammarSource::Gbnf(_) => "--grammar",
            GrammarSource::GbnfFile(_) => "--grammar-file",
            GrammarSource::Schema(_) => "--json-schema",
            GrammarSource::SchemaFile(_) => "--json-schema-file",
        }
    }
}

/// At most one of the grammar flags.
fn grammar_source(
    gbnf: Option<String>,
    gbnf_file: Option<PathBuf>,
    schema: Option<String>,
    schema_file: Option<PathBuf>,
) -> Result<Option<GrammarSource>, crate::error::CliError> {
    let mut given: Vec<GrammarSource> = Vec::new();
    given.extend(gbnf.map(GrammarSource::Gbnf));
    given.extend(gbnf_file.map(GrammarSource::GbnfFile));
    given.extend(schema.map(GrammarSource::Schema));
    given.extend(schema_file.map(GrammarSource::SchemaFile));
    if given.len() > 1 {
        return Err(llama_core::ParamError {
            name: "grammar",
            value: given
                .iter()
                .map(GrammarSource::flag)
                .collect::<Vec<_>>()
                .join(", "),
            expected: "at most one of --grammar, --grammar-file, --json-schema, --json-schema-file",
        }
        .into());
    }
    Ok(given.pop())
}

/// `--lora FILE` (scale 1) and `--lora-scaled FILE SCALE` pairs, checked.
fn loras(
    full: Option<&[PathBuf]>,
    scaled: Option<&[String]>,
) -> Result<Vec<(PathBuf, f32)>, crate::error::CliError> {
    let mut out: Vec<(PathBuf, f32)> = full
        .unwrap_or_default()
        .iter()
        .map(|p| (p.clone(), 1.0))
        .collect();
    for pair in scaled.unwrap_or_default().chunks(2) {
        let [path, scale] = pair else {
            return Err(llama_core::ParamError {
                name: "lora-scaled",
                value: pair.join(" "),
                expected: "a file and a scale",
            }
            .into());
        };
        let scale: f32 = scale
            .parse()
            .ok()
            .filter(|s: &f32| s.is_finite())
            .ok_or_else(|| llama_core::ParamError {
                name: "lora-scaled",
                value: scale.clone(),
                expected: "a number, the adapter's scale",
            })?;
        out.push((PathBuf::from(path), scale));
    }
    Ok(out)
}

/// llama.cpp's default: one thread per physical core (hyper-threads share a core's units).
pub fn default_threads() -> i32 {
    llama_core::machine::physical_cores()
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .map_or(4, |n| n as i32)
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
