//! Each tool-call format end to end on the real SmolLM2 model: a real template of the family
//! (from llama.cpp's `models/templates`, see tests/chat_templates.rs) renders the tools, the
//! format's grammar holds SmolLM2's answer to a call (`tool_choice: required`), and the
//! format's parser reads the call back, whole and streamed a few bytes at a time (one start
//! per call, argument fragments that join to the same arguments). Prints "skipped" for a
//! template that is not there.
//! Also: a grammar that is not GBNF and a schema llama.cpp's converter refuses are typed
//! errors, not aborts.

mod common;
use common::model_path;

use std::path::PathBuf;
use std::sync::Arc;

use llama_core::chat::{
    ChatFormat, ChatInputs, ChatTemplate, MessageDelta, ParsedMessage, StreamParser,
    TemplateChoice, TemplateOptions, ToolFormat,
};
use llama_core::grammar::{Grammar, GrammarError};
use llama_core::{
    load_model, ChatMessage, ContextParams, GenerateOptions, Model, ModelParams, Role,
    SamplingParams, Session, Tool, ToolChoice,
};
use serde_json::json;

fn model() -> Arc<Model> {
    static MODEL: std::sync::OnceLock<Arc<Model>> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            Arc::new(
                load_model(&model_path(), &ModelParams::default(), None)
                    .unwrap()
                    .0,
            )
        })
        .clone()
}

fn template_file(name: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("LLAMA_CPP_TEMPLATES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/llama-cpp-reference/llama.cpp/models/templates"),
    };
    let path = dir.join(name);
    path.is_file().then_some(path)
}

fn weather() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("The current weather in a city".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    }
}

/// Renders with the template, generates under its grammar, parses the answer.
fn call_through(template: &ChatTemplate, expected: ToolFormat) {
    let m = model();
    let inputs = ChatInputs {
        messages: vec![ChatMessage::new(
            Role::User,
            "What is the weather in Paris?",
        )],
        tools: vec![weather()],
        tool_choice: ToolChoice::Required,
        add_generation_prompt: true,
        ..ChatInputs::default()
    };
    let prompt = template.apply(&m, &inputs).unwrap();
    assert_eq!(prompt.format.tools, Some(expected));
    assert!(prompt.prompt.contains("get_weather"), "{}", prompt.prompt);
    let grammar = prompt.grammar.clone().expect("a tool-call grammar");
    assert!(!grammar.is_lazy(), "required calls are not lazy");
    let tokens = m.tokenize(&prompt.prompt, true, true).unwrap();
    let mut session = Session::start(
        m.clone(),
        &ContextParams {
            n_ctx: 2048,
            n_threads: 2,
            n_threads_batch: 2,
            ..ContextParams::default()
        },
    )
    .unwrap();
    let options = GenerateOptions {
        sampling: SamplingParams::greedy(),
        max_tokens: Some(96),
        grammar: Some(grammar),
        ..GenerateOptions::default()
    };
    let (text, _) = session
        .generate(&tokens, &options)
        .unwrap()
        .collect_text()
        .unwrap();
    let mut parser = StreamParser::new(prompt.format.clone());
    parser.push(&text);
    let (message, _) = parser.finish();
    assert_eq!(message.tool_calls.len(), 1, "{expected:?}: {text:?}");
    assert_eq!(message.tool_calls[0].name, "get_weather", "{text:?}");
    let args: serde_json::Value = serde_json::from_str(&message.tool_calls[0].arguments).unwrap();
    assert!(args["city"].is_string(), "{text:?}");
    streamed_like_whole(&prompt.format, &text, &message);
}

/// The answer streamed a few bytes at a time gives one start per call (its name, the id the
/// whole parse gives) and argument fragments that join to the same arguments.
fn streamed_like_whole(format: &ChatFormat, text: &str, whole: &ParsedMessage) {
    let mut parser = StreamParser::new(format.clone());
    let mut deltas = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(3);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        deltas.extend(parser.push(&rest[..cut]));
        rest = &rest[cut..];
    }
    let (message, more) = parser.finish();
    deltas.extend(more);
    assert_eq!(message.tool_calls.len(), whole.tool_calls.len(), "{text:?}");
    for (i, call) in message.tool_calls.iter().enumerate() {
        let starts: Vec<(&String, &String)> = deltas
            .iter()
            .filter_map(|d| match d {
                MessageDelta::ToolCall { index, id, name } if *index == i => Some((id, name)),
                _ => None,
            })
            .collect();
        assert_eq!(starts, vec![(&call.id, &call.name)], "{text:?}");
        let joined: String = deltas
            .iter()
            .filter_map(|d| match d {
                MessageDelta::ToolArguments { index, text } if *index == i => Some(text.as_str()),
                _ => None,
            })
            .collect();
        let streamed: serde_json::Value = serde_json::from_str(&joined).unwrap();
        let parsed: serde_json::Value =
            serde_json::from_str(&whole.tool_calls[i].arguments).unwrap();
        assert_eq!(streamed, parsed, "{text:?}");
    }
}

fn from_file(name: &str) -> Option<ChatTemplate> {
    let Some(path) = template_file(name) else {
        println!("skipped: {name} is not there");
        return None;
    };
    let choice = ChatTemplate::resolve_with(
        &model(),
        &TemplateOptions {
            file: Some(&path),
            jinja: true,
            ..TemplateOptions::default()
        },
    )
    .unwrap();
    let TemplateChoice::Template(t) = choice else {
        panic!("a template")
    };
    Some(t)
}

#[test]
fn hermes_format_with_qwen_template() {
    if let Some(t) = from_file("Qwen-Qwen2.5-7B-Instruct.jinja") {
        call_through(&t, ToolFormat::Hermes);
    }
}

#[test]
fn llama3_format_with_llama_template() {
    if let Some(t) = from_file("meta-llama-Llama-3.1-8B-Instruct.jinja") {
        call_through(&t, ToolFormat::Llama3);
    }
}

#[test]
fn mistral_format_with_nemo_template() {
    if let Some(t) = from_file("mistralai-Mistral-Nemo-Instruct-2407.jinja") {
        call_through(&t, ToolFormat::Mistral);
    }
}

#[test]
fn firefunction_format_with_its_template() {
    // The template reads the tools from `functions` (JSON text), not from `tools`.
    if let Some(t) = from_file("fireworks-ai-llama-3-firefunction-v2.jinja") {
        call_through(&t, ToolFormat::Firefunction);
    }
}

#[test]
fn generic_format_with_smollm2_own_template() {
    let TemplateChoice::Template(t) = ChatTemplate::resolve(&model(), None).unwrap() else {
        panic!("SmolLM2 has a template")
    };
    assert!(t.jinja().is_some(), "SmolLM2's template renders as Jinja");
    call_through(&t, ToolFormat::Generic);
}

#[test]
fn auto_tool_choice_is_lazy_for_native_formats() {
    let Some(t) = from_file("Qwen-Qwen2.5-7B-Instruct.jinja") else {
        return;
    };
    let inputs = ChatInputs {
        messages: vec![ChatMessage::new(Role::User, "hi")],
        tools: vec![weather()],
        add_generation_prompt: true,
        ..ChatInputs::default()
    };
    let prompt = t.apply(&model(), &inputs).unwrap();
    let grammar = prompt.grammar.unwrap();
    assert_eq!(grammar.trigger_patterns, vec!["<tool_call>".to_string()]);
    // tool_choice none: no grammar, no parsing of calls.
    let none = ChatInputs {
        tool_choice: ToolChoice::None,
        ..inputs
    };
    let prompt = t.apply(&model(), &none).unwrap();
    assert!(prompt.grammar.is_none() && prompt.format.tools.is_none());
}

#[test]
fn bad_grammars_and_schemas_are_typed_errors() {
    let m = model();
    for text in [
        "root ::= ((",
        "",
        "start ::= \"a\"",
        "root ::= root \"a\"",
        "root ::= x",
    ] {
        let err = Grammar::from_gbnf(&m, text).unwrap_err();
        assert!(
            matches!(err, GrammarError::InvalidGrammar { .. }),
            "{text:?}: {err:?}"
        );
    }
    for schema in [
        json!(123),
        json!({"type": "hiccup"}),
        json!({"$ref": "#/nowhere"}),
    ] {
        let err = Grammar::from_json_schema(&m, &schema).unwrap_err();
        assert!(
            matches!(err, GrammarError::InvalidSchema { .. }),
            "{schema}: {err:?}"
        );
    }
    Grammar::from_json_schema(
        &m,
        &json!({"type": "object", "properties": {"a": {"type": "integer"}}}),
    )
    .unwrap();
    Grammar::from_gbnf(&m, "root ::= \"yes\" | \"no\"").unwrap();
}
