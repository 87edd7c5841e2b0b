//! The router's `/metrics` (Prometheus text, prometheus-client): per model, its loads,
//! evictions, idle and asked-for unloads, time to load, planned bytes while resident, state
//! and requests in flight; for the process, the budget, the models' planned bytes and the
//! measured memory (the same `llama_memory_*` names as the single-model server).

use std::sync::atomic::{AtomicU64, Ordering};

use llama_core::metrics::BudgetCounters;
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::pool::Pool;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    model: String,
    state: &'static str,
}

type CounterFamily = Family<ModelLabel, Counter<u64, AtomicU64>>;
type GaugeFamily = Family<ModelLabel, Gauge<u64, AtomicU64>>;
type FloatCounterFamily = Family<ModelLabel, Counter<f64, AtomicU64>>;

/// The exposition, built from the pool's counters at scrape time.
pub fn render(pool: &Pool, budget: &BudgetCounters) -> String {
    let mut r = Registry::default();
    let loads = CounterFamily::default();
    let failures = CounterFamily::default();
    let evictions = CounterFamily::default();
    let idle = CounterFamily::default();
    let manual = CounterFamily::default();
    let parked = CounterFamily::default();
    let load_seconds = FloatCounterFamily::default();
    let last_load = Family::<ModelLabel, Gauge<f64, AtomicU64>>::default();
    let resident = GaugeFamily::default();
    let planned = GaugeFamily::default();
    let inflight = GaugeFamily::default();
    let state = Family::<StateLabels, Gauge<u64, AtomicU64>>::default();
    let policy = pool.policy();
    for i in 0..pool.catalog.len() {
        let label = ModelLabel {
            model: pool.catalog.get(i).id.clone(),
        };
        let c = &pool.counters[i];
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        loads.get_or_create(&label).inc_by(get(&c.loads));
        failures.get_or_create(&label).inc_by(get(&c.load_failures));
        evictions.get_or_create(&label).inc_by(get(&c.evictions));
        idle.get_or_create(&label).inc_by(get(&c.idle_unloads));
        manual.get_or_create(&label).inc_by(get(&c.manual_unloads));
        parked.get_or_create(&label).inc_by(get(&c.sessions_parked));
        load_seconds
            .get_or_create(&label)
            .inc_by(get(&c.load_micros) as f64 / 1e6);
        last_load
            .get_or_create(&label)
            .set(get(&c.last_load_micros) as f64 / 1e6);
        let view = policy.view(i);
        let bytes = view.bytes.unwrap_or(0);
        planned.get_or_create(&label).set(bytes);
        resident
            .get_or_create(&label)
            .set(if view.phase.holds_memory() { bytes } else { 0 });
        inflight.get_or_create(&label).set(view.inflight as u64);
        for phase in ["unloaded", "loading", "loaded", "unloading"] {
            state
                .get_or_create(&StateLabels {
                    model: label.model.clone(),
                    state: phase,
                })
                .set(u64::from(view.phase.as_str() == phase));
        }
    }
    r.register("llama_router_model_loads", "Loads of the model", loads);
    r.register(
        "llama_router_model_load_failures",
        "Loads of the model that failed",
        failures,
    );
    r.register(
        "llama_router_model_evictions",
        "Unloads of the model to make room for another",
        evictions,
    );
    r.register(
        "llama_router_model_idle_unloads",
        "Unloads of the model after --idle-unload",
        idle,
    );
    r.register(
        "llama_router_model_manual_unloads",
        "Unloads of the model asked with POST /models/unload",
        manual,
    );
    r.register(
        "llama_router_model_sessions_parked",
        "Idle sessions saved when the model was unloaded, for its next load",
        parked,
    );
    r.register(
        "llama_router_model_load_seconds",
        "Time spent loading the model",
        load_seconds,
    );
    r.register(
        "llama_router_model_last_load_seconds",
        "Time the model's last load took",
        last_load,
    );
    r.register(
        "llama_router_model_resident_bytes",
        "Planned bytes of the model while it is loading, loaded or unloading (0 otherwise)",
        resident,
    );
    r.register(
        "llama_router_model_planned_bytes",
        "Planned bytes of the model (its plan less the process baseline)",
        planned,
    );
    r.register(
        "llama_router_model_requests_inflight",
        "Requests on the model",
        inflight,
    );
    r.register("llama_router_model_state", "1 for the model's state", state);
    let gauge = |r: &mut Registry, name: &str, help: &str, v: u64| {
        let g = Gauge::<u64, AtomicU64>::default();
        g.set(v);
        r.register(name, help, g);
    };
    gauge(
        &mut r,
        "llama_router_resident_bytes",
        "Planned bytes of the models in memory",
        policy.resident_bytes(),
    );
    gauge(
        &mut r,
        "llama_router_models_capacity_bytes",
        "Bytes for models: --max-mem less the process baseline",
        policy.capacity(),
    );
    gauge(
        &mut r,
        "llama_router_baseline_bytes",
        "The process's memory with no model loaded",
        pool.config.baseline,
    );
    drop(policy);
    let snap = budget.snapshot();
    gauge(
        &mut r,
        "llama_memory_budget_bytes",
        "The memory budget (--max-mem)",
        pool.config.budget,
    );
    let m = snap.actual;
    gauge(&mut r, "llama_memory_rss_bytes", "Resident set size", m.rss);
    gauge(
        &mut r,
        "llama_memory_peak_rss_bytes",
        "Peak resident set size (VmHWM)",
        m.peak_rss,
    );
    let exceeded = Counter::<u64, AtomicU64>::default();
    exceeded.inc_by(snap.exceeded_events);
    r.register(
        "llama_budget_exceeded_events",
        "Peak RSS seen over --max-mem",
        exceeded,
    );
    let mut out = String::new();
    let _ = prometheus_text::encode(&mut out, &r);
    out
}
