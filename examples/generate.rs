//! Streams a completion to stdout and prints statistics to stderr.
//!
//! ```text
//! cargo run --release --example generate -- [-m MODEL] -p PROMPT [-n N] [--temp T] [--seed S] [-t N] [-v]
//! ```
//! Without `-m` it uses the built-in tiny test model (generated on first use). `-v` shows
//! llama.cpp's log.

use std::io::Write;
use std::ops::ControlFlow;
use std::process::ExitCode;

use acap::{GenerateParams, Model, ModelParams, QuantType, SamplingParams, Session, SessionParams};

struct Args {
    model: Option<String>,
    prompt: String,
    n: Option<usize>,
    temp: f32,
    seed: Option<u32>,
    threads: u32,
    verbose: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        model: None,
        prompt: String::new(),
        n: Some(64),
        temp: 0.8,
        seed: None,
        threads: 0,
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "-m" | "--model" => a.model = Some(value()?),
            "-p" | "--prompt" => a.prompt = value()?,
            "-n" | "--n-predict" => {
                let v = value()?;
                let n: i64 = v
                    .parse()
                    .map_err(|_| format!("-n: '{v}' is not an integer"))?;
                a.n = usize::try_from(n).ok();
            }
            "--temp" => {
                let v = value()?;
                a.temp = v
                    .parse()
                    .map_err(|_| format!("--temp: '{v}' is not a number"))?;
            }
            "-s" | "--seed" => {
                let v = value()?;
                a.seed = Some(
                    v.parse()
                        .map_err(|_| format!("--seed: '{v}' is not a u32"))?,
                );
            }
            "-t" | "--threads" => {
                let v = value()?;
                a.threads = v
                    .parse()
                    .map_err(|_| format!("-t: '{v}' is not a thread count"))?;
            }
            "-v" | "--verbose" => a.verbose = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.prompt.is_empty() {
        return Err(
            "usage: generate [-m MODEL] -p PROMPT [-n N] [--temp T] [--seed S] [-v]".into(),
        );
    }
    Ok(a)
}

fn run(a: Args) -> Result<(), Box<dyn std::error::Error>> {
    if a.verbose {
        env_logger::Builder::new()
            .filter_level(log::LevelFilter::Debug)
            .init();
    }
    let path = match a.model {
        Some(p) => p.into(),
        None => acap_testkit::tiny(QuantType::Q8_0),
    };
    let model = Model::load(&path, ModelParams::default())?;
    let mut session = Session::new(&model, SessionParams::default().with_threads(a.threads))?;
    let mut sampling = SamplingParams::default().with_temperature(a.temp);
    sampling.seed = a.seed;
    let params = GenerateParams {
        max_tokens: a.n,
        sampling,
        ..GenerateParams::default()
    };
    let mut out = std::io::stdout().lock();
    let stats = session.generate(&a.prompt, &params, |piece| {
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
        ControlFlow::Continue(())
    })?;
    writeln!(out)?;
    eprintln!(
        "model {} ({} blocks, n_embd {}); prompt {} tokens at {:.1} t/s; generated {} tokens at {:.1} t/s; stop: {:?}",
        path.display(),
        model.n_layer(),
        model.n_embd(),
        stats.prompt_tokens,
        stats.prompt_tokens_per_second(),
        stats.generated_tokens,
        stats.generation_tokens_per_second(),
        stats.stop_reason
    );
    Ok(())
}

fn main() -> ExitCode {
    let result = parse().map_err(Into::into).and_then(run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
