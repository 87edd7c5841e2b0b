//! KV-cache geometry of a model, read from GGUF metadata, and the cache sizes it implies.
//!
//! [`ModelCacheSpec::from_gguf`] reads, per layer, the number of KV heads, the K and V
//! head sizes and whether the layer uses sliding-window attention (SWA), following
//! llama.cpp's `load_hparams` (this revision of llama.cpp):
//!
//! * `{arch}.block_count` layers; `{arch}.attention.head_count` (number or per-layer
//!   array); `{arch}.attention.head_count_kv` (number or per-layer array, default
//!   head_count);
//! * head sizes `{arch}.attention.key_length` / `value_length`, defaulting to
//!   `embedding_length / head_count` (of layer 0); SWA layers may override them with
//!   `key_length_swa` / `value_length_swa`;
//! * SWA only for architectures llama.cpp runs with SWA, with their default window and
//!   pattern; `{arch}.attention.sliding_window_pattern` is either a per-layer bool array
//!   or a period `n`: layer `il` is SWA iff `n == 0 || il % n < n - 1` (the last layer of
//!   each period is global; `dense_first` architectures make the first one global).
//!
//! [`ModelCacheSpec::kv_bytes`] then sizes the cache as llama.cpp allocates it: the
//! context is padded to 256 cells; full-attention layers hold `n_ctx` cells; SWA layers
//! hold `GGML_PAD(min(n_ctx_seq, n_swa * (unified ? n_seq : 1) + n_ubatch), 256)` cells
//! per stream unless `swa_full` (llama-kv-cache-iswa.cpp); each cell of a layer holds a
//! K row of `n_head_kv * head_dim_k` and a V row of `n_head_kv * head_dim_v` elements.
//!
//! Not modelled: KV sharing between layers (gemma3n), MLA caches (DeepSeek), MTP
//! layers, and the V-cache widening llama.cpp applies without flash attention when
//! layers have different V widths.

use serde::Serialize;

mod cache_type;
mod swa;

pub use self::cache_type::KvCacheType;
pub use self::swa::is_swa_layer;

use self::swa::swa_layers;
use crate::gguf::{GgufModel, Value};

/// llama.cpp pads context sizes and SWA cache sizes to this many cells.
pub const KV_PAD: u64 = 256;

/// An error building a [`ModelCacheSpec`] or sizing a cache.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheSpecError {
    /// `general.architecture` is missing.
    #[error("general.architecture is missing")]
    NoArchitecture,
    /// A required metadata key is missing or not a number.
    #[error("metadata key {key:?} is missing or not a non-negative integer")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A per-layer array has the wrong length or element type.
    #[error("metadata key {key:?} is a per-layer array of {found} entries (or not integers/bools), expected {expected}")]
    BadLayerArray {
        /// The key.
        key: String,
        /// Number of layers.
        expected: u64,
        /// Entries found.
        found: u64,
    },
    /// A value is out of range (zero heads, absurd layer count, …).
    #[error("metadata key {key:?} has unusable value {value}")]
    BadValue {
        /// The key.
        key: String,
        /// The value found.
        value: u64,
    },
    /// A cache type's block size does not divide a layer's head size (llama.cpp refuses
    /// such contexts).
    #[error("cache type {cache_type} needs head sizes divisible by {block_size}, layer {layer} has {head_dim}")]
    HeadDimNotBlockAligned {
        /// The cache type.
        cache_type: KvCacheType,
        /// Its block size.
        block_size: u64,
        /// The layer.
        layer: u32,
        /// The head size.
        head_dim: u64,
    },
    /// A size computation overflowed.
    #[error("KV cache size overflows 64 bits")]
    Overflow,
}

/// The KV geometry of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LayerCacheSpec {
    /// Layer index.
    pub index: u32,
    /// KV heads (0 for layers without a KV cache, e.g. recurrent layers).
    pub n_head_kv: u64,
    /// Elements per K head.
    pub head_dim_k: u64,
    /// Elements per V head.
    pub head_dim_v: u64,
    /// Whether the layer uses sliding-window attention.
    pub sliding: bool,
}

impl LayerCacheSpec {
    /// K-row and V-row bytes of one cell (one token) of this layer.
    fn cell_bytes(&self, type_k: KvCacheType, type_v: KvCacheType) -> Result<u64, CacheSpecError> {
        if self.n_head_kv == 0 {
            return Ok(0);
        }
        let row = |t: KvCacheType, head_dim: u64| -> Result<u64, CacheSpecError> {
            let block_size = t.ggml_type().block_size();
            if head_dim % block_size != 0 {
                return Err(CacheSpecError::HeadDimNotBlockAligned {
                    cache_type: t,
                    block_size,
                    layer: self.index,
                    head_dim,
                });
            }
            let n = self
                .n_head_kv
                .checked_mul(head_dim)
                .ok_or(CacheSpecError::Overflow)?;
            t.row_size(n).ok_or(CacheSpecError::Overflow)
        };
        let k = row(type_k, self.head_dim_k)?;
        let v = row(type_v, self.head_dim_v)?;
        k.checked_add(v).ok_or(CacheSpecError::Overflow)
    }
}

/// Bytes split between full-attention ("global") and sliding-window layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct KvSplit {
    /// Bytes in full-attention layers.
    pub global: u64,
    /// Bytes in sliding-window layers.
    pub sliding: u64,
}

impl KvSplit {
    /// `global + sliding` (saturating).
    pub fn total(&self) -> u64 {
        self.global.saturating_add(self.sliding)
    }
}

/// The context settings that determine a KV cache's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KvCacheParams {
    /// Requested context size in tokens (all sequences together).
    pub n_ctx: u64,
    /// Micro-batch size (`n_ubatch`).
    pub n_ubatch: u64,
    /// Number of parallel sequences (`n_seq_max`).
    pub n_seq: u64,
    /// K cache type.
    pub type_k: KvCacheType,
    /// V cache type.
    pub type_v: KvCacheType,
    /// Whether SWA layers get a full-size cache (`swa_full`).
    pub swa_full: bool,
    /// Whether all sequences share one cache stream (`kv_unified`).
    pub unified: bool,
}

impl KvCacheParams {
    /// `n_ctx` with llama_context_default_params()'s other settings: `n_ubatch` 512,
    /// one sequence, f16 K and V, `swa_full` true, `kv_unified` false.
    pub fn new(n_ctx: u64) -> KvCacheParams {
        KvCacheParams {
            n_ctx,
            n_ubatch: 512,
            n_seq: 1,
            type_k: KvCacheType::F16,
            type_v: KvCacheType::F16,
            swa_full: true,
            unified: false,
        }
    }
}

/// The size of a KV cache for given [`KvCacheParams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KvCacheSize {
    /// Context after llama.cpp's padding (cells per stream × streams).
    pub n_ctx_padded: u64,
    /// Streams (1 if unified, else `n_seq`).
    pub n_stream: u64,
    /// Cells per stream in full-attention layers.
    pub global_cells: u64,
    /// Cells per stream in sliding-window layers (0 if there are none).
    pub sliding_cells: u64,
    /// Bytes, by layer kind.
    pub bytes: KvSplit,
}

impl KvCacheSize {
    /// Total bytes.
    pub fn total_bytes(&self) -> u64 {
        self.bytes.total()
    }
}

/// The KV-cache geometry of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelCacheSpec {
    /// `general.architecture`.
    pub architecture: String,
    /// Number of layers (`{arch}.block_count`).
    pub n_layers: u32,
    /// Per-layer geometry.
    pub layers: Vec<LayerCacheSpec>,
    /// Sliding window size in tokens (`n_swa`), when any layer slides.
    pub sliding_window: Option<u64>,
}

impl ModelCacheSpec {
    /// Reads the KV geometry from `model`'s metadata.
    pub fn from_gguf(model: &GgufModel) -> Result<ModelCacheSpec, CacheSpecError> {
        let arch = model
            .architecture()
            .ok_or(CacheSpecError::NoArchitecture)?
            .to_owned();
        let key = |suffix: &str| format!("{arch}.{suffix}");
        let required = |suffix: &str| {
            let k = key(suffix);
            model
                .get_u64(&k)
                .ok_or(CacheSpecError::MissingKey { key: k })
        };

        let block_count_key = key("block_count");
        let n_layers = required("block_count")?;
        let n_layers = u32::try_from(n_layers)
            .ok()
            .filter(|&n| n <= 1 << 16)
            .ok_or(CacheSpecError::BadValue {
                key: block_count_key,
                value: n_layers,
            })?;

        let n_head = per_layer(model, &key("attention.head_count"), n_layers)?.ok_or(
            CacheSpecError::MissingKey {
                key: key("attention.head_count"),
            },
        )?;
        let n_head_kv =
            per_layer(model, &key("attention.head_count_kv"), n_layers)?.unwrap_or(n_head.clone());

        let n_head0 = n_head.first().copied().unwrap_or(0);
        let default_dim = |suffix: &str| -> Result<u64, CacheSpecError> {
            match model.get_u64(&key(suffix)) {
                Some(d) => Ok(d),
                None if n_head0 == 0 => Ok(0),
                None => Ok(required("embedding_length")? / n_head0),
            }
        };
        let head_dim_k = default_dim("attention.key_length")?;
        let head_dim_v = default_dim("attention.value_length")?;
        let head_dim_k_swa = model
            .get_u64(&key("attention.key_length_swa"))
            .unwrap_or(head_dim_k);
        let head_dim_v_swa = model
            .get_u64(&key("attention.value_length_swa"))
            .unwrap_or(head_dim_v);

        let (sliding, sliding_window) = swa_layers(model, &arch, n_layers)?;

        let layers = (0..n_layers)
            .map(|il| {
                let i = il as usize;
                let is_swa = sliding.get(i).copied().unwrap_or(false);
                LayerCacheSpec {
                    index: il,
                    n_head_kv: n_head_kv.get(i).copied().unwrap_or(0),
                    head_dim_k: if is_swa { head_dim_k_swa } else { head_dim_k },
                    head_dim_v: if is_swa { head_dim_v_swa } else { head_dim_v },
                    sliding: is_swa,
                }
            })
            .collect();
        Ok(ModelCacheSpec {
            architecture: arch,
            n_layers,
            layers,
            sliding_window,
        })
    }

    /// Number of sliding-window layers.
    pub fn n_sliding_layers(&self) -> usize {
        self.layers.iter().filter(|l| l.sliding).count()
    }

    /// Number of full-attention layers.
    pub fn n_global_layers(&self) -> usize {
        self.layers.iter().filter(|l| !l.sliding).count()
    }

    /// Bytes one token (one cell in every layer) takes, by layer kind.
    pub fn kv_bytes_per_token_split(
        &self,
        type_k: KvCacheType,
        type_v: KvCacheType,
    ) -> Result<KvSplit, CacheSpecError> {
        let mut split = KvSplit::default();
        for layer in &self.layers {
            let bytes = layer.cell_bytes(type_k, type_v)?;
            let slot = if layer.sliding {
                &mut split.sliding
            } else {
                &mut split.global
            };
            *slot = slot.checked_add(bytes).ok_or(CacheSpecError::Overflow)?;
        }
        Ok(split)
    }

    /// Bytes one token takes summed over all layers: the cost per token of context
    /// while SWA layers are not capped (or with `swa_full`).
    pub fn kv_bytes_per_token(
        &self,
        type_k: KvCacheType,
        type_v: KvCacheType,
    ) -> Result<u64, CacheSpecError> {
        let split = self.kv_bytes_per_token_split(type_k, type_v)?;
        split
            .global
            .checked_add(split.sliding)
            .ok_or(CacheSpecError::Overflow)
    }

    /// Bytes of one block of [`KV_PAD`] (256) cells, by layer kind.
    pub fn kv_bytes_per_block(
        &self,
        type_k: KvCacheType,
        type_v: KvCacheType,
    ) -> Result<KvSplit, CacheSpecError> {
        let per_token = self.kv_bytes_per_token_split(type_k, type_v)?;
        let times = |b: u64| b.checked_mul(KV_PAD).ok_or(CacheSpecError::Overflow);
        Ok(KvSplit {
            global: times(per_token.global)?,
            sliding: times(per_token.sliding)?,
        })
    }

    /// The KV cache llama.cpp allocates for `params` (see the module docs).
    pub fn kv_bytes(&self, params: &KvCacheParams) -> Result<KvCacheSize, CacheSpecError> {
        let n_seq = params.n_seq.max(1);
        let n_ctx = pad(params.n_ctx)?;
        let (n_ctx_seq, n_stream) = if params.unified {
            (n_ctx, 1)
        } else {
            (pad(n_ctx / n_seq)?, n_seq)
        };
        let n_ctx_padded = n_ctx_seq
            .checked_mul(n_stream)
            .ok_or(CacheSpecError::Overflow)?;
        let sliding_cells = match self.sliding_window {
            _ if self.n_sliding_layers() == 0 => 0,
            _ if params.swa_full => n_ctx_seq,
            window => {
                let seqs = if params.unified { n_seq } else { 1 };
                let wanted = window
                    .unwrap_or(0)
                    .checked_mul(seqs)
                    .and_then(|w| w.checked_add(params.n_ubatch))
                    .ok_or(CacheSpecError::Overflow)?;
                pad(n_ctx_seq.min(wanted))?
            }
        };
        let per_token = self.kv_bytes_per_token_split(params.type_k, params.type_v)?;
        let bytes = |per: u64, cells: u64| {
            per.checked_mul(cells)
                .and_then(|b| b.checked_mul(n_stream))
                .ok_or(CacheSpecError::Overflow)
        };
        Ok(KvCacheSize {
            n_ctx_padded,
            n_stream,
            global_cells: n_ctx_seq,
            sliding_cells,
            bytes: KvSplit {
                global: bytes(per_token.global, n_ctx_seq)?,
                sliding: bytes(per_token.sliding, sliding_cells)?,
            },
        })
    }
}

/// `n` rounded up to a multiple of [`KV_PAD`].
fn pad(n: u64) -> Result<u64, CacheSpecError> {
    n.checked_next_multiple_of(KV_PAD)
        .ok_or(CacheSpecError::Overflow)
}

/// A number or per-layer array of numbers, expanded to one value per layer.
fn per_layer(
    model: &GgufModel,
    key: &str,
    n_layers: u32,
) -> Result<Option<Vec<u64>>, CacheSpecError> {
    let expected = u64::from(n_layers);
    match model.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => match a.to_u64_vec() {
            Some(v) if v.len() as u64 == expected => Ok(Some(v)),
            _ => Err(CacheSpecError::BadLayerArray {
                key: key.to_owned(),
                expected,
                found: a.len() as u64,
            }),
        },
        Some(v) => {
            v.as_u64()
                .map(|n| Some(vec![n; n_layers as usize]))
                .ok_or(CacheSpecError::MissingKey {
                    key: key.to_owned(),
                })
        }
    }
}
