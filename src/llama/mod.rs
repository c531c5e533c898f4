//! The raw llama.cpp layer: process-wide backend set-up and the one type that owns a
//! `llama_context` ([`Context`]). Everything above it (sessions, the batch engine) is safe code
//! over these two.

pub(crate) mod backend;
mod context;
pub(crate) mod shim;

pub(crate) use context::Context;
