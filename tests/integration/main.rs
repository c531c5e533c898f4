//! acap's integration tests: one binary, one module per area.

mod axis_file;
mod axis_set;
mod axis_writer;
mod capping;
mod common;
mod examples;
mod layers;
mod llama_model;
mod llama_session;
mod thresholds;
