//! `/metrics` in Prometheus's text format (0.0.4), encoded by `prometheus-client`: requests by
//! endpoint and status, tokens in and out, time-to-first-token and per-token latency
//! histograms, and, read at scrape time, the engine's queue and KV blocks and the process's
//! planned and actual memory. The figures llama.cpp's `llama-server` exports are there too,
//! under its names (`llamacpp:prompt_tokens_total`, ...), so its dashboards work unchanged.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use llama_core::engine::{Completion, EngineStats};
use llama_core::metrics::BudgetSnapshot;
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the time-to-first-token and request-duration buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Upper bounds (seconds) of the per-token latency buckets.
const TOKEN_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// The labels of `llama_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    status: u16,
}

/// The labels of `llama_memory_planned_bytes`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartLabels {
    part: &'static str,
}

/// The server's own counters and histograms, registered once; the figures read at scrape time
/// ([`Gauges`]) are encoded next to them on each scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    prompt_tokens: Counter,
    cached_tokens: Counter,
    completion_tokens: Counter,
    ttft: Histogram,
    per_token: Histogram,
    duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let requests = Family::<RequestLabels, Counter>::default();
        let prompt_tokens = Counter::default();
        let cached_tokens = Counter::default();
        let completion_tokens = Counter::default();
        let ttft = Histogram::new(LATENCY_BUCKETS);
        let per_token = Histogram::new(TOKEN_BUCKETS);
        let duration = Histogram::new(LATENCY_BUCKETS);
        // Help texts without a final period: the registry adds one.
        let mut registry = Registry::default();
        registry.register(
            "llama_requests",
            "HTTP requests answered, by endpoint and status",
            requests.clone(),
        );
        registry.register(
            "llama_prompt_tokens",
            "Prompt tokens of completed requests",
            prompt_tokens.clone(),
        );
        registry.register(
            "llama_prompt_tokens_cached",
            "Prompt tokens of completed requests served from cached KV",
            cached_tokens.clone(),
        );
        registry.register(
            "llama_completion_tokens",
            "Tokens generated for completed requests",
            completion_tokens.clone(),
        );
        registry.register(
            "llama_time_to_first_token_seconds",
            "From submission to the first generated token",
            ttft.clone(),
        );
        registry.register(
            "llama_time_per_output_token_seconds",
            "Mean time between generated tokens after the first, per request",
            per_token.clone(),
        );
        registry.register(
            "llama_request_duration_seconds",
            "From the request's arrival to the end of its response",
            duration.clone(),
        );
        Metrics {
            registry,
            requests,
            prompt_tokens,
            cached_tokens,
            completion_tokens,
            ttft,
            per_token,
            duration,
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
        self.requests
            .get_or_create(&RequestLabels { endpoint, status })
            .inc();
        self.duration.observe(duration.as_secs_f64());
    }

    /// Counts one finished generation.
    pub fn count_completion(&self, c: &Completion) {
        self.prompt_tokens.inc_by(c.prompt_tokens as u64);
        self.cached_tokens.inc_by(c.cached_tokens as u64);
        self.completion_tokens.inc_by(c.completion_tokens as u64);
        if let Some(ttft) = c.time_to_first_token {
            self.ttft.observe(ttft.as_secs_f64());
            if c.completion_tokens > 1 {
                let rest = c.total_time.saturating_sub(ttft).as_secs_f64();
                self.per_token
                    .observe(rest / (c.completion_tokens - 1) as f64);
            }
        }
    }

    /// The text format: the registered metrics, then those read at scrape time.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, and every metric here encodes.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        let _ = prometheus_text::encode(&mut out, &scrape_registry(gauges));
        if let Some(s) = &gauges.engine {
            out.push_str(&llama_server_metrics(s));
        }
        out
    }
}

/// The metrics read at scrape time, in a registry of constant values made for one scrape.
fn scrape_registry(gauges: &Gauges) -> Registry {
    let mut r = Registry::default();
    let gauge = |r: &mut Registry, name: &str, help: &str, value: u64| {
        r.register(name, help, ConstGauge::new(value));
    };
    let counter = |r: &mut Registry, name: &str, help: &str, value: u64| {
        r.register(name, help, ConstCounter::new(value));
    };
    gauge(
        &mut r,
        "llama_requests_inflight",
        "Requests submitted and not yet answered",
        gauges.inflight as u64,
    );
    if let Some(s) = &gauges.engine {
        engine_metrics(&mut r, s, gauge, counter);
    }
    let b = &gauges.budget;
    if let Some(budget) = b.budget {
        gauge(
            &mut r,
            "llama_memory_budget_bytes",
            "The memory budget (--max-mem)",
            budget,
        );
    }
    if let Some(p) = &b.planned {
        let planned = Family::<PartLabels, Gauge<u64, AtomicU64>>::default();
        for (part, bytes) in [
            ("weights", p.weights),
            ("kv", p.kv),
            ("compute", p.compute),
            ("compute_unwritten", p.compute_unwritten),
            ("output", p.output),
            ("overhead", p.overhead),
            ("embeddings", p.embeddings),
            ("total", p.total()),
        ] {
            planned.get_or_create(&PartLabels { part }).set(bytes);
        }
        r.register(
            "llama_memory_planned_bytes",
            "Planned memory by part",
            planned,
        );
    }
    gauge(
        &mut r,
        "llama_memory_rss_bytes",
        "Resident memory of the process",
        b.actual.rss,
    );
    gauge(
        &mut r,
        "llama_memory_rss_anon_bytes",
        "Anonymous resident memory",
        b.actual.rss_anon,
    );
    gauge(
        &mut r,
        "llama_memory_rss_file_bytes",
        "File-backed resident memory (mapped weights)",
        b.actual.rss_file,
    );
    gauge(
        &mut r,
        "llama_memory_peak_rss_bytes",
        "Peak resident memory (VmHWM)",
        b.actual.peak_rss,
    );
    counter(
        &mut r,
        "llama_budget_exceeded_events",
        "Memory observations whose peak RSS was over the budget",
        b.exceeded_events,
    );
    r
}

/// The engine's queue, KV blocks, sessions and totals.
fn engine_metrics(
    r: &mut Registry,
    s: &EngineStats,
    gauge: impl Fn(&mut Registry, &str, &str, u64),
    counter: impl Fn(&mut Registry, &str, &str, u64),
) {
    gauge(
        r,
        "llama_requests_active",
        "Requests being decoded",
        s.active as u64,
    );
    gauge(
        r,
        "llama_queue_depth",
        "Requests waiting for a sequence",
        s.queued as u64,
    );
    gauge(
        r,
        "llama_sessions_idle_cached",
        "Finished sessions whose KV is kept for reuse",
        s.idle_cached as u64,
    );
    gauge(
        r,
        "llama_sessions_saved",
        "Sessions saved to disk",
        s.saved as u64,
    );
    gauge(
        r,
        "llama_kv_blocks_used",
        "KV blocks in use",
        u64::from(s.blocks_used),
    );
    gauge(
        r,
        "llama_kv_blocks_free",
        "KV blocks free",
        u64::from(s.blocks_free),
    );
    gauge(
        r,
        "llama_kv_block_tokens",
        "Tokens per KV block",
        u64::from(s.block_tokens),
    );
    gauge(r, "llama_kv_bytes_used", "KV bytes in use", s.kv_bytes_used);
    gauge(
        r,
        "llama_kv_bytes_total",
        "KV bytes of the budget",
        s.kv_bytes_total,
    );
    counter(
        r,
        "llama_kv_evictions",
        "Sessions saved to disk to make room",
        s.evictions,
    );
    counter(
        r,
        "llama_kv_restores",
        "Saved sessions brought back",
        s.restores,
    );
    counter(
        r,
        "llama_kv_sessions_dropped",
        "Evicted sessions dropped instead of saved (idle past the keep limit, or the save failed)",
        s.dropped,
    );
    r.register(
        "llama_session_save_seconds",
        "Time spent saving evicted sessions (every other session waits meanwhile)",
        ConstCounter::new(s.save_seconds_total),
    );
    r.register(
        "llama_session_save_pause_max_seconds",
        "The longest pause one session save caused",
        ConstGauge::new(s.save_seconds_max),
    );
    counter(
        r,
        "llama_engine_preempted",
        "Prompts preempted so that prompts blocking them could go on",
        s.preempted,
    );
    counter(
        r,
        "llama_engine_decode_retries",
        "Failed decode calls retried with half the batch",
        s.decode_retries,
    );
    counter(
        r,
        "llama_engine_context_shifts",
        "Context shifts (a full sequence dropped its oldest tokens)",
        s.context_shifts,
    );
    counter(
        r,
        "llama_engine_prompt_tokens",
        "Prompt tokens the engine received",
        s.tokens_in,
    );
    counter(
        r,
        "llama_engine_prompt_tokens_cached",
        "Prompt tokens the engine served from cached KV",
        s.tokens_cached,
    );
    counter(
        r,
        "llama_engine_generated_tokens",
        "Tokens the engine generated (including cancelled requests)",
        s.tokens_out,
    );
    counter(
        r,
        "llama_engine_requests_finished",
        "Requests the engine finished",
        s.finished,
    );
    counter(
        r,
        "llama_engine_requests_cancelled",
        "Requests cancelled (client gone or shutdown)",
        s.cancelled,
    );
}

/// The figures of llama.cpp's `llama-server` (tools/server, `to_metrics`), under its names,
/// help texts and types, in its order; `kv_cache_usage_ratio` is from its earlier versions.
///
/// Written as text, not through the registry: llama-server's `n_tokens_max` is a counter
/// without the `_total` suffix, which `prometheus-client` always adds to a counter's name.
/// This server has no speculative decoding: its three `spec_decode_*` counters stay 0.
fn llama_server_metrics(s: &EngineStats) -> String {
    let rate = |n: u64, seconds: f64| {
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    };
    let prompt_tokens = s.tokens_in.saturating_sub(s.tokens_cached);
    let blocks = u64::from(s.blocks_used) + u64::from(s.blocks_free);
    let ratio = if blocks == 0 {
        0.0
    } else {
        f64::from(s.blocks_used) / blocks as f64
    };
    let counters = [
        (
            "prompt_tokens_total",
            "Number of prompt tokens processed, excluding cached tokens",
            prompt_tokens as f64,
        ),
        (
            "prompt_tokens_cached_total",
            "Number of prompt tokens reused from the cache",
            s.tokens_cached as f64,
        ),
        (
            "prompt_seconds_total",
            "Total time spent processing prompts",
            s.prompt_seconds,
        ),
        (
            "tokens_predicted_total",
            "Number of generation tokens processed",
            s.tokens_out as f64,
        ),
        (
            "tokens_predicted_seconds_total",
            "Total time spent generating tokens",
            s.generation_seconds,
        ),
        (
            "n_decode_total",
            "Total number of llama_decode() calls, excluding speculative decoding and multimodal decoding",
            s.decodes as f64,
        ),
        (
            "n_tokens_max",
            "Largest observed sequence length (prompt + generation)",
            s.tokens_max as f64,
        ),
        (
            "spec_decode_num_draft_tokens_total",
            "Speculative: Total draft tokens generated",
            0.0,
        ),
        (
            "spec_decode_num_accepted_tokens_total",
            "Speculative: Total draft tokens accepted by the target model",
            0.0,
        ),
        (
            "spec_decode_num_drafts_total",
            "Speculative: Total speculative decoding verification steps",
            0.0,
        ),
    ];
    let gauges = [
        (
            "prompt_tokens_seconds",
            "Average prompt throughput in tokens/s",
            rate(prompt_tokens, s.prompt_seconds),
        ),
        (
            "predicted_tokens_seconds",
            "Average generation throughput in tokens/s",
            rate(s.generation_steps, s.generation_seconds),
        ),
        (
            "requests_processing",
            "Number of requests processing",
            s.active as f64,
        ),
        (
            "requests_deferred",
            "Number of requests deferred",
            s.queued as f64,
        ),
        (
            "n_busy_slots_per_decode",
            "Average number of busy slots per llama_decode() call",
            s.decode_sequences as f64 / (s.decodes.max(1)) as f64,
        ),
        (
            "kv_cache_usage_ratio",
            "KV-cache usage. 1 means 100 percent usage",
            ratio,
        ),
    ];
    let mut out = String::new();
    for (kind, items) in [("counter", &counters[..]), ("gauge", &gauges[..])] {
        for (name, help, value) in items {
            out.push_str(&format!(
                "# HELP llamacpp:{name} {help}\n# TYPE llamacpp:{name} {kind}\nllamacpp:{name} {value}\n"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line `name` (with its labels, if any) in `text`.
    fn value(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.rsplit_once(' ').is_some_and(|(n, _)| n == name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        for seconds in [0.003, 0.3, 100.0] {
            m.count_request("chat", 200, Duration::from_secs_f64(seconds));
        }
        let text = m.render(&Gauges::default());
        let bucket = |le: &str| {
            value(
                &text,
                &format!("llama_request_duration_seconds_bucket{{le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.0025"), None, "not a bound:\n{text}");
        assert_eq!(bucket("0.005"), Some(1.0), "{text}");
        assert_eq!(bucket("0.5"), Some(2.0), "{text}");
        assert_eq!(bucket("+Inf"), Some(3.0), "{text}");
        assert_eq!(
            value(&text, "llama_request_duration_seconds_count"),
            Some(3.0)
        );
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
                blocks_free: 1,
                tokens_in: 10,
                tokens_cached: 4,
                ..EngineStats::default()
            }),
            ..Gauges::default()
        });
        assert!(
            text.contains("llama_requests_total{endpoint=\"chat\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("llama_requests_total{endpoint=\"chat\",status=\"429\"} 1\n"));
        assert!(
            text.contains("# TYPE llama_requests_total counter\n"),
            "{text}"
        );
        assert!(text.contains("llama_kv_blocks_used 3\n"));
        assert!(text.contains("# TYPE llama_kv_blocks_used gauge\n"));
        assert_eq!(
            value(&text, "llama_engine_requests_cancelled_total"),
            Some(0.0)
        );
        // llama-server's names.
        assert_eq!(value(&text, "llamacpp:prompt_tokens_total"), Some(6.0));
        assert_eq!(
            value(&text, "llamacpp:prompt_tokens_cached_total"),
            Some(4.0)
        );
        assert_eq!(value(&text, "llamacpp:kv_cache_usage_ratio"), Some(0.75));
        assert!(text.contains("# TYPE llamacpp:requests_processing gauge\n"));
        // No budget given: no budget gauge, no planned parts.
        assert_eq!(value(&text, "llama_memory_budget_bytes"), None);
        assert!(!text.contains("llama_memory_planned_bytes"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        // Every family has a HELP and a TYPE line, and no help text ends in "..".
        assert!(!text.contains(".."), "{text}");
    }

    #[test]
    fn renders_the_budget_and_the_plan() {
        let planned = llama_core::planner::Breakdown {
            weights: 100,
            kv: 20,
            ..Default::default()
        };
        let text = Metrics::default().render(&Gauges {
            budget: BudgetSnapshot {
                budget: Some(1000),
                planned: Some(planned),
                exceeded_events: 2,
                ..BudgetSnapshot::default()
            },
            ..Gauges::default()
        });
        assert_eq!(value(&text, "llama_memory_budget_bytes"), Some(1000.0));
        assert_eq!(
            value(&text, "llama_memory_planned_bytes{part=\"weights\"}"),
            Some(100.0),
            "{text}"
        );
        assert_eq!(
            value(&text, "llama_memory_planned_bytes{part=\"total\"}"),
            Some(planned.total() as f64)
        );
        assert_eq!(
            value(&text, "llama_budget_exceeded_events_total"),
            Some(2.0)
        );
        // Stopped engine: no engine figures.
        assert_eq!(value(&text, "llama_kv_blocks_used"), None);
    }
}
