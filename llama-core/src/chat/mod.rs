//! Chat: conversations, the templates that render them into prompts, and what the model's
//! answer means (text, reasoning, tool calls).
//!
//! - [`ChatMessage`], [`Role`], [`ToolCall`], [`Tool`], [`ToolChoice`]: a conversation as the
//!   OpenAI API sends it (system, user, assistant with `tool_calls`, tool results).
//! - [`jinja`]: the model's own `tokenizer.chat_template` rendered with a Jinja engine
//!   (minijinja) as Hugging Face transformers renders it: `messages`, `tools`,
//!   `add_generation_prompt`, `bos_token`/`eos_token`, `raise_exception`, `strftime_now`,
//!   today's date as `datetime` and `date_string` (as llama.cpp's templating gives them),
//!   Python string methods, `trim_blocks`/`lstrip_blocks`; and what a template can do (system
//!   role, tools, tool calls, tool results), probed by rendering.
//! - [`tools`]: the tool-call format of a template family (Hermes/Qwen `<tool_call>`, Llama 3.x
//!   JSON, Mistral `[TOOL_CALLS]`, or the generic JSON fallback for templates without tool
//!   support) and the JSON schema that constrains the answer to it.
//! - [`reasoning`]: [`Reasoning`], whether the model thinks (`--reasoning on|off|auto`),
//!   passed to templates as `enable_thinking`.
//! - [`parse`]: the answer split into content, `reasoning_content` (`<think>`) and tool calls,
//!   also while it streams (as deltas).
//! - `template` (feature `ffi`): [`ChatTemplate`], the template a model uses (Jinja, or
//!   llama.cpp's built-in templates when the Jinja one cannot be rendered), and
//!   [`ChatTemplate::apply`], the one function `prompt`, `chat` and `serve` (and
//!   `/apply-template`) render a conversation with.

pub mod jinja;
pub mod parse;
mod partial;
pub mod reasoning;
mod strftime;
#[cfg(feature = "ffi")]
mod template;
pub mod tools;

pub use jinja::{JinjaTemplate, TemplateCaps};
pub use parse::{ChatFormat, MessageDelta, ParsedMessage, ReasoningFormat, StreamParser};
pub use reasoning::Reasoning;
#[cfg(feature = "ffi")]
pub use template::{ChatInputs, ChatPrompt, ChatTemplate, TemplateChoice, TemplateOptions};
pub use tools::{Tool, ToolChoice, ToolFormat};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the assistant (OpenAI's `developer` role is mapped here).
    System,
    /// The person talking to the model.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

impl Role {
    /// The role's name as templates spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A call of a tool that the model asked for (OpenAI's `tool_calls[i]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    /// The call's id, which the tool's result refers to.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
    /// The model's reasoning before its answer (`<think>` ... `</think>`), kept apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tools the assistant called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool's result: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For a tool's result: the tool's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// A message from `role`.
    pub fn new(role: Role, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
            reasoning_content: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// The message as a template sees it (`{"role", "content", "tool_calls": [{"id", "type",
    /// "function": {"name", "arguments"}}], "tool_call_id", "name", "reasoning_content"}`).
    /// `object_arguments` passes arguments as JSON objects (as most templates expect),
    /// otherwise as the JSON text.
    pub fn to_template_json(&self, object_arguments: bool) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("role".into(), self.role.as_str().into());
        m.insert("content".into(), self.content.clone().into());
        if !self.tool_calls.is_empty() {
            let calls: Vec<serde_json::Value> = self
                .tool_calls
                .iter()
                .map(|c| {
                    let arguments = if object_arguments {
                        serde_json::from_str(&c.arguments)
                            .unwrap_or_else(|_| serde_json::Value::String(c.arguments.clone()))
                    } else {
                        serde_json::Value::String(c.arguments.clone())
                    };
                    serde_json::json!({
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": arguments},
                    })
                })
                .collect();
            m.insert("tool_calls".into(), calls.into());
        }
        if let Some(id) = &self.tool_call_id {
            m.insert("tool_call_id".into(), id.clone().into());
        }
        if let Some(name) = &self.name {
            m.insert("name".into(), name.clone().into());
        }
        if let Some(r) = &self.reasoning_content {
            m.insert("reasoning_content".into(), r.clone().into());
        }
        serde_json::Value::Object(m)
    }
}

/// A chat template could not be chosen or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The name given with --chat-template is not one llama.cpp knows.
    #[error("unknown chat template '{name}'; known templates: {available}")]
    UnknownName {
        /// The name that was asked for.
        name: String,
        /// The names llama.cpp knows, comma-separated.
        available: String,
    },
    /// The model's own template is not one llama.cpp can apply.
    #[error("the model's chat template is not supported by llama.cpp's built-in templates; pass --chat-template NAME (e.g. chatml) or --raw")]
    UnsupportedModelTemplate,
    /// A message holds a NUL byte.
    #[error("a chat message contains a NUL byte")]
    InvalidMessage,
    /// The Jinja template does not compile.
    #[error("the chat template is not valid Jinja: {message}")]
    Syntax {
        /// minijinja's description, with the line.
        message: String,
    },
    /// Rendering failed: an error in the template, or its own `raise_exception(...)`.
    #[error("the chat template failed to render: {message}")]
    Render {
        /// What went wrong.
        message: String,
    },
    /// The template raised an exception about the conversation (`raise_exception`), e.g.
    /// roles that do not alternate.
    #[error("the chat template refused the conversation: {message}")]
    Raised {
        /// The template's message.
        message: String,
    },
    /// The chat template file could not be read.
    #[error("cannot read the chat template file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// The operating system's error.
        message: String,
    },
    /// The tools or the tool choice cannot be turned into a grammar.
    #[error("{0}")]
    Tools(String),
}
