//! The chat template a model uses, and [`ChatTemplate::apply`], which renders a conversation
//! (with tools, the tool choice and the reasoning settings) into the prompt, the grammar the
//! answer is held to, and the format to read the answer with. `prompt`, `chat`, `serve` and
//! `/apply-template` all render through it.
//!
//! Which template: `--chat-template-file FILE` (Jinja), else `--chat-template NAME|SOURCE` (a
//! llama.cpp built-in name, or Jinja source), else the model's `tokenizer.chat_template`,
//! rendered as Jinja unless `--no-jinja`. A Jinja template that does not compile or render is
//! replaced by llama.cpp's built-in heuristics for it ([`ChatTemplate::note`] says so); a model
//! without any template is sent plain text.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value as Json};

use super::jinja::{JinjaTemplate, RenderVars};
use super::parse::{ChatFormat, ReasoningFormat};
use super::reasoning::Reasoning;
use super::tools::{Tool, ToolChoice, ToolFormat};
use super::{ChatMessage, Role, TemplateError};
use crate::ffi::Model;
use crate::grammar::{Grammar, GrammarSpec};

/// Where the template comes from (`--chat-template-file`, `--chat-template`, `--jinja`).
#[derive(Debug, Clone, Default)]
pub struct TemplateOptions<'a> {
    /// `--chat-template NAME|SOURCE`.
    pub name: Option<&'a str>,
    /// `--chat-template-file FILE`.
    pub file: Option<&'a Path>,
    /// Render Jinja (`--jinja`, the default); false uses llama.cpp's built-in templates only.
    pub jinja: bool,
}

/// The template in use.
#[derive(Debug, Clone)]
pub enum ChatTemplate {
    /// A Jinja template (the model's, a file's or one given as text).
    Jinja {
        /// The compiled template.
        template: Arc<JinjaTemplate>,
        /// Where it came from, for logs.
        origin: String,
        /// The BOS text to drop from the start of the rendered prompt (the tokenizer adds it).
        strip_bos: Option<String>,
    },
    /// A llama.cpp built-in template, by name or detected from a template's source.
    Builtin {
        /// The name or source llama.cpp is given.
        source: String,
        /// Where it came from, for logs.
        origin: String,
        /// Why the Jinja template is not used, when it was asked for.
        fallback: Option<String>,
    },
}

/// The outcome of choosing a template for a model.
#[derive(Debug, Clone)]
pub enum TemplateChoice {
    /// Render conversations with this template.
    Template(ChatTemplate),
    /// The model has no template: prompts are sent as plain text.
    PlainCompletion,
}

/// What to render.
#[derive(Debug, Clone, Default)]
pub struct ChatInputs {
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Tools the model may call.
    pub tools: Vec<Tool>,
    /// Whether and which tools it must call.
    pub tool_choice: ToolChoice,
    /// Several calls in one answer.
    pub parallel_tool_calls: bool,
    /// Open the assistant's turn at the end.
    pub add_generation_prompt: bool,
    /// Continue the last (assistant) message instead of answering after it: the prompt is
    /// the conversation before it with the assistant's turn opened, then its text (a
    /// prefill). A conversation that ends with an assistant message is continued this way
    /// anyway when `add_generation_prompt` is set, as llama-server does.
    pub continue_final_message: bool,
    /// Split `<think>` reasoning out of the answer.
    pub reasoning_format: ReasoningFormat,
    /// Whether the model thinks: the template's `enable_thinking` (unless `extra` sets it).
    pub reasoning: Reasoning,
    /// More template variables (`chat_template_kwargs`, e.g. `enable_thinking`).
    pub extra: serde_json::Map<String, Json>,
}

/// A rendered conversation.
#[derive(Debug, Clone)]
pub struct ChatPrompt {
    /// The prompt text (special tokens as text: tokenize with special parsing).
    pub prompt: String,
    /// How to read the answer.
    pub format: ChatFormat,
    /// The grammar tool calls are held to, if any.
    pub grammar: Option<GrammarSpec>,
}

impl ChatTemplate {
    /// The llama.cpp built-in template `name` (an unknown name is an error), else the model's
    /// own, rendered as Jinja. See [`resolve_with`](Self::resolve_with).
    pub fn resolve(model: &Model, name: Option<&str>) -> Result<TemplateChoice, TemplateError> {
        ChatTemplate::resolve_with(
            model,
            &TemplateOptions {
                name,
                file: None,
                jinja: name.is_none(),
            },
        )
    }

    /// Chooses the template (see the module docs). An unknown built-in name without Jinja, an
    /// unreadable file, or a template neither Jinja nor llama.cpp can render is an error.
    pub fn resolve_with(
        model: &Model,
        options: &TemplateOptions<'_>,
    ) -> Result<TemplateChoice, TemplateError> {
        if let Some(path) = options.file {
            let source = std::fs::read_to_string(path).map_err(|e| TemplateError::File {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            let template = jinja_for(model, &source, format!("file {}", path.display()))?;
            return Ok(TemplateChoice::Template(template));
        }
        if let Some(name) = options.name {
            let known = Model::builtin_chat_templates();
            if known.iter().any(|k| k == name) {
                return Ok(TemplateChoice::Template(ChatTemplate::Builtin {
                    source: name.to_string(),
                    origin: format!("built-in {name}"),
                    fallback: None,
                }));
            }
            if !options.jinja {
                return Err(TemplateError::UnknownName {
                    name: name.to_string(),
                    available: known.join(", "),
                });
            }
            let template = jinja_for(model, name, "--chat-template".into())?;
            return Ok(TemplateChoice::Template(template));
        }
        let Some(source) = model.chat_template() else {
            return Ok(TemplateChoice::PlainCompletion);
        };
        let builtin = |fallback: Option<String>| -> Result<TemplateChoice, TemplateError> {
            let template = ChatTemplate::Builtin {
                source: source.clone(),
                origin: "the model's own (llama.cpp's built-in rendering)".into(),
                fallback,
            };
            // Check once that llama.cpp recognises it, so the error comes before any turn.
            template.render(&[ChatMessage::new(Role::User, "hi")], true)?;
            Ok(TemplateChoice::Template(template))
        };
        if !options.jinja {
            return builtin(None);
        }
        match jinja_for(model, &source, "the model's own".into()) {
            Ok(template) => Ok(TemplateChoice::Template(template)),
            Err(err) => builtin(Some(err.to_string())),
        }
    }

    /// A warning to show when the Jinja template could not be used (the built-in one is).
    pub fn note(&self) -> Option<String> {
        match self {
            ChatTemplate::Builtin {
                fallback: Some(why),
                ..
            } => Some(format!(
                "warning: {why}; using llama.cpp's built-in template for it instead (no tools, no template variables)"
            )),
            _ => None,
        }
    }

    /// A short description for logs.
    pub fn describe(&self) -> String {
        match self {
            ChatTemplate::Jinja { origin, .. } => format!("{origin}, Jinja"),
            ChatTemplate::Builtin { origin, .. } => origin.clone(),
        }
    }

    /// The Jinja template, when one is used.
    pub fn jinja(&self) -> Option<&JinjaTemplate> {
        match self {
            ChatTemplate::Jinja { template, .. } => Some(template),
            ChatTemplate::Builtin { .. } => None,
        }
    }

    /// Renders a plain conversation; `add_assistant` opens the assistant's turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_assistant: bool,
    ) -> Result<String, TemplateError> {
        let inputs = ChatInputs {
            messages: messages.to_vec(),
            add_generation_prompt: add_assistant,
            ..ChatInputs::default()
        };
        self.render_text(&inputs, None, None)
    }

    /// Renders `inputs` into the prompt, and says how the answer is constrained and read.
    /// Tools the template cannot describe are described in the system message; with a tool
    /// choice other than `none`, the answer is held by a grammar to calls of the tools (lazy
    /// with `auto`: the model may answer in text instead).
    pub fn apply(&self, model: &Model, inputs: &ChatInputs) -> Result<ChatPrompt, TemplateError> {
        let mut tools: Vec<Tool> = inputs.tools.clone();
        let required = match &inputs.tool_choice {
            ToolChoice::Function(name) => {
                tools.retain(|t| &t.name == name);
                if tools.is_empty() {
                    return Err(TemplateError::Tools(format!(
                        "tool_choice names the function {name:?}, which is not among the tools"
                    )));
                }
                true
            }
            ToolChoice::Required => true,
            ToolChoice::Auto | ToolChoice::None => false,
        };
        let use_tools = !tools.is_empty() && inputs.tool_choice != ToolChoice::None;
        let caps = self.jinja().map(JinjaTemplate::caps).unwrap_or_default();
        let source = self.jinja().map(JinjaTemplate::source).unwrap_or_default();
        let format = use_tools.then(|| ToolFormat::detect(source, caps));
        let tools_json = (!inputs.tools.is_empty())
            .then(|| Json::Array(inputs.tools.iter().map(Tool::to_openai_json).collect()));
        let system_extra = match format {
            Some(f) => f.system_prompt(&tools, caps.tools),
            None if !inputs.tools.is_empty() && !caps.tools => {
                ToolFormat::Hermes.system_prompt(&inputs.tools, false)
            }
            None => None,
        };
        let last_is_assistant = inputs
            .messages
            .last()
            .is_some_and(|m| m.role == Role::Assistant && m.tool_calls.is_empty());
        let prefill =
            (inputs.continue_final_message || inputs.add_generation_prompt) && last_is_assistant;
        let prompt = if prefill {
            let (last, before) = inputs.messages.split_last().expect("a last message");
            let head = ChatInputs {
                messages: before.to_vec(),
                add_generation_prompt: true,
                ..inputs.clone()
            };
            self.render_text(&head, tools_json.as_ref(), system_extra.as_deref())? + &last.content
        } else {
            self.render_text(inputs, tools_json.as_ref(), system_extra.as_deref())?
        };
        let grammar = match format {
            Some(f) => Some(tool_grammar(
                model,
                f,
                &tools,
                inputs.parallel_tool_calls,
                required,
            )?),
            None => None,
        };
        let thinking_open = inputs.reasoning_format != ReasoningFormat::None
            && prompt.trim_end().ends_with("<think>");
        Ok(ChatPrompt {
            prompt,
            format: ChatFormat {
                tools: format,
                reasoning: inputs.reasoning_format,
                thinking_open,
            },
            grammar,
        })
    }

    fn render_text(
        &self,
        inputs: &ChatInputs,
        tools: Option<&Json>,
        system_extra: Option<&str>,
    ) -> Result<String, TemplateError> {
        match self {
            ChatTemplate::Jinja {
                template,
                strip_bos,
                ..
            } => {
                let mut extra = serde_json::Map::new();
                extra.insert(
                    "enable_thinking".into(),
                    inputs.reasoning.enable_thinking().into(),
                );
                extra.extend(inputs.extra.clone());
                let vars = RenderVars {
                    tools: None,
                    add_generation_prompt: inputs.add_generation_prompt,
                    extra,
                };
                let text =
                    template.render_messages(&inputs.messages, tools, system_extra, &vars)?;
                Ok(match strip_bos {
                    Some(bos) if !bos.is_empty() => match text.strip_prefix(bos.as_str()) {
                        Some(rest) => rest.to_string(),
                        None => text,
                    },
                    _ => text,
                })
            }
            ChatTemplate::Builtin { source, .. } => {
                // llama.cpp's built-in templates know roles and content only: tool calls and
                // results become JSON content, as for Jinja templates without them.
                let mut messages: Vec<ChatMessage> = inputs.messages.clone();
                if let Some(extra) = system_extra {
                    match messages.first_mut() {
                        Some(m) if m.role == Role::System => {
                            m.content = format!("{}\n\n{extra}", m.content)
                        }
                        _ => messages.insert(0, ChatMessage::new(Role::System, extra)),
                    }
                }
                let rendered: Vec<(String, String)> = messages
                    .iter()
                    .map(|m| {
                        if !m.tool_calls.is_empty() {
                            let calls: Vec<Json> = m
                                .tool_calls
                                .iter()
                                .map(|c| json!({"name": c.name, "arguments": serde_json::from_str::<Json>(&c.arguments).unwrap_or(Json::String(c.arguments.clone())), "id": c.id}))
                                .collect();
                            ("assistant".to_string(), super::jinja::python_json(&json!({"tool_calls": calls}), None))
                        } else if m.role == Role::Tool {
                            (
                                "user".to_string(),
                                super::jinja::python_json(&json!({"tool_response": {"content": m.content, "tool_call_id": m.tool_call_id}}), None),
                            )
                        } else {
                            (m.role.as_str().to_string(), m.content.clone())
                        }
                    })
                    .collect();
                let pairs: Vec<(&str, &str)> = rendered
                    .iter()
                    .map(|(r, c)| (r.as_str(), c.as_str()))
                    .collect();
                Model::apply_chat_template(source, &pairs, inputs.add_generation_prompt)
            }
        }
    }
}

/// A Jinja template for `model` from `source`, checked by rendering a one-message
/// conversation.
fn jinja_for(model: &Model, source: &str, origin: String) -> Result<ChatTemplate, TemplateError> {
    let piece =
        |t: crate::Token| String::from_utf8_lossy(&model.token_to_piece(t, true)).into_owned();
    let bos = piece(model.token_bos());
    let eos = model.token_eos().map(piece).unwrap_or_default();
    let template = JinjaTemplate::new(source, &bos, &eos)?;
    let chat = ChatTemplate::Jinja {
        template: Arc::new(template),
        origin,
        strip_bos: model.adds_bos().then_some(bos),
    };
    chat.render(&[ChatMessage::new(Role::User, "hi")], true)?;
    Ok(chat)
}

/// The grammar of tool calls in `format`.
fn tool_grammar(
    model: &Model,
    format: ToolFormat,
    tools: &[Tool],
    parallel: bool,
    required: bool,
) -> Result<GrammarSpec, TemplateError> {
    let schema = format.grammar_schema(tools, parallel, required);
    let gbnf = Grammar::schema_to_gbnf(&schema)
        .map_err(|e| TemplateError::Tools(format!("the tools' parameters: {e}")))?;
    let mut spec = GrammarSpec::new(format.wrap_grammar(&gbnf, parallel));
    if format.lazy(required) {
        spec.trigger_patterns = format.trigger_patterns();
    }
    Grammar::check(model, &spec)
        .map_err(|e| TemplateError::Tools(format!("the tool-call grammar: {e}")))?;
    Ok(spec)
}
