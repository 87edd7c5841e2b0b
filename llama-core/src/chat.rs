//! Chat templates: the model's own (from its GGUF metadata), one chosen by name, or none (plain
//! completion), and rendering a conversation into the prompt text the model expects.

use crate::error::TemplateError;
use crate::ffi::Model;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the assistant.
    System,
    /// The person talking to the model.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The role's name as templates spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl ChatMessage {
    /// A message from `role`.
    pub fn new(role: Role, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
        }
    }
}

/// Where the template in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplate {
    /// The template in the model's metadata (`tokenizer.chat_template`).
    Model(String),
    /// A llama.cpp built-in template chosen by name (`--chat-template NAME`).
    Named(String),
}

/// The outcome of choosing a template for a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateChoice {
    /// Render conversations with this template.
    Template(ChatTemplate),
    /// The model has no template: prompts are sent as plain text.
    PlainCompletion,
}

impl ChatTemplate {
    /// Chooses the template: the name given, else the model's own, else plain completion.
    /// An unknown name, or a model template llama.cpp cannot apply, is an error.
    pub fn resolve(model: &Model, name: Option<&str>) -> Result<TemplateChoice, TemplateError> {
        if let Some(name) = name {
            let known = Model::builtin_chat_templates();
            if !known.iter().any(|k| k == name) {
                return Err(TemplateError::UnknownName {
                    name: name.to_string(),
                    available: known.join(", "),
                });
            }
            return Ok(TemplateChoice::Template(ChatTemplate::Named(
                name.to_string(),
            )));
        }
        match model.chat_template() {
            None => Ok(TemplateChoice::PlainCompletion),
            Some(source) => {
                let template = ChatTemplate::Model(source);
                // Check once that llama.cpp recognises it, so the error comes before any turn.
                template.render(&[ChatMessage::new(Role::User, "hi")], true)?;
                Ok(TemplateChoice::Template(template))
            }
        }
    }

    /// Renders the conversation; `add_assistant` opens the assistant's turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_assistant: bool,
    ) -> Result<String, TemplateError> {
        let source = match self {
            ChatTemplate::Model(source) => source.as_str(),
            ChatTemplate::Named(name) => name.as_str(),
        };
        let pairs: Vec<(&str, &str)> = messages
            .iter()
            .map(|m| (m.role.as_str(), m.content.as_str()))
            .collect();
        Model::apply_chat_template(source, &pairs, add_assistant)
    }

    /// A short description for logs: the name, or "model" for the model's own template.
    pub fn describe(&self) -> String {
        match self {
            ChatTemplate::Model(_) => "the model's own".to_string(),
            ChatTemplate::Named(name) => name.clone(),
        }
    }
}
