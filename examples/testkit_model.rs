//! Prints the path of a built-in test model, generating (and quantising) it on first use.
//!
//! ```text
//! cargo run --release --example testkit_model -- [tiny|small|llama8b] [F16|Q8_0|Q4_K_M]
//! ```
//! `small` (about 1B parameters) is for benchmarks; `llama8b` has the real Llama-3.1-8B shape
//! and needs about 16 GB of disk for its F16 source.

use std::process::ExitCode;

use acap::QuantType;
use acap_testkit::ModelSpec;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let preset = args.first().map_or("tiny", String::as_str);
    let quant = match args.get(1).map_or("Q8_0", String::as_str) {
        "F16" => QuantType::F16,
        "Q8_0" => QuantType::Q8_0,
        "Q4_K_M" => QuantType::Q4KM,
        other => {
            eprintln!("error: unknown type {other} (F16, Q8_0 or Q4_K_M)");
            return ExitCode::FAILURE;
        }
    };
    let Some(spec) = ModelSpec::by_name(preset) else {
        eprintln!("error: unknown preset {preset} (tiny, small or llama8b)");
        return ExitCode::FAILURE;
    };
    match acap_testkit::model_path(&spec, Some(quant)) {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
