//! `llama-cli chat`: an interactive conversation. Each turn re-renders the conversation with
//! the chat template; the engine evaluates only the tokens that are new since the last turn.
//!
//! On a terminal, lines are read with a line editor (arrow keys, history saved under the user's
//! data directory, a trailing `\` continues on the next line, pasted text with newlines is one
//! turn). Ctrl-C stops the current answer; Ctrl-C at the prompt (or a second one while an
//! answer is being stopped) exits, as does Ctrl-D. With stdin from a pipe, each line is one
//! turn. With `--context-shift`, the oldest turns are dropped when a new one would not fit.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use llama_core::chat::ChatInputs;
use llama_core::{
    ChatMessage, FinishReason, GenerateOptions, GenerationStats, Role, TemplateChoice,
};

use super::write_out;
use crate::cli::ChatArgs;
use crate::error::CliError;
use crate::runtime;

const HELP: &str = "commands: /reset (forget the conversation), /system TEXT (set the system prompt), /save FILE (save the conversation, KV cache included), /load FILE (continue a saved one), /stats (figures of the last answer), /help, /exit (or Ctrl-D). Ctrl-C stops an answer; a line ending in \\ continues on the next.";

/// Where turns come from: a line editor on a terminal, plain lines from a pipe.
enum Input {
    Editor(Box<rustyline::DefaultEditor>, Option<std::path::PathBuf>),
    Pipe(std::io::Stdin),
}

impl Input {
    fn new() -> Input {
        if !std::io::stdin().is_terminal() {
            return Input::Pipe(std::io::stdin());
        }
        match rustyline::DefaultEditor::new() {
            Ok(mut editor) => {
                let history = dirs::data_dir().map(|d| d.join("llama-rs").join("chat_history"));
                if let Some(path) = &history {
                    let _ = editor.load_history(path);
                }
                Input::Editor(Box::new(editor), history)
            }
            Err(_) => Input::Pipe(std::io::stdin()),
        }
    }

    /// The next turn, `None` at the end of input (or Ctrl-C / Ctrl-D at the prompt).
    fn next_turn(&mut self) -> Result<Option<String>, CliError> {
        let mut turn = String::new();
        loop {
            let prompt = if turn.is_empty() { "> " } else { "... " };
            let Some(line) = self.read_line(prompt)? else {
                return Ok((!turn.is_empty()).then_some(turn));
            };
            match line.strip_suffix('\\') {
                Some(head) => {
                    turn.push_str(head);
                    turn.push('\n');
                }
                None => {
                    turn.push_str(&line);
                    return Ok(Some(turn));
                }
            }
        }
    }

    fn read_line(&mut self, prompt: &str) -> Result<Option<String>, CliError> {
        match self {
            Input::Editor(editor, history) => match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                        if let Some(path) = history {
                            if let Some(dir) = path.parent() {
                                let _ = std::fs::create_dir_all(dir);
                            }
                            let _ = editor.save_history(path);
                        }
                    }
                    Ok(Some(line))
                }
                Err(rustyline::error::ReadlineError::Interrupted)
                | Err(rustyline::error::ReadlineError::Eof) => Ok(None),
                Err(err) => Err(CliError::Io {
                    what: "cannot read from the terminal",
                    source: std::io::Error::other(err.to_string()),
                }),
            },
            Input::Pipe(stdin) => {
                let mut line = String::new();
                let n = stdin
                    .lock()
                    .read_line(&mut line)
                    .map_err(|source| CliError::Io {
                        what: "cannot read from stdin",
                        source,
                    })?;
                if n == 0 {
                    return Ok(None);
                }
                Ok(Some(line.trim_end_matches(['\n', '\r']).to_string()))
            }
        }
    }

    fn interactive(&self) -> bool {
        matches!(self, Input::Editor(..))
    }
}

/// The conversation: its system prompt and its turns.
struct Conversation {
    system: Option<String>,
    turns: Vec<ChatMessage>,
}

impl Conversation {
    fn messages(&self) -> Vec<ChatMessage> {
        let mut all: Vec<ChatMessage> = self
            .system
            .iter()
            .map(|s| ChatMessage::new(Role::System, s.clone()))
            .collect();
        all.extend(self.turns.iter().cloned());
        all
    }

    /// Drops the oldest exchange (a user turn and the answer to it); false when there is none
    /// left before the last turn.
    fn drop_oldest(&mut self) -> bool {
        if self.turns.len() <= 1 {
            return false;
        }
        let n = if self.turns.len() > 2 { 2 } else { 1 };
        self.turns.drain(..n);
        true
    }
}

/// Runs the command.
pub fn run(args: ChatArgs) -> Result<(), CliError> {
    let Some(settings) = runtime::settings(&args.config, args.options)? else {
        return Ok(());
    };
    let mut loaded = runtime::load(&settings)?;
    let model = loaded.session.model().clone();
    let template = match crate::chat_setup::template(&model, &settings)? {
        TemplateChoice::Template(t) => t,
        TemplateChoice::PlainCompletion => return Err(CliError::ChatNeedsTemplate),
    };
    let mut input = Input::new();
    let interactive = input.interactive();
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
    let mut conversation = Conversation {
        system: settings.system.clone(),
        turns: Vec::new(),
    };
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
        reverse_prompts: settings.reverse_prompt.clone(),
        ignore_eos: settings.ignore_eos,
        grammar: crate::chat_setup::grammar(&model, &settings)?,
        ..GenerateOptions::default()
    };
    let render = |messages: Vec<ChatMessage>| -> Result<String, CliError> {
        let inputs = ChatInputs {
            messages,
            add_generation_prompt: true,
            reasoning: settings.reasoning,
            ..ChatInputs::default()
        };
        Ok(template.apply(&model, &inputs)?.prompt)
    };
    let mut out = std::io::stdout().lock();
    let mut first_turn = true;
    let mut last_stats: Option<GenerationStats> = None;
    loop {
        let Some(line) = input.next_turn()? else {
            if interactive {
                eprintln!();
            }
            return Ok(());
        };
        let command = line.trim();
        match command {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/help" => {
                eprintln!("{HELP}");
                continue;
            }
            "/reset" => {
                conversation.turns.clear();
                loaded.session.reset();
                eprintln!("conversation reset");
                continue;
            }
            "/stats" => {
                match &last_stats {
                    Some(stats) => runtime::print_stats(None, stats, &loaded),
                    None => eprintln!("no answer yet"),
                }
                continue;
            }
            cmd if cmd == "/system" || cmd.starts_with("/system ") => {
                let text = cmd["/system".len()..].trim();
                conversation.system = (!text.is_empty()).then(|| text.to_string());
                eprintln!(
                    "system prompt {}",
                    if text.is_empty() { "cleared" } else { "set" }
                );
                continue;
            }
            cmd if cmd.starts_with("/save ") => {
                let path = std::path::Path::new(cmd["/save ".len()..].trim());
                let extra = serde_json::to_vec(&conversation.messages()).unwrap_or_default();
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
                            conversation.system = saved
                                .iter()
                                .find(|m| m.role == Role::System)
                                .map(|m| m.content.clone());
                            conversation.turns = saved
                                .into_iter()
                                .filter(|m| m.role != Role::System)
                                .collect();
                            eprintln!(
                                "loaded {} messages ({} tokens) from {}",
                                conversation.messages().len(),
                                loaded.session.tokens().len(),
                                path.display()
                            );
                        }
                        Err(_) => {
                            loaded.session.reset();
                            conversation.turns.clear();
                            eprintln!("error: {} is not a chat session file", path.display());
                        }
                    },
                    Err(err) => eprintln!("error: {err}"),
                }
                continue;
            }
            cmd if cmd.starts_with('/') && !cmd.contains(char::is_whitespace) => {
                eprintln!("unknown command {cmd}; {HELP}");
                continue;
            }
            _ => {}
        }
        conversation.turns.push(ChatMessage::new(Role::User, line));
        let mut tokens = runtime::tokenize_prompt(&model, &render(conversation.messages())?, true)?;
        // With --context-shift, a conversation that outgrew the context loses its oldest turns.
        let room = loaded.session.n_ctx().saturating_sub(
            settings
                .n_predict
                .unwrap_or(0)
                .min(loaded.session.n_ctx() / 2),
        );
        let mut dropped = 0;
        while settings.context_shift && tokens.len() >= room && conversation.drop_oldest() {
            dropped += 1;
            tokens = runtime::tokenize_prompt(&model, &render(conversation.messages())?, true)?;
        }
        if dropped > 0 {
            eprintln!("(dropped the {dropped} oldest turns to fit the context)");
        }
        if let Err(err) =
            super::prompt::reject_if_overflowing(&settings, tokens.len(), loaded.session.n_ctx())
        {
            conversation.turns.pop();
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
                conversation.turns.pop();
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
        conversation
            .turns
            .push(ChatMessage::new(Role::Assistant, answer));
        if settings.stats {
            runtime::print_stats(first_turn.then_some(loaded.load_time), &stats, &loaded);
        }
        first_turn = false;
        match stats.finish_reason {
            Some(FinishReason::Cancelled) => eprintln!("(answer stopped)"),
            Some(FinishReason::ContextFull) => eprintln!(
                "(the context of {} tokens is full; /reset starts a new conversation, --context-shift drops old turns)",
                loaded.session.n_ctx()
            ),
            _ => {}
        }
        last_stats = Some(stats);
        let _ = out.flush();
    }
}
