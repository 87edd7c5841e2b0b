//! API-key authentication: with a key configured, every request but `/health` (and
//! `/v1/health`) needs `Authorization: Bearer KEY` or, as Anthropic's clients send it,
//! `X-Api-Key: KEY`, compared in constant time. The check runs before routing, so a path that
//! does not exist is 401 to a client without the key, as llama-server answers (no listing of
//! the routes to strangers). CORS preflights (`OPTIONS`) are answered before it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::AppState;

/// An API key.
#[derive(Clone)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

impl ApiKey {
    /// A key; `None` when it is empty after trimming whitespace.
    pub fn new(key: &str) -> Option<ApiKey> {
        let key = key.trim();
        (!key.is_empty()).then(|| ApiKey(key.to_string()))
    }

    /// Whether an `Authorization` header value carries this key (constant time in the key's
    /// contents; the length is not secret).
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some(token) = strip_bearer(value) else {
            return false;
        };
        bool::from(token.ct_eq(self.0.as_bytes()))
    }

    /// Whether an `X-Api-Key` header value is this key (constant time in its contents).
    pub fn accepts_plain(&self, value: Option<&[u8]>) -> bool {
        value.is_some_and(|v| bool::from(v.trim_ascii().ct_eq(self.0.as_bytes())))
    }
}

/// Paths open without a key.
pub const PUBLIC_PATHS: [&str; 2] = ["/health", "/v1/health"];

fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let start = rest.iter().position(|b| *b != b' ')?;
    Some(&rest[start..])
}

/// Middleware: refuses requests without the key (401) when one is configured, except on
/// [`PUBLIC_PATHS`].
pub async fn require_key(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        if !PUBLIC_PATHS.contains(&req.uri().path()) {
            let headers = req.headers();
            let bearer = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
            let plain = headers.get("x-api-key").map(|v| v.as_bytes());
            if !key.accepts(bearer) && !key.accepts_plain(plain) {
                return ApiError::unauthorized().into_response();
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_exact_bearer_key() {
        let key = ApiKey::new(" secret\n").unwrap();
        assert!(key.accepts(Some(b"Bearer secret")));
        assert!(key.accepts(Some(b"bearer  secret")));
        assert!(!key.accepts(Some(b"Bearer secreT")));
        assert!(!key.accepts(Some(b"Bearer secret2")));
        assert!(!key.accepts(Some(b"Basic secret")));
        assert!(!key.accepts(Some(b"Bearer")));
        assert!(!key.accepts(None));
        assert!(ApiKey::new("  ").is_none());
        assert!(key.accepts_plain(Some(b"secret")));
        assert!(!key.accepts_plain(Some(b"Bearer secret")));
        assert!(!key.accepts_plain(Some(b"secre")));
        assert!(!key.accepts_plain(None));
    }
}
