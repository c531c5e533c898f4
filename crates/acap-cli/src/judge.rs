//! `acap judge`: the reward evaluator on one pair or a JSONL batch, with summary metrics
//! (mean and spread of overall scores, pairwise preference accuracy, paraphrase invariance).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use acap::eval::{Evaluation, Evaluator, EvaluatorParams, Rubric};
use acap::{Model, ModelParams, Session, SessionParams};
pub use acap_frontend::{evaluation_json, source_name};
use serde_json::{Value, json};

/// The reference threshold of paraphrase invariance: the mean per-group spread of overall
/// scores should stay at or below this.
pub const INVARIANCE_THRESHOLD: f64 = 1.0;

/// What to judge and how.
#[derive(Debug, Clone, clap::Args)]
pub struct JudgeOptions {
    /// The model.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// The user prompt of a single pair.
    #[arg(long)]
    pub prompt: Option<String>,
    /// The AI response of a single pair.
    #[arg(long)]
    pub response: Option<String>,
    /// A JSONL batch: prompt, response, optional id, group (paraphrases), pair + preferred.
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
    /// Where the batch's JSONL results go (default stdout); each line is written and flushed
    /// as soon as it is scored.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Keep the lines already in `-o FILE` and score only the ids not in it (after a crash or
    /// an interrupt); the summary covers the lines scored in this run.
    #[arg(long, requires = "output")]
    pub resume: bool,
    /// Print the single evaluation as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Rubric: 5 (v8 model card) or 6 dimensions.
    #[arg(long, default_value_t = 6)]
    pub dimensions: u8,
    /// The system prompt the model was trained with: TEXT or @FILE.
    #[arg(long)]
    pub rubric_system: Option<String>,
    /// Seed (default random).
    #[arg(short = 's', long)]
    pub seed: Option<u32>,
    /// Temperature.
    #[arg(long = "temp", default_value_t = 0.3)]
    pub temperature: f32,
    /// Threads (0: all cores).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: u32,
    /// Context size.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub n_ctx: u32,
    /// Layers to offload to the GPU (-ngl).
    #[arg(
        long = "n-gpu-layers",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub n_gpu_layers: i32,
    /// Stop at the first malformed JSONL line instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Chat template name or text (default: the model's).
    #[arg(long)]
    pub chat_template: Option<String>,
    /// Also print the model's raw answer (single pair).
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// One input line of a batch.
#[derive(Debug, Clone)]
struct Item {
    line: usize,
    id: Value,
    prompt: String,
    response: String,
    group: Option<String>,
    pair: Option<String>,
    preferred: Option<bool>,
}

fn as_key(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The ids (as JSON text) of the scored lines already in `path` (missing file: none).
fn scored_ids(path: &std::path::Path) -> Result<std::collections::HashSet<String>, String> {
    if !path.exists() {
        return Ok(Default::default());
    }
    let text = acap_frontend::read_text("-o", path, acap_frontend::BATCH_LIMIT)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("id").filter(|id| !id.is_null()).map(Value::to_string))
        .collect())
}

fn parse_item(line: usize, text: &str) -> Result<Item, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("line {line}: {e}"))?;
    let field = |name: &str| -> Result<String, String> {
        match v.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("line {line}: field \"{name}\" must be a string")),
            None => Err(format!("line {line}: missing field \"{name}\"")),
        }
    };
    let preferred = match v.get("preferred") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(format!(
                "line {line}: field \"preferred\" must be true or false"
            ));
        }
    };
    let pair = v.get("pair").and_then(as_key);
    if preferred.is_some() && pair.is_none() {
        return Err(format!("line {line}: \"preferred\" without a \"pair\" id"));
    }
    Ok(Item {
        line,
        id: v.get("id").cloned().unwrap_or(Value::Null),
        prompt: field("prompt")?,
        response: field("response")?,
        group: v.get("group").and_then(as_key),
        pair,
        preferred,
    })
}

fn human(e: &Evaluation) -> String {
    let mut s = String::new();
    let show = |v: Option<f32>| v.map_or("-".to_owned(), |v| format!("{v}/10"));
    for (d, v) in &e.scores {
        s.push_str(&format!("{d:<24}{}\n", show(*v)));
    }
    s.push_str(&format!(
        "{:<24}{}\n",
        "Red flags",
        e.red_flags.as_deref().unwrap_or("-")
    ));
    s.push_str(&format!("{:<24}{}\n", "Overall", show(e.overall)));
    if e.flags.is_fallback() {
        s.push_str(&format!(
            "(parsed with a fallback: overall {}, positional {})\n",
            source_name(e.flags.overall),
            e.flags.positional
        ));
    }
    for problem in e.degenerate() {
        s.push_str(&format!("warning: degenerate answer: {problem}\n"));
    }
    s
}

fn mean_std(v: &[f64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    Some((mean, var.sqrt()))
}

/// Summary metrics of a batch.
fn summary(results: &[(Item, Evaluation)], skipped: usize) -> Value {
    let overall: Vec<f64> = results
        .iter()
        .filter_map(|(_, e)| e.overall.map(f64::from))
        .collect();
    let ms = mean_std(&overall);
    // Pairs: both members scored, exactly one preferred.
    let mut pairs: BTreeMap<&str, Vec<(bool, Option<f32>)>> = BTreeMap::new();
    for (item, e) in results {
        if let (Some(p), Some(pref)) = (item.pair.as_deref(), item.preferred) {
            pairs.entry(p).or_default().push((pref, e.overall));
        }
    }
    let (mut wins, mut ties, mut losses, mut incomplete) = (0, 0, 0, 0);
    for members in pairs.values() {
        let preferred: Vec<_> = members.iter().filter(|(p, _)| *p).collect();
        let other: Vec<_> = members.iter().filter(|(p, _)| !*p).collect();
        match (preferred.as_slice(), other.as_slice()) {
            ([(_, Some(a))], [(_, Some(b))]) => {
                if a > b {
                    wins += 1;
                } else if a == b {
                    ties += 1;
                } else {
                    losses += 1;
                }
            }
            _ => incomplete += 1,
        }
    }
    let judged = wins + ties + losses;
    // Paraphrase groups: the spread of overall within each group of 2 or more.
    let mut groups: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (item, e) in results {
        if let (Some(g), Some(o)) = (item.group.as_deref(), e.overall) {
            groups.entry(g).or_default().push(f64::from(o));
        }
    }
    let spreads: Vec<f64> = groups
        .values()
        .filter(|v| v.len() >= 2)
        .filter_map(|v| mean_std(v).map(|(_, s)| s))
        .collect();
    let invariance = mean_std(&spreads).map(|(m, _)| m);
    json!({
        "evaluated": results.len(),
        "skipped_lines": skipped,
        "with_overall": overall.len(),
        "fallbacks": results.iter().filter(|(_, e)| e.flags.is_fallback()).count(),
        "overall_mean": ms.map(|(m, _)| m),
        "overall_std": ms.map(|(_, s)| s),
        "pairs": {
            "judged": judged,
            "preferred_higher": wins,
            "ties": ties,
            "preferred_lower": losses,
            "incomplete": incomplete,
            "accuracy": (judged > 0).then(|| wins as f64 / judged as f64),
        },
        "paraphrase": {
            "groups": spreads.len(),
            "mean_std": invariance,
            "threshold": INVARIANCE_THRESHOLD,
            "invariant": invariance.map(|m| m <= INVARIANCE_THRESHOLD),
        },
    })
}

fn summary_text(s: &Value) -> String {
    let f = |v: &Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.2}"));
    format!(
        "judge: {} evaluated, {} lines skipped, {} with a fallback\n\
         judge: overall mean {} std {}\n\
         judge: pairs: preferred scored higher in {} of {} ({} ties), accuracy {}\n\
         judge: paraphrase invariance: mean std {} over {} groups (threshold {})\n",
        s["evaluated"],
        s["skipped_lines"],
        s["fallbacks"],
        f(&s["overall_mean"]),
        f(&s["overall_std"]),
        s["pairs"]["preferred_higher"],
        s["pairs"]["judged"],
        s["pairs"]["ties"],
        f(&s["pairs"]["accuracy"]),
        f(&s["paraphrase"]["mean_std"]),
        s["paraphrase"]["groups"],
        INVARIANCE_THRESHOLD,
    )
}

/// Runs `acap judge`.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn run(o: &JudgeOptions) -> Result<(), String> {
    let mut rubric = match o.dimensions {
        5 => Rubric::five_dimensions(),
        6 => Rubric::six_dimensions(),
        n => return Err(format!("--dimensions {n}: must be 5 or 6")),
    };
    if let Some(sys) = &o.rubric_system {
        rubric =
            rubric.with_system_prompt(crate::axis_tools::text_or_file("--rubric-system", sys)?);
    }
    let single = match (&o.prompt, &o.response, &o.jsonl) {
        (Some(p), Some(r), None) => Some((p.clone(), r.clone())),
        (None, None, Some(_)) => None,
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err("--prompt and --response go together".into());
        }
        _ => return Err("give --prompt and --response, or --jsonl FILE".into()),
    };
    // Read the whole batch before loading the model: a missing file fails fast.
    let batch = match &o.jsonl {
        Some(path) => Some(acap_frontend::read_text(
            "--jsonl",
            path,
            acap_frontend::BATCH_LIMIT,
        )?),
        None => None,
    };
    let model = Model::load(
        &o.model,
        ModelParams::default().with_n_gpu_layers(o.n_gpu_layers),
    )
    .map_err(|e| e.to_string())?;
    crate::warn_chatml_fallback(&model, o.chat_template.as_deref());
    let mut session = Session::new(
        &model,
        SessionParams::default()
            .with_n_ctx(o.n_ctx)
            .with_threads(o.threads),
    )
    .map_err(|e| e.to_string())?;
    let mut params = EvaluatorParams::default().with_rubric(rubric);
    params.sampling.temperature = o.temperature;
    params.sampling.seed = o.seed;
    params.template = o.chat_template.clone();
    let mut evaluator = Evaluator::new(&mut session, params);

    if let Some((p, r)) = single {
        let e = evaluator.evaluate(&p, &r).map_err(|e| e.to_string())?;
        if o.json {
            crate::outln!("{}", evaluation_json(&e));
        } else {
            crate::out!("{}", human(&e));
            if o.verbose {
                crate::out!("--- raw answer ---\n{}\n", e.raw.trim_end());
            }
        }
        return Ok(());
    }

    let text = batch.unwrap_or_default();
    let mut items = Vec::new();
    let mut skipped = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_item(i + 1, line) {
            Ok(item) => items.push(item),
            Err(msg) if o.strict => return Err(format!("--jsonl: {msg} (--strict)")),
            Err(msg) => {
                eprintln!("judge: skipping {msg}");
                skipped += 1;
            }
        }
    }
    if items.is_empty() {
        return Err("--jsonl: no valid lines to evaluate".into());
    }
    if o.resume {
        let path = o.output.as_ref().expect("clap requires -o with --resume");
        let done = scored_ids(path)?;
        let before = items.len();
        items.retain(|i| i.id.is_null() || !done.contains(&i.id.to_string()));
        eprintln!(
            "judge: --resume: {} of {before} lines already in {}, {} to score",
            before - items.len(),
            path.display(),
            items.len()
        );
    }
    let mut out: Box<dyn Write> = match &o.output {
        Some(p) => {
            let mut f = std::fs::OpenOptions::new();
            if o.resume {
                f.append(true).create(true);
            } else {
                f.write(true).create(true).truncate(true);
            }
            Box::new(f.open(p).map_err(|e| format!("-o {}: {e}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut results = Vec::new();
    let total = items.len();
    let mut progress = crate::progress::Progress::new("judge", total);
    for (k, item) in items.into_iter().enumerate() {
        let e = evaluator
            .evaluate(&item.prompt, &item.response)
            .map_err(|e| format!("line {}: {e}", item.line))?;
        let mut v = evaluation_json(&e);
        v["id"] = item.id.clone();
        v["line"] = json!(item.line);
        if let Some(g) = &item.group {
            v["group"] = json!(g);
        }
        if let Some(p) = &item.pair {
            v["pair"] = json!(p);
            v["preferred"] = json!(item.preferred);
        }
        // One line at a time, flushed: a crash loses at most the line being scored.
        writeln!(out, "{v}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("-o: {e}"))?;
        results.push((item, e));
        progress.set(k + 1);
    }
    let s = summary(&results, skipped);
    eprint!("{}", summary_text(&s));
    eprintln!("judge: summary {s}");
    Ok(())
}
