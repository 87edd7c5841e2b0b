//! Embeddings and rerank (`serve --embeddings`): OpenAI's `POST /v1/embeddings`, llama-server's
//! `/embeddings` and `/embedding` (its native shape: one vector per token without pooling),
//! and `/v1/rerank` (also `/rerank`, `/reranking`, `/v1/reranking`; Jina's shape, or TEI's
//! when the request sends `texts`) for a model with rank pooling. The vectors come from one
//! [`Embedder`] (its own llama.cpp context with embeddings on), used by one request at a time
//! on a blocking thread.

use std::sync::{Arc, Mutex};

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use llama_core::embedding::{EmbedError, Embedder, Pooling, Vectors};
use llama_core::Token;
use serde_json::{json, Value};

use super::error::ApiError;
use super::limits::JsonBody;
use super::state::AppState;

/// The embedder the routes share.
pub struct Embeddings {
    embedder: Mutex<Embedder>,
}

impl std::fmt::Debug for Embeddings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embeddings").finish_non_exhaustive()
    }
}

impl Embeddings {
    /// Serves `embedder`.
    pub fn new(embedder: Embedder) -> Embeddings {
        Embeddings {
            embedder: Mutex::new(embedder),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Embedder> {
        self.embedder.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The routes, with `embeddings` for their handlers.
pub fn routes(embeddings: Arc<Embeddings>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/embeddings", post(native_embeddings))
        .route("/embedding", post(native_embeddings))
        .route("/v1/rerank", post(rerank))
        .route("/rerank", post(rerank))
        .route("/v1/reranking", post(rerank))
        .route("/reranking", post(rerank))
        .layer(Extension(embeddings))
}

fn api_error(err: EmbedError) -> ApiError {
    match err {
        EmbedError::Decode(_) | EmbedError::Missing { .. } => ApiError::internal(err.to_string()),
        EmbedError::TooLong { .. } => ApiError {
            kind: "exceed_context_size_error",
            ..ApiError::invalid(err.to_string(), Some("input"))
        },
        other => ApiError::invalid(other.to_string(), Some("input")),
    }
}

/// The text of an OpenAI content object, `{"content": [{"type": "text", "text"}, ...]}`.
fn content_text(value: &Value, field: &str) -> Result<String, ApiError> {
    let parts = value
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ApiError::invalid(
                format!("an object in {field} needs content: an array of text parts"),
                Some(field),
            )
        })?;
    let mut text = String::new();
    for part in parts {
        match (part.get("type").and_then(Value::as_str), part.get("text")) {
            (Some("text"), Some(Value::String(t))) => text.push_str(t),
            (kind, _) => {
                return Err(ApiError::invalid(
                    format!(
                        "unsupported content part {}: only text parts are supported",
                        kind.unwrap_or("without a type")
                    ),
                    Some(field),
                ))
            }
        }
    }
    Ok(text)
}

/// One input: text (tokenized with the model's special tokens), token ids, or an OpenAI
/// content object of text parts.
fn tokenize_one(embedder: &Embedder, value: &Value, field: &str) -> Result<Vec<Token>, ApiError> {
    let bad = || {
        ApiError::invalid(
            format!("{field} must be a string, an array of token ids, or an array of those"),
            Some(field),
        )
    };
    let text = |s: &str| {
        embedder
            .model()
            .tokenize(s, true, true)
            .map_err(|e| ApiError::invalid(format!("cannot tokenize: {e}"), Some(field)))
    };
    match value {
        Value::String(s) => text(s),
        Value::Object(_) => text(&content_text(value, field)?),
        Value::Array(ids) => {
            let n_vocab = i64::from(embedder.model().n_vocab());
            ids.iter()
                .map(|id| {
                    id.as_i64()
                        .filter(|t| (0..n_vocab).contains(t))
                        .and_then(|t| Token::try_from(t).ok())
                        .ok_or_else(bad)
                })
                .collect()
        }
        _ => Err(bad()),
    }
}

/// `input` (or `content`): a string, a token array, or an array of strings, token arrays or
/// content objects.
fn tokenize_inputs(
    embedder: &Embedder,
    value: &Value,
    field: &str,
) -> Result<Vec<Vec<Token>>, ApiError> {
    match value {
        Value::Array(items) if items.iter().any(Value::is_number) => {
            Ok(vec![tokenize_one(embedder, value, field)?])
        }
        Value::Array(items) if items.is_empty() => Err(ApiError::invalid(
            format!("{field} must not be empty"),
            Some(field),
        )),
        Value::Array(items) => items
            .iter()
            .map(|item| tokenize_one(embedder, item, field))
            .collect(),
        other => Ok(vec![tokenize_one(embedder, other, field)?]),
    }
}

/// Embeds the request's inputs; returns the vectors and the tokens of each input.
async fn embed(
    embeddings: Arc<Embeddings>,
    body: Value,
    openai: bool,
) -> Result<(Vec<Vectors>, Vec<usize>, Pooling), ApiError> {
    let (field, value) = match (body.get("input"), body.get("content")) {
        (Some(v), _) => ("input", v.clone()),
        (None, Some(v)) => ("content", v.clone()),
        (None, None) => {
            return Err(ApiError::invalid(
                "\"input\" or \"content\" must be provided",
                Some("input"),
            ))
        }
    };
    let normalize = match body.get("embd_normalize") {
        None | Some(Value::Null) => true,
        Some(v) => match v.as_i64() {
            Some(2) => true,
            Some(-1) => false,
            _ => {
                return Err(ApiError::invalid(
                    "embd_normalize must be 2 (Euclidean) or -1 (none)",
                    Some("embd_normalize"),
                ))
            }
        },
    };
    tokio::task::spawn_blocking(move || {
        let mut embedder = embeddings.lock();
        let pooling = embedder.pooling();
        if openai && pooling == Pooling::None {
            return Err(ApiError::invalid(
                "pooling 'none' is not OpenAI-compatible: use /embeddings, or another --pooling",
                None,
            ));
        }
        let inputs = tokenize_inputs(&embedder, &value, field)?;
        let counts = inputs.iter().map(Vec::len).collect();
        let vectors = embedder.embed(&inputs, normalize).map_err(api_error)?;
        Ok((vectors, counts, pooling))
    })
    .await
    .map_err(|e| ApiError::internal(format!("embedding failed: {e}")))?
}

/// A vector as base64 of its little-endian floats, as OpenAI's `encoding_format: base64`.
fn base64_of(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[utoipa::path(post, path = "/v1/embeddings", tag = "openai", request_body(content = Object, content_type = "application/json", description = "`input`: a string, a list of strings, tokens or lists of tokens; `encoding_format`"), responses(
    (status = 200, description = "The answer"),
    (status = 400, description = "An invalid field, named", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn openai_embeddings(
    State(state): State<Arc<AppState>>,
    Extension(embeddings): Extension<Arc<Embeddings>>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let JsonBody(body) = body?;
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                format!("encoding_format {other:?}: expected float or base64"),
                Some("encoding_format"),
            ))
        }
    };
    let (vectors, counts, _) = embed(embeddings, body, true).await?;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let v = v.first().map(Vec::as_slice).unwrap_or(&[]);
            if base64 {
                json!({"object": "embedding", "index": i, "embedding": base64_of(v), "encoding_format": "base64"})
            } else {
                json!({"object": "embedding", "index": i, "embedding": v})
            }
        })
        .collect();
    let tokens: usize = counts.iter().sum();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": state.model_id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

#[utoipa::path(post, path = "/embeddings", tag = "llama-server", request_body(content = Object, content_type = "application/json", description = "`content` (or `input`), as llama-server reads it"), responses(
    (status = 200, description = "The answer"),
    (status = 400, description = "An invalid field, named", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn native_embeddings(
    Extension(embeddings): Extension<Arc<Embeddings>>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let JsonBody(body) = body?;
    let (vectors, _, _) = embed(embeddings, body, false).await?;
    let out: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"index": i, "embedding": v}))
        .collect();
    Ok(Json(Value::Array(out)))
}

/// A query and a document as one reranker input: `BOS query EOS SEP document EOS`, the
/// tokens that are in the vocabulary.
fn rerank_tokens(embedder: &Embedder, query: &str, doc: &str) -> Result<Vec<Token>, ApiError> {
    let model = embedder.model();
    let text = |s: &str| {
        model
            .tokenize(s, false, false)
            .map_err(|e| ApiError::invalid(format!("cannot tokenize: {e}"), None))
    };
    let mut tokens = Vec::new();
    if model.adds_bos() {
        tokens.push(model.token_bos());
    }
    tokens.extend(text(query)?);
    tokens.extend(model.token_eos());
    tokens.extend(model.token_sep());
    tokens.extend(text(doc)?);
    tokens.extend(model.token_eos());
    Ok(tokens)
}

#[utoipa::path(post, path = "/v1/rerank", tag = "llama-server", request_body(content = Object, content_type = "application/json", description = "`query` and `documents` (a model with rank pooling)"), responses(
    (status = 200, description = "The answer"),
    (status = 400, description = "An invalid field, named", content_type = "application/json"),
    (status = 401, description = "A wrong or missing API key")
))]
pub(super) async fn rerank(
    State(state): State<Arc<AppState>>,
    Extension(embeddings): Extension<Arc<Embeddings>>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let JsonBody(body) = body?;
    let query = body
        .get("query")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("\"query\" must be a string", Some("query")))?
        .to_string();
    let tei = body.get("texts").is_some();
    let docs_field = if tei { "texts" } else { "documents" };
    let documents: Vec<String> = body
        .get(docs_field)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|d| d.as_str().map(str::to_string)).collect())
        .unwrap_or(None)
        .filter(|d: &Vec<String>| !d.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                format!("\"{docs_field}\" must be a non-empty array of strings"),
                Some(docs_field),
            )
        })?;
    let top_n = match body.get("top_n") {
        None | Some(Value::Null) => documents.len(),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| ApiError::invalid("top_n must be a positive integer", Some("top_n")))?
            as usize,
    };
    let return_text = tei && body.get("return_text").and_then(Value::as_bool) == Some(true);
    let docs = documents.clone();
    let (scores, tokens) = tokio::task::spawn_blocking(move || {
        let mut embedder = embeddings.lock();
        if embedder.pooling() != Pooling::Rank {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "not_supported_error",
                "this server does not rerank: start it with --embeddings --pooling rank and a reranking model",
            ));
        }
        let inputs = docs
            .iter()
            .map(|d| rerank_tokens(&embedder, &query, d))
            .collect::<Result<Vec<_>, _>>()?;
        let tokens: usize = inputs.iter().map(Vec::len).sum();
        let scores = embedder.rank(&inputs).map_err(api_error)?;
        Ok((scores, tokens))
    })
    .await
    .map_err(|e| ApiError::internal(format!("reranking failed: {e}")))??;
    let label = if tei { "score" } else { "relevance_score" };
    let mut results: Vec<(usize, f32)> = scores.into_iter().enumerate().collect();
    results.sort_by(|a, b| b.1.total_cmp(&a.1));
    results.truncate(top_n);
    let results: Vec<Value> = results
        .into_iter()
        .map(|(index, score)| {
            let mut r = json!({"index": index});
            r[label] = json!(score);
            if return_text {
                r["text"] = json!(documents[index]);
            }
            r
        })
        .collect();
    if tei {
        return Ok(Json(Value::Array(results)));
    }
    Ok(Json(json!({
        "model": state.model_id,
        "object": "list",
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "results": results,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_objects_hold_text_parts_only() {
        let ok =
            json!({"content": [{"type": "text", "text": "a "}, {"type": "text", "text": "b"}]});
        assert_eq!(content_text(&ok, "input").unwrap(), "a b");
        for bad in [
            json!({"content": "string"}),
            json!({"content": [{"type": "image_url", "image_url": {"url": "x"}}]}),
        ] {
            assert!(content_text(&bad, "input").is_err(), "{bad}");
        }
    }

    #[test]
    fn base64_is_little_endian_floats() {
        assert_eq!(base64_of(&[1.0]), "AACAPw==");
    }
}
