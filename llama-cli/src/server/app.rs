//! The router and the handlers.

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth;
use super::error::ApiError;
use super::generation;
use super::limits::{self, JsonBody};
use super::log::{self, RequestRecord};
use super::metrics::{Gauges, CONTENT_TYPE as METRICS_CONTENT_TYPE};
use super::openai::Kind;
use super::state::AppState;

/// The application: `/health` open to all; everything else behind the API key (when one is
/// set); request bodies limited in size and read time; every request traced (a span with its
/// id), counted and logged.
pub fn router(state: Arc<AppState>) -> Router {
    let protected = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route_layer(from_fn_with_state(Arc::clone(&state), auth::require_key));
    let routes = Router::new()
        .route("/health", get(health))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // Layers added later wrap the earlier ones: `track` sees every response, the limits' too.
    limits::apply(routes, &state.limits)
        .layer(log::trace_layer())
        .layer(from_fn_with_state(Arc::clone(&state), log::track))
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("method not allowed on {}", uri.path()),
    )
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let Some(stats) = state.stats() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "stopped"})),
        )
            .into_response();
    };
    let figures = json!({
        "active": stats.active,
        "queued": stats.queued,
        "queue_capacity": state.limits.queue_capacity,
        "kv_blocks_free": stats.blocks_free,
    });
    let (status, word) = if state.is_stopping() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
    } else if stats.queued >= state.limits.queue_capacity {
        (StatusCode::SERVICE_UNAVAILABLE, "busy")
    } else {
        (StatusCode::OK, "ready")
    };
    let mut body = figures;
    body["status"] = json!(word);
    (status, Json(body)).into_response()
}

fn model_object(state: &AppState) -> Value {
    json!({
        "id": state.model_id,
        "object": "model",
        "created": state.started,
        "owned_by": "llama-rs",
    })
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_object(&state)]}))
}

async fn model(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    if id == state.model_id {
        Json(model_object(&state)).into_response()
    } else {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no model {id:?}: this server runs {:?}", state.model_id),
        )
        .with_code("model_not_found")
        .into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.budget.observe();
    let gauges = Gauges {
        engine: state.stats(),
        inflight: state.inflight(),
        budget: state.budget.snapshot(),
    };
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.metrics.render(&gauges),
    )
        .into_response()
}

async fn chat_completions(
    State(state): State<Arc<AppState>>,
    Extension(record): Extension<Arc<RequestRecord>>,
    body: Result<JsonBody, ApiError>,
) -> Response {
    answer(state, record, Kind::Chat, body).await
}

async fn completions(
    State(state): State<Arc<AppState>>,
    Extension(record): Extension<Arc<RequestRecord>>,
    body: Result<JsonBody, ApiError>,
) -> Response {
    answer(state, record, Kind::Completion, body).await
}

async fn answer(
    state: Arc<AppState>,
    record: Arc<RequestRecord>,
    kind: Kind,
    body: Result<JsonBody, ApiError>,
) -> Response {
    let result = match body {
        Ok(JsonBody(body)) => generation::generate(state, Arc::clone(&record), kind, body).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(response) => response,
        Err(err) => {
            record.failed(&err.message);
            err.into_response()
        }
    }
}
