//! `acap`: the demo (the README's main job) and file tools.
//!
//! ```text
//! acap demo                                   # offline: tiny model + axis, one capped chat turn
//! acap axis inspect AXIS.gguf... [-m MODEL [--prompts FILE]] [--acap-threshold T]
//! acap axis extract -m MODEL --prompts FILE --persona-system TEXT|@FILE -o AXIS.gguf
//! acap axis calibrate -m MODEL --axis AXIS.gguf --prompts FILE -o NEW.gguf
//! acap axis convert VECTORS.npy|.safetensors... [--stats STATS.json] -o AXIS.gguf
//! acap gguf dump FILE [--full]
//! acap version
//! acap judge -m MODEL (--prompt TEXT --response TEXT [--json] | --jsonl IN [-o OUT])
//! acap bench [-m MODEL]... [-p 512] [-n 128] [-r 5] [-t N] [-ngl N] [-b N] [-ub N] [-o md|json]
//! ```

#![forbid(unsafe_code)]

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
    /// H-neuron suppression file tools (--h-suppress).
    HSuppress {
        #[command(subcommand)]
        command: HSuppressCommand,
    },
    /// Prints version information (acap, llama.cpp, backends).
    Version,
    /// Throughput uncapped vs capped (pp and tg, interleaved), memory, bandwidth roofline and
    /// capping cost, like llama-bench.
    Bench(BenchArgs),
    /// The reward evaluator: scores an AI response (1-10 per dimension and overall), one pair
    /// or a JSONL batch with summary metrics. Always uncapped.
    Judge(acap_cli::judge::JudgeOptions),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Model file, or a testkit preset as NAME:QUANT (e.g. small:q4_k_m); repeatable.
    /// Default: small:q8_0 and small:q4_k_m.
    #[arg(short = 'm', long = "model")]
    models: Vec<String>,
    /// Prompt tokens of the pp test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: usize,
    /// Tokens of the tg test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    n_gen: usize,
    /// Measured repetitions of each configuration (after one warm-up).
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    reps: usize,
    /// Threads (0: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
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
    n_batch: u32,
    /// Physical batch size (-ub).
    #[arg(long = "ubatch-size", default_value_t = 512)]
    n_ubatch: u32,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "md")]
    output: acap_cli::bench::Format,
    /// Capping: without --acap, synthetic axes on --acap-layer-range (default: 7 blocks at the
    /// relative depth of 22..28 of 32) pulling every row back; with --acap FILE, your axis.
    #[command(flatten)]
    cap: acap_frontend::CapArgs,
    /// Turn off llama.cpp's weight repacking (keeps every weight in the mapped file).
    #[arg(long = "no-repack")]
    no_repack: bool,
    /// Also run the capped configuration with the cap as a ggml graph on the tensor's backend
    /// (the GPU path), side by side with the host loop.
    #[arg(long = "compare-cap-paths")]
    compare_cap_paths: bool,
    /// MiB of memory the bandwidth test reads.
    #[arg(long = "bandwidth-mib", default_value_t = 1024)]
    bandwidth_mib: usize,
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
        /// With -m: show how the last-token projections of these prompts fall on each axis.
        #[arg(long, requires = "model")]
        prompts: Option<std::path::PathBuf>,
        /// System prompt for --prompts (TEXT or @FILE).
        #[arg(long = "system", requires = "prompts")]
        system: Option<String>,
        /// Chat template for --prompts: a built-in name or template text (default: the
        /// model's, chatml when it has none).
        #[arg(long = "chat-template", requires = "prompts")]
        chat_template: Option<String>,
    },
    /// Makes an axis on the deployed model: mean(generic) - mean(persona) of the last prompt
    /// token's block outputs, thresholds at a percentile of the persona projections.
    Extract(acap_cli::axis_tools::ExtractArgs),
    /// Recomputes an axis's thresholds on a (e.g. quantised) model; prints old and new.
    Calibrate(acap_cli::axis_tools::CalibrateArgs),
    /// Converts vectors from .npy ([n_layers, n_embd] or one vector per file, layer number at
    /// the end of the name), .safetensors or PyTorch .pt checkpoints (read without running
    /// their pickle) into an axis GGUF.
    Convert {
        /// Input files.
        #[arg(required = true)]
        inputs: Vec<std::path::PathBuf>,
        /// Stats JSON with thresholds (thresholds.L.tau, or recalibration_v2.new_thresholds).
        #[arg(long)]
        stats: Option<std::path::PathBuf>,
        /// PyTorch checkpoint of a dict {layer: tau} (the users' thresholds file).
        #[arg(long)]
        thresholds: Option<std::path::PathBuf>,
        /// Layers to write (default: those with thresholds, else all but 0).
        #[arg(long = "layers", num_args = 2, value_names = ["START", "END"])]
        layers: Option<Vec<i64>>,
        /// Model hint to record (acap.model_hint).
        #[arg(long)]
        model_hint: Option<String>,
        /// The output axis file.
        #[arg(short = 'o', long = "output")]
        output: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum HSuppressCommand {
    /// Per block: neurons suppressed and the scales' range; the file's metadata; with -m,
    /// whether it fits the model.
    Inspect {
        /// The suppression file.
        file: std::path::PathBuf,
        /// Check the file against this model (blocks, n_ff, FFN activation).
        #[arg(short = 'm', long)]
        model: Option<std::path::PathBuf>,
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
    // llama-bench's one-dash long options (-ngl, -ub) become two-dash ones.
    let cli: Cli =
        acap_frontend::parse_os_args(acap_cli::args::rewrite_one_dash(acap_frontend::os_args()));
    let result = match cli.command {
        Command::Demo { prompt, n_predict } => demo(&prompt, n_predict),
        Command::Axis {
            command:
                AxisCommand::Inspect {
                    files,
                    model,
                    acap_threshold,
                    prompts,
                    system,
                    chat_template,
                },
        } => inspect(&files, model.as_deref(), acap_threshold).and_then(|()| {
            acap_cli::out!("{}", acap_cli::axis_tools::cosine_report(&files)?);
            let (Some(model), Some(prompts)) = (model, prompts) else {
                return Ok(());
            };
            let system = system
                .map(|s| acap_cli::axis_tools::text_or_file("--system", &s))
                .transpose()?;
            acap_cli::out!(
                "{}",
                acap_cli::axis_tools::projection_report(
                    &files,
                    &model,
                    &prompts,
                    system.as_deref(),
                    chat_template.as_deref(),
                    acap_threshold,
                    0
                )?
            );
            Ok(())
        }),
        Command::Axis {
            command: AxisCommand::Extract(a),
        } => acap_cli::axis_tools::run_extract(a),
        Command::Axis {
            command: AxisCommand::Calibrate(a),
        } => acap_cli::axis_tools::run_calibrate(a),
        Command::Axis {
            command:
                AxisCommand::Convert {
                    inputs,
                    stats,
                    thresholds,
                    layers,
                    model_hint,
                    output,
                },
        } => acap_cli::axis_tools::run_convert(
            &inputs,
            stats.as_deref(),
            thresholds.as_deref(),
            layers.map(|v| (v[v.len() - 2], v[v.len() - 1])),
            model_hint.as_deref(),
            &output,
        ),
        Command::Gguf {
            command: GgufCommand::Dump { file, full },
        } => acap::gguf::GgufFile::open(&file)
            .map(|f| acap_cli::out!("{}", acap::gguf::dump(&f, full)))
            .map_err(|e| e.to_string()),
        Command::HSuppress {
            command: HSuppressCommand::Inspect { file, model },
        } => acap_cli::axis_tools::h_suppress_report(&file, model.as_deref())
            .map(|r| acap_cli::out!("{r}")),
        Command::Version => {
            acap_cli::outln!("{}", acap::version());
            Ok(())
        }
        Command::Bench(args) => bench(args),
        Command::Judge(a) => acap_cli::judge::run(&a),
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
    let no_thresholds = cli_threshold.is_none() && axes[0].thresholds().is_empty();
    acap_cli::out!(
        "{}",
        acap::axis::report(axes, cli_threshold).map_err(|e| e.to_string())?
    );
    if no_thresholds {
        acap_cli::outln!(
            "note: run it with --acap-threshold T (tau = -T); pass --acap-threshold here to preview the taus"
        );
    }
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
        acap_cli::outln!(
            "model {}: {arch}, n_embd {model_embd}, {n_layer} blocks: axes fit",
            model.display()
        );
        if let Some(l) = max_layer.filter(|&l| l >= n_layer) {
            acap_cli::outln!("note: layer {l} is beyond the model's blocks and will be ignored");
        }
    }
    Ok(())
}

fn bench(a: BenchArgs) -> Result<(), String> {
    let models = if a.models.is_empty() {
        vec!["small:q8_0".to_owned(), "small:q4_k_m".to_owned()]
    } else {
        a.models
    };
    let report = acap_cli::bench::run(acap_cli::bench::BenchOptions {
        models,
        n_prompt: a.n_prompt,
        n_gen: a.n_gen,
        reps: a.reps,
        threads: a.threads,
        n_gpu_layers: a.n_gpu_layers,
        n_batch: a.n_batch,
        n_ubatch: a.n_ubatch,
        layer_range: if a.cap.acap.is_empty() {
            acap_frontend::layer_range("--acap-layer-range", a.cap.acap_layer_range.as_deref())?
                .map(|r| (r.start, r.end))
        } else {
            None
        },
        capping: a.cap.config()?,
        no_repack: a.no_repack,
        bandwidth_bytes: a.bandwidth_mib << 20,
        compare_cap_paths: a.compare_cap_paths,
    })?;
    match a.output {
        acap_cli::bench::Format::Md => acap_cli::out!("{}", report.markdown()),
        acap_cli::bench::Format::Json => acap_cli::outln!(
            "{}",
            serde_json::to_string_pretty(&report.json()).map_err(|e| e.to_string())?
        ),
    }
    Ok(())
}

#[cfg(feature = "builtin-models")]
fn demo(prompt: &str, n_predict: usize) -> Result<(), String> {
    acap_cli::demo::run(prompt, n_predict)
}

#[cfg(not(feature = "builtin-models"))]
fn demo(_prompt: &str, _n_predict: usize) -> Result<(), String> {
    Err(
        "acap demo needs the built-in test model, and this build has none (built without the \
         builtin-models feature)"
            .into(),
    )
}
