//! Capping axes: the reference axis file layout (spec sections 3 and 4).
//!
//! An axis file is a GGUF with one F32 vector `direction.N` per capped block `N` (raw, not
//! normalised) and optional `acap.threshold.N` FLOAT32 keys. [`AxisFile`] reads and validates
//! one file, [`AxisSet`] sums several and normalises per layer, [`Thresholds`] resolves which
//! `tau` applies to each layer, and [`AxisWriter`] writes files the reference llama.cpp loads.

mod error;
mod file;
mod report;
mod set;
mod threshold;
mod writer;

pub use error::{AxisError, AxisFileError, AxisSetError, AxisWriteError, ThresholdError};
pub use file::AxisFile;
pub use report::report;
pub use set::{AxisSet, LayerAxis, normalise};
pub use threshold::{Threshold, ThresholdSource, Thresholds};
pub use writer::AxisWriter;

/// Prefix of direction tensor names.
pub const DIRECTION_PREFIX: &str = "direction.";
/// Prefix of per-layer threshold keys.
pub const THRESHOLD_PREFIX: &str = "acap.threshold.";
/// Key naming the model an axis was made for (acap's own, ignored by the reference).
pub const KEY_MODEL_HINT: &str = "acap.model_hint";
/// Key naming the hooked tensor, e.g. `l_out` (acap's own, ignored by the reference).
pub const KEY_HOOK: &str = "acap.hook";
/// Key naming the operation, e.g. `cap` (acap's own, ignored by the reference).
pub const KEY_OPERATION: &str = "acap.operation";
