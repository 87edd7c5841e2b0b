//! What an answer means: its text split into `reasoning_content` (`<think>` ... `</think>`),
//! content and tool calls, by the format the prompt was rendered for ([`ChatFormat`]).
//!
//! While an answer streams, [`StreamParser`] parses what has come so far as a partial
//! message (text that may still turn out to be a marker, such as `<tool_` or `<thi`, is held
//! back) and returns what changed as [`MessageDelta`]s: more content, more reasoning, a new
//! tool call (its id and name) and fragments of its arguments as they are written (for the
//! formats [`super::partial`] reads; calls of other formats come whole once complete).

use serde_json::Value as Json;

use super::partial::partial_calls;
use super::tools::{ToolFormat, FIREFUNCTION_MARKER, HERMES_CLOSE, HERMES_OPEN, MISTRAL_MARKER};
use super::ToolCall;

/// The reasoning tags.
const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";

/// Whether reasoning is split from the content (llama-server's `--reasoning-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReasoningFormat {
    /// Left in the content as the model wrote it.
    None,
    /// `<think>` ... `</think>` goes to `reasoning_content` (llama-server's `auto` and
    /// `deepseek`).
    #[default]
    Auto,
}

impl ReasoningFormat {
    /// Parses llama-server's names: `none`, `auto`, `deepseek`, `deepseek-legacy`.
    pub fn from_name(name: &str) -> Option<ReasoningFormat> {
        match name {
            "none" => Some(ReasoningFormat::None),
            "auto" | "deepseek" | "deepseek-legacy" => Some(ReasoningFormat::Auto),
            _ => None,
        }
    }
}

/// How to read an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatFormat {
    /// The tool-call format, when tools were offered (and the choice is not `none`).
    pub tools: Option<ToolFormat>,
    /// Whether reasoning is split out.
    pub reasoning: ReasoningFormat,
    /// The prompt ends inside `<think>` (the template opened the reasoning): the answer starts
    /// with reasoning, without the opening tag.
    pub thinking_open: bool,
}

/// An answer as a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedMessage {
    /// The text for the user.
    pub content: String,
    /// The reasoning, when split out.
    pub reasoning_content: String,
    /// The tool calls (an empty id: the model gave none; [`StreamParser`] assigns one).
    pub tool_calls: Vec<ToolCall>,
}

/// What changed in a streamed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageDelta {
    /// More content.
    Content(String),
    /// More reasoning.
    Reasoning(String),
    /// A new tool call, the `index`-th: its id and name (its arguments follow as
    /// [`MessageDelta::ToolArguments`]).
    ToolCall {
        /// Its position among the message's calls.
        index: usize,
        /// The call's id.
        id: String,
        /// The function's name.
        name: String,
    },
    /// More of the `index`-th call's arguments (JSON text; the fragments joined are the
    /// arguments).
    ToolArguments {
        /// The call's position.
        index: usize,
        /// The text to append.
        text: String,
    },
}

impl ChatFormat {
    /// Parses `text`; with `partial`, text that may be the start of a marker is held back
    /// and an unfinished tool call is left out.
    pub fn parse(&self, text: &str, partial: bool) -> ParsedMessage {
        let mut out = ParsedMessage::default();
        let rest = match self.reasoning {
            ReasoningFormat::None => Some(text),
            ReasoningFormat::Auto => {
                self.split_reasoning(text, partial, &mut out.reasoning_content)
            }
        };
        let Some(rest) = rest else {
            return out;
        };
        match self.tools {
            None => out.content = hold_back(rest, &[], partial).to_string(),
            Some(format) => parse_tool_calls(format, rest, partial, &mut out),
        }
        out
    }

    /// The text after the reasoning of a partial answer, `None` while still reasoning.
    fn after_reasoning<'t>(&self, text: &'t str) -> Option<&'t str> {
        match self.reasoning {
            ReasoningFormat::None => Some(text),
            ReasoningFormat::Auto => self.split_reasoning(text, true, &mut String::new()),
        }
    }

    /// Moves the reasoning into `reasoning`; returns the rest, `None` while still reasoning.
    fn split_reasoning<'t>(
        &self,
        text: &'t str,
        partial: bool,
        reasoning: &mut String,
    ) -> Option<&'t str> {
        let body = if self.thinking_open {
            text
        } else {
            let trimmed = text.trim_start();
            match trimmed.strip_prefix(THINK_OPEN) {
                Some(after) => after,
                None if partial && !trimmed.is_empty() && THINK_OPEN.starts_with(trimmed) => {
                    return None;
                }
                None if partial && trimmed.is_empty() => return None,
                None => return Some(text),
            }
        };
        match body.find(THINK_CLOSE) {
            Some(end) => {
                *reasoning = body[..end].trim().to_string();
                Some(body[end + THINK_CLOSE.len()..].trim_start())
            }
            None => {
                let shown = if partial {
                    hold_back(body, &[THINK_CLOSE], true)
                } else {
                    body
                };
                *reasoning = shown.trim_start().to_string();
                if partial {
                    // Trailing whitespace may be followed by the closing tag.
                    *reasoning = reasoning.trim_end().to_string();
                }
                None
            }
        }
    }
}

/// `text` without a tail that is a proper prefix of one of `markers` (when `partial`).
fn hold_back<'t>(text: &'t str, markers: &[&str], partial: bool) -> &'t str {
    if !partial {
        return text;
    }
    let mut cut = text.len();
    for marker in markers {
        for n in (1..marker.len()).rev() {
            if text.len() >= n
                && text.is_char_boundary(text.len() - n)
                && marker.starts_with(&text[text.len() - n..])
            {
                cut = cut.min(text.len() - n);
                break;
            }
        }
    }
    &text[..cut]
}

fn parse_tool_calls(format: ToolFormat, text: &str, partial: bool, out: &mut ParsedMessage) {
    match format {
        ToolFormat::Hermes => parse_hermes(text, partial, out),
        ToolFormat::Mistral => parse_marked_array(MISTRAL_MARKER, text, partial, out),
        ToolFormat::Firefunction => parse_marked_array(FIREFUNCTION_MARKER, text, partial, out),
        ToolFormat::Llama3 => parse_llama3(text, partial, out),
        ToolFormat::Generic => parse_generic(text, partial, out),
    }
}

/// A call object `{"name", "arguments" | "parameters", "id"?}`.
fn call_from_json(value: &Json) -> Option<ToolCall> {
    let obj = value.as_object()?;
    let name = obj.get("name")?.as_str()?.to_string();
    let arguments = obj
        .get("arguments")
        .or_else(|| obj.get("parameters"))
        .cloned()
        .unwrap_or_else(|| Json::Object(Default::default()));
    let arguments = match arguments {
        Json::String(s) => s,
        other => other.to_string(),
    };
    let id = obj
        .get("id")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    Some(ToolCall {
        id,
        name,
        arguments,
    })
}

fn parse_hermes(text: &str, partial: bool, out: &mut ParsedMessage) {
    let mut content = String::new();
    let mut rest = text;
    loop {
        let Some(start) = rest.find(HERMES_OPEN) else {
            content.push_str(hold_back(rest, &[HERMES_OPEN], partial));
            break;
        };
        content.push_str(&rest[..start]);
        let after = &rest[start + HERMES_OPEN.len()..];
        match after.find(HERMES_CLOSE) {
            Some(end) => {
                match serde_json::from_str::<Json>(after[..end].trim())
                    .ok()
                    .and_then(|v| call_from_json(&v))
                {
                    Some(call) => out.tool_calls.push(call),
                    None => content.push_str(
                        &rest[start..start + HERMES_OPEN.len() + end + HERMES_CLOSE.len()],
                    ),
                }
                rest = &after[end + HERMES_CLOSE.len()..];
            }
            None => {
                if partial {
                    break;
                }
                // The answer ended inside a call (a length limit, or no closing tag).
                match serde_json::from_str::<Json>(after.trim())
                    .ok()
                    .and_then(|v| call_from_json(&v))
                {
                    Some(call) => out.tool_calls.push(call),
                    None => content.push_str(&rest[start..]),
                }
                break;
            }
        }
    }
    out.content = if out.tool_calls.is_empty() {
        content
    } else {
        content.trim().to_string()
    };
}

/// Calls as a JSON array (or one object) after `marker` (Mistral's `[TOOL_CALLS]`,
/// FireFunction's `functools`).
fn parse_marked_array(marker: &str, text: &str, partial: bool, out: &mut ParsedMessage) {
    let Some(start) = text.find(marker) else {
        out.content = hold_back(text, &[marker], partial).to_string();
        return;
    };
    let before = text[..start].trim_end().to_string();
    let after = text[start + marker.len()..].trim();
    match serde_json::from_str::<Json>(after) {
        Ok(Json::Array(items)) => {
            out.tool_calls = items.iter().filter_map(call_from_json).collect();
            out.content = before;
        }
        Ok(one @ Json::Object(_)) => {
            out.tool_calls = call_from_json(&one).into_iter().collect();
            out.content = before;
        }
        _ if partial => out.content = before,
        _ => out.content = text.to_string(),
    }
}

fn parse_llama3(text: &str, partial: bool, out: &mut ParsedMessage) {
    let trimmed = text.trim_start();
    let body = trimmed
        .strip_prefix("<|python_tag|>")
        .unwrap_or(trimmed)
        .trim();
    if body.starts_with('{') {
        if let Ok(value) = serde_json::from_str::<Json>(body) {
            if value.get("name").is_some()
                && (value.get("parameters").is_some() || value.get("arguments").is_some())
            {
                if let Some(call) = call_from_json(&value) {
                    out.tool_calls.push(call);
                    return;
                }
            }
        }
        if partial {
            // May still become a call.
            return;
        }
    } else if partial && body.is_empty() {
        return;
    }
    out.content = text.to_string();
}

fn parse_generic(text: &str, partial: bool, out: &mut ParsedMessage) {
    if partial {
        // The whole answer is one JSON value: nothing is known before it is complete.
        return;
    }
    let Ok(value) = serde_json::from_str::<Json>(text.trim()) else {
        out.content = text.to_string();
        return;
    };
    if let Some(calls) = value.get("tool_calls").and_then(Json::as_array) {
        out.tool_calls = calls.iter().filter_map(call_from_json).collect();
    } else if let Some(call) = value.get("tool_call").and_then(call_from_json) {
        out.tool_calls.push(call);
    } else if let Some(response) = value.get("response") {
        out.content = match response {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
    } else {
        out.content = text.to_string();
    }
    if let Some(c) = value.get("content").and_then(Json::as_str) {
        if !out.tool_calls.is_empty() {
            out.content = c.to_string();
        }
    }
}

/// Parses a streamed answer piece by piece.
#[derive(Debug, Clone)]
pub struct StreamParser {
    format: ChatFormat,
    text: String,
    last: ParsedMessage,
    ids: Vec<String>,
    /// The arguments' text sent for each call started.
    sent: Vec<String>,
    /// The length of generated tool-call ids (Mistral needs 9).
    id_len: usize,
}

impl StreamParser {
    /// A parser for an answer in `format`.
    pub fn new(format: ChatFormat) -> StreamParser {
        let id_len = if format.tools == Some(ToolFormat::Mistral) {
            9
        } else {
            24
        };
        StreamParser {
            format,
            text: String::new(),
            last: ParsedMessage::default(),
            ids: Vec::new(),
            sent: Vec::new(),
            id_len,
        }
    }

    /// Whether parsing changes anything (reasoning or tools): otherwise the text is the
    /// content as it comes.
    pub fn is_plain(&self) -> bool {
        self.format.tools.is_none() && self.format.reasoning == ReasoningFormat::None
    }

    /// Adds a piece of the answer; returns what changed.
    pub fn push(&mut self, piece: &str) -> Vec<MessageDelta> {
        self.text.push_str(piece);
        let parsed = self.format.parse(&self.text, true);
        self.advance(parsed)
    }

    /// Ends the answer: the whole message, and what changed since the last piece.
    pub fn finish(&mut self) -> (ParsedMessage, Vec<MessageDelta>) {
        let mut parsed = self.format.parse(&self.text, false);
        self.assign_ids(&mut parsed);
        let deltas = self.advance(parsed.clone());
        (parsed, deltas)
    }

    fn assign_ids(&mut self, parsed: &mut ParsedMessage) {
        for (i, call) in parsed.tool_calls.iter_mut().enumerate() {
            if call.id.is_empty() {
                while self.ids.len() <= i {
                    self.ids.push(random_id(self.id_len));
                }
                call.id = self.ids[i].clone();
            }
        }
    }

    /// The answer so far, as text.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn advance(&mut self, mut parsed: ParsedMessage) -> Vec<MessageDelta> {
        self.assign_ids(&mut parsed);
        let mut deltas = Vec::new();
        if let Some(more) = extension(&self.last.reasoning_content, &parsed.reasoning_content) {
            deltas.push(MessageDelta::Reasoning(more));
        }
        match extension(&self.last.content, &parsed.content) {
            Some(more) => deltas.push(MessageDelta::Content(more)),
            None if parsed.content.len() < self.last.content.len() => {
                // Content already sent cannot be taken back: keep it.
                parsed.content = self.last.content.clone();
            }
            None => {}
        }
        self.advance_calls(&parsed, &mut deltas);
        if parsed.tool_calls.len() < self.last.tool_calls.len() {
            parsed.tool_calls = self.last.tool_calls.clone();
        }
        self.last = parsed;
        deltas
    }
}

impl StreamParser {
    /// The deltas of the tool calls: each call's start once its name is known, then its
    /// arguments as far as they are written (whole once the call is complete).
    fn advance_calls(&mut self, parsed: &ParsedMessage, deltas: &mut Vec<MessageDelta>) {
        let partial = match (self.format.tools, self.format.after_reasoning(&self.text)) {
            (Some(format), Some(rest)) => partial_calls(format, rest),
            _ => Vec::new(),
        };
        let n = parsed.tool_calls.len().max(partial.len());
        for index in 0..n {
            let done = parsed.tool_calls.get(index);
            let part = partial.get(index);
            let Some(name) = done
                .map(|c| c.name.clone())
                .or_else(|| part.and_then(|p| p.name.clone()))
            else {
                // Calls start in order: a later one waits for this one's name.
                break;
            };
            if index == self.sent.len() {
                while self.ids.len() <= index {
                    self.ids.push(random_id(self.id_len));
                }
                let id = done
                    .map(|c| c.id.clone())
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(|| self.ids[index].clone());
                deltas.push(MessageDelta::ToolCall { index, id, name });
                self.sent.push(String::new());
            }
            let sent = &self.sent[index];
            let streamed = part.and_then(|p| p.arguments.as_deref());
            let target = match done {
                // A complete call: the rest of its arguments as streamed, when the text read
                // while streaming is whole and continues what was sent; else as parsed.
                Some(call) => match (streamed, part.is_some_and(|p| p.complete)) {
                    (Some(text), true) if text.starts_with(sent.as_str()) => text,
                    _ => call.arguments.as_str(),
                },
                None => streamed.unwrap_or_default(),
            };
            if target.len() > sent.len() && target.starts_with(sent.as_str()) {
                let more = target[sent.len()..].to_string();
                self.sent[index].push_str(&more);
                deltas.push(MessageDelta::ToolArguments { index, text: more });
            }
        }
    }
}

/// What `new` adds to `old`, when it extends it and adds something.
fn extension(old: &str, new: &str) -> Option<String> {
    (new.len() > old.len() && new.starts_with(old)).then(|| new[old.len()..].to_string())
}

/// A random alphanumeric id (`call_...` for OpenAI's shape, 9 characters for Mistral).
fn random_id(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let body: String = (0..len)
        .map(|_| CHARS[rand::random_range(0..CHARS.len())] as char)
        .collect();
    if len == 9 {
        body
    } else {
        format!("call_{body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(tools: Option<ToolFormat>) -> ChatFormat {
        ChatFormat {
            tools,
            reasoning: ReasoningFormat::Auto,
            thinking_open: false,
        }
    }

    fn stream(format: ChatFormat, pieces: &[&str]) -> (ParsedMessage, Vec<MessageDelta>) {
        let mut p = StreamParser::new(format);
        let mut all = Vec::new();
        for piece in pieces {
            all.extend(p.push(piece));
        }
        let (msg, rest) = p.finish();
        all.extend(rest);
        (msg, all)
    }

    #[test]
    fn reasoning_is_split_and_streamed() {
        let (msg, deltas) = stream(
            format(None),
            &["<th", "ink>Let me", " think</th", "ink>\n\nHello", " there"],
        );
        assert_eq!(msg.reasoning_content, "Let me think");
        assert_eq!(msg.content, "Hello there");
        assert_eq!(
            deltas,
            vec![
                MessageDelta::Reasoning("Let me".into()),
                MessageDelta::Reasoning(" think".into()),
                MessageDelta::Content("Hello".into()),
                MessageDelta::Content(" there".into()),
            ]
        );
        let none = ChatFormat {
            reasoning: ReasoningFormat::None,
            ..format(None)
        };
        assert_eq!(
            none.parse("<think>a</think>b", false).content,
            "<think>a</think>b"
        );
        let open = ChatFormat {
            thinking_open: true,
            ..format(None)
        };
        let m = open.parse("a</think>b", false);
        assert_eq!(
            (m.reasoning_content.as_str(), m.content.as_str()),
            ("a", "b")
        );
    }

    #[test]
    fn hermes_calls_are_parsed_and_streamed() {
        let (msg, deltas) = stream(
            format(Some(ToolFormat::Hermes)),
            &[
                "Sure.\n<tool",
                "_call>\n{\"name\": \"get_weather\", ",
                "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
            ],
        );
        assert_eq!(msg.content, "Sure.");
        assert_eq!(msg.tool_calls.len(), 1);
        assert_eq!(msg.tool_calls[0].name, "get_weather");
        assert_eq!(msg.tool_calls[0].arguments, "{\"city\":\"Paris\"}");
        assert!(msg.tool_calls[0].id.starts_with("call_"));
        assert_eq!(deltas[0], MessageDelta::Content("Sure.\n".into()));
        assert!(
            matches!(&deltas[1], MessageDelta::ToolCall { index: 0, id, name } if *id == msg.tool_calls[0].id && name == "get_weather")
        );
        // The arguments come in fragments that join to the arguments.
        let fragments: Vec<&str> = deltas
            .iter()
            .filter_map(|d| match d {
                MessageDelta::ToolArguments { index: 0, text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(fragments.concat(), msg.tool_calls[0].arguments);
        // Two calls, the second unclosed at the end.
        let m = format(Some(ToolFormat::Hermes)).parse(
            "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n<tool_call>{\"name\": \"b\", \"arguments\": {\"x\": 1}}",
            false,
        );
        assert_eq!(
            m.tool_calls
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn llama3_json_calls() {
        let f = format(Some(ToolFormat::Llama3));
        let m = f.parse(
            "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
            false,
        );
        assert_eq!(m.tool_calls[0].arguments, "{\"city\":\"Paris\"}");
        assert_eq!(m.content, "");
        assert_eq!(
            f.parse("{\"name\": \"get_wea", true),
            ParsedMessage::default()
        );
        assert_eq!(f.parse("Hello", false).content, "Hello");
        assert_eq!(
            f.parse("<|python_tag|>{\"name\": \"f\", \"parameters\": {}}", false)
                .tool_calls
                .len(),
            1
        );
    }

    #[test]
    fn mistral_calls_keep_their_ids() {
        let f = format(Some(ToolFormat::Mistral));
        let m = f.parse(
            "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"a\": 1}, \"id\": \"abcDEF123\"}, {\"name\": \"g\", \"arguments\": {}}]",
            false,
        );
        assert_eq!(m.tool_calls.len(), 2);
        assert_eq!(m.tool_calls[0].id, "abcDEF123");
        assert_eq!(f.parse("Hi [TOOL_CA", true).content, "Hi ");
        let mut p = StreamParser::new(f);
        p.push("[TOOL_CALLS][{\"name\": \"g\", \"arguments\": {}}]");
        let (msg, _) = p.finish();
        assert_eq!(msg.tool_calls[0].id.len(), 9);
    }

    #[test]
    fn firefunction_calls_follow_functools() {
        let f = format(Some(ToolFormat::Firefunction));
        let m = f.parse(
            " functools[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]",
            false,
        );
        assert_eq!(m.tool_calls.len(), 1);
        assert_eq!(m.tool_calls[0].name, "get_weather");
        assert_eq!(m.tool_calls[0].arguments, "{\"city\":\"Paris\"}");
        assert_eq!(m.content, "");
        assert_eq!(f.parse("Sure. functoo", true).content, "Sure. ");
        assert_eq!(
            f.parse("No tools needed.", false).content,
            "No tools needed."
        );
    }

    #[test]
    fn generic_answers() {
        let f = format(Some(ToolFormat::Generic));
        let m = f.parse(
            "{\"tool_call\": {\"name\": \"f\", \"arguments\": {\"a\": 1}}}",
            false,
        );
        assert_eq!(
            (
                m.tool_calls[0].name.as_str(),
                m.tool_calls[0].arguments.as_str()
            ),
            ("f", "{\"a\":1}")
        );
        let m = f.parse("{\"tool_calls\": [{\"name\": \"f\", \"arguments\": {}, \"id\": \"call_1\"}, {\"name\": \"g\", \"arguments\": {}, \"id\": \"call_2\"}]}", false);
        assert_eq!(m.tool_calls[1].id, "call_2");
        assert_eq!(
            f.parse("{\"response\": \"Hello!\"}", false).content,
            "Hello!"
        );
        assert_eq!(f.parse("not json", false).content, "not json");
        assert_eq!(
            f.parse("{\"response\": \"Hel", true),
            ParsedMessage::default()
        );
        let (msg, deltas) = stream(f, &["{\"response\"", ": \"Hi\"}"]);
        assert_eq!(msg.content, "Hi");
        assert_eq!(deltas, vec![MessageDelta::Content("Hi".into())]);
    }

    #[test]
    fn plain_content_holds_back_nothing_but_think() {
        let (msg, deltas) = stream(format(None), &["Hel", "lo <", "b>"]);
        assert_eq!(msg.content, "Hello <b>");
        assert_eq!(deltas.len(), 3);
    }

    #[test]
    fn arguments_stream_as_they_are_written() {
        let answer = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n</tool_call>";
        let mut p = StreamParser::new(format(Some(ToolFormat::Hermes)));
        let mut deltas = Vec::new();
        // One byte at a time (as a tokenizer might cut it).
        for i in 0..answer.len() {
            deltas.extend(p.push(&answer[i..i + 1]));
        }
        let (msg, rest) = p.finish();
        deltas.extend(rest);
        let starts = deltas
            .iter()
            .filter(|d| matches!(d, MessageDelta::ToolCall { .. }))
            .count();
        assert_eq!(starts, 1);
        let fragments: Vec<String> = deltas
            .iter()
            .filter_map(|d| match d {
                MessageDelta::ToolArguments { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect();
        assert!(fragments.len() > 5, "{fragments:?}");
        // The first fragment comes before the call is complete.
        assert!(matches!(deltas[0], MessageDelta::ToolCall { .. }));
        assert_eq!(fragments.concat(), msg.tool_calls[0].arguments);
        // Mistral's calls carry ids: they come whole, with the model's id.
        let mut p = StreamParser::new(format(Some(ToolFormat::Mistral)));
        let mut deltas = p.push(
            "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"a\": 1}, \"id\": \"abcDEF123\"}]",
        );
        deltas.extend(p.finish().1);
        assert_eq!(
            deltas,
            vec![
                MessageDelta::ToolCall {
                    index: 0,
                    id: "abcDEF123".into(),
                    name: "f".into()
                },
                MessageDelta::ToolArguments {
                    index: 0,
                    text: "{\"a\":1}".into()
                },
            ]
        );
    }
}
