//! Errors of axis loading, combining, threshold resolution and writing.

use acap_gguf::{GgmlType, ParseError, ReadError, WriteError};
use thiserror::Error;

/// Why one axis file is invalid. Each rule of spec section 3 has its own variant; `origin` is
/// the file's path (or `<memory>`).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AxisFileError {
    /// The file could not be read or is not GGUF.
    #[error("axis file {0}")]
    Read(#[from] ReadError),
    /// In-memory bytes are not GGUF.
    #[error("axis file {origin}: {source}")]
    Parse {
        /// Where the bytes came from.
        origin: String,
        /// What is wrong.
        source: ParseError,
    },
    /// Bytes after the last tensor's data that no tensor describes.
    #[error(
        "axis file {origin}: {bytes} bytes after the last tensor's data that no tensor describes \
         (a truncated tensor list or a retyped tensor?)"
    )]
    TrailingData {
        /// The file.
        origin: String,
        /// How many bytes.
        bytes: u64,
    },
    /// The file has no tensors at all.
    #[error("axis file {origin}: no direction tensors")]
    NoTensors {
        /// The file.
        origin: String,
    },
    /// A tensor not named `direction.N`.
    #[error(
        "axis file {origin}: unexpected tensor '{name}' (only direction.N tensors are allowed)"
    )]
    UnexpectedTensor {
        /// The file.
        origin: String,
        /// The tensor.
        name: String,
    },
    /// `direction.N` where `N` is not a decimal integer.
    #[error(
        "axis file {origin}: tensor '{name}' has no valid layer index (expected direction.N with N a decimal integer)"
    )]
    BadLayerIndex {
        /// The file.
        origin: String,
        /// The tensor.
        name: String,
    },
    /// `direction.0`: block 0 is never capped.
    #[error("axis file {origin}: tensor '{name}' has layer index 0 (layer indices start at 1)")]
    LayerZero {
        /// The file.
        origin: String,
        /// The tensor.
        name: String,
    },
    /// A direction that is not F32.
    #[error("axis file {origin}: tensor '{name}' has type {ty}, expected F32")]
    NotF32 {
        /// The file.
        origin: String,
        /// The tensor.
        name: String,
        /// Its type.
        ty: GgmlType,
    },
    /// A direction that is not 1-D.
    #[error("axis file {origin}: tensor '{name}' has shape {dims:?}, expected one dimension")]
    NotOneDimensional {
        /// The file.
        origin: String,
        /// The tensor.
        name: String,
        /// Its dimensions.
        dims: Vec<u64>,
    },
    /// Directions of different lengths.
    #[error("axis file {origin}: tensor '{name}' has length {len}, but '{first}' has {expected}")]
    LengthMismatch {
        /// The file.
        origin: String,
        /// The tensor.
        name: String,
        /// Its length.
        len: u64,
        /// The first tensor.
        first: String,
        /// The first tensor's length.
        expected: u64,
    },
    /// An `acap.threshold.N` key that is not FLOAT32.
    #[error("axis file {origin}: key '{key}' has type {found}, expected FLOAT32")]
    ThresholdNotF32 {
        /// The file.
        origin: String,
        /// The key.
        key: String,
        /// The type found.
        found: String,
    },
    /// acap's own rule: a NaN or infinite threshold would turn every capped row into NaN.
    #[error("axis file {origin}: key '{key}' is {value}, expected a finite number")]
    NonFiniteThreshold {
        /// The file.
        origin: String,
        /// The key.
        key: String,
        /// The value.
        value: f32,
    },
    /// acap's own rule: a NaN or infinite direction element would poison the normalised axis.
    #[error(
        "axis file {origin}: tensor '{name}' element {index} is {value}, expected a finite number"
    )]
    NonFiniteDirection {
        /// The file.
        origin: String,
        /// The tensor.
        name: String,
        /// Index of the first bad element.
        index: usize,
        /// The value.
        value: f32,
    },
}

/// Why several axis files cannot be combined.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AxisSetError {
    /// No files were given.
    #[error("no axis files given")]
    NoFiles,
    /// Files with different vector lengths.
    #[error("axis file {origin} has n_embd {n_embd}, but {first_origin} has {expected}")]
    EmbdMismatch {
        /// The mismatching file.
        origin: String,
        /// Its vector length.
        n_embd: usize,
        /// The first file.
        first_origin: String,
        /// The first file's vector length.
        expected: usize,
    },
}

/// Why no threshold can be resolved (spec section 4).
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum ThresholdError {
    /// No positive global threshold and no per-layer thresholds in the first file.
    #[error(
        "no threshold to cap with: {origin} has no per-layer thresholds (acap.threshold.N) and no positive global threshold was given"
    )]
    Missing {
        /// The first axis file, whose thresholds count.
        origin: String,
    },
    /// A NaN or infinite global threshold.
    #[error("threshold {value} is not a finite number")]
    NotFinite {
        /// The value given.
        value: f32,
    },
}

/// Why an axis file could not be written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AxisWriteError {
    /// The file would be invalid by the rules of spec section 3.
    #[error("refusing to write an invalid axis file: {reason}")]
    Invalid {
        /// Which rule it would break.
        reason: String,
    },
    /// GGUF writing failed.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Any axis error.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AxisError {
    /// See [`AxisFileError`].
    #[error(transparent)]
    File(#[from] AxisFileError),
    /// See [`AxisSetError`].
    #[error(transparent)]
    Set(#[from] AxisSetError),
    /// See [`ThresholdError`].
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
    /// See [`AxisWriteError`].
    #[error(transparent)]
    Write(#[from] AxisWriteError),
}
