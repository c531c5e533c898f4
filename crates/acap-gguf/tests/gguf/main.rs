//! Integration tests of acap-gguf: one binary, one module per area.

mod alloc;
mod common;
mod convert;
mod golden;
mod malformed;
mod metadata;
mod mutation;
mod roundtrip;
