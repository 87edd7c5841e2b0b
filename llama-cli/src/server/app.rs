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
use super::native;
use super::openai::Kind;
use super::state::AppState;
use llama_core::{ChatMessage, Role, Token};

/// The application: `/health` open to all; everything else behind the API key (when one is
/// set), checked before routing; CORS outermost (preflights answered before the key check);
/// request bodies limited in size and read time; every request traced (a span with its id),
/// counted and logged. llama-server's un-prefixed names route to the same handlers
/// (`/chat/completions`, `/models`, `/v1/health`); its native API is in [`super::native`].
pub fn router(
    state: Arc<AppState>,
    cors: super::cors::Cors,
    embeddings: Option<Arc<super::embeddings::Embeddings>>,
    native: native::NativeConfig,
) -> Router {
    let mut routes = Router::new()
        .route("/health", get(health))
        .route("/v1/health", get(health))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/ready", get(ready))
        .route(
            "/metrics",
            if native.metrics {
                get(metrics)
            } else {
                get(metrics_disabled)
            },
        )
        .route("/openapi.json", get(super::openapi::openapi_json))
        .merge(native::routes(native))
        .merge(super::anthropic::routes())
        .merge(super::responses::routes());
    if let Some(embeddings) = embeddings {
        routes = routes.merge(super::embeddings::routes(embeddings));
    }
    let routes = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // On every route and the fallbacks: an unknown path without the key is 401.
        .layer(from_fn_with_state(Arc::clone(&state), auth::require_key));
    // Layers added later wrap the earlier ones: `track` sees every response, the limits' too.
    limits::apply(routes, &state.limits)
        .layer(log::trace_layer())
        .layer(from_fn_with_state(Arc::clone(&state), log::track))
        .layer(cors)
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

/// Liveness: 200 while the process is alive; no key needed.
#[utoipa::path(get, path = "/health", tag = "server", security(()), responses(
    (status = 200, description = "`{\"status\":\"ok\"}`", content_type = "application/json")
))]
pub(super) async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: 200 when the engine runs and the queue has room, else 503.
#[utoipa::path(get, path = "/ready", tag = "server", responses(
    (status = 200, description = "Ready, with the engine's figures", content_type = "application/json"),
    (status = 503, description = "`busy`, `shutting_down` or `stopped`", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn ready(State(state): State<Arc<AppState>>) -> Response {
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
    let m = &state.model;
    json!({
        "id": state.model_id,
        "aliases": state.aliases,
        "tags": state.tags,
        "object": "model",
        "created": state.started,
        "owned_by": "llama-rs",
        "meta": {
            "n_vocab": m.n_vocab(),
            "n_ctx": state.ctx_per_slot(),
            "n_ctx_train": m.n_ctx_train(),
            "n_embd": m.n_embd(),
            "n_params": m.n_params(),
            "size": m.size_bytes(),
        },
    })
}

/// The model list (one model).
#[utoipa::path(get, path = "/v1/models", tag = "openai", responses(
    (status = 200, description = "OpenAI's model list", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_object(&state)]}))
}

/// One model by id.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "openai", params(("id" = String, Path, description = "The model id")), responses(
    (status = 200, description = "OpenAI's model object", content_type = "application/json"),
    (status = 404, description = "No such model", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn model(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    if id == state.model_id || state.aliases.contains(&id) {
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

/// Prometheus metrics, with llama-server's `Process-Start-Time-Unix` header.
#[utoipa::path(get, path = "/metrics", tag = "server", responses(
    (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.budget.observe();
    let gauges = Gauges {
        engine: state.stats(),
        inflight: state.inflight(),
        budget: state.budget.snapshot(),
    };
    // llama-server's header: when the process started, in Unix seconds.
    let started = state.started.to_string();
    (
        [
            (header::CONTENT_TYPE, METRICS_CONTENT_TYPE),
            (
                header::HeaderName::from_static("process-start-time-unix"),
                started.as_str(),
            ),
        ],
        state.metrics.render(&gauges),
    )
        .into_response()
}

/// `/metrics` under `--no-metrics`: 501, as llama-server answers without `--metrics`.
async fn metrics_disabled() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_supported_error",
        "this server does not serve /metrics: it was started with --no-metrics",
    )
}

/// OpenAI chat completion: JSON, or server-sent events with `stream`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = super::openapi::ChatCompletionBody, responses(
    (status = 200, description = "The completion (JSON, or an event stream with `stream`)"),
    (status = 400, description = "An invalid field, named", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key"),
    (status = 413, description = "A body over `--max-body`", content_type = "application/json"),
    (status = 429, description = "The queue is full", content_type = "application/json"),
))]
pub(super) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    Extension(record): Extension<Arc<RequestRecord>>,
    body: Result<JsonBody, ApiError>,
) -> Response {
    answer(state, record, Kind::Chat, body).await
}

/// OpenAI text completion: JSON, or server-sent events with `stream`.
#[utoipa::path(post, path = "/v1/completions", tag = "openai", request_body = super::openapi::CompletionBody, responses(
    (status = 200, description = "The completion (JSON, or an event stream with `stream`)"),
    (status = 400, description = "An invalid field, named", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key"),
    (status = 413, description = "A body over `--max-body`", content_type = "application/json"),
    (status = 429, description = "The queue is full", content_type = "application/json"),
))]
pub(super) async fn completions(
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

/// `messages` with the server's `--system` prompt first when they start with none.
pub(super) fn with_default_system(
    state: &AppState,
    mut messages: Vec<ChatMessage>,
) -> Vec<ChatMessage> {
    if let Some(system) = &state.defaults.system {
        if messages.first().is_none_or(|m| m.role != Role::System) {
            messages.insert(0, ChatMessage::new(Role::System, system.clone()));
        }
    }
    messages
}

/// What a request asks the model to continue.
pub(super) enum Prompt {
    /// A conversation, rendered with the chat template.
    Chat(Vec<ChatMessage>),
}

/// [`tokenize`] on a blocking thread.
pub(super) async fn tokenize_async(
    state: &Arc<AppState>,
    prompt: Prompt,
) -> Result<Vec<Token>, ApiError> {
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || tokenize(&state, prompt))
        .await
        .map_err(|e| ApiError::internal(format!("tokenizing failed: {e}")))?
}

/// Renders the chat template (plain text joined when the model has none) and tokenizes it.
pub(super) fn tokenize(state: &AppState, prompt: Prompt) -> Result<Vec<Token>, ApiError> {
    let (text, special) = render(state, prompt)?;
    state
        .model
        .tokenize(&text, true, special)
        .map_err(|e| ApiError::invalid(format!("cannot tokenize the prompt: {e}"), None))
}

/// The prompt's text, and whether special tokens in it are parsed (a rendered template).
pub(super) fn render(state: &AppState, prompt: Prompt) -> Result<(String, bool), ApiError> {
    Ok(match (prompt, &state.template) {
        (Prompt::Chat(messages), Some(template)) => {
            let text = template.render(&messages, true).map_err(|e| {
                ApiError::invalid(
                    format!("cannot apply the chat template: {e}"),
                    Some("messages"),
                )
            })?;
            (text, true)
        }
        (Prompt::Chat(messages), None) => {
            let text = messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n\n");
            (text, false)
        }
    })
}
