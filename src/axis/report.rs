//! A readable report of axis files as `--acap` would combine them.

use super::error::AxisError;
use super::file::AxisFile;
use super::set::{AxisSet, MIN_NORM};
use super::threshold::ThresholdSource;

/// Per file: n_embd, directions, threshold keys and hints; then per layer the norm of the
/// summed direction and the threshold that applies, with its source. Fails exactly where
/// `--acap` would (mismatched files, no resolvable threshold).
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
    let thresholds = set.thresholds(cli_threshold)?;
    out += "layer        norm         tau  source\n";
    for (&layer, axis) in set.layers() {
        let th = thresholds.for_layer(layer);
        let source = match th.source {
            ThresholdSource::File => format!("file (acap.threshold.{layer})"),
            ThresholdSource::Cli => "global threshold (negated)".into(),
            ThresholdSource::DefaultOne => "default (global 1.0, negated)".into(),
        };
        let note = if axis.norm > MIN_NORM {
            ""
        } else {
            "  [zero axis: no-op]"
        };
        out += &format!(
            "{layer:>5} {:>11.4} {:>11.4}  {source}{note}\n",
            axis.norm, th.tau
        );
    }
    Ok(out)
}
