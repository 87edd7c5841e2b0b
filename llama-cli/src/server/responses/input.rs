//! A Responses request as an OpenAI chat request: `instructions` as the system message, the
//! conversation of `previous_response_id` (from the [`Store`]), then `input`: a string (one
//! user message) or items: messages (`{"role", "content"}`, optionally `"type": "message"`;
//! content a string or `input_text`/`output_text` parts), `function_call` (an earlier call of
//! the model's: `call_id`, `name`, `arguments`), `function_call_output` (its result:
//! `call_id`, `output`) and `reasoning` (accepted, not rendered). Function `tools`
//! (`{"type": "function", "name", "description", "parameters"}`), `tool_choice` and
//! `parallel_tool_calls` become the chat request's.

use serde_json::{json, Map, Value};

use super::store::Store;
use crate::server::chat_path;
use crate::server::error::ApiError;

/// A converted request.
#[derive(Debug)]
pub struct Request {
    /// The conversation, without the instructions (what a later request continues).
    pub conversation: Vec<Value>,
    /// The OpenAI chat request.
    pub openai: Value,
    /// The request's settings as the response object repeats them (`tools`, `tool_choice`,
    /// `parallel_tool_calls`, `instructions`, ...), with the values this server ran with
    /// where the request left them out.
    pub echo: Map<String, Value>,
}

/// The text of a message's content: a string or text parts.
fn text_of(value: &Value, field: &str) -> Result<String, ApiError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (i, part) in parts.iter().enumerate() {
                let field = format!("{field}[{i}]");
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("input_text" | "output_text" | "text"), Some(Value::String(t))) => {
                        text.push_str(t)
                    }
                    (Some("input_image"), _) => {
                        return Err(ApiError::invalid(
                            "image input is not supported: this server has no vision projector (mmproj)",
                            Some(&field),
                        ))
                    }
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            format!(
                                "unsupported content part {}: only text parts are supported",
                                kind.unwrap_or("without a type")
                            ),
                            Some(&field),
                        ))
                    }
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::invalid(
            "content must be a string or a list of parts",
            Some(field),
        )),
    }
}

fn string_field<'v>(item: &'v Value, name: &str, field: &str) -> Result<&'v str, ApiError> {
    item.get(name).and_then(Value::as_str).ok_or_else(|| {
        ApiError::invalid(
            format!("{name} must be a string"),
            Some(&format!("{field}.{name}")),
        )
    })
}

/// Appends one input item to `out`.
fn convert_item(item: &Value, field: &str, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some(r @ ("system" | "developer" | "user" | "assistant")) => r,
                other => {
                    return Err(ApiError::invalid(
                        format!("unsupported role {other:?}"),
                        Some(&format!("{field}.role")),
                    ))
                }
            };
            let content = item.get("content").unwrap_or(&Value::Null);
            let text = text_of(content, &format!("{field}.content"))?;
            out.push(json!({"role": role, "content": text}));
        }
        "function_call" => {
            let call = json!({
                "id": string_field(item, "call_id", field)?,
                "type": "function",
                "function": {
                    "name": string_field(item, "name", field)?,
                    "arguments": string_field(item, "arguments", field)?,
                },
            });
            // Calls made together belong to one assistant message.
            match out.last_mut() {
                Some(last) if last["role"] == "assistant" => match last.get_mut("tool_calls") {
                    Some(Value::Array(calls)) => calls.push(call),
                    _ => last["tool_calls"] = json!([call]),
                },
                _ => out.push(json!({"role": "assistant", "content": "", "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(v @ Value::Array(_)) => text_of(v, &format!("{field}.output"))?,
                _ => {
                    return Err(ApiError::invalid(
                        "output must be a string or a list of parts",
                        Some(&format!("{field}.output")),
                    ))
                }
            };
            out.push(json!({
                "role": "tool",
                "tool_call_id": string_field(item, "call_id", field)?,
                "content": output,
            }));
        }
        // Reasoning of an earlier answer: templates drop it from past turns anyway.
        "reasoning" => {}
        other => {
            return Err(ApiError::invalid(
                format!("unsupported input item type {other:?}: expected message, function_call, function_call_output or reasoning"),
                Some(&format!("{field}.type")),
            ))
        }
    }
    Ok(())
}

/// A Responses function tool as a chat tool.
fn convert_tool(tool: &Value, field: &str) -> Result<Value, ApiError> {
    match tool.get("type").and_then(Value::as_str) {
        Some("function") => {}
        other => {
            return Err(ApiError::invalid(
                format!("tool type {other:?} is not supported: only function tools"),
                Some(&format!("{field}.type")),
            ))
        }
    }
    let mut function = Map::new();
    function.insert("name".into(), json!(string_field(tool, "name", field)?));
    for key in ["description", "parameters"] {
        if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
            function.insert(key.into(), v.clone());
        }
    }
    Ok(json!({"type": "function", "function": function}))
}

/// `tool_choice`: `auto`, `none`, `required` or `{"type": "function", "name"}`.
fn convert_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid(
                    "a function tool_choice needs its name",
                    Some("tool_choice.name"),
                )
            })?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(ApiError::invalid(
            "tool_choice must be auto, none, required or {\"type\": \"function\", \"name\": ...}",
            Some("tool_choice"),
        )),
    }
}

/// Converts a Responses request; `previous_response_id` must name a kept response.
pub fn convert(body: &Value, store: &Store) -> Result<Request, ApiError> {
    let mut conversation = Vec::new();
    match body.get("previous_response_id") {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) => match store.get(id) {
            Some(previous) => conversation.extend(previous.iter().cloned()),
            None => {
                return Err(ApiError::invalid(
                    format!(
                        "no response {id:?} is kept: this server keeps the {} most recent responses, in memory, unless they were made with store: false",
                        super::store::CAPACITY
                    ),
                    Some("previous_response_id"),
                ))
            }
        },
        Some(_) => {
            return Err(ApiError::invalid(
                "previous_response_id must be a string",
                Some("previous_response_id"),
            ))
        }
    }
    match body.get("input") {
        Some(Value::String(s)) => conversation.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                convert_item(item, &format!("input[{i}]"), &mut conversation)?;
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "input must be a string or a non-empty list of items",
                Some("input"),
            ))
        }
    }
    let mut messages = Vec::new();
    match body.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(_) => {
            return Err(ApiError::invalid(
                "instructions must be a string",
                Some("instructions"),
            ))
        }
    }
    messages.extend(conversation.iter().cloned());
    let mut openai = Map::new();
    openai.insert("messages".into(), Value::Array(messages));
    chat_path::convert_tools_into(&mut openai, body, "a list", convert_tool)?;
    if let Some(choice) = body.get("tool_choice").filter(|c| !c.is_null()) {
        openai.insert("tool_choice".into(), convert_tool_choice(choice)?);
    }
    chat_path::rename_into(
        &mut openai,
        body,
        &[
            ("max_output_tokens", "max_tokens"),
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("stream", "stream"),
            ("parallel_tool_calls", "parallel_tool_calls"),
            ("timings_per_token", "timings_per_token"),
            ("return_progress", "return_progress"),
        ],
    );
    Ok(Request {
        conversation,
        openai: Value::Object(openai),
        echo: echo_of(body),
    })
}

/// What a response object repeats of its request: the request's value, or the one used
/// without it (no tools, `tool_choice: "auto"`, no parallel calls, as the chat route runs).
fn echo_of(body: &Value) -> Map<String, Value> {
    let given = |name: &str, default: Value| -> (String, Value) {
        let value = body.get(name).filter(|v| !v.is_null()).cloned();
        (name.to_string(), value.unwrap_or(default))
    };
    [
        given("instructions", Value::Null),
        given("tools", json!([])),
        given("tool_choice", json!("auto")),
        given("parallel_tool_calls", json!(false)),
        given("max_output_tokens", Value::Null),
        given("temperature", Value::Null),
        given("top_p", Value::Null),
        given("previous_response_id", Value::Null),
        given("store", json!(true)),
        given("metadata", json!({})),
    ]
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_takes_text_messages_and_function_items() {
        let store = Store::default();
        let r = convert(&json!({"input": "Hi", "instructions": "Be brief."}), &store).unwrap();
        assert_eq!(r.openai["messages"][0]["role"], "system");
        assert_eq!(
            r.conversation,
            vec![json!({"role": "user", "content": "Hi"})]
        );
        let r = convert(
            &json!({
                "input": [
                    {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                    {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                ],
                "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
                "tool_choice": {"type": "function", "name": "f"},
                "max_output_tokens": 5,
            }),
            &store,
        )
        .unwrap();
        let m = r.openai["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[1]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(
            m[2],
            json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"})
        );
        assert_eq!(r.openai["tools"][0]["function"]["name"], "f");
        assert_eq!(r.openai["tool_choice"]["function"]["name"], "f");
        assert_eq!(r.openai["max_tokens"], 5);
        // The response object repeats the request's tools in the request's own shape.
        assert_eq!(r.echo["tools"][0]["name"], "f");
        assert_eq!(r.echo["tool_choice"]["name"], "f");
        assert_eq!(r.echo["max_output_tokens"], 5);
        assert_eq!(r.echo["parallel_tool_calls"], false);
        let plain = convert(&json!({"input": "hi", "parallel_tool_calls": true}), &store).unwrap();
        assert_eq!(plain.echo["tools"], json!([]));
        assert_eq!(plain.echo["tool_choice"], "auto");
        assert_eq!(plain.echo["parallel_tool_calls"], true);
    }

    #[test]
    fn previous_responses_are_continued() {
        let store = Store::default();
        store.put(
            "resp_1".into(),
            vec![
                json!({"role": "user", "content": "a"}),
                json!({"role": "assistant", "content": "b"}),
            ],
        );
        let r = convert(
            &json!({"input": "c", "previous_response_id": "resp_1"}),
            &store,
        )
        .unwrap();
        assert_eq!(r.conversation.len(), 3);
        let err = convert(
            &json!({"input": "c", "previous_response_id": "resp_2"}),
            &store,
        )
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("previous_response_id"));
    }

    #[test]
    fn bad_input_is_named() {
        let store = Store::default();
        for (body, param) in [
            (json!({}), "input"),
            (json!({"input": []}), "input"),
            (
                json!({"input": [{"type": "file_search_call"}]}),
                "input[0].type",
            ),
            (
                json!({"input": [{"type": "function_call", "name": "f"}]}),
                "input[0].call_id",
            ),
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}),
                "input[0].content[0]",
            ),
            (
                json!({"input": "x", "tools": [{"type": "web_search"}]}),
                "tools[0].type",
            ),
            (json!({"input": "x", "tool_choice": "maybe"}), "tool_choice"),
        ] {
            let err = convert(&body, &store).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{body}");
        }
    }
}
