//! An owned llama.cpp sampler chain built from [`SamplingParams`].

use std::ptr::NonNull;

use llama_sys as sys;

use super::{Context, Model, Token};
use crate::sampling::SamplingParams;

/// A chain of samplers (penalties, top-k, typical, top-p, min-p, temperature, then a seeded
/// draw or greedy choice), in llama.cpp's usual order. Freed on drop.
pub struct SamplerChain {
    ptr: NonNull<sys::llama_sampler>,
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
            }
        }
    }

    /// Samples from the logits of output `index` (-1: the last) and records the choice.
    pub fn sample(&mut self, ctx: &Context, index: i32) -> Token {
        // SAFETY: both handles are valid; llama.cpp reads the context's logits for `index`.
        unsafe { sys::llama_sampler_sample(self.ptr.as_ptr(), ctx.as_ptr(), index) }
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

impl Drop for SamplerChain {
    fn drop(&mut self) {
        // SAFETY: created by llama_sampler_chain_init, freed only here (it frees its members).
        unsafe { sys::llama_sampler_free(self.ptr.as_ptr()) };
    }
}
