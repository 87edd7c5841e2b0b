//! Tool calls read while they are still being written: the name of each call and the text of
//! its arguments so far, so that a stream can send the arguments as they come (OpenAI's
//! `function.arguments` fragments, Anthropic's `input_json_delta`).
//!
//! Only formats where a call carries no id of its own are read this way: the stream has to
//! name the call (with an id it makes up) before the arguments end. Hermes' `<tool_call>`
//! objects, Llama 3's bare object and the generic format's single `tool_call` qualify;
//! Mistral's calls and the generic `tool_calls` array carry ids, and are sent whole.
//!
//! The arguments' text is the model's JSON without the whitespace between tokens (strings are
//! kept as written), so that a prefix of the answer gives a prefix of the text: what the
//! stream has sent is never taken back.

use super::tools::{ToolFormat, HERMES_CLOSE, HERMES_OPEN};

/// A call as far as the answer goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartialCall {
    /// The function's name, once its string is complete.
    pub name: Option<String>,
    /// The arguments' text so far (an object or array written inline; `None` before they
    /// start, or when they are a JSON string, which is only read whole).
    pub arguments: Option<String>,
    /// The arguments' value is complete.
    pub complete: bool,
}

/// The calls in `text` (the answer after any reasoning) for `format`; empty for formats whose
/// calls are only sent whole.
pub fn partial_calls(format: ToolFormat, text: &str) -> Vec<PartialCall> {
    match format {
        ToolFormat::Hermes => {
            let mut out = Vec::new();
            let mut rest = text;
            while let Some(start) = rest.find(HERMES_OPEN) {
                let after = &rest[start + HERMES_OPEN.len()..];
                let end = after.find(HERMES_CLOSE).unwrap_or(after.len());
                out.push(call_object(&after[..end]).unwrap_or_default());
                rest = &after[end..];
            }
            out
        }
        ToolFormat::Llama3 => {
            let trimmed = text.trim_start();
            let body = trimmed.strip_prefix("<|python_tag|>").unwrap_or(trimmed);
            call_object(body).into_iter().collect()
        }
        ToolFormat::Generic => {
            let fields = fields(text.trim_start());
            match fields.iter().find(|f| f.key == "tool_call") {
                Some(f) => call_object(&text.trim_start()[f.start..])
                    .into_iter()
                    .collect(),
                None => Vec::new(),
            }
        }
        ToolFormat::Mistral | ToolFormat::Firefunction => Vec::new(),
    }
}

/// A call object `{"name": ..., "arguments" | "parameters": ...}` read as far as it goes;
/// `None` when `text` is not (the start of) an object.
fn call_object(text: &str) -> Option<PartialCall> {
    let text = text.trim_start();
    if !text.starts_with('{') {
        return None;
    }
    let mut call = PartialCall::default();
    for field in fields(text) {
        let value = &text[field.start..field.end.unwrap_or(text.len())];
        match field.key.as_str() {
            "name" if field.end.is_some() => {
                call.name = serde_json::from_str::<String>(value).ok();
            }
            "arguments" | "parameters" if !value.starts_with('"') => {
                call.arguments = Some(compact(value));
                call.complete = field.end.is_some();
            }
            _ => {}
        }
    }
    Some(call)
}

/// A field of an object: its key and where its value lies (`end` `None`: not complete yet).
#[derive(Debug, PartialEq)]
struct Field {
    key: String,
    start: usize,
    end: Option<usize>,
}

/// The fields of the object at the start of `text`, as far as they go.
fn fields(text: &str) -> Vec<Field> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    if bytes.first() != Some(&b'{') {
        return out;
    }
    let mut i = 1;
    loop {
        i = skip(bytes, i, b" \t\r\n,");
        if i >= bytes.len() || bytes[i] != b'"' {
            return out;
        }
        let Some(key_end) = value_end(bytes, i) else {
            return out;
        };
        let Ok(key) = serde_json::from_str::<String>(&text[i..key_end]) else {
            return out;
        };
        i = skip(bytes, key_end, b" \t\r\n");
        if i >= bytes.len() || bytes[i] != b':' {
            return out;
        }
        let start = skip(bytes, i + 1, b" \t\r\n");
        if start >= bytes.len() {
            return out;
        }
        let end = value_end(bytes, start);
        out.push(Field { key, start, end });
        match end {
            Some(end) => i = end,
            None => return out,
        }
    }
}

fn skip(bytes: &[u8], mut i: usize, set: &[u8]) -> usize {
    while i < bytes.len() && set.contains(&bytes[i]) {
        i += 1;
    }
    i
}

/// The end of the JSON value starting at `start`, when it is complete in `bytes`. A scalar
/// is complete when a delimiter follows it.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    in_string = false;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth == 0 => return Some(i),
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b',' | b' ' | b'\t' | b'\r' | b'\n' if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

/// `json` without whitespace outside its strings.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_read_as_far_as_it_goes() {
        let full = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris, FR\", \"days\": [1, 2]}}";
        let whole = call_object(full).unwrap();
        assert_eq!(whole.name.as_deref(), Some("get_weather"));
        assert_eq!(
            whole.arguments.as_deref(),
            Some("{\"city\":\"Paris, FR\",\"days\":[1,2]}")
        );
        assert!(whole.complete);
        // Every prefix gives a prefix of the whole arguments, and no name before it is whole.
        let mut last = String::new();
        for n in 0..=full.len() {
            let Some(call) = call_object(&full[..n]) else {
                continue;
            };
            if let Some(name) = &call.name {
                assert_eq!(name, "get_weather");
            }
            let args = call.arguments.unwrap_or_default();
            assert!(args.starts_with(&last), "{n}: {args:?} after {last:?}");
            assert!(whole.arguments.as_deref().unwrap().starts_with(&args));
            last = args;
        }
        assert_eq!(call_object("{\"name\": \"get_wea").unwrap().name, None);
        // Arguments written as a JSON string are only read whole.
        let s = call_object("{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}").unwrap();
        assert_eq!(s.arguments, None);
    }

    #[test]
    fn formats() {
        let hermes = partial_calls(
            ToolFormat::Hermes,
            "Sure.<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call><tool_call>{\"name\": \"b\", \"arguments\": {\"x\": 1",
        );
        assert_eq!(hermes.len(), 2);
        assert!(hermes[0].complete);
        assert_eq!(hermes[1].arguments.as_deref(), Some("{\"x\":1"));
        assert!(!hermes[1].complete);
        let generic = partial_calls(
            ToolFormat::Generic,
            "{\"tool_call\": {\"name\": \"f\", \"arguments\": {\"q\": \"a b\"",
        );
        assert_eq!(generic[0].arguments.as_deref(), Some("{\"q\":\"a b\""));
        assert!(partial_calls(ToolFormat::Generic, "{\"response\": \"hi").is_empty());
        let llama = partial_calls(
            ToolFormat::Llama3,
            "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"a\": true}}",
        );
        assert!(llama[0].complete);
        assert!(partial_calls(ToolFormat::Mistral, "[TOOL_CALLS][{\"name\": \"f\"").is_empty());
    }
}
