//! llama-server's `timings` object (`cache_n`, `prompt_n`, `prompt_ms`,
//! `prompt_per_token_ms`, `prompt_per_second`, `predicted_n`, `predicted_ms`,
//! `predicted_per_token_ms`, `predicted_per_second`) of a request in progress, and its
//! `prompt_progress` object (`total`, `cache`, `processed`, `time_ms`).

use std::time::Duration;

use llama_core::engine::Progress;
use serde_json::{json, Value};

/// The figures so far of a request in progress (a streamed token's `timings`).
pub fn of_progress(p: &Progress) -> Value {
    let prompt_n = p.prompt_processed.saturating_sub(p.cached_tokens);
    let per = |n: usize, d: Duration| {
        let t = d.as_secs_f64() * 1000.0;
        let per_token = if n > 0 { t / n as f64 } else { 0.0 };
        let per_second = if t > 0.0 { n as f64 * 1000.0 / t } else { 0.0 };
        (t, per_token, per_second)
    };
    let (prompt_ms, prompt_per_token_ms, prompt_per_second) = per(prompt_n, p.prompt_time);
    let (predicted_ms, predicted_per_token_ms, predicted_per_second) =
        per(p.completion_tokens, p.generation_time);
    json!({
        "cache_n": p.cached_tokens,
        "prompt_n": prompt_n,
        "prompt_ms": prompt_ms,
        "prompt_per_token_ms": prompt_per_token_ms,
        "prompt_per_second": prompt_per_second,
        "predicted_n": p.completion_tokens,
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": predicted_per_token_ms,
        "predicted_per_second": predicted_per_second,
    })
}

/// A prompt progress report (`prompt_progress`).
pub fn prompt_progress(p: &Progress) -> Value {
    json!({
        "total": p.prompt_tokens,
        "cache": p.cached_tokens,
        "processed": p.prompt_processed,
        "time_ms": p.prompt_time.as_millis() as u64,
    })
}

/// Whether a progress report is about the prompt (nothing generated yet) rather than a
/// generated token's figures.
pub fn is_prompt_report(p: &Progress) -> bool {
    p.completion_tokens == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_of_a_request_in_progress() {
        let p = Progress {
            prompt_tokens: 30,
            cached_tokens: 10,
            prompt_processed: 30,
            prompt_time: Duration::from_millis(200),
            completion_tokens: 4,
            generation_time: Duration::from_millis(100),
        };
        let t = of_progress(&p);
        assert_eq!(t["prompt_n"], 20);
        assert_eq!(t["cache_n"], 10);
        assert_eq!(t["prompt_per_second"], 100.0);
        assert_eq!(t["predicted_n"], 4);
        assert_eq!(t["predicted_per_second"], 40.0);
        let r = prompt_progress(&p);
        assert_eq!(r["total"], 30);
        assert_eq!(r["processed"], 30);
        assert_eq!(r["time_ms"], 200);
        assert!(!is_prompt_report(&p));
    }
}
