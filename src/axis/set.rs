//! Several axis files summed per layer, then normalised (spec section 3).

use std::collections::BTreeMap;
use std::path::Path;

use super::error::{AxisError, AxisSetError, ThresholdError};
use super::file::AxisFile;
use super::threshold::Thresholds;

/// Below this norm a summed direction is left as it is (a zero vector makes the cap a no-op).
pub const MIN_NORM: f32 = 1e-8;

/// One layer's axis after summing and normalisation.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerAxis {
    /// The unit axis `v / ||v||` (or `v` unchanged when `||v|| <= 1e-8`).
    pub unit: Vec<f32>,
    /// `||v||` of the summed raw vector, computed in f32 as the reference does.
    pub norm: f32,
}

/// The axes of one or more `--acap` files: vectors summed per layer across files, normalised
/// per layer, with the per-layer thresholds of the first file.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisSet {
    origins: Vec<String>,
    n_embd: usize,
    layers: BTreeMap<u32, LayerAxis>,
    file_thresholds: BTreeMap<u32, f32>,
}

impl AxisSet {
    /// Opens, validates and combines axis files in the order given.
    ///
    /// # Errors
    /// See [`AxisError`]: each variant says what was wrong.
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<Self, AxisError> {
        let files = paths
            .iter()
            .map(AxisFile::open)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(files)?)
    }

    /// Combines validated files in order: vectors summed per layer (in f32, file order),
    /// thresholds from the first file only, then each layer normalised.
    ///
    /// # Errors
    /// See [`AxisSetError`]: each variant says what was wrong.
    pub fn new(files: Vec<AxisFile>) -> Result<Self, AxisSetError> {
        let first = files.first().ok_or(AxisSetError::NoFiles)?;
        let n_embd = first.n_embd();
        let first_origin = first.origin().to_owned();
        let file_thresholds = first.thresholds().clone();

        let mut sums: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
        let mut origins = Vec::with_capacity(files.len());
        for file in &files {
            if file.n_embd() != n_embd {
                return Err(AxisSetError::EmbdMismatch {
                    origin: file.origin().to_owned(),
                    n_embd: file.n_embd(),
                    first_origin,
                    expected: n_embd,
                });
            }
            for (&layer, v) in file.directions() {
                let sum = sums.entry(layer).or_insert_with(|| vec![0.0; n_embd]);
                for (s, x) in sum.iter_mut().zip(v) {
                    *s += x;
                }
            }
            origins.push(file.origin().to_owned());
        }
        let layers = sums
            .into_iter()
            .map(|(layer, v)| (layer, normalise(v)))
            .collect();
        Ok(Self {
            origins,
            n_embd,
            layers,
            file_thresholds,
        })
    }

    /// Where the files came from, in order.
    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    /// Length of every axis.
    pub fn n_embd(&self) -> usize {
        self.n_embd
    }

    /// All layers that have an axis, in order.
    pub fn layers(&self) -> &BTreeMap<u32, LayerAxis> {
        &self.layers
    }

    /// The axis of `layer`, if any file has a direction for it.
    pub fn layer(&self, layer: u32) -> Option<&LayerAxis> {
        self.layers.get(&layer)
    }

    /// The per-layer thresholds of the first file.
    pub fn file_thresholds(&self) -> &BTreeMap<u32, f32> {
        &self.file_thresholds
    }

    /// Resolves thresholds from the `--acap-threshold` value (`None` when absent), following
    /// spec section 4.
    ///
    /// # Errors
    /// See [`ThresholdError`]: each variant says what was wrong.
    pub fn thresholds(&self, cli: Option<f32>) -> Result<Thresholds, ThresholdError> {
        Thresholds::resolve(&self.file_thresholds, cli, &self.origins[0])
    }
}

/// Normalises in f32 exactly as the reference: sum of squares accumulated in order,
/// `norm = sqrt(sum)`, and each element multiplied by `1 / norm` when `norm > 1e-8`.
pub fn normalise(mut v: Vec<f32>) -> LayerAxis {
    let mut sum = 0.0f32;
    for x in &v {
        sum += x * x;
    }
    let norm = sum.sqrt();
    if norm > MIN_NORM {
        let inv = 1.0 / norm;
        for x in &mut v {
            *x *= inv;
        }
    }
    LayerAxis { unit: v, norm }
}
