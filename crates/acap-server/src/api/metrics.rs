//! `/metrics` in Prometheus' text format.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::{AppState, authorize};

/// The metrics page (behind the API key when one is set): llama-server's `llamacpp:` names,
/// then acap's own counters.
pub async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    let m = &state.engine.metrics;
    let mut out = String::new();
    let kv_capacity = (state.n_ctx_slot * state.n_slots).max(1);
    let kv_tokens = m.kv_tokens.load(Ordering::Relaxed);
    let llama = [
        (
            "prompt_tokens_total",
            "counter",
            "Number of prompt tokens processed.",
            m.prompt_tokens.load(Ordering::Relaxed) as f64,
        ),
        (
            "prompt_seconds_total",
            "counter",
            "Prompt process time.",
            m.prompt_us.load(Ordering::Relaxed) as f64 / 1e6,
        ),
        (
            "tokens_predicted_total",
            "counter",
            "Number of generation tokens processed.",
            m.generated_tokens.load(Ordering::Relaxed) as f64,
        ),
        (
            "tokens_predicted_seconds_total",
            "counter",
            "Predict process time.",
            m.generation_us.load(Ordering::Relaxed) as f64 / 1e6,
        ),
        (
            "requests_processing",
            "gauge",
            "Number of requests processing.",
            m.active.load(Ordering::Relaxed) as f64,
        ),
        (
            "requests_deferred",
            "gauge",
            "Number of requests deferred.",
            m.queued.load(Ordering::Relaxed) as f64,
        ),
        (
            "kv_cache_usage_ratio",
            "gauge",
            "KV-cache usage. 1 means 100 percent usage.",
            kv_tokens as f64 / kv_capacity as f64,
        ),
        (
            "kv_cache_tokens",
            "gauge",
            "KV-cache tokens.",
            kv_tokens as f64,
        ),
    ];
    for (name, kind, help, v) in llama {
        out += &format!(
            "# HELP llamacpp:{name} {help}\n# TYPE llamacpp:{name} {kind}\nllamacpp:{name} {v}\n"
        );
    }
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
