//! Redaction of secrets from text that goes into a bug report: API keys, tokens and passwords
//! in flags (`--api-key KEY`), assignments (`api-key = "KEY"`, `HF_TOKEN=...`, `token: ...`),
//! `Bearer` credentials, and tokens recognisable by their shape (Hugging Face `hf_...`,
//! OpenAI-style `sk-...`). Each secret becomes `[REDACTED]`; the rest of the text is kept.

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Key names (lower case) whose values are secret: a key is secret when it ends with one.
const SECRET_KEY_ENDINGS: &[&str] = &[
    "api-key",
    "api_key",
    "apikey",
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "access-key",
    "access_key",
];

/// Flags whose next argument is secret.
const SECRET_FLAGS: &[&str] = &["--api-key", "--hf-token", "--token", "--password"];

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_ENDINGS.iter().any(|e| key.ends_with(e))
}

/// The end of a value starting at `start` in `line`: a quoted string (up to its closing quote)
/// or a run of characters up to white space, a quote or `,` `;` `)` `]` `}`. Returns (value start,
/// value end) without the quotes.
fn value_span(line: &str, start: usize) -> Option<(usize, usize)> {
    let rest = &line[start..];
    let first = rest.chars().next()?;
    if first == '"' || first == '\'' {
        let inner = start + 1;
        let end = line[inner..].find(first).map_or(line.len(), |i| inner + i);
        return (end > inner).then_some((inner, end));
    }
    let end = rest
        .find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ')' | ']' | '}' | '"' | '\''))
        .map_or(line.len(), |i| start + i);
    (end > start).then_some((start, end))
}

/// Replaces the byte ranges `spans` (sorted, not overlapping) of `line` with [`REDACTED`].
fn replace_spans(line: &str, spans: &[(usize, usize)]) -> String {
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    for &(s, e) in spans {
        if s < at {
            continue;
        }
        out.push_str(&line[at..s]);
        out.push_str(REDACTED);
        at = e;
    }
    out.push_str(&line[at..]);
    out
}

/// Values of secret flags (`--api-key KEY`, `--api-key=KEY`).
fn flag_values(line: &str, spans: &mut Vec<(usize, usize)>) {
    for flag in SECRET_FLAGS {
        let mut from = 0;
        while let Some(i) = line[from..].find(flag) {
            let after = from + i + flag.len();
            from = after;
            let rest = &line[after..];
            let skip = if let Some(r) = rest.strip_prefix('=') {
                rest.len() - r.len()
            } else if rest.starts_with(' ') {
                rest.len() - rest.trim_start_matches(' ').len()
            } else {
                continue;
            };
            if let Some(span) = value_span(line, after + skip) {
                spans.push(span);
            }
        }
    }
}

/// Values of secret keys (`KEY = VALUE`, `KEY: VALUE`, `KEY=VALUE`).
fn assignments(line: &str, spans: &mut Vec<(usize, usize)>) {
    let mut key_start = None;
    for (i, c) in line.char_indices() {
        if is_key_char(c) {
            key_start.get_or_insert(i);
            continue;
        }
        let Some(start) = key_start.take() else {
            continue;
        };
        let key = &line[start..i];
        if !is_secret_key(key) {
            continue;
        }
        // Optional quotes around the key, spaces, then `=` or `:`.
        let rest = &line[i..];
        let trimmed = rest.trim_start_matches(['"', '\'']).trim_start();
        let Some(after_sep) = trimmed
            .strip_prefix('=')
            .or_else(|| trimmed.strip_prefix(':'))
        else {
            continue;
        };
        let mut value = after_sep.trim_start();
        // `Authorization: Bearer X`: the credential is X (the bearer rule redacts it).
        if let Some((scheme, rest)) = value.split_once(' ') {
            if ["bearer", "basic", "token"].contains(&scheme.to_ascii_lowercase().as_str()) {
                value = rest.trim_start();
            }
        }
        let value_at = line.len() - value.len();
        if let Some(span) = value_span(line, value_at) {
            spans.push(span);
        }
    }
}

/// `Bearer X` credentials.
fn bearer(line: &str, spans: &mut Vec<(usize, usize)>) {
    let lower = line.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("bearer ") {
        let at = from + i + "bearer ".len();
        from = at;
        let value_at = at + (line[at..].len() - line[at..].trim_start().len());
        if let Some(span) = value_span(line, value_at) {
            if &line[span.0..span.1] != REDACTED {
                spans.push(span);
            }
        }
    }
}

/// Tokens recognisable by their shape: `hf_` or `sk-` followed by at least 20 characters of
/// letters, digits, `_` or `-`.
fn shaped_tokens(line: &str, spans: &mut Vec<(usize, usize)>) {
    for prefix in ["hf_", "sk-"] {
        let mut from = 0;
        while let Some(i) = line[from..].find(prefix) {
            let start = from + i;
            let body = start + prefix.len();
            let len = line[body..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(line.len() - body);
            let before_ok = line[..start]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_ascii_alphanumeric());
            if len >= 20 && before_ok {
                spans.push((body, body + len));
            }
            from = body + len;
        }
    }
}

/// `text` with every secret replaced by [`REDACTED`] (see the module docs).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let mut spans = Vec::new();
        flag_values(line, &mut spans);
        assignments(line, &mut spans);
        bearer(line, &mut spans);
        shaped_tokens(line, &mut spans);
        spans.sort_unstable();
        spans.dedup();
        out.push_str(&replace_spans(line, &spans));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_assignments_and_bearer_credentials_are_redacted() {
        assert_eq!(
            redact("llama-cli serve --api-key s3cret --port 8080"),
            "llama-cli serve --api-key [REDACTED] --port 8080"
        );
        assert_eq!(redact("--api-key=s3cret"), "--api-key=[REDACTED]");
        assert_eq!(redact("api-key = \"s3cret\""), "api-key = \"[REDACTED]\"");
        assert_eq!(
            redact("HF_TOKEN=abc123 RUST_LOG=info"),
            "HF_TOKEN=[REDACTED] RUST_LOG=info"
        );
        assert_eq!(
            redact("\"api_key\": \"x y\","),
            "\"api_key\": \"[REDACTED]\","
        );
        assert_eq!(
            redact("Authorization: Bearer abc.def"),
            "Authorization: Bearer [REDACTED]"
        );
        assert_eq!(
            redact("authorization = \"Basic dXNlcg==\""),
            "authorization = \"[REDACTED]\""
        );
        assert_eq!(
            redact("curl -H 'bearer tok'"),
            "curl -H 'bearer [REDACTED]'"
        );
        assert_eq!(
            redact("token hf_abcdefghijklmnopqrstuvwxyz used"),
            "token hf_[REDACTED] used"
        );
        assert_eq!(
            redact("key sk-proj-ABCDEFGHIJKLMNOPQRSTUV"),
            "key sk-[REDACTED]"
        );
    }

    #[test]
    fn ordinary_text_is_kept() {
        for text in [
            "llama_model_loader: - kv  23: tokenizer.ggml.tokens arr[str,49152] = [\"a\"]",
            "n_tokens = 512, top-k = 40",
            "plan for model.gguf under --max-mem 1G",
            "ask_hf_hub: ok",
            "",
        ] {
            assert_eq!(redact(text), text);
        }
        assert_eq!(redact("a\nHF_TOKEN=x\nb"), "a\nHF_TOKEN=[REDACTED]\nb");
    }
}
