//! `llama-cli chat`: an interactive conversation. Each turn re-renders the conversation with
//! the chat template; the session evaluates only the tokens that are new since the last turn.
//!
//! Ctrl-C stops the current answer and returns to the prompt; Ctrl-C at the prompt (or a second
//! one while an answer is being stopped) exits, as does end of input. With stdin from a pipe,
//! each line is one user turn.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use llama_core::{ChatMessage, ChatTemplate, FinishReason, GenerateOptions, Role, TemplateChoice};

use super::write_out;
use crate::cli::ChatArgs;
use crate::error::CliError;
use crate::runtime;

const HELP: &str = "commands: /reset (forget the conversation), /save FILE (save it, KV cache included), /load FILE (continue a saved one), /help, /exit (or Ctrl-D). Ctrl-C stops an answer.";

/// Runs the command.
pub fn run(args: ChatArgs) -> Result<(), CliError> {
    let Some(settings) = runtime::settings(&args.config, args.options)? else {
        return Ok(());
    };
    let mut loaded = runtime::load(&settings)?;
    let model = loaded.session.model().clone();
    let template = match ChatTemplate::resolve(&model, settings.chat_template.as_deref())? {
        TemplateChoice::Template(t) => t,
        TemplateChoice::PlainCompletion => return Err(CliError::ChatNeedsTemplate),
    };
    let interactive = std::io::stdin().is_terminal();
    let generating = Arc::new(AtomicBool::new(false));
    {
        let generating = generating.clone();
        let cancel = loaded.session.cancel_token();
        let _ = ctrlc::set_handler(move || {
            if generating.swap(false, Ordering::SeqCst) && !cancel.is_cancelled() {
                cancel.cancel();
            } else {
                eprintln!();
                std::process::exit(130);
            }
        });
    }
    let system: Vec<ChatMessage> = settings
        .system
        .iter()
        .map(|s| ChatMessage::new(Role::System, s.clone()))
        .collect();
    let mut messages = system.clone();
    if interactive {
        eprintln!(
            "chatting with {} ({} template). {HELP}",
            model.description(),
            template.describe()
        );
    }
    let options = GenerateOptions {
        sampling: settings.sampling.clone(),
        max_tokens: settings.n_predict,
        stop: settings.stop.clone(),
        ignore_eos: settings.ignore_eos,
    };
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut first_turn = true;
    loop {
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        let n = stdin
            .lock()
            .read_line(&mut line)
            .map_err(|source| CliError::Io {
                what: "cannot read from stdin",
                source,
            })?;
        if n == 0 {
            if interactive {
                eprintln!();
            }
            return Ok(());
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/help" => {
                eprintln!("{HELP}");
                continue;
            }
            "/reset" => {
                messages = system.clone();
                loaded.session.reset();
                eprintln!("conversation reset");
                continue;
            }
            cmd if cmd.starts_with("/save ") => {
                let path = std::path::Path::new(cmd["/save ".len()..].trim());
                let extra = serde_json::to_vec(&messages).unwrap_or_default();
                match loaded.session.save_state(path, &extra) {
                    Ok(n) => eprintln!("saved {n} tokens to {}", path.display()),
                    Err(err) => eprintln!("error: {err}"),
                }
                continue;
            }
            cmd if cmd.starts_with("/load ") => {
                let path = std::path::Path::new(cmd["/load ".len()..].trim());
                match loaded.session.load_state(path) {
                    Ok(extra) => match serde_json::from_slice::<Vec<ChatMessage>>(&extra) {
                        Ok(saved) => {
                            messages = saved;
                            eprintln!(
                                "loaded {} messages ({} tokens) from {}",
                                messages.len(),
                                loaded.session.tokens().len(),
                                path.display()
                            );
                        }
                        Err(_) => {
                            loaded.session.reset();
                            messages = system.clone();
                            eprintln!("error: {} is not a chat session file", path.display());
                        }
                    },
                    Err(err) => eprintln!("error: {err}"),
                }
                continue;
            }
            cmd if cmd.starts_with('/') && !cmd.contains(' ') => {
                eprintln!("unknown command {cmd}; {HELP}");
                continue;
            }
            _ => {}
        }
        messages.push(ChatMessage::new(Role::User, line));
        let rendered = template.render(&messages, true)?;
        let tokens = runtime::tokenize_prompt(&model, &rendered, true)?;
        if let Err(err) =
            super::prompt::reject_if_overflowing(&settings, tokens.len(), loaded.session.n_ctx())
        {
            messages.pop();
            eprintln!("error: {err}; /reset starts a new conversation");
            if !interactive {
                return Err(err);
            }
            continue;
        }
        generating.store(true, Ordering::SeqCst);
        let mut generation = match loaded.session.generate(&tokens, &options) {
            Ok(g) => g,
            Err(err @ llama_core::GenerateError::PromptTooLong { .. }) => {
                generating.store(false, Ordering::SeqCst);
                messages.pop();
                eprintln!("error: {err}; /reset starts a new conversation");
                if !interactive {
                    return Err(err.into());
                }
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        let mut answer = String::new();
        for piece in generation.by_ref() {
            let piece = piece?;
            write_out(&mut out, &piece)?;
            answer.push_str(&piece);
        }
        generating.store(false, Ordering::SeqCst);
        let stats = generation.stats();
        if !answer.ends_with('\n') {
            write_out(&mut out, "\n")?;
        }
        messages.push(ChatMessage::new(Role::Assistant, answer));
        if settings.stats {
            runtime::print_stats(first_turn.then_some(loaded.load_time), &stats, &loaded);
        }
        first_turn = false;
        match stats.finish_reason {
            Some(FinishReason::Cancelled) => eprintln!("(answer stopped)"),
            Some(FinishReason::ContextFull) => eprintln!(
                "(the context of {} tokens is full; /reset starts a new conversation)",
                loaded.session.n_ctx()
            ),
            _ => {}
        }
    }
}
