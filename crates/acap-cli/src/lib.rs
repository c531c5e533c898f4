//! The command-line front ends: `acap-cli` (llama-cli's flags and behaviour, with capping that
//! takes effect) and `acap` (demo and file tools).

pub mod args;
pub mod demo;
pub mod escape;
pub mod llama_cli;
