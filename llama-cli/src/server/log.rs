//! One structured log line per request (target `llama_rs::server`, level info): id, method,
//! path, status, tokens, latency. The line is written when the request's [`RequestRecord`]
//! is dropped, which for a streamed answer is when the stream ends or the client goes away,
//! so the figures are the final ones. The same moment counts the request in the metrics.
//!
//! Around the handler, tower-http's [`TraceLayer`] holds a `request` span with the id, method
//! and path, so whatever is logged while a request is handled says which request it is about;
//! the span and the layer's own events (start, response, end of stream, failure) are at debug
//! level (`-vv`), so by default the line above is the only one.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use llama_core::engine::Completion;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{
    DefaultOnBodyChunk, DefaultOnEos, DefaultOnFailure, DefaultOnRequest, DefaultOnResponse,
    TraceLayer,
};
use tracing::{Level, Span};

use super::state::AppState;

/// The tracing target of the request lines.
pub const TARGET: &str = "llama_rs::server";

/// What is known about one request; logged and counted when dropped.
#[derive(Debug)]
pub struct RequestRecord {
    /// The request id (also in responses and the `x-request-id` header).
    pub id: String,
    method: String,
    path: String,
    endpoint: &'static str,
    started: Instant,
    state: Arc<AppState>,
    outcome: Mutex<Outcome>,
}

#[derive(Debug, Default)]
struct Outcome {
    status: u16,
    completion: Option<Completion>,
    error: Option<String>,
}

impl RequestRecord {
    /// Notes the generation's figures.
    pub fn completed(&self, c: &Completion) {
        self.state.metrics.count_completion(c);
        self.lock().completion = Some(c.clone());
    }

    /// Notes an error (answered, or ending a stream).
    pub fn failed(&self, message: &str) {
        self.lock().error = Some(message.to_string());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Outcome> {
        self.outcome.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let outcome = std::mem::take(&mut *self.lock());
        self.state
            .metrics
            .count_request(self.endpoint, outcome.status, elapsed);
        let ms = |d: std::time::Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
        let latency_ms = ms(elapsed);
        match &outcome.completion {
            // A root event: the request span's fields (id, path) are not repeated.
            Some(c) => tracing::info!(
                target: TARGET,
                parent: None,
                id = %self.id,
                method = %self.method,
                path = %self.path,
                status = outcome.status,
                prompt_tokens = c.prompt_tokens,
                cached_tokens = c.cached_tokens,
                completion_tokens = c.completion_tokens,
                finish_reason = c.finish_reason.api_name(),
                ttft_ms = %c.time_to_first_token.map(ms).unwrap_or_default(),
                latency_ms = %latency_ms,
                "request"
            ),
            None => tracing::info!(
                target: TARGET,
                parent: None,
                id = %self.id,
                method = %self.method,
                path = %self.path,
                status = outcome.status,
                error = outcome.error.as_deref(),
                latency_ms = %latency_ms,
                "request"
            ),
        }
    }
}

/// The metrics label of a path (known endpoints only, so label values stay few).
fn endpoint(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" | "/chat/completions" => "chat_completions",
        "/v1/completions" => "completions",
        "/completion" | "/completions" => "completion",
        "/v1/models" | "/models" => "models",
        "/v1/messages" => "messages",
        "/v1/responses" | "/responses" => "responses",
        "/v1/embeddings" | "/embeddings" | "/embedding" => "embeddings",
        "/health" | "/v1/health" => "health",
        "/ready" => "ready",
        "/metrics" => "metrics",
        p if p.starts_with("/v1/models/") => "models",
        _ => "other",
    }
}

/// Middleware: creates the request's record, hands it to the handler through the request's
/// extensions, and notes the status.
pub async fn track(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let record = Arc::new(RequestRecord {
        id: state.request_id(),
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        endpoint: endpoint(req.uri().path()),
        started: Instant::now(),
        state: Arc::clone(&state),
        outcome: Mutex::new(Outcome::default()),
    });
    req.extensions_mut().insert(Arc::clone(&record));
    let mut response = next.run(req).await;
    record.lock().status = response.status().as_u16();
    if let Ok(value) = HeaderValue::from_str(&record.id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The tracing layer of [`super::app::router`]'s requests.
pub type Trace = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    fn(&Request) -> Span,
    DefaultOnRequest,
    DefaultOnResponse,
    DefaultOnBodyChunk,
    DefaultOnEos,
    DefaultOnFailure,
>;

/// tower-http's HTTP tracing with the `request` span; inside [`track`], which gives the span
/// its id. Failures (5xx) are logged at debug level like the rest: the request line has them.
pub fn trace_layer() -> Trace {
    TraceLayer::new_for_http()
        .make_span_with(request_span as fn(&Request) -> Span)
        .on_failure(DefaultOnFailure::new().level(Level::DEBUG))
}

/// The span of one request: its id (from its [`RequestRecord`]), method and path.
fn request_span(req: &Request) -> Span {
    let id = req
        .extensions()
        .get::<Arc<RequestRecord>>()
        .map(|r| r.id.as_str())
        .unwrap_or_default();
    // At debug level, like TraceLayer's own span: by default (info) it is off, so the request
    // line of a stream, which ends inside it, is printed without a span prefix.
    tracing::debug_span!(
        target: TARGET,
        "request",
        id = %id,
        method = %req.method(),
        path = %req.uri().path()
    )
}
