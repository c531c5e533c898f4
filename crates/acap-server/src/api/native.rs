//! llama-server's own endpoints, with its request and response shapes: `/completion`,
//! `/tokenize`, `/detokenize`, `/apply-template`, `/props` and `/slots`.

use std::sync::Arc;

use acap::Special;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::request::{self, GenerationRequest};
use super::response::{Kind, generation_settings};
use super::{AppState, answer, authorize, authorize_json, generation};

/// `POST /completion`: llama-server's native completion (`prompt`, `n_predict`, ...; the
/// answer's text is `content`), streaming when `stream` is true.
pub async fn completion(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(generation(state, headers, body, Kind::Native).await)
}

#[derive(Deserialize)]
struct TokenizeRequest {
    content: String,
    #[serde(default)]
    add_special: bool,
    #[serde(default = "yes")]
    parse_special: bool,
    #[serde(default)]
    with_pieces: bool,
}

fn yes() -> bool {
    true
}

/// `POST /tokenize`: `{"content": .., "add_special": false, "with_pieces": false}` ->
/// `{"tokens": [..]}` (with pieces: `[{"id": .., "piece": ..}]`).
pub async fn tokenize(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer((|| {
        authorize_json(&state, &headers, &body)?;
        let req: TokenizeRequest = request::parse(&body)?;
        let special = Special {
            add: req.add_special,
            parse: req.parse_special,
        };
        let tokens = state
            .model
            .tokenize(&req.content, special)
            .map_err(|e| ApiError::bad("content", e.to_string()))?;
        let tokens: Vec<Value> = if req.with_pieces {
            tokens
                .iter()
                .map(|&t| {
                    let piece = state.model.token_to_piece(t, true).unwrap_or_default();
                    match String::from_utf8(piece) {
                        Ok(p) => json!({"id": t, "piece": p}),
                        Err(e) => json!({"id": t, "piece": e.into_bytes()}),
                    }
                })
                .collect()
        } else {
            tokens.iter().map(|&t| json!(t)).collect()
        };
        Ok(axum::Json(json!({"tokens": tokens})).into_response())
    })())
}

#[derive(Deserialize)]
struct DetokenizeRequest {
    tokens: Vec<i64>,
}

/// `POST /detokenize`: `{"tokens": [..]}` -> `{"content": ..}`.
pub async fn detokenize(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer((|| {
        authorize_json(&state, &headers, &body)?;
        let req: DetokenizeRequest = request::parse(&body)?;
        let tokens = req
            .tokens
            .iter()
            .enumerate()
            .map(|(i, &t)| request::token_id(&state.model, &format!("tokens[{i}]"), t))
            .collect::<Result<Vec<_>, _>>()?;
        let content = state
            .model
            .detokenize(&tokens, false)
            .map_err(|e| ApiError::bad("tokens", e.to_string()))?;
        Ok(axum::Json(json!({"content": content})).into_response())
    })())
}

/// `POST /apply-template`: `{"messages": [..]}` -> `{"prompt": ..}`, the text a chat request
/// with these messages would decode.
pub async fn apply_template(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer((|| {
        authorize_json(&state, &headers, &body)?;
        let req: GenerationRequest = request::parse(&body)?;
        let msgs = req.chat_messages()?;
        let prompt = state
            .template
            .render(&state.model, &msgs, true)
            .map_err(|e| ApiError::bad("messages", e.to_string()))?;
        Ok(axum::Json(json!({"prompt": prompt})).into_response())
    })())
}

/// `GET /props`: the server's settings, as llama-server reports them, plus its capping.
pub async fn props(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    answer((|| {
        authorize(&state, &headers)?;
        // What a request without an `acap` object gets.
        let capping = super::capping::capping(&state, None, None).map_or_else(
            |e| json!({"enabled": true, "error": e.message}),
            |c| c.applied,
        );
        let template = state.model.info().chat_template.clone().unwrap_or_default();
        Ok(axum::Json(json!({
            "default_generation_settings": {
                "n_ctx": state.n_ctx_slot,
                "params": generation_settings(&state, &state.defaults),
            },
            "total_slots": state.n_slots,
            "deterministic": state.deterministic,
            "model_alias": state.model_name,
            "model_path": state.model_path,
            "chat_template": template,
            "chat_template_origin": state.template.origin(),
            "modalities": {"vision": false, "audio": false},
            "build_info": format!("acap {}", env!("CARGO_PKG_VERSION")),
            "acap": capping,
        }))
        .into_response())
    })())
}

/// `GET /slots`: each slot's state (behind the API key when one is set).
pub async fn slots(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    answer((|| {
        if !state.slots_endpoint {
            return Err(ApiError::status(
                StatusCode::NOT_IMPLEMENTED,
                "This server does not support slots endpoint (started with --no-slots).",
            ));
        }
        authorize(&state, &headers)?;
        let infos = state
            .engine
            .metrics
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let slots: Vec<Value> = infos
            .iter()
            .enumerate()
            .map(|(id, s)| {
                json!({
                    "id": id, "n_ctx": state.n_ctx_slot, "is_processing": s.busy,
                    "tokens_cached": s.cached_tokens, "acap": {"capped": s.capped},
                })
            })
            .collect();
        Ok(axum::Json(json!(slots)).into_response())
    })())
}
