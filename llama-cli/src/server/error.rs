//! Errors of the server: [`ApiError`], an HTTP status with an OpenAI-style error body
//! (`{"error": {"message", "type", "param", "code"}}`), and [`ServeError`], what stops the
//! server from starting or running.

use std::path::PathBuf;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use llama_core::engine::{EngineError, SubmitError};

/// An error answered to a client, in the shape OpenAI's API uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// OpenAI's error type, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// The request field at fault, if any.
    pub param: Option<String>,
    /// A machine-readable code, if any.
    pub code: Option<&'static str>,
    /// Seconds the client should wait before retrying (`Retry-After`).
    pub retry_after: Option<u32>,
    /// Further fields of the error object (llama-server's `n_prompt_tokens` and `n_ctx` of a
    /// context overflow).
    pub extra: Vec<(&'static str, serde_json::Value)>,
}

impl ApiError {
    /// A 400 `invalid_request_error`, optionally naming the field at fault.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
            retry_after: None,
            extra: Vec::new(),
        }
    }

    /// An error with this status, type and message.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
            extra: Vec::new(),
        }
    }

    /// Sets the machine-readable code.
    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    /// Adds a field to the error object.
    pub fn with_field(
        mut self,
        name: &'static str,
        value: impl Into<serde_json::Value>,
    ) -> ApiError {
        self.extra.push((name, value.into()));
        self
    }

    /// 401: missing or wrong API key (typed `authentication_error`, as llama-server and
    /// Anthropic's API answer).
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missing or invalid API key: send the header 'Authorization: Bearer KEY' or 'X-Api-Key: KEY'",
        )
        .with_code("invalid_api_key")
    }

    /// 404 for a path the server does not have.
    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no such endpoint: {path}"),
        )
        .with_code("not_found")
    }

    /// 503 while the server shuts down.
    pub fn shutting_down() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "the server is shutting down",
        )
        .with_code("shutting_down")
    }

    /// 500 for a failure inside the server.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut error = serde_json::json!({
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        });
        for (name, value) in &self.extra {
            error[*name] = value.clone();
        }
        serde_json::json!({ "error": error })
    }
}

impl From<SubmitError> for ApiError {
    fn from(err: SubmitError) -> ApiError {
        match err {
            SubmitError::QueueFull { .. } => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    err.to_string(),
                )
                .with_code("queue_full")
            },
            // llama-server's shape: its own type, with the prompt's and the context's size.
            SubmitError::TooLarge { needed, max } => ApiError {
                kind: "exceed_context_size_error",
                ..ApiError::invalid(err.to_string(), Some("messages"))
            }
            .with_code("context_length_exceeded")
            .with_field("n_prompt_tokens", needed.saturating_sub(1))
            .with_field("n_ctx", max),
            SubmitError::EmptyPrompt => ApiError::invalid(err.to_string(), None),
            SubmitError::ShuttingDown => ApiError::shutting_down(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> ApiError {
        ApiError::internal(err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// What stops `serve` from starting, or ends it with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The engine could not start.
    #[error("cannot start the engine: {0}")]
    Engine(#[from] EngineError),
    /// The model's KV geometry could not be read.
    #[error("cannot read the model's KV-cache geometry: {0}")]
    CacheSpec(#[from] llama_core::cache_spec::CacheSpecError),
    /// Binding the address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The host is not an IP address or a resolvable name.
    #[error("invalid --host {host:?}: {message}")]
    Host {
        /// What was given.
        host: String,
        /// Why it is not usable.
        message: String,
    },
    /// A non-loopback address without an API key.
    #[error("refusing to listen on {host} (not a loopback address) without an API key: pass --api-key KEY or --api-key-file FILE, or --no-auth to serve without authentication")]
    NoAuthOnPublicAddress {
        /// The host.
        host: String,
    },
    /// The API key file could not be read or is empty.
    #[error("cannot use the API key file {}: {message}", path.display())]
    ApiKeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An empty API key.
    #[error("the API key is empty")]
    EmptyApiKey,
    /// A server option out of range.
    #[error("invalid --{name} {value}: expected {expected}")]
    Option {
        /// The option.
        name: &'static str,
        /// The value.
        value: String,
        /// What would be accepted.
        expected: &'static str,
    },
    /// The engine's state directory could not be created.
    #[error("cannot create the state directory {}: {source}", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// Serving failed.
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
    /// The models to serve without `-m` could not be set up.
    #[error(transparent)]
    Router(#[from] super::router::RouterError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_full_is_429_with_retry_after() {
        let err = ApiError::from(SubmitError::QueueFull { capacity: 3 });
        assert_eq!(err.status, StatusCode::TOO_MANY_REQUESTS);
        let response = err.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn context_overflow_has_llama_server_shape() {
        let body = ApiError::from(SubmitError::TooLarge {
            needed: 601,
            max: 512,
        })
        .body();
        assert_eq!(body["error"]["type"], "exceed_context_size_error");
        assert_eq!(body["error"]["n_prompt_tokens"], 600);
        assert_eq!(body["error"]["n_ctx"], 512);
        assert_eq!(body["error"]["code"], "context_length_exceeded");
    }

    #[test]
    fn body_has_openai_shape() {
        let body = ApiError::invalid("bad", Some("temperature")).body();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "temperature");
        assert!(body["error"]["code"].is_null());
        assert_eq!(body["error"]["message"], "bad");
    }
}
