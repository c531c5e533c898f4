//! The HTTP API: OpenAI-shaped chat and text completions (streaming as server-sent events),
//! the reward evaluator, health, models and Prometheus metrics. Every request may choose its
//! own capping through an `acap` field.
//!
//! One concern a file: typed request bodies (`request`), capping (`capping`), responses and
//! streams (`response`), errors (`error`), metrics (`metrics`); the handlers are here.

mod capping;
mod error;
mod metrics;
mod native;
mod request;
mod response;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use acap::eval::{Rubric, parse_evaluation};
use acap::{CapConfig, ChatMessage, ChatTemplate, GenerateParams, Model, SamplingParams, Special};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::engine::EngineHandle;
use error::ApiError;
use request::{EvaluateRequest, GenerationRequest};
use response::{Kind, collect, count, now, respond, submit, usage};

/// Server-wide settings (start-up flags).
pub struct AppState {
    /// The model.
    pub model: Model,
    /// Its name in responses.
    pub model_name: String,
    /// The chat template, resolved at start-up (`--chat-template`, `--chat-template-file`,
    /// `--jinja`, the model's, chatml).
    pub template: ChatTemplate,
    /// The model file (`/props`).
    pub model_path: String,
    /// Slots (`-np`).
    pub n_slots: usize,
    /// Whether `/slots` is served (`--slots`, the default; `--no-slots` switches it off).
    pub slots_endpoint: bool,
    /// Whether the chat page is served at `/` (`--no-webui` switches it off).
    pub webui: bool,
    /// Accepted bearer tokens (none: no key needed).
    pub api_keys: Vec<String>,
    /// Default generation settings.
    pub defaults: GenerateParams,
    /// Default capping (from `--acap*`), if any.
    pub capping: Option<CapConfig>,
    /// H-neuron suppression (`--h-suppress`), on for requests unless they switch it off.
    pub h_suppress: Option<Arc<acap::HSuppress>>,
    /// Tokens of context per slot.
    pub n_ctx_slot: usize,
    /// Whether the engine runs in deterministic mode (`--deterministic`).
    pub deterministic: bool,
    /// The engine.
    pub engine: EngineHandle,
    /// Request id counter.
    pub next_id: AtomicU64,
}

/// The routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/evaluate", post(evaluate))
        .route("/metrics", get(metrics::metrics))
        .route("/completion", post(native::completion))
        .route("/completions", post(native::completion))
        .route("/tokenize", post(native::tokenize))
        .route("/detokenize", post(native::detokenize))
        .route("/apply-template", post(native::apply_template))
        .route("/props", get(native::props))
        .route("/slots", get(native::slots))
        .route("/v1/health", get(health))
        .route("/", get(webui))
        .layer(axum::middleware::from_fn(cors))
        .with_state(state)
}

/// Checks the API key and, for a POST with a body, that the body is declared JSON: a browser
/// page may send `text/plain` bodies to any site without asking first, so only JSON bodies
/// (which need a CORS pre-flight) can start work.
fn authorize_json(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    authorize(state, headers)?;
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !body.is_empty() && !json {
        return Err(ApiError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be sent as Content-Type: application/json",
        ));
    }
    Ok(())
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.api_keys.is_empty() {
        return Ok(());
    }
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Every key is compared, so the time taken does not say which one nearly matched.
    let matched = given.is_some_and(|g| {
        state.api_keys.iter().fold(false, |any, k| {
            same_secret(g.as_bytes(), k.as_bytes()) | any
        })
    });
    if matched {
        Ok(())
    } else {
        Err(ApiError::status(
            StatusCode::UNAUTHORIZED,
            "invalid or missing API key (Authorization: Bearer KEY)",
        ))
    }
}

/// Compares a presented key with the server's without an early exit on the first differing
/// byte, so response times do not reveal how much of a guess was right.
fn same_secret(given: &[u8], key: &[u8]) -> bool {
    let diff = given
        .iter()
        .zip(key)
        .fold(given.len() ^ key.len(), |acc, (a, b)| {
            acc | usize::from(a ^ b)
        });
    std::hint::black_box(diff) == 0
}

/// Sampling settings are checked when the request arrives, so a bad value is a 400 naming
/// the field, not a failed request later.
fn check_sampling(state: &AppState, params: &GenerateParams) -> Result<(), ApiError> {
    acap::Sampler::new(&state.model, &params.sampling, 16).map_err(|e| {
        let field = match &e {
            acap::SamplerError::Grammar { .. } => "grammar",
            _ => "sampling",
        };
        ApiError::bad(field, e.to_string())
    })?;
    Ok(())
}

/// Runs a handler body and turns its error into the OpenAI error response.
fn answer(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// The chat page, built into the binary (no network at run time).
async fn webui(State(state): State<Arc<AppState>>) -> Response {
    if !state.webui {
        return ApiError::status(StatusCode::NOT_FOUND, "the web page is off (--no-webui)")
            .into_response();
    }
    (
        [("content-type", "text/html; charset=utf-8")],
        include_str!("webui.html"),
    )
        .into_response()
}

/// CORS as llama-server does it: any origin may call the API (the API key, when set, is what
/// protects it); pre-flight `OPTIONS` requests are answered here. Browsers only send JSON
/// bodies after a pre-flight, and other bodies are refused (415), so a page cannot start work
/// with a "simple" request the server never agreed to.
async fn cors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let origin = req
        .headers()
        .get("origin")
        .cloned()
        .unwrap_or_else(|| axum::http::HeaderValue::from_static("*"));
    let mut res = if req.method() == axum::http::Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    let h = res.headers_mut();
    h.insert("access-control-allow-origin", origin);
    h.insert(
        "access-control-allow-methods",
        axum::http::HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        "access-control-allow-headers",
        axum::http::HeaderValue::from_static("Content-Type, Authorization"),
    );
    h.insert("vary", axum::http::HeaderValue::from_static("Origin"));
    res
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    axum::Json(json!({"object": "list", "data": [{
        "id": state.model_name, "object": "model", "created": now(), "owned_by": "acap",
    }]}))
    .into_response()
}

async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(generation(state, headers, body, Kind::Chat).await)
}

async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(generation(state, headers, body, Kind::Text).await)
}

/// Chat and text completions: the same request fields, a prompt from `messages` (rendered
/// with the chat template) or from `prompt`.
pub(crate) async fn generation(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Bytes,
    kind: Kind,
) -> Result<Response, ApiError> {
    authorize_json(&state, &headers, &body)?;
    let req: GenerationRequest = request::parse(&body)?;
    let tokens = match kind {
        Kind::Chat => {
            let msgs = req.chat_messages()?;
            let text = state
                .template
                .render(&state.model, &msgs, true)
                .map_err(|e| ApiError::bad("messages", e.to_string()))?;
            state
                .model
                .tokenize(&text, Special::PROMPT)
                .map_err(|e| ApiError::bad("messages", e.to_string()))?
        }
        Kind::Text | Kind::Native => req.prompt_tokens(&state.model)?,
    };
    req.check_slot(state.n_slots)?;
    let params = req.generate_params(&state.defaults)?;
    check_sampling(&state, &params)?;
    let cap = capping::capping(&state, req.acap.as_ref(), req.h_suppress)?;
    respond(
        &state,
        kind,
        tokens,
        params,
        cap,
        req.stream.unwrap_or(false),
    )
    .await
}

async fn evaluate(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    answer(evaluate_inner(state, headers, body).await)
}

async fn evaluate_inner(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize_json(&state, &headers, &body)?;
    let req: EvaluateRequest = request::parse(&body)?;
    let mut rubric = match req.dimensions.unwrap_or(6) {
        5 => Rubric::five_dimensions(),
        6 => Rubric::six_dimensions(),
        n => {
            return Err(ApiError::bad(
                "dimensions",
                format!("'dimensions' is {n}; use 5 or 6"),
            ));
        }
    };
    if let Some(sys) = &req.system_prompt {
        rubric = rubric.with_system_prompt(sys);
    }
    let defaults = acap::eval::EvaluatorParams::default();
    let mut sampling = SamplingParams {
        grammar: Some(rubric.grammar()),
        ..defaults.sampling
    };
    if let Some(seed) = req.seed {
        sampling.seed = request::seed("seed", seed)?;
    }
    if let Some(t) = req.temperature {
        sampling.temperature = t;
    }
    let params = GenerateParams {
        max_tokens: Some(defaults.max_tokens),
        stop: Vec::new(),
        sampling,
    };
    let msgs = [
        ChatMessage::system(rubric.system_prompt.clone()),
        ChatMessage::user(rubric.user_message(&req.prompt, &req.response)),
    ];
    let rendered = state
        .template
        .render(&state.model, &msgs, true)
        .map_err(|e| ApiError::bad("prompt", e.to_string()))?;
    let tokens = state
        .model
        .tokenize(&rendered, Special::PROMPT)
        .map_err(|e| ApiError::bad("prompt", e.to_string()))?;
    count(&state, "evaluate");
    // Always uncapped, whatever the server's defaults.
    let rx = submit(&state, tokens, params, None, state.h_suppress.is_some())?;
    let done = collect(rx).await?;
    let e = parse_evaluation(&done.text, &rubric.dimensions);
    let mut v = acap_frontend::evaluation_json(&e);
    v["usage"] = usage(&done.stats);
    v["acap"] = json!({"applied": {"enabled": false}});
    Ok(axum::Json(v).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_whole() {
        assert!(super::same_secret(b"sekret", b"sekret"));
        for other in [&b"sekreT"[..], b"sekre", b"sekrets", b""] {
            assert!(!super::same_secret(other, b"sekret"));
        }
    }
}
