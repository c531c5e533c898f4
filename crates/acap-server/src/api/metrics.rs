//! `/metrics` in Prometheus' text format: llama-server's `llamacpp:` names, the gauges routers
//! and fleet managers scrape (under vLLM's names, the defaults of the Gateway API Inference
//! Extension's endpoint picker and of llm-d), then acap's own counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::{AppState, authorize};
use crate::engine::Metrics;

/// The metrics page (behind the API key when one is set).
pub async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    let page = render(&Snapshot::read(
        &state.engine.metrics,
        state.n_ctx_slot * state.n_slots,
    ));
    ([("content-type", "text/plain; version=0.0.4")], page).into_response()
}

/// The values one page shows, read once so that the page is consistent with itself.
#[derive(Debug, Default, Clone)]
struct Snapshot {
    prompt_tokens: u64,
    prompt_us: u64,
    generated_tokens: u64,
    generation_us: u64,
    queued: usize,
    running: usize,
    rejected: u64,
    /// KV cells of all slots together.
    kv_capacity: usize,
    /// Tokens in all slots' caches, kept prefixes of idle slots included.
    kv_tokens: usize,
    /// Tokens in the caches of slots running a request.
    kv_tokens_running: usize,
    requests: BTreeMap<&'static str, u64>,
    /// Per block: rows seen, rows capped.
    rows: BTreeMap<u32, (u64, u64)>,
}

impl Snapshot {
    fn read(m: &Metrics, kv_capacity: usize) -> Self {
        Self {
            prompt_tokens: m.prompt_tokens.load(Ordering::Relaxed),
            prompt_us: m.prompt_us.load(Ordering::Relaxed),
            generated_tokens: m.generated_tokens.load(Ordering::Relaxed),
            generation_us: m.generation_us.load(Ordering::Relaxed),
            queued: m.queued.load(Ordering::Relaxed),
            running: m.active.load(Ordering::Relaxed),
            rejected: m.rejected.load(Ordering::Relaxed),
            kv_capacity,
            kv_tokens: m.kv_tokens.load(Ordering::Relaxed),
            kv_tokens_running: m.kv_tokens_running.load(Ordering::Relaxed),
            requests: m.requests.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            rows: m
                .capped_rows
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// Appends one metric family: its help and type lines, then one sample per label set
/// (`""`: no labels).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

fn one(v: f64) -> [(String, f64); 1] {
    [(String::new(), v)]
}

fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let capacity = s.kv_capacity.max(1) as f64;
    let secs = |us: u64| us as f64 / 1e6;
    // llama-server's names, for dashboards built on it.
    for (name, kind, help, v) in [
        (
            "prompt_tokens_total",
            "counter",
            "Number of prompt tokens processed.",
            s.prompt_tokens as f64,
        ),
        (
            "prompt_seconds_total",
            "counter",
            "Prompt process time.",
            secs(s.prompt_us),
        ),
        (
            "tokens_predicted_total",
            "counter",
            "Number of generation tokens processed.",
            s.generated_tokens as f64,
        ),
        (
            "tokens_predicted_seconds_total",
            "counter",
            "Predict process time.",
            secs(s.generation_us),
        ),
        (
            "requests_processing",
            "gauge",
            "Number of requests processing.",
            s.running as f64,
        ),
        (
            "requests_deferred",
            "gauge",
            "Number of requests deferred.",
            s.queued as f64,
        ),
        (
            "kv_cache_usage_ratio",
            "gauge",
            "KV-cache usage. 1 means 100 percent usage.",
            s.kv_tokens as f64 / capacity,
        ),
        (
            "kv_cache_tokens",
            "gauge",
            "KV-cache tokens.",
            s.kv_tokens as f64,
        ),
    ] {
        family(&mut out, &format!("llamacpp:{name}"), kind, help, &one(v));
    }
    // What the Inference Extension's model-server protocol asks of a replica, under the
    // names its endpoint picker reads by default: queued and running requests, and the share
    // of the KV cache that running requests hold (an idle slot's kept prefix is free to take).
    let in_use = s.kv_tokens_running as f64 / capacity;
    for (name, help, v) in [
        (
            "num_requests_waiting",
            "Requests waiting for a slot.",
            s.queued as f64,
        ),
        (
            "num_requests_running",
            "Requests running in a slot.",
            s.running as f64,
        ),
        (
            "kv_cache_usage_perc",
            "KV-cache usage of running requests. 1 means 100 percent usage.",
            in_use,
        ),
        (
            "gpu_cache_usage_perc",
            "KV-cache usage of running requests (the name older endpoint pickers read).",
            in_use,
        ),
    ] {
        family(&mut out, &format!("vllm:{name}"), "gauge", help, &one(v));
    }
    // llama.cpp's cache holds one token per cell: blocks of one.
    family(
        &mut out,
        "vllm:cache_config_info",
        "gauge",
        "KV-cache configuration.",
        &[(
            format!("{{block_size=\"1\",num_gpu_blocks=\"{}\"}}", s.kv_capacity),
            1.0,
        )],
    );
    let requests: Vec<(String, f64)> = s
        .requests
        .iter()
        .map(|(k, v)| (format!("{{endpoint=\"{k}\"}}"), *v as f64))
        .collect();
    family(
        &mut out,
        "acap_requests_total",
        "counter",
        "Requests accepted, by endpoint.",
        &requests,
    );
    let tps = if s.generation_us == 0 {
        0.0
    } else {
        s.generated_tokens as f64 / secs(s.generation_us)
    };
    for (name, kind, help, v) in [
        (
            "acap_requests_rejected_total",
            "counter",
            "Requests refused with 503 (queue full).",
            s.rejected as f64,
        ),
        (
            "acap_prompt_tokens_total",
            "counter",
            "Prompt tokens decoded.",
            s.prompt_tokens as f64,
        ),
        (
            "acap_generated_tokens_total",
            "counter",
            "Tokens generated.",
            s.generated_tokens as f64,
        ),
        (
            "acap_tokens_per_second",
            "gauge",
            "Generated tokens per second of request generation time.",
            (tps * 1000.0).round() / 1000.0,
        ),
        (
            "acap_queue_depth",
            "gauge",
            "Requests waiting for a slot.",
            s.queued as f64,
        ),
        (
            "acap_active_requests",
            "gauge",
            "Requests running.",
            s.running as f64,
        ),
    ] {
        family(&mut out, name, kind, help, &one(v));
    }
    let per_layer = |pick: fn(&(u64, u64)) -> u64| -> Vec<(String, f64)> {
        s.rows
            .iter()
            .map(|(l, r)| (format!("{{layer=\"{l}\"}}"), pick(r) as f64))
            .collect()
    };
    family(
        &mut out,
        "acap_rows_capped_total",
        "counter",
        "Rows pulled back by the cap, per block.",
        &per_layer(|r| r.1),
    );
    family(
        &mut out,
        "acap_rows_seen_total",
        "counter",
        "Rows the cap looked at, per block.",
        &per_layer(|r| r.0),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The samples of a page: name with labels, and value.
    fn samples(page: &str) -> BTreeMap<String, f64> {
        page.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').expect("a sample is `name value`");
                (k.to_owned(), v.parse().expect("a number"))
            })
            .collect()
    }

    fn busy() -> Snapshot {
        Snapshot {
            queued: 3,
            running: 2,
            kv_capacity: 1024,
            kv_tokens: 700,
            kv_tokens_running: 256,
            generated_tokens: 50,
            generation_us: 2_000_000,
            requests: BTreeMap::from([("chat", 9), ("completion", 1)]),
            rows: BTreeMap::from([(22, (10, 4))]),
            ..Snapshot::default()
        }
    }

    #[test]
    fn router_gauges_carry_the_engine_state_under_vllm_names() {
        let page = render(&busy());
        let s = samples(&page);
        assert_eq!(s["vllm:num_requests_waiting"], 3.0);
        assert_eq!(s["vllm:num_requests_running"], 2.0);
        // Running requests' share only: the 444 tokens idle slots keep are free to take.
        assert_eq!(s["vllm:kv_cache_usage_perc"], 0.25);
        assert_eq!(s["vllm:gpu_cache_usage_perc"], 0.25);
        assert_eq!(
            s["vllm:cache_config_info{block_size=\"1\",num_gpu_blocks=\"1024\"}"],
            1.0
        );
        // llama-server's names keep llama-server's meaning.
        assert_eq!(s["llamacpp:requests_processing"], 2.0);
        assert_eq!(s["llamacpp:requests_deferred"], 3.0);
        assert!((s["llamacpp:kv_cache_usage_ratio"] - 700.0 / 1024.0).abs() < 1e-12);
        assert_eq!(s["acap_tokens_per_second"], 25.0);
        assert_eq!(s["acap_requests_total{endpoint=\"chat\"}"], 9.0);
        assert_eq!(s["acap_rows_capped_total{layer=\"22\"}"], 4.0);
        assert_eq!(s["acap_rows_seen_total{layer=\"22\"}"], 10.0);
    }

    #[test]
    fn every_family_is_declared_once_before_its_samples() {
        let page = render(&busy());
        let mut declared: Vec<String> = Vec::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                assert!(matches!(kind, "gauge" | "counter"), "{line}");
                assert!(!declared.contains(&name.to_owned()), "{name} twice");
                declared.push(name.to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                assert_eq!(declared.last().map(String::as_str), Some(name), "{line}");
            }
        }
        assert!(declared.len() >= 20, "{declared:?}");
    }

    #[test]
    fn an_idle_server_with_no_capacity_reads_zero_not_nan() {
        let s = samples(&render(&Snapshot::default()));
        assert_eq!(s["vllm:kv_cache_usage_perc"], 0.0);
        assert_eq!(s["llamacpp:kv_cache_usage_ratio"], 0.0);
        assert!(s.values().all(|v| v.is_finite()));
    }
}
