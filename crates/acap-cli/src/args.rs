//! llama-cli's command line, parsed with clap. llama-cli spells some long options with one dash
//! (`-ngl`, `-sys`, `-cnv`, `-no-cnv`, `-st`, `-ub`); they are rewritten to their two-dash names
//! before clap sees them, and `--help` lists them under llama-cli's spellings.

use std::path::PathBuf;

use acap_frontend::{CapArgs, ContextArgs, ControlVectorArgs, SamplingArgs};
use clap::Parser;

/// One-dash long options and the two-dash names clap knows them by.
const SINGLE_DASH: &[(&str, &str)] = &[
    ("-ngl", "--n-gpu-layers"),
    ("-sys", "--system-prompt"),
    ("-cnv", "--conversation"),
    ("-no-cnv", "--no-conversation"),
    ("-st", "--single-turn"),
    ("-ub", "--ubatch-size"),
    ("-tb", "--threads-batch"),
    ("-co", "--color"),
];

/// Options that take values, and how many (so a value is never mistaken for an option).
const TAKES_VALUES: &[(&str, usize)] = &[
    ("-m", 1),
    ("--model", 1),
    ("-p", 1),
    ("--prompt", 1),
    ("-f", 1),
    ("--file", 1),
    ("-sys", 1),
    ("--system-prompt", 1),
    ("-n", 1),
    ("--n-predict", 1),
    ("-c", 1),
    ("--ctx-size", 1),
    ("-b", 1),
    ("--batch-size", 1),
    ("-ub", 1),
    ("--ubatch-size", 1),
    ("-t", 1),
    ("--threads", 1),
    ("-tb", 1),
    ("--threads-batch", 1),
    ("-ngl", 1),
    ("--n-gpu-layers", 1),
    ("--temp", 1),
    ("--top-k", 1),
    ("--top-p", 1),
    ("--min-p", 1),
    ("--repeat-penalty", 1),
    ("--repeat-last-n", 1),
    ("--presence-penalty", 1),
    ("--frequency-penalty", 1),
    ("-s", 1),
    ("--seed", 1),
    ("-r", 1),
    ("--reverse-prompt", 1),
    ("--chat-template", 1),
    ("--grammar", 1),
    ("--grammar-file", 1),
    ("--control-vector", 1),
    ("--control-vector-scaled", 2),
    ("--control-vector-layer-range", 2),
    ("--acap", 1),
    ("--acap-threshold", 1),
    ("--acap-layer-range", 2),
    ("--acap-alpha", 1),
];

/// Rewrites llama-cli's one-dash long options to two-dash ones, leaving option values alone.
pub fn normalize(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut iter = args.into_iter();
    let mut out: Vec<String> = iter.next().into_iter().collect();
    let mut values_left = 0usize;
    for arg in iter {
        if values_left > 0 {
            values_left -= 1;
            out.push(arg);
            continue;
        }
        if let Some(&(_, n)) = TAKES_VALUES.iter().find(|(f, _)| *f == arg) {
            values_left = n;
        }
        match SINGLE_DASH.iter().find(|(short, _)| *short == arg) {
            Some(&(_, long)) => out.push(long.to_owned()),
            None => out.push(arg),
        }
    }
    out
}

/// The help text, with llama-cli's spellings.
pub const HELP: &str = "\
acap-cli: llama-cli with activation capping that takes effect

usage: acap-cli -m MODEL [options]

model and context:
  -m, --model FNAME                      model path (GGUF)
  -c, --ctx-size N                       context size (default: 4096, 0 = from model)
  -b, --batch-size N                     logical batch size (default: 2048)
  -ub, --ubatch-size N                   physical batch size (default: 512)
  -t, --threads N                        threads (default: all cores)
  -tb, --threads-batch N                 threads for prompt processing (default: as --threads)
  -ngl, --n-gpu-layers N                 layers to offload to the GPU (default: all; needs a GPU build)

prompt and conversation:
  -p, --prompt PROMPT                    prompt (the first user turn in conversation mode)
  -f, --file FNAME                       read the prompt from a file
  -sys, --system-prompt PROMPT           system prompt (conversation mode)
  -e, --escape                           process escapes (\\n, \\t, \\\\, \\\", \\xHH) in prompts
  -cnv, --conversation                   conversation mode (default when the model has a chat template)
  -no-cnv, --no-conversation             completion mode
  -st, --single-turn                     answer one prompt, then exit
  -r, --reverse-prompt PROMPT            stop generating at PROMPT (repeatable)
  --chat-template NAME                   force a built-in chat template (e.g. llama3, chatml)
  --no-display-prompt                    do not echo the prompt in completion mode

sampling:
  -n, --n-predict N                      tokens to generate (default: -1 = until end or full context)
  --temp N                               temperature (default: 0.8; 0 = greedy)
  --top-k N                              top-k (default: 40, 0 = off)
  --top-p N                              top-p (default: 0.95, 1.0 = off)
  --min-p N                              min-p (default: 0.05, 0.0 = off)
  --repeat-penalty N                     repeat penalty (default: 1.0 = off)
  --repeat-last-n N                      penalty window (default: 64, 0 = off, -1 = context)
  --presence-penalty N                   presence penalty (default: 0.0 = off)
  --frequency-penalty N                  frequency penalty (default: 0.0 = off)
  -s, --seed SEED                        RNG seed (default: -1 = random)
  --grammar GRAMMAR                      GBNF grammar for the output
  --grammar-file FNAME                   read the GBNF grammar from a file

control vectors:
  --control-vector FNAME                 add a control vector (repeatable)
  --control-vector-scaled FNAME SCALE    add a control vector with a scale (repeatable)
  --control-vector-layer-range START END
                                         blocks the control vectors apply to (inclusive)

activation capping:
  --acap FNAME                           axis file (repeatable: vectors summed, thresholds from the first)
  --acap-threshold T                     threshold where the file has no acap.threshold.N (tau = -T)
  --acap-layer-range START END           capped blocks, inclusive (default: 1 .. last; block 0 never)
  --acap-alpha A                         cap strength in 0..1 (default: 1.0 = hard cap)
  --acap-stats                           print per-layer capping telemetry on exit

logging and information:
  -v, --verbose                          show llama.cpp's log and per-turn details
  --log-disable                          no log at all
  --color                                accepted for compatibility, ignored
  -h, --help                             this help
  --version                              version information
";

/// The parsed command line. Field names follow llama-cli's long options.
#[derive(Debug, Parser)]
#[command(
    name = "acap-cli",
    disable_help_flag = true,
    disable_version_flag = true,
    args_override_self = true
)]
#[allow(missing_docs)]
pub struct CliArgs {
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    #[arg(short = 'p', long = "prompt", allow_hyphen_values = true)]
    pub prompt: Option<String>,
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    #[arg(long = "system-prompt", allow_hyphen_values = true)]
    pub system_prompt: Option<String>,
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    #[arg(long = "n-gpu-layers", default_value_t = -1, allow_negative_numbers = true)]
    pub n_gpu_layers: i32,
    #[arg(long = "conversation")]
    pub conversation: bool,
    #[arg(long = "no-conversation")]
    pub no_conversation: bool,
    #[arg(long = "single-turn")]
    pub single_turn: bool,
    #[arg(short = 'r', long = "reverse-prompt", allow_hyphen_values = true)]
    pub reverse_prompt: Vec<String>,
    #[arg(long = "no-display-prompt")]
    pub no_display_prompt: bool,
    #[arg(long = "log-disable")]
    pub log_disable: bool,
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    #[arg(long = "chat-template")]
    pub chat_template: Option<String>,
    #[arg(long = "grammar", allow_hyphen_values = true)]
    pub grammar: Option<String>,
    #[arg(long = "grammar-file")]
    pub grammar_file: Option<PathBuf>,
    #[arg(short = 'e', long = "escape")]
    pub escape: bool,
    #[arg(long = "acap-stats")]
    pub acap_stats: bool,
    /// Display-only in llama-cli; accepted with a warning.
    #[arg(long = "color")]
    pub color: bool,
    #[arg(short = 'h', long = "help")]
    pub help: bool,
    #[arg(long = "version")]
    pub version: bool,
    #[command(flatten)]
    pub context: ContextArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub control: ControlVectorArgs,
    #[command(flatten)]
    pub cap: CapArgs,
}

impl CliArgs {
    /// Parses a command line (with the program name first).
    ///
    /// # Errors
    /// See [`clap::Error`]: each variant says what was wrong.
    pub fn parse_from_args(args: impl IntoIterator<Item = String>) -> Result<Self, clap::Error> {
        Self::try_parse_from(normalize(args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn single_dash_long_options_are_rewritten_but_not_values() {
        assert_eq!(
            normalize(v(&[
                "x", "-ngl", "99", "-cnv", "-p", "-sys", "-sys", "s", "-ub", "8"
            ])),
            v(&[
                "x",
                "--n-gpu-layers",
                "99",
                "--conversation",
                "-p",
                "-sys",
                "--system-prompt",
                "s",
                "--ubatch-size",
                "8"
            ])
        );
        assert_eq!(
            normalize(v(&["x", "--acap-layer-range", "-st", "-cnv", "-st"])),
            v(&["x", "--acap-layer-range", "-st", "-cnv", "--single-turn"])
        );
    }

    #[test]
    fn parses_the_users_command_lines() {
        let a = CliArgs::parse_from_args(v(&[
            "acap-cli",
            "-m",
            "model.gguf",
            "--acap",
            "axis.gguf",
            "--acap-threshold",
            "2.1",
            "--acap-layer-range",
            "22",
            "28",
            "-cnv",
            "-ngl",
            "99",
            "-c",
            "4096",
            "--temp",
            "0.7",
            "-sys",
            "You are kind.",
        ]))
        .unwrap();
        assert_eq!(a.cap.acap_layer_range, Some(vec![22, 28]));
        assert_eq!(a.cap.acap_threshold, Some(2.1));
        assert!(a.conversation);
        assert_eq!(a.n_gpu_layers, 99);
        assert_eq!(a.system_prompt.as_deref(), Some("You are kind."));
        let a = CliArgs::parse_from_args(v(&[
            "acap-cli",
            "-m",
            "m.gguf",
            "--temp",
            "0",
            "-n",
            "512",
            "--no-display-prompt",
            "--single-turn",
            "-p",
            "hello",
        ]))
        .unwrap();
        assert!(a.single_turn && a.no_display_prompt);
        assert_eq!(a.n_predict, 512);
    }

    #[test]
    fn help_lists_every_flag_in_llama_cli_spelling() {
        for flag in [
            "-m,",
            "--model",
            "-p,",
            "--prompt",
            "-f,",
            "--file",
            "-sys,",
            "--system-prompt",
            "-n,",
            "--n-predict",
            "-c,",
            "--ctx-size",
            "-b,",
            "--batch-size",
            "-ub,",
            "--ubatch-size",
            "-t,",
            "--threads",
            "-tb,",
            "--threads-batch",
            "-ngl,",
            "--n-gpu-layers",
            "--temp",
            "--top-k",
            "--top-p",
            "--min-p",
            "--repeat-penalty",
            "--repeat-last-n",
            "--presence-penalty",
            "--frequency-penalty",
            "-s,",
            "--seed",
            "-cnv,",
            "--conversation",
            "-no-cnv,",
            "--no-conversation",
            "-st,",
            "--single-turn",
            "-r,",
            "--reverse-prompt",
            "--no-display-prompt",
            "--log-disable",
            "-v,",
            "--verbose",
            "--chat-template",
            "--grammar",
            "--grammar-file",
            "-e,",
            "--escape",
            "--control-vector",
            "--control-vector-scaled",
            "--control-vector-layer-range",
            "--acap ",
            "--acap-threshold",
            "--acap-layer-range",
            "--acap-alpha",
            "--acap-stats",
            "-h,",
            "--help",
            "--version",
        ] {
            assert!(HELP.contains(flag), "{flag} missing from --help");
        }
    }
}
