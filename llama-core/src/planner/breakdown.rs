//! What the planner measures: a [`Candidate`] configuration, the [`Breakdown`] of the host
//! memory it needs, and the [`BufferSizer`] that measures one from the other.

use std::fmt;

use serde::Serialize;

use crate::cache_spec::KvCacheType;
use crate::size::ByteSize;

/// One concrete configuration of a context: what the planner asks the sizer about and
/// what a [`Plan`](super::Plan) tells the caller to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Candidate {
    /// Context in tokens (llama.cpp pads it to a multiple of 256).
    pub n_ctx: u32,
    /// Logical batch size.
    pub n_batch: u32,
    /// Micro-batch size (at most `n_batch`).
    pub n_ubatch: u32,
    /// Parallel sequences.
    pub n_seq: u32,
    /// K cache type.
    pub type_k: KvCacheType,
    /// V cache type.
    pub type_v: KvCacheType,
    /// Whether flash attention is on.
    pub flash_attn: bool,
    /// Layers offloaded to the GPU.
    pub gpu_layers: i32,
}

/// The host memory a [`Candidate`] needs, in bytes, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Breakdown {
    /// Model weights held in host RAM.
    pub weights: u64,
    /// The KV cache.
    pub kv: u64,
    /// Compute (scheduler) buffers, as llama.cpp reserves them.
    pub compute: u64,
    /// Bytes of `compute` that are never written, so never resident: the graph inputs for
    /// batches of vector embeddings, which token batches leave untouched
    /// (`budget::margin::unwritten_embedding_inputs`). Not counted in [`Breakdown::total`].
    pub compute_unwritten: u64,
    /// The logits/embeddings output buffer.
    pub output: u64,
    /// Everything else the sizer accounts for (context structures, allocator slack).
    pub overhead: u64,
    /// A second context that serves embeddings next to the generating one (`serve
    /// --embeddings`): its KV cache, compute buffers and output buffer (llama.cpp keeps
    /// logits for every output row there, and every token of an embedding input is one).
    pub embeddings: u64,
}

impl Breakdown {
    /// The sum of all parts (saturating), counting of the compute buffers only what is ever
    /// written.
    pub fn total(&self) -> u64 {
        [
            self.kv,
            self.compute.saturating_sub(self.compute_unwritten),
            self.output,
            self.overhead,
            self.embeddings,
        ]
        .into_iter()
        .fold(self.weights, u64::saturating_add)
    }

    /// Whether the total is within `budget`.
    pub fn fits(&self, budget: u64) -> bool {
        self.total() <= budget
    }
}

/// `weights 98.00 MiB, KV 720.00 MiB, compute 300.00 MiB (2.24 MiB never written), output
/// 0.19 MiB, overhead 1.00 MiB` (the part in brackets only when some of the compute buffers is
/// never written).
impl fmt::Display for Breakdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "weights {}, KV {}, compute {}",
            ByteSize(self.weights),
            ByteSize(self.kv),
            ByteSize(self.compute),
        )?;
        if self.compute_unwritten > 0 {
            write!(f, " ({} never written)", ByteSize(self.compute_unwritten))?;
        }
        write!(
            f,
            ", output {}, overhead {}",
            ByteSize(self.output),
            ByteSize(self.overhead)
        )?;
        if self.embeddings > 0 {
            write!(f, ", embeddings context {}", ByteSize(self.embeddings))?;
        }
        Ok(())
    }
}

/// Sizes one candidate configuration without allocating (implemented with llama.cpp's
/// `no_alloc` dry run by the caller; tests use arithmetic models).
///
/// The planner assumes the total is monotonic: it does not shrink when `n_ctx` or
/// `n_ubatch` grows, nor when the cache types get wider. Each call is assumed to be
/// expensive (tens of milliseconds), so the planner measures each candidate at most once
/// per planning call and binary-searches.
pub trait BufferSizer {
    /// Why a dry run failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Measures `candidate`.
    fn measure(&mut self, candidate: &Candidate) -> Result<Breakdown, Self::Error>;
}

impl<S: BufferSizer + ?Sized> BufferSizer for &mut S {
    type Error = S::Error;

    fn measure(&mut self, candidate: &Candidate) -> Result<Breakdown, Self::Error> {
        (**self).measure(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritten_compute_is_shown_but_not_in_the_total() {
        let b = Breakdown {
            weights: 100 << 20,
            kv: 4 << 20,
            compute: 8 << 20,
            compute_unwritten: 1 << 20,
            output: 0,
            overhead: 20 << 20,
            embeddings: 0,
        };
        assert_eq!(b.total(), 131 << 20);
        assert!(b.fits(131 << 20) && !b.fits((131 << 20) - 1));
        let text = b.to_string();
        assert!(
            text.contains("compute 8.00 MiB (1.00 MiB never written)"),
            "{text}"
        );
        let none = Breakdown {
            compute_unwritten: 0,
            ..b
        };
        assert_eq!(none.total(), 132 << 20);
        assert!(!none.to_string().contains("never written"));
    }
}
