//! llama.cpp control vectors (`--control-vector`, `--control-vector-scaled`,
//! `--control-vector-layer-range`): the same `direction.N` layout as axis files, scaled, summed
//! and added to each block's output before the cap sees it (spec section 5).

use std::path::Path;

use thiserror::Error;

use crate::axis::{AxisFile, AxisFileError};
use crate::layers::LayerRange;

/// Why control vectors cannot be loaded or applied.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ControlVectorError {
    /// A file is invalid (same rules as axis files).
    #[error("control vector {0}")]
    File(#[from] AxisFileError),
    /// Files of different lengths, or not matching the model.
    #[error("control vector {origin} has n_embd {n_embd}, expected {expected}")]
    EmbdMismatch {
        /// The file.
        origin: String,
        /// Its length.
        n_embd: usize,
        /// The expected length.
        expected: usize,
    },
    /// No files.
    #[error("no control vector files given")]
    NoFiles,
    /// A scale that is not finite.
    #[error("control vector {origin}: scale {scale} is not a finite number")]
    BadScale {
        /// The file.
        origin: String,
        /// The scale.
        scale: f32,
    },
    /// llama.cpp refused the vector.
    #[error("llama.cpp rejected the control vector (code {0})")]
    Rejected(i32),
}

/// Control vectors summed per layer: `sum(scale_i * direction_i)`, raw (not normalised).
#[derive(Debug, Clone, PartialEq)]
pub struct ControlVector {
    n_embd: usize,
    /// `data[(L - 1) * n_embd ..]` is layer L, for L in 1..=max_layer.
    data: Vec<f32>,
    range: LayerRange,
}

impl ControlVector {
    /// Loads and sums `(path, scale)` pairs (`--control-vector F` is scale 1.0).
    ///
    /// # Errors
    /// See [`ControlVectorError`]: each variant says what was wrong.
    pub fn load<P: AsRef<Path>>(files: &[(P, f32)]) -> Result<Self, ControlVectorError> {
        let loaded = files
            .iter()
            .map(|(p, s)| Ok((AxisFile::open(p)?, *s)))
            .collect::<Result<Vec<_>, ControlVectorError>>()?;
        Self::from_files(&loaded)
    }

    /// Sums already validated files with their scales, in order.
    ///
    /// # Errors
    /// See [`ControlVectorError`]: each variant says what was wrong.
    pub fn from_files(files: &[(AxisFile, f32)]) -> Result<Self, ControlVectorError> {
        let (first, _) = files.first().ok_or(ControlVectorError::NoFiles)?;
        let n_embd = first.n_embd();
        let mut data: Vec<f32> = Vec::new();
        for (file, scale) in files {
            if !scale.is_finite() {
                return Err(ControlVectorError::BadScale {
                    origin: file.origin().to_owned(),
                    scale: *scale,
                });
            }
            if file.n_embd() != n_embd {
                return Err(ControlVectorError::EmbdMismatch {
                    origin: file.origin().to_owned(),
                    n_embd: file.n_embd(),
                    expected: n_embd,
                });
            }
            for (&layer, v) in file.directions() {
                let start = (layer as usize - 1) * n_embd;
                if data.len() < start + n_embd {
                    data.resize(start + n_embd, 0.0);
                }
                for (d, x) in data[start..start + n_embd].iter_mut().zip(v) {
                    *d += x * scale;
                }
            }
        }
        Ok(Self {
            n_embd,
            data,
            range: LayerRange::default(),
        })
    }

    /// Restricts the blocks it applies to (`--control-vector-layer-range`; inclusive,
    /// `<= 0` for the defaults).
    #[must_use]
    pub fn with_layer_range(mut self, range: LayerRange) -> Self {
        self.range = range;
        self
    }

    /// Vector length.
    pub fn n_embd(&self) -> usize {
        self.n_embd
    }

    /// The summed vector of `layer`, if any file has one.
    pub fn layer(&self, layer: u32) -> Option<&[f32]> {
        let start = (layer as usize).checked_sub(1)? * self.n_embd;
        self.data.get(start..start + self.n_embd)
    }

    pub(crate) fn data(&self) -> &[f32] {
        &self.data
    }

    pub(crate) fn range(&self) -> LayerRange {
        self.range
    }
}
