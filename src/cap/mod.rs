//! Activation capping: the plan (which blocks, which axis, which threshold), the row
//! operation, the eval callback that applies it inside llama.cpp's graph, telemetry, the
//! observer API and control vectors.

mod config;
mod cvec;
mod graph;
pub(crate) mod hooks;
mod path;
mod rows;

pub use config::{CapConfig, CapError, CapPlan, PlannedLayer, check_alpha};
pub use cvec::{ControlVector, ControlVectorError};
pub use hooks::{Observation, ObserverFn};
pub use path::{CAP_PATH_ENV, CapPath};
pub use rows::{LayerStats, cap_row, cap_rows, dot};
