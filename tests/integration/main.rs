//! acap's integration tests: one binary, one module per area.

mod alloc_free;
mod axis_file;
mod axis_set;
mod axis_writer;
mod batch;
mod cap_path;
mod capping;
mod common;
mod deterministic;
mod eval;
mod examples;
mod extract;
mod h_suppress;
mod header_corpus;
mod layers;
mod llama_model;
mod llama_session;
mod thresholds;
mod torch_pt;

/// Counts heap allocations for `alloc_free` (only while a test asks it to).
#[global_allocator]
static ALLOCATOR: alloc_free::CountingAllocator = alloc_free::CountingAllocator;
