//! A Responses answer: its output items (`reasoning` when the template's format splits
//! reasoning out, `message` with an `output_text` part, one `function_call` per tool call), as
//! JSON or as the named event stream (`response.created`, `response.in_progress`, then per
//! item `response.output_item.added`, its deltas (`response.reasoning_text.delta`,
//! `response.content_part.added` and `response.output_text.delta`,
//! `response.function_call_arguments.delta`), their `.done` events and
//! `response.output_item.done`, then `response.completed`), each event with a
//! `sequence_number`.

use axum::response::sse::Event;
use llama_core::chat::{MessageDelta, ParsedMessage};
use llama_core::engine::Completion;
use llama_core::FinishReason;
use serde_json::{json, Value};

use super::store::Store;
use crate::server::chat_path::ChatFrames;
use crate::server::error::ApiError;
use crate::server::events;

/// What every event of one response repeats.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// `resp_...`.
    pub id: String,
    /// The request's id, from which the items' ids are made.
    pub request_id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model's name.
    pub model: String,
    /// The request's settings the response object repeats ([`super::input::Request::echo`]).
    pub echo: serde_json::Map<String, Value>,
}

/// What an output item holds.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Reasoning,
    Message,
    Call { call_id: String, name: String },
}

/// One output item; `text` is the reasoning, the message's text or the call's arguments.
#[derive(Debug, Clone)]
struct Item {
    kind: Kind,
    id: String,
    text: String,
}

impl Item {
    fn json(&self, done: bool) -> Value {
        let status = if done { "completed" } else { "in_progress" };
        match &self.kind {
            Kind::Reasoning => json!({
                "type": "reasoning", "id": self.id, "summary": [], "status": status,
                "content": if done { json!([{"type": "reasoning_text", "text": self.text}]) } else { json!([]) },
            }),
            Kind::Message => json!({
                "type": "message", "id": self.id, "status": status, "role": "assistant",
                "content": if done { json!([text_part(&self.text)]) } else { json!([]) },
            }),
            Kind::Call { call_id, name } => json!({
                "type": "function_call", "id": self.id, "call_id": call_id, "name": name,
                "arguments": self.text, "status": status,
            }),
        }
    }
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

impl Envelope {
    fn item(&self, kind: Kind, n: usize) -> Item {
        let id = match kind {
            Kind::Reasoning => format!("rs_{}_{n}", self.request_id),
            // The first message is `msg_<request id>`, as before tools.
            Kind::Message if n == 0 => format!("msg_{}", self.request_id),
            Kind::Message => format!("msg_{}_{n}", self.request_id),
            Kind::Call { .. } => format!("fc_{}_{n}", self.request_id),
        };
        Item {
            kind,
            id,
            text: String::new(),
        }
    }

    /// The items of a whole answer.
    fn items_of(&self, message: &ParsedMessage) -> Vec<Item> {
        let mut items = Vec::new();
        if !message.reasoning_content.is_empty() {
            let mut item = self.item(Kind::Reasoning, 0);
            item.text = message.reasoning_content.clone();
            items.push(item);
        }
        if !message.content.is_empty() || message.tool_calls.is_empty() {
            let mut item = self.item(Kind::Message, 0);
            item.text = message.content.clone();
            items.push(item);
        }
        for (i, call) in message.tool_calls.iter().enumerate() {
            let kind = Kind::Call {
                call_id: call.id.clone(),
                name: call.name.clone(),
            };
            let mut item = self.item(kind, i);
            item.text = call.arguments.clone();
            items.push(item);
        }
        items
    }

    /// The response object; `finished`: its items and completion.
    fn response(&self, finished: Option<(&[Item], &Completion)>) -> Value {
        let (status, output, usage, incomplete) = match finished {
            None => ("in_progress", json!([]), Value::Null, Value::Null),
            Some((items, c)) => {
                let length = matches!(
                    c.finish_reason,
                    FinishReason::Length | FinishReason::ContextFull
                );
                (
                    if length { "incomplete" } else { "completed" },
                    Value::Array(items.iter().map(|i| i.json(true)).collect()),
                    json!({
                        "input_tokens": c.prompt_tokens,
                        "input_tokens_details": {"cached_tokens": c.cached_tokens},
                        "output_tokens": c.completion_tokens,
                        "output_tokens_details": {"reasoning_tokens": 0},
                        "total_tokens": c.prompt_tokens + c.completion_tokens,
                    }),
                    if length {
                        json!({"reason": "max_output_tokens"})
                    } else {
                        Value::Null
                    },
                )
            }
        };
        let mut response = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "model": self.model,
            "output": output,
            "usage": usage,
            "incomplete_details": incomplete,
            "error": null,
        });
        if let Value::Object(fields) = &mut response {
            for (name, value) in &self.echo {
                fields.insert(name.clone(), value.clone());
            }
        }
        response
    }

    /// The whole answer as a response object.
    pub fn whole(&self, message: &ParsedMessage, c: &Completion) -> Value {
        self.response(Some((&self.items_of(message), c)))
    }
}

/// The answer as the assistant message a later request continues.
pub fn assistant_message(message: &ParsedMessage) -> Value {
    let mut m = json!({"role": "assistant", "content": message.content});
    if !message.tool_calls.is_empty() {
        m["tool_calls"] = message
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
    }
    m
}

/// Where a streamed answer is kept when it ends (`store` not false).
pub struct Keep {
    /// The store.
    pub store: Store,
    /// The conversation so far.
    pub conversation: Vec<Value>,
}

/// The stream's events.
pub struct ResponseFrames {
    envelope: Envelope,
    items: Vec<Item>,
    /// The item being written (its output index).
    open: Option<usize>,
    sequence: u64,
    keep: Option<Keep>,
    /// The figures to send with the next text delta (`timings_per_token`).
    timings: Option<Value>,
}

impl ResponseFrames {
    /// The frames of one response.
    pub fn new(envelope: Envelope, keep: Option<Keep>) -> ResponseFrames {
        ResponseFrames {
            envelope,
            items: Vec::new(),
            open: None,
            sequence: 0,
            keep,
            timings: None,
        }
    }

    fn event(&mut self, kind: &str, mut value: Value) -> Event {
        value["type"] = json!(kind);
        value["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        events::named(kind, &value)
    }

    /// Closes the open item: its `.done` events.
    fn close(&mut self, out: &mut Vec<Event>) {
        let Some(index) = self.open.take() else {
            return;
        };
        let item = self.items[index].clone();
        let at = json!({"item_id": item.id, "output_index": index});
        let with = |mut v: Value, extra: Value| {
            if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
                v.extend(extra);
            }
            v
        };
        match &item.kind {
            Kind::Reasoning => out.push(self.event(
                "response.reasoning_text.done",
                with(at.clone(), json!({"content_index": 0, "text": item.text})),
            )),
            Kind::Message => {
                let done = self.event(
                    "response.output_text.done",
                    with(
                        at.clone(),
                        json!({"content_index": 0, "text": item.text, "logprobs": []}),
                    ),
                );
                out.push(done);
                let part = self.event(
                    "response.content_part.done",
                    with(
                        at.clone(),
                        json!({"content_index": 0, "part": text_part(&item.text)}),
                    ),
                );
                out.push(part);
            }
            Kind::Call { .. } => out.push(self.event(
                "response.function_call_arguments.done",
                with(at.clone(), json!({"arguments": item.text})),
            )),
        }
        let done = self.event(
            "response.output_item.done",
            json!({"output_index": index, "item": item.json(true)}),
        );
        out.push(done);
    }

    /// Makes an item of `kind` the open one (a new one unless it already is); returns its
    /// output index.
    fn enter(&mut self, kind: Kind, out: &mut Vec<Event>) -> usize {
        if let Some(index) = self.open {
            if self.items[index].kind == kind {
                return index;
            }
        }
        self.close(out);
        let n = self
            .items
            .iter()
            .filter(|i| std::mem::discriminant(&i.kind) == std::mem::discriminant(&kind))
            .count();
        let item = self.envelope.item(kind, n);
        let index = self.items.len();
        let added = self.event(
            "response.output_item.added",
            json!({"output_index": index, "item": item.json(false)}),
        );
        out.push(added);
        if item.kind == Kind::Message {
            let part = self.event(
                "response.content_part.added",
                json!({"item_id": item.id, "output_index": index, "content_index": 0, "part": text_part("")}),
            );
            out.push(part);
        }
        self.items.push(item);
        self.open = Some(index);
        index
    }

    /// Appends `text` to the open item and sends it as `kind`'s delta event.
    fn append(&mut self, index: usize, kind: &str, text: String, out: &mut Vec<Event>) {
        self.items[index].text.push_str(&text);
        let id = self.items[index].id.clone();
        let mut value = json!({"item_id": id, "output_index": index, "delta": text});
        if kind != "response.function_call_arguments.delta" {
            value["content_index"] = json!(0);
        }
        if kind == "response.output_text.delta" {
            value["logprobs"] = json!([]);
            if let Some(t) = self.timings.take() {
                value["timings"] = t;
            }
        }
        out.push(self.event(kind, value));
    }
}

impl ChatFrames for ResponseFrames {
    fn start(&mut self) -> Vec<Event> {
        let response = self.envelope.response(None);
        vec![
            self.event("response.created", json!({"response": response})),
            self.event("response.in_progress", json!({"response": response})),
        ]
    }

    fn delta(&mut self, delta: MessageDelta) -> Vec<Event> {
        let mut out = Vec::new();
        match delta {
            MessageDelta::Reasoning(text) => {
                let index = self.enter(Kind::Reasoning, &mut out);
                self.append(index, "response.reasoning_text.delta", text, &mut out);
            }
            MessageDelta::Content(text) => {
                let index = self.enter(Kind::Message, &mut out);
                self.append(index, "response.output_text.delta", text, &mut out);
            }
            MessageDelta::ToolCall { id, name, .. } => {
                self.close(&mut out);
                self.enter(Kind::Call { call_id: id, name }, &mut out);
            }
            MessageDelta::ToolArguments { text, .. } => {
                if let Some(index) = self.open {
                    self.append(
                        index,
                        "response.function_call_arguments.delta",
                        text,
                        &mut out,
                    );
                }
            }
        }
        out
    }

    fn done(&mut self, message: &ParsedMessage, c: &Completion) -> Vec<Event> {
        let mut out = Vec::new();
        if self.items.is_empty() {
            // An empty answer is still an (empty) message.
            self.enter(Kind::Message, &mut out);
        }
        self.close(&mut out);
        if let Some(keep) = self.keep.take() {
            let mut conversation = keep.conversation;
            conversation.push(assistant_message(message));
            keep.store.put(self.envelope.id.clone(), conversation);
        }
        let response = self.envelope.response(Some((&self.items, c)));
        let completed = json!({"response": response, "timings": crate::server::native::timings(c)});
        out.push(self.event("response.completed", completed));
        out
    }

    fn failed(&mut self, err: &ApiError) -> Vec<Event> {
        let value = json!({"code": err.code, "message": err.message, "param": err.param});
        vec![self.event("error", value)]
    }

    /// llama-server's telemetry: a prompt report is a `response.in_progress` event with
    /// `prompt_progress`; a token's figures go with the next text delta.
    fn progress(&mut self, p: &llama_core::engine::Progress) -> Vec<Event> {
        use crate::server::timings;
        if timings::is_prompt_report(p) {
            let response = self.envelope.response(None);
            let value =
                json!({"response": response, "prompt_progress": timings::prompt_progress(p)});
            vec![self.event("response.in_progress", value)]
        } else {
            self.timings = Some(timings::of_progress(p));
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            id: "resp_1".into(),
            request_id: "1".into(),
            created: 0,
            model: "m".into(),
            echo: [("parallel_tool_calls".to_string(), json!(true))]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn whole_answers_have_their_items() {
        let message = ParsedMessage {
            content: String::new(),
            reasoning_content: "Hm.".into(),
            tool_calls: vec![llama_core::ToolCall {
                id: "call_a".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
        };
        let c = Completion {
            finish_reason: FinishReason::EndOfGeneration,
            prompt_tokens: 3,
            cached_tokens: 0,
            completion_tokens: 2,
            time_to_first_token: None,
            total_time: Default::default(),
            prompt_time: Default::default(),
            generation_time: Default::default(),
        };
        let r = envelope().whole(&message, &c);
        let kinds: Vec<&str> = r["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["reasoning", "function_call"]);
        assert_eq!(r["output"][1]["call_id"], "call_a");
        assert_eq!(
            r["parallel_tool_calls"], true,
            "the request's settings are repeated"
        );
        assert_eq!(r["output"][1]["id"], "fc_1_0");
        let plain = envelope().whole(&ParsedMessage::default(), &c);
        assert_eq!(plain["output"][0]["id"], "msg_1");
        assert_eq!(plain["usage"]["total_tokens"], 5);
        assert_eq!(
            assistant_message(&message)["tool_calls"][0]["function"]["name"],
            "f"
        );
    }
}
