//! What acap's front ends (`acap-cli`, `acap`, `acap-server`) share, in the spirit of
//! ripgrep's `crates/cli`: the clap argument groups users type the same way in every binary,
//! each with one conversion into library types, and the wording that puts a flag (or a JSON
//! field) in front of a library error, which itself only names values.

#![forbid(unsafe_code)]

mod capping;
mod context;
mod json;
mod sampling;

pub use capping::{CapArgs, ControlVectorArgs, Names, cap_error, capped_blocks, layer_range};
pub use context::{ContextArgs, LoadArgs};
pub use json::{evaluation_json, source_name};
pub use sampling::SamplingArgs;

/// The process's command line as UTF-8 strings. `std::env::args` panics on an argument that
/// is not UTF-8 (a prompt or path in another encoding); this exits with status 2 and a message
/// naming the argument instead.
pub fn utf8_args() -> Vec<String> {
    std::env::args_os()
        .enumerate()
        .map(|(i, a)| {
            a.into_string().unwrap_or_else(|a| {
                eprintln!(
                    "error: argument {i} is not valid UTF-8: {}",
                    a.to_string_lossy()
                );
                std::process::exit(2);
            })
        })
        .collect()
}
