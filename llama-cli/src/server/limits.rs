//! Request limits: the JSON body extractor (content type, size limit, syntax), answering
//! every failure with an OpenAI-style error instead of axum's plain-text rejections.

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde_json::Value;

use super::error::ApiError;
use super::state::AppState;

/// A request body that is a JSON object, at most `--max-body` bytes.
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl FromRequest<Arc<AppState>> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<JsonBody, ApiError> {
        let limit = state.limits.max_body;
        if let Some(kind) = req.headers().get(header::CONTENT_TYPE) {
            let kind = kind.to_str().unwrap_or("");
            let essence = kind.split(';').next().unwrap_or("").trim();
            if !essence.eq_ignore_ascii_case("application/json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "invalid_request_error",
                    format!("unsupported content type {kind:?}: send application/json"),
                )
                .with_code("unsupported_media_type"));
            }
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large(limit));
        }
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|err| {
                if is_length_limit(&err) {
                    too_large(limit)
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
        Ok(JsonBody(value))
    }
}

/// Whether reading stopped at the size limit (`http-body-util`'s "length limit exceeded",
/// wrapped by axum).
fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.to_string().contains("length limit exceeded") {
            return true;
        }
        source = e.source();
    }
    false
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        format!("the request body is larger than the limit of {limit} bytes (--max-body)"),
    )
    .with_code("request_too_large")
}
