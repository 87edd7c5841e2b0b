//! The memory budget end to end: a [`planner::BufferSizer`] backed by llama.cpp's no-alloc dry
//! run ([`MemoryProbe`]), the weights and process baseline counted on top, and the plan turned
//! into model and context parameters. Nothing large is allocated before the plan fits.

use std::path::Path;

use crate::ffi::{ContextParams, FlashAttention, ModelParams};
use crate::gguf::GgufModel;
use crate::memory_probe::{MemoryProbe, ProbeError};
use crate::planner::{self, Breakdown, BufferSizer, Candidate, Plan, PlanError, PlanRequest};
use crate::process_memory::ProcessMemory;

/// What the process runs next to the model and its context, beyond the engine itself: each
/// adds its own part of the runtime margin ([`RuntimeMargin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuntimeExtras {
    /// The flags name a chat template (`--chat-template`, `--chat-template-file`). A template in
    /// the model file is counted without this.
    pub named_template: bool,
    /// The flags ask for a grammar (`--grammar`, `--json-schema`, and their file forms).
    pub grammar: bool,
    /// The process serves HTTP (`serve`): the async runtime, its worker threads, the HTTP stack.
    /// Any request may carry a grammar (a JSON schema, tools), so a grammar is counted too.
    pub http_server: bool,
    /// Every token is the most likely one, read straight from the logits: greedy sampling
    /// (`--temp 0`, or `--top-k 1`) without penalties or a grammar. The sampler then makes no
    /// candidate array ([`margin::ARGMAX_BYTES_PER_VOCAB_TOKEN`]). Never counted for `serve`,
    /// whose requests choose their own sampling.
    pub argmax_sampling: bool,
}

/// Memory a run uses beyond the planned buffers (weights, KV cache, compute, output) and the
/// process's measured baseline and model host structures, by part. Every figure was measured
/// on the generated shapes (`llama_core::gguf::synthetic`, Q8_0) and SmolLM2 as the peak RSS
/// (VmHWM) less the plan without its margin, with prompts that fill the context, three runs
/// or more each, 2 threads, release build, 2026-12-01 (docs/MEMORY.md, "What the runtime
/// margin covers"); each constant is the worst run with room to spare.
pub mod margin {
    /// Always there once the model runs: code pages of the decode, sampling and generation
    /// paths faulted in after the baseline was measured (0.8-1.3 MiB, by `smaps`), the engine
    /// thread's stack, llama.cpp's per-context host structures that are neither buffers nor
    /// counted by the model's shape below (the scheduler's tables). Graph metadata and the CPU
    /// backend's work buffer are counted from the model instead
    /// ([`RuntimeMargin::graph_metadata`](super::RuntimeMargin::graph_metadata),
    /// [`cpu_work_bytes_per_token`]): they grow with its tensors and widths, and before they
    /// were, a 24-layer gemma3-style model peaked 2.6 MiB above its plan. 3 MiB until the heap
    /// was made to hold the same after every load ([`crate::ffi::LOADING_MMAP_THRESHOLD`]):
    /// before, a load left 1.0-1.5 MiB more heap resident in some runs than in others, by the
    /// order its threads freed in (a 24-layer gemma3-swa at `-c 2048` peaked at 121.3 or
    /// 123.0 MiB with one plan), and the part had to cover both. Measured since, with 2 MiB,
    /// three runs a cell, release and debug builds, 2026-12-02: every generated shape, small
    /// and grown, at `-c 512` and 2048 and budgets of 40M to 1G, and SmolLM2, peaked 1.0 MiB or
    /// more below its plan (the small MoE at `-c 512`, release: 1.04-1.35 MiB). 3 MiB since the
    /// compute buffers' unwritten embedding inputs are left out of the plan
    /// ([`unwritten_embedding_inputs`]): on the small shapes they had been 1.0 MiB of room that
    /// this part now holds. With 2 MiB the small gemma3-swa and Mamba at `-c 512` were planned
    /// 0.993 and 0.996 of their peaks (release); with 2.75 MiB the small gemma3-swa came within
    /// 0.16 MiB of its plan (debug), where its peak moves by 0.6 MiB from run to run (code
    /// pages, and in one run of twelve 0.55 MiB more heap resident).
    pub const FIXED: u64 = 3 << 20;

    /// Graphs whose metadata llama.cpp keeps at once: the graph the context was reserved with
    /// and the last graph built for each kind of micro-batch, one without outputs and one with
    /// (`llama_context`'s `gf_res_reserve` and `gf_res_prev`). A prompt of one micro-batch
    /// builds only the second kind.
    pub fn graphs_kept(multi_ubatch: bool) -> u64 {
        if multi_ubatch {
            3
        } else {
            2
        }
    }

    /// The node capacity llama.cpp gives each graph of a model of `arch` with `n_tensors`
    /// tensors at micro-batches of `n_tokens` (`llama_context::graph_max_nodes`, by which its
    /// graph metadata buffers are sized): 8 nodes a tensor, at least 1024, for most
    /// architectures; more for those whose graphs llama.cpp knows to be larger.
    pub fn graph_max_nodes(arch: &str, n_tensors: u64, n_tokens: u64) -> u64 {
        match arch {
            "kimi-k3" | "glm5-next" => (160 * n_tokens).max(64 * n_tensors),
            "hrm_text" => (80 * n_tokens).max(64 * n_tensors),
            "qwen3next" | "kimi-linear" | "bailingmoe3" | "qwen35" | "qwen35moe" | "clef"
            | "qwen4exp" | "deepseek4" | "nanbeige" | "minimax-01" | "minimax-m3" | "hy_v4" => {
                (40 * n_tokens).max(32 * n_tensors)
            }
            "dflash" => 1024u64.max(12 * n_tensors),
            _ => 1024u64.max(8 * n_tensors),
        }
    }

    /// Bytes a micro-batch token takes in the CPU backend's work buffer, where a matrix
    /// multiplication converts its activations to the type the weights' dot product reads:
    /// the widest row of the model's layer matrices (`ne0`), in 8-bit blocks for quantised
    /// weights (at most 292 bytes per 256 elements, `Q8_K`), f16 or bf16 for 16-bit weights,
    /// nothing for f32. The buffer keeps the largest size any graph node asked for
    /// ([`RuntimeMargin::cpu_work_buffer`](super::RuntimeMargin::cpu_work_buffer)).
    pub fn cpu_work_bytes_per_token(
        matrices: impl IntoIterator<Item = (crate::gguf::GgmlType, u64)>,
    ) -> u64 {
        use crate::gguf::GgmlType;
        matrices
            .into_iter()
            .map(|(ggml_type, k)| match ggml_type {
                GgmlType::F32 => 0,
                GgmlType::F16 | GgmlType::BF16 => 2 * k,
                _ => (k * 292).div_ceil(256),
            })
            .max()
            .unwrap_or(0)
    }

    /// A debug build (the test suite's default profile) faults in more of its larger, unoptimised
    /// code after the baseline than a release build: the generated Mamba shape at `-c 512`
    /// under `--max-mem 40M` peaked 10 KiB above a plan with the release figures alone.
    pub const DEBUG_BUILD_CODE: u64 = 1 << 20;

    /// [`DEBUG_BUILD_CODE`] in a debug build, else nothing.
    pub const BUILD_CODE: u64 = if cfg!(debug_assertions) {
        DEBUG_BUILD_CODE
    } else {
        0
    };

    /// A context longer than one micro-batch decodes prompts in several micro-batches: beyond
    /// the third graph's metadata ([`graphs_kept`]), the batch splitter's and the scheduler's
    /// state for a micro-batch that is not the last. Measured as the step from
    /// `-c 512` to `-c 1024` on Mamba (1.1 MiB, 1.0 MiB at the same batch) and what is left of
    /// the step to `-c 2048` on the other shapes once the per-token parts are taken out
    /// (0.5-0.9 MiB), less the third graph (0.4 MiB on those shapes).
    pub const MULTI_UBATCH: u64 = 5 << 17;

    /// Per context token, for every model: the engine's token lists and the prompt's
    /// tokenisation. Measured as the slope from 2048 to 16,384 tokens on Mamba (no KV cells):
    /// 37 bytes with the heap's mmap threshold fixed (78 bytes with glibc's dynamic one).
    pub const BYTES_PER_CONTEXT_TOKEN: u64 = 48;

    /// Per context cell of an attention (KV) cache: llama.cpp's per-cell bookkeeping (position,
    /// sequence set, and the ordered sets of used cells and of positions). Measured as the
    /// slope from 2048 to 8192 tokens less Mamba's: 43 (llama) to 69 bytes (gemma3-swa).
    pub const BYTES_PER_KV_CELL: u64 = 96;

    /// Per token of a logical batch (`-b`, at most the context): llama.cpp's batch splitter
    /// and the engine's batch. Measured from `-b 512` to `-b 2048` at `-c 2048`: 427 bytes.
    pub const BYTES_PER_BATCH_TOKEN: u64 = 512;

    /// Per vocabulary entry and sequence: the sampler's candidate array (one 12-byte
    /// `llama_token_data` a token) and what the sampler chain and log-probabilities copy of it.
    /// Measured: 10 to 13 bytes a token more with `--temp 0.8` than greedy, on SmolLM2 and
    /// on a 262,144-token vocabulary. Greedy decoding without penalties or a grammar reads the
    /// most likely token from the logits and makes none of this
    /// ([`ARGMAX_BYTES_PER_VOCAB_TOKEN`]).
    pub const BYTES_PER_VOCAB_TOKEN: u64 = 32;

    /// Per vocabulary entry and sequence when every token is read from the logits as the most
    /// likely one ([`RuntimeExtras::argmax_sampling`](super::RuntimeExtras::argmax_sampling)):
    /// no candidate array is made, but with nothing counted a greedy run on the generated
    /// 262,144-token vocabulary (8 layers, `-c 8192`) came within 0.1 MiB of its plan, so the
    /// size of one candidate array stays counted as room.
    pub const ARGMAX_BYTES_PER_VOCAB_TOKEN: u64 = 12;

    /// Per vocabulary entry, when a grammar may constrain sampling: llama.cpp's grammar decodes
    /// every candidate token into code points for each token it samples. Measured: 300 bytes a
    /// token on SmolLM2 (14.1 MiB), 174 on the generated 262,144-token vocabulary (43.5 MiB).
    pub const GRAMMAR_BYTES_PER_VOCAB_TOKEN: u64 = 384;

    /// Per compute thread: its stack and allocator arena, beyond the flash-attention scratch
    /// ([`flash_attention_scratch`]). Measured from 2 to 32 threads at `-c 512`: 102 KiB a
    /// thread on llama (64-wide heads, 96 KiB of it scratch), 288 KiB on gemma3-swa (256-wide
    /// heads, 288 KiB of scratch).
    pub const BYTES_PER_THREAD: u64 = 64 << 10;

    /// The CPU backend's flash-attention scratch per thread for K and V heads of `dk` and `dv`
    /// elements: a 64-query by 64-key tile of floats (queries, scores, mask, accumulators, the
    /// K and V rows), as ggml's graph plan sizes it. It lives in the CPU backend's one work
    /// buffer ([`RuntimeMargin::cpu_work_buffer`](super::RuntimeMargin::cpu_work_buffer)), as
    /// do the matrix multiplications' converted activations ([`cpu_work_bytes_per_token`]).
    pub fn flash_attention_scratch(dk: u64, dv: u64) -> u64 {
        const TILE: u64 = 64;
        4 * TILE * (2 * dk + 2 * dv + 2 * TILE)
    }

    /// A chat template: the Jinja engine's code and environment, made after the model is
    /// loaded. Measured on SmolLM2 with and without `--raw`: 0.75 MiB.
    pub const CHAT_TEMPLATE: u64 = 1 << 20;

    /// Serving HTTP: the async runtime's worker threads, the HTTP and JSON code and buffers.
    /// Measured on SmolLM2 answering one chat request that fills half the context, against
    /// `prompt` with the same template and context: 1.9-2.1 MiB more.
    pub const HTTP_SERVER: u64 = 3 << 20;

    /// Verbose logging (`-v`: the info or debug level is on): the formatting code and buffers
    /// of the log lines the run writes. Measured on the generated shapes at `-c 512` and 2048:
    /// 0.8-0.9 MiB more peak with `-v` than without, of which 0.4 MiB is in the baseline.
    pub const VERBOSE_LOG: u64 = 1 << 20;

    /// Streaming layers from disk: the prefetch thread's stack and channel, and the file pages
    /// the kernel maps around a fault (fault-around) beyond the running layer. Measured,
    /// release build, 2026-12-02 (Intel Xeon): a streamed run's peak against a resident run's
    /// at the same context and micro-batch, less the pinned bytes and one layer, came to -1.7
    /// to +0.8 MiB over the generated shapes, small and grown, windows of one and two layers.
    /// Again once the mapping refused huge-page mappings and the pinned layers were mapped in
    /// full ([`crate::ffi::ModelMapping::advise_streaming`],
    /// [`crate::ffi::ModelMapping::populate`]),
    /// AMD EPYC, 2026-12-02: -0.45 to +0.90 MiB on the grown llama, gemma3-swa and Mamba
    /// shapes at `-c 512` and 2048 (the grown MoE -2.0 to -1.6 MiB: experts no prompt routed
    /// to in its streamed layers; SmolLM2 -5.0 to -1.4 MiB).
    /// The window's read-ahead, which the process does not map, is counted with the weights
    /// ([`crate::arena::Placement::read_ahead_bytes`]). 3 MiB before that measurement, when
    /// this part was room for SmolLM2's streamed runs (6.0 MiB beyond their buffers in all at
    /// `--max-mem 79M` to `81M`, within what the other parts count for them).
    pub const STREAMING: u64 = 1 << 20;

    /// Architectures whose graphs have no mixed-batch input (`llm_arch_supports_mixed_batch`
    /// is false for them in llama.cpp): their graphs reserve one embedding input a token
    /// batch never writes, not two ([`unwritten_embedding_inputs`]).
    const NO_MIXED_BATCH: &[&str] = &["cogvlm", "deepseek4", "granite-switch"];

    /// Draft heads of speculative decoding, whose graphs also take the target model's hidden
    /// states as an input (written for every batch) or build their inputs their own way:
    /// nothing of their compute buffers is counted as unwritten.
    const DRAFT_HEADS: &[&str] = &["eagle3", "dflash", "gemma4-assistant"];

    /// Bytes of the compute buffer that a run of token batches never writes, so never makes
    /// resident. llama.cpp's graphs (built with `build_inp_embd`: 135 of its 157 model sources
    /// call it, the others share a builder or only read hyperparameters) carry, next to the
    /// token path, an input for a batch of vector embeddings and (on most architectures) one
    /// for a mixed batch of tokens and embeddings, each `n_embd` floats a micro-batch token.
    /// The scheduler reserves room for both, `ggml_build_forward_select` computes only the
    /// token branch, and graph inputs keep their own place at the buffer's start (ggml-alloc
    /// places inputs first and never reuses them), so their pages stay untouched. Counted as
    /// whole pages, one page less than the input (its first and last page may be shared with a
    /// neighbour).
    /// Measured with `/proc/PID/pagemap` over the buffer llama.cpp allocates
    /// (`scripts/compute_residency.py`), AMD EPYC, release, 2026-12-02: two untouched runs of
    /// 508 KiB each for the small generated shapes (width 256, `-ub 512`; 1.0-1.1 MiB of
    /// their 7.5-9.8 MiB compute buffers), 1,020 KiB each for the grown Mamba (width 512),
    /// 1,148 and 1,160 KiB for SmolLM2 (width 576), the same after 400 generated tokens,
    /// with `-ub 256`, with streamed layers and for a server decoding two sequences at once.
    /// The model's `n_embd` is used; a model whose input is wider (`n_embd_inp`) leaves more
    /// untouched.
    pub fn unwritten_embedding_inputs(arch: &str, n_embd: u64, n_ubatch: u64) -> u64 {
        const PAGE: u64 = 4096;
        let inputs = if DRAFT_HEADS.contains(&arch) {
            0
        } else if NO_MIXED_BATCH.contains(&arch) {
            1
        } else {
            2
        };
        let whole_pages = (n_embd * n_ubatch * 4 / PAGE).saturating_sub(1);
        inputs * whole_pages * PAGE
    }

    /// Per vocabulary entry while the model loads, before its context exists: llama.cpp holds
    /// the GGUF metadata it parsed (the token strings) next to the vocabulary it builds from
    /// it, beyond what the built model keeps (which is counted as measured). Used where the
    /// dry run's load could not be measured (the process had been higher before it, as in a
    /// router loading its second model). Measured on a 262,144-token vocabulary with the heap's
    /// mmap threshold fixed ([`crate::ffi::pin_heap_thresholds`]): 9.4 to 9.7 MiB over the
    /// weights and the model's host structures (36-37 bytes a token); SmolLM2's 49,152 tokens
    /// 3.0-3.1 MiB (62-65 bytes a token, which its context's buffers cover many times over).
    pub const LOAD_BYTES_PER_VOCAB_TOKEN: u64 = 48;

    /// Room above the load's extra as the dry run measured it
    /// ([`RuntimeMargin::load_measured`](super::RuntimeMargin::load_measured)): the real load
    /// reached 0.1 MiB more than the dry run on the 262,144-token vocabulary (9.7 MiB against
    /// 9.6), and the code pages the real load faults in (its file mapping,
    /// more with a warm page cache) come on top: with 1 MiB of room that vocabulary's load came
    /// within 0.6 MiB of its plan.
    pub const LOAD_MEASURED_ROOM: u64 = 2 << 20;
}

/// What the runtime margin of one configuration depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuntimeMargin {
    /// Vocabulary entries.
    pub n_vocab: u64,
    /// Context cells (all sequences together).
    pub n_ctx: u32,
    /// The model has attention layers (KV cells; a recurrent model has none).
    pub kv_cells: bool,
    /// The largest K and V head sizes of the attention layers (0 without attention).
    pub head_dims: (u64, u64),
    /// Logical batch size.
    pub n_batch: u32,
    /// Micro-batch size.
    pub n_ubatch: u32,
    /// Sequences decoded together.
    pub n_seq: u32,
    /// Compute threads (the larger of generation and prompt processing).
    pub threads: u32,
    /// A chat template may be rendered (the model has one, or the flags name one).
    pub chat_template: bool,
    /// A grammar may constrain sampling.
    pub grammar: bool,
    /// The process serves HTTP.
    pub http_server: bool,
    /// Every token is read from the logits as the most likely one, without a sampler's
    /// candidate array ([`RuntimeExtras::argmax_sampling`]).
    pub argmax_sampling: bool,
    /// Layers are streamed from disk.
    pub streaming: bool,
    /// Bytes of one graph's metadata buffer (tensor headers and the graph's arrays for
    /// [`margin::graph_max_nodes`] nodes, zero-filled so resident in full), as llama.cpp sizes
    /// it for the model; [`margin::graphs_kept`] of them are alive.
    pub graph_metadata: u64,
    /// Bytes a micro-batch token takes in the CPU backend's work buffer
    /// ([`margin::cpu_work_bytes_per_token`]).
    pub cpu_work_per_token: u64,
    /// Without flash attention: bytes a micro-batch token's attention scores take in the work
    /// buffer once converted to f16 for their product with V (every head's row of one score
    /// a context cell); 0 with flash attention, whose scratch is per thread.
    pub attention_work_per_token: u64,
    /// Verbose logging is on (`-v`).
    pub verbose_log: bool,
    /// What the dry run's model load reached above what the model keeps, when it could be
    /// measured (the process's high-water mark rose during it); else the load is modelled from
    /// the vocabulary ([`margin::LOAD_BYTES_PER_VOCAB_TOKEN`]).
    pub load_measured: Option<u64>,
    /// Bytes of the weights counted in the plan that are not resident once the model is
    /// loaded: the file's metadata before its first tensor and anything after its last, which
    /// llama.cpp unmaps after the load (and never reads with `--no-mmap`). They are resident
    /// while the model loads, so only the running peak is relieved of them.
    pub unmapped_after_load: u64,
}

impl RuntimeMargin {
    /// Bytes the run uses beyond its planned buffers once its context exists (see [`margin`]).
    pub fn running(&self) -> u64 {
        let n_ctx = u64::from(self.n_ctx);
        let n_batch = u64::from(self.n_batch.min(self.n_ctx));
        let per_token = if self.kv_cells {
            margin::BYTES_PER_CONTEXT_TOKEN + margin::BYTES_PER_KV_CELL
        } else {
            margin::BYTES_PER_CONTEXT_TOKEN
        };
        let mut bytes = margin::FIXED
            + margin::BUILD_CODE
            + n_ctx * per_token
            + n_batch * margin::BYTES_PER_BATCH_TOKEN
            + self.sampler_bytes()
            + u64::from(self.threads.max(1)) * margin::BYTES_PER_THREAD
            + self.cpu_work_buffer();
        let multi_ubatch = self.n_ctx > self.n_ubatch;
        if multi_ubatch {
            bytes += margin::MULTI_UBATCH;
        }
        bytes += margin::graphs_kept(multi_ubatch) * self.graph_metadata;
        if self.chat_template {
            bytes += margin::CHAT_TEMPLATE;
        }
        if self.grammar || self.http_server {
            bytes += self.n_vocab * margin::GRAMMAR_BYTES_PER_VOCAB_TOKEN;
        }
        if self.http_server {
            bytes += margin::HTTP_SERVER;
        }
        if self.streaming {
            bytes += margin::STREAMING;
        }
        if self.verbose_log {
            bytes += margin::VERBOSE_LOG;
        }
        bytes
    }

    /// The sampler's candidate arrays and their copies, for every sequence; less when every
    /// token is read from the logits as the most likely one (never for a server, whose
    /// requests choose their sampling).
    pub fn sampler_bytes(&self) -> u64 {
        let per_entry = if self.argmax_sampling && !self.http_server && !self.grammar {
            margin::ARGMAX_BYTES_PER_VOCAB_TOKEN
        } else {
            margin::BYTES_PER_VOCAB_TOKEN
        };
        self.n_vocab * u64::from(self.n_seq.max(1)) * per_entry
    }

    /// The CPU backend's work buffer: one buffer, as large as the largest any graph node asks
    /// for, which is either every thread's flash-attention scratch or a full micro-batch's
    /// activations converted for a matrix multiplication (without flash attention, the
    /// attention scores converted for their product with V: at `-c 2048 -fa off` the plan
    /// missed 2.7-4.3 MiB of them before they were counted).
    pub fn cpu_work_buffer(&self) -> u64 {
        let flash_attention = u64::from(self.threads.max(1))
            * margin::flash_attention_scratch(self.head_dims.0, self.head_dims.1);
        let ubatch = u64::from(self.n_ubatch.min(self.n_ctx));
        let matmul = ubatch * self.cpu_work_per_token.max(self.attention_work_per_token);
        flash_attention.max(matmul)
    }

    /// Bytes the model's load holds beyond the weights and the model's host structures, before
    /// the context's buffers exist: as the dry run measured it, with room, or modelled from the
    /// vocabulary (see [`margin::LOAD_BYTES_PER_VOCAB_TOKEN`]).
    pub fn loading(&self) -> u64 {
        match self.load_measured {
            Some(extra) => extra + margin::LOAD_MEASURED_ROOM,
            None => self.n_vocab * margin::LOAD_BYTES_PER_VOCAB_TOKEN,
        }
    }

    /// The margin a plan counts next to the weights and `buffers` bytes of KV cache, compute
    /// and output buffers: the peak is either while the model loads (before those buffers are
    /// made, so the load's extra may use their share) or while it runs (when the file's
    /// metadata is no longer mapped, so the running part may use its share), whichever is
    /// larger.
    pub fn bytes(&self, buffers: u64) -> u64 {
        let running = self.running().saturating_sub(self.unmapped_after_load);
        running.max(self.loading().saturating_sub(buffers))
    }
}

/// The type and row length (`ne0`, the dot products' length) of each layer matrix: the
/// weights of the layers' matrix multiplications.
fn layer_matrices(gguf: &GgufModel) -> impl Iterator<Item = (crate::gguf::GgmlType, u64)> + '_ {
    gguf.tensors()
        .iter()
        .filter(|t| t.name.starts_with("blk.") && t.dims.len() >= 2)
        .map(|t| (t.ggml_type, t.dims[0]))
}

/// The vocabulary size the file declares (its token list).
fn n_vocab(gguf: &GgufModel) -> u64 {
    gguf.array_len("tokenizer.ggml.tokens").unwrap_or(0) as u64
}

/// Sizes candidates with llama.cpp's dry run and adds what the dry run does not see.
#[derive(Debug)]
pub struct LlamaSizer {
    probe: MemoryProbe,
    /// Resident bytes of the weights: the mapped file (llama.cpp faults all of it in at load)
    /// plus any weights repacked into anonymous memory.
    weights: u64,
    /// Process baseline (binary, libraries, allocator) measured before loading, plus the
    /// model's host structures (vocabulary, tokenizer, metadata: measured as what loading the
    /// dry-run model added). Each candidate adds its [`RuntimeMargin`].
    measured_overhead: u64,
    /// Vocabulary entries (for the runtime margin).
    n_vocab: u64,
    /// The model has attention layers (KV cells).
    kv_cells: bool,
    /// The largest K and V head sizes of the attention layers.
    head_dims: (u64, u64),
    /// The model file carries a chat template.
    model_template: bool,
    /// What the process runs next to the model.
    extras: RuntimeExtras,
    /// Only a window of the weights is resident ([`LlamaSizer::stream_weights`]).
    streaming: bool,
    /// Bytes of the file outside its tensor data (metadata), unmapped once the model loads.
    unmapped_after_load: u64,
    /// The dry-run load's peak above what the model keeps, when measured.
    load_extra: Option<u64>,
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
    /// `general.architecture` (for the graphs' node capacity).
    arch: String,
    /// Tensors in the model (for the graphs' node capacity).
    n_tensors: u64,
    /// Bytes a micro-batch token takes in the CPU work buffer.
    cpu_work_per_token: u64,
    /// The most attention heads of a layer.
    n_head: u64,
    /// The model's embedding width (for the graphs' embedding inputs).
    n_embd: u64,
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
        let before = ProcessMemory::current();
        let baseline = before.rss;
        let probe = MemoryProbe::new(path, model_params)?;
        // The dry-run model holds everything llama.cpp keeps on the host for a model but its
        // weights and buffers: the vocabulary and tokenizer (in proportion to n_vocab), the
        // metadata and tensor descriptions. The real load allocates the same again.
        // What the loader freed again (the GGUF metadata it parsed) goes back first, so that
        // only what the model keeps is counted.
        let loaded = ProcessMemory::current();
        crate::ffi::release_free_heap();
        let after = ProcessMemory::current();
        let model_host = after.rss.saturating_sub(baseline);
        // The dry-run load's own peak above what it keeps, when the process had not been
        // higher before (then the high-water mark is the load's).
        let load_extra = (loaded.peak_rss > before.peak_rss).then(|| {
            loaded
                .peak_rss
                .saturating_sub(baseline)
                .saturating_sub(model_host)
        });
        tracing::info!(
            baseline,
            baseline_anon = before.rss_anon,
            baseline_file = before.rss_file,
            model_host,
            model_host_anon = after.rss_anon.saturating_sub(before.rss_anon),
            load_extra,
            "process memory before planning"
        );
        let mapped = gguf.file_size();
        let repacked = probe.repacked_bytes();
        let spec = crate::ModelCacheSpec::from_gguf(gguf);
        // Unknown heads: as wide as the widest common ones (Gemma's 256).
        let head_dims = spec.as_ref().map_or((256, 256), |s| {
            s.layers
                .iter()
                .filter(|l| l.n_head_kv > 0)
                .fold((0, 0), |(k, v), l| {
                    (k.max(l.head_dim_k), v.max(l.head_dim_v))
                })
        });
        let weights = mapped.saturating_add(repacked);
        Ok(LlamaSizer {
            probe,
            weights,
            repacked,
            measured_overhead: baseline.saturating_add(model_host),
            n_vocab: n_vocab(gguf),
            kv_cells: spec
                .as_ref()
                .map_or(true, |s| s.layers.iter().any(|l| l.n_head_kv > 0)),
            head_dims,
            model_template: gguf.get("tokenizer.chat_template").is_some(),
            extras: RuntimeExtras::default(),
            streaming: false,
            unmapped_after_load: mapped.saturating_sub(gguf.tensor_data_span()),
            load_extra,
            model_host,
            choices: RunChoices::threads(threads),
            adapters: 0,
            n_outputs_max: None,
            embeddings: 0,
            arch: gguf.architecture().unwrap_or_default().to_owned(),
            n_tensors: gguf.tensors().len() as u64,
            cpu_work_per_token: margin::cpu_work_bytes_per_token(layer_matrices(gguf)),
            n_head: gguf.arch_u64_or_max("attention.head_count").unwrap_or(0),
            n_embd: gguf.arch_u64("embedding_length").unwrap_or(0),
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
        self.streaming = true;
        // A streamed model is mapped without populating it: its metadata is never resident.
        self.unmapped_after_load = 0;
    }

    /// Counts what the process runs next to the model (`extras`) in the runtime margin.
    pub fn with_extras(mut self, extras: RuntimeExtras) -> LlamaSizer {
        self.extras = extras;
        self
    }

    /// The runtime margin's inputs for `candidate`.
    pub fn runtime_margin(&self, candidate: &Candidate) -> RuntimeMargin {
        RuntimeMargin {
            n_vocab: self.n_vocab,
            n_ctx: candidate.n_ctx,
            kv_cells: self.kv_cells,
            head_dims: self.head_dims,
            n_batch: candidate.n_batch,
            n_ubatch: candidate.n_ubatch,
            n_seq: candidate.n_seq,
            threads: self.choices.threads.max(self.choices.threads_batch).max(1) as u32,
            chat_template: self.model_template || self.extras.named_template,
            grammar: self.extras.grammar,
            http_server: self.extras.http_server,
            argmax_sampling: self.extras.argmax_sampling,
            streaming: self.streaming,
            graph_metadata: crate::ffi::graph_metadata_bytes(margin::graph_max_nodes(
                &self.arch,
                self.n_tensors,
                u64::from(candidate.n_ubatch.min(candidate.n_ctx)),
            )),
            cpu_work_per_token: self.cpu_work_per_token,
            attention_work_per_token: if candidate.flash_attn || !self.kv_cells {
                0
            } else {
                // Every cell of the context may be in view (the scores are f16 for an f16 V).
                u64::from(candidate.n_ctx) * self.n_head * 2
            },
            verbose_log: tracing::enabled!(target: "llama_core::budget", tracing::Level::INFO),
            unmapped_after_load: self.unmapped_after_load,
            load_measured: self.load_extra,
        }
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
        let buffers = sizes.kv + sizes.compute + sizes.output;
        let margin = self.runtime_margin(candidate).bytes(buffers);
        // Only where the whole graph runs on the CPU: with a device, the scheduler copies
        // graph inputs between backends.
        let on_cpu_only = candidate.gpu_layers == 0 && sizes.device == Default::default();
        let compute_unwritten = if on_cpu_only {
            margin::unwritten_embedding_inputs(
                &self.arch,
                self.n_embd,
                u64::from(candidate.n_ubatch.min(candidate.n_ctx)),
            )
            .min(sizes.compute)
        } else {
            0
        };
        Ok(Breakdown {
            weights: self.weights,
            kv: sizes.kv,
            compute: sizes.compute,
            compute_unwritten,
            output: sizes.output,
            overhead: self.measured_overhead.saturating_add(margin),
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
/// reservations (the engine's and the server's thread stacks, allocator arenas) count against
/// `RLIMIT_DATA` before they are resident. The compute threads' stacks are added apart
/// ([`thread_stack_reservation`] each).
pub const BACKSTOP_SLACK: u64 = 128 << 20;

/// Address space one compute thread's stack reserves, which `RLIMIT_DATA` counts before any of
/// it is touched: glibc (and so llama.cpp's OpenMP threads) gives a new thread a stack of the
/// soft stack limit (`RLIMIT_STACK`, 8 MiB by default); 32 MiB when that is unlimited.
/// Without it, 16 threads under `--max-mem` failed to start (`libgomp: Thread creation
/// failed`) and the process aborted. `OMP_STACKSIZE` (or `GOMP_STACKSIZE`) sets the OpenMP
/// threads' stacks instead; the larger of the two is counted.
pub fn thread_stack_reservation() -> u64 {
    use rustix::process::{getrlimit, Resource};
    let limit = getrlimit(Resource::Stack).current.unwrap_or(32 << 20);
    let omp = ["OMP_STACKSIZE", "GOMP_STACKSIZE"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find_map(|value| omp_stack_size(&value));
    limit.max(omp.unwrap_or(0))
}

/// An `OMP_STACKSIZE` value in bytes: a number with an optional unit `B`, `K`, `M` or `G`
/// (either case; kibibytes without one), as libgomp reads it. `None` when it is not one.
pub fn omp_stack_size(value: &str) -> Option<u64> {
    let value = value.trim();
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let number: u64 = value[..digits].parse().ok()?;
    let unit = match value[digits..].trim() {
        "" | "k" | "K" => 1 << 10,
        "b" | "B" => 1,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(unit)
}

/// Caps the process's data segment (`RLIMIT_DATA`: heap and private writable mappings, which
/// is where llama.cpp's KV cache and compute buffers live; the read-only mapping of the model
/// file is not counted) at the planned anonymous memory plus [`BACKSTOP_SLACK`] plus the stacks
/// of `threads` compute threads. An unplanned large allocation then fails (llama.cpp reports
/// it as an error) instead of growing until the kernel's OOM killer ends the process. Returns
/// the limit set.
pub fn install_data_limit(plan: &Plan, mapped_weights: u64, threads: u32) -> std::io::Result<u64> {
    // Streamed weights are planned below the file size; either way they are file-backed.
    let mapped = mapped_weights.min(plan.breakdown.weights);
    let stacks = u64::from(threads.max(1)).saturating_mul(thread_stack_reservation());
    // The compute buffer's unwritten inputs are never resident but are allocated.
    install_data_limit_bytes(
        plan.breakdown
            .total()
            .saturating_add(plan.breakdown.compute_unwritten)
            .saturating_sub(mapped)
            .saturating_add(stacks),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// A generated 1024-token model at `n_ctx`, as the shapes test runs it.
    fn small(n_ctx: u32) -> RuntimeMargin {
        RuntimeMargin {
            n_vocab: 1024,
            n_ctx,
            kv_cells: true,
            n_batch: 2048,
            n_ubatch: 512,
            n_seq: 1,
            threads: 2,
            head_dims: (64, 64),
            // 1024 nodes; 512-wide rows in Q8_0 blocks.
            graph_metadata: 420 << 10,
            cpu_work_per_token: margin::cpu_work_bytes_per_token([(
                crate::gguf::GgmlType::Q8_0,
                512,
            )]),
            ..RuntimeMargin::default()
        }
    }

    #[test]
    fn greedy_decoding_counts_less_for_the_sampler_but_a_server_or_grammar_does_not() {
        let sampled = small(2048);
        let vocab = 1024 * margin::BYTES_PER_VOCAB_TOKEN;
        assert_eq!(sampled.sampler_bytes(), vocab);
        let greedy = RuntimeMargin {
            argmax_sampling: true,
            ..sampled
        };
        let argmax = 1024 * margin::ARGMAX_BYTES_PER_VOCAB_TOKEN;
        assert_eq!(greedy.sampler_bytes(), argmax);
        assert_eq!(sampled.running() - greedy.running(), vocab - argmax);
        for other in [
            RuntimeMargin {
                http_server: true,
                ..greedy
            },
            RuntimeMargin {
                grammar: true,
                ..greedy
            },
        ] {
            assert_eq!(other.sampler_bytes(), vocab);
        }
    }

    #[test]
    fn token_batches_leave_two_embedding_inputs_unwritten_in_whole_pages() {
        // Width 256 at -ub 512: two inputs of 512 KiB, measured as two untouched runs of
        // 508 KiB (the first and last page of each may hold a neighbour's bytes).
        assert_eq!(
            margin::unwritten_embedding_inputs("llama", 256, 512),
            (2 * 508) << 10
        );
        assert_eq!(
            margin::unwritten_embedding_inputs("mamba", 512, 512),
            (2 * 1020) << 10
        );
        // SmolLM2 (576 wide): 1,152 KiB an input, 1,148 counted.
        assert_eq!(
            margin::unwritten_embedding_inputs("llama", 576, 512),
            (2 * 1148) << 10
        );
        // Without a mixed-batch input, one.
        assert_eq!(
            margin::unwritten_embedding_inputs("cogvlm", 256, 512),
            508 << 10
        );
        assert_eq!(margin::unwritten_embedding_inputs("eagle3", 256, 512), 0);
        // An input of less than two pages holds no page of its own for certain.
        assert_eq!(margin::unwritten_embedding_inputs("llama", 256, 4), 0);
        assert_eq!(margin::unwritten_embedding_inputs("llama", 0, 512), 0);
    }

    #[test]
    fn the_runtime_margin_grows_with_the_context_and_never_shrinks() {
        let mut last = 0;
        for n_ctx in (256..=65536).step_by(256) {
            let m = small(n_ctx).bytes(0);
            assert!(m >= last, "{n_ctx}: {m} < {last}");
            last = m;
        }
        // -c 512 (one micro-batch): the fixed part, the per-token parts and two threads.
        let at_512 = small(512).running();
        // Two graphs' metadata; the work buffer holds 512 tokens of 512-wide rows in 8-bit
        // blocks (more than two threads' flash-attention scratch).
        let work = 512 * (512 * 292 / 256);
        assert!(work > 2 * margin::flash_attention_scratch(64, 64));
        assert_eq!(small(512).cpu_work_buffer(), work);
        assert_eq!(
            at_512,
            margin::FIXED
                + margin::BUILD_CODE
                + 512 * (margin::BYTES_PER_CONTEXT_TOKEN + margin::BYTES_PER_KV_CELL + 512)
                + 1024 * 32
                + 2 * margin::BYTES_PER_THREAD
                + 2 * (420 << 10)
                + work
        );
        // 64-wide heads: 96 KiB of scratch a thread, as ggml's plan sizes it.
        assert_eq!(margin::flash_attention_scratch(64, 64), 96 << 10);
        assert!(at_512 - margin::BUILD_CODE < 5 * MIB, "{at_512}");
        // Longer than a micro-batch: a third graph.
        assert_eq!(
            small(1024).running() - small(512).running(),
            512 * (margin::BYTES_PER_CONTEXT_TOKEN + margin::BYTES_PER_KV_CELL + 512)
                + margin::MULTI_UBATCH
                + (420 << 10)
        );
        // A recurrent model has no KV cells.
        let mamba = RuntimeMargin {
            kv_cells: false,
            ..small(8192)
        };
        assert_eq!(
            small(8192).running() - mamba.running(),
            8192 * margin::BYTES_PER_KV_CELL
        );
    }

    #[test]
    fn graphs_are_sized_for_eight_nodes_a_tensor_at_least_1024() {
        assert_eq!(margin::graph_max_nodes("llama", 39, 512), 1024);
        assert_eq!(margin::graph_max_nodes("gemma3", 314, 512), 2512);
        assert_eq!(margin::graph_max_nodes("mamba", 291, 512), 2328);
        // Architectures llama.cpp gives larger graphs.
        assert_eq!(margin::graph_max_nodes("qwen3next", 100, 512), 40 * 512);
        assert_eq!(margin::graph_max_nodes("qwen3next", 1000, 512), 32_000);
        assert_eq!(margin::graph_max_nodes("kimi-k3", 10, 512), 160 * 512);
        // The metadata is counted per graph kept: deeper models plan more.
        let deep = RuntimeMargin {
            graph_metadata: 3 * (420 << 10),
            ..small(2048)
        };
        assert_eq!(deep.running() - small(2048).running(), 3 * 2 * (420 << 10));
    }

    #[test]
    fn the_work_buffer_holds_the_widest_converted_row_or_the_flash_attention_scratch() {
        use crate::gguf::GgmlType;
        let per_token = |matrices: &[(GgmlType, u64)]| {
            margin::cpu_work_bytes_per_token(matrices.iter().copied())
        };
        // Quantised weights: 8-bit blocks of the widest row; f16: 2 bytes; f32: no conversion.
        assert_eq!(
            per_token(&[(GgmlType::Q4_0, 256), (GgmlType::Q8_0, 2048)]),
            2336
        );
        assert_eq!(per_token(&[(GgmlType::F16, 1024)]), 2048);
        assert_eq!(per_token(&[(GgmlType::F32, 4096)]), 0);
        assert_eq!(per_token(&[]), 0);
        // Sixteen threads' scratch outgrows a micro-batch of narrow rows: one buffer, the larger.
        let many_threads = RuntimeMargin {
            threads: 16,
            ..small(512)
        };
        assert_eq!(
            many_threads.cpu_work_buffer(),
            16 * margin::flash_attention_scratch(64, 64)
        );
    }

    #[test]
    fn without_flash_attention_the_work_buffer_holds_the_scores() {
        // 4 heads at -c 2048: a micro-batch token's scores are 2048 x 4 f16 values.
        let off = RuntimeMargin {
            attention_work_per_token: 2048 * 4 * 2,
            ..small(2048)
        };
        assert_eq!(off.cpu_work_buffer(), 512 * 2048 * 4 * 2);
        assert!(off.running() > small(2048).running());
    }

    #[test]
    fn each_extra_adds_its_part() {
        let base = small(2048);
        let with = |f: fn(&mut RuntimeMargin)| {
            let mut m = base;
            f(&mut m);
            m.running() - base.running()
        };
        assert_eq!(with(|m| m.chat_template = true), margin::CHAT_TEMPLATE);
        assert_eq!(with(|m| m.streaming = true), margin::STREAMING);
        assert_eq!(with(|m| m.verbose_log = true), margin::VERBOSE_LOG);
        assert_eq!(
            with(|m| m.grammar = true),
            1024 * margin::GRAMMAR_BYTES_PER_VOCAB_TOKEN
        );
        // A server may be asked for a grammar by any request.
        assert_eq!(
            with(|m| m.http_server = true),
            margin::HTTP_SERVER + 1024 * margin::GRAMMAR_BYTES_PER_VOCAB_TOKEN
        );
        assert_eq!(
            with(|m| m.n_seq = 4),
            3 * 1024 * margin::BYTES_PER_VOCAB_TOKEN
        );
    }

    #[test]
    fn the_load_peak_may_use_the_share_of_buffers_made_after_it() {
        let large_vocab = RuntimeMargin {
            n_vocab: 262_144,
            load_measured: Some(20 * MIB),
            ..small(512)
        };
        let load = 20 * MIB + margin::LOAD_MEASURED_ROOM;
        assert!(load > large_vocab.running());
        // Small buffers: the load's peak decides.
        assert_eq!(large_vocab.bytes(3 * MIB), load - 3 * MIB);
        // Buffers larger than the load's extra: the run decides.
        assert_eq!(large_vocab.bytes(load), large_vocab.running());
        // A 1024-token vocabulary's load never decides.
        assert_eq!(small(512).bytes(0), small(512).running());
    }

    #[test]
    fn omp_stack_sizes_read_as_libgomp_reads_them() {
        assert_eq!(omp_stack_size("512"), Some(512 << 10));
        assert_eq!(omp_stack_size(" 64M "), Some(64 << 20));
        assert_eq!(omp_stack_size("2g"), Some(2 << 30));
        assert_eq!(omp_stack_size("4096 B"), Some(4096));
        assert_eq!(omp_stack_size("16k"), Some(16 << 10));
        for bad in ["", "M", "12X", "-4M", "1.5M"] {
            assert_eq!(omp_stack_size(bad), None, "{bad:?}");
        }
        assert!(thread_stack_reservation() >= 1 << 20);
    }

    #[test]
    fn a_measured_load_replaces_the_vocabulary_model() {
        let measured = RuntimeMargin {
            n_vocab: 262_144,
            load_measured: Some(9 * MIB),
            ..small(512)
        };
        assert_eq!(measured.loading(), 9 * MIB + margin::LOAD_MEASURED_ROOM);
        let modelled = RuntimeMargin {
            load_measured: None,
            ..measured
        };
        assert_eq!(
            modelled.loading(),
            262_144 * margin::LOAD_BYTES_PER_VOCAB_TOKEN
        );
    }

    #[test]
    fn the_unmapped_metadata_relieves_only_the_running_peak() {
        let unmapped = 6 * MIB;
        let large_vocab = RuntimeMargin {
            n_vocab: 262_144,
            unmapped_after_load: unmapped,
            ..small(8192)
        };
        let mapped = RuntimeMargin {
            unmapped_after_load: 0,
            ..large_vocab
        };
        // The run decides (large buffers): its part is smaller by the unmapped bytes.
        let buffers = 64 * MIB;
        assert_eq!(mapped.bytes(buffers) - large_vocab.bytes(buffers), unmapped);
        // The load decides (no buffers yet): the metadata is still mapped then.
        assert_eq!(
            large_vocab.bytes(0),
            large_vocab.loading().max(large_vocab.running() - unmapped)
        );
        assert!(large_vocab.bytes(0) >= large_vocab.loading());
    }
}
