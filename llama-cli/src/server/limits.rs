//! Request limits, from tower-http: the body size (`RequestBodyLimitLayer`, `--max-body`) and
//! the time a request body may take to arrive (`RequestBodyTimeoutLayer`, [`READ_TIMEOUT`]),
//! and the JSON body extractor. Every failure is answered with an OpenAI-style error, told
//! apart by the type of the error (`LengthLimitError`, `TimeoutError`), never by its text.
//!
//! Only reading the request is timed: a generation, streamed or not, may take as long as it
//! takes (a client that goes away cancels it).

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::LengthLimitError;
use serde_json::Value;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutError};

use super::error::ApiError;
use super::log::RequestRecord;
use super::state::{AppState, Limits};

/// The default of `--timeout`: how long the server waits for the next piece of a request head
/// (then closes the connection) or body (then answers 408):
/// a client that sends half a body is timed out, not waited for.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Wraps `router` in the body limits: the size limit (a declared `Content-Length` over it is
/// refused before the handler runs, a longer body without one stops being read at the limit)
/// and the read timeout. A 413 from the size limit is answered as [`too_large`].
pub fn apply<S>(router: Router<S>, limits: &Limits) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .layer(RequestBodyLimitLayer::new(limits.max_body))
        .layer(RequestBodyTimeoutLayer::new(limits.read_timeout))
        .layer(from_fn_with_state(limits.max_body, answer_too_large))
}

/// Middleware: gives the size limit's own 413 (plain text) our JSON body.
async fn answer_too_large(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let record = req.extensions().get::<Arc<RequestRecord>>().cloned();
    let response = next.run(req).await;
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    let err = too_large(limit);
    if let Some(record) = record {
        record.failed(&err.message);
    }
    err.into_response()
}

/// A request body that is a JSON object, at most `--max-body` bytes.
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl FromRequest<Arc<AppState>> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<JsonBody, ApiError> {
        read_json(req, &state.limits).await.map(JsonBody)
    }
}

/// Reads a JSON object from a request whose body [`apply`]'s layers limit, whatever its
/// `Content-Type`.
pub async fn read_json(req: Request, limits: &Limits) -> Result<Value, ApiError> {
    // Whatever the Content-Type says (`curl -d` sends form encoding): the body is read as
    // JSON, as llama-server and Ollama read it.
    // The layers limit the size; reading stops with their typed errors.
    let bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .map_err(|err| {
            if caused_by::<LengthLimitError>(&err) {
                too_large(limits.max_body)
            } else if caused_by::<TimeoutError>(&err) {
                timed_out(limits.read_timeout)
            } else {
                ApiError::invalid(format!("cannot read the request body: {err}"), None)
            }
        })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|err| {
        ApiError::invalid(format!("the body is not valid JSON: {err}"), None)
            .with_code("invalid_json")
    })?;
    if !value.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object", None));
    }
    Ok(value)
}

/// Whether `err` or an error in its source chain is an `E`.
fn caused_by<E: Error + 'static>(err: &(dyn Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.is::<E>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// 413: the body is over `--max-body`.
fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        format!("the request body is larger than the limit of {limit} bytes (--max-body)"),
    )
    .with_code("request_too_large")
}

/// 408: the body stopped arriving.
fn timed_out(timeout: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "invalid_request_error",
        format!(
            "the request body stopped arriving: nothing came for {} s",
            timeout.as_secs_f64()
        ),
    )
    .with_code("request_timeout")
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, Bytes};
    use axum::http::header;
    use axum::routing::post;
    use futures_util::StreamExt;
    use tower::ServiceExt;

    use super::*;

    const LIMITS: Limits = Limits {
        max_body: 16,
        queue_capacity: 1,
        read_timeout: Duration::from_secs(5),
    };

    /// A router with the limits around a handler that echoes the JSON body.
    fn app() -> Router {
        let echo = post(|req: Request| async move {
            match read_json(req, &LIMITS).await {
                Ok(value) => axum::Json(value).into_response(),
                Err(err) => err.into_response(),
            }
        });
        apply(Router::new().route("/", echo), &LIMITS)
    }

    /// Sends `body` (with `Content-Length` when `length` is given) and returns the status and
    /// the JSON answer.
    async fn send(body: Body, length: Option<usize>, kind: &str) -> (StatusCode, Value) {
        let mut req = Request::post("/").header(header::CONTENT_TYPE, kind);
        if let Some(n) = length {
            req = req.header(header::CONTENT_LENGTH, n);
        }
        let response = app().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {bytes:?}"));
        (status, value)
    }

    /// A body sent in pieces, with no length known in advance.
    fn chunked(pieces: &[&'static str]) -> Body {
        let pieces: Vec<Result<Bytes, std::io::Error>> =
            pieces.iter().map(|p| Ok(Bytes::from(*p))).collect();
        Body::from_stream(futures_util::stream::iter(pieces))
    }

    #[tokio::test]
    async fn a_small_json_body_passes() {
        let (status, value) = send(Body::from(r#"{"a":1}"#), Some(7), "application/json").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(value["a"], 1);
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_413_json() {
        let body = "x".repeat(100);
        let (status, value) = send(Body::from(body), Some(100), "application/json").await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(value["error"]["code"], "request_too_large");
        assert_eq!(value["error"]["type"], "invalid_request_error");
        let message = value["error"]["message"].as_str().unwrap();
        assert!(message.contains("16 bytes"), "{message}");
    }

    #[tokio::test]
    async fn a_longer_body_without_a_length_is_413_json() {
        let body = chunked(&[r#"{"text":"#, r#""0123456789abcdef"}"#]);
        let (status, value) = send(body, None, "application/json").await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(value["error"]["code"], "request_too_large");
    }

    #[tokio::test(start_paused = true)]
    async fn half_a_body_is_timed_out_with_408_json() {
        // Declares 12 bytes, sends 5, then nothing (time is paused: the wait is instant).
        let first = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from("{\"a\":"))]);
        let body = Body::from_stream(first.chain(futures_util::stream::pending()));
        let (status, value) = send(body, Some(12), "application/json").await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(value["error"]["code"], "request_timeout");
        let message = value["error"]["message"].as_str().unwrap();
        assert!(message.contains("5 s"), "{message}");
    }

    #[tokio::test]
    async fn any_content_type_is_read_as_json_and_bad_json_is_refused() {
        let (status, value) = send(Body::from(r#"{"a":2}"#), Some(7), "text/plain").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(value["a"], 2);
        let form = "application/x-www-form-urlencoded";
        let (status, value) = send(Body::from(r#"{"b":3}"#), Some(7), form).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(value["b"], 3);
        let (status, value) = send(Body::from("{"), Some(1), "application/json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(value["error"]["code"], "invalid_json");
        let (status, _) = send(Body::from("[1]"), Some(3), "application/json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}
