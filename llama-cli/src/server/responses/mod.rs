//! OpenAI's Responses API: `POST /v1/responses` (and `/responses`), on the same generation
//! path as `/v1/chat/completions` ([`chat_path`]): the request is converted ([`input`]:
//! `input` text or items (messages, `function_call`, `function_call_output`), `instructions`,
//! function `tools`, `tool_choice`, `parallel_tool_calls`, `previous_response_id`,
//! `max_output_tokens`, `temperature`, `top_p`, `stream`), and the answer is spelled as output
//! items ([`output`]: `reasoning`, `message`, `function_call`), whole or as the named event
//! stream. Responses are kept in memory for `previous_response_id` ([`store`]: the
//! [`store::CAPACITY`] most recent, unless `store` is false); an id that is not kept is a 400
//! naming `previous_response_id`.

mod input;
mod output;
pub mod store;

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use self::output::{Envelope, Keep, ResponseFrames};
use self::store::Store;
use super::chat_path::{self, Answer};
use super::error::ApiError;
use super::limits::JsonBody;
use super::log::RequestRecord;
use super::openai::unix_now;
use super::state::AppState;

/// The routes of this module, with their store of responses.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/responses", post(responses))
        .route("/responses", post(responses))
        .route("/v1/responses/input_tokens", post(input_tokens))
        .route("/responses/input_tokens", post(input_tokens))
        .layer(Extension(Store::default()))
}

/// `POST /v1/responses/input_tokens`: the prompt tokens of a request, `{"input_tokens"}`.
async fn input_tokens(
    State(state): State<Arc<AppState>>,
    Extension(store): Extension<Store>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let JsonBody(body) = body?;
    let request = input::convert(&body, &store)?;
    let n = chat_path::count_request(&state, &request.openai).await?;
    Ok(Json(json!({"input_tokens": n})))
}

#[utoipa::path(post, path = "/v1/responses", tag = "openai", request_body(content = Object, content_type = "application/json", description = "OpenAI's Responses request: input (text or items: messages, function_call, function_call_output), instructions, tools, tool_choice, previous_response_id, max_output_tokens, stream"), responses(
    (status = 200, description = "The answer (JSON, or the response.* event stream with `stream`)"),
    (status = 400, description = "An invalid field, named", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn responses(
    State(state): State<Arc<AppState>>,
    Extension(store): Extension<Store>,
    Extension(record): Extension<Arc<RequestRecord>>,
    body: Result<JsonBody, ApiError>,
) -> Response {
    chat_path::respond(
        &record,
        answer(state, store, Arc::clone(&record), body),
        IntoResponse::into_response,
    )
    .await
}

async fn answer(
    state: Arc<AppState>,
    store: Store,
    record: Arc<RequestRecord>,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(body) = body?;
    let request = input::convert(&body, &store)?;
    let submitted = chat_path::submit(&state, &request.openai)
        .await
        .map_err(|mut err| {
            if err.param.as_deref() == Some("max_tokens") {
                err.param = Some("max_output_tokens".into());
            }
            err
        })?;
    let envelope = Envelope {
        id: format!("resp_{}", record.id),
        request_id: record.id.clone(),
        created: unix_now(),
        model: state.model_id.clone(),
        echo: request.echo,
    };
    let keep = (body.get("store") != Some(&Value::Bool(false))).then(|| Keep {
        store: store.clone(),
        conversation: request.conversation,
    });
    if submitted.prepared.stream {
        let frames = ResponseFrames::new(envelope.clone(), keep);
        return whole(
            chat_path::run(submitted, record, frames).await?,
            &envelope,
            None,
        );
    }
    let frames = ResponseFrames::new(envelope.clone(), None);
    whole(
        chat_path::run(submitted, record, frames).await?,
        &envelope,
        keep,
    )
}

/// The response of a finished [`chat_path::run`], kept when `keep` says where.
fn whole(answer: Answer, envelope: &Envelope, keep: Option<Keep>) -> Result<Response, ApiError> {
    let (message, c) = match answer {
        Answer::Streamed(response) => return Ok(response),
        Answer::Whole(message, c) => (message, c),
    };
    if let Some(keep) = keep {
        let mut conversation = keep.conversation;
        conversation.push(output::assistant_message(&message));
        keep.store.put(envelope.id.clone(), conversation);
    }
    Ok(Json(envelope.whole(&message, &c)).into_response())
}
