//! `acap axis extract | calibrate | convert` and the projection part of `acap axis inspect`:
//! prompt sets, stats JSON, and `.npy` / `.safetensors` readers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use acap::axis::normalise;
use acap::extraction::{
    Calibration, ExtractError, ExtractParams, Extraction, ProjectionStats, ThresholdRule,
    calibrate, extract, persona_states,
};
use acap::{AxisFile, AxisWriter, LayerRange, Model, ModelParams};
use serde_json::{Value, json};

mod convert;
mod extract;
mod inspect;

pub use convert::{
    Matrix, read_npy, read_safetensors, run_convert, thresholds_from_pt, thresholds_from_stats,
    vectors_from,
};
pub use extract::{CalibrateArgs, ExtractArgs, RunArgs, run_calibrate, run_extract};
pub use inspect::{cosine_report, h_suppress_report, projection_report};

/// Prompts shorter or longer than this (in characters) are dropped, as the reference did.
pub const PROMPT_CHARS: std::ops::RangeInclusive<usize> = 20..=2000;

/// `TEXT`, or the contents of `FILE` for `@FILE`.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn text_or_file(flag: &str, arg: &str) -> Result<String, String> {
    match arg.strip_prefix('@') {
        Some(path) => acap_frontend::read_text(flag, Path::new(path), acap_frontend::TEXT_LIMIT),
        None => Ok(arg.to_owned()),
    }
}

/// A prompt from one JSONL line: a `prompt` field, or the first user turn of a chat
/// (`messages` / `conversations` with `role`+`content` or `from`+`value`).
fn prompt_of(v: &Value) -> Option<String> {
    if let Some(p) = v.get("prompt").and_then(Value::as_str) {
        return Some(p.to_owned());
    }
    let turns = v
        .get("messages")
        .or_else(|| v.get("conversations"))
        .and_then(Value::as_array)?;
    turns.iter().find_map(|t| {
        let role = t.get("role").or_else(|| t.get("from"))?.as_str()?;
        let text = t.get("content").or_else(|| t.get("value"))?.as_str()?;
        matches!(role, "user" | "human").then(|| text.to_owned())
    })
}

/// splitmix64: a fixed, documented sequence for `--seed`.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Reads a prompt set: plain text (one prompt per line), JSONL with a `prompt` field, or chat
/// JSONL (the first user turn). Keeps prompts of 20..=2000 characters; with `sample` keeps that
/// many, chosen with `seed` (a partial Fisher-Yates shuffle, order kept).
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn load_prompts(path: &Path, sample: Option<usize>, seed: u64) -> Result<Vec<String>, String> {
    let text = acap_frontend::read_text("--prompts", path, acap_frontend::BATCH_LIMIT)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let jsonl = lines
        .first()
        .is_some_and(|l| l.trim_start().starts_with('{'));
    let mut prompts = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if jsonl {
            let v: Value = serde_json::from_str(line)
                .map_err(|e| format!("--prompts {}: line {}: {e}", path.display(), i + 1))?;
            let p = prompt_of(&v).ok_or_else(|| {
                format!(
                    "--prompts {}: line {}: no \"prompt\" field and no user turn",
                    path.display(),
                    i + 1
                )
            })?;
            prompts.push(p);
        } else {
            prompts.push((*line).to_owned());
        }
    }
    let total = prompts.len();
    let short = prompts
        .iter()
        .filter(|p| p.chars().count() < *PROMPT_CHARS.start())
        .count();
    prompts.retain(|p| PROMPT_CHARS.contains(&p.chars().count()));
    let long = total - short - prompts.len();
    if short + long > 0 {
        eprintln!(
            "--prompts {}: using {} of {total} prompts; dropped {short} shorter than {} and {long} longer than {} characters",
            path.display(),
            prompts.len(),
            PROMPT_CHARS.start(),
            PROMPT_CHARS.end()
        );
    }
    if prompts.is_empty() {
        return Err(format!(
            "--prompts {}: no prompts of {}..={} characters ({total} read)",
            path.display(),
            PROMPT_CHARS.start(),
            PROMPT_CHARS.end()
        ));
    }
    if let Some(n) = sample.filter(|&n| n < prompts.len()) {
        let mut state = seed;
        let mut idx: Vec<usize> = (0..prompts.len()).collect();
        for i in 0..n {
            let j = i + (splitmix(&mut state) % (idx.len() - i) as u64) as usize;
            idx.swap(i, j);
        }
        let mut keep = idx[..n].to_vec();
        keep.sort_unstable();
        prompts = keep.into_iter().map(|i| prompts[i].clone()).collect();
    }
    Ok(prompts)
}

fn progress_bar(label: &'static str) -> impl FnMut(usize, usize) {
    let mut p: Option<crate::progress::Progress> = None;
    move |done, total| {
        p.get_or_insert_with(|| crate::progress::Progress::new(label, total))
            .set(done);
    }
}

fn stats_json(s: &ProjectionStats) -> Value {
    json!({"tau": s.tau, "mean": s.mean, "std": s.std, "min": s.min, "max": s.max,
           "p25": s.p25, "p50": s.p50, "p75": s.p75})
}

fn rule_json(rule: ThresholdRule) -> (Value, Value) {
    match rule {
        ThresholdRule::Percentile(p) => (json!(p), Value::Null),
        ThresholdRule::MeanMinusKStd(k) => (Value::Null, json!(k)),
    }
}

fn timestamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn write_json(path: &Path, v: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

fn model_label(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn load_model(path: &Path, ngl: i32) -> Result<Model, String> {
    Model::load(path, ModelParams::default().with_n_gpu_layers(ngl)).map_err(|e| e.to_string())
}

/// An extraction error with the flag that caused it in front (the library names values).
fn flag_error(e: ExtractError) -> String {
    match &e {
        ExtractError::NoLayers { start, end, .. } => format!("--cap-layers {start} {end}: {e}"),
        ExtractError::BadParam { name, .. } => {
            let flag = if *name == "k" {
                "--mean-k"
            } else {
                "--percentile"
            };
            format!("{flag}: {e}")
        }
        _ => e.to_string(),
    }
}
