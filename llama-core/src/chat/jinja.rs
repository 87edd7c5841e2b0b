//! A model's Jinja chat template (`tokenizer.chat_template`), rendered as Hugging Face
//! transformers renders it: `trim_blocks` and `lstrip_blocks` on, loop controls, Python's string
//! and dict methods (`.strip()`, `.split()`, `.items()`, ...), `tojson` as Python's
//! `json.dumps` writes it (`{"a": 1}`, non-ASCII kept), `raise_exception(message)` and
//! `strftime_now(format)`, with `messages`, `tools`, `add_generation_prompt`, `bos_token`,
//! `eos_token`, today's date (`datetime` as `%b %d %Y`, `date_string` as `%d %b %Y`, the
//! variables llama.cpp's templating adds), `functions` for templates that read their tools
//! from it (firefunction-v2: the tools as JSON text, as the Fireworks API passes them; an empty
//! string without tools) and any extra variables (`enable_thinking`, ...) in the context.
//!
//! [`JinjaTemplate::new`] compiles the template once and probes what it can render
//! ([`TemplateCaps`]): a system role, tool definitions, assistant tool calls (with arguments as
//! objects or as text), tool results. What it cannot render is rewritten into what it can
//! (see [`JinjaTemplate::render_messages`]), as llama.cpp's minja does.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::{json, Value as Json};

use super::{ChatMessage, Role, TemplateError, ToolCall};

/// What a template renders, found by rendering probes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TemplateCaps {
    /// A `system` message appears in the prompt.
    pub system_role: bool,
    /// The `tools` variable is rendered (the template describes tools to the model).
    pub tools: bool,
    /// An assistant message's `tool_calls` are rendered.
    pub tool_calls: bool,
    /// Tool calls render only with their arguments as JSON objects (most templates apply
    /// `tojson` to them); false: as JSON text.
    pub object_arguments: bool,
    /// A `tool` message's content appears in the prompt.
    pub tool_responses: bool,
}

/// Instructions one render may run: far more than any real template needs for a long
/// conversation, and a bound on one that loops without end.
const FUEL: u64 = 50_000_000;
/// Instructions one probe render may run.
const PROBE_FUEL: u64 = 1_000_000;

/// The variable firefunction-style templates read their tools from.
const FUNCTIONS: &str = "functions";

/// Marks errors raised by the template itself (`raise_exception`).
const RAISED: &str = "raise_exception: ";

/// A compiled Jinja chat template.
pub struct JinjaTemplate {
    source: String,
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    caps: TemplateCaps,
    /// The template reads a `functions` variable it does not set itself.
    reads_functions: bool,
}

impl std::fmt::Debug for JinjaTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JinjaTemplate")
            .field("caps", &self.caps)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

/// The variables of one render besides the messages.
#[derive(Debug, Clone, Default)]
pub struct RenderVars {
    /// Tool definitions in OpenAI's shape (`{"type": "function", "function": {...}}`);
    /// `None` renders `tools` as none.
    pub tools: Option<Json>,
    /// Open the assistant's turn at the end.
    pub add_generation_prompt: bool,
    /// More variables (`chat_template_kwargs`: `enable_thinking`, ...).
    pub extra: serde_json::Map<String, Json>,
}

impl JinjaTemplate {
    /// Compiles `source` and probes what it renders. `bos_token` and `eos_token` are the
    /// texts of the model's BOS and EOS tokens (the template may print them).
    pub fn new(
        source: impl Into<String>,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<JinjaTemplate, TemplateError> {
        let source = source.into();
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .keep_trailing_newline(false)
                .build()
                .map_err(|e| TemplateError::Syntax {
                    message: e.to_string(),
                })?,
        );
        // A template that loops without end is stopped (fuel counts instructions).
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        // Python's `iterable`: strings, lists, dicts; not none, numbers or booleans.
        env.add_test("iterable", |v: Value| {
            matches!(
                v.kind(),
                ValueKind::String | ValueKind::Seq | ValueKind::Map | ValueKind::Iterable
            )
        });
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", |format: String| {
            super::strftime::now(&format)
        });
        env.add_template_owned("chat_template", without_generation_tags(&source))
            .map_err(|e| TemplateError::Syntax {
                message: describe(&e),
            })?;
        let reads_functions = env
            .get_template("chat_template")
            .map(|t| t.undeclared_variables(false).contains(FUNCTIONS))
            .unwrap_or(false);
        let mut template = JinjaTemplate {
            source,
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            caps: TemplateCaps::default(),
            reads_functions,
        };
        // Probes are tiny conversations: a template that needs more than this for them loops.
        template.set_fuel(PROBE_FUEL);
        template.caps = template.probe();
        template.set_fuel(FUEL);
        Ok(template)
    }

    /// Sets how many instructions one render may run (the default is far more than a real
    /// template needs; tests lower it).
    pub fn set_fuel(&mut self, fuel: u64) {
        self.env.set_fuel(Some(fuel));
    }

    /// The template's source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// What the template renders.
    pub fn caps(&self) -> TemplateCaps {
        self.caps
    }

    /// Renders `messages` (JSON, as a template sees them) with `vars`.
    pub fn render_json(&self, messages: &Json, vars: &RenderVars) -> Result<String, TemplateError> {
        let mut ctx = serde_json::Map::new();
        // Today's date as llama.cpp's templating gives it (Llama 3.x's `date_string`,
        // firefunction's `datetime`); a template variable of the request overrides it.
        for (name, format) in [("datetime", "%b %d %Y"), ("date_string", "%d %b %Y")] {
            if let Ok(text) = super::strftime::now(format) {
                ctx.insert(name.into(), text.into());
            }
        }
        if self.reads_functions {
            let functions = match &vars.tools {
                Some(tools @ Json::Array(list)) if !list.is_empty() => python_json(tools, Some(2)),
                _ => String::new(),
            };
            ctx.insert(FUNCTIONS.into(), functions.into());
        }
        for (k, v) in &vars.extra {
            ctx.insert(k.clone(), v.clone());
        }
        ctx.insert("messages".into(), messages.clone());
        ctx.insert("tools".into(), vars.tools.clone().unwrap_or(Json::Null));
        ctx.insert(
            "add_generation_prompt".into(),
            vars.add_generation_prompt.into(),
        );
        ctx.insert("bos_token".into(), self.bos_token.clone().into());
        ctx.insert("eos_token".into(), self.eos_token.clone().into());
        let template =
            self.env
                .get_template("chat_template")
                .map_err(|e| TemplateError::Render {
                    message: describe(&e),
                })?;
        template
            .render(Value::from(minijinja::value::Serde(&ctx)))
            .map_err(|e| match raised_message(&e) {
                Some(message) => TemplateError::Raised { message },
                None => TemplateError::Render {
                    message: describe(&e),
                },
            })
    }

    /// Renders a conversation. What the template cannot render is rewritten first: a system
    /// message without a system role joins the first user message; tools the template does
    /// not describe are described in the system message (`tools_prompt`, given by the tool
    /// format); tool calls it does not render become the assistant's JSON content
    /// (`{"tool_calls": [...]}`); tool results it does not render become user messages
    /// (`{"tool_response": ...}`).
    pub fn render_messages(
        &self,
        messages: &[ChatMessage],
        tools: Option<&Json>,
        tools_prompt: Option<&str>,
        vars: &RenderVars,
    ) -> Result<String, TemplateError> {
        let caps = self.caps;
        let mut messages: Vec<ChatMessage> = messages.to_vec();
        if let Some(extra) = tools_prompt {
            add_to_system(&mut messages, extra);
        }
        if !caps.tool_calls {
            for m in &mut messages {
                if !m.tool_calls.is_empty() {
                    m.content = tool_calls_as_content(&m.content, &m.tool_calls);
                    m.tool_calls.clear();
                }
            }
        }
        if !caps.tool_responses {
            for m in &mut messages {
                if m.role == Role::Tool {
                    m.content = tool_response_as_content(m);
                    m.role = Role::User;
                    m.tool_call_id = None;
                    m.name = None;
                }
            }
        }
        if !caps.system_role {
            merge_system_into_user(&mut messages);
        }
        let json: Vec<Json> = messages
            .iter()
            .map(|m| m.to_template_json(caps.object_arguments))
            .collect();
        let vars = RenderVars {
            tools: tools.cloned(),
            ..vars.clone()
        };
        self.render_json(&Json::Array(json), &vars)
    }

    /// Probes the template with small conversations, as minja does.
    fn probe(&self) -> TemplateCaps {
        let render = |messages: Json, tools: Option<Json>| -> String {
            let vars = RenderVars {
                tools,
                add_generation_prompt: false,
                extra: Default::default(),
            };
            self.render_json(&messages, &vars).unwrap_or_default()
        };
        let user = json!({"role": "user", "content": "Hey"});
        let system_role = render(
            json!([{"role": "system", "content": "<System Needle>"}, user]),
            None,
        )
        .contains("<System Needle>");
        let tool = json!([{"type": "function", "function": {
            "name": "some_tool_needle",
            "description": "Some tool.",
            "parameters": {"type": "object", "properties": {"arg": {"type": "string", "description": "Some argument."}}, "required": ["arg"]},
        }}]);
        let tools = render(json!([user]), Some(tool.clone())).contains("some_tool_needle");
        let call = |arguments: Json| {
            json!([user, {"role": "assistant", "content": "", "tool_calls": [{
                "id": "call_1___",
                "type": "function",
                "function": {"name": "tool_call_needle", "arguments": arguments},
            }]}, {"role": "user", "content": "Thanks"}])
        };
        let as_object = render(
            call(json!({"argument_needle": "print('Hello, World!')"})),
            Some(tool.clone()),
        );
        let as_text = render(
            call(json!("{\"argument_needle\": \"print('Hello, World!')\"}")),
            Some(tool.clone()),
        );
        let object_arguments =
            as_object.contains("\"argument_needle\":") || as_object.contains("'argument_needle':");
        let text_arguments = as_text.contains("argument_needle");
        let tool_calls =
            as_object.contains("tool_call_needle") || as_text.contains("tool_call_needle");
        let tool_responses = render(
            json!([user, {"role": "assistant", "content": "", "tool_calls": [{
                "id": "call_1___", "type": "function",
                "function": {"name": "tool_call_needle", "arguments": {"arg": "x"}},
            }]}, {"role": "tool", "name": "tool_call_needle", "tool_call_id": "call_1___", "content": "Some response needle"}]),
            Some(tool),
        )
        .contains("Some response needle");
        TemplateCaps {
            system_role,
            tools,
            tool_calls,
            object_arguments: object_arguments || !text_arguments,
            tool_responses,
        }
    }
}

/// transformers' `{% generation %}` ... `{% endgeneration %}` (it marks the assistant's tokens
/// for training masks and renders nothing) as an always-true `if`, keeping the tags'
/// whitespace control.
fn without_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return out;
        };
        let inner = &tag[2..end];
        let body = inner
            .trim_start_matches(['-', '+'])
            .trim_end_matches(['-', '+'])
            .trim();
        let replacement = match body {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => {
                let lead = &inner[..inner.len() - inner.trim_start_matches(['-', '+']).len()];
                let trail = &inner[inner.trim_end_matches(['-', '+']).len()..];
                out.push_str(&format!("{{%{lead} {r} {trail}%}}"));
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Adds `text` to the system message (a new one first when there is none).
fn add_to_system(messages: &mut Vec<ChatMessage>, text: &str) {
    match messages.first_mut() {
        Some(first) if first.role == Role::System => {
            if !first.content.is_empty() {
                first.content.push_str("\n\n");
            }
            first.content.push_str(text);
        }
        _ => messages.insert(0, ChatMessage::new(Role::System, text)),
    }
}

/// A system message joins the next message (a template without a system role).
fn merge_system_into_user(messages: &mut Vec<ChatMessage>) {
    if messages.first().is_some_and(|m| m.role == Role::System) {
        let system = messages.remove(0);
        match messages.first_mut() {
            Some(next) => next.content = format!("{}\n{}", system.content, next.content),
            None => messages.push(ChatMessage::new(Role::User, system.content)),
        }
    }
}

/// An assistant's tool calls as JSON content, for a template that does not render them.
fn tool_calls_as_content(content: &str, calls: &[ToolCall]) -> String {
    let calls: Vec<Json> = calls
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "arguments": serde_json::from_str::<Json>(&c.arguments).unwrap_or_else(|_| Json::String(c.arguments.clone())),
                "id": c.id,
            })
        })
        .collect();
    let mut obj = serde_json::Map::new();
    obj.insert("tool_calls".into(), Json::Array(calls));
    if !content.is_empty() {
        obj.insert("content".into(), content.into());
    }
    python_json(&Json::Object(obj), None)
}

/// A tool's result as a user message's content, for a template that does not render them.
fn tool_response_as_content(m: &ChatMessage) -> String {
    let mut response = serde_json::Map::new();
    if let Some(name) = &m.name {
        response.insert("tool".into(), name.clone().into());
    }
    response.insert("content".into(), m.content.clone().into());
    if let Some(id) = &m.tool_call_id {
        response.insert("tool_call_id".into(), id.clone().into());
    }
    python_json(&json!({"tool_response": Json::Object(response)}), None)
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("{RAISED}{message}"),
    ))
}

/// The message of a `raise_exception` in `err` or its causes.
fn raised_message(err: &Error) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(mj) = e.downcast_ref::<Error>() {
            if let Some(rest) = mj.detail().and_then(|d| d.strip_prefix(RAISED)) {
                return Some(rest.to_string());
            }
        }
        current = e.source();
    }
    None
}

/// An error with its line, and the chain of causes.
fn describe(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// `tojson` as transformers defines it: Python's `json.dumps(x, ensure_ascii=False,
/// indent=indent)`.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let mut out = String::new();
    let style = PyJson {
        indent,
        ensure_ascii: ensure_ascii.unwrap_or(false),
        sort_keys: sort_keys.unwrap_or(false),
    };
    style.write_value(&mut out, &value, 0)?;
    Ok(Value::from_safe_string(out))
}

/// JSON text as Python's `json.dumps` writes it (spaces after `,` and `:`, non-ASCII kept).
pub fn python_json(value: &Json, indent: Option<usize>) -> String {
    let mut out = String::new();
    let style = PyJson {
        indent,
        ensure_ascii: false,
        sort_keys: false,
    };
    let _ = style.write_value(&mut out, &Value::from(minijinja::value::Serde(value)), 0);
    out
}

struct PyJson {
    indent: Option<usize>,
    ensure_ascii: bool,
    sort_keys: bool,
}

impl PyJson {
    fn newline(&self, out: &mut String, depth: usize) {
        if let Some(n) = self.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
    }

    fn item_separator(&self) -> &'static str {
        if self.indent.is_some() {
            ","
        } else {
            ", "
        }
    }

    fn write_value(&self, out: &mut String, value: &Value, depth: usize) -> Result<(), Error> {
        match value.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => {
                if value.is_integer() {
                    out.push_str(&value.to_string());
                } else {
                    let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
                    out.push_str(&python_float(f));
                }
            }
            ValueKind::String => self.write_string(out, value.as_str().unwrap_or_default()),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                if items.is_empty() {
                    out.push_str("[]");
                    return Ok(());
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item_separator());
                    }
                    self.newline(out, depth + 1);
                    self.write_value(out, item, depth + 1)?;
                }
                self.newline(out, depth);
                out.push(']');
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = value.try_iter()?.collect();
                if self.sort_keys {
                    keys.sort_by_key(|a| a.to_string());
                }
                if keys.is_empty() {
                    out.push_str("{}");
                    return Ok(());
                }
                out.push('{');
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item_separator());
                    }
                    self.newline(out, depth + 1);
                    match key.as_str() {
                        Some(k) => self.write_string(out, k),
                        None => self.write_string(out, &key.to_string()),
                    }
                    out.push_str(": ");
                    let item = value.get_item(key)?;
                    self.write_value(out, &item, depth + 1)?;
                }
                self.newline(out, depth);
                out.push('}');
            }
            ValueKind::Bytes | ValueKind::Plain | ValueKind::Invalid => {
                self.write_string(out, &value.to_string())
            }
            _ => self.write_string(out, &value.to_string()),
        }
        Ok(())
    }

    fn write_string(&self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c if self.ensure_ascii && !c.is_ascii() => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// A float as Python's `repr` writes it (`1.0`, `0.5`, `1e+20`).
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f.fract() == 0.0 && f.abs() < 1e16 {
        return format!("{f:.1}");
    }
    let text = format!("{f}");
    if text.len() > 17 && f.abs() >= 1e16 {
        let e = format!("{f:e}");
        // Rust writes `1e20`; Python `1e+20`.
        return match e.split_once('e') {
            Some((m, exp)) if !exp.starts_with('-') => format!("{m}e+{exp}"),
            _ => e,
        };
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn user(text: &str) -> ChatMessage {
        ChatMessage::new(Role::User, text)
    }

    fn vars(add: bool) -> RenderVars {
        RenderVars {
            add_generation_prompt: add,
            ..Default::default()
        }
    }

    #[test]
    fn smollm2_adds_its_default_system_prompt() {
        let t = JinjaTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap();
        let out = t
            .render_messages(&[user("Say hi")], None, None, &vars(true))
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n"
        );
        let caps = t.caps();
        assert!(caps.system_role && caps.tool_responses);
        assert!(!caps.tools && !caps.tool_calls);
    }

    #[test]
    fn templates_reading_functions_get_the_tools_as_json_text() {
        // FireFunction v2's way: `functions` is set by the caller, not the template.
        let src = "{%- set suffix = 'Functions:' + '\n' + functions -%}{{ suffix }}|{% for m in messages %}{{ m.content }}{% endfor %}";
        let t = JinjaTemplate::new(src, "", "").unwrap();
        assert!(
            t.caps().tools,
            "the probe's tool is rendered through `functions`"
        );
        let out = t
            .render_messages(&[user("hi")], None, None, &vars(false))
            .unwrap();
        assert_eq!(out, "Functions:\n|hi");
        let tools =
            json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]);
        let out = t
            .render_messages(&[user("hi")], Some(&tools), None, &vars(false))
            .unwrap();
        assert!(out.starts_with("Functions:\n[\n  {"), "{out}");
        assert!(out.contains("\"name\": \"get_weather\""), "{out}");
        // A template that sets `functions` itself keeps its own.
        let own =
            JinjaTemplate::new("{% set functions = 'mine' %}{{ functions }}", "", "").unwrap();
        assert_eq!(
            own.render_messages(&[user("hi")], Some(&tools), None, &vars(false))
                .unwrap(),
            "mine"
        );
    }

    #[test]
    fn todays_date_is_a_variable_unless_the_request_sets_it() {
        let src = "{{ date_string }}|{{ datetime }}";
        let t = JinjaTemplate::new(src, "", "").unwrap();
        let expected = format!(
            "{}|{}",
            crate::chat::strftime::now("%d %b %Y").unwrap(),
            crate::chat::strftime::now("%b %d %Y").unwrap()
        );
        let out = t
            .render_messages(&[user("hi")], None, None, &vars(false))
            .unwrap();
        assert_eq!(out, expected);
        let mut v = vars(false);
        v.extra.insert("date_string".into(), json!("26 Jul 2024"));
        let out = t.render_messages(&[user("hi")], None, None, &v).unwrap();
        assert!(out.starts_with("26 Jul 2024|"), "{out}");
    }

    #[test]
    fn trim_and_lstrip_blocks_as_transformers() {
        let src = "{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}";
        let t = JinjaTemplate::new(src, "", "").unwrap();
        assert_eq!(
            t.render_messages(&[user("a"), user("b")], None, None, &vars(false))
                .unwrap(),
            "[a]\n[b]\n"
        );
    }

    #[test]
    fn python_methods_tojson_and_raise() {
        let src = "{{ messages[0].content.strip().upper() }}|{{ tools | tojson }}|{{ {'k': [1, 2.5, none, true, 'é']} | tojson(indent=2) }}{% if messages|length > 1 %}{{ raise_exception('only one message') }}{% endif %}";
        let t = JinjaTemplate::new(src, "", "").unwrap();
        let tools = json!([{"b": 1, "a": "x<y"}]);
        let out = t
            .render_messages(&[user("  hi ")], Some(&tools), None, &vars(false))
            .unwrap();
        assert_eq!(
            out,
            "HI|[{\"b\": 1, \"a\": \"x<y\"}]|{\n  \"k\": [\n    1,\n    2.5,\n    null,\n    true,\n    \"é\"\n  ]\n}"
        );
        let err = t
            .render_messages(&[user("a"), user("b")], None, None, &vars(false))
            .unwrap_err();
        assert_eq!(
            err,
            TemplateError::Raised {
                message: "only one message".into()
            }
        );
    }

    #[test]
    fn syntax_errors_are_typed() {
        let err = JinjaTemplate::new("{% for x in %}", "", "").unwrap_err();
        assert!(matches!(err, TemplateError::Syntax { .. }), "{err:?}");
    }

    #[test]
    fn strftime_now_and_loop_controls() {
        let src = "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %} {{ strftime_now('%Y') | length }}";
        let t = JinjaTemplate::new(src, "", "").unwrap();
        assert_eq!(
            t.render_messages(&[user("a"), user("b")], None, None, &vars(false))
                .unwrap(),
            "a 4"
        );
    }

    #[test]
    fn unsupported_features_are_rewritten() {
        // No system role, no tools, no tool calls, no tool results (only user/assistant).
        let src = "{% for m in messages %}{% if m.role == 'user' %}U:{{ m.content }}\n{% elif m.role == 'assistant' %}A:{{ m.content }}\n{% endif %}{% endfor %}";
        let t = JinjaTemplate::new(src, "", "").unwrap();
        assert_eq!(
            t.caps(),
            TemplateCaps {
                object_arguments: true,
                ..Default::default()
            }
        );
        let mut call = ChatMessage::new(Role::Assistant, "");
        call.tool_calls.push(ToolCall {
            id: "c1".into(),
            name: "f".into(),
            arguments: "{\"x\": 1}".into(),
        });
        let mut result = ChatMessage::new(Role::Tool, "42");
        result.tool_call_id = Some("c1".into());
        let messages = [ChatMessage::new(Role::System, "S"), user("q"), call, result];
        let out = t
            .render_messages(&messages, None, None, &vars(false))
            .unwrap();
        assert_eq!(
            out,
            "U:S\nq\nA:{\"tool_calls\": [{\"name\": \"f\", \"arguments\": {\"x\": 1}, \"id\": \"c1\"}]}\nU:{\"tool_response\": {\"content\": \"42\", \"tool_call_id\": \"c1\"}}\n"
        );
    }

    #[test]
    fn generation_tags_render_their_content() {
        let src = "{% for m in messages %}{%- generation -%} [{{ m.content }}] {%- endgeneration %}{% endfor %}";
        assert_eq!(
            without_generation_tags(src),
            "{% for m in messages %}{%- if true -%} [{{ m.content }}] {%- endif %}{% endfor %}"
        );
        let t = JinjaTemplate::new(src, "", "").unwrap();
        assert_eq!(
            t.render_messages(&[user("a")], None, None, &vars(false))
                .unwrap(),
            "[a]"
        );
        let t = JinjaTemplate::new("{{ tools is iterable }}{{ 'x' is iterable }}", "", "").unwrap();
        assert_eq!(
            t.render_messages(&[user("a")], None, None, &vars(false))
                .unwrap(),
            "FalseTrue"
        );
    }

    #[test]
    fn extra_variables_reach_the_template() {
        let src = "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}{{ bos_token }}{{ messages[0].content }}";
        let t = JinjaTemplate::new(src, "<s>", "</s>").unwrap();
        let mut v = vars(true);
        assert_eq!(
            t.render_messages(&[user("x")], None, None, &v).unwrap(),
            "<s>x"
        );
        v.extra.insert("enable_thinking".into(), false.into());
        assert_eq!(
            t.render_messages(&[user("x")], None, None, &v).unwrap(),
            "<think></think><s>x"
        );
    }

    #[test]
    fn an_endless_template_runs_out_of_fuel() {
        let mut t = JinjaTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        t.set_fuel(100_000);
        let err = t
            .render_messages(&[user("x")], None, None, &vars(false))
            .unwrap_err();
        assert!(matches!(err, TemplateError::Render { .. }), "{err:?}");
    }

    #[test]
    fn floats_as_python_writes_them() {
        assert_eq!(python_float(1.0), "1.0");
        assert_eq!(python_float(0.1), "0.1");
        assert_eq!(python_float(-2.5), "-2.5");
    }
}
