//! Bearer-token authentication: with a key configured, every endpoint but `/health` needs
//! `Authorization: Bearer KEY`, compared in constant time.

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
}

fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let start = rest.iter().position(|b| *b != b' ')?;
    Some(&rest[start..])
}

/// Middleware: refuses requests without the key (401) when one is configured.
pub async fn require_key(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
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
    }
}
