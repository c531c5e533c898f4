//! Inspects one or more axis files as `--acap` would combine them: per layer the raw norm of
//! the summed direction and the threshold that applies, with where it comes from.
//!
//! ```text
//! cargo run --example axis_inspect -- [--acap-threshold T] AXIS.gguf [AXIS.gguf ...]
//! ```
//! An invalid file, or thresholds that cannot be resolved, print a one-line error and exit 1.

use std::process::ExitCode;

use acap::AxisFile;

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<String, String> {
    let mut cli_threshold = None;
    let mut paths = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--acap-threshold" => {
                let v = it.next().ok_or("--acap-threshold needs a value")?;
                let t: f32 = v
                    .parse()
                    .map_err(|_| format!("--acap-threshold: '{v}' is not a number"))?;
                cli_threshold = Some(t);
            }
            "-h" | "--help" => {
                return Ok(
                    "usage: axis_inspect [--acap-threshold T] AXIS.gguf [AXIS.gguf ...]\n".into(),
                );
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => paths.push(arg),
        }
    }
    if paths.is_empty() {
        return Err(
            "no axis file given (usage: axis_inspect [--acap-threshold T] AXIS.gguf ...)".into(),
        );
    }
    let files = paths
        .iter()
        .map(AxisFile::open)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let no_thresholds = cli_threshold.is_none() && files[0].thresholds().is_empty();
    let mut out = acap::axis::report(files, cli_threshold).map_err(|e| e.to_string())?;
    if no_thresholds {
        out += "note: run it with --acap-threshold T (tau = -T); pass --acap-threshold here to preview the taus\n";
    }
    Ok(out)
}
