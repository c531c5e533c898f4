//! Writes a deterministic demo axis file with the API, in the layout of the published ones
//! (raw `direction.N` vectors plus `acap.threshold.N` keys).
//!
//! ```text
//! cargo run --example axis_write -- OUT.gguf [--n-embd N] [--layers A B]
//! ```
//! Defaults: the Llama-3.1-8B shape, n_embd 4096, layers 22..28 (inclusive). The vectors are
//! pseudo-random (fixed seed), so the file demonstrates the format, not a real persona axis.

use std::process::ExitCode;

use acap::AxisWriter;

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn number(it: &mut impl Iterator<Item = String>, flag: &str) -> Result<u32, String> {
    let v = it.next().ok_or(format!("{flag} needs a value"))?;
    v.parse()
        .map_err(|_| format!("{flag}: '{v}' is not a non-negative integer"))
}

fn run(args: Vec<String>) -> Result<String, String> {
    let (mut n_embd, mut first, mut last) = (4096u32, 22u32, 28u32);
    let mut out = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--n-embd" => n_embd = number(&mut it, "--n-embd")?,
            "--layers" => {
                first = number(&mut it, "--layers")?;
                last = number(&mut it, "--layers")?;
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => out = Some(arg),
        }
    }
    let out = out.ok_or("usage: axis_write OUT.gguf [--n-embd N] [--layers A B]")?;
    if first == 0 || first > last || n_embd == 0 {
        return Err(format!(
            "need 1 <= A <= B and n_embd > 0 (got layers {first} {last}, n_embd {n_embd})"
        ));
    }
    let mut w = AxisWriter::new()
        .with_model_hint("demo (random directions)")
        .with_hook("l_out")
        .with_operation("cap");
    for layer in first..=last {
        let v = acap_testkit::random_vector(u64::from(layer), n_embd as usize);
        // Typical published thresholds lie between about -2.4 and -6.1.
        let tau = -2.4 - 3.7 * (layer - first) as f32 / (last - first).max(1) as f32;
        w = w.with_direction(layer, v).with_threshold(layer, tau);
    }
    w.write_file(&out).map_err(|e| e.to_string())?;
    Ok(format!(
        "wrote {out}: layers {first}..={last}, n_embd {n_embd}"
    ))
}
