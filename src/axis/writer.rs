//! Writing axis files in the reference layout.

use std::collections::BTreeMap;
use std::path::Path;

use acap_gguf::{GgufWriter, Value};

use super::error::AxisWriteError;
use super::file::AxisFile;
use super::{DIRECTION_PREFIX, KEY_HOOK, KEY_MODEL_HINT, KEY_OPERATION, THRESHOLD_PREFIX};

/// Builds an axis file the reference llama.cpp loads unchanged: GGUF v3, default alignment,
/// `direction.N` F32 tensors in layer order, `acap.threshold.N` FLOAT32 keys, no
/// `general.architecture`. Self-describing `acap.*` keys are added only when set.
///
/// ```
/// use acap::AxisWriter;
/// let bytes = AxisWriter::new()
///     .with_direction(22, vec![0.6, 0.8])
///     .with_threshold(22, -3.5)
///     .with_hook("l_out")
///     .to_bytes()?;
/// let file = acap::AxisFile::from_bytes(bytes)?;
/// assert_eq!(file.thresholds()[&22], -3.5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct AxisWriter {
    directions: BTreeMap<u32, Vec<f32>>,
    thresholds: BTreeMap<u32, f32>,
    extra: Vec<(String, Value)>,
}

impl AxisWriter {
    /// An empty axis file (at least one direction must be added before writing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the raw (unnormalised) direction of block `layer`.
    #[must_use]
    pub fn with_direction(mut self, layer: u32, direction: Vec<f32>) -> Self {
        self.directions.insert(layer, direction);
        self
    }

    /// Sets the raw threshold `tau` of block `layer`.
    #[must_use]
    pub fn with_threshold(mut self, layer: u32, tau: f32) -> Self {
        self.thresholds.insert(layer, tau);
        self
    }

    /// Records the model the axis was made for (`acap.model_hint`).
    #[must_use]
    pub fn with_model_hint(self, hint: impl Into<String>) -> Self {
        self.with_metadata(KEY_MODEL_HINT, hint.into())
    }

    /// Records the hooked tensor, e.g. `l_out` (`acap.hook`).
    #[must_use]
    pub fn with_hook(self, hook: impl Into<String>) -> Self {
        self.with_metadata(KEY_HOOK, hook.into())
    }

    /// Records the operation, e.g. `cap` (`acap.operation`).
    #[must_use]
    pub fn with_operation(self, op: impl Into<String>) -> Self {
        self.with_metadata(KEY_OPERATION, op.into())
    }

    /// Adds any other metadata key (replacing an earlier value of the same key). Keys under
    /// `acap.threshold.` must go through [`AxisWriter::with_threshold`].
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        let key = key.into();
        self.extra.retain(|(k, _)| *k != key);
        self.extra.push((key, value.into()));
        self
    }

    /// Builds the GGUF after checking every rule a reader applies.
    ///
    /// # Errors
    /// See [`AxisWriteError`]: each variant says what was wrong.
    pub fn to_gguf(&self) -> Result<GgufWriter, AxisWriteError> {
        let invalid = |reason: String| AxisWriteError::Invalid { reason };
        let Some((_, first)) = self.directions.iter().next() else {
            return Err(invalid("no directions".into()));
        };
        let n_embd = first.len();
        for (&layer, v) in &self.directions {
            if layer == 0 {
                return Err(invalid(
                    "direction for layer 0 (block 0 is never capped)".into(),
                ));
            }
            if v.len() != n_embd {
                return Err(invalid(format!(
                    "direction.{layer} has length {}, others {n_embd}",
                    v.len()
                )));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(invalid(format!(
                    "direction.{layer} has a NaN or infinite element"
                )));
            }
        }
        for (&layer, tau) in &self.thresholds {
            if layer == 0 || !tau.is_finite() {
                return Err(invalid(format!("threshold {tau} for layer {layer}")));
            }
        }
        if let Some((key, _)) = self
            .extra
            .iter()
            .find(|(k, _)| k.starts_with(THRESHOLD_PREFIX))
        {
            return Err(invalid(format!(
                "key '{key}' must be set with with_threshold"
            )));
        }

        let mut w = GgufWriter::new();
        for (key, value) in &self.extra {
            w.set(key.clone(), value.clone())?;
        }
        for (&layer, &tau) in &self.thresholds {
            w.set(format!("{THRESHOLD_PREFIX}{layer}"), tau)?;
        }
        for (&layer, v) in &self.directions {
            w.add_f32(&format!("{DIRECTION_PREFIX}{layer}"), &[n_embd as u64], v)?;
        }
        Ok(w)
    }

    /// The file's bytes.
    ///
    /// # Errors
    /// See [`AxisWriteError`]: each variant says what was wrong.
    pub fn to_bytes(&self) -> Result<Vec<u8>, AxisWriteError> {
        Ok(self.to_gguf()?.into_bytes()?)
    }

    /// Writes the file atomically to `path`.
    ///
    /// # Errors
    /// See [`AxisWriteError`]: each variant says what was wrong.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<(), AxisWriteError> {
        self.to_gguf()?.write_file(path)?;
        Ok(())
    }
}

impl From<&AxisFile> for AxisWriter {
    /// A writer that reproduces a file's directions, thresholds and `acap.*` hints.
    fn from(file: &AxisFile) -> Self {
        let mut w = Self::new();
        for (&layer, v) in file.directions() {
            w = w.with_direction(layer, v.clone());
        }
        for (&layer, &tau) in file.thresholds() {
            w = w.with_threshold(layer, tau);
        }
        if let Some(h) = file.model_hint() {
            w = w.with_model_hint(h);
        }
        if let Some(h) = file.hook() {
            w = w.with_hook(h);
        }
        if let Some(op) = file.operation() {
            w = w.with_operation(op);
        }
        w
    }
}
