//! The command-line front ends: `acap-cli` (llama-cli's flags and behaviour, with capping that
//! takes effect) and `acap` (demo and file tools).

pub mod args;
pub mod axis_tools;
pub mod bench;
pub mod demo;
pub mod escape;
pub mod judge;
pub mod llama_cli;
