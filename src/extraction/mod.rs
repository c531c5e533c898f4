//! Making axes on the deployed model (spec section 9): the last prompt token's block outputs
//! under a persona system prompt and under generic ones, read through the observer, several
//! prompts decoded together as separate sequences.
//!
//! `axis_L = mean(generic) - mean(persona)` (generic averaged over its variants first) and
//! `tau_L` = a percentile (or `mean - k*std`) of the persona projections on the unit axis.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::axis::{AxisFile, AxisWriter, normalise};
use crate::chat::ChatMessage;
use crate::error::{ChatError, DecodeError, SessionError, TokenizeError};
use crate::layers::LayerRange;
use crate::model::{Model, Token};
use crate::session::{Session, SessionParams};
use crate::tokenize::Special;

mod states;

use states::{last_token_states, render, state_session};

/// Why extraction or calibration failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// No prompts to run.
    #[error("no prompts: the prompt set is empty (after filtering)")]
    NoPrompts,
    /// The capping layers select no block of the model.
    #[error(
        "layer range {start} {end} selects no block of this {n_layer}-block model (blocks 1..{n_layer})"
    )]
    NoLayers {
        /// Range start.
        start: i64,
        /// Range end.
        end: i64,
        /// The model's blocks.
        n_layer: u32,
    },
    /// A layer asked for that the model does not have or the axis lacks.
    #[error("layer {layer}: {reason}")]
    BadLayer {
        /// The layer.
        layer: u32,
        /// Why.
        reason: String,
    },
    /// The axis does not fit the model.
    #[error("axis n_embd {axis} does not match the model's n_embd {model}")]
    EmbdMismatch {
        /// The axis length.
        axis: usize,
        /// The model's hidden size.
        model: u32,
    },
    /// A percentile outside 0..=100, or a non-finite k.
    #[error("{name} {value} {reason}")]
    BadParam {
        /// The parameter (`percentile`, `k`).
        name: &'static str,
        /// Its value.
        value: f32,
        /// Why it is refused.
        reason: &'static str,
    },
    /// See [`SessionError`].
    #[error(transparent)]
    Session(#[from] SessionError),
    /// See [`ChatError`].
    #[error(transparent)]
    Chat(#[from] ChatError),
    /// See [`TokenizeError`].
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// See [`DecodeError`].
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The observer saw rows it could not attribute to sequences.
    #[error("unexpected hidden-state layout: {0}")]
    Layout(String),
}

/// How to pick a threshold from the persona projections of a layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdRule {
    /// The given percentile (0..=100, linear interpolation as numpy's default).
    Percentile(f32),
    /// `mean - k * std` (population standard deviation).
    MeanMinusKStd(f32),
}

impl ThresholdRule {
    fn check(self) -> Result<Self, ExtractError> {
        match self {
            Self::Percentile(p) if !(0.0..=100.0).contains(&p) => Err(ExtractError::BadParam {
                name: "percentile",
                value: p,
                reason: "must be in 0..=100",
            }),
            Self::MeanMinusKStd(k) if !k.is_finite() => Err(ExtractError::BadParam {
                name: "k",
                value: k,
                reason: "(of mean - k * std) is not a finite number",
            }),
            r => Ok(r),
        }
    }

    fn apply(self, s: &ProjectionStats, values: &[f32]) -> f32 {
        match self {
            Self::Percentile(p) => percentile(values, p),
            Self::MeanMinusKStd(k) => s.mean - k * s.std,
        }
    }
}

/// Settings of an extraction or calibration run.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractParams {
    /// The persona system prompt.
    pub persona_system: String,
    /// Generic system prompts; `None` (or an empty string) means no system prompt.
    pub generic_systems: Vec<Option<String>>,
    /// Prompt tokens kept (the rendered chat prompt is cut to this many, as the reference did).
    pub max_tokens: usize,
    /// The capping layers (`--cap-layers A B`, inclusive; `<= 0` for the defaults).
    pub cap_layers: LayerRange,
    /// How thresholds are chosen.
    pub rule: ThresholdRule,
    /// Sequences decoded together (1: one by one).
    pub batch_sequences: u32,
    /// Tokens per batch (all sequences of a batch together).
    pub batch_tokens: u32,
    /// Threads (0: all cores).
    pub threads: u32,
    /// Chat template name or text; `None` uses the model's.
    pub template: Option<String>,
}

impl Default for ExtractParams {
    fn default() -> Self {
        Self {
            persona_system: String::new(),
            generic_systems: vec![None],
            max_tokens: 512,
            cap_layers: LayerRange::default(),
            rule: ThresholdRule::Percentile(25.0),
            batch_sequences: 8,
            batch_tokens: 2048,
            threads: 0,
            template: None,
        }
    }
}

/// Distribution of the persona projections of one layer on its unit axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProjectionStats {
    /// The chosen threshold.
    pub tau: f32,
    /// Mean.
    pub mean: f32,
    /// Population standard deviation.
    pub std: f32,
    /// Minimum.
    pub min: f32,
    /// Maximum.
    pub max: f32,
    /// 25th percentile.
    pub p25: f32,
    /// Median.
    pub p50: f32,
    /// 75th percentile.
    pub p75: f32,
}

/// The result of [`extract`].
#[derive(Debug, Clone, PartialEq)]
pub struct Extraction {
    /// The model's blocks.
    pub n_layer: u32,
    /// Hidden size.
    pub n_embd: usize,
    /// Prompts run (each under every condition).
    pub n_samples: usize,
    /// The capping layers, in order.
    pub capping_layers: Vec<u32>,
    /// Raw axes `mean(generic) - mean(persona)` of the capping layers.
    pub axes: BTreeMap<u32, Vec<f32>>,
    /// `||axis||` per capping layer.
    pub norms: BTreeMap<u32, f32>,
    /// Threshold and projection statistics per capping layer.
    pub thresholds: BTreeMap<u32, ProjectionStats>,
}

impl Extraction {
    /// An axis file in the reference layout (`direction.L`, `acap.threshold.L`) plus acap's
    /// self-describing keys.
    pub fn to_writer(&self, model_hint: &str, rule: ThresholdRule) -> AxisWriter {
        let mut w = AxisWriter::new()
            .with_model_hint(model_hint)
            .with_hook("l_out")
            .with_operation("cap")
            .with_metadata("acap.n_layer", self.n_layer)
            .with_metadata("acap.n_samples", self.n_samples as u32);
        w = match rule {
            ThresholdRule::Percentile(p) => w.with_metadata("acap.threshold_percentile", p),
            ThresholdRule::MeanMinusKStd(k) => {
                w.with_metadata("acap.threshold_mean_minus_k_std", k)
            }
        };
        for (&l, v) in &self.axes {
            w = w.with_direction(l, v.clone());
        }
        for (&l, s) in &self.thresholds {
            w = w.with_threshold(l, s.tau);
        }
        w
    }
}

/// A percentile with linear interpolation between order statistics (numpy's default).
pub fn percentile(values: &[f32], p: f32) -> f32 {
    if values.is_empty() {
        return f32::NAN;
    }
    let mut v: Vec<f64> = values.iter().map(|&x| f64::from(x)).collect();
    v.sort_by(f64::total_cmp);
    let rank = f64::from(p) / 100.0 * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    (v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)) as f32
}

fn stats(values: &[f32], rule: ThresholdRule) -> ProjectionStats {
    let n = values.len() as f64;
    let mean = values.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    let mut s = ProjectionStats {
        tau: 0.0,
        mean: mean as f32,
        std: var.sqrt() as f32,
        min: values.iter().copied().fold(f32::INFINITY, f32::min),
        max: values.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        p25: percentile(values, 25.0),
        p50: percentile(values, 50.0),
        p75: percentile(values, 75.0),
    };
    s.tau = rule.apply(&s, values);
    s
}

fn check_layers(model: &Model, range: LayerRange) -> Result<Vec<u32>, ExtractError> {
    let layers: Vec<u32> = range.blocks(model.n_layer()).collect();
    if layers.is_empty() {
        return Err(ExtractError::NoLayers {
            start: range.start,
            end: range.end,
            n_layer: model.n_layer(),
        });
    }
    Ok(layers)
}

/// Extracts axes and thresholds from `prompts` on `model` (spec section 9). `progress` is
/// called with (sequences done, total).
///
/// # Errors
/// See [`ExtractError`]: each variant says what was wrong.
pub fn extract(
    model: &Model,
    prompts: &[String],
    params: &ExtractParams,
    mut progress: impl FnMut(usize, usize),
) -> Result<Extraction, ExtractError> {
    let rule = params.rule.check()?;
    if prompts.is_empty() {
        return Err(ExtractError::NoPrompts);
    }
    let layers = check_layers(model, params.cap_layers)?;
    let generics: Vec<Option<&str>> = if params.generic_systems.is_empty() {
        vec![None]
    } else {
        params
            .generic_systems
            .iter()
            .map(Option::as_deref)
            .collect()
    };
    // Each condition is decoded on its own (persona first, then each generic), packed into
    // batches exactly as `calibrate` packs the persona prompts: a batch's shape changes
    // llama.cpp's kernels slightly, so the same batches are what make `calibrate` on the same
    // model and prompts give back these thresholds exactly.
    let per_prompt = 1 + generics.len();
    let conditions: Vec<Option<&str>> = std::iter::once(Some(params.persona_system.as_str()))
        .chain(generics.iter().copied())
        .collect();
    let rendered = conditions
        .iter()
        .map(|c| {
            prompts
                .iter()
                .map(|p| render(model, p, *c, params))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let longest = rendered.iter().flatten().map(Vec::len).max().unwrap_or(1);
    let mut session = state_session(model, params, longest)?;
    let n_layer = model.n_layer();
    let total = prompts.len() * per_prompt;
    let mut by_condition = Vec::with_capacity(per_prompt);
    for (i, seqs) in rendered.iter().enumerate() {
        let done = i * prompts.len();
        by_condition.push(
            last_token_states(
                &mut session,
                n_layer,
                seqs,
                params.batch_sequences.max(1) as usize,
                (params.batch_tokens as usize).max(longest),
                &mut |d, _| progress(done + d, total),
            )?
            .into_iter(),
        );
    }
    // Back to one chunk per prompt: persona, then each generic.
    let mut states = Vec::with_capacity(total);
    for _ in prompts {
        for c in by_condition.iter_mut() {
            states.extend(c.next());
        }
    }
    let n_embd = model.n_embd() as usize;
    let mut axes = BTreeMap::new();
    let mut norms = BTreeMap::new();
    let mut thresholds = BTreeMap::new();
    for &l in &layers {
        let li = l as usize;
        // Accumulated in f64: means over hundreds of prompts.
        let mut persona = vec![0f64; n_embd];
        let mut generic = vec![0f64; n_embd];
        for chunk in states.chunks(per_prompt) {
            for (acc, x) in persona.iter_mut().zip(&chunk[0][li]) {
                *acc += f64::from(*x);
            }
            let mut avg = vec![0f64; n_embd];
            for g in &chunk[1..] {
                for (acc, x) in avg.iter_mut().zip(&g[li]) {
                    *acc += f64::from(*x);
                }
            }
            for (acc, a) in generic.iter_mut().zip(avg) {
                *acc += a / generics.len() as f64;
            }
        }
        let n = prompts.len() as f64;
        let axis: Vec<f32> = generic
            .iter()
            .zip(&persona)
            .map(|(g, p)| ((g - p) / n) as f32)
            .collect();
        let unit = normalise(axis.clone());
        let projections: Vec<f32> = states
            .chunks(per_prompt)
            .map(|chunk| crate::cap::dot(&unit.unit, &chunk[0][li]))
            .collect();
        thresholds.insert(l, stats(&projections, rule));
        norms.insert(l, unit.norm);
        axes.insert(l, axis);
    }
    Ok(Extraction {
        n_layer,
        n_embd,
        n_samples: prompts.len(),
        capping_layers: layers,
        axes,
        norms,
        thresholds,
    })
}

/// New thresholds for an existing axis on a (possibly different, e.g. quantised) model.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Prompts run.
    pub n_samples: usize,
    /// Per calibrated layer: the file's old threshold (if any) and the new statistics.
    pub layers: BTreeMap<u32, (Option<f32>, ProjectionStats)>,
}

impl Calibration {
    /// The axis file with its directions and metadata kept and the thresholds replaced.
    pub fn to_writer(&self, axis: &AxisFile, rule: ThresholdRule) -> AxisWriter {
        let mut w = AxisWriter::from(axis);
        w = match rule {
            ThresholdRule::Percentile(p) => w.with_metadata("acap.threshold_percentile", p),
            ThresholdRule::MeanMinusKStd(k) => {
                w.with_metadata("acap.threshold_mean_minus_k_std", k)
            }
        };
        for (&l, (_, s)) in &self.layers {
            w = w.with_threshold(l, s.tau);
        }
        w
    }
}

/// Recomputes the thresholds of `axis` on `model` from the persona projections of `prompts`,
/// for the axis layers within `params.cap_layers` (generic system prompts are not used).
///
/// # Errors
/// See [`ExtractError`]: each variant says what was wrong.
pub fn calibrate(
    model: &Model,
    axis: &AxisFile,
    prompts: &[String],
    params: &ExtractParams,
    mut progress: impl FnMut(usize, usize),
) -> Result<Calibration, ExtractError> {
    let rule = params.rule.check()?;
    if prompts.is_empty() {
        return Err(ExtractError::NoPrompts);
    }
    if axis.n_embd() != model.n_embd() as usize {
        return Err(ExtractError::EmbdMismatch {
            axis: axis.n_embd(),
            model: model.n_embd(),
        });
    }
    let range: Vec<u32> = check_layers(model, params.cap_layers)?;
    let layers: Vec<u32> = axis
        .directions()
        .keys()
        .copied()
        .filter(|l| range.contains(l))
        .collect();
    if layers.is_empty() {
        return Err(ExtractError::BadLayer {
            layer: range[0],
            reason: format!(
                "the axis has no direction in blocks {}..={} of this model",
                range[0],
                range[range.len() - 1]
            ),
        });
    }
    let seqs = prompts
        .iter()
        .map(|p| render(model, p, Some(&params.persona_system), params))
        .collect::<Result<Vec<_>, _>>()?;
    let longest = seqs.iter().map(Vec::len).max().unwrap_or(1);
    let mut session = state_session(model, params, longest)?;
    let states = last_token_states(
        &mut session,
        model.n_layer(),
        &seqs,
        params.batch_sequences.max(1) as usize,
        (params.batch_tokens as usize).max(longest),
        &mut progress,
    )?;
    let mut out = BTreeMap::new();
    for l in layers {
        let unit = normalise(axis.direction(l).expect("filtered above").to_vec());
        let projections: Vec<f32> = states
            .iter()
            .map(|s| crate::cap::dot(&unit.unit, &s[l as usize]))
            .collect();
        out.insert(
            l,
            (
                axis.thresholds().get(&l).copied(),
                stats(&projections, rule),
            ),
        );
    }
    Ok(Calibration {
        n_samples: prompts.len(),
        layers: out,
    })
}

/// The last prompt token's output of every block for each prompt rendered under `system`,
/// `[prompt][block]`: what [`extract`] averages, for inspecting projections.
///
/// # Errors
/// See [`ExtractError`]: each variant says what was wrong.
pub fn persona_states(
    model: &Model,
    prompts: &[String],
    system: Option<&str>,
    params: &ExtractParams,
) -> Result<Vec<Vec<Vec<f32>>>, ExtractError> {
    if prompts.is_empty() {
        return Err(ExtractError::NoPrompts);
    }
    let seqs = prompts
        .iter()
        .map(|p| render(model, p, system, params))
        .collect::<Result<Vec<_>, _>>()?;
    let longest = seqs.iter().map(Vec::len).max().unwrap_or(1);
    let mut session = state_session(model, params, longest)?;
    last_token_states(
        &mut session,
        model.n_layer(),
        &seqs,
        params.batch_sequences.max(1) as usize,
        (params.batch_tokens as usize).max(longest),
        &mut |_, _| {},
    )
}
