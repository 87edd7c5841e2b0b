//! What `prompt`, `chat` and `serve` share about chat: the template chosen from the flags
//! (`--chat-template-file`, `--chat-template`, `--jinja`), with its warning when the Jinja
//! template could not be used, and the grammar of `--grammar` / `--grammar-file` /
//! `--json-schema` / `--json-schema-file`, checked against the model.

use llama_core::chat::{ChatTemplate, TemplateChoice, TemplateOptions};
use llama_core::grammar::{Grammar, GrammarError, GrammarSpec};
use llama_core::Model;

use crate::error::CliError;
use crate::options::{GrammarSource, Settings};

/// The model's template as the flags choose it; a fallback warning goes to stderr.
pub fn template(model: &Model, settings: &Settings) -> Result<TemplateChoice, CliError> {
    let choice = ChatTemplate::resolve_with(
        model,
        &TemplateOptions {
            name: settings.chat_template.as_deref(),
            file: settings.chat_template_file.as_deref(),
            jinja: settings.jinja,
        },
    )?;
    if let TemplateChoice::Template(t) = &choice {
        if let Some(note) = t.note() {
            eprintln!("{note}");
        }
        tracing::info!(template = t.describe(), "chat template");
    }
    Ok(choice)
}

/// The grammar the flags ask for, checked against `model`'s vocabulary.
pub fn grammar(model: &Model, settings: &Settings) -> Result<Option<GrammarSpec>, CliError> {
    let Some(source) = &settings.grammar else {
        return Ok(None);
    };
    let flag = source.flag();
    let fail = |source: GrammarError| CliError::Grammar { flag, source };
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| {
            fail(GrammarError::File {
                path: path.display().to_string(),
                message: e.to_string(),
            })
        })
    };
    let schema = |text: &str| -> Result<GrammarSpec, CliError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            fail(GrammarError::InvalidSchema {
                message: format!("not JSON: {e}"),
            })
        })?;
        Grammar::from_json_schema(model, &value).map_err(fail)
    };
    let spec = match source {
        GrammarSource::Gbnf(text) => Grammar::from_gbnf(model, text).map_err(fail)?,
        GrammarSource::GbnfFile(path) => Grammar::from_gbnf(model, &read(path)?).map_err(fail)?,
        GrammarSource::Schema(text) => schema(text)?,
        GrammarSource::SchemaFile(path) => schema(&read(path)?)?,
    };
    Ok(Some(spec))
}
