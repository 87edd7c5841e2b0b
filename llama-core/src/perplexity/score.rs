//! The arithmetic of one scored position, as llama-perplexity does it (same float and double
//! steps, so the figures agree): the negative log-likelihood of the next token from a row of
//! logits, the row encoded as 16-bit log-probabilities for a KL-divergence base file, and the
//! comparison of a row with such a base row.

use crate::ffi::Token;

/// What one position contributes to the KL-divergence statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KlRow {
    /// Negative log-likelihood of the next token under the model.
    pub nll: f32,
    /// The same under the base (from the base file).
    pub nll_base: f32,
    /// KL divergence of the model from the base at this position.
    pub kld: f64,
    /// Probability of the next token under the model minus under the base.
    pub p_diff: f32,
    /// Whether both put their highest probability on the same token.
    pub same_top: bool,
}

fn max_of(logits: &[f32]) -> f32 {
    logits.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// `Σ exp(l - max)`, summed in double as llama.cpp does.
fn sum_exp(logits: &[f32], max: f32) -> f64 {
    logits.iter().map(|&l| f64::from((l - max).exp())).sum()
}

/// The negative log-likelihood of `token` under the softmax of `logits` (llama-perplexity's
/// plain mode).
pub fn nll(logits: &[f32], token: Token) -> f64 {
    let max = max_of(logits);
    let log_sum = sum_exp(logits, max).ln();
    -(f64::from(logits[token as usize] - max) - log_sum)
}

/// llama.cpp's `nearest_int`: round to nearest, ties to even.
fn nearest(x: f32) -> i32 {
    x.round_ties_even() as i32
}

/// 16-bit entries of one encoded row for a vocabulary of `n_vocab`: two f32 (scale and
/// minimum log-probability), then one entry per token, padded to an even count.
pub fn encoded_row_len(n_vocab: usize) -> usize {
    2 * n_vocab.div_ceil(2) + 4
}

/// Encodes `logits` as llama-perplexity's base file stores them (log-probabilities within 16
/// of the most likely token, as 16-bit steps above the minimum) into `out`
/// ([`encoded_row_len`] entries) and returns the negative log-likelihood of `token`, computed
/// in single precision as llama.cpp does in this mode.
pub fn encode_row(logits: &[f32], token: Token, out: &mut [u16]) -> f64 {
    let max = max_of(logits);
    let min = logits
        .iter()
        .copied()
        .fold(f32::INFINITY, f32::min)
        .max(max - 16.0);
    let log_sum = sum_exp(logits, max).ln() as f32;
    let min_log_prob = min - max - log_sum;
    let scale = (max - min) / 65535.0;
    let scale_bits = scale.to_bits();
    let min_bits = min_log_prob.to_bits();
    out[0] = scale_bits as u16;
    out[1] = (scale_bits >> 16) as u16;
    out[2] = min_bits as u16;
    out[3] = (min_bits >> 16) as u16;
    let values = &mut out[4..];
    values.fill(0);
    if scale != 0.0 {
        let inv = 1.0 / scale;
        for (v, &l) in values.iter_mut().zip(logits) {
            *v = if l > min {
                nearest(inv * (l - min)) as u16
            } else {
                0
            };
        }
    }
    f64::from(max + log_sum - logits[token as usize])
}

/// Compares `logits` with an encoded base row at the position whose next token is `token`.
pub fn compare_row(logits: &[f32], base: &[u16], token: Token) -> KlRow {
    let mut max = logits[0];
    let mut imax = 0;
    for (i, &l) in logits.iter().enumerate().skip(1) {
        if l > max {
            max = l;
            imax = i;
        }
    }
    let log_sum = sum_exp(logits, max).ln() as f32;
    let scale = f32::from_bits(u32::from(base[0]) | (u32::from(base[1]) << 16));
    let min_log_prob = f32::from_bits(u32::from(base[2]) | (u32::from(base[3]) << 16));
    let values = &base[4..];
    let tok = token as usize;
    let nll = max + log_sum - logits[tok];
    let nll_base = -(scale * f32::from(values[tok]) + min_log_prob);
    let max_log = max + log_sum;
    let mut kld = 0.0f64;
    let mut imax_base = 0;
    let mut p_log_base_max = 0.0f32;
    for (i, (&l, &v)) in logits.iter().zip(values).enumerate() {
        let p_log_base = scale * f32::from(v) + min_log_prob;
        if i == 0 || p_log_base > p_log_base_max {
            p_log_base_max = p_log_base;
            imax_base = i;
        }
        if p_log_base > -16.0 {
            let p_base = p_log_base.exp();
            kld += f64::from(p_base * (p_log_base - l + max_log));
        }
    }
    let p_diff = (-nll).exp() - (-nll_base).exp();
    KlRow {
        nll,
        nll_base,
        kld,
        p_diff,
        same_top: imax == imax_base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_is_the_negative_log_softmax() {
        let logits = [1.0f32, 2.0, 3.0];
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        let expected = -(3.0f64.exp() / z).ln();
        assert!((nll(&logits, 2) - expected).abs() < 1e-6);
        // Uniform logits: ln(n).
        assert!((nll(&[0.5; 8], 3) - 8f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn an_encoded_row_compared_with_itself_has_no_divergence() {
        let logits: Vec<f32> = (0..101)
            .map(|i| ((i * 37) % 23) as f32 * 0.7 - 5.0)
            .collect();
        let mut row = vec![0u16; encoded_row_len(logits.len())];
        assert_eq!(row.len(), 102 + 4);
        let n = encode_row(&logits, 7, &mut row);
        assert!((n - nll(&logits, 7)).abs() < 1e-4, "{n}");
        let same = compare_row(&logits, &row, 7);
        assert!(same.kld.abs() < 1e-4, "{same:?}");
        assert!(same.same_top);
        assert!(same.p_diff.abs() < 1e-4);
        assert!((same.nll - same.nll_base).abs() < 1e-3);
        // A shifted distribution diverges.
        let other: Vec<f32> = logits.iter().rev().copied().collect();
        let diff = compare_row(&other, &row, 7);
        assert!(diff.kld > 0.1, "{diff:?}");
    }

    #[test]
    fn a_flat_row_encodes_to_zero_steps() {
        let mut row = vec![1u16; encoded_row_len(4)];
        encode_row(&[2.0; 4], 0, &mut row);
        assert!(row[4..].iter().all(|&v| v == 0));
    }
}
