//! Activation capping: the plan (which blocks, which axis, which threshold), the row
//! operation, the eval callback that applies it inside llama.cpp's graph, telemetry, the
//! observer API, control vectors and H-neuron suppression.

mod config;
mod cvec;
mod graph;
pub(crate) mod hooks;
mod hsuppress;
mod path;
mod rows;

pub use config::{CapConfig, CapError, CapPlan, PlannedLayer, check_alpha};
pub use cvec::{ControlVector, ControlVectorError};
pub use hooks::{Observation, ObserverFn};
pub use hsuppress::{H_SUPPRESS_PREFIX, HSuppress, HSuppressError, SuppressStats};
pub(crate) use hsuppress::{activation_names, unsupported as unsupported_ffn_arch};
pub use path::{CAP_PATH_ENV, CapPath};
pub use rows::{LayerStats, cap_row, cap_rows, dot};
