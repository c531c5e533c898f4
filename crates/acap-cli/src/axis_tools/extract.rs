//! `acap axis extract` and `acap axis calibrate`.

use super::*;

/// What extraction and calibration share.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The model (the deployed GGUF).
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Prompts: plain text (one per line), JSONL with "prompt", or chat JSONL.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Keep this many prompts (chosen with --seed).
    #[arg(long)]
    pub sample: Option<usize>,
    /// Seed of --sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The persona system prompt (TEXT or @FILE).
    #[arg(long = "persona-system")]
    pub persona_system: String,
    /// Prompt tokens kept.
    #[arg(long = "max-tokens", default_value_t = 512)]
    pub max_tokens: usize,
    /// Capping layers A B (inclusive).
    #[arg(long = "cap-layers", num_args = 2, value_names = ["A", "B"])]
    pub cap_layers: Option<Vec<i64>>,
    /// Threshold percentile of the persona projections.
    #[arg(long, default_value_t = 25.0)]
    pub percentile: f32,
    /// Sequences decoded together.
    #[arg(long = "batch", default_value_t = 8)]
    pub batch: u32,
    /// Threads (0: all cores).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: u32,
    /// Layers to offload to the GPU (-ngl).
    #[arg(
        long = "n-gpu-layers",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub n_gpu_layers: i32,
    /// Chat template name or text (default: the model's).
    #[arg(long)]
    pub chat_template: Option<String>,
}

impl RunArgs {
    /// The extraction settings these flags give (`mean_k`: `mean - k*std` instead of the
    /// percentile).
    pub fn params(&self, mean_k: Option<f32>) -> acap::extraction::ExtractParams {
        let range = self
            .cap_layers
            .as_ref()
            .map_or_else(acap::LayerRange::default, |v| {
                // Repeated flags: the last pair wins, as in llama-cli.
                acap::LayerRange::new(v[v.len() - 2], v[v.len() - 1])
            });
        acap::extraction::ExtractParams {
            max_tokens: self.max_tokens,
            cap_layers: range,
            rule: match mean_k {
                Some(k) => acap::extraction::ThresholdRule::MeanMinusKStd(k),
                None => acap::extraction::ThresholdRule::Percentile(self.percentile),
            },
            batch_sequences: self.batch,
            threads: self.threads,
            template: self.chat_template.clone(),
            ..acap::extraction::ExtractParams::default()
        }
    }
}

/// `acap axis extract`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExtractArgs {
    /// What extraction and calibration share.
    #[command(flatten)]
    pub common: RunArgs,
    /// A generic system prompt (TEXT or @FILE; "" for none); repeatable. Default: none.
    #[arg(long = "generic-system")]
    pub generic_system: Vec<String>,
    /// Stats JSON (spec section 9 fields).
    #[arg(long)]
    pub stats: Option<PathBuf>,
    /// The output axis file.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// Runs `acap axis extract`: writes the axis file and the stats JSON, prints a summary.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn run_extract(a: ExtractArgs) -> Result<(), String> {
    let c = &a.common;
    let prompts = load_prompts(&c.prompts, c.sample, c.seed)?;
    let mut params = c.params(None);
    params.persona_system = text_or_file("--persona-system", &c.persona_system)?;
    params.generic_systems = if a.generic_system.is_empty() {
        vec![None]
    } else {
        a.generic_system
            .iter()
            .map(|g| text_or_file("--generic-system", g).map(|t| (!t.is_empty()).then_some(t)))
            .collect::<Result<_, _>>()?
    };
    let model = load_model(&c.model, c.n_gpu_layers)?;
    crate::warn_chatml_fallback(&model, params.template.as_deref());
    let started = std::time::Instant::now();
    let ex = extract(&model, &prompts, &params, progress_bar("extract")).map_err(flag_error)?;
    let secs = started.elapsed().as_secs_f64();
    ex.to_writer(&model_label(&c.model), params.rule)
        .write_file(&a.output)
        .map_err(|e| format!("-o {}: {e}", a.output.display()))?;
    if let Some(path) = &a.stats {
        write_json(path, &extraction_stats(&ex, &c.model, &params))?;
    }
    eprintln!(
        "extract: {} prompts x {} conditions in {secs:.1} s ({:.2} prompts/s); wrote {}",
        ex.n_samples,
        1 + params.generic_systems.len(),
        ex.n_samples as f64 / secs,
        a.output.display()
    );
    crate::outln!("layer        norm         tau        mean         std");
    for l in &ex.capping_layers {
        let s = ex.thresholds[l];
        crate::outln!(
            "{l:>5} {:>11.4} {:>11.4} {:>11.4} {:>11.4}",
            ex.norms[l],
            s.tau,
            s.mean,
            s.std
        );
    }
    Ok(())
}

fn extraction_stats(ex: &Extraction, model: &Path, p: &ExtractParams) -> Value {
    let (percentile, k) = rule_json(p.rule);
    let norms: serde_json::Map<String, Value> = ex
        .norms
        .iter()
        .map(|(l, n)| (l.to_string(), json!(n)))
        .collect();
    let thresholds: serde_json::Map<String, Value> = ex
        .thresholds
        .iter()
        .map(|(l, s)| (l.to_string(), stats_json(s)))
        .collect();
    json!({
        "model": model.display().to_string(),
        "n_samples": ex.n_samples,
        "n_layers": ex.n_layer,
        "hidden_size": ex.n_embd,
        "capping_layers": ex.capping_layers,
        "threshold_percentile": percentile,
        "threshold_mean_minus_k_std": k,
        "axis_norms": norms,
        "thresholds": thresholds,
        "persona_system_prompt": p.persona_system,
        "generic_system_prompts": p.generic_systems,
        "max_tokens": p.max_tokens,
        "timestamp": timestamp(),
    })
}

/// `acap axis calibrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateArgs {
    /// What extraction and calibration share.
    #[command(flatten)]
    pub common: RunArgs,
    /// The axis to recalibrate.
    #[arg(long)]
    pub axis: PathBuf,
    /// `mean - k*std` instead of a percentile.
    #[arg(
        long = "mean-k",
        conflicts_with = "percentile",
        allow_negative_numbers = true
    )]
    pub mean_k: Option<f32>,
    /// Stats JSON (with recalibration_v2.old/new_thresholds).
    #[arg(long)]
    pub stats: Option<PathBuf>,
    /// The output axis file.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// Runs `acap axis calibrate`: prints old and new thresholds side by side.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn run_calibrate(a: CalibrateArgs) -> Result<(), String> {
    let c = &a.common;
    let axis = AxisFile::open(&a.axis).map_err(|e| e.to_string())?;
    let prompts = load_prompts(&c.prompts, c.sample, c.seed)?;
    let mut params = c.params(a.mean_k);
    params.persona_system = text_or_file("--persona-system", &c.persona_system)?;
    let model = load_model(&c.model, c.n_gpu_layers)?;
    crate::warn_chatml_fallback(&model, params.template.as_deref());
    let cal = calibrate(&model, &axis, &prompts, &params, progress_bar("calibrate"))
        .map_err(flag_error)?;
    cal.to_writer(&axis, params.rule)
        .write_file(&a.output)
        .map_err(|e| format!("-o {}: {e}", a.output.display()))?;
    if let Some(path) = &a.stats {
        write_json(path, &calibration_stats(&cal, &c.model, &a.axis, &params))?;
    }
    crate::outln!("layer     old tau     new tau        mean         std");
    for (l, (old, s)) in &cal.layers {
        let old = old.map_or("-".to_owned(), |t| format!("{t:.4}"));
        crate::outln!(
            "{l:>5} {old:>11} {:>11.4} {:>11.4} {:>11.4}",
            s.tau,
            s.mean,
            s.std
        );
    }
    eprintln!(
        "calibrate: {} prompts; wrote {}",
        cal.n_samples,
        a.output.display()
    );
    Ok(())
}

fn calibration_stats(cal: &Calibration, model: &Path, axis: &Path, p: &ExtractParams) -> Value {
    let (percentile, k) = rule_json(p.rule);
    let new: serde_json::Map<String, Value> = cal
        .layers
        .iter()
        .map(|(l, (_, s))| (l.to_string(), json!(s.tau)))
        .collect();
    let old: serde_json::Map<String, Value> = cal
        .layers
        .iter()
        .map(|(l, (o, _))| (l.to_string(), json!(o)))
        .collect();
    let thresholds: serde_json::Map<String, Value> = cal
        .layers
        .iter()
        .map(|(l, (_, s))| (l.to_string(), stats_json(s)))
        .collect();
    json!({
        "model": model.display().to_string(),
        "axis": axis.display().to_string(),
        "n_samples": cal.n_samples,
        "threshold_percentile": percentile,
        "threshold_mean_minus_k_std": k,
        "thresholds": thresholds,
        "recalibration_v2": {"old_thresholds": old, "new_thresholds": new},
        "persona_system_prompt": p.persona_system,
        "timestamp": timestamp(),
    })
}
