//! Generation responses: whole OpenAI-shaped bodies or server-sent event streams.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use acap::{GenerateParams, GenerationStats, LayerStats, StopReason};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::AppState;
use super::capping::Capping;
use super::error::ApiError;
use crate::engine::{Job, Msg};

pub fn telemetry_json(t: &[(u32, LayerStats)]) -> Value {
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

/// The OpenAI `usage` object.
pub fn usage(st: &GenerationStats) -> Value {
    json!({"prompt_tokens": st.prompt_tokens, "completion_tokens": st.generated_tokens,
           "total_tokens": st.prompt_tokens + st.generated_tokens})
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Counts a request for `/metrics`.
pub fn count(state: &AppState, endpoint: &'static str) {
    let mut r = state
        .engine
        .metrics
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    *r.entry(endpoint).or_default() += 1;
}

/// Queues a job; the receiver yields its events.
pub fn submit(
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
pub async fn collect(
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
pub enum Kind {
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
pub async fn respond(
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
