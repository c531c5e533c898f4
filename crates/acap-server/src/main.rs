//! `acap-server`: an OpenAI-compatible HTTP server in the place of a patched `llama-server`,
//! with capping chosen per request and continuous batching over `-np` slots.

mod api;
mod engine;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use acap::{
    AxisSet, BatchEngine, CapConfig, ControlVector, GenerateParams, LayerRange, Model, ModelParams,
    SamplingParams, SessionParams,
};
use clap::Parser;

/// llama-server's one-dash long options and their two-dash names.
const SINGLE_DASH: &[(&str, &str)] = &[
    ("-np", "--parallel"),
    ("-ngl", "--n-gpu-layers"),
    ("-ub", "--ubatch-size"),
];

#[derive(Parser, Debug)]
#[command(
    name = "acap-server",
    version,
    about = "OpenAI-compatible server with per-request activation capping (llama-server flags)"
)]
struct Args {
    /// Model (GGUF).
    #[arg(short = 'm', long = "model")]
    model: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port, printed on start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Context size shared by all slots.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    ctx_size: u32,
    /// Parallel slots (-np).
    #[arg(long = "parallel", default_value_t = 1)]
    parallel: u32,
    /// Threads (0: all cores).
    #[arg(short = 't', long, default_value_t = 0)]
    threads: u32,
    /// Layers to offload to the GPU (-ngl).
    #[arg(
        long = "n-gpu-layers",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    n_gpu_layers: i32,
    /// Logical batch size.
    #[arg(short = 'b', long = "batch-size", default_value_t = 2048)]
    batch_size: u32,
    /// Physical batch size (-ub); the engine uses one physical batch per step.
    #[arg(long = "ubatch-size", default_value_t = 512)]
    ubatch_size: u32,
    /// Chat template name or text.
    #[arg(long)]
    chat_template: Option<String>,
    /// Required API key (Authorization: Bearer KEY).
    #[arg(long)]
    api_key: Option<String>,
    /// Requests that may wait for a slot; more get 503.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Default tokens to generate (-1: until end of generation).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    n_predict: i64,
    /// Default temperature.
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    /// Default top-k.
    #[arg(long, default_value_t = 40)]
    top_k: i32,
    /// Default top-p.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Default min-p.
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Default repeat penalty.
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Default frequency penalty.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    frequency_penalty: f32,
    /// Default presence penalty.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    presence_penalty: f32,
    /// Default seed.
    #[arg(short = 's', long)]
    seed: Option<u32>,
    /// Control vector file (scale 1); repeatable.
    #[arg(long = "control-vector")]
    control_vector: Vec<PathBuf>,
    /// Control vector with a scale: FILE SCALE; repeatable.
    #[arg(long = "control-vector-scaled", num_args = 2, value_names = ["FILE", "SCALE"], allow_negative_numbers = true)]
    control_vector_scaled: Vec<String>,
    /// Blocks the control vectors apply to.
    #[arg(long = "control-vector-layer-range", num_args = 2, value_names = ["START", "END"])]
    control_vector_layer_range: Option<Vec<i64>>,
    /// Axis file (repeatable: summed); the default capping of every request.
    #[arg(long = "acap")]
    acap: Vec<PathBuf>,
    /// As llama-cli's --acap-threshold (negated for layers without a per-layer key).
    #[arg(long = "acap-threshold", allow_negative_numbers = true)]
    acap_threshold: Option<f32>,
    /// Capped blocks A B (inclusive).
    #[arg(long = "acap-layer-range", num_args = 2, value_names = ["START", "END"], allow_negative_numbers = true)]
    acap_layer_range: Option<Vec<i64>>,
    /// Cap strength 0..1.
    #[arg(long = "acap-alpha", default_value_t = 1.0)]
    acap_alpha: f32,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 30)]
    shutdown_timeout: u64,
}

fn normalize(args: impl Iterator<Item = String>) -> Vec<String> {
    args.map(|a| {
        SINGLE_DASH
            .iter()
            .find(|(s, _)| *s == a)
            .map_or(a, |(_, l)| (*l).to_owned())
    })
    .collect()
}

fn last_pair(v: &[i64]) -> (i64, i64) {
    (v[v.len() - 2], v[v.len() - 1])
}

/// Everything checked before the model loads: a bad flag never costs a model load.
fn capping_config(a: &Args) -> Result<Option<CapConfig>, String> {
    if a.acap.is_empty() {
        if a.acap_threshold.is_some() || a.acap_layer_range.is_some() {
            return Err("--acap-threshold / --acap-layer-range need --acap FILE".into());
        }
        return Ok(None);
    }
    let axes = AxisSet::open(&a.acap).map_err(|e| e.to_string())?;
    acap::cap::check_alpha(a.acap_alpha).map_err(|e| e.to_string())?;
    axes.thresholds(a.acap_threshold)
        .map_err(|e| e.to_string())?;
    let mut cfg = CapConfig::new(axes)
        .with_threshold(a.acap_threshold)
        .with_alpha(a.acap_alpha);
    if let Some(r) = &a.acap_layer_range {
        let (s, e) = last_pair(r);
        cfg = cfg.with_layer_range(LayerRange::new(s, e));
    }
    Ok(Some(cfg))
}

fn control_vector(a: &Args) -> Result<Option<ControlVector>, String> {
    let mut files: Vec<(PathBuf, f32)> =
        a.control_vector.iter().map(|p| (p.clone(), 1.0)).collect();
    for pair in a.control_vector_scaled.chunks(2) {
        let scale: f32 = pair[1]
            .parse()
            .map_err(|_| format!("--control-vector-scaled {} {}: bad scale", pair[0], pair[1]))?;
        files.push((PathBuf::from(&pair[0]), scale));
    }
    if files.is_empty() {
        return Ok(None);
    }
    let mut cv = ControlVector::load(&files).map_err(|e| e.to_string())?;
    if let Some(r) = &a.control_vector_layer_range {
        let (s, e) = last_pair(r);
        cv = cv.with_layer_range(LayerRange::new(s, e));
    }
    Ok(Some(cv))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn run(a: Args) -> Result<(), String> {
    let cap = capping_config(&a)?;
    let cv = control_vector(&a)?;
    let model = Model::load(
        &a.model,
        ModelParams::default().with_n_gpu_layers(a.n_gpu_layers),
    )
    .map_err(|e| e.to_string())?;
    if let Some(cfg) = &cap {
        // Validated against the model now: the server never runs uncapped by accident.
        cfg.plan(&model).map_err(|e| e.to_string())?;
    }
    let params = SessionParams {
        n_ctx: a.ctx_size,
        n_batch: a.batch_size.max(a.ubatch_size),
        n_threads: a.threads,
        n_threads_batch: a.threads,
        ..SessionParams::default()
    };
    let mut engine = BatchEngine::new(&model, a.parallel, params).map_err(|e| e.to_string())?;
    if let Some(cv) = &cv {
        engine
            .set_control_vector(Some(cv))
            .map_err(|e| e.to_string())?;
    }
    let n_ctx_slot = engine.n_ctx_per_slot();
    let (handle, engine_thread) = engine::spawn(engine, a.queue);
    let defaults = GenerateParams {
        max_tokens: usize::try_from(a.n_predict).ok(),
        stop: Vec::new(),
        sampling: SamplingParams {
            temperature: a.temp,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            frequency_penalty: a.frequency_penalty,
            presence_penalty: a.presence_penalty,
            seed: a.seed,
            ..SamplingParams::default()
        },
    };
    let model_name = model.info().name.clone().unwrap_or_else(|| {
        a.model
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().into_owned())
    });
    let state = Arc::new(api::AppState {
        model,
        model_name,
        chat_template: a.chat_template.clone(),
        api_key: a.api_key.clone(),
        defaults,
        capping: cap,
        n_ctx_slot,
        engine: handle,
        next_id: AtomicU64::new(1),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(a.shutdown_timeout);
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .map_err(|e| format!("cannot listen on {}:{}: {e}", a.host, a.port))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!(
            "acap-server: listening on http://{addr} ({} slots, {n_ctx_slot} tokens each)",
            a.parallel
        );
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                eprintln!("acap-server: shutting down (in-flight requests get {timeout:?})");
                tokio::spawn(async move {
                    tokio::time::sleep(timeout).await;
                    eprintln!("acap-server: shutdown time limit reached");
                    std::process::exit(0);
                });
            })
            .await
            .map_err(|e| e.to_string())
    })?;
    // The router (and its engine handles) is gone: the engine thread finishes and ends.
    let _ = engine_thread.join();
    eprintln!("acap-server: stopped");
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match Args::try_parse_from(normalize(std::env::args())) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
