//! Log-probabilities of generated tokens from the raw logits (a log-softmax over the
//! vocabulary), as llama-server reports them for `logprobs` / `n_probs`.

use super::{TokenLogprobs, TokenProb};
use crate::ffi::{Model, Token};

/// The log-probability of `chosen` and of the `n` most likely tokens under `logits`.
pub(super) fn of(logits: &[f32], chosen: Token, n: usize, model: &Model) -> TokenLogprobs {
    let (ranked, log_z) = top(logits, n);
    let prob = |token: Token| TokenProb {
        token,
        bytes: model.token_to_piece(token, false),
        logprob: logits
            .get(token as usize)
            .map_or(f32::NEG_INFINITY, |&l| l - log_z),
    };
    TokenLogprobs {
        chosen: prob(chosen),
        top: ranked.into_iter().map(prob).collect(),
    }
}

/// The probability of `chosen` and of the `n` most likely tokens among the candidates the
/// sampler chain left (`kept`: most likely first, with their probabilities); a token the chain
/// removed has probability 0 (log -infinity).
pub(super) fn post_sampling(
    kept: &[(Token, f32)],
    chosen: Token,
    n: usize,
    model: &Model,
) -> TokenLogprobs {
    let prob = |token: Token, p: f32| TokenProb {
        token,
        bytes: model.token_to_piece(token, false),
        logprob: p.ln(),
    };
    let p_chosen = kept
        .iter()
        .find(|(t, _)| *t == chosen)
        .map_or(0.0, |&(_, p)| p);
    TokenLogprobs {
        chosen: prob(chosen, p_chosen),
        top: kept.iter().take(n).map(|&(t, p)| prob(t, p)).collect(),
    }
}

/// The `n` tokens with the largest logits (largest first) and log Σ exp(logits).
fn top(logits: &[f32], n: usize) -> (Vec<Token>, f32) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let log_z = max + sum.ln() as f32;
    let n = n.min(logits.len());
    let mut ids: Vec<Token> = (0..logits.len() as Token).collect();
    let by_logit = |a: &Token, b: &Token| {
        logits[*b as usize]
            .partial_cmp(&logits[*a as usize])
            .unwrap_or(std::cmp::Ordering::Equal)
    };
    if n > 0 && n < ids.len() {
        ids.select_nth_unstable_by(n - 1, by_logit);
    }
    ids.truncate(n);
    ids.sort_by(by_logit);
    (ids, log_z)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_tokens_and_normaliser() {
        let logits = [0.0f32, 2.0, 1.0, 2.0_f32.ln()];
        let (ids, log_z) = top(&logits, 2);
        assert_eq!(ids, vec![1, 2]);
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        assert!((log_z - z.ln()).abs() < 1e-5);
        assert_eq!(top(&logits, 10).0.len(), 4);
        assert!(top(&logits, 0).0.is_empty());
    }
}
