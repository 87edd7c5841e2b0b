//! The search: measuring candidates through a per-call cache, binary searches over the
//! context and micro-batch, and the ladder of degradations (see the module docs of
//! [`planner`](super)).

use std::collections::HashMap;

use super::breakdown::{Breakdown, BufferSizer, Candidate};
use super::request::{FlashAttnMode, PlanRequest, CTX_STEP};
use super::Degradation;
use crate::cache_spec::KvCacheType;

/// Where the degradation ladder ended.
pub(crate) enum Outcome {
    /// A configuration fits.
    Fits {
        /// The configuration.
        candidate: Candidate,
        /// Its measurement.
        breakdown: Breakdown,
        /// What differs from the request, in the order of degradation.
        changes: Vec<Degradation>,
        /// The largest context that fits with the same other settings.
        max_ctx: u32,
    },
    /// Nothing fits; this is the smallest configuration tried.
    Smallest {
        /// Its measurement.
        breakdown: Breakdown,
    },
}

/// A planning session: the sizer, the budget, and every measurement made so far.
pub(crate) struct Search<'s, S: BufferSizer> {
    sizer: &'s mut S,
    budget: u64,
    cache: HashMap<Candidate, Breakdown>,
}

impl<'s, S: BufferSizer> Search<'s, S> {
    /// A search against `budget` with no measurements yet.
    pub(crate) fn new(sizer: &'s mut S, budget: u64) -> Self {
        Search {
            sizer,
            budget,
            cache: HashMap::new(),
        }
    }

    /// Measures `candidate`, asking the sizer only the first time.
    pub(crate) fn measure(&mut self, candidate: &Candidate) -> Result<Breakdown, S::Error> {
        if let Some(b) = self.cache.get(candidate) {
            return Ok(*b);
        }
        let b = self.sizer.measure(candidate)?;
        self.cache.insert(*candidate, b);
        Ok(b)
    }

    /// Whether `candidate` fits the budget.
    pub(crate) fn fits(&mut self, candidate: &Candidate) -> Result<bool, S::Error> {
        Ok(self.measure(candidate)?.fits(self.budget))
    }

    /// The largest context in `{lo}` ∪ {multiples of [`CTX_STEP`] in `(lo, hi]`} with which
    /// `base` fits, by binary search; `lo` must be known to fit.
    pub(crate) fn largest_ctx_from(
        &mut self,
        base: &Candidate,
        lo: u32,
        hi: u32,
    ) -> Result<u32, S::Error> {
        let mut best = lo;
        let (mut l, mut r) = (lo / CTX_STEP + 1, hi / CTX_STEP);
        while l <= r {
            let mid = l + (r - l) / 2;
            if self.fits(&with_ctx(base, mid * CTX_STEP))? {
                best = mid * CTX_STEP;
                l = mid + 1;
            } else {
                // mid >= 1 because l >= 1.
                r = mid - 1;
            }
        }
        Ok(best)
    }

    /// Walks the ladder of degradations for a `requested` candidate that does not fit:
    /// for each cache type (the requested one, then q8_0, then q4_0 when flash attention is
    /// allowed), the largest micro-batch (halving down to the floor) with which the context
    /// floor fits, then the largest context with it.
    pub(crate) fn degrade(
        &mut self,
        req: &PlanRequest,
        requested: &Candidate,
    ) -> Result<Outcome, S::Error> {
        let floor = req.ctx_floor.min(requested.n_ctx);
        let limit = req.ctx_search_limit();
        let ubatches = ubatch_ladder(requested.n_ubatch, req.ubatch_floor);
        let mut smallest = None;
        for (type_k, type_v) in cache_ladder(requested.type_k, requested.type_v, req.flash_attn) {
            let at = |n_ubatch: u32| Candidate {
                n_ctx: floor,
                n_ubatch,
                type_k,
                type_v,
                ..*requested
            };
            // The least micro-batch at the context floor: if that does not fit, no
            // micro-batch does with these cache types.
            let least = at(ubatches[ubatches.len() - 1]);
            let b = self.measure(&least)?;
            if !b.fits(self.budget) {
                smallest = Some(b);
                continue;
            }
            // The first (largest) micro-batch that fits at the floor.
            let (mut l, mut r) = (0, ubatches.len() - 1);
            while l < r {
                let mid = l + (r - l) / 2;
                if self.fits(&at(ubatches[mid]))? {
                    r = mid;
                } else {
                    l = mid + 1;
                }
            }
            let base = at(ubatches[l]);
            let as_requested = base.n_ubatch == requested.n_ubatch
                && type_k == requested.type_k
                && type_v == requested.type_v;
            // With the requested settings the requested context is known not to fit.
            let hi = if as_requested {
                (requested.n_ctx - 1) / CTX_STEP * CTX_STEP
            } else {
                limit
            };
            let max_ctx = self.largest_ctx_from(&base, floor, hi)?;
            let n_ctx = if max_ctx >= requested.n_ctx {
                requested.n_ctx
            } else {
                max_ctx
            };
            let mut candidate = with_ctx(&base, n_ctx);
            let mut breakdown = self.measure(&candidate)?;
            if !breakdown.fits(self.budget) {
                // Only with a sizer that is not monotonic: fall back to what was measured.
                candidate = with_ctx(&base, max_ctx);
                breakdown = self.measure(&candidate)?;
            }
            let changes = changes(requested, &candidate);
            return Ok(Outcome::Fits {
                candidate,
                breakdown,
                changes,
                max_ctx,
            });
        }
        Ok(Outcome::Smallest {
            breakdown: smallest.unwrap_or_default(),
        })
    }
}

/// `base` with context `n_ctx`.
pub(crate) fn with_ctx(base: &Candidate, n_ctx: u32) -> Candidate {
    Candidate { n_ctx, ..*base }
}

/// `u0`, `u0 / 2`, … while not below `floor` (just `u0` if it already is).
fn ubatch_ladder(u0: u32, floor: u32) -> Vec<u32> {
    let mut ladder = vec![u0];
    let mut u = u0;
    while u / 2 >= floor && u / 2 > 0 {
        u /= 2;
        ladder.push(u);
    }
    ladder
}

/// The cache types to try: the requested pair, then each of K and V narrowed to q8_0,
/// then to q4_0, when flash attention is allowed; a step that narrows nothing is skipped.
fn cache_ladder(
    type_k: KvCacheType,
    type_v: KvCacheType,
    flash_attn: FlashAttnMode,
) -> Vec<(KvCacheType, KvCacheType)> {
    let mut ladder = vec![(type_k, type_v)];
    if !flash_attn.allows_flash_attn() {
        return ladder;
    }
    for target in [KvCacheType::Q8_0, KvCacheType::Q4_0] {
        let (k, v) = ladder[ladder.len() - 1];
        let next = (narrower(k, target), narrower(v, target));
        if next != (k, v) {
            ladder.push(next);
        }
    }
    ladder
}

/// `target` if it takes fewer bytes per element than `current`, else `current`.
fn narrower(current: KvCacheType, target: KvCacheType) -> KvCacheType {
    let bytes = |t: KvCacheType| t.row_size(256).unwrap_or(u64::MAX);
    if bytes(target) < bytes(current) {
        target
    } else {
        current
    }
}

/// The degradations that turn `requested` into `chosen`, in the order of degradation.
fn changes(requested: &Candidate, chosen: &Candidate) -> Vec<Degradation> {
    let mut changes = Vec::new();
    if chosen.n_ctx != requested.n_ctx {
        changes.push(Degradation::Context {
            from: requested.n_ctx,
            to: chosen.n_ctx,
        });
    }
    if chosen.n_ubatch != requested.n_ubatch {
        changes.push(Degradation::Ubatch {
            from: requested.n_ubatch,
            to: chosen.n_ubatch,
        });
    }
    if (chosen.type_k, chosen.type_v) != (requested.type_k, requested.type_v) {
        changes.push(Degradation::CacheType {
            from_k: requested.type_k,
            from_v: requested.type_v,
            to_k: chosen.type_k,
            to_v: chosen.type_v,
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ubatch_ladder_halves_to_the_floor() {
        assert_eq!(ubatch_ladder(512, 32), vec![512, 256, 128, 64, 32]);
        assert_eq!(ubatch_ladder(500, 32), vec![500, 250, 125, 62]);
        assert_eq!(ubatch_ladder(16, 32), vec![16]);
        assert_eq!(ubatch_ladder(1, 1), vec![1]);
    }

    #[test]
    fn cache_ladder_narrows_only() {
        use KvCacheType::{F16, Q4_0, Q5_1, Q8_0};
        assert_eq!(
            cache_ladder(F16, F16, FlashAttnMode::Auto),
            vec![(F16, F16), (Q8_0, Q8_0), (Q4_0, Q4_0)]
        );
        assert_eq!(cache_ladder(F16, F16, FlashAttnMode::Off), vec![(F16, F16)]);
        assert_eq!(
            cache_ladder(Q5_1, F16, FlashAttnMode::On),
            vec![(Q5_1, F16), (Q5_1, Q8_0), (Q4_0, Q4_0)]
        );
        assert_eq!(
            cache_ladder(Q4_0, Q4_0, FlashAttnMode::On),
            vec![(Q4_0, Q4_0)]
        );
    }
}
