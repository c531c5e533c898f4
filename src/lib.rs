//! acap: run GGUF language models with activation capping.
//!
//! At chosen decoder blocks the hidden state's projection on a per-layer axis is clamped from
//! above: `h' = h - alpha * max(0, dot(a, h) - tau) * a`. This crate holds the domain model
//! that every front end shares:
//!
//! * [`axis`]: axis files (the reference llama.cpp layout), summing several of them into an
//!   [`AxisSet`], the f32 normalisation and the per-layer threshold rules;
//! * [`layers`]: which decoder blocks a `--acap-layer-range` selects.
//!
//! The llama.cpp integration (model loading, sessions, the capping callback) is not part of the
//! crate yet. GGUF parsing is native, in [`gguf`] (re-exported `acap-gguf`).

pub mod axis;
pub mod layers;

pub use acap_gguf as gguf;
pub use axis::{
    AxisError, AxisFile, AxisFileError, AxisSet, AxisSetError, AxisWriteError, AxisWriter,
    Threshold, ThresholdError, ThresholdSource, Thresholds,
};
pub use layers::LayerRange;
