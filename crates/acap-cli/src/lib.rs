//! The command-line front ends: `acap-cli` (llama-cli's flags and behaviour, with capping that
//! takes effect) and `acap` (demo and file tools).

#![forbid(unsafe_code)]

pub mod args;
pub mod axis_tools;
pub mod bench;
#[cfg(feature = "builtin-models")]
pub mod demo;
pub mod escape;
pub mod judge;
pub mod llama_cli;
pub mod llama_flags;
pub mod progress;

/// Warns, as llama.cpp does, when `model` has no chat template and none was chosen: prompts are
/// then rendered as chatml.
pub fn warn_chatml_fallback(model: &acap::Model, chosen: Option<&str>) {
    if chosen.is_none() && model.info().chat_template.is_none() {
        eprintln!(
            "warning: {}: the model has no chat template; using chatml (pass --chat-template NAME)",
            model.info().path.display()
        );
    }
}

/// Writes to stdout. A closed pipe (`acap ... | head`) ends the process quietly with status 0
/// instead of the panic `print!` raises; other write errors exit 1 with a message.
pub fn write_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// `print!` through [`write_stdout`].
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::write_stdout(&format!($($t)*)) };
}

/// `println!` through [`write_stdout`].
#[macro_export]
macro_rules! outln {
    () => { $crate::write_stdout("\n") };
    ($($t:tt)*) => { $crate::write_stdout(&format!("{}\n", format_args!($($t)*))) };
}
