//! `acap-cli`: a drop-in for the patched `llama-cli --acap ...`.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    acap_cli::llama_cli::main_with(acap_frontend::os_args())
}
