//! The memory planner: picks a context configuration that fits a hard budget
//! (`--max-mem`) before anything is allocated, degrading the request when it must.
//!
//! # How it works
//!
//! [`plan`] turns a [`PlanRequest`] into a starting [`Candidate`] (context 0 means the
//! training context; `n_ubatch` is clamped to `n_batch`; flash attention is planned on
//! unless it is [`FlashAttnMode::Off`]) and asks a [`BufferSizer`] what it needs. The
//! sizer is llama.cpp's `no_alloc` dry run in the CLI (about 50 ms a call), so every
//! candidate is measured at most once per call (a small cache) and the searches are
//! binary. A candidate fits when its [`Breakdown::total`] (weights, KV cache, compute
//! and output buffers, overhead; host RAM) is at most the budget.
//!
//! # Order of degradation
//!
//! When the request does not fit and [`PlanRequest::strict`] is false:
//!
//! 1. **Context**: the largest context, down to [`PlanRequest::ctx_floor`] (512), that
//!    fits; below the request contexts are multiples of 256.
//! 2. **Micro-batch**: if not even the context floor fits, `n_ubatch` is halved, down to
//!    [`PlanRequest::ubatch_floor`] (32), to the largest value with which the floor fits;
//!    the context is then again the largest that fits. `n_batch` is kept (it stays
//!    at least `n_ubatch`).
//! 3. **Quantised KV cache**, only when flash attention is allowed (a quantised V cache
//!    needs it): K and V become q8_0 (types already narrower are kept), then q4_0; at each
//!    step the micro-batch is restored to the largest that fits and the context to the
//!    largest that fits.
//!
//! Each change is recorded as a [`Degradation`] (context, micro-batch, cache type, in
//! that order) in [`Plan::degraded`]. If nothing fits, [`PlanError::DoesNotFit`] reports
//! the smallest configuration (floors, narrowest cache) and suggests raising `--max-mem`
//! to what it needs. With `strict` nothing is changed: the error carries the requested
//! configuration's needs and, as a [`Suggestion`], the flags the degradation would have
//! used.
//!
//! # Assumptions and cost
//!
//! The searches assume the total never shrinks when the context or micro-batch grows or
//! the cache types get wider. Every returned plan was measured and fits regardless. The
//! number of sizer calls is at most `1 + Σ over cache steps (1 + ⌈log2 ubatch steps⌉) +
//! ⌈log2(contexts)⌉ + 2`: under 30 for a 128K training context. A sizer error aborts
//! planning ([`PlanError::Sizer`]).

mod breakdown;
mod error;
mod request;
mod search;

use std::fmt;

use serde::Serialize;

pub use self::breakdown::{Breakdown, BufferSizer, Candidate};
pub use self::error::{max_mem_arg, suggested_max_mem, PlanError, Suggestion, SUGGESTED_ROOM};
pub use self::request::{
    is_quantised, FlashAttnMode, PlanRequest, CTX_STEP, DEFAULT_CTX_FLOOR, DEFAULT_UBATCH_FLOOR,
};

use self::search::{Outcome, Search};
use crate::cache_spec::KvCacheType;

/// A configuration that fits the budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The configuration to create.
    pub candidate: Candidate,
    /// What it needs, as measured.
    pub breakdown: Breakdown,
    /// The budget it fits.
    pub budget: u64,
    /// What was changed from the request, in the order of degradation; empty if it fit
    /// as requested.
    pub degraded: Vec<Degradation>,
    /// The largest context that fits with the plan's other settings: the plan's context
    /// or a larger multiple of 256, up to the larger of the training and requested
    /// contexts. Always `Some` for a plan from [`plan`].
    pub max_ctx_that_fits: Option<u32>,
}

impl Plan {
    /// Bytes of the budget left over.
    pub fn headroom(&self) -> u64 {
        self.budget.saturating_sub(self.breakdown.total())
    }

    /// One line per degradation for stderr, e.g.
    /// `reduced --ctx-size from 8192 to 2048 to fit --max-mem 512M`.
    pub fn announcements(&self) -> Vec<String> {
        self.degraded
            .iter()
            .map(|d| format!("{d} to fit --max-mem {}", budget_arg(self.budget)))
            .collect()
    }
}

/// One change the planner made to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Degradation {
    /// The context was reduced.
    Context {
        /// Requested context.
        from: u32,
        /// Planned context.
        to: u32,
    },
    /// The micro-batch was reduced.
    Ubatch {
        /// Requested micro-batch.
        from: u32,
        /// Planned micro-batch.
        to: u32,
    },
    /// The KV cache was quantised.
    CacheType {
        /// Requested K type.
        from_k: KvCacheType,
        /// Requested V type.
        from_v: KvCacheType,
        /// Planned K type.
        to_k: KvCacheType,
        /// Planned V type.
        to_v: KvCacheType,
    },
}

impl Degradation {
    /// The flags that request the degraded setting directly, e.g. `--ctx-size 2048`,
    /// `--ubatch-size 128`, `--cache-type q8_0` (or `--cache-type-k X --cache-type-v Y`
    /// when K and V differ).
    pub fn flag(&self) -> String {
        match *self {
            Degradation::Context { to, .. } => format!("--ctx-size {to}"),
            Degradation::Ubatch { to, .. } => format!("--ubatch-size {to}"),
            Degradation::CacheType { to_k, to_v, .. } if to_k == to_v => {
                format!("--cache-type {to_k}")
            }
            Degradation::CacheType { to_k, to_v, .. } => {
                format!("--cache-type-k {to_k} --cache-type-v {to_v}")
            }
        }
    }
}

/// `reduced --ctx-size from 8192 to 2048`, `reduced --ubatch-size from 512 to 128`,
/// `changed --cache-type from f16 to q8_0`.
impl fmt::Display for Degradation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Degradation::Context { from, to } => {
                write!(f, "reduced --ctx-size from {from} to {to}")
            }
            Degradation::Ubatch { from, to } => {
                write!(f, "reduced --ubatch-size from {from} to {to}")
            }
            Degradation::CacheType {
                from_k,
                from_v,
                to_k,
                to_v,
            } if from_k == from_v && to_k == to_v => {
                write!(f, "changed --cache-type from {from_k} to {to_k}")
            }
            Degradation::CacheType {
                from_k,
                from_v,
                to_k,
                to_v,
            } => write!(
                f,
                "changed --cache-type-k from {from_k} to {to_k} and --cache-type-v from {from_v} to {to_v}"
            ),
        }
    }
}

/// Plans a configuration for `req` that fits its budget, degrading it in the documented
/// order unless `req.strict` (see the module docs).
pub fn plan<S: BufferSizer>(req: &PlanRequest, sizer: &mut S) -> Result<Plan, PlanError<S::Error>> {
    let requested = req.validate()?;
    let mut search = Search::new(sizer, req.budget);
    let asked = search.measure(&requested).map_err(PlanError::Sizer)?;
    if asked.fits(req.budget) {
        let max_ctx = search
            .largest_ctx_from(&requested, requested.n_ctx, req.ctx_search_limit())
            .map_err(PlanError::Sizer)?;
        return Ok(Plan {
            candidate: requested,
            breakdown: asked,
            budget: req.budget,
            degraded: Vec::new(),
            max_ctx_that_fits: Some(max_ctx),
        });
    }
    let outcome = search.degrade(req, &requested).map_err(PlanError::Sizer)?;
    let does_not_fit = |breakdown: Breakdown, suggestion| PlanError::DoesNotFit {
        required: breakdown.total(),
        budget: req.budget,
        breakdown,
        suggestion,
    };
    match outcome {
        Outcome::Fits { changes, .. } if req.strict => {
            Err(does_not_fit(asked, Suggestion::Reconfigure { changes }))
        }
        Outcome::Fits {
            candidate,
            breakdown,
            changes,
            max_ctx,
        } => Ok(Plan {
            candidate,
            breakdown,
            budget: req.budget,
            degraded: changes,
            max_ctx_that_fits: Some(max_ctx),
        }),
        Outcome::Smallest { .. } if req.strict => Err(does_not_fit(
            asked,
            Suggestion::RaiseMaxMem {
                needed: asked.total(),
                smallest: false,
            },
        )),
        Outcome::Smallest { breakdown } => Err(does_not_fit(
            breakdown,
            Suggestion::RaiseMaxMem {
                needed: breakdown.total(),
                smallest: true,
            },
        )),
    }
}

/// The largest context, a multiple of 256 between 256 and the larger of `n_ctx_train` and
/// the requested context, that fits `req.budget` with the request's other settings
/// (micro-batch, cache types, flash attention) unchanged; `None` if 256 does not fit.
///
/// A binary search: it assumes that needs grow with the context (about 10 sizer calls
/// for a 128K training context).
pub fn largest_context<S: BufferSizer>(
    req: &PlanRequest,
    sizer: &mut S,
) -> Result<Option<u32>, PlanError<S::Error>> {
    let requested = req.validate()?;
    let mut search = Search::new(sizer, req.budget);
    let base = search::with_ctx(&requested, CTX_STEP);
    if !search.fits(&base).map_err(PlanError::Sizer)? {
        return Ok(None);
    }
    search
        .largest_ctx_from(&base, CTX_STEP, req.ctx_search_limit())
        .map(Some)
        .map_err(PlanError::Sizer)
}

/// `bytes` as the user would type it: `2G`, `512M`, `64K` when exact, else bytes.
fn budget_arg(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    UNITS
        .iter()
        .find(|(unit, _)| bytes % unit == 0)
        .map(|(unit, suffix)| format!("{}{suffix}", bytes / unit))
        .unwrap_or_else(|| bytes.to_string())
}
