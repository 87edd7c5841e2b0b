//! The router's HTTP front: the model list and the load and unload routes, and every other
//! request handed to the single-model application of the model it names (its `model` field,
//! or `?model=` on a GET), loaded first if need be. The model stays counted in flight until
//! the response (a stream too) has been sent.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use llama_core::ByteSize;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::metrics;
use super::pool::Pool;
use super::RouterState;
use crate::server::error::ApiError;
use crate::server::limits;

/// The front application.
pub fn router(state: Arc<RouterState>) -> Router {
    let protected = Router::new()
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/models/load", post(load))
        .route("/models/unload", post(unload))
        .route("/metrics", get(render_metrics))
        .route("/ready", get(ready))
        .fallback(forward)
        .route_layer(from_fn_with_state(Arc::clone(&state), require_key));
    let routes = Router::new().route("/health", get(health)).merge(protected);
    limits::apply(routes, &state.pool.config.limits).with_state(state)
}

async fn require_key(State(state): State<Arc<RouterState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !key.accepts(header) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(state): State<Arc<RouterState>>) -> Response {
    if state.is_stopping() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    Json(json!({"status": "ready"})).into_response()
}

/// One model as `/v1/models` shows it: OpenAI's fields, llama-server's router `status`, and
/// the plan: `planned_bytes`, whether it `fits` (and why not).
fn model_object(pool: &Pool, i: usize) -> Value {
    let entry = pool.catalog.get(i);
    let view = pool.policy().view(i);
    let plan = pool.plan_of(i).and_then(|p| p.plan.as_ref());
    json!({
        "id": entry.id,
        "object": "model",
        "created": pool.created(),
        "owned_by": "llama-rs",
        "aliases": entry.aliases,
        "source": pool.sources[i],
        "path": entry.path.display().to_string(),
        "status": {"value": view.phase.as_str()},
        "pinned": view.pinned,
        "requests_in_flight": view.inflight,
        "planned_bytes": view.bytes,
        "planned_bytes_human": view.bytes.map(|b| ByteSize(b).to_string()),
        "plan": plan.map(|p| json!({
            "weights": p.breakdown.weights,
            "kv": p.breakdown.kv,
            "compute": p.breakdown.compute,
            "compute_unwritten": p.breakdown.compute_unwritten,
            "output": p.breakdown.output,
            "overhead": p.breakdown.overhead,
            "embeddings": p.breakdown.embeddings,
            "total": p.breakdown.total(),
        })),
        "n_ctx_per_seq": pool.plan_of(i).map(|p| p.n_ctx_per_seq()),
        "parallel": pool.parallel_of(i),
        "fits": view.refusal.is_none(),
        "refusal": view.refusal,
    })
}

async fn models(State(state): State<Arc<RouterState>>) -> Json<Value> {
    let pool = &state.pool;
    let data: Vec<Value> = (0..pool.catalog.len())
        .map(|i| model_object(pool, i))
        .collect();
    let policy = pool.policy();
    Json(json!({
        "object": "list",
        "data": data,
        "budget": {
            "max_mem": pool.config.budget,
            "baseline": pool.config.baseline,
            "for_models": policy.capacity(),
            "resident": policy.resident_bytes(),
        },
    }))
}

async fn model(State(state): State<Arc<RouterState>>, Path(id): Path<String>) -> Response {
    match state.pool.find(&id) {
        Ok(i) => Json(model_object(&state.pool, i)).into_response(),
        Err(err) => err.into_response(),
    }
}

/// The `model` field of a JSON body.
fn model_field(body: &Value) -> Result<String, ApiError> {
    match body.get("model") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(ApiError::invalid(
            "model is required: this server serves several models (GET /v1/models lists them)",
            Some("model"),
        )),
        Some(_) => Err(ApiError::invalid("model must be a string", Some("model"))),
    }
}

async fn load(State(state): State<Arc<RouterState>>, req: Request) -> Response {
    let result = async {
        let body = limits::read_json(req, &state.pool.config.limits).await?;
        let i = state.pool.find(&model_field(&body)?)?;
        state.pool.ensure_loaded(i).await?;
        Ok::<_, ApiError>(Json(json!({"success": true})).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn unload(State(state): State<Arc<RouterState>>, req: Request) -> Response {
    let result = async {
        let body = limits::read_json(req, &state.pool.config.limits).await?;
        let i = state.pool.find(&model_field(&body)?)?;
        state.pool.unload(i).await.map_err(|refusal| {
            ApiError::invalid(
                format!(
                    "cannot unload model {:?}: {refusal}",
                    state.pool.catalog.get(i).id
                ),
                Some("model"),
            )
        })?;
        Ok::<_, ApiError>(Json(json!({"success": true})).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn render_metrics(State(state): State<Arc<RouterState>>) -> Response {
    state.budget.observe();
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&state.pool, &state.budget),
    )
        .into_response()
}

/// Hands a request to the application of the model it names.
async fn forward(
    State(state): State<Arc<RouterState>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    req: Request,
) -> Response {
    let result = async {
        if state.is_stopping() {
            return Err(ApiError::shutting_down());
        }
        let (mut parts, body) = req.into_parts();
        let (name, body) = if parts.method == Method::GET || parts.method == Method::HEAD {
            let name = query.get("model").cloned().ok_or_else(|| {
                ApiError::invalid(
                    format!(
                        "{} needs ?model=NAME: this server serves several models",
                        parts.uri.path()
                    ),
                    Some("model"),
                )
            })?;
            (name, Body::empty())
        } else {
            let req = Request::from_parts(parts.clone(), body);
            let value = limits::read_json(req, &state.pool.config.limits).await?;
            let name = model_field(&value)?;
            let bytes = serde_json::to_vec(&value)
                .map_err(|e| ApiError::internal(format!("cannot re-encode the body: {e}")))?;
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            (name, Body::from(bytes))
        };
        let i = state.pool.find(&name)?;
        let lease = state.pool.acquire(i).await?;
        let app = lease.loaded.app.clone();
        let response = match app.oneshot(Request::from_parts(parts, body)).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        // The lease lives as long as the body: a stream keeps its model loaded.
        let stream = body.into_data_stream().map(move |chunk| {
            let _held = &lease;
            chunk
        });
        Ok(Response::from_parts(parts, Body::from_stream(stream)))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}
