//! How to reach the Hub, from the environment huggingface_hub reads: the endpoint
//! (`HF_ENDPOINT`, or llama.cpp's `MODEL_ENDPOINT`), the token (`HF_TOKEN`, else the token file
//! `huggingface-cli login` writes) and offline mode (`HF_HUB_OFFLINE`).

use std::fmt;

use super::cache_dir::{token_file, Env};

/// The Hub's public endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// An access token. It is sent only to the endpoint's host and never printed: its `Debug`
/// shows `Token(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token (surrounding whitespace removed); `None` when empty.
    pub fn new(text: &str) -> Option<Token> {
        let text = text.trim();
        (!text.is_empty()).then(|| Token(text.to_string()))
    }

    /// The `Authorization` header's value.
    pub(crate) fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// Where the Hub is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// The endpoint, without a trailing `/` (e.g. `https://huggingface.co` or a mirror).
    pub endpoint: String,
    /// The token for gated and private repositories.
    pub token: Option<Token>,
    /// Whether the network may not be used (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
}

impl HubConfig {
    /// The configuration the environment gives. The token is `HF_TOKEN` (or the older
    /// `HUGGING_FACE_HUB_TOKEN`), else the first line of the token file.
    pub fn from_env(env: Env<'_>) -> HubConfig {
        let endpoint = env("MODEL_ENDPOINT")
            .or_else(|| env("HF_ENDPOINT"))
            .and_then(|e| e.into_string().ok())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token = env("HF_TOKEN")
            .or_else(|| env("HUGGING_FACE_HUB_TOKEN"))
            .and_then(|t| t.into_string().ok())
            .and_then(|t| Token::new(&t))
            .or_else(|| {
                let text = std::fs::read_to_string(token_file(env)?).ok()?;
                Token::new(text.lines().next()?)
            });
        HubConfig {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            offline: env("HF_HUB_OFFLINE")
                .and_then(|v| v.into_string().ok())
                .is_some_and(|v| is_true(&v)),
        }
    }
}

/// huggingface_hub's truthy values: `1`, `ON`, `YES`, `TRUE` (any case).
fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn environment_sets_endpoint_token_and_offline() {
        let env = |name: &str| -> Option<OsString> {
            match name {
                "HF_ENDPOINT" => Some("http://127.0.0.1:9/".into()),
                "HF_TOKEN" => Some(" hf_secret \n".into()),
                "HF_HUB_OFFLINE" => Some("yes".into()),
                _ => None,
            }
        };
        let config = HubConfig::from_env(&env);
        assert_eq!(config.endpoint, "http://127.0.0.1:9");
        assert_eq!(config.token, Token::new("hf_secret"));
        assert!(config.offline);
        assert!(!format!("{config:?}").contains("hf_secret"));
        let none = HubConfig::from_env(&|_: &str| None);
        assert_eq!(none.endpoint, DEFAULT_ENDPOINT);
        assert!(!none.offline && none.token.is_none());
    }
}
