//! Which threshold applies to each layer (spec section 4).

use std::collections::BTreeMap;

use super::error::ThresholdError;

/// Where a layer's threshold came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdSource {
    /// `acap.threshold.L` of the first file, used exactly.
    File,
    /// `--acap-threshold T` with `T > 0`, negated: `tau = -T`.
    Cli,
    /// No usable `--acap-threshold` but the file has per-layer thresholds for other layers:
    /// the global value becomes 1.0, so `tau = -1.0`.
    DefaultOne,
}

/// The threshold of one layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// The raw `tau_L` compared with `dot(a, h)`.
    pub tau: f32,
    /// Which rule produced it.
    pub source: ThresholdSource,
}

/// Resolved thresholds: every layer gets one, from the file or from the global rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    per_layer: BTreeMap<u32, f32>,
    global: Threshold,
}

impl Thresholds {
    /// Applies spec section 4 to the first file's thresholds and the CLI value.
    pub(crate) fn resolve(
        per_layer: &BTreeMap<u32, f32>,
        cli: Option<f32>,
        first_origin: &str,
    ) -> Result<Self, ThresholdError> {
        let global = match cli {
            Some(t) if !t.is_finite() => return Err(ThresholdError::NotFinite { value: t }),
            Some(t) if t > 0.0 => Threshold {
                tau: -t,
                source: ThresholdSource::Cli,
            },
            // Absent or <= 0.
            _ if per_layer.is_empty() => {
                return Err(ThresholdError::Missing {
                    origin: first_origin.to_owned(),
                });
            }
            _ => Threshold {
                tau: -1.0,
                source: ThresholdSource::DefaultOne,
            },
        };
        Ok(Self {
            per_layer: per_layer.clone(),
            global,
        })
    }

    /// The threshold of `layer`.
    pub fn for_layer(&self, layer: u32) -> Threshold {
        match self.per_layer.get(&layer) {
            Some(&tau) => Threshold {
                tau,
                source: ThresholdSource::File,
            },
            None => self.global,
        }
    }

    /// The threshold used for layers without a per-layer key.
    pub fn global(&self) -> Threshold {
        self.global
    }
}
