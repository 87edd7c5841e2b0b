//! `llama-cli prompt`: one answer to one prompt, streamed to stdout.

use std::io::{IsTerminal, Read};

use llama_core::chat::ChatInputs;
use llama_core::{ChatMessage, GenerateOptions, Role, TemplateChoice};

use super::write_out;
use crate::cli::PromptArgs;
use crate::error::CliError;
use crate::runtime;

/// Runs the command.
pub fn run(args: PromptArgs) -> Result<(), CliError> {
    let Some(settings) = runtime::settings(&args.config, args.options)? else {
        return Ok(());
    };
    let text = match (&args.file, args.text.as_deref()) {
        (Some(path), _) => std::fs::read_to_string(path).map_err(|source| CliError::Io {
            what: "cannot read the prompt file",
            source: std::io::Error::new(source.kind(), format!("{}: {source}", path.display())),
        })?,
        (None, Some(t)) if t != "-" => t.to_string(),
        _ => read_stdin()?,
    };
    if text.trim().is_empty() {
        return Err(CliError::NoPrompt);
    }
    let mut loaded = runtime::load(&settings)?;
    let model = loaded.session.model().clone();
    let (prompt_text, formatted) = if args.raw {
        (text, false)
    } else {
        match crate::chat_setup::template(&model, &settings)? {
            TemplateChoice::Template(template) => {
                let mut messages = Vec::new();
                if let Some(system) = &settings.system {
                    messages.push(ChatMessage::new(Role::System, system.clone()));
                }
                messages.push(ChatMessage::new(Role::User, text));
                let inputs = ChatInputs {
                    messages,
                    add_generation_prompt: true,
                    reasoning: settings.reasoning,
                    ..ChatInputs::default()
                };
                (template.apply(&model, &inputs)?.prompt, true)
            }
            TemplateChoice::PlainCompletion => {
                eprintln!("note: the model has no chat template; sending the prompt as plain text (as with --raw)");
                (text, false)
            }
        }
    };
    let tokens = runtime::tokenize_prompt(&model, &prompt_text, formatted)?;
    let options = GenerateOptions {
        sampling: settings.sampling.clone(),
        max_tokens: settings.n_predict,
        stop: settings.stop.clone(),
        reverse_prompts: settings.reverse_prompt.clone(),
        ignore_eos: settings.ignore_eos,
        grammar: crate::chat_setup::grammar(&model, &settings)?,
        ..GenerateOptions::default()
    };
    reject_if_overflowing(&settings, tokens.len(), loaded.session.n_ctx())?;
    if let Some(cache) = &args.prompt_cache {
        use_prompt_cache(&mut loaded.session, cache, &tokens, settings.stats)?;
    }
    let cancel = loaded.session.cancel_token();
    let _ = ctrlc::set_handler(move || cancel.cancel());
    let mut out = std::io::stdout().lock();
    let mut generation = loaded.session.generate(&tokens, &options)?;
    let mut wrote_any = false;
    let mut last_newline = false;
    for piece in generation.by_ref() {
        let piece = piece?;
        wrote_any = true;
        last_newline = piece.ends_with('\n');
        write_out(&mut out, &piece)?;
    }
    if wrote_any && !last_newline {
        write_out(&mut out, "\n")?;
    }
    let stats = generation.stats();
    if settings.stats {
        runtime::print_stats(Some(loaded.load_time), &stats, &loaded);
    }
    if stats.finish_reason == Some(llama_core::FinishReason::ContextFull) {
        eprintln!(
            "note: the answer stopped because the context ({} tokens) is full; raise --ctx-size for longer answers",
            loaded.session.n_ctx()
        );
    }
    if stats.finish_reason == Some(llama_core::FinishReason::Cancelled) {
        eprintln!("interrupted");
        std::process::exit(130);
    }
    Ok(())
}

/// `--prompt-cache FILE`: load the saved prompt state when the file exists, evaluate the prompt
/// (only what differs from the saved one), and save the result.
fn use_prompt_cache(
    session: &mut llama_core::Session,
    path: &std::path::Path,
    tokens: &[llama_core::Token],
    stats: bool,
) -> Result<(), CliError> {
    if path.exists() {
        session.load_state(path)?;
    }
    let prompt = session.feed_prompt(tokens)?;
    if stats {
        eprintln!(
            "stats: prompt cache {}: {} of {} prompt tokens reused",
            path.display(),
            prompt.n_reused,
            prompt.n_prompt
        );
    }
    session.save_state(path, &[])?;
    Ok(())
}

/// `--on-full reject`: refuse a turn whose prompt plus its --n-predict would not fit.
pub fn reject_if_overflowing(
    settings: &crate::options::Settings,
    n_prompt: usize,
    n_ctx: usize,
) -> Result<(), CliError> {
    if settings.on_full == crate::options::OnFull::Reject {
        if let Some(n_predict) = settings.n_predict {
            if n_prompt + n_predict > n_ctx {
                return Err(CliError::WouldOverflow {
                    n_prompt,
                    n_predict,
                    n_ctx,
                });
            }
        }
    }
    Ok(())
}

fn read_stdin() -> Result<String, CliError> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(CliError::NoPrompt);
    }
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .map_err(|source| CliError::Io {
            what: "cannot read the prompt from stdin",
            source,
        })?;
    Ok(text)
}
