//! The memory budget end to end: a [`planner::BufferSizer`] backed by llama.cpp's no-alloc dry
//! run ([`MemoryProbe`]), the weights and process baseline counted on top, and the plan turned
//! into model and context parameters. Nothing large is allocated before the plan fits.

use std::path::Path;

use crate::ffi::{ContextParams, FlashAttention, ModelParams};
use crate::gguf::GgufModel;
use crate::memory_probe::{MemoryProbe, ProbeError};
use crate::planner::{self, Breakdown, BufferSizer, Candidate, Plan, PlanError, PlanRequest};
use crate::process_memory::ProcessMemory;

/// Memory the process uses beyond the planned buffers and the model's own host structures while
/// it runs: sampler state, the engine's thread and channels, thread stacks touched, the chat
/// template's Jinja environment (made after the model is loaded), allocator slack. Measured (see
/// docs/MEMORY.md) and rounded up.
pub const RUNTIME_MARGIN: u64 = 8 << 20;

/// Bytes per vocabulary entry the run allocates beyond the dry run's view: the sampler's
/// candidate arrays (one `llama_token_data` of 12 bytes per token) and the copy that grammar
/// and log-probability sampling make of them. Measured on a 262,144-token vocabulary (a peak
/// 5.75 MiB over a plan without it) and rounded up.
pub const RUNTIME_BYTES_PER_TOKEN: u64 = 24;

/// The runtime margin of a model with `n_vocab` tokens: [`RUNTIME_MARGIN`] and
/// [`RUNTIME_BYTES_PER_TOKEN`] per token.
pub fn runtime_margin(n_vocab: u64) -> u64 {
    RUNTIME_MARGIN.saturating_add(n_vocab.saturating_mul(RUNTIME_BYTES_PER_TOKEN))
}

/// The vocabulary size the file declares (its token list).
fn n_vocab(gguf: &GgufModel) -> u64 {
    gguf.get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .map_or(0, |a| a.len() as u64)
}

/// Sizes candidates with llama.cpp's dry run and adds what the dry run does not see.
#[derive(Debug)]
pub struct LlamaSizer {
    probe: MemoryProbe,
    /// Resident bytes of the weights: the mapped file (llama.cpp faults all of it in at load)
    /// plus any weights repacked into anonymous memory.
    weights: u64,
    /// Process baseline (binary, libraries, allocator) measured before loading, the model's
    /// host structures (vocabulary, tokenizer, metadata: measured as what loading the dry-run
    /// model added), plus [`runtime_margin`].
    overhead: u64,
    /// The model's host structures alone.
    model_host: u64,
    /// Weights copied into the CPU backend's extra buffer types (anonymous memory).
    repacked: u64,
    /// How the run's contexts are made beyond a candidate.
    choices: RunChoices,
    /// Bytes of LoRA adapters, counted with the weights.
    adapters: u64,
    /// Most logits rows one decode produces, when not one per sequence.
    n_outputs_max: Option<u32>,
    /// Bytes of the embeddings context made next to the engine's (`serve --embeddings`).
    embeddings: u64,
}

/// What a run asks for beyond what a [`Candidate`] plans: threads, the sliding-window cache
/// setting, and whether flash attention is llama.cpp's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunChoices {
    /// Threads for generation.
    pub threads: i32,
    /// Threads for prompt processing.
    pub threads_batch: i32,
    /// Sliding-window layers sized for the whole context (`--swa-full`).
    pub swa_full: bool,
    /// `-fa auto`: where the plan has flash attention and does not need it (no quantised V
    /// cache), llama.cpp still decides.
    pub flash_auto: bool,
}

impl RunChoices {
    /// `threads` for both phases, capped sliding windows, flash attention as planned.
    pub fn threads(threads: i32) -> RunChoices {
        RunChoices {
            threads,
            threads_batch: threads,
            swa_full: false,
            flash_auto: false,
        }
    }
}

impl LlamaSizer {
    /// Prepares a sizer for `path`, already read by the GGUF reader as `gguf`.
    pub fn new(
        path: &Path,
        gguf: &GgufModel,
        model_params: &ModelParams,
        threads: i32,
    ) -> Result<LlamaSizer, ProbeError> {
        crate::ffi::release_free_heap();
        let baseline = ProcessMemory::current().rss;
        let probe = MemoryProbe::new(path, model_params)?;
        // The dry-run model holds everything llama.cpp keeps on the host for a model but its
        // weights and buffers: the vocabulary and tokenizer (in proportion to n_vocab), the
        // metadata and tensor descriptions. The real load allocates the same again.
        // What the loader freed again (the GGUF metadata it parsed) goes back first, so that
        // only what the model keeps is counted.
        crate::ffi::release_free_heap();
        let model_host = ProcessMemory::current().rss.saturating_sub(baseline);
        tracing::info!(baseline, model_host, "process memory before planning");
        let mapped = gguf.file_size();
        let repacked = probe.repacked_bytes();
        let weights = mapped.saturating_add(repacked);
        Ok(LlamaSizer {
            probe,
            weights,
            repacked,
            overhead: baseline
                .saturating_add(model_host)
                .saturating_add(runtime_margin(n_vocab(gguf))),
            model_host,
            choices: RunChoices::threads(threads),
            adapters: 0,
            n_outputs_max: None,
            embeddings: 0,
        })
    }
}

impl LlamaSizer {
    /// Counts `bytes` of LoRA adapters with the weights (llama.cpp reads them into memory).
    pub fn with_adapters(mut self, bytes: u64) -> LlamaSizer {
        self.weights = self.weights.saturating_add(bytes);
        self.adapters = bytes;
        self
    }

    /// Sizes contexts as `choices` say (threads, `--swa-full`, `-fa auto`).
    pub fn with_choices(mut self, choices: RunChoices) -> LlamaSizer {
        self.choices = choices;
        self
    }

    /// Sizes the output buffer for `n` logits rows per decode call instead of one per sequence
    /// (perplexity asks for the logits of half of every chunk).
    pub fn with_outputs_max(mut self, n: u32) -> LlamaSizer {
        self.n_outputs_max = Some(n);
        self
    }

    /// Counts an embeddings context made as `embeddings` says next to every candidate's
    /// context (`serve --embeddings`), sized once by a dry run.
    pub fn with_embeddings(
        mut self,
        embeddings: &crate::embedding::EmbeddingsContext,
    ) -> Result<LlamaSizer, ProbeError> {
        let params = embeddings.params(self.choices.threads, self.choices.threads_batch);
        self.embeddings = self.probe.measure_embeddings(&params, embeddings.pooling)?;
        Ok(self)
    }

    /// Bytes of host memory the model's own structures take (vocabulary, tokenizer,
    /// metadata), as measured when the dry-run model was loaded.
    pub fn model_host_bytes(&self) -> u64 {
        self.model_host
    }

    /// Bytes of weights llama.cpp repacks into anonymous memory (0 with `--no-repack`).
    pub fn repacked_bytes(&self) -> u64 {
        self.repacked
    }

    /// Counts only `resident` bytes of the weights from now on: the pinned tensors plus a
    /// window of layers, for a model whose other layers are streamed from disk.
    pub fn stream_weights(&mut self, resident: u64) {
        self.weights = resident.saturating_add(self.adapters);
    }
}

/// The context parameters a candidate stands for, made as `choices` say. A candidate planned
/// with flash attention gets `auto` (llama.cpp decides) when `-fa auto` was asked and its V
/// cache is not quantised (a quantised V cache needs flash attention on).
pub fn context_params(candidate: &Candidate, choices: &RunChoices) -> ContextParams {
    ContextParams {
        n_ctx: candidate.n_ctx,
        n_batch: candidate.n_batch,
        n_ubatch: candidate.n_ubatch,
        n_seq_max: candidate.n_seq.max(1),
        n_outputs_max: candidate.n_seq.max(1),
        n_threads: choices.threads,
        n_threads_batch: choices.threads_batch,
        flash_attention: match (candidate.flash_attn, choices.flash_auto) {
            (false, _) => FlashAttention::Off,
            (true, true) if !crate::planner::is_quantised(candidate.type_v) => FlashAttention::Auto,
            (true, _) => FlashAttention::On,
        },
        type_k: candidate.type_k,
        type_v: candidate.type_v,
        kv_unified: false,
        swa_full: choices.swa_full,
    }
}

impl BufferSizer for LlamaSizer {
    type Error = ProbeError;

    fn measure(&mut self, candidate: &Candidate) -> Result<Breakdown, ProbeError> {
        let mut params = context_params(candidate, &self.choices);
        if let Some(n) = self.n_outputs_max {
            params.n_outputs_max = n;
        }
        let sizes = self.probe.measure(&params)?;
        Ok(Breakdown {
            weights: self.weights,
            kv: sizes.kv,
            compute: sizes.compute,
            output: sizes.output,
            overhead: self.overhead,
            embeddings: self.embeddings,
        })
    }
}

/// Plans `request` for the model at `path`.
pub fn plan_model(
    path: &Path,
    gguf: &GgufModel,
    model_params: &ModelParams,
    threads: i32,
    request: &PlanRequest,
) -> Result<Plan, PlanError<ProbeError>> {
    let mut sizer = LlamaSizer::new(path, gguf, model_params, threads).map_err(PlanError::Sizer)?;
    planner::plan(request, &mut sizer)
}

/// Slack the data-segment backstop leaves above the planned anonymous memory: virtual
/// reservations (thread stacks, allocator arenas) count against `RLIMIT_DATA` before they are
/// resident.
pub const BACKSTOP_SLACK: u64 = 128 << 20;

/// Caps the process's data segment (`RLIMIT_DATA`: heap and private writable mappings, which
/// is where llama.cpp's KV cache and compute buffers live; the read-only mapping of the model
/// file is not counted) at the planned anonymous memory plus [`BACKSTOP_SLACK`]. An unplanned
/// large allocation then fails (llama.cpp reports it as an error) instead of growing until the
/// kernel's OOM killer ends the process. Returns the limit set.
pub fn install_data_limit(plan: &Plan, mapped_weights: u64) -> std::io::Result<u64> {
    // Streamed weights are planned below the file size; either way they are file-backed.
    let mapped = mapped_weights.min(plan.breakdown.weights);
    install_data_limit_bytes(plan.breakdown.total().saturating_sub(mapped))
}

/// The `RLIMIT_DATA` backstop for `anonymous` bytes of planned anonymous memory (plus the same
/// slack as [`install_data_limit`]), for a process that runs several models under one budget.
/// Never raises a lower limit already set. Returns the limit in force.
pub fn install_data_limit_bytes(anonymous: u64) -> std::io::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let mut limit = anonymous.saturating_add(BACKSTOP_SLACK);
    let current = getrlimit(Resource::Data);
    if let Some(max) = current.maximum {
        limit = limit.min(max);
    }
    if current.current.is_some_and(|c| c < limit) {
        return Ok(current.current.unwrap_or(limit));
    }
    setrlimit(
        Resource::Data,
        Rlimit {
            current: Some(limit),
            maximum: current.maximum,
        },
    )
    .map_err(std::io::Error::from)?;
    Ok(limit)
}
