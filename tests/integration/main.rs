//! acap's integration tests: one binary, one module per area.

mod axis_file;
mod axis_set;
mod axis_writer;
mod examples;
mod layers;
mod thresholds;
