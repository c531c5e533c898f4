//! `--acap*` and `--control-vector*` flags.

use std::ffi::OsString;
use std::path::PathBuf;

use acap::axis::ThresholdError;
use acap::{AxisSet, CapConfig, CapError, ControlVector, LayerRange};
use clap::Args;

/// How a front end names the capping settings: flags on a command line, fields in a request.
#[derive(Debug, Clone, Copy)]
pub struct Names {
    /// The axis files.
    pub axes: &'static str,
    /// The global threshold.
    pub threshold: &'static str,
    /// The capped blocks.
    pub layer_range: &'static str,
    /// The cap strength.
    pub alpha: &'static str,
}

impl Names {
    /// llama-cli's and llama-server's flags.
    pub const FLAGS: Names = Names {
        axes: "--acap",
        threshold: "--acap-threshold",
        layer_range: "--acap-layer-range",
        alpha: "--acap-alpha",
    };
    /// The fields of acap-server's per-request `acap` object.
    pub const JSON: Names = Names {
        axes: "acap",
        threshold: "acap.threshold",
        layer_range: "acap.layer_range",
        alpha: "acap.alpha",
    };
}

/// A capping error with the flag or field that caused it in front, and what to pass instead.
pub fn cap_error(e: &CapError, names: Names) -> String {
    match e {
        CapError::BadAlpha(_) => format!("{}: {e}", names.alpha),
        CapError::NothingCapped { .. } => format!("{}: {e}", names.layer_range),
        CapError::Threshold(ThresholdError::Missing { .. }) => format!(
            "{}: {e}; pass {} T (tau = -T) or use an axis file with thresholds",
            names.axes, names.threshold
        ),
        CapError::Threshold(ThresholdError::NotFinite { .. }) => {
            format!("{}: {e}", names.threshold)
        }
        CapError::EmbdMismatch { .. } | CapError::NoHookPoint { .. } => {
            format!("{}: {e}", names.axes)
        }
        e => e.to_string(),
    }
}

/// A `START END` pair given as a flag with two values.
///
/// # Errors
/// Anything but exactly two numbers, naming `flag`.
pub fn layer_range(flag: &str, values: Option<&[i64]>) -> Result<Option<LayerRange>, String> {
    match values {
        None => Ok(None),
        Some(&[a, b]) => Ok(Some(LayerRange::new(a, b))),
        Some(v) => Err(format!(
            "{flag} needs two numbers START END, got {} value(s)",
            v.len()
        )),
    }
}

/// The blocks to cap: the user's range, or 7 blocks at the relative depth of 22..28 of a
/// 32-block model (fewer in models with fewer blocks).
pub fn capped_blocks(n_layer: u32, range: Option<(i64, i64)>) -> std::ops::RangeInclusive<u32> {
    if let Some((a, b)) = range {
        return LayerRange::new(a, b).blocks(n_layer);
    }
    let count = 7.min(n_layer.saturating_sub(1)).max(1);
    let start = ((22.0 / 32.0) * f64::from(n_layer)).round() as u32;
    let start = start.clamp(1, n_layer.saturating_sub(count).max(1));
    start..=(start + count - 1).min(n_layer.saturating_sub(1))
}

/// Activation capping: `--acap`, `--acap-threshold`, `--acap-layer-range`, `--acap-alpha`.
#[derive(Debug, Clone, Default, Args)]
pub struct CapArgs {
    /// Axis file (repeatable: vectors summed, thresholds from the first).
    #[arg(long = "acap", value_name = "FNAME")]
    pub acap: Vec<PathBuf>,
    /// Threshold for layers without `acap.threshold.N` (tau = -T).
    #[arg(
        long = "acap-threshold",
        value_name = "T",
        allow_negative_numbers = true
    )]
    pub acap_threshold: Option<f32>,
    /// Capped blocks, inclusive (default: 1 .. last; block 0 never).
    #[arg(long = "acap-layer-range", num_args = 2, value_names = ["START", "END"], allow_negative_numbers = true)]
    pub acap_layer_range: Option<Vec<i64>>,
    /// Cap strength in 0..1 (default: 1.0 = hard cap).
    #[arg(long = "acap-alpha", value_name = "A", allow_negative_numbers = true)]
    pub acap_alpha: Option<f32>,
}

impl CapArgs {
    /// The capping asked for, checked as far as it can be without a model: files readable and
    /// consistent, a threshold for every layer, a finite alpha in 0..=1, a two-number range.
    /// `None` when no `--acap` was given (any other `--acap-*` flag is then an error).
    ///
    /// # Errors
    /// A message naming the flag and the value.
    pub fn config(&self) -> Result<Option<CapConfig>, String> {
        let names = Names::FLAGS;
        if self.acap.is_empty() {
            for (given, flag) in [
                (self.acap_threshold.is_some(), names.threshold),
                (self.acap_layer_range.is_some(), names.layer_range),
                (self.acap_alpha.is_some(), names.alpha),
            ] {
                if given {
                    return Err(format!("{flag} needs {} AXIS_FILE", names.axes));
                }
            }
            return Ok(None);
        }
        let axes = AxisSet::open(&self.acap).map_err(|e| e.to_string())?;
        let mut cfg = CapConfig::new(axes).with_threshold(self.acap_threshold);
        if let Some(r) = layer_range(names.layer_range, self.acap_layer_range.as_deref())? {
            cfg = cfg.with_layer_range(r);
        }
        if let Some(alpha) = self.acap_alpha {
            cfg = cfg.with_alpha(alpha);
        }
        cfg.validate().map_err(|e| cap_error(&e, names))?;
        Ok(Some(cfg))
    }
}

/// H-neuron suppression: `--h-suppress` (spec section 10).
#[derive(Debug, Clone, Default, Args)]
pub struct HSuppressArgs {
    /// H-neuron suppression file (GGUF with F32 `h_suppress.N` tensors of length n_ff).
    #[arg(long = "h-suppress", value_name = "FNAME")]
    pub h_suppress: Option<PathBuf>,
}

impl HSuppressArgs {
    /// The suppression file, strictly validated (its fit to the model is checked when the
    /// session or engine is created), or `None` when none was given.
    ///
    /// # Errors
    /// A message naming `--h-suppress`, the file and what is wrong with it.
    pub fn load(&self) -> Result<Option<std::sync::Arc<acap::HSuppress>>, String> {
        self.h_suppress
            .as_ref()
            .map(|p| {
                acap::HSuppress::open(p)
                    .map(std::sync::Arc::new)
                    .map_err(|e| format!("--h-suppress: {e}"))
            })
            .transpose()
    }

    /// The message of a suppression file that does not fit the model.
    pub fn fit_error(e: &acap::HSuppressError) -> String {
        format!("--h-suppress: {e}")
    }
}

/// Control vectors: `--control-vector`, `--control-vector-scaled`,
/// `--control-vector-layer-range`.
#[derive(Debug, Clone, Default, Args)]
pub struct ControlVectorArgs {
    /// Add a control vector (repeatable).
    #[arg(long = "control-vector", value_name = "FNAME")]
    pub control_vector: Vec<PathBuf>,
    /// Add control vectors with scales, `FNAME:SCALE,...` (llama.cpp) or `FNAME SCALE`
    /// (older releases); repeatable.
    #[arg(long = "control-vector-scaled", num_args = 1..=2, value_names = ["FNAME:SCALE", "SCALE"], allow_negative_numbers = true)]
    pub control_vector_scaled: Vec<OsString>,
    /// Blocks the control vectors apply to (inclusive).
    #[arg(long = "control-vector-layer-range", num_args = 2, value_names = ["START", "END"], allow_negative_numbers = true)]
    pub control_vector_layer_range: Option<Vec<i64>>,
}

impl ControlVectorArgs {
    /// The summed control vectors, or `None` when no file was given (a layer range alone is
    /// then an error).
    ///
    /// # Errors
    /// A message naming the flag and the value.
    pub fn control_vector(&self) -> Result<Option<ControlVector>, String> {
        let mut files: Vec<(PathBuf, f32)> = self
            .control_vector
            .iter()
            .map(|p| (p.clone(), 1.0))
            .collect();
        files.extend(scaled_files(
            "--control-vector-scaled",
            &self.control_vector_scaled,
        )?);
        let range = layer_range(
            "--control-vector-layer-range",
            self.control_vector_layer_range.as_deref(),
        )?;
        if files.is_empty() {
            if range.is_some() {
                return Err("--control-vector-layer-range needs --control-vector".into());
            }
            return Ok(None);
        }
        let mut cv = ControlVector::load(&files).map_err(|e| e.to_string())?;
        if let Some(r) = range {
            cv = cv.with_layer_range(r);
        }
        Ok(Some(cv))
    }
}

/// The files and scales of `--lora-scaled` / `--control-vector-scaled`, their values as clap
/// collected them: llama.cpp's `FNAME:SCALE,...` (one value) or the older `FNAME SCALE` (two
/// values: a first one that does not end in `:SCALE` followed by a number).
///
/// # Errors
/// A message naming `flag` and the item that is not `FNAME:SCALE` or whose scale is not a
/// finite number.
pub fn scaled_files(flag: &str, values: &[OsString]) -> Result<Vec<(PathBuf, f32)>, String> {
    let number = |s: &str| s.trim().parse::<f32>().ok().filter(|s| s.is_finite());
    let scale_of = |item: &str, scale: &str| {
        number(scale).ok_or_else(|| format!("{flag} {item}: the scale '{scale}' is not a number"))
    };
    let mut out = Vec::new();
    let mut iter = values.iter().peekable();
    while let Some(value) = iter.next() {
        let text = value.to_str();
        let is_list = text
            .and_then(|t| t.rsplit_once(':'))
            .is_some_and(|(_, s)| number(s).is_some());
        let next_scale = iter.peek().and_then(|v| v.to_str()).and_then(number);
        if let (false, Some(scale)) = (is_list, next_scale) {
            iter.next();
            out.push((PathBuf::from(value), scale));
            continue;
        }
        let Some(list) = text else {
            return Err(format!(
                "{flag} {}: not valid UTF-8; give such a path as {flag} FNAME SCALE",
                value.to_string_lossy()
            ));
        };
        for item in list.split(',') {
            let Some((file, scale)) = item.rsplit_once(':') else {
                return Err(format!("{flag} {item}: expected FNAME:SCALE"));
            };
            out.push((PathBuf::from(file), scale_of(item, scale)?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_exactly_two_numbers() {
        assert_eq!(layer_range("--r", None), Ok(None));
        assert_eq!(
            layer_range("--r", Some(&[2, 5])),
            Ok(Some(LayerRange::new(2, 5)))
        );
        let e = layer_range("--r", Some(&[1, 2, 3, 4])).unwrap_err();
        assert!(e.contains("--r") && e.contains("4 value"), "{e}");
    }

    #[test]
    fn capping_flags_without_an_axis_file_are_refused() {
        let a = CapArgs {
            acap_alpha: Some(0.5),
            ..CapArgs::default()
        };
        assert_eq!(
            a.config().unwrap_err(),
            "--acap-alpha needs --acap AXIS_FILE"
        );
        let c = ControlVectorArgs {
            control_vector_layer_range: Some(vec![1, 2]),
            ..ControlVectorArgs::default()
        };
        assert!(
            c.control_vector()
                .unwrap_err()
                .contains("needs --control-vector")
        );
    }

    #[test]
    fn errors_name_the_flag_or_the_field() {
        let e = CapError::BadAlpha(2.0);
        assert_eq!(
            cap_error(&e, Names::FLAGS),
            "--acap-alpha: alpha 2 must be a number in 0..=1"
        );
        assert_eq!(
            cap_error(&e, Names::JSON),
            "acap.alpha: alpha 2 must be a number in 0..=1"
        );
        let e = CapError::Threshold(ThresholdError::Missing {
            origin: "a.gguf".into(),
        });
        let m = cap_error(&e, Names::FLAGS);
        assert!(
            m.starts_with("--acap: ") && m.contains("pass --acap-threshold T"),
            "{m}"
        );
    }
}
