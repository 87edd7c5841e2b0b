//! What the user asks the planner for: a [`PlanRequest`] (the budget and the context
//! settings from the command line) and its validation into a starting [`Candidate`].

use serde::Serialize;

use super::breakdown::Candidate;
use super::error::PlanError;
use crate::cache_spec::KvCacheType;

/// llama.cpp pads contexts to this many cells; degraded contexts are multiples of it.
pub const CTX_STEP: u32 = 256;

/// The smallest context the planner degrades to by default ([`PlanRequest::ctx_floor`]).
pub const DEFAULT_CTX_FLOOR: u32 = 512;

/// The smallest micro-batch the planner degrades to by default
/// ([`PlanRequest::ubatch_floor`]).
pub const DEFAULT_UBATCH_FLOOR: u32 = 32;

/// Whether flash attention may be used (`--flash-attn auto|on|off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashAttnMode {
    /// Let llama.cpp decide. The planner plans with flash attention on (what llama.cpp's
    /// auto picks wherever the device supports it, including the CPU), and may quantise
    /// the V cache.
    #[default]
    Auto,
    /// Always on; the planner may quantise the V cache.
    On,
    /// Always off; the planner never quantises the V cache (llama.cpp needs flash
    /// attention for a quantised V cache).
    Off,
}

impl FlashAttnMode {
    /// Whether flash attention may be on, and so whether a quantised V cache is allowed.
    pub fn allows_flash_attn(self) -> bool {
        !matches!(self, FlashAttnMode::Off)
    }
}

/// The inputs of [`plan`](super::plan): a memory budget and the requested context settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanRequest {
    /// The budget in bytes of host RAM (`--max-mem`); must be non-zero.
    pub budget: u64,
    /// Requested context in tokens (`--ctx-size`); 0 means the model's `n_ctx_train`.
    pub n_ctx: u32,
    /// Logical batch size (`--batch-size`); non-zero.
    pub n_batch: u32,
    /// Micro-batch size (`--ubatch-size`); non-zero, clamped to `n_batch`.
    pub n_ubatch: u32,
    /// Parallel sequences; non-zero.
    pub n_seq: u32,
    /// K cache type.
    pub type_k: KvCacheType,
    /// V cache type; a quantised type needs flash attention (not [`FlashAttnMode::Off`]).
    pub type_v: KvCacheType,
    /// Whether flash attention may be used.
    pub flash_attn: FlashAttnMode,
    /// Refuse instead of degrading when the request does not fit.
    pub strict: bool,
    /// The smallest context to degrade to ([`DEFAULT_CTX_FLOOR`]); non-zero. A request below
    /// it is never reduced.
    pub ctx_floor: u32,
    /// The smallest micro-batch to degrade to ([`DEFAULT_UBATCH_FLOOR`]); non-zero.
    pub ubatch_floor: u32,
    /// Layers offloaded to the GPU, passed through to the sizer.
    pub gpu_layers: i32,
    /// The model's training context (`{arch}.context_length`), 0 if unknown. It is the
    /// default context and the upper end of the context searches.
    pub n_ctx_train: u32,
}

impl PlanRequest {
    /// A request with llama.cpp's defaults: the training context, `n_batch` 2048,
    /// `n_ubatch` 512, one sequence, f16 K and V, flash attention auto, not strict, the
    /// default floors, no GPU layers.
    pub fn new(budget: u64, n_ctx_train: u32) -> PlanRequest {
        PlanRequest {
            budget,
            n_ctx: 0,
            n_batch: 2048,
            n_ubatch: 512,
            n_seq: 1,
            type_k: KvCacheType::F16,
            type_v: KvCacheType::F16,
            flash_attn: FlashAttnMode::Auto,
            strict: false,
            ctx_floor: DEFAULT_CTX_FLOOR,
            ubatch_floor: DEFAULT_UBATCH_FLOOR,
            gpu_layers: 0,
            n_ctx_train,
        }
    }

    /// The context actually requested: `n_ctx`, or `n_ctx_train` when `n_ctx` is 0.
    pub fn effective_n_ctx(&self) -> u32 {
        if self.n_ctx == 0 {
            self.n_ctx_train
        } else {
            self.n_ctx
        }
    }

    /// The upper end of context searches: the larger of `n_ctx_train` and the requested
    /// context, rounded down to a multiple of [`CTX_STEP`] (at least one step).
    pub fn ctx_search_limit(&self) -> u32 {
        let top = self.n_ctx_train.max(self.effective_n_ctx());
        (top - top % CTX_STEP).max(CTX_STEP)
    }

    /// Checks the request and returns the candidate it asks for (`n_ctx` resolved,
    /// `n_ubatch` clamped to `n_batch`, flash attention on unless it is off).
    pub(crate) fn validate<E: std::error::Error + 'static>(
        &self,
    ) -> Result<Candidate, PlanError<E>> {
        let invalid = |name: &'static str, value: String, expected: &'static str| {
            Err(PlanError::InvalidRequest {
                name,
                value,
                expected,
            })
        };
        if self.budget == 0 {
            return invalid(
                "--max-mem",
                "0".into(),
                "a non-zero size such as 512M or 2G",
            );
        }
        if self.effective_n_ctx() == 0 {
            return invalid(
                "--ctx-size",
                "0".into(),
                "a positive number of tokens (the model does not give its training context)",
            );
        }
        for (name, value) in [
            ("--batch-size", self.n_batch),
            ("--ubatch-size", self.n_ubatch),
            ("the number of sequences", self.n_seq),
            ("the context floor", self.ctx_floor),
            ("the ubatch floor", self.ubatch_floor),
        ] {
            if value == 0 {
                return invalid(name, "0".into(), "a positive number");
            }
        }
        if is_quantised(self.type_v) && !self.flash_attn.allows_flash_attn() {
            return invalid(
                "--cache-type-v",
                self.type_v.name().into(),
                "f32, f16 or bf16 when flash attention is off (a quantised V cache needs flash attention)",
            );
        }
        Ok(Candidate {
            n_ctx: self.effective_n_ctx(),
            n_batch: self.n_batch,
            n_ubatch: self.n_ubatch.min(self.n_batch),
            n_seq: self.n_seq,
            type_k: self.type_k,
            type_v: self.type_v,
            flash_attn: self.flash_attn.allows_flash_attn(),
            gpu_layers: self.gpu_layers,
        })
    }
}

/// Whether `t` is a block-quantised type (not f32, f16 or bf16).
pub fn is_quantised(t: KvCacheType) -> bool {
    !matches!(t, KvCacheType::F32 | KvCacheType::F16 | KvCacheType::BF16)
}
