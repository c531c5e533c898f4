//! What acap's front ends (`acap-cli`, `acap`, `acap-server`) share, in the spirit of
//! ripgrep's `crates/cli`: the clap argument groups users type the same way in every binary,
//! each with one conversion into library types, and the wording that puts a flag (or a JSON
//! field) in front of a library error, which itself only names values.

#![forbid(unsafe_code)]

mod capping;
mod context;
mod files;
mod json;
mod sampling;

pub use capping::{
    CapArgs, ControlVectorArgs, HSuppressArgs, Names, cap_error, capped_blocks, layer_range,
    scaled_files,
};
pub use context::{ContextArgs, LoadArgs};
pub use files::{BATCH_LIMIT, TEXT_LIMIT, read_text};
pub use json::{evaluation_json, source_name};
pub use sampling::SamplingArgs;

/// The process's command line as the operating system gave it. Paths in any encoding reach
/// the library unchanged; an option whose value must be text (a prompt) and is not valid UTF-8
/// is refused by clap with exit status 2 (`std::env::args` would panic instead).
pub fn os_args() -> Vec<std::ffi::OsString> {
    std::env::args_os().collect()
}

/// Rewrites one-dash long options (`-ngl`, `-ub`, ...) to their two-dash names by `table`
/// (one-dash, two-dash); other arguments pass as they are.
pub fn rewrite_one_dash(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    table: &[(&str, &str)],
) -> Vec<std::ffi::OsString> {
    args.into_iter()
        .map(|a| {
            table
                .iter()
                .find(|(one, _)| std::ffi::OsStr::new(one) == a)
                .map_or(a, |&(_, two)| two.into())
        })
        .collect()
}

/// Parses `args` with clap, exiting as clap does on an error; clap's "invalid UTF-8" error
/// does not say which argument, so that one names the option the text was given to.
pub fn parse_os_args<P: clap::Parser>(args: Vec<std::ffi::OsString>) -> P {
    match P::try_parse_from(&args) {
        Ok(p) => p,
        Err(e) if e.kind() == clap::error::ErrorKind::InvalidUtf8 => {
            let at = args.iter().position(|a| a.to_str().is_none());
            let after = at
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| args[i].to_str())
                .filter(|a| a.starts_with('-'));
            let value = at.map(|i| args[i].to_string_lossy().into_owned());
            match (after, value) {
                (Some(flag), Some(v)) => {
                    eprintln!("error: {flag}: the value is not valid UTF-8 ({v})");
                }
                (None, Some(v)) => eprintln!("error: argument {v} is not valid UTF-8"),
                _ => eprintln!("error: {e}"),
            }
            std::process::exit(2);
        }
        Err(e) => e.exit(),
    }
}
