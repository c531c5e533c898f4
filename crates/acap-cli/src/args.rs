//! llama-cli's command line, parsed with clap. llama-cli spells some long options with one dash
//! (`-ngl`, `-sys`, `-cnv`, `-no-cnv`, `-st`, `-ub`); they are rewritten to their two-dash names
//! before clap sees them, and `--help` lists them under llama-cli's spellings.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use acap_frontend::{
    CapArgs, ContextArgs, ControlVectorArgs, HSuppressArgs, LoadArgs, SamplingArgs,
};
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
    ("-fa", "--flash-attn"),
    ("-ctk", "--cache-type-k"),
    ("-ctv", "--cache-type-v"),
    ("-if", "--interactive-first"),
    ("-jf", "--json-schema-file"),
    ("-sysf", "--system-prompt-file"),
];

/// Options taking `FNAME:SCALE,...` or `FNAME SCALE`.
const SCALED: &[&str] = &["--lora-scaled", "--control-vector-scaled"];

/// How `-fa`'s optional value is spelled (older llama-cli releases took `-fa` alone).
const FLASH_ATTN_VALUES: &[&str] = &[
    "on", "off", "auto", "true", "false", "1", "0", "enabled", "disabled",
];

/// Rewrites llama-cli's one-dash long options (`-ngl`, `-ub`, ...) to their two-dash names for
/// the `acap` tool's subcommands, which take a few of llama-cli's flags.
pub fn rewrite_one_dash(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    acap_frontend::rewrite_one_dash(args, SINGLE_DASH)
}

/// `--long=value`, keeping a value that is not UTF-8 (a path) as it is.
fn with_value(long: &str, value: &OsStr) -> OsString {
    let mut out = OsString::from(format!("{long}="));
    out.push(value);
    out
}

/// Whether `arg` is a number (`-5`, `-1.5`, `-inf`): a value, never a flag.
fn is_number(arg: &str) -> bool {
    arg.parse::<f64>().is_ok()
}

/// A command line acap-cli refuses before parsing it.
#[derive(Debug)]
pub enum ArgsError {
    /// A flag llama-cli has and acap-cli does not implement, or no flag at all: named as typed.
    Refused(String),
    /// What clap reports (bad values, missing values, help for clap's own errors).
    Clap(clap::Error),
}

impl std::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(m) => f.write_str(m),
            Self::Clap(e) => write!(f, "{e}"),
        }
    }
}

/// A flag clap knows: its canonical `--long` name, how many values it takes, and whether
/// those may be any bytes (paths) rather than UTF-8 text.
#[derive(Clone)]
struct Known {
    long: String,
    values: usize,
    any_bytes: bool,
}

/// The flags clap knows, spelled as on the command line.
fn known_flags() -> Vec<(String, Known)> {
    use clap::CommandFactory;
    use clap::builder::ValueParser;
    let cmd = CliArgs::command();
    let bytes_types = [
        ValueParser::path_buf().type_id(),
        ValueParser::os_string().type_id(),
    ];
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        let values = if arg.get_action().takes_values() {
            arg.get_num_args().map_or(1, |r| r.min_values().max(1))
        } else {
            0
        };
        let Some(long) = arg.get_long().map(|l| format!("--{l}")) else {
            continue;
        };
        let known = Known {
            long: long.clone(),
            values,
            any_bytes: bytes_types.contains(&arg.get_value_parser().type_id()),
        };
        out.push((long, known.clone()));
        for l in arg.get_all_aliases().unwrap_or_default() {
            out.push((format!("--{l}"), known.clone()));
        }
        if let Some(c) = arg.get_short() {
            out.push((format!("-{c}"), known.clone()));
        }
    }
    out
}

/// Rewrites llama-cli's command line into clap's: one-dash long options to their two-dash
/// names, one-value options to `--name=value` (so a value such as `-1` or `-sys` is never
/// taken for a flag), and refuses, by the name typed, a llama-cli flag acap-cli does not
/// implement or anything else that is not a flag. Short flags are never bundled.
///
/// # Errors
/// [`ArgsError::Refused`] naming the flag.
pub fn normalize(args: impl IntoIterator<Item = OsString>) -> Result<Vec<OsString>, ArgsError> {
    let known = known_flags();
    let lookup = |flag: &str| {
        known
            .iter()
            .find(|(f, _)| f == flag)
            .map(|(_, k)| k.clone())
    };
    let mut iter = args.into_iter().peekable();
    let mut out: Vec<OsString> = iter.next().into_iter().collect();
    while let Some(arg) = iter.next() {
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            out.push(arg);
            out.extend(iter);
            break;
        }
        // Values (a prompt, a path in any encoding) pass as they are; clap decides whether
        // the option they belong to takes non-UTF-8 text.
        if !bytes.starts_with(b"-") || bytes == b"-" || arg.to_str().is_some_and(is_number) {
            out.push(arg);
            continue;
        }
        // `--name=value`: the name is text, the value may be any bytes.
        let (name_bytes, inline) = match bytes.iter().position(|&b| b == b'=') {
            Some(i) if bytes.starts_with(b"--") => (
                &bytes[..i],
                Some(OsStr::from_bytes(&bytes[i + 1..]).to_owned()),
            ),
            _ => (bytes, None),
        };
        let Ok(name) = std::str::from_utf8(name_bytes) else {
            return Err(ArgsError::Refused(format!(
                "unknown flag {} (not valid UTF-8)",
                arg.to_string_lossy()
            )));
        };
        let spelled = SINGLE_DASH
            .iter()
            .find(|(one, _)| *one == name)
            .map_or(name, |&(_, two)| two);
        let Some(Known {
            long,
            values: n,
            any_bytes,
        }) = lookup(spelled)
        else {
            return Err(ArgsError::Refused(
                if crate::llama_flags::LLAMA_CLI_FLAGS
                    .iter()
                    .any(|(f, _)| *f == name)
                {
                    format!("unsupported llama-cli flag {name} (acap-cli does not implement it)")
                } else {
                    format!("unknown flag {name} (see acap-cli --help)")
                },
            ));
        };
        // `--lora-scaled` and `--control-vector-scaled` take `FNAME:SCALE,...` (one value) or,
        // as older releases did, `FNAME SCALE` (two): two when the next argument is a number
        // and the first does not end in `:SCALE` itself.
        if SCALED.contains(&long.as_str()) && inline.is_none() {
            let Some(first) = iter.next() else {
                return Err(ArgsError::Refused(format!("{name} needs FNAME:SCALE")));
            };
            let first_is_pair = first
                .to_str()
                .and_then(|f| f.rsplit_once(':'))
                .is_some_and(|(_, s)| is_number(s));
            let next_is_scale = iter.peek().and_then(|v| v.to_str()).is_some_and(is_number);
            if next_is_scale && !first_is_pair {
                out.extend([long.into(), first]);
                out.extend(iter.next());
            } else {
                out.push(with_value(&long, &first));
            }
            continue;
        }
        // `-fa` alone (older llama-cli) switches flash attention on.
        if long == "--flash-attn" && inline.is_none() {
            let next_is_value = iter
                .peek()
                .and_then(|v| v.to_str())
                .is_some_and(|v| FLASH_ATTN_VALUES.contains(&v));
            if !next_is_value {
                out.push("--flash-attn=on".into());
                continue;
            }
        }
        // clap would refuse text that is not UTF-8 without naming the option.
        let text = |v: OsString| {
            if any_bytes || v.to_str().is_some() {
                Ok(v)
            } else {
                Err(ArgsError::Refused(format!(
                    "{name}: the value is not valid UTF-8 ({})",
                    v.to_string_lossy()
                )))
            }
        };
        match (n, inline) {
            (0, Some(_)) => {
                return Err(ArgsError::Refused(format!(
                    "{name} takes no value ({})",
                    arg.to_string_lossy()
                )));
            }
            (0, None) => out.push(long.into()),
            (_, Some(v)) => out.push(with_value(&long, &text(v)?)),
            (1, None) => match iter.next() {
                Some(v) => out.push(with_value(&long, &text(v)?)),
                None => return Err(ArgsError::Refused(format!("{name} needs a value"))),
            },
            (n, None) => {
                out.push(long.into());
                for _ in 0..n {
                    match iter.next() {
                        Some(v) => out.push(text(v)?),
                        None => {
                            return Err(ArgsError::Refused(format!("{name} needs {n} values")));
                        }
                    }
                }
            }
        }
    }
    Ok(out)
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
  -fa, --flash-attn [on|off|auto]        flash attention (default: auto; -fa alone: on)
  -ctk, --cache-type-k TYPE              KV cache key type: f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1 (default: f16)
  -ctv, --cache-type-v TYPE              KV cache value type (default: f16)
  --deterministic                        bit-identical output to a fresh run: prompts in whole -ub
                                         batches from position 0, cache reuse only of such batches
  --no-mmap                              read the model into memory instead of mapping it
  --mmap                                 map the model file (default)
  --mlock                                keep the model in RAM
  --lora FNAME                           apply a LoRA adapter (repeatable)
  --lora-scaled FNAME:SCALE,...          apply LoRA adapters with scales (repeatable; also FNAME SCALE)
  --override-kv KEY=TYPE:VALUE           replace a model metadata entry (repeatable; TYPE int, float, bool, str)
  --no-warmup, --warmup                  accepted; acap does no warm-up run
  --keep N                               accepted with a warning: acap does not shift the context

prompt and conversation:
  -p, --prompt PROMPT                    prompt (the first user turn in conversation mode)
  -f, --file FNAME                       read the prompt from a file
  -sys, --system-prompt PROMPT           system prompt (conversation mode)
  -sysf, --system-prompt-file FNAME      read the system prompt from a file
  --no-escape                            do not process escapes (default)
  -e, --escape                           process escapes (\\n, \\t, \\\\, \\\", \\xHH) in prompts
  -cnv, --conversation                   conversation mode (default when the model has a chat template)
  -no-cnv, --no-conversation             completion mode
  -st, --single-turn                     answer one prompt, then exit
  -r, --reverse-prompt PROMPT            stop generating at PROMPT (repeatable); in interactive mode,
                                         return control to the user there
  -i, --interactive                      interactive completion mode (without a chat template or with -no-cnv)
  -if, --interactive-first               interactive, waiting for input first
  --in-prefix STRING                     text put before each input in interactive mode
  --in-suffix STRING                     text put after each input in interactive mode
  --chat-template NAME                   force a built-in chat template (e.g. llama3, chatml), or a template text
  --chat-template-file FNAME             a Jinja chat template file
  --jinja, --no-jinja                    render the model's chat template as Jinja (default: llama.cpp's
                                         built-in renderer when it recognises the template, else Jinja)
  --no-display-prompt                    do not echo the prompt in completion mode (--display-prompt: echo it)
  --no-context-shift                     accepted: acap never shifts the context

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
  --samplers LIST                        samplers in order, ';'-separated (default: penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;xtc;temperature)
  --sampling-seq SEQ                     the same as letters (default: edskypmxt)
  -l, --logit-bias TOKEN_ID(+|-)BIAS     add BIAS to a token's logit (repeatable; -inf bans it)
  --ignore-eos                           never stop at an end-of-generation token
  --typical N                            locally typical sampling (default: 1.0 = off)
  --top-nsigma N                         top-n-sigma (default: -1 = off)
  --dynatemp-range N, --dynatemp-exp N   dynamic temperature (default: 0 = off, exponent 1)
  --xtc-probability N, --xtc-threshold N XTC (default: 0 = off, threshold 0.1)
  --dry-multiplier N                     DRY (default: 0 = off)
  --dry-base N, --dry-allowed-length N, --dry-penalty-last-n N
                                         DRY settings (default: 1.75, 2, -1 = context)
  --dry-sequence-breaker S               DRY sequence breaker (repeatable; none: no breakers)
  --mirostat N                           mirostat 1 or 2 (default: 0 = off)
  --mirostat-lr N, --mirostat-ent N      mirostat eta and tau (default: 0.1, 5.0)
  --grammar GRAMMAR                      GBNF grammar for the output
  --grammar-file FNAME                   read the GBNF grammar from a file
  -j, --json-schema SCHEMA               a JSON schema the output must follow (e.g. '{}' for any JSON)
  -jf, --json-schema-file FNAME          read the JSON schema from a file

control vectors:
  --control-vector FNAME                 add a control vector (repeatable)
  --control-vector-scaled FNAME:SCALE,...
                                         add control vectors with scales (repeatable; also FNAME SCALE)
  --control-vector-layer-range START END
                                         blocks the control vectors apply to (inclusive)

activation capping:
  --acap FNAME                           axis file (repeatable: vectors summed, thresholds from the first)
  --acap-threshold T                     threshold where the file has no acap.threshold.N (tau = -T)
  --acap-layer-range START END           capped blocks, inclusive (default: 1 .. last; block 0 never)
  --acap-alpha A                         cap strength in 0..1 (default: 1.0 = hard cap)
  --acap-stats                           print per-layer capping telemetry on exit
  --h-suppress FNAME                     H-neuron suppression file (h_suppress.N F32 tensors)

logging and information:
  -v, --verbose                          show llama.cpp's log and per-turn details
  --verbose-prompt                       print the prompt's tokens before generating
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
    /// The system prompt read from a file (`-sysf`).
    #[arg(long = "system-prompt-file", conflicts_with = "system_prompt")]
    pub system_prompt_file: Option<PathBuf>,
    #[arg(short = 'n', long = "n-predict", alias = "predict", default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    #[arg(long = "n-gpu-layers", default_value_t = -1, allow_negative_numbers = true)]
    pub n_gpu_layers: i32,
    #[arg(long = "conversation")]
    pub conversation: bool,
    #[arg(long = "no-conversation")]
    pub no_conversation: bool,
    #[arg(long = "single-turn")]
    pub single_turn: bool,
    /// Interactive completion mode: after each reply, wait for more text.
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
    /// Interactive, waiting for text before generating anything.
    #[arg(long = "interactive-first")]
    pub interactive_first: bool,
    /// Text put before each input in interactive mode.
    #[arg(long = "in-prefix", allow_hyphen_values = true)]
    pub in_prefix: Option<String>,
    /// Text put after each input in interactive mode.
    #[arg(long = "in-suffix", allow_hyphen_values = true)]
    pub in_suffix: Option<String>,
    #[arg(short = 'r', long = "reverse-prompt", allow_hyphen_values = true)]
    pub reverse_prompt: Vec<String>,
    #[arg(long = "no-display-prompt", overrides_with = "display_prompt")]
    pub no_display_prompt: bool,
    /// Echo the prompt (the default; undoes `--no-display-prompt`).
    #[arg(long = "display-prompt")]
    pub display_prompt: bool,
    /// Accepted: acap never shifts the context (a full context ends the reply).
    #[arg(long = "no-context-shift")]
    pub no_context_shift: bool,
    #[arg(long = "log-disable")]
    pub log_disable: bool,
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    #[arg(long = "chat-template")]
    pub chat_template: Option<String>,
    #[arg(long = "chat-template-file")]
    pub chat_template_file: Option<PathBuf>,
    /// Render chat templates as Jinja.
    #[arg(long = "jinja")]
    pub jinja: bool,
    /// The opposite of `--jinja` (the default).
    #[arg(long = "no-jinja")]
    pub no_jinja: bool,
    #[arg(long = "grammar", allow_hyphen_values = true)]
    pub grammar: Option<String>,
    #[arg(long = "grammar-file")]
    pub grammar_file: Option<PathBuf>,
    /// A JSON schema the output must follow (converted to a grammar by llama.cpp).
    #[arg(short = 'j', long = "json-schema", allow_hyphen_values = true)]
    pub json_schema: Option<String>,
    /// A file with a JSON schema (`-jf`).
    #[arg(long = "json-schema-file")]
    pub json_schema_file: Option<PathBuf>,
    #[arg(short = 'e', long = "escape", overrides_with = "no_escape")]
    pub escape: bool,
    /// Do not process escapes (the default; undoes `-e`).
    #[arg(long = "no-escape")]
    pub no_escape: bool,
    #[arg(long = "acap-stats")]
    pub acap_stats: bool,
    /// Display-only in llama-cli; accepted with a warning.
    #[arg(long = "color")]
    pub color: bool,
    #[arg(short = 'h', long = "help")]
    pub help: bool,
    #[arg(long = "version")]
    pub version: bool,
    /// Print the prompt's tokens before generating.
    #[arg(long = "verbose-prompt")]
    pub verbose_prompt: bool,
    /// llama-cli's tokens kept on a context shift; acap does not shift (warned).
    #[arg(long = "keep", allow_negative_numbers = true)]
    pub keep: Option<i64>,
    /// A LoRA adapter applied with scale 1 (repeatable).
    #[arg(long = "lora")]
    pub lora: Vec<PathBuf>,
    /// LoRA adapters and their scales, `FNAME:SCALE,...` (llama.cpp) or `FNAME SCALE` (older
    /// releases); repeatable.
    #[arg(long = "lora-scaled", num_args = 1..=2, value_names = ["FNAME:SCALE", "SCALE"], allow_negative_numbers = true)]
    pub lora_scaled: Vec<OsString>,
    /// llama-cli's warm-up decode; acap has none to skip.
    #[arg(long = "no-warmup")]
    pub no_warmup: bool,
    /// The opposite of `--no-warmup`.
    #[arg(long = "warmup")]
    pub warmup: bool,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub context: ContextArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub control: ControlVectorArgs,
    #[command(flatten)]
    pub cap: CapArgs,
    #[command(flatten)]
    pub h_suppress: HSuppressArgs,
}

impl CliArgs {
    /// Parses a command line (with the program name first).
    ///
    /// # Errors
    /// See [`ArgsError`]: each says what was wrong, naming the flag.
    pub fn parse_from_args(args: impl IntoIterator<Item = OsString>) -> Result<Self, ArgsError> {
        Self::try_parse_from(normalize(args)?).map_err(ArgsError::Clap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn single_dash_long_options_are_rewritten_but_not_values() {
        assert_eq!(
            normalize(v(&[
                "x", "-ngl", "99", "-cnv", "-p", "-sys", "-sys", "s", "-ub", "8"
            ]))
            .unwrap(),
            v(&[
                "x",
                "--n-gpu-layers=99",
                "--conversation",
                "--prompt=-sys",
                "--system-prompt=s",
                "--ubatch-size=8"
            ])
        );
        assert_eq!(
            normalize(v(&["x", "--acap-layer-range", "-st", "-cnv", "-st"])).unwrap(),
            v(&["x", "--acap-layer-range", "-st", "-cnv", "--single-turn"])
        );
        assert_eq!(
            normalize(v(&[
                "x", "--temp", "-1", "-n", "-2", "--top-k", "-5", "-fa", "-p", "q"
            ]))
            .unwrap(),
            v(&[
                "x",
                "--temp=-1",
                "--n-predict=-2",
                "--top-k=-5",
                "--flash-attn=on",
                "--prompt=q"
            ])
        );
        assert_eq!(
            normalize(v(&["x", "-fa", "off", "--seed=-1"])).unwrap(),
            v(&["x", "--flash-attn=off", "--seed=-1"])
        );
    }

    #[test]
    fn scaled_options_take_llama_cpps_list_or_the_older_pair() {
        assert_eq!(
            normalize(v(&[
                "x",
                "--lora-scaled",
                "a.gguf:0.5,b.gguf:-1",
                "--lora-scaled",
                "c.gguf",
                "-0.25",
                "--control-vector-scaled",
                "d:2",
                "3",
                "-p",
                "q"
            ]))
            .unwrap(),
            v(&[
                "x",
                "--lora-scaled=a.gguf:0.5,b.gguf:-1",
                "--lora-scaled",
                "c.gguf",
                "-0.25",
                "--control-vector-scaled=d:2",
                "3",
                "--prompt=q",
            ])
        );
        let a = CliArgs::parse_from_args(v(&[
            "x",
            "--lora-scaled",
            "a.gguf:0.5,b:c.gguf:2",
            "--lora-scaled",
            "c.gguf",
            "-0.25",
        ]))
        .unwrap();
        let files = acap_frontend::scaled_files("--lora-scaled", &a.lora_scaled).unwrap();
        assert_eq!(
            files,
            vec![
                (PathBuf::from("a.gguf"), 0.5),
                (PathBuf::from("b:c.gguf"), 2.0),
                (PathBuf::from("c.gguf"), -0.25)
            ]
        );
        for (value, named) in [("a.gguf", "expected FNAME:SCALE"), ("a:x", "'x'")] {
            let a = CliArgs::parse_from_args(v(&["x", "--lora-scaled", value])).unwrap();
            let e = acap_frontend::scaled_files("--lora-scaled", &a.lora_scaled).unwrap_err();
            assert!(e.contains("--lora-scaled") && e.contains(named), "{e}");
        }
    }

    #[test]
    fn non_utf8_paths_pass_and_non_utf8_text_is_refused() {
        use std::os::unix::ffi::OsStringExt;
        let path = OsString::from_vec(b"/tmp/caf\xe9.gguf".to_vec());
        let mut args = v(&["x", "-m"]);
        args.push(path.clone());
        args.push("--grammar-file".into());
        let mut inline = OsString::from("--chat-template-file=");
        inline.push(&path);
        args.extend([path.clone(), inline]);
        let a = CliArgs::parse_from_args(args).unwrap();
        assert_eq!(a.model.unwrap().as_os_str(), path);
        assert_eq!(a.grammar_file.unwrap().as_os_str(), path);
        assert_eq!(a.chat_template_file.unwrap().as_os_str(), path);
        let mut prompt = v(&["x", "-p"]);
        prompt.push(path);
        let e = CliArgs::parse_from_args(prompt).unwrap_err().to_string();
        assert!(
            e.contains("-p: the value is not valid UTF-8 (/tmp/caf"),
            "{e}"
        );
    }

    #[test]
    fn llama_cli_flags_acap_lacks_are_refused_by_name_never_bundled() {
        for (args, named) in [
            (&["x", "-sm", "none"][..], "unsupported llama-cli flag -sm"),
            (
                &["x", "-hf", "user/model"],
                "unsupported llama-cli flag -hf",
            ),
            (&["x", "-nkvo"], "unsupported llama-cli flag -nkvo"),
            (&["x", "-cmoe"], "unsupported llama-cli flag -cmoe"),
            (
                &["x", "--mmproj", "f"],
                "unsupported llama-cli flag --mmproj",
            ),
            (&["x", "-xyz"], "unknown flag -xyz"),
            (&["x", "--frobnicate"], "unknown flag --frobnicate"),
            (&["x", "-p"], "-p needs a value"),
            (&["x", "--single-turn=yes"], "--single-turn takes no value"),
        ] {
            let e = normalize(v(args)).unwrap_err().to_string();
            assert!(e.contains(named), "{args:?}: {e}");
        }
    }

    /// Every spelling of llama-cli's table is either taken (with the table's number of
    /// values) or refused by that name: none is unknown, bundled or short of a value.
    #[test]
    fn every_llama_cli_spelling_is_taken_or_refused_by_name() {
        for &(flag, n) in crate::llama_flags::LLAMA_CLI_FLAGS {
            let mut args = v(&["x", flag]);
            args.extend((0..n).map(|_| OsString::from("1")));
            match normalize(args) {
                Ok(_) => {}
                Err(e) => {
                    let e = e.to_string();
                    assert!(
                        e.starts_with(&format!("unsupported llama-cli flag {flag} ")),
                        "{flag}: {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_flag_acap_cli_takes_is_in_its_help_or_the_llama_cli_table() {
        for (flag, _) in known_flags() {
            let in_table = crate::llama_flags::LLAMA_CLI_FLAGS
                .iter()
                .any(|(f, _)| *f == flag);
            let one_dash = SINGLE_DASH.iter().any(|(_, two)| *two == flag);
            assert!(
                in_table || one_dash || flag.starts_with("--acap") || HELP.contains(&flag),
                "{flag} is neither a llama-cli flag nor documented"
            );
        }
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
