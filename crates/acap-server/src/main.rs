//! `acap-server`: an OpenAI-compatible HTTP server in the place of a patched `llama-server`,
//! with capping chosen per request and continuous batching over `-np` slots.

#![forbid(unsafe_code)]

mod api;
mod engine;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use acap::{BatchEngine, GenerateParams, Model, ModelParams};
use acap::{ChatTemplate, TemplateChoice};
use acap_frontend::{
    CapArgs, ContextArgs, ControlVectorArgs, HSuppressArgs, LoadArgs, Names, SamplingArgs,
    cap_error,
};
use clap::Parser;

/// llama-server's one-dash long options and their two-dash names.
const SINGLE_DASH: &[(&str, &str)] = &[
    ("-np", "--parallel"),
    ("-ngl", "--n-gpu-layers"),
    ("-ub", "--ubatch-size"),
    ("-tb", "--threads-batch"),
    ("-fa", "--flash-attn"),
    ("-ctk", "--cache-type-k"),
    ("-ctv", "--cache-type-v"),
    ("-cb", "--cont-batching"),
    ("-nocb", "--no-cont-batching"),
    ("-to", "--timeout"),
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
    /// A Jinja chat template file.
    #[arg(long, conflicts_with = "chat_template")]
    chat_template_file: Option<PathBuf>,
    /// Render the model's template (or --chat-template's text) as Jinja.
    #[arg(long, overrides_with = "no_jinja")]
    jinja: bool,
    /// llama.cpp's built-in template renderer when it recognises the template (default).
    #[arg(long)]
    no_jinja: bool,
    /// The model's name in responses (default: the model's own name or file name).
    #[arg(short = 'a', long = "alias")]
    alias: Option<String>,
    /// Required API keys (Authorization: Bearer KEY), comma-separated.
    #[arg(long)]
    api_key: Option<String>,
    /// A file of API keys, one per line.
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Continuous batching: always on in acap-server (accepted for llama-server's scripts).
    #[arg(long = "cont-batching")]
    cont_batching: bool,
    /// Refused: acap-server always batches continuously.
    #[arg(long = "no-cont-batching")]
    no_cont_batching: bool,
    /// Accepted: `/metrics` is always served.
    #[arg(long)]
    metrics: bool,
    /// Serve `/slots` (the default).
    #[arg(long, overrides_with = "no_slots")]
    slots: bool,
    /// Do not serve `/slots`.
    #[arg(long)]
    no_slots: bool,
    /// Seconds a connection may take to send a request's headers, and may stay idle between
    /// requests (at most 30 s is used for both).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Threads serving HTTP (default: 2).
    #[arg(long, default_value_t = 2)]
    threads_http: usize,
    /// Log only errors.
    #[arg(long)]
    log_disable: bool,
    /// Log everything (debug).
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Do not serve the chat page at `/`.
    #[arg(long)]
    no_webui: bool,
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
    load: LoadArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    control: ControlVectorArgs,
    #[command(flatten)]
    cap: CapArgs,
    #[command(flatten)]
    h_suppress: HSuppressArgs,
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

/// The API keys of `--api-key` (comma-separated) and `--api-key-file` (one per line).
fn api_keys(a: &Args) -> Result<Vec<String>, String> {
    let mut keys: Vec<String> = a
        .api_key
        .iter()
        .flat_map(|k| k.split(','))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(path) = &a.api_key_file {
        let text = acap_frontend::read_text("--api-key-file", path, 1 << 20)?;
        let before = keys.len();
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
        );
        if keys.len() == before {
            return Err(format!(
                "--api-key-file {}: no keys in the file",
                path.display()
            ));
        }
    }
    Ok(keys)
}

/// Start-up values that llama.cpp would abort on, or that would fail every request, refused
/// before the model loads.
fn check_startup(a: &Args) -> Result<(), String> {
    if a.no_cont_batching {
        return Err("--no-cont-batching: acap-server always batches continuously".into());
    }
    if a.parallel == 0 {
        return Err("--parallel 0: at least one slot is needed".into());
    }
    let (np, c) = (a.parallel as usize, a.context.ctx_size as usize);
    if c != 0 && c / np < 8 {
        return Err(format!(
            "--ctx-size {c} / --parallel {np} leaves {} tokens per slot; give each slot at least 8",
            c / np
        ));
    }
    // Each engine step decodes one token of every running request in one batch.
    if a.context.batch_size < np as u32 || a.context.ubatch_size < np as u32 {
        return Err(format!(
            "--batch-size {} / --ubatch-size {} must be at least --parallel {np}: each step \
             decodes a token of every slot together",
            a.context.batch_size, a.context.ubatch_size
        ));
    }
    if a.threads_http == 0 {
        return Err("--threads-http 0: at least one thread is needed".into());
    }
    if a.timeout == 0 {
        return Err("--timeout 0: give the seconds a connection may stay idle".into());
    }
    Ok(())
}

/// What the start-up flags say, checked before the server listens.
struct Prepared {
    cap: Option<acap::CapConfig>,
    cv: Option<acap::ControlVector>,
    h_suppress: Option<Arc<acap::HSuppress>>,
    api_keys: Vec<String>,
    template_file: Option<(String, String)>,
    sampling: acap::SamplingParams,
}

fn prepare(a: &Args) -> Result<Prepared, String> {
    check_startup(a)?;
    Ok(Prepared {
        cap: a.cap.config()?,
        cv: a.control.control_vector()?,
        h_suppress: a.h_suppress.load()?,
        api_keys: api_keys(a)?,
        template_file: match &a.chat_template_file {
            Some(p) => Some((
                format!("--chat-template-file {}", p.display()),
                acap_frontend::read_text("--chat-template-file", p, acap_frontend::TEXT_LIMIT)?,
            )),
            None => None,
        },
        sampling: a.sampling.params()?,
    })
}

/// Loads the model and starts the engine: the server's state, and the engine's thread.
fn load(
    a: &Args,
    p: Prepared,
) -> Result<(Arc<api::AppState>, std::thread::JoinHandle<()>), String> {
    let Prepared {
        cap,
        cv,
        h_suppress,
        api_keys,
        template_file,
        sampling,
    } = p;
    let model = Model::load(
        &a.model,
        a.load
            .model_params(ModelParams::default().with_n_gpu_layers(a.n_gpu_layers))?,
    )
    .map_err(|e| e.to_string())?;
    let choice = TemplateChoice {
        name: a.chat_template.clone(),
        file: template_file,
        jinja: a.jinja && !a.no_jinja,
    };
    let template = ChatTemplate::resolve(&model, &choice).map_err(|e| {
        if a.chat_template.is_some() {
            format!("--chat-template: {e}")
        } else {
            e.to_string()
        }
    })?;
    if let Some(w) = template.warning() {
        // As llama-server: chat requests are rendered as chatml.
        eprintln!("warning: {}: {w}", a.model.display());
    }
    // Bad start-up sampling values would fail every request: refuse them now.
    acap::Sampler::new(&model, &sampling, 16)
        .map_err(|e| format!("sampling flags (--temp, --top-p, ...): {e}"))?;
    if let Some(cfg) = &cap {
        // Validated against the model now: the server never runs uncapped by accident.
        cfg.plan(&model).map_err(|e| cap_error(&e, Names::FLAGS))?;
    }
    let mut params = a.context.session_params(model.info().n_ctx_train)?;
    params.h_suppress.clone_from(&h_suppress);
    let mut engine = BatchEngine::new(&model, a.parallel, params).map_err(|e| match e {
        acap::SessionError::HSuppress(e) => HSuppressArgs::fit_error(&e),
        e => e.to_string(),
    })?;
    if let Some(cv) = &cv {
        engine
            .set_control_vector(Some(cv))
            .map_err(|e| e.to_string())?;
    }
    let n_ctx_slot = engine.n_ctx_per_slot();
    let deterministic = engine.is_deterministic();
    let (handle, engine_thread) = engine::spawn(engine, a.queue);
    let defaults = GenerateParams {
        max_tokens: usize::try_from(a.n_predict).ok(),
        stop: Vec::new(),
        sampling,
    };
    let model_name = a
        .alias
        .clone()
        .or_else(|| model.info().name.clone())
        .unwrap_or_else(|| {
            a.model
                .file_stem()
                .map_or("model".into(), |s| s.to_string_lossy().into_owned())
        });
    let state = Arc::new(api::AppState {
        model,
        model_name,
        template,
        model_path: a.model.display().to_string(),
        n_slots: a.parallel as usize,
        slots_endpoint: !a.no_slots || a.slots,
        webui: !a.no_webui,
        api_keys,
        defaults,
        capping: cap,
        h_suppress,
        n_ctx_slot,
        deterministic,
        engine: handle,
        next_id: AtomicU64::new(1),
    });
    Ok((state, engine_thread))
}

fn run(a: Args) -> Result<(), String> {
    let prepared = prepare(&a)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads_http)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // Listen first, answer 503 "Loading model" (as llama-server) while the model loads.
    let listener = rt
        .block_on(tokio::net::TcpListener::bind((a.host.as_str(), a.port)))
        .map_err(|e| format!("cannot listen on {}:{}: {e}", a.host, a.port))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("acap-server: listening on http://{addr} (loading the model)");
    let app = Arc::new(std::sync::OnceLock::new());
    let timeout = Duration::from_secs(a.shutdown_timeout);
    // Headers (and the next request on a kept-alive connection) within --timeout, at most
    // 30 s: a client that sends half a request does not hold a connection.
    let header_timeout = Duration::from_secs(a.timeout.min(30));
    let serving = rt.spawn(serve::serve(
        listener,
        app.clone(),
        header_timeout,
        async move {
            shutdown_signal().await;
            eprintln!("acap-server: shutting down (in-flight requests get {timeout:?})");
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                eprintln!("acap-server: shutdown time limit reached");
                std::process::exit(0);
            });
        },
    ));
    let (state, engine_thread) = load(&a, prepared)?;
    let n_ctx_slot = state.n_ctx_slot;
    let _ = app.set(api::router(state));
    eprintln!(
        "acap-server: ready on http://{addr} ({} slots, {n_ctx_slot} tokens each)",
        a.parallel
    );
    let _ = rt.block_on(serving);
    // The router (and its engine handles) goes: the engine thread finishes and ends.
    drop(app);
    drop(rt);
    let _ = engine_thread.join();
    eprintln!("acap-server: stopped");
    Ok(())
}

fn main() -> ExitCode {
    let args: Args = acap_frontend::parse_os_args(acap_frontend::rewrite_one_dash(
        acap_frontend::os_args(),
        SINGLE_DASH,
    ));
    let level = if args.log_disable {
        "error"
    } else if args.verbose {
        "debug"
    } else {
        "warn"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
