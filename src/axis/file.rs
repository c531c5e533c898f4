//! One axis file, validated by exactly the rules of spec section 3.

use std::collections::BTreeMap;
use std::path::Path;

use acap_gguf::{GgmlType, GgufFile, Value};

use super::error::AxisFileError;
use super::{DIRECTION_PREFIX, KEY_HOOK, KEY_MODEL_HINT, KEY_OPERATION, THRESHOLD_PREFIX};

/// A validated axis file: raw (not normalised) direction vectors per layer and the per-layer
/// thresholds it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisFile {
    origin: String,
    n_embd: usize,
    directions: BTreeMap<u32, Vec<f32>>,
    thresholds: BTreeMap<u32, f32>,
    model_hint: Option<String>,
    hook: Option<String>,
    operation: Option<String>,
}

impl AxisFile {
    /// Opens and validates an axis file.
    ///
    /// # Errors
    /// See [`AxisFileError`]: each variant says what was wrong.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AxisFileError> {
        let gguf = GgufFile::open(path)?;
        Self::from_gguf(&gguf)
    }

    /// Validates an axis file held in memory (reported as `<memory>` in errors).
    ///
    /// # Errors
    /// See [`AxisFileError`]: each variant says what was wrong.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, AxisFileError> {
        let gguf = GgufFile::from_bytes(bytes).map_err(|source| AxisFileError::Parse {
            origin: "<memory>".into(),
            source,
        })?;
        Self::from_gguf(&gguf)
    }

    /// Validates an already parsed GGUF as an axis file.
    ///
    /// # Errors
    /// See [`AxisFileError`]: each variant says what was wrong.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, AxisFileError> {
        let origin = gguf
            .path()
            .map_or_else(|| "<memory>".to_owned(), |p| p.display().to_string());
        if gguf.tensors().is_empty() {
            return Err(AxisFileError::NoTensors { origin });
        }
        // Directions read from the wrong bytes must not pass as an axis.
        let bytes = gguf.trailing_bytes();
        if bytes > 0 {
            return Err(AxisFileError::TrailingData { origin, bytes });
        }

        let mut directions: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
        let mut first: Option<(&str, u64)> = None;
        for info in gguf.tensors() {
            let name = info.name();
            let layer = direction_layer(name, &origin)?;
            if info.ggml_type() != GgmlType::F32 {
                return Err(AxisFileError::NotF32 {
                    origin,
                    name: name.into(),
                    ty: info.ggml_type(),
                });
            }
            let &[len] = info.dims() else {
                return Err(AxisFileError::NotOneDimensional {
                    origin,
                    name: name.into(),
                    dims: info.dims().to_vec(),
                });
            };
            match first {
                None => first = Some((name, len)),
                Some((first_name, expected)) if len != expected => {
                    return Err(AxisFileError::LengthMismatch {
                        origin,
                        name: name.into(),
                        len,
                        first: first_name.into(),
                        expected,
                    });
                }
                Some(_) => {}
            }
            let values = gguf
                .view(info)
                .to_f32_vec()
                .expect("F32 tensors always convert");
            if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(AxisFileError::NonFiniteDirection {
                    origin,
                    name: name.into(),
                    index,
                    value,
                });
            }
            // Several tensors for one layer (`direction.5` and `direction.05`) are summed, in
            // file order, starting from zeros, as the reference does.
            let sum = directions
                .entry(layer)
                .or_insert_with(|| vec![0.0; values.len()]);
            for (s, v) in sum.iter_mut().zip(&values) {
                *s += v;
            }
        }
        let n_embd = first.map_or(0, |(_, len)| len as usize);

        let mut thresholds = BTreeMap::new();
        for (key, value) in gguf.metadata() {
            let Some(layer) = key.strip_prefix(THRESHOLD_PREFIX).and_then(canonical_index) else {
                continue;
            };
            match *value {
                Value::F32(tau) if tau.is_finite() => {
                    thresholds.insert(layer, tau);
                }
                Value::F32(tau) => {
                    return Err(AxisFileError::NonFiniteThreshold {
                        origin,
                        key: key.clone(),
                        value: tau,
                    });
                }
                ref other => {
                    return Err(AxisFileError::ThresholdNotF32 {
                        origin,
                        key: key.clone(),
                        found: other.type_name(),
                    });
                }
            }
        }

        let hint = |key| gguf.get(key).and_then(Value::as_str).map(str::to_owned);
        Ok(Self {
            model_hint: hint(KEY_MODEL_HINT),
            hook: hint(KEY_HOOK),
            operation: hint(KEY_OPERATION),
            origin,
            n_embd,
            directions,
            thresholds,
        })
    }

    /// Where the file came from: its path, or `<memory>`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Length of every direction vector (must equal the model's `n_embd`).
    pub fn n_embd(&self) -> usize {
        self.n_embd
    }

    /// Raw direction vectors by layer (several tensors of one layer already summed).
    pub fn directions(&self) -> &BTreeMap<u32, Vec<f32>> {
        &self.directions
    }

    /// The raw direction of `layer`, if the file has one.
    pub fn direction(&self, layer: u32) -> Option<&[f32]> {
        self.directions.get(&layer).map(Vec::as_slice)
    }

    /// Per-layer thresholds (`acap.threshold.N`), raw `tau` values.
    pub fn thresholds(&self) -> &BTreeMap<u32, f32> {
        &self.thresholds
    }

    /// The `acap.model_hint` key, if present.
    pub fn model_hint(&self) -> Option<&str> {
        self.model_hint.as_deref()
    }

    /// The `acap.hook` key, if present.
    pub fn hook(&self) -> Option<&str> {
        self.hook.as_deref()
    }

    /// The `acap.operation` key, if present.
    pub fn operation(&self) -> Option<&str> {
        self.operation.as_deref()
    }
}

/// The layer of a `direction.N` tensor. `N` must be ASCII digits (leading zeros allowed, as
/// `std::stoi` in the reference allows them) and at least 1.
fn direction_layer(name: &str, origin: &str) -> Result<u32, AxisFileError> {
    let err = |make: fn(String, String) -> AxisFileError| make(origin.into(), name.into());
    let suffix = name
        .strip_prefix(DIRECTION_PREFIX)
        .ok_or_else(|| err(|origin, name| AxisFileError::UnexpectedTensor { origin, name }))?;
    let layer = (!suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()))
        .then(|| suffix.parse::<u32>().ok())
        .flatten()
        .ok_or_else(|| err(|origin, name| AxisFileError::BadLayerIndex { origin, name }))?;
    if layer == 0 {
        return Err(err(|origin, name| AxisFileError::LayerZero {
            origin,
            name,
        }));
    }
    Ok(layer)
}

/// The layer of an `acap.threshold.N` key, only when `N >= 1` is written the way the reference
/// formats it (`%d`: no sign, no leading zeros). Other spellings, and block 0 (never capped),
/// are never looked up by the reference and count as unknown keys.
fn canonical_index(suffix: &str) -> Option<u32> {
    let canonical = !suffix.is_empty()
        && suffix.bytes().all(|b| b.is_ascii_digit())
        && !suffix.starts_with('0');
    canonical.then(|| suffix.parse().ok()).flatten()
}
