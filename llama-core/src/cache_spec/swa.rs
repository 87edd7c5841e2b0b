//! Which layers of a model use sliding-window attention, per llama.cpp's rules.
//!
//! llama.cpp enables SWA per architecture (src/models/*.cpp): each has a default
//! pattern period, sometimes a default window, and sometimes SWA only when the file
//! sets `{arch}.attention.sliding_window > 0`. A `sliding_window_pattern` key in the
//! file overrides the period, or gives a per-layer bool array.

use crate::gguf::{GgufModel, Value};

use super::CacheSpecError;

/// How an architecture uses sliding-window attention in llama.cpp.
struct ArchSwa {
    name: &'static str,
    /// Default pattern period.
    period: u64,
    /// Whether the first layer of each period (rather than the last) is global.
    dense_first: bool,
    /// Window used when `sliding_window` is absent (`None`: the key is required).
    default_window: Option<u64>,
    /// SWA only when `sliding_window` is present and > 0.
    needs_window: bool,
}

const fn swa(
    name: &'static str,
    period: u64,
    dense_first: bool,
    default_window: Option<u64>,
    needs_window: bool,
) -> ArchSwa {
    ArchSwa {
        name,
        period,
        dense_first,
        default_window,
        needs_window,
    }
}

/// llama.cpp's per-architecture SWA set-up (src/models/*.cpp, `load_swa_pattern`).
const ARCH_SWA: &[ArchSwa] = &[
    swa("gemma2", 2, false, Some(4096), false),
    swa("gemma3", 6, false, None, true),
    swa("gemma3n", 5, false, None, false),
    swa("gpt-oss", 2, false, None, false),
    swa("cohere2", 4, false, None, false),
    swa("cohere2moe", 4, true, None, false),
    swa("llama4", 4, false, Some(8192), false),
    swa("exaone-moe", 4, false, Some(128), false),
    swa("muse-glimmer", 4, false, None, false),
    swa("olmo2", 4, false, None, true),
    swa("plamo3", 8, false, None, true),
    swa("afmoe", 4, false, None, true),
    swa("mellum", 4, false, None, true),
    swa("laguna", 4, true, None, true),
    swa("smallthinker", 4, true, None, true),
];

/// Which layers slide, and the window, following llama.cpp's per-architecture rules.
pub(super) fn swa_layers(
    model: &GgufModel,
    arch: &str,
    n_layers: u32,
) -> Result<(Vec<bool>, Option<u64>), CacheSpecError> {
    let window_key = format!("{arch}.attention.sliding_window");
    let pattern_key = format!("{arch}.attention.sliding_window_pattern");
    let window = model.get_u64(&window_key);
    let none = Ok((vec![false; n_layers as usize], None));

    let (period, dense_first, window) = match ARCH_SWA.iter().find(|a| a.name == arch) {
        Some(rule) => {
            if rule.needs_window && window.is_none_or(|w| w == 0) {
                return none;
            }
            if arch == "llama4" && window == Some(0) {
                return none;
            }
            let window = match (rule.name, window.or(rule.default_window)) {
                // smallthinker forces 4096 whatever the file says.
                ("smallthinker", _) => 4096,
                (_, Some(w)) => w,
                (_, None) => return Err(CacheSpecError::MissingKey { key: window_key }),
            };
            (rule.period, rule.dense_first, window)
        }
        // Unknown to this table: honour explicit metadata only.
        None => match window {
            Some(w) if w > 0 && model.get(&pattern_key).is_some() => (0, false, w),
            _ => return none,
        },
    };

    let expected = u64::from(n_layers);
    let sliding = match model.get(&pattern_key) {
        Some(Value::Array(a)) => match a.to_bool_vec() {
            Some(v) if v.len() as u64 == expected => v,
            _ => {
                return Err(CacheSpecError::BadLayerArray {
                    key: pattern_key,
                    expected,
                    found: a.len() as u64,
                })
            }
        },
        other => {
            let n = match other {
                Some(v) => v.as_u64().ok_or(CacheSpecError::MissingKey {
                    key: pattern_key.clone(),
                })?,
                None => period,
            };
            (0..u64::from(n_layers))
                .map(|il| is_swa_layer(il, n, dense_first))
                .collect()
        }
    };
    Ok((sliding, Some(window)))
}

/// llama.cpp's `set_swa_pattern`: with period `n`, layer `il` slides iff `n == 0` or it
/// is not the period's global layer (the last one, or the first if `dense_first`).
pub fn is_swa_layer(il: u64, n: u64, dense_first: bool) -> bool {
    if n == 0 {
        return true;
    }
    if dense_first {
        il % n != 0
    } else {
        il % n < n - 1
    }
}
