//! KL-divergence statistics over the scored positions, as llama-perplexity's
//! `--kl-divergence` reports them: both perplexities, their ratio, the mean KL divergence and
//! its percentiles, the change in the next token's probability, and how often both models
//! rank the same token first.

use serde::Serialize;

use super::score::KlRow;

/// Running sums over the positions compared so far.
#[derive(Debug, Clone, Default)]
pub struct KlStats {
    sum_nll: f64,
    sum_nll2: f64,
    sum_nll_base: f64,
    sum_nll_base2: f64,
    sum_nll_nll_base: f64,
    sum_kld: f64,
    sum_kld2: f64,
    sum_p_diff: f64,
    sum_p_diff2: f64,
    sum_p_diff4: f64,
    max_p_diff: f32,
    n_same_top: u64,
    count: u64,
    klds: Vec<f32>,
    p_diffs: Vec<f32>,
}

/// A value and its uncertainty (one standard error).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// The value.
    pub value: f64,
    /// Its standard error.
    pub uncertainty: f64,
}

/// The final statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KlSummary {
    /// Positions compared.
    pub count: u64,
    /// Perplexity of the model.
    pub ppl: Estimate,
    /// Perplexity of the base.
    pub ppl_base: Estimate,
    /// Correlation of the two log-perplexities.
    pub ln_ppl_correlation: f64,
    /// `ln(PPL / PPL(base))`.
    pub ln_ppl_ratio: Estimate,
    /// Mean KL divergence.
    pub kld_mean: Estimate,
    /// KL divergence: maximum, 99.9%, 99%, 95%, 90%, median, 10%, 5%, 1%, 0.1%, minimum.
    pub kld_percentiles: Vec<(String, f64)>,
    /// Mean change of the next token's probability.
    pub p_diff_mean: Estimate,
    /// Root mean square of that change.
    pub p_diff_rms: Estimate,
    /// Largest absolute change.
    pub p_diff_max_abs: f64,
    /// Fraction of positions where both rank the same token first.
    pub same_top: Estimate,
}

/// Mean and standard error from a sum and a sum of squares (0 for fewer than 11 values, as
/// llama.cpp does).
fn mean_and_uncertainty(sum: f64, sum2: f64, count: u64) -> Estimate {
    if count < 1 {
        return Estimate {
            value: 0.0,
            uncertainty: 0.0,
        };
    }
    let n = count as f64;
    let mean = sum / n;
    let var = sum2 / n - mean * mean;
    let uncertainty = if var > 0.0 && count > 10 {
        (var / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    Estimate {
        value: mean,
        uncertainty,
    }
}

fn covariance(a: f64, b: f64, ab: f64, count: u64) -> f64 {
    if count < 10 {
        return 0.0;
    }
    let n = count as f64;
    (ab / n - (a / n) * (b / n)) / (n - 1.0)
}

/// llama.cpp's interpolated percentile of sorted `values`.
fn percentile(values: &[f32], fraction: f32) -> f64 {
    match values {
        [] => 0.0,
        _ if fraction <= 0.0 => f64::from(values[0]),
        _ if fraction >= 1.0 => f64::from(values[values.len() - 1]),
        _ => {
            let p = fraction * (values.len() - 1) as f32;
            let ip = p as usize;
            let frac = p - ip as f32;
            let next = values[(ip + 1).min(values.len() - 1)];
            f64::from((1.0 - frac) * values[ip] + frac * next)
        }
    }
}

fn median(values: &[f32]) -> f64 {
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 0 => f64::from(0.5 * (values[n / 2] + values[n / 2 - 1])),
        _ => f64::from(values[n / 2]),
    }
}

impl KlStats {
    /// Adds one compared position.
    pub fn add(&mut self, row: &KlRow) {
        let (nll, base) = (f64::from(row.nll), f64::from(row.nll_base));
        self.sum_nll += nll;
        self.sum_nll2 += nll * nll;
        self.sum_nll_base += base;
        self.sum_nll_base2 += base * base;
        self.sum_nll_nll_base += nll * base;
        self.sum_kld += row.kld;
        self.sum_kld2 += row.kld * row.kld;
        let p = f64::from(row.p_diff);
        self.sum_p_diff += p;
        let p2 = p * p;
        self.sum_p_diff2 += p2;
        self.sum_p_diff4 += p2 * p2;
        self.max_p_diff = self.max_p_diff.max(row.p_diff.abs());
        self.n_same_top += u64::from(row.same_top);
        self.count += 1;
        self.klds.push(row.kld as f32);
        self.p_diffs.push(row.p_diff);
    }

    /// Positions compared so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The model's perplexity so far.
    pub fn ppl(&self) -> f64 {
        mean_and_uncertainty(self.sum_nll, self.sum_nll2, self.count)
            .value
            .exp()
    }

    /// The mean KL divergence so far.
    pub fn kld_mean(&self) -> f64 {
        mean_and_uncertainty(self.sum_kld, self.sum_kld2, self.count).value
    }

    /// The final statistics.
    pub fn summary(&self) -> KlSummary {
        let n = self.count;
        let log_ppl = mean_and_uncertainty(self.sum_nll, self.sum_nll2, n);
        let log_base = mean_and_uncertainty(self.sum_nll_base, self.sum_nll_base2, n);
        let cov = covariance(self.sum_nll, self.sum_nll_base, self.sum_nll_nll_base, n);
        let ppl = log_ppl.value.exp();
        let ppl_base = log_base.value.exp();
        let ratio_unc = (log_ppl.uncertainty.powi(2) + log_base.uncertainty.powi(2) - 2.0 * cov)
            .max(0.0)
            .sqrt();
        let correlation = if log_ppl.uncertainty > 0.0 && log_base.uncertainty > 0.0 {
            cov / (log_ppl.uncertainty * log_base.uncertainty)
        } else {
            0.0
        };
        let mut klds = self.klds.clone();
        klds.sort_by(f32::total_cmp);
        let kld_percentiles = [
            ("maximum", 1.0),
            ("99.9%", 0.999),
            ("99.0%", 0.99),
            ("95.0%", 0.95),
            ("90.0%", 0.90),
            ("median", -1.0),
            ("10.0%", 0.10),
            ("5.0%", 0.05),
            ("1.0%", 0.01),
            ("0.1%", 0.001),
            ("minimum", 0.0),
        ]
        .into_iter()
        .map(|(name, f)| {
            let v = if f < 0.0 {
                median(&klds)
            } else {
                percentile(&klds, f)
            };
            (name.to_string(), v)
        })
        .collect();
        let mse = mean_and_uncertainty(self.sum_p_diff2, self.sum_p_diff4, n);
        let rms = mse.value.sqrt();
        let same = if n > 0 {
            self.n_same_top as f64 / n as f64
        } else {
            0.0
        };
        KlSummary {
            count: n,
            ppl: Estimate {
                value: ppl,
                uncertainty: ppl * log_ppl.uncertainty,
            },
            ppl_base: Estimate {
                value: ppl_base,
                uncertainty: ppl_base * log_base.uncertainty,
            },
            ln_ppl_correlation: correlation,
            ln_ppl_ratio: Estimate {
                value: log_ppl.value - log_base.value,
                uncertainty: ratio_unc,
            },
            kld_mean: mean_and_uncertainty(self.sum_kld, self.sum_kld2, n),
            kld_percentiles,
            p_diff_mean: mean_and_uncertainty(self.sum_p_diff, self.sum_p_diff2, n),
            p_diff_rms: Estimate {
                value: rms,
                uncertainty: if rms > 0.0 {
                    0.5 / rms * mse.uncertainty
                } else {
                    0.0
                },
            },
            p_diff_max_abs: f64::from(self.max_p_diff),
            same_top: Estimate {
                value: same,
                uncertainty: if n > 1 {
                    (same * (1.0 - same) / (n as f64 - 1.0)).sqrt()
                } else {
                    0.0
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_as_llama_cpp_does() {
        let v = [1.0f32, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 1.0), 5.0);
        assert!((percentile(&v, 0.9) - 4.6).abs() < 1e-6);
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), 2.5);
    }

    #[test]
    fn identical_rows_give_a_ratio_of_one_and_no_divergence() {
        let mut s = KlStats::default();
        for i in 0..20 {
            let nll = 1.0 + (i % 5) as f32 * 0.1;
            s.add(&KlRow {
                nll,
                nll_base: nll,
                kld: 0.0,
                p_diff: 0.0,
                same_top: true,
            });
        }
        let m = s.summary();
        assert_eq!(m.count, 20);
        assert!((m.ppl.value - m.ppl_base.value).abs() < 1e-9);
        assert!(m.ln_ppl_ratio.value.abs() < 1e-9);
        assert!((m.ln_ppl_correlation - 1.0).abs() < 1e-6, "{m:?}");
        assert_eq!(m.kld_mean.value, 0.0);
        assert_eq!(m.same_top.value, 1.0);
    }
}
