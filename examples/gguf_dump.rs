//! Prints the metadata and tensor table of any GGUF file, in the layout of llama.cpp's
//! `gguf-dump`.
//!
//! ```text
//! cargo run --example gguf_dump -- FILE [--full]
//! ```
//! Arrays are shortened to their first elements unless `--full` is given.

use std::process::ExitCode;

use acap::gguf::{GgufFile, dump};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--full");
    let paths: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if let Some(bad) = args.iter().find(|a| a.starts_with("--") && *a != "--full") {
        eprintln!("error: unknown option {bad}\nusage: gguf_dump FILE [--full]");
        return ExitCode::from(2);
    }
    let [path] = paths.as_slice() else {
        eprintln!("usage: gguf_dump FILE [--full]");
        return ExitCode::from(2);
    };
    let file = match GgufFile::open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", dump(&file, full));
    ExitCode::SUCCESS
}
