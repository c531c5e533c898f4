//! `acap-cli`: llama-cli's behaviour (conversation and completion modes, streaming, stdin
//! scripts, Ctrl-C) on acap's safe layer, with capping that takes effect.

use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use acap::{
    CancelHandle, CapConfig, ChatMessage, GenerateParams, GenerationStats, Model, ModelParams,
    SamplingParams, Session, SessionError, StopReason,
};

use acap_frontend::{Names, cap_error};

use crate::args::{CliArgs, HELP};
use crate::escape::unescape;

/// Runs `acap-cli` with the given command line (program name first).
pub fn main_with(args: Vec<String>) -> ExitCode {
    let args = match CliArgs::parse_from_args(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Prompt and grammar files are read up to this size: more cannot fit any context, and a
/// device such as `/dev/zero` must not be read without end.
const FILE_LIMIT: u64 = 64 << 20;

fn read_file(flag: &str, path: &Path) -> Result<String, String> {
    use std::io::Read;
    let fail = |e: String| format!("{flag} {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut text = String::new();
    file.take(FILE_LIMIT + 1)
        .read_to_string(&mut text)
        .map_err(|e| fail(e.to_string()))?;
    if text.len() as u64 > FILE_LIMIT {
        return Err(fail(format!(
            "larger than {} MiB; no context holds a prompt that long",
            FILE_LIMIT >> 20
        )));
    }
    Ok(text)
}

/// Everything about capping the user asked for, validated before the model is loaded.
fn cap_config(a: &CliArgs) -> Result<Option<CapConfig>, String> {
    if a.acap_stats && a.cap.acap.is_empty() {
        return Err("--acap-stats needs --acap AXIS_FILE".into());
    }
    a.cap.config()
}

fn init_logging(a: &CliArgs) {
    let level = if a.log_disable {
        log::LevelFilter::Off
    } else if a.verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Error
    };
    let _ = env_logger::Builder::new()
        .filter_level(level)
        .format_timestamp(None)
        .target(env_logger::Target::Stderr)
        .try_init();
}

fn load_model(path: &Path, a: &CliArgs) -> Result<Model, String> {
    let mut params = ModelParams::default().with_n_gpu_layers(a.n_gpu_layers);
    let tty = std::io::stderr().is_terminal() && !a.log_disable;
    if tty {
        params = params.with_progress(|p| {
            let width = 40;
            let done = (p * width as f32) as usize;
            eprint!(
                "\rloading [{}{}] {:3.0}%",
                "#".repeat(done),
                " ".repeat(width - done),
                p * 100.0
            );
            true
        });
    }
    let model = Model::load(path, params).map_err(|e| e.to_string());
    if tty {
        eprintln!();
    }
    model
}

/// The process-wide Ctrl-C state: while a reply streams, Ctrl-C cancels it; otherwise it quits.
struct Interrupt {
    generating: AtomicBool,
    cancel: Mutex<Option<CancelHandle>>,
}

fn install_interrupt(cancel: CancelHandle) -> Arc<Interrupt> {
    let state = Arc::new(Interrupt {
        generating: AtomicBool::new(false),
        cancel: Mutex::new(Some(cancel)),
    });
    let s = state.clone();
    // A second installation (tests calling `main_with` twice) is harmless to skip.
    let _ = ctrlc::set_handler(move || {
        if s.generating.load(Ordering::SeqCst) {
            if let Some(c) = s.cancel.lock().ok().and_then(|c| c.clone()) {
                c.cancel();
            }
        } else {
            eprintln!();
            std::process::exit(130);
        }
    });
    state
}

fn run(a: CliArgs) -> Result<ExitCode, String> {
    if a.help {
        crate::out!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    if a.version {
        crate::outln!("{}", acap::version());
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(&a);
    if a.color {
        eprintln!("warning: --color only affects llama-cli's display; ignored");
    }
    let model_path = a
        .model
        .clone()
        .ok_or("no model given: pass -m MODEL.gguf")?;
    let prompt = match (&a.prompt, &a.file) {
        (Some(_), Some(_)) => return Err("give either -p or -f, not both".into()),
        (Some(p), None) => Some(p.clone()),
        (None, Some(f)) => Some(read_file("-f", f)?),
        (None, None) => None,
    }
    .map(|p| if a.escape { unescape(&p) } else { p });
    let grammar = match (&a.grammar, &a.grammar_file) {
        (Some(_), Some(_)) => {
            return Err("give either --grammar or --grammar-file, not both".into());
        }
        (Some(g), None) => Some(g.clone()),
        (None, Some(f)) => Some(read_file("--grammar-file", f)?),
        (None, None) => None,
    };
    let cap = cap_config(&a)?;
    let cv = a.control.control_vector()?;

    let model = load_model(&model_path, &a)?;
    let conversation = a.conversation
        || (!a.no_conversation
            && (model.info().chat_template.is_some() || a.chat_template.is_some()));
    if a.conversation && model.info().chat_template.is_none() && a.chat_template.is_none() {
        return Err(format!(
            "-cnv: {} has no chat template; pass --chat-template NAME",
            model_path.display()
        ));
    }
    if !conversation && a.system_prompt.is_some() {
        eprintln!(
            "warning: -sys is used in conversation mode only; completion mode (-no-cnv) ignores it"
        );
    }
    let mut sp = a.context.session_params(model.info().n_ctx_train)?;
    sp.capping = cap;
    let mut session = Session::new(&model, sp).map_err(|e| match e {
        SessionError::Cap(e) => cap_error(&e, Names::FLAGS),
        e => e.to_string(),
    })?;
    if let Some(cv) = &cv {
        session
            .set_control_vector(Some(cv))
            .map_err(|e| e.to_string())?;
    }
    if let Some(plan) = session.cap_plan() {
        log::info!("{plan}");
    }

    let sampling = SamplingParams {
        grammar,
        ..a.sampling.params()?
    };
    let params = GenerateParams {
        max_tokens: usize::try_from(a.n_predict).ok(),
        stop: a.reverse_prompt.clone(),
        sampling,
    };
    let interrupt = install_interrupt(session.cancel_handle());

    let mut totals = Totals::default();
    let outcome = if conversation {
        converse(&mut session, &a, prompt, &params, &interrupt, &mut totals)
    } else {
        complete(&mut session, &a, prompt, &params, &interrupt, &mut totals)
    };
    totals.print();
    if a.acap_stats {
        print_cap_stats(&session);
    }
    outcome
}

#[derive(Default)]
struct Totals {
    prompt_tokens: usize,
    prompt_secs: f64,
    generated: usize,
    gen_secs: f64,
}

impl Totals {
    fn add(&mut self, s: &GenerationStats) {
        self.prompt_tokens += s.prompt_tokens - s.cached_tokens;
        self.prompt_secs += s.prompt_time.as_secs_f64();
        self.generated += s.generated_tokens;
        self.gen_secs += s.generation_time.as_secs_f64();
    }

    fn print(&self) {
        let rate = |n: usize, t: f64| if t > 0.0 { n as f64 / t } else { 0.0 };
        eprintln!(
            "\nprompt eval: {} tokens, {:.1} tokens/s | generation: {} tokens, {:.1} tokens/s",
            self.prompt_tokens,
            rate(self.prompt_tokens, self.prompt_secs),
            self.generated,
            rate(self.generated, self.gen_secs)
        );
    }
}

fn print_cap_stats(session: &Session) {
    eprintln!("acap stats: layer rows_seen rows_capped capped% mean_excess max_excess");
    let last = session.model().n_layer().saturating_sub(1);
    for (layer, s) in session.cap_stats() {
        // llama.cpp computes the last block only for the rows whose logits are needed.
        let note = if layer == last {
            "  (last block: only output rows, one per decode)"
        } else {
            ""
        };
        eprintln!(
            "acap stats: {layer:>5} {:>9} {:>11} {:>6.1}% {:>11.4} {:>10.4}{note}",
            s.rows_seen,
            s.rows_capped,
            s.capped_fraction() * 100.0,
            s.mean_excess(),
            s.max_excess
        );
    }
}

/// Streams text to stdout.
fn sink(out: &mut impl Write) -> impl FnMut(&str) -> ControlFlow<()> + '_ {
    move |t| {
        let _ = out.write_all(t.as_bytes());
        let _ = out.flush();
        ControlFlow::Continue(())
    }
}

fn complete(
    session: &mut Session,
    a: &CliArgs,
    prompt: Option<String>,
    params: &GenerateParams,
    interrupt: &Interrupt,
    totals: &mut Totals,
) -> Result<ExitCode, String> {
    let prompt = prompt.ok_or("completion mode needs a prompt: pass -p PROMPT or -f FILE")?;
    let mut out = std::io::stdout().lock();
    if !a.no_display_prompt {
        let _ = out.write_all(prompt.as_bytes());
        let _ = out.flush();
    }
    interrupt.generating.store(true, Ordering::SeqCst);
    let stats = session.generate(&prompt, params, sink(&mut out));
    interrupt.generating.store(false, Ordering::SeqCst);
    let stats = stats.map_err(|e| e.to_string())?;
    let _ = writeln!(out);
    totals.add(&stats);
    finish_reason(&stats, session)
}

fn finish_reason(stats: &GenerationStats, session: &Session) -> Result<ExitCode, String> {
    if stats.stop_reason == StopReason::ContextFull {
        return Err(format!(
            "context full ({} tokens): acap does not shift the context; start a new conversation or raise -c",
            session.n_ctx()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads one user turn: a line, continued while it ends with `\`. `None` at end of input.
fn read_turn(input: &mut impl BufRead, interactive: bool) -> Option<String> {
    let mut turn = String::new();
    loop {
        if interactive {
            crate::out!("{}", if turn.is_empty() { "\n> " } else { "" });
            let _ = std::io::stdout().flush();
        }
        let mut line = String::new();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => return (!turn.is_empty()).then_some(turn),
            Ok(_) => {}
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.strip_suffix('\\') {
            Some(head) => {
                turn.push_str(head);
                turn.push('\n');
            }
            None => {
                turn.push_str(line);
                return Some(turn);
            }
        }
    }
}

fn converse(
    session: &mut Session,
    a: &CliArgs,
    first: Option<String>,
    params: &GenerateParams,
    interrupt: &Interrupt,
    totals: &mut Totals,
) -> Result<ExitCode, String> {
    let mut messages = Vec::new();
    if let Some(sys) = &a.system_prompt {
        messages.push(ChatMessage::system(if a.escape {
            unescape(sys)
        } else {
            sys.clone()
        }));
    }
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut input = stdin.lock();
    let mut pending = first;
    loop {
        let turn = match pending.take() {
            Some(p) => p,
            None if a.single_turn && messages.iter().any(|m| m.role == "assistant") => break,
            None => match read_turn(&mut input, interactive) {
                Some(t) => t,
                None => break,
            },
        };
        if turn.trim() == "/exit" {
            break;
        }
        if turn.trim().is_empty() {
            continue;
        }
        messages.push(ChatMessage::user(turn));
        let mut reply = String::new();
        let mut out = std::io::stdout().lock();
        interrupt.generating.store(true, Ordering::SeqCst);
        let stats = session.chat(&messages, a.chat_template.as_deref(), params, |t| {
            reply.push_str(t);
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
            ControlFlow::Continue(())
        });
        interrupt.generating.store(false, Ordering::SeqCst);
        let stats = stats.map_err(|e| e.to_string())?;
        let _ = writeln!(out);
        totals.add(&stats);
        log::debug!(
            "turn: {} prompt tokens ({} reused from the cache), {} generated",
            stats.prompt_tokens,
            stats.cached_tokens,
            stats.generated_tokens
        );
        messages.push(ChatMessage::assistant(reply));
        finish_reason(&stats, session)?;
        if a.single_turn {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
