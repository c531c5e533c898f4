//! `acap-cli`: llama-cli's behaviour (conversation and completion modes, streaming, stdin
//! scripts, Ctrl-C) on acap's safe layer, with capping that takes effect.

use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use acap::{
    CancelHandle, CapConfig, ChatMessage, ChatTemplate, GenerateParams, GenerationStats, Model,
    ModelParams, SamplingParams, Session, SessionError, StopReason, TemplateChoice,
};

use acap_frontend::{Names, cap_error};

use crate::args::{CliArgs, HELP};
use crate::escape::unescape;

/// Runs `acap-cli` with the given command line (program name first).
pub fn main_with(args: Vec<std::ffi::OsString>) -> ExitCode {
    let args = match CliArgs::parse_from_args(args) {
        Ok(a) => a,
        Err(crate::args::ArgsError::Clap(e)) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
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

fn read_file(flag: &str, path: &Path) -> Result<String, String> {
    acap_frontend::read_text(flag, path, acap_frontend::TEXT_LIMIT)
}

/// The adapters of `--lora` (scale 1) and `--lora-scaled FNAME SCALE`, loaded for `model`.
fn lora_adapters(
    model: &Model,
    a: &CliArgs,
) -> Result<Vec<(std::sync::Arc<acap::LoraAdapter>, f32)>, String> {
    let mut out = Vec::new();
    let load = |flag: &str, path: &Path| {
        acap::LoraAdapter::load(model, path)
            .map(std::sync::Arc::new)
            .map_err(|e| format!("{flag} {}: {e}", path.display()))
    };
    for path in &a.lora {
        out.push((load("--lora", path)?, 1.0));
    }
    for (path, scale) in acap_frontend::scaled_files("--lora-scaled", &a.lora_scaled)? {
        out.push((load("--lora-scaled", &path)?, scale));
    }
    Ok(out)
}

/// Everything about capping the user asked for, validated before the model is loaded.
fn cap_config(a: &CliArgs) -> Result<Option<CapConfig>, String> {
    if a.acap_stats && a.cap.acap.is_empty() && a.h_suppress.h_suppress.is_none() {
        return Err("--acap-stats needs --acap AXIS_FILE or --h-suppress FILE".into());
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
    let mut params = a
        .load
        .model_params(ModelParams::default().with_n_gpu_layers(a.n_gpu_layers))?;
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

/// The process-wide Ctrl-C state: while a reply streams, Ctrl-C cancels it; otherwise it quits,
/// printing what `/exit` prints (the totals and `--acap-stats`) as of the last turn.
struct Interrupt {
    generating: AtomicBool,
    cancel: Mutex<Option<CancelHandle>>,
    report: Mutex<String>,
}

impl Interrupt {
    /// Keeps the exit report up to date (after each turn).
    fn set_report(&self, report: String) {
        if let Ok(mut r) = self.report.lock() {
            *r = report;
        }
    }
}

fn install_interrupt(cancel: CancelHandle) -> Arc<Interrupt> {
    let state = Arc::new(Interrupt {
        generating: AtomicBool::new(false),
        cancel: Mutex::new(Some(cancel)),
        report: Mutex::new(String::new()),
    });
    let s = state.clone();
    // A second installation (tests calling `main_with` twice) is harmless to skip.
    let _ = ctrlc::set_handler(move || {
        if s.generating.load(Ordering::SeqCst) {
            if let Some(c) = s.cancel.lock().ok().and_then(|c| c.clone()) {
                c.cancel();
            }
        } else {
            let report = s.report.lock().map(|r| r.clone()).unwrap_or_default();
            eprint!("\n{report}");
            std::process::exit(130);
        }
    });
    state
}

/// What the end of a run prints: the totals and, with `--acap-stats`, the telemetry.
fn exit_report(totals: &Totals, session: &Session, a: &CliArgs) -> String {
    let mut r = totals.report();
    if a.acap_stats {
        if session.capping().is_some() {
            r.push_str(&cap_stats_report(session));
        }
        for st in session.h_suppress_stats() {
            r.push_str(&format!(
                "h-suppress block {:>3}: {} neurons suppressed, {} rows\n",
                st.block, st.neurons, st.rows
            ));
        }
    }
    r
}

fn run(mut a: CliArgs) -> Result<ExitCode, String> {
    if a.help {
        crate::out!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    if a.version {
        crate::outln!("{}", acap::version());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(f) = &a.system_prompt_file {
        a.system_prompt = Some(read_file("--system-prompt-file", f)?);
    }
    init_logging(&a);
    if a.color {
        eprintln!("warning: --color only affects llama-cli's display; ignored");
    }
    if let Some(k) = a.keep {
        eprintln!(
            "warning: --keep {k} has no effect: acap does not shift the context (generation \
             stops when it is full)"
        );
    }
    if a.n_predict < -2 {
        return Err(format!(
            "-n {}: must be -1 (until the end), -2 (until the context is full) or a count >= 0",
            a.n_predict
        ));
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
    let schema = match (&a.json_schema, &a.json_schema_file) {
        (Some(_), Some(_)) => {
            return Err("give either --json-schema or --json-schema-file, not both".into());
        }
        (Some(j), None) => Some(("--json-schema", j.clone())),
        (None, Some(f)) => Some(("--json-schema-file", read_file("--json-schema-file", f)?)),
        (None, None) => None,
    };
    if let (Some((flag, _)), true) = (&schema, a.grammar.is_some() || a.grammar_file.is_some()) {
        return Err(format!("give either a grammar or {flag}, not both"));
    }
    let grammar = match (&a.grammar, &a.grammar_file, schema) {
        (Some(_), Some(_), _) => {
            return Err("give either --grammar or --grammar-file, not both".into());
        }
        (Some(g), None, _) => Some(g.clone()),
        (None, Some(f), _) => Some(read_file("--grammar-file", f)?),
        (None, None, Some((flag, text))) => {
            // A clear message for text that is not JSON; llama.cpp's converter says nothing.
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                return Err(format!("{flag}: not valid JSON: {e}"));
            }
            Some(acap::json_schema_to_grammar(&text).map_err(|e| format!("{flag}: {e}"))?)
        }
        (None, None, None) => None,
    };
    let cap = cap_config(&a)?;
    let cv = a.control.control_vector()?;
    let h_suppress = a.h_suppress.load()?;

    let template_file = a
        .chat_template_file
        .as_ref()
        .map(|f| {
            read_file("--chat-template-file", f)
                .map(|t| (format!("--chat-template-file {}", f.display()), t))
        })
        .transpose()?;
    if a.chat_template.is_some() && template_file.is_some() {
        return Err("give either --chat-template or --chat-template-file, not both".into());
    }

    let model = load_model(&model_path, &a)?;
    // As llama-cli: conversation mode by default when there is a template to render.
    let conversation = a.conversation
        || (!a.no_conversation
            && (model.info().chat_template.is_some()
                || a.chat_template.is_some()
                || template_file.is_some()));
    let template = if conversation {
        let choice = TemplateChoice {
            name: a.chat_template.clone(),
            file: template_file,
            jinja: a.jinja && !a.no_jinja,
        };
        let t = ChatTemplate::resolve(&model, &choice).map_err(|e| match &a.chat_template {
            Some(name) if !choice.jinja => format!("--chat-template {name}: {e}"),
            _ => e.to_string(),
        })?;
        if let Some(w) = t.warning() {
            eprintln!("warning: {}: {w}", model_path.display());
        }
        log::info!("chat template: {}", t.origin());
        Some(t)
    } else {
        None
    };
    if conversation && (a.in_prefix.is_some() || a.in_suffix.is_some()) {
        eprintln!(
            "warning: --in-prefix and --in-suffix apply to interactive completion mode (-i -no-cnv) only"
        );
    }
    if !conversation && a.system_prompt.is_some() {
        eprintln!(
            "warning: -sys is used in conversation mode only; completion mode (-no-cnv) ignores it"
        );
    }
    let mut sp = a.context.session_params(model.info().n_ctx_train)?;
    sp.capping = cap;
    sp.lora = lora_adapters(&model, &a)?;
    sp.h_suppress = h_suppress;
    let mut session = Session::new(&model, sp).map_err(|e| match e {
        SessionError::Cap(e) => cap_error(&e, Names::FLAGS),
        SessionError::HSuppress(e) => acap_frontend::HSuppressArgs::fit_error(&e),
        e => e.to_string(),
    })?;
    if let Some(h) = session.h_suppress() {
        log::info!(
            "H-neuron suppression: {} neurons in blocks {:?} ({})",
            h.suppressed(),
            h.edited_blocks().collect::<Vec<_>>(),
            h.origin()
        );
    }
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
        // -1 and -2 both run until the end of generation or a full context.
        max_tokens: usize::try_from(a.n_predict).ok(),
        stop: a.reverse_prompt.clone(),
        sampling,
    };
    let interrupt = install_interrupt(session.cancel_handle());

    let mut totals = Totals::default();
    interrupt.set_report(exit_report(&totals, &session, &a));
    let outcome = if let Some(template) = &template {
        converse(
            &mut session,
            &a,
            template,
            prompt,
            &params,
            &interrupt,
            &mut totals,
        )
    } else if a.interactive || a.interactive_first {
        interact(&mut session, &a, prompt, &params, &interrupt, &mut totals)
    } else {
        complete(&mut session, &a, prompt, &params, &interrupt, &mut totals)
    };
    eprint!("{}", exit_report(&totals, &session, &a));
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

    fn report(&self) -> String {
        let rate = |n: usize, t: f64| if t > 0.0 { n as f64 / t } else { 0.0 };
        format!(
            "\nprompt eval: {} tokens, {:.1} tokens/s | generation: {} tokens, {:.1} tokens/s\n",
            self.prompt_tokens,
            rate(self.prompt_tokens, self.prompt_secs),
            self.generated,
            rate(self.generated, self.gen_secs)
        )
    }
}

fn cap_stats_report(session: &Session) -> String {
    use std::fmt::Write as _;
    let mut r =
        String::from("acap stats: layer rows_seen rows_capped capped% mean_excess max_excess\n");
    let last = session.model().n_layer().saturating_sub(1);
    for (layer, s) in session.cap_stats() {
        // llama.cpp computes the last block only for the rows whose logits are needed.
        let note = if layer == last {
            "  (last block: only output rows, one per decode)"
        } else {
            ""
        };
        let _ = writeln!(
            r,
            "acap stats: {layer:>5} {:>9} {:>11} {:>6.1}% {:>11.4} {:>10.4}{note}",
            s.rows_seen,
            s.rows_capped,
            s.capped_fraction() * 100.0,
            s.mean_excess(),
            s.max_excess
        );
    }
    r
}

/// Writes `text` and flushes, so it shows at once (a closed pipe is not an error here: the
/// generation ends at the next check instead).
fn show(out: &mut impl Write, text: &str) {
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Streams generated text to `out`.
fn sink(out: &mut impl Write) -> impl FnMut(&str) -> ControlFlow<()> + '_ {
    move |t| {
        show(out, t);
        ControlFlow::Continue(())
    }
}

/// Streams generated text to `out`, keeping a copy in `kept`.
fn show_and_keep<'a>(
    out: &'a mut impl Write,
    kept: &'a mut String,
) -> impl FnMut(&str) -> ControlFlow<()> + 'a {
    move |t| {
        kept.push_str(t);
        show(out, t);
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
    if a.verbose_prompt {
        print_prompt_tokens(session.model(), &prompt);
    }
    let mut out = std::io::stdout().lock();
    if !a.no_display_prompt {
        show(&mut out, &prompt);
    }
    interrupt.generating.store(true, Ordering::SeqCst);
    let stats = session.generate(&prompt, params, sink(&mut out));
    interrupt.generating.store(false, Ordering::SeqCst);
    let stats = stats.map_err(|e| e.to_string())?;
    let _ = writeln!(out);
    totals.add(&stats);
    finish_reason(&stats, session, a)
}

/// llama-cli's interactive completion mode (`-i`, `--interactive-first`): the text grows by
/// each reply and each input (with `--in-prefix` / `--in-suffix`); a reverse prompt (`-r`) or
/// the end of a reply returns control to the user; end of input or Ctrl-C at the prompt ends
/// the session.
fn interact(
    session: &mut Session,
    a: &CliArgs,
    prompt: Option<String>,
    params: &GenerateParams,
    interrupt: &Interrupt,
    totals: &mut Totals,
) -> Result<ExitCode, String> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let mut input = stdin.lock();
    let mut text = prompt.unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if !a.no_display_prompt {
        show(&mut out, &text);
    }
    let mut wait_first = a.interactive_first || text.is_empty();
    loop {
        if wait_first {
            let Some(line) = read_turn(&mut input, terminal) else {
                break;
            };
            let mut added = a.in_prefix.clone().unwrap_or_default();
            added.push_str(&line);
            added.push('\n');
            added.push_str(a.in_suffix.as_deref().unwrap_or(""));
            // What the user typed is on their terminal already; the rest is shown.
            let shown = if terminal {
                a.in_suffix.clone().unwrap_or_default()
            } else {
                added.clone()
            };
            show(&mut out, &shown);
            text.push_str(&added);
        }
        wait_first = true;
        if a.verbose_prompt {
            print_prompt_tokens(session.model(), &text);
        }
        interrupt.generating.store(true, Ordering::SeqCst);
        let mut reply = String::new();
        let stats = session.generate(&text, params, show_and_keep(&mut out, &mut reply));
        interrupt.generating.store(false, Ordering::SeqCst);
        let stats = stats.map_err(|e| e.to_string())?;
        totals.add(&stats);
        // llama-cli keeps the reverse prompt in the text and on screen.
        if let StopReason::StopString(stop) = &stats.stop_reason {
            reply.push_str(stop);
            show(&mut out, stop);
        }
        text.push_str(&reply);
        interrupt.set_report(exit_report(totals, session, a));
        finish_reason(&stats, session, a)?;
    }
    let _ = writeln!(out);
    Ok(ExitCode::SUCCESS)
}

/// `--verbose-prompt`: the prompt's tokens, as llama-cli prints them, on stderr.
fn print_prompt_tokens(model: &Model, prompt: &str) {
    let Ok(tokens) = model.tokenize(prompt, acap::Special::PROMPT) else {
        return;
    };
    eprintln!(
        "prompt: '{prompt}'\nnumber of tokens in prompt = {}",
        tokens.len()
    );
    for t in tokens {
        let piece = model
            .token_to_piece(t, true)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        eprintln!("{t:6} -> '{piece}'");
    }
}

fn finish_reason(
    stats: &GenerationStats,
    session: &Session,
    a: &CliArgs,
) -> Result<ExitCode, String> {
    // `-n -2` asks to generate until the context is full: reaching it is the expected end.
    if stats.stop_reason == StopReason::ContextFull && a.n_predict != -2 {
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
    template: &ChatTemplate,
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
        if a.verbose_prompt {
            let rendered = template
                .render(session.model(), &messages, true)
                .map_err(|e| e.to_string())?;
            print_prompt_tokens(session.model(), &rendered);
        }
        let mut reply = String::new();
        let mut out = std::io::stdout().lock();
        interrupt.generating.store(true, Ordering::SeqCst);
        let stats = session.chat_with(
            &messages,
            template,
            params,
            show_and_keep(&mut out, &mut reply),
        );
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
        interrupt.set_report(exit_report(totals, session, a));
        finish_reason(&stats, session, a)?;
        if a.single_turn {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
