//! `acap`: the demo (the README's main job) and file tools.
//!
//! ```text
//! acap demo                                   # offline: tiny model + axis, one capped chat turn
//! acap axis inspect AXIS.gguf... [-m MODEL] [--acap-threshold T]
//! acap gguf dump FILE [--full]
//! acap version
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "acap",
    version,
    about = "acap: activation-capped GGUF inference"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generates the tiny test model and a matching axis, runs one chat turn uncapped and
    /// capped, and prints the capping telemetry. Entirely offline.
    Demo {
        /// Prompt of the chat turn.
        #[arg(
            short = 'p',
            long,
            default_value = "Hello! Can you tell me a story about a cat?"
        )]
        prompt: String,
        /// Tokens to generate.
        #[arg(short = 'n', long, default_value_t = 48)]
        n_predict: usize,
    },
    /// Axis file tools.
    Axis {
        #[command(subcommand)]
        command: AxisCommand,
    },
    /// GGUF file tools.
    Gguf {
        #[command(subcommand)]
        command: GgufCommand,
    },
    /// Prints version information (acap, llama.cpp, backends).
    Version,
}

#[derive(Subcommand)]
enum AxisCommand {
    /// Per layer: norm, threshold and its source, as --acap would load the files.
    Inspect {
        /// Axis files (summed in order; thresholds from the first).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// Check the axes against this model (n_embd, block count).
        #[arg(short = 'm', long)]
        model: Option<std::path::PathBuf>,
        /// As --acap-threshold (negated for layers without a key).
        #[arg(long, allow_negative_numbers = true)]
        acap_threshold: Option<f32>,
    },
}

#[derive(Subcommand)]
enum GgufCommand {
    /// Metadata and tensor table, like llama.cpp's gguf-dump.
    Dump {
        /// The GGUF file.
        file: std::path::PathBuf,
        /// Print arrays in full.
        #[arg(long)]
        full: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { prompt, n_predict } => acap_cli::demo::run(&prompt, n_predict),
        Command::Axis {
            command:
                AxisCommand::Inspect {
                    files,
                    model,
                    acap_threshold,
                },
        } => inspect(&files, model.as_deref(), acap_threshold),
        Command::Gguf {
            command: GgufCommand::Dump { file, full },
        } => acap::gguf::GgufFile::open(&file)
            .map(|f| print!("{}", acap::gguf::dump(&f, full)))
            .map_err(|e| e.to_string()),
        Command::Version => {
            println!("{}", acap::version());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn inspect(
    files: &[std::path::PathBuf],
    model: Option<&std::path::Path>,
    cli_threshold: Option<f32>,
) -> Result<(), String> {
    let axes = files
        .iter()
        .map(acap::AxisFile::open)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let n_embd = axes[0].n_embd();
    let max_layer = axes
        .iter()
        .flat_map(|a| a.directions().keys())
        .max()
        .copied();
    print!(
        "{}",
        acap::axis::report(axes, cli_threshold).map_err(|e| e.to_string())?
    );
    if let Some(model) = model {
        // Read natively: no weights are loaded.
        let info = acap::ModelInfo::read(model).map_err(|e| e.to_string())?;
        let (arch, model_embd, n_layer) = (&info.architecture, info.n_embd, info.n_layer);
        if model_embd as usize != n_embd {
            return Err(format!(
                "axis n_embd {n_embd} does not match {} (n_embd {model_embd})",
                model.display()
            ));
        }
        println!(
            "model {}: {arch}, n_embd {model_embd}, {n_layer} blocks: axes fit",
            model.display()
        );
        if let Some(l) = max_layer.filter(|&l| l >= n_layer) {
            println!("note: layer {l} is beyond the model's blocks and will be ignored");
        }
    }
    Ok(())
}
