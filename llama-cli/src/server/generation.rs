//! The generation path of `/v1/chat/completions` and `/v1/completions`: a request checked
//! ([`openai`]), its prompt rendered by the chat template ([`ChatTemplate::apply`]: tools, tool
//! choice, reasoning, template variables) or taken as text or token ids, its grammar built
//! (`grammar`, `json_schema`, `response_format`, or the tool-call grammar), then `n` choices
//! per prompt submitted to the engine as separate requests and answered whole or streamed
//! ([`sse`]). Answers are parsed into content, `reasoning_content` and `tool_calls`.
//!
//! [`ChatTemplate::apply`]: llama_core::chat::ChatTemplate::apply

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::Json;
use llama_core::chat::{ChatFormat, ChatInputs, ParsedMessage, StreamParser, ToolChoice};
use llama_core::engine::{Completion, EngineEvent, EngineRequest, ResponseStream, TokenLogprobs};
use llama_core::grammar::{Grammar, GrammarSpec};
use llama_core::{CancelToken, ChatMessage, FinishReason, Role, TemplateError, Token};
use serde_json::Value;

use super::error::ApiError;
use super::log::RequestRecord;
use super::openai::{
    self, ChatRequest, ChoiceResult, Common, CompletionRequest, Constraint, Envelope, Kind,
    PromptInput,
};
use super::sse::{self, StreamChoice};
use super::state::{AppState, Inflight};

/// What a request's prompts and answers are, once checked and rendered.
pub(super) struct Plan {
    /// Each prompt's tokens.
    pub(super) prompts: Vec<Vec<Token>>,
    /// How to read chat answers (`None` for text completions).
    pub(super) format: Option<ChatFormat>,
    /// The grammar answers are held to.
    pub(super) grammar: Option<GrammarSpec>,
    /// Logit biases.
    pub(super) logit_bias: Vec<(Token, f32)>,
}

/// Answers a chat or text-completion request.
pub async fn generate(
    state: Arc<AppState>,
    record: Arc<RequestRecord>,
    kind: Kind,
    body: Value,
) -> Result<Response, ApiError> {
    openai::check_fields(&body, kind)?;
    let common: Common = openai::parse(&body)?;
    let prepared = common.prepare(&state.defaults, kind)?;
    let plan = {
        let state = Arc::clone(&state);
        tokio::task::spawn_blocking(move || plan(&state, kind, &body, &common))
            .await
            .map_err(|e| ApiError::internal(format!("preparing the prompt failed: {e}")))??
    };
    if plan.prompts.len() * prepared.n > openai::MAX_CHOICES {
        return Err(ApiError::invalid(
            format!(
                "{} prompts times n = {} is more than {} choices",
                plan.prompts.len(),
                prepared.n,
                openai::MAX_CHOICES
            ),
            Some("n"),
        ));
    }
    let mut choices = Vec::new();
    let mut guards: Vec<Inflight> = Vec::new();
    for (prompt_index, tokens) in plan.prompts.iter().enumerate() {
        for j in 0..prepared.n {
            let mut options = prepared.options.clone();
            options.sampling.seed = options.sampling.seed.wrapping_add(j as u32);
            options.grammar = plan.grammar.clone();
            options.logit_bias = plan.logit_bias.clone();
            let (stream, inflight) = state
                .submit(EngineRequest {
                    prompt: tokens.clone(),
                    options,
                    cancel: CancelToken::new(),
                })
                .map_err(|mut err| {
                    if kind == Kind::Completion && err.param.as_deref() == Some("messages") {
                        err.param = Some("prompt".into());
                    }
                    err
                })?;
            guards.push(inflight);
            choices.push(StreamChoice {
                index: choices.len(),
                prompt_index,
                stream,
                parser: plan.format.clone().map(StreamParser::new),
            });
        }
    }
    let envelope = Envelope::new(kind, &record.id, &state.model_id);
    if prepared.stream {
        return Ok(sse::respond(
            envelope,
            choices,
            prepared.include_usage,
            prepared.logprobs,
            record,
            guards,
        ));
    }
    let answers = futures_util::future::join_all(choices.into_iter().map(collect)).await;
    drop(guards);
    let mut results = Vec::new();
    let mut completions = Vec::new();
    let mut verbose = None;
    for answer in answers {
        let answer = answer?;
        record.completed(&answer.completion);
        if prepared.verbose && verbose.is_none() {
            let prompt = &plan.prompts[answer.prompt_index];
            verbose = Some(verbose_json(&state, prompt, &answer));
        }
        let finish_reason = if answer.message.tool_calls.is_empty() {
            answer.completion.finish_reason.api_name()
        } else {
            "tool_calls"
        };
        results.push(ChoiceResult {
            index: answer.index,
            message: answer.message,
            finish_reason,
            logprobs: prepared.logprobs.map(|n| (n, answer.logprobs)),
        });
        completions.push((answer.prompt_index, answer.completion));
    }
    let usage = openai::usage_sum(completions.iter().map(|(p, c)| (*p, c)));
    let mut response = envelope.response(&results, usage);
    // llama-server's figures of the (first) answer, and its debug object when asked for.
    if let Some((_, c)) = completions.first() {
        response["timings"] = super::native::timings(c);
    }
    if let Some(v) = verbose {
        response["__verbose"] = v;
    }
    Ok(Json(response).into_response())
}

/// llama-server's `__verbose` object of an answer: the prompt as evaluated (its tokens'
/// text, special tokens included), the answer's text and figures.
fn verbose_json(state: &AppState, prompt: &[Token], answer: &Answer) -> Value {
    let c = &answer.completion;
    let stop_type = match c.finish_reason {
        FinishReason::EndOfGeneration => "eos",
        FinishReason::StopString => "word",
        FinishReason::Length => "limit",
        _ => "none",
    };
    serde_json::json!({
        "index": answer.index,
        "content": answer.message.content,
        "prompt": state.model.detokenize(prompt, true),
        "model": state.model_id,
        "stop": true,
        "stop_type": stop_type,
        "tokens_predicted": c.completion_tokens,
        "tokens_evaluated": c.prompt_tokens,
        "tokens_cached": c.cached_tokens,
        "timings": super::native::timings(c),
    })
}

/// One choice, answered whole.
struct Answer {
    index: usize,
    prompt_index: usize,
    message: ParsedMessage,
    logprobs: Vec<TokenLogprobs>,
    completion: Completion,
}

async fn collect(mut choice: StreamChoice) -> Result<Answer, ApiError> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    loop {
        match choice.stream.next().await {
            Some(EngineEvent::Text(t)) => text.push_str(&t),
            Some(EngineEvent::Logprobs(l)) => logprobs.push(l),
            Some(EngineEvent::Progress(_)) => {}
            Some(EngineEvent::Done(completion)) => {
                let message = match &mut choice.parser {
                    Some(parser) => {
                        parser.push(&text);
                        parser.finish().0
                    }
                    None => ParsedMessage {
                        content: text,
                        ..ParsedMessage::default()
                    },
                };
                return Ok(Answer {
                    index: choice.index,
                    prompt_index: choice.prompt_index,
                    message,
                    logprobs,
                    completion,
                });
            }
            Some(EngineEvent::Failed(err)) => return Err(err.into()),
            None => {
                return Err(ApiError::internal(
                    "the engine ended the request without an answer",
                ))
            }
        }
    }
}

/// Checks and renders the request: prompts, grammar, biases (blocking: templates, grammars
/// and tokenizing). The Anthropic and Responses routes plan their chat requests here too.
pub(super) fn plan(
    state: &AppState,
    kind: Kind,
    body: &Value,
    common: &Common,
) -> Result<Plan, ApiError> {
    let model = &state.model;
    let constraint = common.constraint()?;
    let logit_bias = common.logit_bias(model.n_vocab(), |text| {
        model.tokenize(text, false, false).unwrap_or_default()
    })?;
    let (prompts, format, tool_grammar) = match kind {
        Kind::Chat => {
            let request: ChatRequest = openai::parse(body)?;
            let (tokens, format, grammar) = chat_prompt(state, &request, constraint.as_ref())?;
            (vec![tokens], Some(format), grammar)
        }
        Kind::Completion => {
            let request: CompletionRequest = openai::parse(body)?;
            let prompts = request
                .prompts()?
                .into_iter()
                .map(|p| match p {
                    PromptInput::Text(text) => model.tokenize(&text, true, false).map_err(|e| {
                        ApiError::invalid(format!("cannot tokenize the prompt: {e}"), Some("prompt"))
                    }),
                    PromptInput::Tokens(tokens) => {
                        let n_vocab = model.n_vocab() as Token;
                        match tokens.iter().find(|&&t| t < 0 || t >= n_vocab) {
                            Some(t) => Err(ApiError::invalid(
                                format!("token id {t} is out of range: the vocabulary has {n_vocab} tokens"),
                                Some("prompt"),
                            )),
                            None => Ok(tokens),
                        }
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            (prompts, None, None)
        }
    };
    let grammar = match (tool_grammar, constraint) {
        (Some(g), _) => Some(g),
        (None, Some((field, c))) => Some(compile(state, field, c)?),
        (None, None) => state.defaults.grammar.clone(),
    };
    Ok(Plan {
        prompts,
        format,
        grammar,
        logit_bias,
    })
}

/// A request's constraint, compiled for the model; an unusable one is a 400 naming `field`.
pub(super) fn compile(
    state: &AppState,
    field: &str,
    constraint: Constraint,
) -> Result<GrammarSpec, ApiError> {
    let result = match &constraint {
        Constraint::Gbnf(text) => Grammar::from_gbnf(&state.model, text),
        Constraint::Schema(schema) => Grammar::from_json_schema(&state.model, schema),
    };
    result.map_err(|e| ApiError::invalid(format!("{field}: {e}"), Some(field)))
}

/// The conversation of a chat request as the template renders it: its messages (the
/// server's `--system` first when they have none), tools, tool choice, generation prompt or
/// prefill, reasoning settings and template variables. `constraint` is the request's own
/// grammar, which cannot be combined with tools.
pub(super) fn chat_inputs(
    state: &AppState,
    request: &ChatRequest,
    constraint: Option<&(&'static str, Constraint)>,
) -> Result<ChatInputs, ApiError> {
    let mut messages = request.chat_messages()?;
    if let Some(system) = &state.defaults.system {
        if messages.first().is_none_or(|m| m.role != Role::System) {
            messages.insert(0, ChatMessage::new(Role::System, system.clone()));
        }
    }
    let tools = request.tools()?;
    let tool_choice = request.tool_choice()?;
    if !tools.is_empty() && tool_choice != ToolChoice::None {
        if let Some((field, _)) = constraint {
            return Err(ApiError::invalid(
                format!(
                    "{field} cannot be combined with tools: the tool calls have their own grammar"
                ),
                Some(field),
            ));
        }
    }
    Ok(ChatInputs {
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: request.parallel_tool_calls.unwrap_or(false),
        add_generation_prompt: request.add_generation_prompt.unwrap_or(true)
            && request.continue_final_message != Some(true),
        continue_final_message: request.continue_final_message.unwrap_or(false),
        reasoning_format: request.reasoning_format(state.defaults.reasoning_format)?,
        reasoning: state.defaults.reasoning,
        extra: request.template_vars(),
    })
}

/// The prompt text of `inputs` and how to read the answer: rendered by the chat template, or
/// (a model without one) the messages' text joined, which then takes no tools.
pub(super) fn render_chat(
    state: &AppState,
    inputs: &ChatInputs,
) -> Result<(String, ChatFormat, Option<GrammarSpec>, bool), ApiError> {
    let Some(template) = &state.template else {
        if !inputs.tools.is_empty() {
            return Err(ApiError::invalid(
                "the model has no chat template, so tools cannot be offered",
                Some("tools"),
            ));
        }
        let text = inputs
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        let format = ChatFormat {
            reasoning: inputs.reasoning_format,
            ..ChatFormat::default()
        };
        return Ok((text, format, None, false));
    };
    let prompt = template
        .apply(&state.model, inputs)
        .map_err(template_error)?;
    Ok((prompt.prompt, prompt.format, prompt.grammar, true))
}

/// The rendered and tokenized conversation, how to read the answer, and the tool-call grammar.
fn chat_prompt(
    state: &AppState,
    request: &ChatRequest,
    constraint: Option<&(&'static str, Constraint)>,
) -> Result<(Vec<Token>, ChatFormat, Option<GrammarSpec>), ApiError> {
    let inputs = chat_inputs(state, request, constraint)?;
    let (text, format, grammar, special) = render_chat(state, &inputs)?;
    let tokens = state
        .model
        .tokenize(&text, true, special)
        .map_err(|e| ApiError::invalid(format!("cannot tokenize the prompt: {e}"), None))?;
    Ok((tokens, format, grammar))
}

/// A template's refusal as a 400 naming what it is about.
fn template_error(err: TemplateError) -> ApiError {
    match &err {
        TemplateError::Tools(_) => ApiError::invalid(err.to_string(), Some("tools")),
        _ => ApiError::invalid(
            format!("cannot apply the chat template: {err}"),
            Some("messages"),
        ),
    }
}

/// Reads the next event of a choice (for the stream merger).
pub async fn next_event(mut stream: ResponseStream) -> Option<(EngineEvent, ResponseStream)> {
    let event = stream.next().await?;
    Some((event, stream))
}
