//! A readable report of axis files as `--acap` would combine them.

use super::error::{AxisError, ThresholdError};
use super::file::AxisFile;
use super::set::{AxisSet, MIN_NORM};
use super::threshold::ThresholdSource;

/// Per file: n_embd, directions, threshold keys and hints; then per layer the norm of the
/// summed direction and the threshold that applies, with its source. Every valid set of files
/// is shown: without per-layer thresholds and without a global one the tau column is empty and
/// a last line says that capping with these axes needs a global threshold. Fails where the
/// files cannot be combined (mismatched lengths) or the global threshold is not finite.
///
/// # Errors
/// See [`AxisError`]: each variant says what was wrong.
pub fn report(files: Vec<AxisFile>, cli_threshold: Option<f32>) -> Result<String, AxisError> {
    let mut out = String::new();
    for f in &files {
        out += &format!(
            "axis file {}: n_embd {}, {} direction(s), {} threshold key(s)",
            f.origin(),
            f.n_embd(),
            f.directions().len(),
            f.thresholds().len()
        );
        for (name, v) in [
            ("model", f.model_hint()),
            ("hook", f.hook()),
            ("op", f.operation()),
        ] {
            if let Some(v) = v {
                out += &format!(", {name} {v}");
            }
        }
        out += "\n";
    }
    let set = AxisSet::new(files)?;
    let thresholds = match set.thresholds(cli_threshold) {
        Ok(t) => Some(t),
        Err(ThresholdError::Missing { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    out += "layer        norm         tau  source\n";
    for (&layer, axis) in set.layers() {
        let (tau, source) = match &thresholds {
            Some(t) => {
                let th = t.for_layer(layer);
                let source = match th.source {
                    ThresholdSource::File => format!("file (acap.threshold.{layer})"),
                    ThresholdSource::Cli => "global threshold (negated)".into(),
                    ThresholdSource::DefaultOne => "default (global 1.0, negated)".into(),
                };
                (format!("{:>11.4}", th.tau), source)
            }
            None => (format!("{:>11}", "-"), "none".to_owned()),
        };
        let note = if axis.norm > MIN_NORM {
            ""
        } else {
            "  [zero axis: no-op]"
        };
        out += &format!("{layer:>5} {:>11.4} {tau}  {source}{note}\n", axis.norm);
    }
    if thresholds.is_none() {
        out += &format!(
            "no thresholds: {} has no per-layer thresholds (acap.threshold.N); capping with these axes needs a positive global threshold (tau = -T)\n",
            set.origins()[0]
        );
    }
    Ok(out)
}
