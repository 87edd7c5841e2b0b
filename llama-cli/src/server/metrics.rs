//! `/metrics` in Prometheus's text format: requests by endpoint and status, tokens in and out,
//! time-to-first-token and per-token latency histograms, and, read at scrape time, the
//! engine's queue and KV blocks and the process's planned and actual memory.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use llama_core::engine::{Completion, EngineStats};
use llama_core::metrics::BudgetSnapshot;

/// Upper bounds (seconds) of the time-to-first-token and request-duration buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Upper bounds (seconds) of the per-token latency buckets.
const TOKEN_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// A cumulative histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    inner: Mutex<HistogramData>,
}

#[derive(Debug, Default, Clone)]
struct HistogramData {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            inner: Mutex::new(HistogramData {
                counts: vec![0; bounds.len()],
                ..HistogramData::default()
            }),
        }
    }

    /// Records one observation in seconds.
    pub fn observe(&self, seconds: f64) {
        let mut data = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = self.bounds.iter().position(|b| seconds <= *b) {
            data.counts[i] += 1;
        }
        data.sum += seconds;
        data.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let data = self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&data.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", data.count);
        let _ = writeln!(out, "{name}_sum {}", data.sum);
        let _ = writeln!(out, "{name}_count {}", data.count);
    }
}

/// The server's own counters.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    prompt_tokens: AtomicU64,
    cached_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    ttft: Histogram,
    per_token: Histogram,
    duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            cached_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            ttft: Histogram::new(&LATENCY_BUCKETS),
            per_token: Histogram::new(&TOKEN_BUCKETS),
            duration: Histogram::new(&LATENCY_BUCKETS),
        }
    }
}

/// Figures read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// The engine's figures (`None` once stopped).
    pub engine: Option<EngineStats>,
    /// Requests the server holds (submitted, not yet answered).
    pub inflight: usize,
    /// Planned and actual memory.
    pub budget: BudgetSnapshot,
}

impl Metrics {
    /// Counts one answered request.
    pub fn count_request(&self, endpoint: &'static str, status: u16, duration: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((endpoint, status))
            .or_default() += 1;
        self.duration.observe(duration.as_secs_f64());
    }

    /// Counts one finished generation.
    pub fn count_completion(&self, c: &Completion) {
        self.prompt_tokens
            .fetch_add(c.prompt_tokens as u64, Ordering::Relaxed);
        self.cached_tokens
            .fetch_add(c.cached_tokens as u64, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(c.completion_tokens as u64, Ordering::Relaxed);
        if let Some(ttft) = c.time_to_first_token {
            self.ttft.observe(ttft.as_secs_f64());
            if c.completion_tokens > 1 {
                let rest = c.total_time.saturating_sub(ttft).as_secs_f64();
                self.per_token
                    .observe(rest / (c.completion_tokens - 1) as f64);
            }
        }
    }

    /// The text format.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let o = &mut out;
        header(
            o,
            "llama_requests_total",
            "counter",
            "HTTP requests answered, by endpoint and status.",
        );
        for ((endpoint, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                o,
                "llama_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            o,
            "llama_prompt_tokens_total",
            "Prompt tokens of completed requests.",
            load(&self.prompt_tokens),
        );
        counter(
            o,
            "llama_prompt_tokens_cached_total",
            "Prompt tokens of completed requests served from cached KV.",
            load(&self.cached_tokens),
        );
        counter(
            o,
            "llama_completion_tokens_total",
            "Tokens generated for completed requests.",
            load(&self.completion_tokens),
        );
        self.ttft.render(
            o,
            "llama_time_to_first_token_seconds",
            "From submission to the first generated token.",
        );
        self.per_token.render(
            o,
            "llama_time_per_output_token_seconds",
            "Mean time between generated tokens after the first, per request.",
        );
        self.duration.render(
            o,
            "llama_request_duration_seconds",
            "From the request's arrival to the end of its response.",
        );
        gauge(
            o,
            "llama_requests_inflight",
            "Requests submitted and not yet answered.",
            gauges.inflight as u64,
        );
        if let Some(s) = &gauges.engine {
            gauge(
                o,
                "llama_requests_active",
                "Requests being decoded.",
                s.active as u64,
            );
            gauge(
                o,
                "llama_queue_depth",
                "Requests waiting for a sequence.",
                s.queued as u64,
            );
            gauge(
                o,
                "llama_sessions_idle_cached",
                "Finished sessions whose KV is kept for reuse.",
                s.idle_cached as u64,
            );
            gauge(
                o,
                "llama_sessions_saved",
                "Sessions saved to disk.",
                s.saved as u64,
            );
            gauge(
                o,
                "llama_kv_blocks_used",
                "KV blocks in use.",
                u64::from(s.blocks_used),
            );
            gauge(
                o,
                "llama_kv_blocks_free",
                "KV blocks free.",
                u64::from(s.blocks_free),
            );
            gauge(
                o,
                "llama_kv_block_tokens",
                "Tokens per KV block.",
                u64::from(s.block_tokens),
            );
            gauge(
                o,
                "llama_kv_bytes_used",
                "KV bytes in use.",
                s.kv_bytes_used,
            );
            gauge(
                o,
                "llama_kv_bytes_total",
                "KV bytes of the budget.",
                s.kv_bytes_total,
            );
            counter(
                o,
                "llama_kv_evictions_total",
                "Sessions saved to disk to make room.",
                s.evictions,
            );
            counter(
                o,
                "llama_kv_restores_total",
                "Saved sessions brought back.",
                s.restores,
            );
            counter(
                o,
                "llama_engine_prompt_tokens_total",
                "Prompt tokens the engine received.",
                s.tokens_in,
            );
            counter(
                o,
                "llama_engine_prompt_tokens_cached_total",
                "Prompt tokens the engine served from cached KV.",
                s.tokens_cached,
            );
            counter(
                o,
                "llama_engine_generated_tokens_total",
                "Tokens the engine generated (including cancelled requests).",
                s.tokens_out,
            );
            counter(
                o,
                "llama_engine_requests_finished_total",
                "Requests the engine finished.",
                s.finished,
            );
            counter(
                o,
                "llama_engine_requests_cancelled_total",
                "Requests cancelled (client gone or shutdown).",
                s.cancelled,
            );
        }
        let b = &gauges.budget;
        if let Some(budget) = b.budget {
            gauge(
                o,
                "llama_memory_budget_bytes",
                "The memory budget (--max-mem).",
                budget,
            );
        }
        if let Some(p) = &b.planned {
            header(
                o,
                "llama_memory_planned_bytes",
                "gauge",
                "Planned memory by part.",
            );
            for (part, bytes) in [
                ("weights", p.weights),
                ("kv", p.kv),
                ("compute", p.compute),
                ("output", p.output),
                ("overhead", p.overhead),
                ("total", p.total()),
            ] {
                let _ = writeln!(o, "llama_memory_planned_bytes{{part=\"{part}\"}} {bytes}");
            }
        }
        gauge(
            o,
            "llama_memory_rss_bytes",
            "Resident memory of the process.",
            b.actual.rss,
        );
        gauge(
            o,
            "llama_memory_rss_anon_bytes",
            "Anonymous resident memory.",
            b.actual.rss_anon,
        );
        gauge(
            o,
            "llama_memory_rss_file_bytes",
            "File-backed resident memory (mapped weights).",
            b.actual.rss_file,
        );
        gauge(
            o,
            "llama_memory_peak_rss_bytes",
            "Peak resident memory (VmHWM).",
            b.actual.peak_rss,
        );
        counter(
            o,
            "llama_budget_exceeded_events_total",
            "Memory observations whose peak RSS was over the budget.",
            b.exceeded_events,
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::new(&TOKEN_BUCKETS);
        h.observe(0.003);
        h.observe(0.3);
        h.observe(100.0);
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.0025\"} 0\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }

    #[test]
    fn renders_requests_and_gauges() {
        let m = Metrics::default();
        m.count_request("chat", 200, Duration::from_millis(5));
        m.count_request("chat", 200, Duration::from_millis(5));
        m.count_request("chat", 429, Duration::from_millis(1));
        let text = m.render(&Gauges {
            engine: Some(EngineStats {
                blocks_used: 3,
                ..EngineStats::default()
            }),
            ..Gauges::default()
        });
        assert!(text.contains("llama_requests_total{endpoint=\"chat\",status=\"200\"} 2\n"));
        assert!(text.contains("llama_requests_total{endpoint=\"chat\",status=\"429\"} 1\n"));
        assert!(text.contains("llama_kv_blocks_used 3\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
