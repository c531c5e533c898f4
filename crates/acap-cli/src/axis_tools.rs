//! `acap axis extract | calibrate | convert` and the projection part of `acap axis inspect`:
//! prompt sets, stats JSON, and `.npy` / `.safetensors` readers.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use acap::axis::normalise;
use acap::extraction::{
    Calibration, ExtractError, ExtractParams, Extraction, ProjectionStats, ThresholdRule,
    calibrate, extract, persona_states,
};
use acap::{AxisFile, AxisWriter, LayerRange, Model, ModelParams};
use serde_json::{Value, json};

/// Prompts shorter or longer than this (in characters) are dropped, as the reference did.
pub const PROMPT_CHARS: std::ops::RangeInclusive<usize> = 20..=2000;

/// `TEXT`, or the contents of `FILE` for `@FILE`.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn text_or_file(flag: &str, arg: &str) -> Result<String, String> {
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{flag} @{path}: {e}")),
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
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--prompts {}: {e}", path.display()))?;
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
    prompts.retain(|p| PROMPT_CHARS.contains(&p.chars().count()));
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
    let tty = std::io::stderr().is_terminal();
    move |done, total| {
        if tty {
            let width = 30;
            let filled = done * width / total.max(1);
            eprint!(
                "\r{label} [{}{}] {done}/{total}",
                "#".repeat(filled),
                ".".repeat(width - filled)
            );
            if done == total {
                eprintln!();
            }
        }
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

/// `acap axis extract`.
pub struct ExtractArgs {
    /// Model.
    pub model: PathBuf,
    /// Prompt set.
    pub prompts: PathBuf,
    /// Keep this many prompts.
    pub sample: Option<usize>,
    /// Sampling seed.
    pub seed: u64,
    /// Persona system prompt (TEXT or @FILE).
    pub persona_system: String,
    /// Generic system prompts (TEXT or @FILE; empty = none).
    pub generic_system: Vec<String>,
    /// Extraction settings (the systems are filled in here).
    pub params: ExtractParams,
    /// Output axis.
    pub output: PathBuf,
    /// Stats JSON.
    pub stats: Option<PathBuf>,
    /// GPU layers.
    pub n_gpu_layers: i32,
}

fn load_model(path: &Path, ngl: i32) -> Result<Model, String> {
    Model::load(path, ModelParams::default().with_n_gpu_layers(ngl)).map_err(|e| e.to_string())
}

/// Runs `acap axis extract`: writes the axis file and the stats JSON, prints a summary.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn run_extract(a: ExtractArgs) -> Result<(), String> {
    let prompts = load_prompts(&a.prompts, a.sample, a.seed)?;
    let mut params = a.params;
    params.persona_system = text_or_file("--persona-system", &a.persona_system)?;
    params.generic_systems = if a.generic_system.is_empty() {
        vec![None]
    } else {
        a.generic_system
            .iter()
            .map(|g| text_or_file("--generic-system", g).map(|t| (!t.is_empty()).then_some(t)))
            .collect::<Result<_, _>>()?
    };
    let model = load_model(&a.model, a.n_gpu_layers)?;
    let started = std::time::Instant::now();
    let ex = extract(&model, &prompts, &params, progress_bar("extract")).map_err(flag_error)?;
    let secs = started.elapsed().as_secs_f64();
    ex.to_writer(&model_label(&a.model), params.rule)
        .write_file(&a.output)
        .map_err(|e| format!("-o {}: {e}", a.output.display()))?;
    if let Some(path) = &a.stats {
        write_json(path, &extraction_stats(&ex, &a.model, &params))?;
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
pub struct CalibrateArgs {
    /// Model.
    pub model: PathBuf,
    /// The axis to recalibrate.
    pub axis: PathBuf,
    /// Prompt set.
    pub prompts: PathBuf,
    /// Keep this many prompts.
    pub sample: Option<usize>,
    /// Sampling seed.
    pub seed: u64,
    /// Persona system prompt.
    pub persona_system: String,
    /// Settings.
    pub params: ExtractParams,
    /// Output axis.
    pub output: PathBuf,
    /// Stats JSON.
    pub stats: Option<PathBuf>,
    /// GPU layers.
    pub n_gpu_layers: i32,
}

/// Runs `acap axis calibrate`: prints old and new thresholds side by side.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn run_calibrate(a: CalibrateArgs) -> Result<(), String> {
    let axis = AxisFile::open(&a.axis).map_err(|e| e.to_string())?;
    let prompts = load_prompts(&a.prompts, a.sample, a.seed)?;
    let mut params = a.params;
    params.persona_system = text_or_file("--persona-system", &a.persona_system)?;
    let model = load_model(&a.model, a.n_gpu_layers)?;
    let cal = calibrate(&model, &axis, &prompts, &params, progress_bar("calibrate"))
        .map_err(flag_error)?;
    cal.to_writer(&axis, params.rule)
        .write_file(&a.output)
        .map_err(|e| format!("-o {}: {e}", a.output.display()))?;
    if let Some(path) = &a.stats {
        write_json(path, &calibration_stats(&cal, &a.model, &a.axis, &params))?;
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

/// Projections of a prompt set's last-token states on each layer's unit axis: a table of their
/// distribution and the share above each layer's threshold.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn projection_report(
    files: &[PathBuf],
    model: &Path,
    prompts: &Path,
    system: Option<&str>,
    cli_threshold: Option<f32>,
    n_gpu_layers: i32,
) -> Result<String, String> {
    let axes = acap::AxisSet::open(files).map_err(|e| e.to_string())?;
    let thresholds = axes.thresholds(cli_threshold).map_err(|e| e.to_string())?;
    let prompts = load_prompts(prompts, None, 0)?;
    let model = load_model(model, n_gpu_layers)?;
    if axes.n_embd() != model.n_embd() as usize {
        return Err(format!(
            "axis n_embd {} does not match the model's n_embd {}",
            axes.n_embd(),
            model.n_embd()
        ));
    }
    let states = persona_states(&model, &prompts, system, &ExtractParams::default())
        .map_err(|e| e.to_string())?;
    let mut out = format!(
        "projections of {} prompts on the unit axes{}:\nlayer         min         p25         p50         p75         max         tau  above tau\n",
        prompts.len(),
        system.map_or(String::new(), |_| " (with the system prompt)".into())
    );
    for (&l, axis) in axes.layers() {
        if l >= model.n_layer() {
            continue;
        }
        let proj: Vec<f32> = states
            .iter()
            .map(|s| acap::cap::dot(&axis.unit, &s[l as usize]))
            .collect();
        let tau = thresholds.for_layer(l).tau;
        let above = proj.iter().filter(|&&p| p > tau).count();
        let q = |p: f32| acap::extraction::percentile(&proj, p);
        out += &format!(
            "{l:>5} {:>11.4} {:>11.4} {:>11.4} {:>11.4} {:>11.4} {tau:>11.4} {:>9.0}%\n",
            q(0.0),
            q(25.0),
            q(50.0),
            q(75.0),
            q(100.0),
            100.0 * above as f64 / proj.len() as f64
        );
    }
    Ok(out)
}

/// Cosine similarity of the summed axes of neighbouring layers (and the full matrix for up to
/// 12 layers).
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn cosine_report(files: &[PathBuf]) -> Result<String, String> {
    let axes = acap::AxisSet::open(files).map_err(|e| e.to_string())?;
    let layers: Vec<(u32, &Vec<f32>)> = axes.layers().iter().map(|(l, a)| (*l, &a.unit)).collect();
    let cos = |a: &[f32], b: &[f32]| acap::cap::dot(a, b);
    let mut out = String::from("cosine similarity between layers:\n");
    if layers.len() <= 12 {
        out += "     ";
        for (l, _) in &layers {
            out += &format!("{l:>6}");
        }
        out += "\n";
        for (la, a) in &layers {
            out += &format!("{la:>5}");
            for (_, b) in &layers {
                out += &format!("{:>6.2}", cos(a, b));
            }
            out += "\n";
        }
    } else {
        for w in layers.windows(2) {
            out += &format!(
                "{:>5} -> {:>3}: {:.3}\n",
                w[0].0,
                w[1].0,
                cos(w[0].1, w[1].1)
            );
        }
    }
    Ok(out)
}

/// A `[rows, cols]` (or `[cols]`) f32 matrix read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> String {
    format!("{}: {msg}", path.display())
}

/// Reads a `.npy` array of little-endian f32/f64/f16, 1-D or 2-D, C order.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn read_npy(path: &Path) -> Result<Matrix, String> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, e))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "not a .npy file (bad magic)"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(path, format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad(path, "truncated .npy header"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad(path, "no 'descr' in the .npy header"))?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad(
            path,
            "Fortran-order arrays are not supported; save with C order",
        ));
    }
    let shape_text = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad(path, "no 'shape' in the .npy header"))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(path, format!("bad shape '{shape_text}'")))
        })
        .collect::<Result<_, _>>()?;
    if shape.is_empty() || shape.len() > 2 {
        return Err(bad(
            path,
            format!("expected a 1-D or 2-D array, shape is ({shape_text})"),
        ));
    }
    let data = &bytes[start + hlen..];
    let values = decode(path, descr, data, shape.iter().product())?;
    Ok(Matrix {
        shape,
        data: values,
    })
}

fn decode(path: &Path, dtype: &str, data: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let (width, f): (usize, fn(&[u8]) -> f32) = match dtype {
        "<f4" | "F32" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        "<f8" | "F64" => (8, |b| {
            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        "<f2" | "F16" => (2, |b| {
            acap::gguf::f16_to_f32(u16::from_le_bytes([b[0], b[1]]))
        }),
        "BF16" => (2, |b| {
            acap::gguf::bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))
        }),
        other => {
            return Err(bad(
                path,
                format!("unsupported element type '{other}' (use float32, float64 or float16)"),
            ));
        }
    };
    let need = n
        .checked_mul(width)
        .ok_or_else(|| bad(path, "array too large"))?;
    if data.len() < need {
        return Err(bad(
            path,
            format!("truncated data: {} bytes, {need} needed", data.len()),
        ));
    }
    Ok(data[..need].chunks_exact(width).map(f).collect())
}

/// Reads the tensors of a `.safetensors` file: name -> matrix.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Matrix>, String> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, e))?;
    let hlen = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or_else(|| bad(path, "not a .safetensors file (too short)"))?;
    let header = bytes.get(8..8usize.saturating_add(hlen)).ok_or_else(|| {
        bad(
            path,
            "not a .safetensors file (header length beyond the file)",
        )
    })?;
    let header: Value =
        serde_json::from_slice(header).map_err(|e| bad(path, format!("bad header: {e}")))?;
    let data = &bytes[8 + hlen..];
    let mut out = BTreeMap::new();
    for (name, t) in header
        .as_object()
        .ok_or_else(|| bad(path, "header is not an object"))?
    {
        if name == "__metadata__" {
            continue;
        }
        let dtype = t["dtype"].as_str().unwrap_or("?");
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_u64().map(|d| d as usize))
                    .collect()
            })
            .unwrap_or_default();
        let offs: Vec<usize> = t["data_offsets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_u64().map(|d| d as usize))
                    .collect()
            })
            .unwrap_or_default();
        let (Some(&b), Some(&e)) = (offs.first(), offs.get(1)) else {
            return Err(bad(path, format!("tensor {name}: no data_offsets")));
        };
        let slice = data
            .get(b..e)
            .ok_or_else(|| bad(path, format!("tensor {name}: data beyond the file")))?;
        let values = decode(path, dtype, slice, shape.iter().product())
            .map_err(|m| format!("{m} (tensor {name})"))?;
        out.insert(
            name.clone(),
            Matrix {
                shape,
                data: values,
            },
        );
    }
    Ok(out)
}

/// Trailing decimal number of a name (`direction.22`, `layer_22`, `22.npy` -> 22).
fn trailing_layer(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".npy").unwrap_or(name);
    let digits: String = stem
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    digits.parse().ok()
}

/// Per-layer vectors from the inputs: a 2-D matrix (row L = layer L) or 1-D vectors whose
/// file or tensor names end with the layer number.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn vectors_from(inputs: &[PathBuf]) -> Result<BTreeMap<u32, Vec<f32>>, String> {
    let mut out: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
    let mut add = |path: &Path, name: &str, m: Matrix| -> Result<(), String> {
        match m.shape.as_slice() {
            [rows, cols] => {
                for r in 0..*rows {
                    out.insert(r as u32, m.data[r * cols..(r + 1) * cols].to_vec());
                }
                Ok(())
            }
            [_] => {
                let layer = trailing_layer(name).ok_or_else(|| {
                    bad(
                        path,
                        format!("1-D vector '{name}' has no layer number at the end of its name"),
                    )
                })?;
                out.insert(layer, m.data);
                Ok(())
            }
            s => Err(bad(
                path,
                format!("tensor '{name}' has shape {s:?}; expected 1-D or 2-D"),
            )),
        }
    };
    for path in inputs {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "npy" => {
                let name = path
                    .file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned());
                add(path, &name, read_npy(path)?)?;
            }
            "safetensors" => {
                for (name, m) in read_safetensors(path)? {
                    add(path, &name, m)?;
                }
            }
            "pt" | "pth" | "bin" | "pkl" | "ckpt" => {
                return Err(bad(
                    path,
                    "PyTorch pickles are not supported (they can run code when loaded): save the \
                     tensor with numpy.save(...) or safetensors.torch.save_file(...) and convert that",
                ));
            }
            _ => {
                return Err(bad(
                    path,
                    "unknown input type: expected .npy or .safetensors",
                ));
            }
        }
    }
    let mut lens = out.values().map(Vec::len);
    if let Some(n) = lens.next() {
        if lens.any(|m| m != n) {
            return Err("the input vectors have different lengths".into());
        }
    }
    Ok(out)
}

/// Thresholds from a stats JSON: `recalibration_v2.new_thresholds` when present, otherwise
/// `thresholds.L.tau`.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn thresholds_from_stats(path: &Path) -> Result<BTreeMap<u32, f32>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(path, format!("not JSON: {e}")))?;
    let (table, source) = match v.pointer("/recalibration_v2/new_thresholds") {
        Some(t) => (t, "recalibration_v2.new_thresholds"),
        None => (
            v.get("thresholds").ok_or_else(|| {
                bad(
                    path,
                    "no \"thresholds\" and no \"recalibration_v2.new_thresholds\"",
                )
            })?,
            "thresholds",
        ),
    };
    let obj = table
        .as_object()
        .ok_or_else(|| bad(path, format!("\"{source}\" is not an object")))?;
    obj.iter()
        .map(|(k, t)| {
            let layer = k
                .parse::<u32>()
                .map_err(|_| bad(path, format!("{source}: key \"{k}\" is not a layer number")))?;
            let tau = t
                .as_f64()
                .or_else(|| t.get("tau").and_then(Value::as_f64))
                .ok_or_else(|| bad(path, format!("{source}.{k}: no threshold value")))?;
            Ok((layer, tau as f32))
        })
        .collect()
}

/// Runs `acap axis convert`.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn run_convert(
    inputs: &[PathBuf],
    stats: Option<&Path>,
    layers: Option<(i64, i64)>,
    model_hint: Option<&str>,
    output: &Path,
) -> Result<(), String> {
    let vectors = vectors_from(inputs)?;
    let thresholds = stats
        .map(thresholds_from_stats)
        .transpose()?
        .unwrap_or_default();
    let keep: Vec<u32> = match layers {
        Some((a, b)) => {
            let max = vectors.keys().max().copied().unwrap_or(0) + 1;
            LayerRange::new(a, b).blocks(max).collect()
        }
        None if !thresholds.is_empty() => thresholds.keys().copied().collect(),
        None => vectors.keys().copied().filter(|&l| l > 0).collect(),
    };
    let mut w = AxisWriter::new().with_hook("l_out").with_operation("cap");
    if let Some(h) = model_hint {
        w = w.with_model_hint(h);
    }
    let mut written = 0;
    for l in keep {
        if l == 0 {
            continue; // the reference never loads a layer-0 direction
        }
        let v = vectors
            .get(&l)
            .ok_or_else(|| format!("layer {l}: no vector for it in the inputs"))?;
        w = w.with_direction(l, v.clone());
        if let Some(&t) = thresholds.get(&l) {
            w = w.with_threshold(l, t);
        }
        written += 1;
    }
    if written == 0 {
        return Err("no layers to write (layer 0 is never written)".into());
    }
    w.write_file(output)
        .map_err(|e| format!("-o {}: {e}", output.display()))?;
    let norms: Vec<String> = AxisFile::open(output)
        .map_err(|e| e.to_string())?
        .directions()
        .iter()
        .map(|(l, v)| format!("{l}:{:.3}", normalise(v.clone()).norm))
        .collect();
    eprintln!(
        "convert: wrote {} layers ({} with thresholds) to {}; norms {}",
        written,
        thresholds.len(),
        output.display(),
        norms.join(" ")
    );
    Ok(())
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
