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
    h_suppress: bool,
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
            h_suppress,
            tx,
        })
        .map_err(|m| ApiError::status(StatusCode::SERVICE_UNAVAILABLE, m))?;
    Ok(rx)
}

/// A finished generation.
pub struct Finished {
    /// The whole text (empty in a stream's last event: the pieces were sent before).
    pub text: String,
    /// Its statistics.
    pub stats: GenerationStats,
    /// The capping telemetry of its rows.
    pub telemetry: Vec<(u32, LayerStats)>,
    /// The slot it ran in.
    pub slot: usize,
}

/// Collects a whole generation.
pub async fn collect(mut rx: mpsc::UnboundedReceiver<Msg>) -> Result<Finished, ApiError> {
    let mut text = String::new();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Text(t) => text.push_str(&t),
            Msg::Done(stats, telemetry, slot) => {
                return Ok(Finished {
                    text,
                    stats,
                    telemetry,
                    slot,
                });
            }
            Msg::Failed(e) => return Err(ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, e)),
        }
    }
    Err(ApiError::status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the engine stopped",
    ))
}

/// Server-sent events for a generation: `chunk(piece, finished)` builds each event's JSON
/// (a piece of text, or the end); OpenAI streams end with `[DONE]`, llama-server's native
/// ones (`done_marker` false) with the last event.
fn sse(
    rx: mpsc::UnboundedReceiver<Msg>,
    first: Option<Value>,
    done_marker: bool,
    chunk: impl Fn(Option<&str>, Option<&Finished>) -> Value + Send + 'static,
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
                Msg::Text(t) => chunk(Some(&t), None),
                Msg::Done(stats, telemetry, slot) => {
                    let end = Finished {
                        text: String::new(),
                        stats,
                        telemetry,
                        slot,
                    };
                    let _ = tx.send(Ok(
                        Event::default().data(chunk(None, Some(&end)).to_string())
                    ));
                    if done_marker {
                        let _ = tx.send(Ok(Event::default().data("[DONE]")));
                    }
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

/// llama-server's `stop_type` and `stopping_word`.
fn stop_type(r: &StopReason) -> (&'static str, &str) {
    match r {
        StopReason::EndOfGeneration => ("eos", ""),
        StopReason::StopString(w) => ("word", w),
        StopReason::MaxTokens | StopReason::ContextFull => ("limit", ""),
        StopReason::Cancelled => ("none", ""),
    }
}

/// llama-server's `timings` object.
pub fn timings(st: &GenerationStats) -> Value {
    let prompt_n = st.prompt_tokens - st.cached_tokens;
    let prompt_ms = st.prompt_time.as_secs_f64() * 1e3;
    let predicted_ms = st.generation_time.as_secs_f64() * 1e3;
    let per = |ms: f64, n: usize| if n == 0 { 0.0 } else { ms / n as f64 };
    json!({
        "prompt_n": prompt_n, "prompt_ms": prompt_ms,
        "prompt_per_token_ms": per(prompt_ms, prompt_n),
        "prompt_per_second": st.prompt_tokens_per_second(),
        "predicted_n": st.generated_tokens, "predicted_ms": predicted_ms,
        "predicted_per_token_ms": per(predicted_ms, st.generated_tokens),
        "predicted_per_second": st.generation_tokens_per_second(),
        "cache_n": st.cached_tokens,
    })
}

/// The generation settings llama-server echoes.
pub fn generation_settings(state: &AppState, p: &GenerateParams) -> Value {
    let s = &p.sampling;
    json!({
        "n_ctx": state.n_ctx_slot,
        "n_predict": p.max_tokens.map_or(-1, |n| n as i64),
        "temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p, "min_p": s.min_p,
        "repeat_penalty": s.repeat_penalty, "repeat_last_n": s.penalty_last_n,
        "presence_penalty": s.presence_penalty, "frequency_penalty": s.frequency_penalty,
        "seed": s.seed.map_or(-1, i64::from), "stop": p.stop, "grammar": s.grammar.clone().unwrap_or_default(),
    })
}

/// Which OpenAI response shape a generation gets.
#[derive(Clone, Copy)]
pub enum Kind {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Text,
    /// llama-server's `/completion`.
    Native,
}

impl Kind {
    fn endpoint(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Text => "completions",
            Self::Native => "completion",
        }
    }

    /// A choice: streamed (`text` is a piece, or `None` in the final chunk) or whole.
    fn choice(self, text: Option<&str>, finish: Option<&str>, whole: bool) -> Value {
        match (self, whole) {
            (Self::Chat, true) => json!({"index": 0, "finish_reason": finish,
                "message": {"role": "assistant", "content": text.unwrap_or("")}}),
            (Self::Chat, false) => json!({"index": 0, "finish_reason": finish,
                "delta": text.map_or(json!({}), |t| json!({"content": t}))}),
            (Self::Text | Self::Native, _) => {
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
    // Only llama-server's native response echoes the settings.
    let settings = matches!(kind, Kind::Native).then(|| generation_settings(state, &params));
    let rx = submit(state, tokens, params, cap.plan, cap.h_suppress)?;
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    let applied = cap.applied;
    if let Kind::Native = kind {
        let model = state.model_name.clone();
        let body = move |content: &str, f: &Finished| {
            let (stop_type, word) = stop_type(&f.stats.stop_reason);
            json!({
                "index": 0, "content": content, "tokens": [], "id_slot": f.slot, "stop": true,
                "model": model, "tokens_predicted": f.stats.generated_tokens,
                "tokens_evaluated": f.stats.prompt_tokens, "tokens_cached": f.stats.cached_tokens,
                "generation_settings": settings, "has_new_line": content.contains('\n'),
                "truncated": false, "stop_type": stop_type, "stopping_word": word,
                "timings": timings(&f.stats),
                "acap": {"applied": applied, "layers": telemetry_json(&f.telemetry)},
            })
        };
        if stream {
            return Ok(sse(rx, None, false, move |piece, done| match done {
                Some(f) => body("", f),
                None => json!({"index": 0, "content": piece.unwrap_or(""), "tokens": [],
                               "stop": false, "id_slot": -1}),
            }));
        }
        let f = collect(rx).await?;
        return Ok(axum::Json(body(&f.text, &f)).into_response());
    }
    let (id, object, chunk_object) = match kind {
        Kind::Chat => (
            format!("chatcmpl-{n}"),
            "chat.completion",
            "chat.completion.chunk",
        ),
        _ => (format!("cmpl-{n}"), "text_completion", "text_completion"),
    };
    let (created, model) = (now(), state.model_name.clone());
    if stream {
        let head = matches!(kind, Kind::Chat).then(|| {
            json!({"id": id, "object": chunk_object, "created": created, "model": model,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                "finish_reason": null}]})
        });
        return Ok(sse(rx, head, true, move |text, done| {
            let finish = done.map(|f| finish_reason(&f.stats.stop_reason));
            let mut v = json!({"id": id, "object": chunk_object, "created": created,
                "model": model, "choices": [kind.choice(text, finish, false)]});
            if let Some(f) = done {
                v["usage"] = usage(&f.stats);
                v["acap"] = json!({"applied": applied, "layers": telemetry_json(&f.telemetry)});
            }
            v
        }));
    }
    let f = collect(rx).await?;
    let finish = finish_reason(&f.stats.stop_reason);
    Ok(axum::Json(json!({
        "id": id, "object": object, "created": created, "model": model,
        "choices": [kind.choice(Some(&f.text), Some(finish), true)],
        "usage": usage(&f.stats),
        "timings": timings(&f.stats),
        "acap": {"applied": applied, "layers": telemetry_json(&f.telemetry)},
    }))
    .into_response())
}
