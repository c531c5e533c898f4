//! `acap-server`: an OpenAI-compatible HTTP server in the place of a patched `llama-server`,
//! with capping chosen per request and continuous batching over `-np` slots.

#![forbid(unsafe_code)]

mod api;
mod engine;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use acap::{BatchEngine, GenerateParams, Model, ModelParams};
use acap_frontend::{CapArgs, ContextArgs, ControlVectorArgs, Names, SamplingArgs, cap_error};
use clap::Parser;

/// llama-server's one-dash long options and their two-dash names.
const SINGLE_DASH: &[(&str, &str)] = &[
    ("-np", "--parallel"),
    ("-ngl", "--n-gpu-layers"),
    ("-ub", "--ubatch-size"),
    ("-tb", "--threads-batch"),
];

#[derive(Parser, Debug)]
#[command(
    name = "acap-server",
    version,
    args_override_self = true,
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
    /// Parallel slots (-np).
    #[arg(long = "parallel", default_value_t = 1)]
    parallel: u32,
    /// Layers to offload to the GPU (-ngl).
    #[arg(
        long = "n-gpu-layers",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    n_gpu_layers: i32,
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
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 30)]
    shutdown_timeout: u64,
    #[command(flatten)]
    context: ContextArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    control: ControlVectorArgs,
    #[command(flatten)]
    cap: CapArgs,
}

fn normalize(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    args.map(|a| {
        SINGLE_DASH
            .iter()
            .find(|(s, _)| std::ffi::OsStr::new(s) == a)
            .map_or(a, |(_, l)| (*l).into())
    })
    .collect()
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
    let cap = a.cap.config()?;
    let cv = a.control.control_vector()?;
    let model = Model::load(
        &a.model,
        ModelParams::default().with_n_gpu_layers(a.n_gpu_layers),
    )
    .map_err(|e| e.to_string())?;
    if a.chat_template.is_none() && model.info().chat_template.is_none() {
        // As llama-server: chat requests are rendered as chatml.
        eprintln!(
            "warning: {}: the model has no chat template; using chatml (pass --chat-template NAME)",
            a.model.display()
        );
    }
    if let Some(cfg) = &cap {
        // Validated against the model now: the server never runs uncapped by accident.
        cfg.plan(&model).map_err(|e| cap_error(&e, Names::FLAGS))?;
    }
    let params = a.context.session_params(model.info().n_ctx_train)?;
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
        sampling: a.sampling.params()?,
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
    let args: Args = acap_frontend::parse_os_args(normalize(acap_frontend::os_args().into_iter()));
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
