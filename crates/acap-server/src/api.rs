//! The HTTP API: OpenAI-shaped chat and text completions (streaming as server-sent events),
//! the reward evaluator, health, models and Prometheus metrics. Every request may choose its
//! own capping through an `acap` field.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use acap::eval::{Rubric, parse_evaluation};
use acap::{
    CapConfig, ChatMessage, GenerateParams, GenerationStats, LayerRange, LayerStats, Model,
    SamplingParams, Special, StopReason,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::engine::{EngineHandle, Job, Msg};

/// Server-wide settings (start-up flags).
pub struct AppState {
    /// The model.
    pub model: Model,
    /// Its name in responses.
    pub model_name: String,
    /// Chat template override.
    pub chat_template: Option<String>,
    /// Required bearer token, if any.
    pub api_key: Option<String>,
    /// Default generation settings.
    pub defaults: GenerateParams,
    /// Default capping (from `--acap*`), if any.
    pub capping: Option<CapConfig>,
    /// Tokens of context per slot.
    pub n_ctx_slot: usize,
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
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// An OpenAI-style error response.
struct ApiError {
    status: StatusCode,
    message: String,
    param: Option<String>,
}

impl ApiError {
    fn bad(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param.to_owned()),
        }
    }

    fn status(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::SERVICE_UNAVAILABLE => "server_busy",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        let body = json!({"error": {
            "message": self.message,
            "type": kind,
            "param": self.param,
            "code": self.status.as_u16(),
        }});
        (self.status, axum::Json(body)).into_response()
    }
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &state.api_key else {
        return Ok(());
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(key.as_str()) {
        Ok(())
    } else {
        Err(ApiError::status(
            StatusCode::UNAUTHORIZED,
            "invalid or missing API key (Authorization: Bearer KEY)",
        ))
    }
}

fn parse_body(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("body", format!("malformed JSON: {e}")))?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad(
            "body",
            "the request body must be a JSON object",
        )),
    }
}

fn number(body: &serde_json::Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| ApiError::bad(key, format!("'{key}' must be a number"))),
    }
}

fn integer(body: &serde_json::Map<String, Value>, key: &str) -> Result<Option<i64>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::bad(key, format!("'{key}' must be an integer"))),
    }
}

/// Generation settings: the server's defaults overridden by the request's fields.
fn generate_params(
    state: &AppState,
    body: &serde_json::Map<String, Value>,
) -> Result<GenerateParams, ApiError> {
    let mut p = state.defaults.clone();
    let s = &mut p.sampling;
    if let Some(v) = integer(body, "max_completion_tokens")?.or(integer(body, "max_tokens")?) {
        if v < 0 {
            return Err(ApiError::bad("max_tokens", "'max_tokens' must be >= 0"));
        }
        p.max_tokens = Some(v as usize);
    }
    let f = |key: &str| number(body, key).map(|o| o.map(|v| v as f32));
    if let Some(v) = f("temperature")? {
        s.temperature = v;
    }
    if let Some(v) = f("top_p")? {
        s.top_p = v;
    }
    if let Some(v) = f("min_p")? {
        s.min_p = v;
    }
    if let Some(v) = f("repeat_penalty")? {
        s.repeat_penalty = v;
    }
    if let Some(v) = f("frequency_penalty")? {
        s.frequency_penalty = v;
    }
    if let Some(v) = f("presence_penalty")? {
        s.presence_penalty = v;
    }
    if let Some(v) = integer(body, "top_k")? {
        s.top_k = v as i32;
    }
    if let Some(v) = integer(body, "seed")? {
        s.seed = Some(v as u32);
    }
    match body.get("grammar") {
        None | Some(Value::Null) => {}
        Some(Value::String(g)) => s.grammar = Some(g.clone()),
        Some(_) => return Err(ApiError::bad("grammar", "'grammar' must be a string")),
    }
    match body.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(x)) => p.stop = vec![x.clone()],
        Some(Value::Array(a)) => {
            p.stop = a
                .iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ApiError::bad("stop", "'stop' must be a string or strings"))?;
        }
        Some(_) => return Err(ApiError::bad("stop", "'stop' must be a string or strings")),
    }
    // Checked here so a bad value is a 400 naming the field, not a failed request later.
    acap::Sampler::new(&state.model, &p.sampling, 16).map_err(|e| {
        let field = match &e {
            acap::SamplerError::Grammar { .. } => "grammar",
            _ => "sampling",
        };
        ApiError::bad(field, e.to_string())
    })?;
    Ok(p)
}

/// What capping a request gets, as applied.
struct Capping {
    plan: Option<acap::CapPlan>,
    applied: Value,
}

fn capping(state: &AppState, body: &serde_json::Map<String, Value>) -> Result<Capping, ApiError> {
    let req = match body.get("acap") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return Err(ApiError::bad("acap", "'acap' must be an object")),
    };
    let enabled = match req.get("enabled") {
        None => state.capping.is_some(),
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::bad(
                "acap.enabled",
                "'acap.enabled' must be true or false",
            ));
        }
    };
    if !enabled {
        return Ok(Capping {
            plan: None,
            applied: json!({"enabled": false}),
        });
    }
    let Some(mut cfg) = state.capping.clone() else {
        return Err(ApiError::bad(
            "acap",
            "capping was requested but the server has no axis (start it with --acap FILE)",
        ));
    };
    if let Some(a) = number(&req, "alpha")? {
        cfg = cfg.with_alpha(a as f32);
    }
    if let Some(t) = number(&req, "threshold")? {
        cfg = cfg.with_threshold(Some(t as f32));
    }
    match req.get("layer_range") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.len() == 2 && a.iter().all(Value::is_i64) => {
            cfg = cfg.with_layer_range(LayerRange::new(
                a[0].as_i64().unwrap_or(0),
                a[1].as_i64().unwrap_or(0),
            ));
        }
        Some(_) => {
            return Err(ApiError::bad(
                "acap.layer_range",
                "'acap.layer_range' must be [start, end]",
            ));
        }
    }
    let plan = cfg
        .plan(&state.model)
        .map_err(|e| ApiError::bad("acap", e.to_string()))?;
    let layers: Vec<u32> = plan.capped_layers().map(|(l, _)| l).collect();
    let taus: serde_json::Map<String, Value> = plan
        .capped_layers()
        .map(|(l, p)| (l.to_string(), json!(p.tau)))
        .collect();
    let applied = json!({
        "enabled": true,
        "alpha": plan.alpha(),
        "layers": layers,
        "thresholds": taus,
    });
    Ok(Capping {
        plan: Some(plan),
        applied,
    })
}

fn telemetry_json(t: &[(u32, LayerStats)]) -> Value {
    let m: serde_json::Map<String, Value> = t
        .iter()
        .map(|(l, s)| {
            (
                l.to_string(),
                json!({"rows_seen": s.rows_seen, "rows_capped": s.rows_capped,
                       "mean_excess": s.mean_excess(), "max_excess": s.max_excess}),
            )
        })
        .collect();
    Value::Object(m)
}

fn finish_reason(r: &StopReason) -> &'static str {
    match r {
        StopReason::MaxTokens | StopReason::ContextFull => "length",
        _ => "stop",
    }
}

fn usage(st: &GenerationStats) -> Value {
    json!({"prompt_tokens": st.prompt_tokens, "completion_tokens": st.generated_tokens,
           "total_tokens": st.prompt_tokens + st.generated_tokens})
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn count(state: &AppState, endpoint: &'static str) {
    let mut r = state
        .engine
        .metrics
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    *r.entry(endpoint).or_default() += 1;
}

/// Queues a job; the receiver yields its events.
fn submit(
    state: &AppState,
    prompt: Vec<acap::Token>,
    params: GenerateParams,
    plan: Option<acap::CapPlan>,
) -> Result<mpsc::UnboundedReceiver<Msg>, ApiError> {
    if prompt.len() > state.n_ctx_slot {
        return Err(ApiError::bad(
            "messages",
            format!(
                "the prompt has {} tokens but a request's context is {} (-c / -np)",
                prompt.len(),
                state.n_ctx_slot
            ),
        ));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    state
        .engine
        .submit(Job {
            prompt,
            params,
            plan,
            tx,
        })
        .map_err(|m| ApiError::status(StatusCode::SERVICE_UNAVAILABLE, m))?;
    Ok(rx)
}

/// Collects a whole generation.
async fn collect(
    mut rx: mpsc::UnboundedReceiver<Msg>,
) -> Result<(String, GenerationStats, Vec<(u32, LayerStats)>), ApiError> {
    let mut text = String::new();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Text(t) => text.push_str(&t),
            Msg::Done(st, tel) => return Ok((text, st, tel)),
            Msg::Failed(e) => return Err(ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, e)),
        }
    }
    Err(ApiError::status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the engine stopped",
    ))
}

fn messages(body: &serde_json::Map<String, Value>) -> Result<Vec<ChatMessage>, ApiError> {
    let arr = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad("messages", "'messages' must be an array of messages"))?;
    if arr.is_empty() {
        return Err(ApiError::bad("messages", "'messages' is empty"));
    }
    arr.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad(
                    &format!("messages[{i}].role"),
                    "a message needs a 'role' string",
                )
            })?;
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(""),
                Some(Value::Null) | None => String::new(),
                Some(_) => {
                    return Err(ApiError::bad(
                        &format!("messages[{i}].content"),
                        "'content' must be a string or text parts",
                    ));
                }
            };
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

fn stream_flag(body: &serde_json::Map<String, Value>) -> Result<bool, ApiError> {
    match body.get("stream") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad("stream", "'stream' must be true or false")),
    }
}

/// Server-sent events for a generation: `chunk(text, finish)` builds each event's JSON.
fn sse(
    rx: mpsc::UnboundedReceiver<Msg>,
    first: Option<Value>,
    chunk: impl Fn(Option<&str>, Option<&GenerationStats>, &[(u32, LayerStats)]) -> Value
    + Send
    + 'static,
) -> Response {
    let (tx, out) = mpsc::unbounded_channel::<Result<Event, Infallible>>();
    tokio::spawn(async move {
        let mut rx = rx;
        if let Some(f) = first {
            if tx.send(Ok(Event::default().data(f.to_string()))).is_err() {
                return;
            }
        }
        while let Some(msg) = rx.recv().await {
            let ev = match msg {
                Msg::Text(t) => chunk(Some(&t), None, &[]),
                Msg::Done(st, tel) => {
                    let _ = tx.send(Ok(
                        Event::default().data(chunk(None, Some(&st), &tel).to_string())
                    ));
                    let _ = tx.send(Ok(Event::default().data("[DONE]")));
                    return;
                }
                Msg::Failed(e) => json!({"error": {"message": e, "type": "server_error"}}),
            };
            // A closed stream (client gone) drops `rx`, which cancels the request.
            if tx.send(Ok(Event::default().data(ev.to_string()))).is_err() {
                return;
            }
        }
    });
    Sse::new(UnboundedReceiverStream::new(out)).into_response()
}

/// Which OpenAI response shape a generation gets.
#[derive(Clone, Copy)]
enum Kind {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Text,
}

impl Kind {
    fn endpoint(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Text => "completions",
        }
    }

    /// A choice: streamed (`text` is a piece, or `None` in the final chunk) or whole.
    fn choice(self, text: Option<&str>, finish: Option<&str>, whole: bool) -> Value {
        match (self, whole) {
            (Self::Chat, true) => json!({"index": 0, "finish_reason": finish,
                "message": {"role": "assistant", "content": text.unwrap_or("")}}),
            (Self::Chat, false) => json!({"index": 0, "finish_reason": finish,
                "delta": text.map_or(json!({}), |t| json!({"content": t}))}),
            (Self::Text, _) => {
                json!({"index": 0, "text": text.unwrap_or(""), "finish_reason": finish})
            }
        }
    }
}

/// Queues a generation and answers with the whole result or a stream of chunks.
async fn respond(
    state: &AppState,
    kind: Kind,
    tokens: Vec<acap::Token>,
    params: GenerateParams,
    cap: Capping,
    stream: bool,
) -> Result<Response, ApiError> {
    count(state, kind.endpoint());
    let rx = submit(state, tokens, params, cap.plan)?;
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    let (id, object, chunk_object) = match kind {
        Kind::Chat => (
            format!("chatcmpl-{n}"),
            "chat.completion",
            "chat.completion.chunk",
        ),
        Kind::Text => (format!("cmpl-{n}"), "text_completion", "text_completion"),
    };
    let (created, model) = (now(), state.model_name.clone());
    let applied = cap.applied;
    if stream {
        let head = matches!(kind, Kind::Chat).then(|| {
            json!({"id": id, "object": chunk_object, "created": created, "model": model,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                "finish_reason": null}]})
        });
        return Ok(sse(rx, head, move |text, done, tel| {
            let finish = done.map(|s| finish_reason(&s.stop_reason));
            let mut v = json!({"id": id, "object": chunk_object, "created": created,
                "model": model, "choices": [kind.choice(text, finish, false)]});
            if let Some(st) = done {
                v["usage"] = usage(st);
                v["acap"] = json!({"applied": applied, "layers": telemetry_json(tel)});
            }
            v
        }));
    }
    let (text, st, tel) = collect(rx).await?;
    let finish = finish_reason(&st.stop_reason);
    Ok(axum::Json(json!({
        "id": id, "object": object, "created": created, "model": model,
        "choices": [kind.choice(Some(&text), Some(finish), true)],
        "usage": usage(&st),
        "acap": {"applied": applied, "layers": telemetry_json(&tel)},
    }))
    .into_response())
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
    match chat_inner(state, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn chat_inner(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let body = parse_body(&body)?;
    let msgs = messages(&body)?;
    let params = generate_params(&state, &body)?;
    let cap = capping(&state, &body)?;
    let stream = stream_flag(&body)?;
    let prompt = state
        .model
        .apply_chat_template(&msgs, true, state.chat_template.as_deref())
        .map_err(|e| ApiError::bad("messages", e.to_string()))?;
    let tokens = state
        .model
        .tokenize(&prompt, Special::PROMPT)
        .map_err(|e| ApiError::bad("messages", e.to_string()))?;
    respond(&state, Kind::Chat, tokens, params, cap, stream).await
}

async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match completions_inner(state, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn completions_inner(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let body = parse_body(&body)?;
    let prompt = match body.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_owned()
        }
        _ => return Err(ApiError::bad("prompt", "'prompt' must be a string")),
    };
    let params = generate_params(&state, &body)?;
    let cap = capping(&state, &body)?;
    let stream = stream_flag(&body)?;
    let tokens = state
        .model
        .tokenize(&prompt, Special::PROMPT)
        .map_err(|e| ApiError::bad("prompt", e.to_string()))?;
    respond(&state, Kind::Text, tokens, params, cap, stream).await
}

async fn evaluate(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    match evaluate_inner(state, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn evaluate_inner(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let body = parse_body(&body)?;
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::bad(k, format!("'{k}' must be a string")))
    };
    let (prompt, response) = (text("prompt")?, text("response")?);
    let mut rubric = match integer(&body, "dimensions")?.unwrap_or(6) {
        5 => Rubric::five_dimensions(),
        6 => Rubric::six_dimensions(),
        n => {
            return Err(ApiError::bad(
                "dimensions",
                format!("'dimensions' is {n}; use 5 or 6"),
            ));
        }
    };
    if let Some(sys) = body.get("system_prompt").and_then(Value::as_str) {
        rubric = rubric.with_system_prompt(sys);
    }
    let defaults = acap::eval::EvaluatorParams::default();
    let mut sampling = SamplingParams {
        grammar: Some(rubric.grammar()),
        ..defaults.sampling
    };
    if let Some(seed) = integer(&body, "seed")? {
        sampling.seed = Some(seed as u32);
    }
    if let Some(t) = number(&body, "temperature")? {
        sampling.temperature = t as f32;
    }
    let params = GenerateParams {
        max_tokens: Some(defaults.max_tokens),
        stop: Vec::new(),
        sampling,
    };
    let msgs = [
        ChatMessage::system(rubric.system_prompt.clone()),
        ChatMessage::user(rubric.user_message(&prompt, &response)),
    ];
    let rendered = state
        .model
        .apply_chat_template(&msgs, true, state.chat_template.as_deref())
        .map_err(|e| ApiError::bad("prompt", e.to_string()))?;
    let tokens = state
        .model
        .tokenize(&rendered, Special::PROMPT)
        .map_err(|e| ApiError::bad("prompt", e.to_string()))?;
    count(&state, "evaluate");
    // Always uncapped, whatever the server's defaults.
    let rx = submit(&state, tokens, params, None)?;
    let (raw, st, _) = collect(rx).await?;
    let e = parse_evaluation(&raw, &rubric.dimensions);
    let mut v = acap_cli::judge::evaluation_json(&e);
    v["usage"] = usage(&st);
    v["acap"] = json!({"applied": {"enabled": false}});
    Ok(axum::Json(v).into_response())
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let m = &state.engine.metrics;
    let mut out = String::new();
    out += "# HELP acap_requests_total Requests accepted, by endpoint.\n# TYPE acap_requests_total counter\n";
    for (k, v) in m.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        out += &format!("acap_requests_total{{endpoint=\"{k}\"}} {v}\n");
    }
    let gen_tokens = m.generated_tokens.load(Ordering::Relaxed);
    let gen_us = m.generation_us.load(Ordering::Relaxed);
    let tps = if gen_us == 0 {
        0.0
    } else {
        gen_tokens as f64 / (gen_us as f64 / 1e6)
    };
    out += &format!(
        "# HELP acap_requests_rejected_total Requests refused with 503 (queue full).\n# TYPE acap_requests_rejected_total counter\nacap_requests_rejected_total {}\n\
         # HELP acap_prompt_tokens_total Prompt tokens decoded.\n# TYPE acap_prompt_tokens_total counter\nacap_prompt_tokens_total {}\n\
         # HELP acap_generated_tokens_total Tokens generated.\n# TYPE acap_generated_tokens_total counter\nacap_generated_tokens_total {gen_tokens}\n\
         # HELP acap_tokens_per_second Generated tokens per second of request generation time.\n# TYPE acap_tokens_per_second gauge\nacap_tokens_per_second {tps:.3}\n\
         # HELP acap_queue_depth Requests waiting for a slot.\n# TYPE acap_queue_depth gauge\nacap_queue_depth {}\n\
         # HELP acap_active_requests Requests running.\n# TYPE acap_active_requests gauge\nacap_active_requests {}\n",
        m.rejected.load(Ordering::Relaxed),
        m.prompt_tokens.load(Ordering::Relaxed),
        m.queued.load(Ordering::Relaxed),
        m.active.load(Ordering::Relaxed),
    );
    out += "# HELP acap_rows_capped_total Rows pulled back by the cap, per block.\n# TYPE acap_rows_capped_total counter\n";
    let rows = m.capped_rows.lock().unwrap_or_else(|e| e.into_inner());
    for (l, (_, capped)) in rows.iter() {
        out += &format!("acap_rows_capped_total{{layer=\"{l}\"}} {capped}\n");
    }
    out += "# HELP acap_rows_seen_total Rows the cap looked at, per block.\n# TYPE acap_rows_seen_total counter\n";
    for (l, (seen, _)) in rows.iter() {
        out += &format!("acap_rows_seen_total{{layer=\"{l}\"}} {seen}\n");
    }
    ([("content-type", "text/plain; version=0.0.4")], out).into_response()
}
