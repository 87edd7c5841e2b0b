//! Why planning failed ([`PlanError`]) and what would make the request fit
//! ([`Suggestion`]).

use std::fmt;

use serde::Serialize;

use super::breakdown::Breakdown;
use super::Degradation;
use crate::size::ByteSize;

/// Why [`plan`](super::plan) or [`largest_context`](super::largest_context) returned no plan.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError<E: std::error::Error + 'static> {
    /// Nothing within the rules fits the budget. `required` is the total of `breakdown`:
    /// the requested configuration with `strict`, else the smallest configuration tried.
    #[error(
        "does not fit: needs {} ({breakdown}) but the budget is {}; {suggestion}",
        ByteSize(*required),
        ByteSize(*budget)
    )]
    DoesNotFit {
        /// Bytes needed (always more than `budget`).
        required: u64,
        /// The budget.
        budget: u64,
        /// What the bytes are for.
        breakdown: Breakdown,
        /// A concrete change of flags that would fit.
        suggestion: Suggestion,
    },
    /// The sizer's dry run failed.
    #[error("sizing a configuration failed: {0}")]
    Sizer(#[source] E),
    /// The request makes no sense (zero budget, zero batch, …).
    #[error("invalid value {value} for {name}: expected {expected}")]
    InvalidRequest {
        /// The setting, as the user knows it (a flag name where there is one).
        name: &'static str,
        /// The value given.
        value: String,
        /// What would be accepted.
        expected: &'static str,
    },
}

/// A concrete change of command-line flags that would make a request fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Suggestion {
    /// The request fits after these changes, in the planner's order of degradation
    /// (what planning without `strict` would do).
    Reconfigure {
        /// The changes; never empty.
        changes: Vec<Degradation>,
    },
    /// No configuration within the floors fits: the budget must grow to `needed` bytes.
    RaiseMaxMem {
        /// Bytes the configuration needs.
        needed: u64,
        /// Whether that is the smallest configuration (else the requested one, with
        /// `strict`).
        smallest: bool,
    },
}

impl Suggestion {
    /// The flags to pass instead, e.g. `--ctx-size 2048` or `--max-mem 180M`.
    pub fn flags(&self) -> String {
        match self {
            Suggestion::Reconfigure { changes } => changes
                .iter()
                .map(Degradation::flag)
                .collect::<Vec<_>>()
                .join(" "),
            Suggestion::RaiseMaxMem { needed, .. } => {
                format!("--max-mem {}", suggested_max_mem(*needed))
            }
        }
    }
}

/// `fits with --ctx-size 2048`, or
/// `the smallest configuration needs 180.00 MiB: raise --max-mem to at least 182M`.
impl fmt::Display for Suggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Suggestion::Reconfigure { .. } => write!(f, "fits with {}", self.flags()),
            Suggestion::RaiseMaxMem { needed, smallest } => write!(
                f,
                "the {} configuration needs {}: raise --max-mem to at least {}",
                if *smallest { "smallest" } else { "requested" },
                ByteSize(*needed),
                suggested_max_mem(*needed)
            ),
        }
    }
}

/// Room a suggested `--max-mem` keeps above what the configuration needed: the run that takes
/// the suggestion measures the process's baseline anew, and two processes' baselines differ by
/// up to about 1.2 MiB (a streamed SmolLM2 needed 89.32 MiB in a run after another had
/// needed at most 89 MiB and named `89M`).
pub const SUGGESTED_ROOM: u64 = 2 << 20;

/// The `--max-mem` argument a refusal suggests for a configuration that needs `needed` bytes:
/// [`SUGGESTED_ROOM`] above it, rounded up ([`max_mem_arg`]).
pub fn suggested_max_mem(needed: u64) -> String {
    max_mem_arg(needed.saturating_add(SUGGESTED_ROOM))
}

/// `bytes` as a `--max-mem` argument no smaller than it: `2G` or `512M` when exact, else
/// rounded up to whole MiB (`181M`); sizes under 1 MiB in bytes.
pub fn max_mem_arg(bytes: u64) -> String {
    const K: u64 = 1 << 10;
    const M: u64 = 1 << 20;
    const G: u64 = 1 << 30;
    if bytes < M {
        return bytes.to_string();
    }
    if bytes % G == 0 {
        return format!("{}G", bytes / G);
    }
    let mib = bytes.div_ceil(M);
    if mib % K == 0 {
        format!("{}G", mib / K)
    } else {
        format!("{mib}M")
    }
}
