//! Tools: their definitions, the tool choice, and the tool-call formats of the common template
//! families, each with the JSON schema (and the GBNF around it) that constrains an answer to
//! well-formed calls of the tools offered:
//!
//! | format | the model writes | grammar |
//! | --- | --- | --- |
//! | [`ToolFormat::Hermes`] (Hermes 2/3, Qwen 2.5/3) | `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` | lazy, from `<tool_call>` |
//! | [`ToolFormat::Llama3`] (Llama 3.1-3.3) | `{"name": ..., "parameters": {...}}` | lazy, from `{"name"` at the start |
//! | [`ToolFormat::Mistral`] (Mistral Nemo, Small) | `[TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}]` | lazy, from `[TOOL_CALLS]` |
//! | [`ToolFormat::Firefunction`] (FireFunction v2) | `functools[{"name": ..., "arguments": {...}}]` | lazy, from `functools[` |
//! | [`ToolFormat::Generic`] (any other template) | `{"tool_call": {...}}` or `{"response": "..."}` | the whole answer |
//!
//! With `tool_choice: "required"` (or a named function) the grammar is not lazy: the answer
//! must be calls. The generic format is llama.cpp's fallback for templates that know nothing of
//! tools: the tools and the JSON answer expected are described in the system message.

use serde_json::{json, Value as Json};

use super::jinja::{python_json, TemplateCaps};

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// JSON schema of its arguments.
    pub parameters: Json,
}

impl Tool {
    /// The tool in OpenAI's shape, as templates expect it.
    pub fn to_openai_json(&self) -> Json {
        let mut function = serde_json::Map::new();
        function.insert("name".into(), self.name.clone().into());
        if let Some(d) = &self.description {
            function.insert("description".into(), d.clone().into());
        }
        function.insert("parameters".into(), self.parameters.clone());
        json!({"type": "function", "function": Json::Object(function)})
    }
}

/// Whether and which tools the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// The model decides (the default).
    #[default]
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call.
    Required,
    /// A call of this function.
    Function(String),
}

/// How a template family writes tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    /// JSON answers (`tool_call` / `tool_calls` / `response`) for templates without tools.
    Generic,
    /// `<tool_call>` JSON `</tool_call>` (Hermes 2 Pro, Hermes 3, Qwen 2.5, Qwen 3).
    Hermes,
    /// A bare JSON object `{"name", "parameters"}` (Llama 3.1, 3.2, 3.3).
    Llama3,
    /// `[TOOL_CALLS]` and a JSON array (Mistral Nemo, Mistral Small).
    Mistral,
    /// `functools` and a JSON array (FireFunction v2; its template reads the tools from
    /// `functions`).
    Firefunction,
}

/// The opening of a Hermes tool call.
pub const HERMES_OPEN: &str = "<tool_call>";
/// The end of a Hermes tool call.
pub const HERMES_CLOSE: &str = "</tool_call>";
/// Mistral's tool-call marker.
pub const MISTRAL_MARKER: &str = "[TOOL_CALLS]";
/// FireFunction's tool-call marker (a JSON array follows it).
pub const FIREFUNCTION_MARKER: &str = "functools";

/// The sentence the generic format adds to the system message (llama.cpp's).
const GENERIC_INSTRUCTION: &str = "Respond in JSON format, either with `tool_call` (a request to call tools) or with `response` reply to the user's request";

impl ToolFormat {
    /// The format of a template, from its source and what it renders.
    pub fn detect(source: &str, caps: TemplateCaps) -> ToolFormat {
        if source.contains("functools[") && caps.tools {
            ToolFormat::Firefunction
        } else if source.contains(HERMES_OPEN) && caps.tools {
            ToolFormat::Hermes
        } else if source.contains(MISTRAL_MARKER) && caps.tools {
            ToolFormat::Mistral
        } else if source.contains("<|start_header_id|>")
            && (source.contains("ipython") || source.contains("<|python_tag|>"))
            && caps.tools
        {
            ToolFormat::Llama3
        } else {
            ToolFormat::Generic
        }
    }

    /// A short name for logs and `/props`.
    pub fn name(self) -> &'static str {
        match self {
            ToolFormat::Generic => "generic",
            ToolFormat::Hermes => "hermes",
            ToolFormat::Llama3 => "llama3",
            ToolFormat::Mistral => "mistral",
            ToolFormat::Firefunction => "firefunction",
        }
    }

    /// Text for the system message when the template does not describe the tools itself
    /// (`template_describes_tools` false), or when the format needs instructions (generic).
    pub fn system_prompt(self, tools: &[Tool], template_describes_tools: bool) -> Option<String> {
        let mut text = String::new();
        if !template_describes_tools {
            let list: Vec<Json> = tools.iter().map(Tool::to_openai_json).collect();
            text.push_str(
                "You can call any of the following tools to satisfy the user's requests: ",
            );
            text.push_str(&python_json(&Json::Array(list), Some(2)));
        }
        if self == ToolFormat::Generic {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(GENERIC_INSTRUCTION);
        }
        (!text.is_empty()).then_some(text)
    }

    /// The JSON schema one call of one of `tools` must match in this format.
    pub fn call_schema(self, tools: &[Tool], parallel: bool) -> Json {
        let one = |t: &Tool| -> Json {
            match self {
                ToolFormat::Llama3 => json!({
                    "type": "object",
                    "properties": {
                        "name": {"const": t.name},
                        "parameters": t.parameters,
                    },
                    "required": ["name", "parameters"],
                }),
                ToolFormat::Mistral => json!({
                    "type": "object",
                    "properties": {
                        "name": {"const": t.name},
                        "arguments": t.parameters,
                        "id": {"type": "string", "pattern": "^[a-zA-Z0-9]{9}$"},
                    },
                    "required": ["name", "arguments", "id"],
                }),
                ToolFormat::Hermes | ToolFormat::Generic | ToolFormat::Firefunction => {
                    let mut props = serde_json::Map::new();
                    props.insert("name".into(), json!({"const": t.name}));
                    props.insert("arguments".into(), t.parameters.clone());
                    let mut required = vec![json!("name"), json!("arguments")];
                    if self == ToolFormat::Generic && parallel {
                        props.insert("id".into(), json!({"type": "string", "minLength": 4}));
                        required.push(json!("id"));
                    }
                    json!({"type": "object", "properties": props, "required": required})
                }
            }
        };
        let schemas: Vec<Json> = tools.iter().map(one).collect();
        if schemas.len() == 1 {
            schemas.into_iter().next().unwrap_or(Json::Null)
        } else {
            json!({"anyOf": schemas})
        }
    }

    /// The JSON schema the grammar is built from: one call, or for the generic format the
    /// whole answer (calls, or with `required` false also a `response`).
    pub fn grammar_schema(self, tools: &[Tool], parallel: bool, required: bool) -> Json {
        let call = self.call_schema(tools, parallel);
        match self {
            ToolFormat::Generic => {
                let calls = if parallel {
                    json!({
                        "type": "object",
                        "properties": {"tool_calls": {"type": "array", "items": call, "minItems": 1}},
                        "required": ["tool_calls"],
                    })
                } else {
                    json!({
                        "type": "object",
                        "properties": {"tool_call": call},
                        "required": ["tool_call"],
                    })
                };
                if required {
                    calls
                } else {
                    json!({"anyOf": [calls, {
                        "type": "object",
                        "properties": {"response": {"type": "string"}},
                        "required": ["response"],
                    }]})
                }
            }
            ToolFormat::Mistral | ToolFormat::Firefunction => {
                let mut array = json!({"type": "array", "items": call, "minItems": 1});
                if !parallel {
                    array["maxItems"] = json!(1);
                }
                array
            }
            ToolFormat::Hermes | ToolFormat::Llama3 => call,
        }
    }

    /// Wraps the GBNF of [`grammar_schema`](Self::grammar_schema) (whose start rule is
    /// `root`) into the grammar of the whole format.
    pub fn wrap_grammar(self, schema_gbnf: &str, parallel: bool) -> String {
        if self == ToolFormat::Generic || self == ToolFormat::Llama3 {
            return schema_gbnf.to_string();
        }
        let renamed = rename_root(schema_gbnf, "tool-call-json");
        let head = match self {
            ToolFormat::Hermes => {
                let call = format!(
                    "tool-call ::= {} tool-call-ws tool-call-json tool-call-ws {} tool-call-ws\ntool-call-ws ::= [ \\t\\n]*\n",
                    gbnf_literal(HERMES_OPEN),
                    gbnf_literal(HERMES_CLOSE)
                );
                let root = if parallel {
                    "root ::= tool-call+\n"
                } else {
                    "root ::= tool-call\n"
                };
                format!("{root}{call}")
            }
            ToolFormat::Mistral => {
                format!("root ::= {} tool-call-json\n", gbnf_literal(MISTRAL_MARKER))
            }
            ToolFormat::Firefunction => {
                format!(
                    "root ::= {} tool-call-json\n",
                    gbnf_literal(FIREFUNCTION_MARKER)
                )
            }
            ToolFormat::Generic | ToolFormat::Llama3 => String::new(),
        };
        format!("{head}{renamed}")
    }

    /// Regex patterns (llama.cpp's lazy-grammar triggers) whose first match starts the
    /// grammar, for `tool_choice: "auto"`.
    pub fn trigger_patterns(self) -> Vec<String> {
        match self {
            ToolFormat::Hermes => vec![regex_escape(HERMES_OPEN)],
            ToolFormat::Mistral => vec![regex_escape(MISTRAL_MARKER)],
            ToolFormat::Firefunction => vec![regex_escape(&format!("{FIREFUNCTION_MARKER}["))],
            ToolFormat::Llama3 => vec![
                "^\\s*(\\{\\s*(?:\"type\"\\s*:\\s*\"function\"\\s*,\\s*)?\"name\"\\s*:\\s*\")[\\s\\S]*$"
                    .to_string(),
            ],
            ToolFormat::Generic => Vec::new(),
        }
    }

    /// Whether the grammar constrains only what follows a trigger (tool choice `auto`) rather
    /// than the whole answer.
    pub fn lazy(self, required: bool) -> bool {
        !required && self != ToolFormat::Generic
    }
}

/// Renames the rule `root` (its definition and references) of a GBNF grammar.
fn rename_root(gbnf: &str, name: &str) -> String {
    gbnf.lines()
        .map(|line| {
            let mut out = String::new();
            // Rule names are [a-zA-Z0-9-]+; replace whole words `root` outside literals.
            let mut in_literal = false;
            let mut in_class = false;
            let bytes: Vec<char> = line.chars().collect();
            let mut i = 0;
            while i < bytes.len() {
                let c = bytes[i];
                if in_literal {
                    out.push(c);
                    if c == '\\' && i + 1 < bytes.len() {
                        out.push(bytes[i + 1]);
                        i += 2;
                        continue;
                    }
                    if c == '"' {
                        in_literal = false;
                    }
                    i += 1;
                    continue;
                }
                if in_class {
                    out.push(c);
                    if c == '\\' && i + 1 < bytes.len() {
                        out.push(bytes[i + 1]);
                        i += 2;
                        continue;
                    }
                    if c == ']' {
                        in_class = false;
                    }
                    i += 1;
                    continue;
                }
                match c {
                    '"' => {
                        in_literal = true;
                        out.push(c);
                        i += 1;
                    }
                    '[' => {
                        in_class = true;
                        out.push(c);
                        i += 1;
                    }
                    c if c.is_ascii_alphanumeric() || c == '-' => {
                        let start = i;
                        while i < bytes.len()
                            && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '-')
                        {
                            i += 1;
                        }
                        let word: String = bytes[start..i].iter().collect();
                        if word == "root" {
                            out.push_str(name);
                        } else {
                            out.push_str(&word);
                        }
                    }
                    c => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A GBNF string literal.
pub fn gbnf_literal(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '[' | ']' => out.push(c),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Escapes a literal for an ECMAScript regex (llama.cpp's `std::regex`).
pub fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\^$.|?*+()[]{}/-".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Tool {
        Tool {
            name: "get_weather".into(),
            description: Some("Weather of a city".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        }
    }

    #[test]
    fn detects_the_template_families() {
        let with_tools = TemplateCaps {
            tools: true,
            ..Default::default()
        };
        assert_eq!(
            ToolFormat::detect("... <tool_call> ...", with_tools),
            ToolFormat::Hermes
        );
        assert_eq!(
            ToolFormat::detect("[TOOL_CALLS] ...", with_tools),
            ToolFormat::Mistral
        );
        assert_eq!(
            ToolFormat::detect("<|start_header_id|>ipython<|end_header_id|>", with_tools),
            ToolFormat::Llama3
        );
        assert_eq!(
            ToolFormat::detect(
                "<|start_header_id|> functools[{\"name\": ...}] ipython",
                with_tools
            ),
            ToolFormat::Firefunction
        );
        assert_eq!(
            ToolFormat::detect("<|im_start|>", with_tools),
            ToolFormat::Generic
        );
        assert_eq!(
            ToolFormat::detect("<tool_call>", TemplateCaps::default()),
            ToolFormat::Generic
        );
    }

    #[test]
    fn generic_schema_offers_a_response_unless_required() {
        let auto = ToolFormat::Generic.grammar_schema(&[weather()], false, false);
        assert!(auto["anyOf"][1]["properties"]["response"].is_object());
        let required = ToolFormat::Generic.grammar_schema(&[weather()], true, true);
        assert_eq!(required["required"], json!(["tool_calls"]));
        assert_eq!(
            required["properties"]["tool_calls"]["items"]["properties"]["name"],
            json!({"const": "get_weather"})
        );
    }

    #[test]
    fn wrapped_grammars_rename_the_schema_root() {
        let g = "root ::= \"{\" space \"root\" x\nx ::= [root] | root\nspace ::= \" \"?";
        let wrapped = ToolFormat::Hermes.wrap_grammar(g, true);
        assert!(wrapped.starts_with("root ::= tool-call+\n"), "{wrapped}");
        assert!(
            wrapped.contains("tool-call-json ::= \"{\" space \"root\" x"),
            "{wrapped}"
        );
        assert!(
            wrapped.contains("x ::= [root] | tool-call-json"),
            "{wrapped}"
        );
        let fire = ToolFormat::Firefunction.wrap_grammar(g, true);
        assert!(
            fire.starts_with("root ::= \"functools\" tool-call-json\n"),
            "{fire}"
        );
        assert_eq!(
            ToolFormat::Firefunction.trigger_patterns(),
            vec!["functools\\[".to_string()]
        );
        let mistral = ToolFormat::Mistral.wrap_grammar(g, false);
        assert!(
            mistral.starts_with("root ::= \"[TOOL_CALLS]\" tool-call-json\n"),
            "{mistral}"
        );
    }

    #[test]
    fn system_prompt_lists_tools_for_templates_that_do_not() {
        let p = ToolFormat::Generic
            .system_prompt(&[weather()], false)
            .unwrap();
        assert!(p.contains("\"name\": \"get_weather\""), "{p}");
        assert!(p.ends_with(GENERIC_INSTRUCTION));
        assert_eq!(ToolFormat::Hermes.system_prompt(&[weather()], true), None);
    }

    #[test]
    fn regex_and_literal_escapes() {
        assert_eq!(regex_escape("[TOOL_CALLS]"), "\\[TOOL_CALLS\\]");
        assert_eq!(gbnf_literal("a\"b\n"), "\"a\\\"b\\n\"");
    }
}
