//! An owned llama.cpp sampler chain built from [`SamplingParams`].

use std::ptr::NonNull;

use llama_sys as sys;

use super::{Context, Token};
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
    /// Builds the chain. `params` must have passed [`SamplingParams::validate`].
    pub fn new(params: &SamplingParams, n_vocab: u32) -> SamplerChain {
        // SAFETY: plain constructor calls; every sampler added is owned by the chain, which is
        // freed once in Drop. A null chain only happens on allocation failure, which aborts.
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
                let last_n = if params.repeat_last_n < 0 {
                    n_vocab as i32
                } else {
                    params.repeat_last_n
                };
                add(sys::llama_sampler_init_penalties(
                    n_vocab as i32,
                    last_n,
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                ));
            }
            if params.is_greedy() {
                add(sys::llama_sampler_init_greedy());
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
                add(sys::llama_sampler_init_temp(params.temperature));
                add(sys::llama_sampler_init_dist(params.seed));
            }
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
