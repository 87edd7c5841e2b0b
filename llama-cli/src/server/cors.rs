//! Cross-origin requests (tower-http's `CorsLayer`), configured as llama-server's
//! `--cors-origins`, `--cors-methods`, `--cors-headers` and `--cors-credentials`, with its
//! defaults: any origin, `GET, POST, DELETE, OPTIONS`, any header, credentials allowed. With
//! credentials, "any" is answered by echoing the request's `Origin` (and requested headers),
//! since browsers refuse `*` with credentials. Preflights (`OPTIONS`) are answered before the
//! API key is checked: browsers send them without one. A method list is sent as llama-server
//! sends it, the entries joined by `, ` (tower-http joins them with `,`).

use axum::http::{header, HeaderName, HeaderValue, Method, Response};
use tower::Layer;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
use tower_http::set_header::{MakeHeaderValue, SetResponseHeader, SetResponseHeaderLayer};

/// The CORS layer: tower-http's, with `Access-Control-Allow-Methods` spelled as
/// llama-server spells a list.
#[derive(Debug, Clone)]
pub struct Cors {
    layer: CorsLayer,
    methods: MethodsAsListed,
}

impl Cors {
    /// No CORS headers at all (a model's app behind the router's front, which adds them).
    pub fn none() -> Cors {
        Cors {
            layer: CorsLayer::new(),
            methods: MethodsAsListed(None),
        }
    }
}

impl<S> Layer<S> for Cors {
    type Service = SetResponseHeader<tower_http::cors::Cors<S>, MethodsAsListed>;

    fn layer(&self, inner: S) -> Self::Service {
        SetResponseHeaderLayer::overriding(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.methods.clone(),
        )
        .layer(self.layer.layer(inner))
    }
}

/// Rewrites an `Access-Control-Allow-Methods` header the CORS layer sent with the list
/// joined by `, `; a response without the header is left alone.
#[derive(Debug, Clone)]
pub struct MethodsAsListed(Option<HeaderValue>);

impl<B> MakeHeaderValue<Response<B>> for MethodsAsListed {
    fn make_header_value(&mut self, response: &Response<B>) -> Option<HeaderValue> {
        response
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_METHODS)
            .then(|| self.0.clone())
            .flatten()
    }
}

/// The CORS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// `*`, `localhost` (only localhost origins are echoed) or a comma-separated list.
    pub origins: String,
    /// Comma-separated methods, or `*`.
    pub methods: String,
    /// Comma-separated headers, or `*`.
    pub headers: String,
    /// Whether `Access-Control-Allow-Credentials: true` is sent.
    pub credentials: bool,
}

impl Default for CorsConfig {
    fn default() -> CorsConfig {
        CorsConfig {
            origins: "*".into(),
            methods: "GET, POST, DELETE, OPTIONS".into(),
            headers: "*".into(),
            credentials: true,
        }
    }
}

/// A CORS option that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid --cors-{option} entry {value:?}")]
pub struct CorsError {
    /// `origins`, `methods` or `headers`.
    pub option: &'static str,
    /// The entry.
    pub value: String,
}

impl CorsError {
    /// The flag's name (`cors-origins`, ...).
    pub fn option_name(&self) -> &'static str {
        match self.option {
            "origins" => "cors-origins",
            "methods" => "cors-methods",
            _ => "cors-headers",
        }
    }
}

fn items(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Whether an `Origin` value names this machine (`http(s)://localhost`, `127.0.0.1`, `[::1]`,
/// any port).
fn is_localhost(origin: &HeaderValue) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Some((_, rest)) = origin.split_once("://") else {
        return false;
    };
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => rest.split(':').next().unwrap_or(""),
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

impl CorsConfig {
    /// The layer; fails on an entry that is not a valid origin, method or header name.
    pub fn layer(&self) -> Result<Cors, CorsError> {
        let err = |option, value: &str| CorsError {
            option,
            value: value.to_string(),
        };
        let origin = match self.origins.trim() {
            "*" if self.credentials => AllowOrigin::mirror_request(),
            "*" => AllowOrigin::any(),
            "localhost" => AllowOrigin::predicate(|origin, _| is_localhost(origin)),
            list => AllowOrigin::list(
                items(list)
                    .map(|o| HeaderValue::from_str(o).map_err(|_| err("origins", o)))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let (methods, listed) = match self.methods.trim() {
            "*" if self.credentials => (AllowMethods::mirror_request(), None),
            "*" => (AllowMethods::any(), None),
            list => {
                let methods = items(list)
                    .map(|m| Method::from_bytes(m.as_bytes()).map_err(|_| err("methods", m)))
                    .collect::<Result<Vec<_>, _>>()?;
                let joined: Vec<&str> = methods.iter().map(Method::as_str).collect();
                let listed = HeaderValue::from_str(&joined.join(", ")).ok();
                (AllowMethods::list(methods), listed)
            }
        };
        let headers = match self.headers.trim() {
            "*" if self.credentials => AllowHeaders::mirror_request(),
            "*" => AllowHeaders::any(),
            list => AllowHeaders::list(
                items(list)
                    .map(|h| HeaderName::from_bytes(h.as_bytes()).map_err(|_| err("headers", h)))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Cors {
            layer: CorsLayer::new()
                .allow_origin(origin)
                .allow_methods(methods)
                .allow_headers(headers)
                .allow_credentials(self.credentials),
            methods: MethodsAsListed(listed),
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    async fn send(config: &CorsConfig, method: &str, origin: &str) -> axum::response::Response {
        let app = Router::new()
            .route("/x", get(|| async { "ok" }))
            .layer(config.layer().unwrap());
        let req = Request::builder()
            .method(method)
            .uri("/x")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "x-api-key")
            .body(Body::empty())
            .unwrap();
        app.oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn defaults_echo_the_origin_with_credentials() {
        let r = send(&CorsConfig::default(), "OPTIONS", "https://example.org").await;
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "https://example.org");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-allow-headers"], "x-api-key");
        // Spelled as llama-server spells it.
        assert_eq!(
            h["access-control-allow-methods"],
            "GET, POST, DELETE, OPTIONS"
        );
        let r = send(&CorsConfig::default(), "GET", "https://example.org").await;
        assert!(r.headers().get("access-control-allow-methods").is_none());
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "https://example.org"
        );
    }

    #[tokio::test]
    async fn localhost_and_lists_restrict_origins() {
        let local = CorsConfig {
            origins: "localhost".into(),
            ..CorsConfig::default()
        };
        let r = send(&local, "GET", "http://localhost:3000").await;
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "http://localhost:3000"
        );
        let r = send(&local, "GET", "http://[::1]:8").await;
        assert_eq!(r.headers()["access-control-allow-origin"], "http://[::1]:8");
        let r = send(&local, "GET", "http://localhost.evil.com").await;
        assert!(r.headers().get("access-control-allow-origin").is_none());
        let list = CorsConfig {
            origins: "https://a.org, https://b.org".into(),
            credentials: false,
            ..CorsConfig::default()
        };
        let r = send(&list, "GET", "https://b.org").await;
        assert_eq!(r.headers()["access-control-allow-origin"], "https://b.org");
        let r = send(&list, "GET", "https://c.org").await;
        assert!(r.headers().get("access-control-allow-origin").is_none());
        let any = CorsConfig {
            credentials: false,
            ..CorsConfig::default()
        };
        let r = send(&any, "GET", "https://c.org").await;
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
    }

    #[test]
    fn bad_entries_are_refused() {
        let bad = CorsConfig {
            methods: "GET, B@D".into(),
            ..CorsConfig::default()
        };
        assert_eq!(bad.layer().unwrap_err().value, "B@D");
    }
}
