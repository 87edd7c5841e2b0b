//! An owned llama.cpp sampler chain built from [`SamplingParams`].

use std::ptr::NonNull;

use llama_sys as sys;

use super::grammar::GrammarSampler;
use super::{Context, Model, Token};
use crate::sampling::SamplingParams;

/// A chain of samplers (logit biases, penalties, top-k, typical, top-p, min-p, temperature,
/// then a seeded draw or greedy choice), in llama.cpp's usual order, and optionally a grammar
/// applied before it. Freed on drop.
pub struct SamplerChain {
    ptr: NonNull<sys::llama_sampler>,
    grammar: Option<GrammarSampler>,
    /// The grammar could not take a sampled token (it has no way on): the answer must end.
    grammar_stuck: bool,
    /// Reused candidate array for grammar sampling.
    candidates: Vec<sys::llama_token_data>,
    /// Keep the candidates the chain leaves ([`kept`](Self::kept)): every sample then goes
    /// through the candidate array.
    keep: bool,
    /// The candidates left by the last sample and their probabilities, with `keep`.
    kept: Vec<(Token, f32)>,
}

// SAFETY: the chain is owned exclusively and only used through `&mut self`.
unsafe impl Send for SamplerChain {}

impl std::fmt::Debug for SamplerChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SamplerChain")
    }
}

impl SamplerChain {
    /// Builds the chain for `model` in llama.cpp's order: penalties, DRY, then top-k, typical,
    /// top-p, min-p, XTC, temperature and a seeded draw (or temperature and Mirostat, or greedy).
    /// `n_ctx` is what `-1` means for the penalties' windows. `params` must have passed
    /// [`SamplingParams::validate`].
    pub fn new(params: &SamplingParams, model: &Model, n_ctx: u32) -> SamplerChain {
        SamplerChain::with_extras(params, model, n_ctx, &[], None)
    }

    /// Like [`new`](Self::new), with `logit_bias` added to the logits first (llama.cpp's
    /// logit-bias sampler) and `grammar` restricting the candidates before the chain runs.
    pub fn with_extras(
        params: &SamplingParams,
        model: &Model,
        n_ctx: u32,
        logit_bias: &[(Token, f32)],
        grammar: Option<GrammarSampler>,
    ) -> SamplerChain {
        let n_vocab = model.n_vocab() as i32;
        let window = |n: i32| if n < 0 { n_ctx as i32 } else { n };
        let breakers: Vec<std::ffi::CString> = params
            .dry_sequence_breakers
            .iter()
            .filter_map(|b| std::ffi::CString::new(b.as_str()).ok())
            .collect();
        let mut breaker_ptrs: Vec<*const std::ffi::c_char> =
            breakers.iter().map(|b| b.as_ptr()).collect();
        // SAFETY: plain constructor calls; every sampler added is owned by the chain, which is
        // freed once in Drop. The vocabulary outlives the chain's construction (DRY copies what
        // it needs), and the breaker strings live until after llama_sampler_init_dry returns. A
        // null chain only happens on allocation failure, which aborts.
        unsafe {
            let mut chain_params = sys::llama_sampler_chain_default_params();
            chain_params.no_perf = true;
            let chain = sys::llama_sampler_chain_init(chain_params);
            let add = |s: *mut sys::llama_sampler| {
                if !s.is_null() {
                    sys::llama_sampler_chain_add(chain, s);
                }
            };
            if !logit_bias.is_empty() {
                let biases: Vec<sys::llama_logit_bias> = logit_bias
                    .iter()
                    .filter(|(t, _)| (0..n_vocab).contains(t))
                    .map(|&(token, bias)| sys::llama_logit_bias { token, bias })
                    .collect();
                // llama.cpp copies the biases.
                add(sys::llama_sampler_init_logit_bias(
                    n_vocab,
                    biases.len() as i32,
                    biases.as_ptr(),
                ));
            }
            let penalties_active = params.repeat_penalty != 1.0
                || params.frequency_penalty != 0.0
                || params.presence_penalty != 0.0;
            if penalties_active && params.repeat_last_n != 0 {
                add(sys::llama_sampler_init_penalties(
                    n_vocab,
                    window(params.repeat_last_n),
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                ));
            }
            if params.dry_multiplier > 0.0 && params.dry_penalty_last_n != 0 {
                add(sys::llama_sampler_init_dry(
                    model.vocab(),
                    params.dry_multiplier,
                    params.dry_base,
                    params.dry_allowed_length,
                    window(params.dry_penalty_last_n),
                    breaker_ptrs.as_mut_ptr(),
                    breaker_ptrs.len(),
                ));
            }
            if params.is_greedy() {
                add(sys::llama_sampler_init_greedy());
            } else if params.mirostat == 1 {
                add(sys::llama_sampler_init_temp(params.temperature));
                add(sys::llama_sampler_init_mirostat(
                    n_vocab,
                    params.seed,
                    params.mirostat_tau,
                    params.mirostat_eta,
                    100,
                ));
            } else if params.mirostat == 2 {
                add(sys::llama_sampler_init_temp(params.temperature));
                add(sys::llama_sampler_init_mirostat_v2(
                    params.seed,
                    params.mirostat_tau,
                    params.mirostat_eta,
                ));
            } else {
                if params.top_k > 0 {
                    add(sys::llama_sampler_init_top_k(params.top_k));
                }
                if params.typical_p < 1.0 {
                    add(sys::llama_sampler_init_typical(params.typical_p, 1));
                }
                if params.top_p < 1.0 {
                    add(sys::llama_sampler_init_top_p(params.top_p, 1));
                }
                if params.min_p > 0.0 {
                    add(sys::llama_sampler_init_min_p(params.min_p, 1));
                }
                if params.xtc_probability > 0.0 {
                    add(sys::llama_sampler_init_xtc(
                        params.xtc_probability,
                        params.xtc_threshold,
                        1,
                        params.seed,
                    ));
                }
                add(sys::llama_sampler_init_temp(params.temperature));
                add(sys::llama_sampler_init_dist(params.seed));
            }
            drop(breakers);
            SamplerChain {
                ptr: NonNull::new(chain).expect("llama_sampler_chain_init returned null"),
                grammar,
                grammar_stuck: false,
                candidates: Vec::new(),
                keep: false,
                kept: Vec::new(),
            }
        }
    }

    /// Samples from the logits of output `index` (-1: the last) and records the choice. With
    /// a grammar, the candidates it forbids are removed first and the grammar advances past
    /// the token (an end-of-generation token is never given to it: the answer ends there).
    pub fn sample(&mut self, ctx: &Context, index: i32, model: &Model) -> Token {
        if self.grammar.is_none() && self.keep {
            let Some(token) = ctx.logits(index).and_then(|l| self.sample_from(l, false)) else {
                return 0;
            };
            // SAFETY: valid chain.
            unsafe { sys::llama_sampler_accept(self.ptr.as_ptr(), token) };
            return token;
        }
        if self.grammar.is_none() {
            // SAFETY: both handles are valid; llama.cpp reads the context's logits for `index`.
            return unsafe { sys::llama_sampler_sample(self.ptr.as_ptr(), ctx.as_ptr(), index) };
        }
        let Some(logits) = ctx.logits(index) else {
            self.grammar_stuck = true;
            return 0;
        };
        // As llama.cpp's common sampler: sample without the grammar first and keep the token
        // when the grammar allows it (checking one token is cheap); otherwise sample again
        // from the candidates the grammar allows (checking the whole vocabulary).
        let first = self.sample_from(logits, false);
        let token = match first {
            Some(t) if self.grammar_allows(t) => t,
            _ => match self.sample_from(logits, true) {
                Some(t) if self.grammar_allows(t) => t,
                other => {
                    self.grammar_stuck = true;
                    return other.unwrap_or(0);
                }
            },
        };
        // SAFETY: valid chain.
        unsafe { sys::llama_sampler_accept(self.ptr.as_ptr(), token) };
        if !model.is_end_of_generation(token) {
            if let Some(grammar) = self.grammar.as_mut() {
                if !grammar.accept(token) {
                    self.grammar_stuck = true;
                }
            }
        }
        token
    }

    /// Runs the chain over `logits` (restricted by the grammar first with `constrained`);
    /// the token selected, if any.
    fn sample_from(&mut self, logits: &[f32], constrained: bool) -> Option<Token> {
        self.candidates.clear();
        self.candidates
            .extend(
                logits
                    .iter()
                    .enumerate()
                    .map(|(i, &logit)| sys::llama_token_data {
                        id: i as Token,
                        logit,
                        p: 0.0,
                    }),
            );
        let mut array = sys::llama_token_data_array {
            data: self.candidates.as_mut_ptr(),
            size: self.candidates.len(),
            selected: -1,
            sorted: false,
        };
        if constrained {
            if let Some(grammar) = self.grammar.as_mut() {
                grammar.apply(&mut array);
            }
        }
        // SAFETY: valid chain; `array` points at `size` valid entries of `self.candidates`,
        // which the samplers reorder and shrink in place.
        unsafe { sys::llama_sampler_apply(self.ptr.as_ptr(), &mut array) };
        if self.keep {
            // SAFETY: after the chain, `data` points at `size` valid entries.
            let left = unsafe { std::slice::from_raw_parts(array.data, array.size) };
            self.kept = probabilities(left);
        }
        if array.selected < 0 || array.selected as usize >= array.size {
            return None;
        }
        // SAFETY: `selected` indexes one of the `size` entries `data` points at.
        Some(unsafe { (*array.data.add(array.selected as usize)).id })
    }

    /// Keeps, from now on, the candidates each sample leaves after the whole chain (for
    /// llama-server's `post_sampling_probs`).
    pub fn keep_candidates(&mut self) {
        self.keep = true;
    }

    /// The candidates the last sample left after the whole chain, most likely first, with
    /// their probabilities (a softmax of their final logits: the distribution the token was
    /// drawn from). Empty unless [`keep_candidates`](Self::keep_candidates) was called.
    pub fn kept(&self) -> &[(Token, f32)] {
        &self.kept
    }

    /// Whether the grammar allows `token` next.
    fn grammar_allows(&mut self, token: Token) -> bool {
        let Some(grammar) = self.grammar.as_mut() else {
            return true;
        };
        let mut one = [sys::llama_token_data {
            id: token,
            logit: 1.0,
            p: 0.0,
        }];
        let mut array = sys::llama_token_data_array {
            data: one.as_mut_ptr(),
            size: 1,
            selected: -1,
            sorted: false,
        };
        grammar.apply(&mut array);
        one[0].logit > f32::NEG_INFINITY
    }

    /// Whether the grammar had no token left to allow (or refused the one sampled): the
    /// answer cannot go on.
    pub fn grammar_stuck(&self) -> bool {
        self.grammar_stuck
    }

    /// Records a token (e.g. from the prompt) in the samplers' history, for the penalties.
    pub fn accept(&mut self, token: Token) {
        // SAFETY: valid chain.
        unsafe { sys::llama_sampler_accept(self.ptr.as_ptr(), token) };
    }

    /// Clears the samplers' history.
    pub fn reset(&mut self) {
        // SAFETY: valid chain.
        unsafe { sys::llama_sampler_reset(self.ptr.as_ptr()) };
    }
}

/// The candidates with a probability above zero, most likely first: a softmax of their logits.
fn probabilities(left: &[sys::llama_token_data]) -> Vec<(Token, f32)> {
    let max = left
        .iter()
        .map(|d| d.logit)
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return Vec::new();
    }
    let sum: f64 = left.iter().map(|d| f64::from(d.logit - max).exp()).sum();
    let mut out: Vec<(Token, f32)> = left
        .iter()
        .map(|d| (d.id, (f64::from(d.logit - max).exp() / sum) as f32))
        .filter(|&(_, p)| p > 0.0)
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

impl Drop for SamplerChain {
    fn drop(&mut self) {
        // SAFETY: created by llama_sampler_chain_init, freed only here (it frees its members).
        unsafe { sys::llama_sampler_free(self.ptr.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_candidates_are_a_softmax_most_likely_first() {
        let data = |id, logit| sys::llama_token_data { id, logit, p: 0.0 };
        let left = [
            data(4, 0.0),
            data(7, 2.0_f32.ln()),
            data(9, f32::NEG_INFINITY),
        ];
        let p = probabilities(&left);
        // The banned token (probability 0) is not listed.
        assert_eq!(p.iter().map(|&(t, _)| t).collect::<Vec<_>>(), vec![7, 4]);
        assert!((p[0].1 - 2.0 / 3.0).abs() < 1e-6);
        assert!((p[1].1 - 1.0 / 3.0).abs() < 1e-6);
        assert!(probabilities(&[data(1, f32::NEG_INFINITY)]).is_empty());
        assert!(probabilities(&[]).is_empty());
    }
}
