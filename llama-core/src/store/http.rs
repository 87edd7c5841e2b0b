//! The HTTP client (ureq, rustls): one request at a time, redirects followed by hand so that the
//! token goes only to the Hub endpoint's origin (scheme, host and port) and never to a CDN it
//! redirects to. URLs in errors lose their query string (CDN links carry signatures there).

use std::time::Duration;

use ureq::http::{Response, Uri};
use ureq::Body;

use super::error::StoreError;
use super::hub_config::Token;

/// Redirect hops followed before giving up.
const MAX_REDIRECTS: u32 = 10;

/// A ureq agent that knows which origin may see the token.
#[derive(Debug, Clone)]
pub struct Http {
    agent: ureq::Agent,
    endpoint_origin: Option<Origin>,
    token: Option<Token>,
}

/// `(scheme, host, port)` of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin(String, String, u16);

fn origin(url: &str) -> Option<Origin> {
    let uri: Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some(Origin(scheme, uri.host()?.to_ascii_lowercase(), port))
}

/// `url` without its query string or fragment.
pub fn display_url(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_string()
}

/// `location` resolved against the URL it came from.
pub fn join(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    if location.starts_with('/') {
        return format!("{}{location}", &base[..path_start]);
    }
    let dir_end = display_url(base).rfind('/').filter(|&i| i >= path_start);
    match dir_end {
        Some(i) => format!("{}/{location}", &base[..i]),
        None => format!("{}/{location}", &base[..path_start]),
    }
}

/// The HTTP method of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// HEAD.
    Head,
    /// GET.
    Get,
}

/// A response and the URL that gave it (after redirects).
pub struct Answer {
    /// The response (status, headers, body).
    pub response: Response<Body>,
    /// The URL that answered.
    pub url: String,
}

impl Answer {
    /// The value of header `name`, if it is valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.response, name)
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }
}

/// The value of header `name` of `response`.
pub fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name)?.to_str().ok()
}

impl Http {
    /// A client for the Hub at `endpoint`, sending `token` only there.
    pub fn new(endpoint: &str, token: Option<Token>) -> Http {
        let config = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(format!("llama-rs/{}", env!("CARGO_PKG_VERSION")))
            .accept_encoding("identity")
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .build();
        Http {
            agent: config.into(),
            endpoint_origin: origin(endpoint),
            token,
        }
    }

    /// Whether requests to `url` carry the token.
    pub fn sends_token_to(&self, url: &str) -> bool {
        self.token.is_some()
            && self.endpoint_origin.is_some()
            && origin(url) == self.endpoint_origin
    }

    /// Whether a token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// One request, no redirect followed.
    pub fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, StoreError> {
        let mut request = match method {
            Method::Head => self.agent.head(url),
            Method::Get => self.agent.get(url),
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let (true, Some(token)) = (self.sends_token_to(url), &self.token) {
            request = request.header("Authorization", token.bearer());
        }
        let response = request.call().map_err(|err| StoreError::Network {
            url: display_url(url),
            message: transport_message(&err),
        })?;
        Ok(Answer {
            response,
            url: url.to_string(),
        })
    }

    /// A request that follows redirects while `follow` says so for the target URL
    /// (`|_| true`: all of them). Returns the last response: a non-redirect, or a redirect
    /// `follow` refused.
    pub fn send_following(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        follow: impl Fn(&str, &str) -> bool,
    ) -> Result<Answer, StoreError> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let answer = self.send(method, &url, headers)?;
            let status = answer.response.status();
            let location = answer.header("location").map(str::to_string);
            match location {
                Some(location) if status.is_redirection() => {
                    let target = join(&url, &location);
                    if !follow(&url, &target) {
                        return Ok(answer);
                    }
                    url = target;
                }
                _ => return Ok(answer),
            }
        }
        Err(StoreError::Protocol {
            url: display_url(&url),
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// Whether `a` and `b` share an origin.
    pub fn same_origin(a: &str, b: &str) -> bool {
        origin(a).is_some() && origin(a) == origin(b)
    }
}

/// The transport error in words, without the URL's query.
fn transport_message(err: &ureq::Error) -> String {
    match err {
        ureq::Error::HostNotFound => "host not found (no network?)".to_string(),
        ureq::Error::ConnectionFailed => "connection failed (no network?)".to_string(),
        other => display_url(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_against_their_origin() {
        assert_eq!(join("http://a:1/x/y?q=1", "/cdn/z"), "http://a:1/cdn/z");
        assert_eq!(join("http://a/x/y", "z"), "http://a/x/z");
        assert_eq!(join("http://a/x", "https://b/c"), "https://b/c");
    }

    #[test]
    fn the_token_goes_only_to_the_endpoint_origin() {
        let http = Http::new("https://huggingface.co", Token::new("hf_x"));
        assert!(http.sends_token_to("https://huggingface.co/api/models/a/b"));
        assert!(http.sends_token_to("https://HuggingFace.co:443/a"));
        assert!(!http.sends_token_to("https://cdn-lfs.huggingface.co/a"));
        assert!(!http.sends_token_to("http://huggingface.co/a"));
        assert!(!http.sends_token_to("https://huggingface.co.evil.org/a"));
        assert_eq!(
            display_url("https://cdn/x?X-Amz-Signature=s"),
            "https://cdn/x"
        );
    }
}
