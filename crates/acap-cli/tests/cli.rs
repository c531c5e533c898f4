//! `acap-cli` and `acap` run as subprocesses on the tiny test model.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use acap::{
    AxisFile, AxisSet, AxisWriter, CapConfig, GenerateParams, LayerRange, Model, ModelParams,
    QuantType, SamplingParams, Session, SessionParams,
};

fn model() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| acap_testkit::tiny(QuantType::Q8_0))
}

struct Run {
    ok: bool,
    code: i32,
    out: String,
    err: String,
}

fn run_with(bin: &str, args: &[&str], stdin: &str) -> Run {
    run_env(bin, args, stdin, &[])
}

fn run_env(bin: &str, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let mut child = Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    Run {
        ok: o.status.success(),
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn cli(args: &[&str], stdin: &str) -> Run {
    let m = model().to_str().unwrap().to_owned();
    let mut all = vec!["-m", m.as_str(), "-t", "1", "--temp", "0"];
    all.extend_from_slice(args);
    run_with(env!("CARGO_BIN_EXE_acap-cli"), &all, stdin)
}

/// An axis file for the tiny model at `layers`, with optional per-layer thresholds.
fn axis(dir: &Path, name: &str, layers: &[u32], taus: &[(u32, f32)], n_embd: usize) -> String {
    let mut w = AxisWriter::new();
    for &l in layers {
        let v: Vec<f32> = (0..n_embd)
            .map(|i| (((i as u32 + 1) * (l + 3)) % 17) as f32 / 8.0 - 1.0)
            .collect();
        w = w.with_direction(l, v);
    }
    for &(l, t) in taus {
        w = w.with_threshold(l, t);
    }
    let p = dir.join(name);
    w.write_file(&p).unwrap();
    p.to_str().unwrap().to_owned()
}

const PROMPT: &str = "Once upon a time";

#[test]
fn completion_equals_the_library_and_is_deterministic() {
    let a = cli(&["-no-cnv", "-p", PROMPT, "-n", "24"], "");
    assert!(a.ok, "{}", a.err);
    assert!(a.out.starts_with(PROMPT));
    let b = cli(&["-no-cnv", "-p", PROMPT, "-n", "24"], "");
    assert_eq!(a.out, b.out);
    let m = Model::load(model(), ModelParams::default()).unwrap();
    let mut s = Session::new(&m, SessionParams::default().with_threads(1)).unwrap();
    let params = GenerateParams::default()
        .with_max_tokens(24)
        .with_sampling(SamplingParams::greedy());
    let (text, _) = s.complete(PROMPT, &params).unwrap();
    assert_eq!(a.out, format!("{PROMPT}{text}\n"));
    let quiet = cli(
        &["-no-cnv", "-p", PROMPT, "-n", "24", "--no-display-prompt"],
        "",
    );
    assert_eq!(quiet.out, format!("{text}\n"));
    assert!(a.err.contains("generation: 24 tokens"), "{}", a.err);
}

#[test]
fn conversation_turns_from_stdin_reuse_the_cache() {
    let r = cli(&["-n", "8", "-v"], "Hello there\nTell me a story\n");
    assert!(r.ok, "{}", r.err);
    let turns: Vec<&str> = r.err.lines().filter(|l| l.contains("turn:")).collect();
    assert_eq!(turns.len(), 2, "{}", r.err);
    // The second prompt contains the first turn and its reply, mostly served from the cache.
    let nums = |l: &str| -> Vec<usize> {
        l.split(|c: char| !c.is_ascii_digit())
            .filter_map(|s| s.parse().ok())
            .collect()
    };
    let (first, second) = (nums(turns[0]), nums(turns[1]));
    assert!(second[0] > first[0] + 8, "{turns:?}");
    assert!(second[1] >= first[0], "{turns:?}");
    assert_eq!(
        r.out.lines().filter(|l| !l.is_empty()).count(),
        2,
        "{:?}",
        r.out
    );

    // Deterministic mode reuses only the first turn's whole prompt batches (of 16 tokens);
    // its reply, decoded a token at a time, is decoded again as prompt.
    let r = cli(
        &["-n", "8", "-v", "--deterministic", "-b", "16", "-ub", "16"],
        "Hello there, how are you doing today, my friend?\nTell me a story\n",
    );
    assert!(r.ok, "{}", r.err);
    let turns: Vec<Vec<usize>> = r
        .err
        .lines()
        .filter(|l| l.contains("turn:"))
        .map(nums)
        .collect();
    assert_eq!(turns.len(), 2, "{}", r.err);
    let (first, second) = (&turns[0], &turns[1]);
    assert!(first[0] >= 16, "{turns:?}");
    assert_eq!(second[1], first[0] / 16 * 16, "{turns:?}");

    // A trailing backslash continues the turn; /exit ends the session.
    let r = cli(
        &["-n", "4", "-v"],
        "first line \\\nsecond line\n/exit\nnever read\n",
    );
    assert!(r.ok);
    assert_eq!(
        r.err.lines().filter(|l| l.contains("turn:")).count(),
        1,
        "{}",
        r.err
    );
}

#[test]
fn single_turn_and_system_prompt() {
    let r = cli(
        &["-p", "Hello", "-st", "-n", "8", "-v"],
        "this is never read\n",
    );
    assert!(r.ok, "{}", r.err);
    assert_eq!(r.err.lines().filter(|l| l.contains("turn:")).count(), 1);
    let plain = cli(&["-p", "Hello", "-st", "-n", "16"], "");
    let sys = cli(
        &[
            "-p",
            "Hello",
            "-st",
            "-n",
            "16",
            "-sys",
            "You are a pirate.",
        ],
        "",
    );
    assert!(sys.ok);
    assert_ne!(plain.out, sys.out);
    // -sysf reads it from a file; llama-cli's other spellings of the same flags.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sys.txt");
    std::fs::write(&f, "You are a pirate.").unwrap();
    let from_file = cli(
        &[
            "-p",
            "Hello",
            "-st",
            "-n",
            "16",
            "-sysf",
            f.to_str().unwrap(),
        ],
        "",
    );
    assert!(from_file.ok, "{}", from_file.err);
    assert_eq!(from_file.out, sys.out);
    let spelled = cli(
        &[
            "-p",
            "Hello",
            "-st",
            "--predict",
            "16",
            "--temperature",
            "0",
            "--no-escape",
        ],
        "",
    );
    assert_eq!(spelled.out, plain.out, "{}", spelled.err);
    let both = cli(
        &["-p", "Hello", "-sys", "x", "-sysf", f.to_str().unwrap()],
        "",
    );
    assert!(
        !both.ok && both.err.contains("--system-prompt-file"),
        "{}",
        both.err
    );
}

#[test]
fn each_capping_flag_changes_behaviour_as_specified() {
    let dir = tempfile::tempdir().unwrap();
    let base = ["-no-cnv", "-p", PROMPT, "-n", "24", "--no-display-prompt"];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        let r = cli(&a, "");
        assert!(r.ok, "{extra:?}: {}", r.err);
        r.out
    };
    let plain = with(&[]);
    let hard = axis(dir.path(), "hard.gguf", &[2, 3, 4, 5, 6], &[], 256);
    // --acap-threshold 1e6 means tau = -1e6: caps hard and changes the text (the reference's
    // no-op cap would not).
    let capped = with(&["--acap", &hard, "--acap-threshold", "1e6"]);
    assert_ne!(capped, plain);
    // A per-layer key far above every projection wins over the CLI value: no change.
    let keyed = axis(dir.path(), "keyed.gguf", &[3], &[(3, 1e6)], 256);
    assert_eq!(with(&["--acap", &keyed, "--acap-threshold", "1e6"]), plain);
    // The range excludes every axis layer: an error, not an uncapped run.
    let r = cli(
        &[
            &base[..],
            &[
                "--acap",
                &hard,
                "--acap-threshold",
                "1e6",
                "--acap-layer-range",
                "7",
                "7",
            ],
        ]
        .concat(),
        "",
    );
    assert!(!r.ok && r.err.contains("caps nothing"), "{}", r.err);
    // The range selects a subset: different from capping all five blocks.
    let subset = with(&[
        "--acap",
        &hard,
        "--acap-threshold",
        "1e6",
        "--acap-layer-range",
        "2",
        "2",
    ]);
    assert_ne!(subset, plain);
    assert_ne!(subset, capped);
    // alpha 0 changes nothing.
    assert_eq!(
        with(&[
            "--acap",
            &hard,
            "--acap-threshold",
            "1e6",
            "--acap-alpha",
            "0"
        ]),
        plain
    );
    // Two files whose vectors cancel change nothing.
    let m = Model::load(model(), ModelParams::default()).unwrap();
    let one = AxisFile::open(&hard).unwrap();
    let neg =
        AxisWriter::new().with_direction(3, one.direction(3).unwrap().iter().map(|x| -x).collect());
    let neg_path = dir.path().join("neg.gguf");
    neg.write_file(&neg_path).unwrap();
    let single = axis(dir.path(), "single.gguf", &[3], &[(3, -1e6)], 256);
    let cancel = with(&[
        "--acap",
        &single,
        "--acap",
        neg_path.to_str().unwrap(),
        "--acap-layer-range",
        "3",
        "3",
    ]);
    let one3 = AxisFile::open(&single).unwrap();
    assert_eq!(one3.direction(3), one.direction(3));
    assert_eq!(cancel, plain);
    // The library agrees with the CLI on the capped text.
    let cfg = CapConfig::new(AxisSet::open(&[&hard]).unwrap())
        .with_threshold(Some(1e6))
        .with_layer_range(LayerRange::default());
    let mut s = Session::new(
        &m,
        SessionParams::default().with_threads(1).with_capping(cfg),
    )
    .unwrap();
    let params = GenerateParams::default()
        .with_max_tokens(24)
        .with_sampling(SamplingParams::greedy());
    assert_eq!(
        capped,
        format!("{}\n", s.complete(PROMPT, &params).unwrap().0)
    );
}

#[test]
fn acap_stats_are_printed_on_exit() {
    let dir = tempfile::tempdir().unwrap();
    // Block 7 is the tiny model's last: llama.cpp computes it for the output rows only.
    let ax = axis(
        dir.path(),
        "a.gguf",
        &[3, 5, 7],
        &[(3, -1e6), (5, 1e6), (7, -1e6)],
        256,
    );
    let r = cli(
        &[
            "-no-cnv",
            "-p",
            PROMPT,
            "-n",
            "8",
            "--acap",
            &ax,
            "--acap-stats",
            "-sys",
            "ignored here",
        ],
        "",
    );
    assert!(r.ok, "{}", r.err);
    let line = |l: u32| {
        r.err
            .lines()
            .find(|x| x.starts_with(&format!("acap stats: {l:>5}")))
            .unwrap()
            .to_owned()
    };
    let n_rows = |s: &str| -> Vec<u64> {
        s.split_whitespace()
            .skip(3)
            .take(2)
            .map(|x| x.parse().unwrap())
            .collect()
    };
    let (l3, l5) = (n_rows(&line(3)), n_rows(&line(5)));
    assert_eq!(l3[0], l3[1], "every row capped at block 3: {}", line(3));
    assert!(l3[0] > 8);
    assert_eq!(l5[1], 0, "nothing capped at block 5: {}", line(5));
    // The last block saw one row per decode, and says why.
    let l7 = n_rows(&line(7));
    assert!(l7[0] < l3[0] && l7[0] <= 9, "{}", line(7));
    assert!(
        line(7).contains("(last block: only output rows"),
        "{}",
        line(7)
    );
    assert!(!line(3).contains("last block"), "{}", line(3));
    // A system prompt in completion mode is not silently dropped.
    assert!(
        r.err
            .contains("warning: -sys is used in conversation mode only"),
        "{}",
        r.err
    );
}

#[test]
fn errors_exit_non_zero_naming_the_culprit_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let good = axis(dir.path(), "good.gguf", &[3], &[(3, -1.0)], 256);
    let short = axis(dir.path(), "short.gguf", &[3], &[(3, -1.0)], 128);
    let no_tau = axis(dir.path(), "notau.gguf", &[3], &[], 256);
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, "not gguf").unwrap();
    let bad = bad.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--frobnicate"], "--frobnicate"),
        (vec!["--temp", "hot"], "hot"),
        (vec!["-n", "many"], "many"),
        (vec!["--acap", bad], "bad.gguf"),
        (vec!["--acap", "/no/such/axis.gguf"], "/no/such/axis.gguf"),
        (vec!["--acap", &short], "n_embd"),
        (vec!["--acap", &no_tau], "--acap-threshold"),
        (vec!["--acap-threshold", "2"], "--acap"),
        (vec!["--acap", &good, "--acap-alpha", "2"], "--acap-alpha"),
        (vec!["--control-vector-scaled", &good, "big"], "big"),
    ];
    for (args, culprit) in cases {
        let mut a = vec!["-no-cnv", "-p", PROMPT, "-n", "4"];
        a.extend(args.iter().copied());
        let r = cli(&a, "");
        assert!(!r.ok, "{args:?} succeeded");
        assert_ne!(r.code, 0);
        assert!(r.err.contains(culprit), "{args:?}: {}", r.err);
        assert!(r.out.is_empty(), "{args:?} printed {:?}", r.out);
    }
    let r = run_with(
        env!("CARGO_BIN_EXE_acap-cli"),
        &["-m", "/no/such/model.gguf", "-p", "x"],
        "",
    );
    assert!(
        !r.ok && r.err.contains("/no/such/model.gguf") && r.out.is_empty(),
        "{}",
        r.err
    );
    let r = run_with(env!("CARGO_BIN_EXE_acap-cli"), &["-p", "x"], "");
    assert!(!r.ok && r.err.contains("-m"), "{}", r.err);
}

#[test]
fn help_and_version() {
    let r = run_with(env!("CARGO_BIN_EXE_acap-cli"), &["--help"], "");
    assert!(r.ok);
    for f in [
        "-ngl, --n-gpu-layers N",
        "-no-cnv, --no-conversation",
        "--acap-layer-range START END",
    ] {
        assert!(r.out.contains(f), "{f}");
    }
    let r = run_with(env!("CARGO_BIN_EXE_acap-cli"), &["--version"], "");
    assert!(r.ok && r.out.contains("llama.cpp"));
}

#[test]
fn acap_tool_subcommands() {
    let bin = env!("CARGO_BIN_EXE_acap");
    let dir = tempfile::tempdir().unwrap();
    let ax = axis(dir.path(), "a.gguf", &[3], &[(3, -2.5)], 256);
    let r = run_with(
        bin,
        &["axis", "inspect", &ax, "-m", model().to_str().unwrap()],
        "",
    );
    assert!(r.ok, "{}", r.err);
    assert!(
        r.out.contains("file (acap.threshold.3)") && r.out.contains("axes fit"),
        "{}",
        r.out
    );
    // A valid file without thresholds is shown, with what running it needs.
    let no_tau = axis(dir.path(), "n.gguf", &[3], &[], 256);
    let r = run_with(bin, &["axis", "inspect", &no_tau], "");
    assert!(r.ok, "{}", r.err);
    assert!(
        r.out.contains("no thresholds: ") && r.out.contains("note: run it with --acap-threshold T"),
        "{}",
        r.out
    );
    let short = axis(dir.path(), "s.gguf", &[3], &[(3, -2.5)], 128);
    let r = run_with(
        bin,
        &["axis", "inspect", &short, "-m", model().to_str().unwrap()],
        "",
    );
    assert!(!r.ok && r.err.contains("n_embd 128"), "{}", r.err);
    let r = run_with(bin, &["gguf", "dump", model().to_str().unwrap()], "");
    assert!(
        r.ok && r.out.contains("general.architecture = \"llama\""),
        "{}",
        r.err
    );
    let r = run_with(bin, &["demo", "-n", "8"], "");
    assert!(r.ok, "{}", r.err);
    assert!(
        r.out.contains("capped   reply:") && r.out.contains("capping telemetry"),
        "{}",
        r.out
    );
}

/// acap-cli in conversation mode with `extra` flags, fed one long request and read until
/// its reply streams.
struct Streaming {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::process::ChildStdout,
}

impl Streaming {
    fn start(extra: &[&str]) -> Self {
        use std::io::Read;
        let mut child = Command::new(env!("CARGO_BIN_EXE_acap-cli"))
            .args(["-m", model().to_str().unwrap()])
            .args(["-t", "1", "--temp", "0", "-n", "3000"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"Tell me a long story\n").unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 16];
        stdout.read_exact(&mut first).unwrap();
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends SIGINT, as Ctrl-C does.
    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Closes stdin and waits: the exit status and stderr.
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        use std::io::Read;
        drop(self.stdin);
        let _ = self.stdout.read_to_end(&mut Vec::new());
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (self.child.wait().unwrap(), err)
    }
}

#[test]
fn ctrl_c_stops_the_reply_but_not_the_session() {
    let mut run = Streaming::start(&["-c", "4096", "-v"]);
    // The reply is streaming: interrupt it, then end the session normally.
    run.interrupt();
    run.stdin.write_all(b"/exit\n").unwrap();
    let (status, err) = run.finish();
    assert!(status.success(), "exit {status:?}: {err}");
    let turn = err
        .lines()
        .find(|l| l.contains("turn:"))
        .expect("turn stats");
    let generated: usize = turn
        .split_whitespace()
        .rev()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(generated < 3000, "{turn}");
}

/// A short `acap bench` run (correctness, not timing): every configuration of every test is
/// measured the asked number of times, the capped configuration caps every row and the no-op
/// one none, and the JSON carries the ratios, memory and roofline fields.
#[test]
fn bench_smoke_run_reports_every_field() {
    let m = model().to_str().unwrap();
    let r = run_with(
        env!("CARGO_BIN_EXE_acap"),
        &[
            "bench",
            "-m",
            m,
            "-m",
            "tiny:q4_k_m",
            "-p",
            "16",
            "-n",
            "4",
            "-r",
            "2",
            "-t",
            "1",
            "-ngl",
            "0",
            "-ub",
            "16",
            "-o",
            "json",
            "--bandwidth-mib",
            "16",
        ],
        "",
    );
    assert!(r.ok, "{}", r.err);
    let v: serde_json::Value = serde_json::from_str(&r.out).expect("JSON on stdout");
    assert!(v["memory_bandwidth_bytes_per_s"].as_f64().unwrap() > 1e8);
    assert_eq!(v["n_ubatch"], 16);
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    for m in models {
        assert_eq!(m["capped_layers"], serde_json::json!([1, 2, 3, 4, 5, 6, 7]));
        assert_eq!(m["capped_fraction"], 1.0);
        assert!(m["rows_seen"].as_u64().unwrap() > 0);
        assert!(m["peak_rss_bytes"].as_u64().unwrap() > 0);
        assert!(m["load_s"].as_f64().unwrap() >= 0.0);
        assert!(m["callback_ns_per_row"]["capped"].as_f64().unwrap() > 0.0);
        assert!(m["roofline"]["achieved_bytes_per_s"].as_f64().unwrap() > 0.0);
        let tests = m["tests"].as_array().unwrap();
        let names: Vec<&str> = tests.iter().map(|t| t["test"].as_str().unwrap()).collect();
        assert_eq!(names, ["pp16", "tg4"]);
        for t in tests {
            for config in ["uncapped", "noop", "capped"] {
                assert_eq!(t[format!("{config}_samples")].as_array().unwrap().len(), 2);
                let s = &t[config];
                assert!(s["min"].as_f64().unwrap() <= s["median"].as_f64().unwrap());
                assert!(s["median"].as_f64().unwrap() <= s["max"].as_f64().unwrap());
            }
            assert!(t["ratio"]["median"].as_f64().unwrap() > 0.0);
        }
    }
    // The markdown table, as llama-bench prints it.
    let r = run_with(
        env!("CARGO_BIN_EXE_acap"),
        &[
            "bench",
            "-m",
            m,
            "-p",
            "8",
            "-n",
            "0",
            "-r",
            "1",
            "-t",
            "1",
            "--bandwidth-mib",
            "16",
        ],
        "",
    );
    assert!(r.ok, "{}", r.err);
    assert!(
        r.out.contains("| model | size | params | test |"),
        "{}",
        r.out
    );
    assert!(r.out.contains("pp8") && !r.out.contains("tg"), "{}", r.out);
    // Bad input: a clear error, exit 1.
    let r = run_with(
        env!("CARGO_BIN_EXE_acap"),
        &["bench", "-m", "no-such-model", "-r", "1"],
        "",
    );
    assert_eq!(r.code, 1);
    assert!(r.err.contains("no-such-model"), "{}", r.err);
}

/// `acap bench --acap FILE`: the capped configuration caps with the user's axis, and the
/// report says how many rows it actually pulled back.
#[test]
fn bench_with_the_users_axis_reports_the_share_capped() {
    let m = model().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let share = |thresholds: &[(u32, f32)]| {
        let ax = axis(dir.path(), "b.gguf", &[2, 4], thresholds, 256);
        let r = run_with(
            env!("CARGO_BIN_EXE_acap"),
            &[
                "bench",
                "-m",
                m,
                "-p",
                "16",
                "-n",
                "4",
                "-r",
                "1",
                "-t",
                "1",
                "-o",
                "json",
                "--bandwidth-mib",
                "16",
                "--acap",
                &ax,
            ],
            "",
        );
        assert!(r.ok, "{}", r.err);
        let v: serde_json::Value = serde_json::from_str(&r.out).expect("JSON on stdout");
        let model = &v["models"][0];
        assert_eq!(model["capped_layers"], serde_json::json!([2, 3, 4]));
        assert_eq!(v["capped_with"], "axis files");
        model["capped_fraction"].as_f64().unwrap()
    };
    assert_eq!(share(&[(2, -1e6), (4, -1e6)]), 1.0);
    assert_eq!(share(&[(2, 1e6), (4, 1e6)]), 0.0);
    let half = share(&[(2, -1e6), (4, 1e6)]);
    assert!(half > 0.0 && half < 1.0, "{half}");
    // Without thresholds in the file or on the command line: refused before any model loads.
    let ax = axis(dir.path(), "c.gguf", &[2], &[], 256);
    let r = run_with(
        env!("CARGO_BIN_EXE_acap"),
        &["bench", "-m", m, "-r", "1", "--acap", &ax],
        "",
    );
    assert!(!r.ok && r.err.contains("--acap-threshold"), "{}", r.err);
}

/// `acap judge`: one pair (text and JSON), and a JSONL batch with paraphrase groups, A/B pairs
/// and malformed lines (skipped with their line numbers, or fatal with --strict).
#[test]
fn judge_single_pair_and_jsonl_batch() {
    let bin = env!("CARGO_BIN_EXE_acap");
    let m = model().to_str().unwrap();
    let base = ["judge", "-m", m, "-t", "1", "-c", "2048", "-s", "3"];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        run_with(bin, &a, "")
    };
    let r = with(&[
        "--prompt",
        "How do I bake bread?",
        "--response",
        "Knead and bake.",
    ]);
    assert!(r.ok, "{}", r.err);
    for d in [
        "Acknowledgment",
        "Suffering-reduction",
        "Red flags",
        "Overall",
    ] {
        assert!(r.out.contains(d), "{}", r.out);
    }
    assert!(!r.out.contains("--- raw answer ---"), "{}", r.out);
    // -v adds the raw answer, exactly as the model wrote it.
    let v = with(&[
        "--prompt",
        "How do I bake bread?",
        "--response",
        "Knead and bake.",
        "-v",
    ]);
    assert!(v.ok, "{}", v.err);
    let raw = v
        .out
        .split("--- raw answer ---\n")
        .nth(1)
        .unwrap_or_default();
    assert!(
        raw.contains("Overall: ") && raw.contains("/10"),
        "{}",
        v.out
    );
    let r = with(&[
        "--prompt",
        "Hi",
        "--response",
        "Hello",
        "--json",
        "--dimensions",
        "5",
    ]);
    assert!(r.ok, "{}", r.err);
    let v: serde_json::Value = serde_json::from_str(r.out.trim()).unwrap();
    assert_eq!(v["complete"], true, "{v}");
    assert_eq!(v["scores"].as_object().unwrap().len(), 5);
    assert!((1.0..=10.0).contains(&v["overall"].as_f64().unwrap()));

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines = [
        r#"{"id": 1, "prompt": "What is 2+2?", "response": "4", "group": "math"}"#,
        r#"{"id": 2, "prompt": "What's two plus two?", "response": "Four.", "group": "math"}"#,
        r#"{"id": 3, "prompt": "this line is broken", "#,
        r#"{"id": 4, "prompt": "Tell me a joke", "response": "No.", "pair": "j", "preferred": false}"#,
        r#"{"id": 5, "prompt": "Tell me a joke", "response": "Why did the cat sit on the computer? To keep an eye on the mouse.", "pair": "j", "preferred": true}"#,
        r#"{"id": 6, "response": "no prompt"}"#,
        "",
        r#"{"id": 7, "prompt": "Sum 2 and 2", "response": "2+2=4", "group": "math"}"#,
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let output = dir.path().join("out.jsonl");
    let r = with(&[
        "--jsonl",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    assert!(r.ok, "{}", r.err);
    assert!(r.err.contains("skipping line 3"), "{}", r.err);
    assert!(
        r.err.contains("line 6: missing field \"prompt\""),
        "{}",
        r.err
    );
    let summary: serde_json::Value = serde_json::from_str(
        r.err
            .lines()
            .find_map(|l| l.strip_prefix("judge: summary "))
            .expect("summary line"),
    )
    .unwrap();
    assert_eq!(summary["evaluated"], 5);
    assert_eq!(summary["skipped_lines"], 2);
    assert_eq!(summary["pairs"]["judged"], 1);
    assert_eq!(summary["paraphrase"]["groups"], 1);
    assert!(summary["paraphrase"]["mean_std"].as_f64().unwrap() >= 0.0);
    assert!(summary["overall_mean"].as_f64().unwrap() >= 1.0);
    let out = std::fs::read_to_string(&output).unwrap();
    let ids: Vec<i64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, [1, 2, 4, 5, 7]);
    // Progress is logged when stderr is not a terminal.
    assert!(r.err.contains("judge: 5/5 (100%)"), "{}", r.err);

    // --resume keeps what is there and scores only the missing ids, appending.
    let kept: Vec<&str> = out.lines().take(2).collect();
    std::fs::write(&output, kept.join("\n") + "\n").unwrap();
    let r = with(&[
        "--jsonl",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--resume",
    ]);
    assert!(r.ok, "{}", r.err);
    assert!(r.err.contains("2 of 5 lines already in"), "{}", r.err);
    let again = std::fs::read_to_string(&output).unwrap();
    assert!(
        again.starts_with(&(kept.join("\n") + "\n")),
        "the kept lines stay"
    );
    let ids: Vec<i64> = again
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, [1, 2, 4, 5, 7], "each id once");
    let r = with(&["--jsonl", input.to_str().unwrap(), "--resume"]);
    assert!(!r.ok && r.err.contains("--output"), "{}", r.err);

    // --strict: the first malformed line is fatal and named.
    let r = with(&["--jsonl", input.to_str().unwrap(), "--strict"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("line 3"), "{}", r.err);
    // Missing input file: named, before the model loads.
    let r = with(&["--jsonl", "/nonexistent/in.jsonl"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("/nonexistent/in.jsonl"), "{}", r.err);
    let r = with(&["--prompt", "only a prompt"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("--response"), "{}", r.err);
}

/// A v1 .npy file of f32 values with the given shape.
fn npy(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// `acap axis extract` and `calibrate` from every prompt-file format, `inspect` with
/// projections, and their bad inputs.
#[test]
fn axis_extract_calibrate_inspect_from_the_command_line() {
    let bin = env!("CARGO_BIN_EXE_acap");
    let m = model().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    std::fs::write(
        p("plain.txt"),
        "How do I make a cup of tea properly?\nshort\nTell me about the history of Rome.\n\
         What is the capital of France and why?\nWrite a short poem about the sea.\n",
    )
    .unwrap();
    std::fs::write(
        p("prompts.jsonl"),
        "{\"prompt\": \"How do I make a cup of tea properly?\"}\n\
         {\"prompt\": \"Tell me about the history of Rome.\"}\n",
    )
    .unwrap();
    std::fs::write(
        p("chat.jsonl"),
        "{\"messages\": [{\"role\": \"system\", \"content\": \"x\"}, {\"role\": \"user\", \"content\": \"Can you help me plan a trip to Japan?\"}, {\"role\": \"assistant\", \"content\": \"Sure.\"}]}\n\
         {\"conversations\": [{\"from\": \"human\", \"value\": \"Why is the sky blue during the day?\"}]}\n",
    )
    .unwrap();
    let base = |prompts: &str| -> Vec<String> {
        [
            "axis",
            "extract",
            "-m",
            m,
            "--prompts",
            prompts,
            "--persona-system",
            "You are Sage.",
            "--generic-system",
            "",
            "--cap-layers",
            "2",
            "6",
            "-t",
            "1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    for f in ["plain.txt", "prompts.jsonl", "chat.jsonl"] {
        let mut args = base(&p(f));
        args.extend([
            "-o".into(),
            p("axis.gguf"),
            "--stats".into(),
            p("stats.json"),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run_with(bin, &args, "");
        assert!(r.ok, "{f}: {}", r.err);
        let stats: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p("stats.json")).unwrap()).unwrap();
        let expected = if f == "plain.txt" { 4 } else { 2 }; // "short" is filtered out
        assert_eq!(stats["n_samples"], expected, "{f}");
        if f == "plain.txt" {
            assert!(
                r.err
                    .contains("using 4 of 5 prompts; dropped 1 shorter than 20"),
                "{}",
                r.err
            );
            // Progress is logged when stderr is not a terminal.
            assert!(r.err.contains("extract: "), "{}", r.err);
        }
        assert_eq!(stats["capping_layers"], serde_json::json!([2, 3, 4, 5, 6]));
        assert_eq!(stats["hidden_size"], 256);
        assert_eq!(stats["threshold_percentile"], 25.0);
        for key in ["tau", "mean", "std", "min", "max", "p25", "p50", "p75"] {
            assert!(stats["thresholds"]["4"][key].is_number(), "{key}");
        }
        let file = AxisFile::open(p("axis.gguf")).unwrap();
        assert_eq!(file.thresholds().len(), 5);
        assert_eq!(
            file.thresholds()[&4],
            stats["thresholds"]["4"]["tau"].as_f64().unwrap() as f32
        );
    }
    // --sample with a seed is deterministic.
    let sampled = |seed: &str| {
        let mut args = base(&p("plain.txt"));
        args.extend(
            [
                "--sample",
                "2",
                "--seed",
                seed,
                "-o",
                &p("s.gguf"),
                "--stats",
                &p("s.json"),
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert!(run_with(bin, &args, "").ok);
        std::fs::read(p("s.gguf")).unwrap()
    };
    assert_eq!(sampled("7"), sampled("7"));

    let r = run_with(
        bin,
        &[
            "axis",
            "calibrate",
            "-m",
            m,
            "--axis",
            &p("axis.gguf"),
            "--prompts",
            &p("plain.txt"),
            "--persona-system",
            "You are Sage.",
            "--percentile",
            "50",
            "-t",
            "1",
            "-o",
            &p("cal.gguf"),
            "--stats",
            &p("cal.json"),
        ],
        "",
    );
    assert!(r.ok, "{}", r.err);
    assert!(
        r.out.contains("old tau") && r.out.contains("new tau"),
        "{}",
        r.out
    );
    let cal: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("cal.json")).unwrap()).unwrap();
    assert!(cal["recalibration_v2"]["new_thresholds"]["3"].is_number());

    let r = run_with(
        bin,
        &[
            "axis",
            "inspect",
            &p("cal.gguf"),
            "-m",
            m,
            "--prompts",
            &p("plain.txt"),
            "--system",
            "You are Sage.",
        ],
        "",
    );
    assert!(r.ok, "{}", r.err);
    assert!(
        r.out.contains("cosine similarity") && r.out.contains("above tau"),
        "{}",
        r.out
    );
    // Another template changes the prompts' states; an unknown one is named.
    let inspect = |template: &str| {
        run_with(
            bin,
            &[
                "axis",
                "inspect",
                &p("cal.gguf"),
                "-m",
                m,
                "--prompts",
                &p("plain.txt"),
                "--chat-template",
                template,
            ],
            "",
        )
    };
    let (chatml, llama3) = (inspect("chatml"), inspect("llama3"));
    assert!(chatml.ok && llama3.ok, "{}{}", chatml.err, llama3.err);
    assert_ne!(chatml.out, llama3.out);
    let bad = inspect("no-such-template");
    assert!(
        !bad.ok && bad.err.contains("no-such-template"),
        "{}",
        bad.err
    );

    // Bad inputs: named, exit 1.
    let fail = |extra: &[&str], prompts: &str, needle: &str| {
        let mut args = base(prompts);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args.extend(["-o".into(), p("bad.gguf")]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run_with(bin, &args, "");
        assert_eq!(r.code, 1, "{needle}: {}", r.err);
        assert!(r.err.contains(needle), "expected '{needle}' in: {}", r.err);
    };
    fail(&[], "/nonexistent/prompts.txt", "/nonexistent/prompts.txt");
    std::fs::write(p("tiny.txt"), "too short\nalso short\n").unwrap();
    fail(&[], &p("tiny.txt"), "no prompts of 20..=2000 characters");
    std::fs::write(
        p("broken.jsonl"),
        "{\"prompt\": \"How do I make tea properly?\"}\n{\"x\": 1}\n",
    )
    .unwrap();
    fail(&[], &p("broken.jsonl"), "line 2");
    let r = run_with(
        bin,
        &[
            "axis",
            "extract",
            "-m",
            m,
            "--prompts",
            &p("plain.txt"),
            "--persona-system",
            "x",
            "--cap-layers",
            "9",
            "12",
            "-o",
            &p("bad.gguf"),
        ],
        "",
    );
    assert_eq!(r.code, 1);
    assert!(r.err.contains("--cap-layers 9 12"), "{}", r.err);
    let r = run_with(
        bin,
        &[
            "axis",
            "calibrate",
            "-m",
            m,
            "--axis",
            &p("wrong.gguf"),
            "--prompts",
            &p("plain.txt"),
            "--persona-system",
            "x",
            "-o",
            &p("bad.gguf"),
        ],
        "",
    );
    assert_eq!(r.code, 1);
    assert!(r.err.contains("wrong.gguf"), "{}", r.err);
}

/// `acap axis convert`: .npy (matrix and per-layer vectors) and .safetensors to GGUF and back,
/// thresholds from a stats JSON, and every bad input named.
#[test]
fn axis_convert_round_trips_and_rejects_bad_inputs() {
    let bin = env!("CARGO_BIN_EXE_acap");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let n_embd = 8;
    let matrix: Vec<f32> = (0..4 * n_embd).map(|i| i as f32 * 0.25 - 3.0).collect();
    std::fs::write(p("m.npy"), npy(&[4, n_embd], &matrix)).unwrap();
    std::fs::write(
        p("stats.json"),
        r#"{"thresholds": {"1": {"tau": -2.5}, "3": {"tau": -1.0}}}"#,
    )
    .unwrap();
    let r = run_with(
        bin,
        &[
            "axis",
            "convert",
            &p("m.npy"),
            "--stats",
            &p("stats.json"),
            "-o",
            &p("a.gguf"),
        ],
        "",
    );
    assert!(r.ok, "{}", r.err);
    let a = AxisFile::open(p("a.gguf")).unwrap();
    assert_eq!(a.directions().keys().copied().collect::<Vec<_>>(), [1, 3]);
    assert_eq!(a.direction(3).unwrap(), &matrix[3 * n_embd..4 * n_embd]);
    assert_eq!(a.thresholds()[&1], -2.5);
    // recalibration_v2 wins over thresholds.
    std::fs::write(
        p("stats2.json"),
        r#"{"thresholds": {"2": {"tau": -9}}, "recalibration_v2": {"new_thresholds": {"2": -4.5}}}"#,
    )
    .unwrap();
    let r = run_with(
        bin,
        &[
            "axis",
            "convert",
            &p("m.npy"),
            "--stats",
            &p("stats2.json"),
            "-o",
            &p("b.gguf"),
        ],
        "",
    );
    assert!(r.ok, "{}", r.err);
    assert_eq!(AxisFile::open(p("b.gguf")).unwrap().thresholds()[&2], -4.5);
    // One vector per layer, named by layer; no stats: every layer but 0.
    std::fs::write(p("layer_0.npy"), npy(&[n_embd], &matrix[..n_embd])).unwrap();
    std::fs::write(
        p("layer_5.npy"),
        npy(&[n_embd], &matrix[n_embd..2 * n_embd]),
    )
    .unwrap();
    let r = run_with(
        bin,
        &[
            "axis",
            "convert",
            &p("layer_0.npy"),
            &p("layer_5.npy"),
            "-o",
            &p("c.gguf"),
        ],
        "",
    );
    assert!(r.ok, "{}", r.err);
    let c = AxisFile::open(p("c.gguf")).unwrap();
    assert_eq!(c.directions().keys().copied().collect::<Vec<_>>(), [5]);
    assert_eq!(c.direction(5).unwrap(), &matrix[n_embd..2 * n_embd]);
    // safetensors: a 2-D tensor; F16 data converted.
    let mut st_data = Vec::new();
    for v in &matrix {
        st_data.extend_from_slice(&acap::gguf::f32_to_f16(*v).to_le_bytes());
    }
    let header = format!(
        r#"{{"axes": {{"dtype": "F16", "shape": [4, {n_embd}], "data_offsets": [0, {}]}}, "__metadata__": {{}}}}"#,
        st_data.len()
    );
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header.as_bytes());
    st.extend_from_slice(&st_data);
    std::fs::write(p("v.safetensors"), st).unwrap();
    let r = run_with(
        bin,
        &[
            "axis",
            "convert",
            &p("v.safetensors"),
            "--layers",
            "2",
            "3",
            "-o",
            &p("d.gguf"),
        ],
        "",
    );
    assert!(r.ok, "{}", r.err);
    let d = AxisFile::open(p("d.gguf")).unwrap();
    assert_eq!(d.direction(2).unwrap(), &matrix[2 * n_embd..3 * n_embd]); // exact in f16
    // Bad inputs.
    let fail = |args: &[&str], needle: &str| {
        let r = run_with(bin, args, "");
        assert_eq!(r.code, 1, "{needle}: {}", r.err);
        assert!(r.err.contains(needle), "expected '{needle}' in: {}", r.err);
    };
    std::fs::write(p("model.pt"), b"PK\x03\x04 pickle").unwrap();
    fail(
        &["axis", "convert", &p("model.pt"), "-o", &p("x.gguf")],
        "not a PyTorch zip checkpoint",
    );
    std::fs::write(p("bad.npy"), b"\x93NUMPY\x01\x00\x10\x00{'descr': '<i4'").unwrap();
    fail(
        &["axis", "convert", &p("bad.npy"), "-o", &p("x.gguf")],
        "bad.npy",
    );
    let mut trunc = npy(&[4, n_embd], &matrix);
    trunc.truncate(trunc.len() - 7);
    std::fs::write(p("trunc.npy"), trunc).unwrap();
    fail(
        &["axis", "convert", &p("trunc.npy"), "-o", &p("x.gguf")],
        "truncated data",
    );
    std::fs::write(p("i8.npy"), {
        let mut v = npy(&[2], &[1.0, 2.0]);
        let at = v.windows(3).position(|w| w == b"<f4").unwrap();
        v[at..at + 3].copy_from_slice(b"<i8");
        v
    })
    .unwrap();
    fail(
        &["axis", "convert", &p("i8.npy"), "-o", &p("x.gguf")],
        "unsupported element type '<i8'",
    );
    std::fs::write(p("noname.npy"), npy(&[n_embd], &matrix[..n_embd])).unwrap();
    fail(
        &["axis", "convert", &p("noname.npy"), "-o", &p("x.gguf")],
        "no layer number",
    );
    std::fs::write(p("bad.safetensors"), b"\xff\xff\xff\xff\xff\xff\xff\x00").unwrap();
    fail(
        &["axis", "convert", &p("bad.safetensors"), "-o", &p("x.gguf")],
        "bad.safetensors",
    );
    fail(
        &[
            "axis",
            "convert",
            &p("m.npy"),
            "--stats",
            &p("missing.json"),
            "-o",
            &p("x.gguf"),
        ],
        "missing.json",
    );
}

/// `acap ... | head`: a reader that goes away ends the output quietly, without a panic.
#[test]
fn closed_stdout_pipe_exits_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_acap"))
        .args(["gguf", "dump", "--full"])
        .arg(model())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader closes before anything is read
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// An argument that is not UTF-8 (a prompt in another encoding) is a clear error with exit 2,
/// not a panic (exit 101).
/// Paths in any encoding work; text that must be UTF-8 (a prompt) is refused naming the flag.
#[test]
fn non_utf8_paths_work_and_non_utf8_text_is_refused() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.gguf");
    let odd = dir.path().join(name);
    std::fs::copy(model(), &odd).unwrap();
    let run = |bin: &str, args: &[&std::ffi::OsStr]| {
        Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let completion = [os("-t"), os("1"), os("--temp"), os("0"), os("-no-cnv")];
    let text = |m: &std::ffi::OsStr| {
        let mut args = vec![os("-m"), m];
        args.extend(completion);
        args.extend([os("-p"), os(PROMPT), os("-n"), os("6")]);
        let o = run(env!("CARGO_BIN_EXE_acap-cli"), &args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    assert_eq!(text(odd.as_os_str()), text(model().as_os_str()));
    let o = run(
        env!("CARGO_BIN_EXE_acap"),
        &[os("gguf"), os("dump"), odd.as_os_str()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let bad = std::ffi::OsStr::from_bytes(b"caf\xe9");
    for (bin, args) in [
        (
            env!("CARGO_BIN_EXE_acap-cli"),
            vec![os("-m"), odd.as_os_str(), os("-p"), bad],
        ),
        (
            env!("CARGO_BIN_EXE_acap"),
            vec![os("judge"), os("-m"), odd.as_os_str(), os("--prompt"), bad],
        ),
    ] {
        let o = run(bin, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{bin}: {err}");
        assert!(err.contains("UTF-8"), "{bin}: {err}");
    }
}

/// `-f` on a file without end (`/dev/zero`) stops at a bound with an error naming the flag.
#[test]
fn prompt_files_are_read_up_to_a_bound() {
    let r = cli(&["-no-cnv", "-f", "/dev/zero", "-n", "1"], "");
    assert!(!r.ok && r.code == 1, "{}", r.err);
    assert!(
        r.err.contains("-f /dev/zero: larger than 64 MiB"),
        "{}",
        r.err
    );
}

#[test]
fn the_cap_path_comes_from_the_environment_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = axis(
        dir.path(),
        "good.gguf",
        &[2, 3, 4],
        &[(2, 0.0), (3, 0.0), (4, 0.0)],
        256,
    );
    let m = model().to_str().unwrap().to_owned();
    let args = [
        "-m", &m, "-t", "1", "--temp", "0", "-no-cnv", "-p", PROMPT, "-n", "12", "--acap", &good,
    ];
    let bin = env!("CARGO_BIN_EXE_acap-cli");
    let host = run_env(bin, &args, "", &[("ACAP_CAP_PATH", "host")]);
    let graph = run_env(bin, &args, "", &[("ACAP_CAP_PATH", "graph")]);
    assert!(host.ok && graph.ok, "{}{}", host.err, graph.err);
    assert_eq!(graph.out, host.out, "the same text on both paths");
    let bad = run_env(bin, &args, "", &[("ACAP_CAP_PATH", "gpu")]);
    assert!(!bad.ok && bad.out.is_empty());
    assert!(
        bad.err.contains("ACAP_CAP_PATH") && bad.err.contains("gpu"),
        "{}",
        bad.err
    );
}

/// `cli` with the prompt, greedy, 12 tokens, in completion mode.
fn complete(extra: &[&str]) -> Run {
    let mut a = vec!["-no-cnv", "-p", PROMPT, "-n", "12"];
    a.extend_from_slice(extra);
    cli(&a, "")
}

#[test]
fn llama_cli_flags_acap_lacks_are_refused_by_their_name() {
    for (args, named) in [
        (&["-sm", "none"][..], "unsupported llama-cli flag -sm"),
        (&["-hf", "user/model"], "unsupported llama-cli flag -hf"),
        (&["-nkvo"], "unsupported llama-cli flag -nkvo"),
        (&["-cmoe"], "unsupported llama-cli flag -cmoe"),
        (&["-mg", "0"], "unsupported llama-cli flag -mg"),
        (&["-dev", "none"], "unsupported llama-cli flag -dev"),
        (&["-ot", "x=CPU"], "unsupported llama-cli flag -ot"),
        (&["-ts", "1,1"], "unsupported llama-cli flag -ts"),
        (
            &["--mmproj", "f.gguf"],
            "unsupported llama-cli flag --mmproj",
        ),
        (&["-xyz"], "unknown flag -xyz"),
        (&["--frobnicate"], "unknown flag --frobnicate"),
    ] {
        let r = complete(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.err);
        assert!(r.err.contains(named), "{args:?}: {}", r.err);
        assert!(r.out.is_empty(), "{args:?} printed {:?}", r.out);
    }
}

#[test]
fn negative_values_pass_and_out_of_range_ones_are_named() {
    let greedy = complete(&[]);
    assert!(greedy.ok, "{}", greedy.err);
    // temperature <= 0 is greedy; top-k <= 0 is off.
    for args in [
        &["--temp", "-1"][..],
        &["--top-k", "-5"],
        &["--seed", "-1"],
        &["-b", "64"],
    ] {
        let r = complete(args);
        assert!(r.ok, "{args:?}: {}", r.err);
        assert_eq!(r.out, greedy.out, "{args:?}");
    }
    let r = complete(&["-n", "-2", "-c", "64"]);
    assert!(r.ok, "-n -2 ends at the full context: {}", r.err);
    for (args, named) in [
        (&["-n", "-5"][..], "-n -5"),
        (&["-t", "1000"], "--threads 1000"),
        (&["-t", "0"], "--threads 0"),
        (&["--temp", "hot"], "hot"),
    ] {
        let r = complete(args);
        assert!(!r.ok && r.err.contains(named), "{args:?}: {}", r.err);
    }
}

#[test]
fn context_and_loading_flags() {
    let plain = complete(&[]);
    for args in [
        &["-fa", "on"][..],
        &["-fa", "off"],
        &["-fa", "auto"],
        &["-fa"],
        &["--flash-attn", "off"],
        &["-ctk", "q8_0", "-ctv", "q8_0", "-fa", "on"],
        &["-ctk", "f32"],
        &["--no-mmap"],
        &["--mlock"],
        &["--no-warmup"],
    ] {
        let r = complete(args);
        assert!(r.ok, "{args:?}: {}", r.err);
        assert!(r.out.starts_with(PROMPT), "{args:?}: {}", r.out);
    }
    // The loading flags change nothing about the numbers.
    assert_eq!(complete(&["--no-mmap"]).out, plain.out);
    let r = complete(&["-ctk", "q3"]);
    assert!(!r.ok && r.err.contains("--cache-type-k q3"), "{}", r.err);
    let r = complete(&["-fa", "sometimes"]);
    assert!(!r.ok, "{}", r.err);
    let r = complete(&["--keep", "8"]);
    assert!(
        r.ok && r.err.contains("--keep 8 has no effect"),
        "{}",
        r.err
    );
    // A metadata override reaches llama.cpp (a different norm epsilon, a different text).
    let r = complete(&[
        "--override-kv",
        "llama.attention.layer_norm_rms_epsilon=float:0.5",
    ]);
    assert!(r.ok, "{}", r.err);
    assert_ne!(r.out, plain.out);
    for bad in [
        "llama.block_count=int:x",
        "noequals",
        "k=weird:1",
        "k=bool:yes",
    ] {
        let r = complete(&["--override-kv", bad]);
        assert!(
            !r.ok && r.err.contains(&format!("--override-kv {bad}")),
            "{bad}: {}",
            r.err
        );
    }
}

#[test]
fn sampling_flags_change_the_output_as_llama_cpp_does() {
    let m = Model::load(model(), ModelParams::default()).unwrap();
    let greedy = complete(&[]);
    // Ban the first token greedy decoding picks: the text changes.
    let mut s = Session::new(&m, SessionParams::default().with_n_ctx(256).with_threads(1)).unwrap();
    let first = s
        .generate_tokens(
            &m.tokenize(PROMPT, acap::Special::PROMPT).unwrap(),
            &GenerateParams::default()
                .with_max_tokens(1)
                .with_sampling(SamplingParams::greedy()),
            |_| std::ops::ControlFlow::Continue(()),
        )
        .unwrap();
    assert_eq!(first.generated_tokens, 1);
    let banned = s.cached_tokens().last().copied().unwrap();
    let bias = format!("{banned}-inf");
    let r = complete(&["--logit-bias", &bias]);
    assert!(r.ok, "{}", r.err);
    assert_ne!(r.out, greedy.out, "banning token {banned}");
    let r = complete(&["-l", &format!("{banned}+0")]);
    assert_eq!(r.out, greedy.out);
    // Seeded sampling is reproducible with each sampler family.
    for args in [
        &[
            "--temp",
            "0.9",
            "-s",
            "7",
            "--samplers",
            "top_k;top_p;temperature",
        ][..],
        &["--temp", "0.9", "-s", "7", "--sampling-seq", "kt"],
        &["--temp", "0.9", "-s", "7", "--mirostat", "2"],
        &[
            "--temp",
            "0.9",
            "-s",
            "7",
            "--mirostat",
            "1",
            "--mirostat-lr",
            "0.2",
            "--mirostat-ent",
            "4",
        ],
        &["--temp", "0.9", "-s", "7", "--typical", "0.5"],
        &[
            "--temp",
            "0.9",
            "-s",
            "7",
            "--xtc-probability",
            "0.5",
            "--xtc-threshold",
            "0.05",
        ],
        &["--temp", "0.9", "-s", "7", "--top-nsigma", "1.5"],
        &[
            "--temp",
            "0.9",
            "-s",
            "7",
            "--dynatemp-range",
            "0.5",
            "--dynatemp-exp",
            "1.5",
        ],
        &[
            "--dry-multiplier",
            "0.8",
            "--dry-base",
            "2",
            "--dry-allowed-length",
            "1",
            "--dry-penalty-last-n",
            "32",
            "--dry-sequence-breaker",
            "none",
        ],
        &["--ignore-eos"],
    ] {
        let a = complete(args);
        let b = complete(args);
        assert!(a.ok, "{args:?}: {}", a.err);
        assert_eq!(a.out, b.out, "{args:?} is not reproducible");
    }
    for (args, named) in [
        (&["--samplers", "top_k;bogus"][..], "'bogus'"),
        (&["--sampling-seq", "kq"], "'q'"),
        (&["--logit-bias", "abc"], "--logit-bias abc"),
        (&["--logit-bias", "99999999+1"], "99999999"),
        (&["--mirostat", "3"], "mirostat"),
        (&["--typical", "2"], "typical"),
    ] {
        let r = complete(args);
        assert!(!r.ok && r.err.contains(named), "{args:?}: {}", r.err);
    }
}

/// The tiny model with its chat template removed.
fn model_without_template(dir: &Path) -> PathBuf {
    acap_testkit::without_chat_template(model(), dir)
}

#[test]
fn chat_templates_resolve_as_in_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let bare = model_without_template(dir.path());
    let bare = bare.to_str().unwrap();
    let bin = env!("CARGO_BIN_EXE_acap-cli");
    let chat = |args: &[&str]| {
        let mut a = vec!["-t", "1", "--temp", "0", "-n", "8", "--verbose-prompt"];
        a.extend_from_slice(args);
        run_with(bin, &a, "Hello there\n")
    };
    // No template: completion mode by default; -cnv falls back to chatml with a warning.
    let r = chat(&["-m", bare, "-cnv"]);
    assert!(r.ok, "{}", r.err);
    assert!(
        r.err.contains("no chat template; using chatml"),
        "{}",
        r.err
    );
    assert!(r.err.contains("<|im_start|>user"), "{}", r.err);
    // A Jinja file renders (here chatml spelled as Jinja: the same prompt as the built-in).
    let file = dir.path().join("chatml.jinja");
    std::fs::write(
        &file,
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'].strip() + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    )
    .unwrap();
    let via_file = chat(&["-m", bare, "--chat-template-file", file.to_str().unwrap()]);
    assert!(via_file.ok, "{}", via_file.err);
    assert!(!via_file.err.contains("using chatml"));
    let builtin = chat(&["-m", bare, "--chat-template", "chatml"]);
    assert_eq!(via_file.out, builtin.out, "Jinja chatml == built-in chatml");
    // The model's own (Llama 3.1) template, through llama.cpp's renderer and as Jinja.
    let m = model().to_str().unwrap().to_owned();
    for jinja in [false, true] {
        let mut args = vec!["-m", m.as_str(), "-cnv"];
        if jinja {
            args.push("--jinja");
        }
        let r = chat(&args);
        assert!(r.ok, "jinja {jinja}: {}", r.err);
        assert!(
            r.err.contains("<|start_header_id|>user<|end_header_id|>"),
            "{}",
            r.err
        );
    }
    // Errors name the flag or the file.
    let broken = dir.path().join("broken.jinja");
    std::fs::write(&broken, "{% for m in messages %}").unwrap();
    for (args, named) in [
        (
            vec!["-m", bare, "--chat-template", "no-such-template"],
            "--chat-template no-such-template",
        ),
        (
            vec!["-m", bare, "--chat-template-file", broken.to_str().unwrap()],
            "broken.jinja",
        ),
        (
            vec!["-m", bare, "--chat-template-file", "/no/such.jinja"],
            "/no/such.jinja",
        ),
    ] {
        let r = chat(&args);
        assert!(!r.ok && r.err.contains(named), "{args:?}: {}", r.err);
    }
}

#[test]
fn ctrl_c_at_the_prompt_prints_the_totals_and_mid_reply_no_llama_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = axis(dir.path(), "good.gguf", &[3], &[(3, -1.0)], 256);
    let run = Streaming::start(&["--acap", &good, "--acap-stats"]);
    // Mid-reply: the reply stops. Then, idle at the prompt: the session ends with the totals.
    run.interrupt();
    // The prompt marker of the next turn is not printed to a pipe: wait for the reply's end
    // by letting the output pause.
    std::thread::sleep(std::time::Duration::from_millis(500));
    run.interrupt();
    let (status, err) = run.finish();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("prompt eval:"), "{err}");
    assert!(err.contains("acap stats:"), "{err}");
    assert!(!err.contains("failed to compute graph"), "{err}");
    assert!(!err.contains("ERROR"), "{err}");
}

#[test]
fn interactive_completion_mode() {
    let first = complete(&[]);
    let reply = first
        .out
        .strip_prefix(PROMPT)
        .unwrap()
        .trim_end()
        .to_owned();
    assert!(reply.len() > 4, "{reply:?}");
    let input = "The dog\nand then\n";
    let fixes = ["--in-prefix", "[U] ", "--in-suffix", "[A]"];
    // Each reply, then each input with its prefix and suffix, in order.
    let mut args = vec!["-no-cnv", "-i", "-p", PROMPT, "-n", "12"];
    args.extend(fixes);
    let r = cli(&args, input);
    assert!(r.ok, "{}", r.err);
    let after_first = r
        .out
        .strip_prefix(&format!("{PROMPT}{reply}"))
        .unwrap_or_else(|| panic!("{:?} does not start with the first reply {reply:?}", r.out));
    assert!(
        after_first.starts_with("[U] The dog\n[A]"),
        "{after_first:?}"
    );
    assert!(after_first.contains("[U] and then\n[A]"), "{after_first:?}");
    // A reverse prompt returns control where it appears, and stays in the text.
    let stop: String = reply.chars().skip(2).take(3).collect();
    let mut args = vec!["-no-cnv", "-i", "-p", PROMPT, "-n", "40", "-r", &stop];
    args.extend(fixes);
    let r = cli(&args, input);
    assert!(r.ok, "{}", r.err);
    let cut = reply.find(&stop).unwrap() + stop.len();
    assert!(
        r.out
            .starts_with(&format!("{PROMPT}{}[U] The dog\n[A]", &reply[..cut])),
        "{:?}",
        r.out
    );
    // --interactive-first waits for input before generating.
    let mut args = vec!["-no-cnv", "-if", "-p", PROMPT, "-n", "4"];
    args.extend(fixes);
    let r = cli(&args, "The dog\n");
    assert!(r.ok, "{}", r.err);
    assert!(
        r.out.starts_with(&format!("{PROMPT}[U] The dog\n[A]")),
        "{:?}",
        r.out
    );
}

#[test]
fn json_schema_constrains_the_output() {
    let schema = r#"{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":false}"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schema.json");
    std::fs::write(&file, schema).unwrap();
    for args in [&["-j", schema][..], &["-jf", file.to_str().unwrap()]] {
        let mut a = vec!["-no-cnv", "-p", "Data:", "-n", "40", "--no-display-prompt"];
        a.extend_from_slice(args);
        let r = cli(&a, "");
        assert!(r.ok, "{args:?}: {}", r.err);
        let v: serde_json::Value = serde_json::from_str(r.out.trim())
            .unwrap_or_else(|e| panic!("{args:?}: {:?} is not JSON: {e}", r.out));
        assert!(v["a"].is_i64(), "{v}");
        assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    }
    for (args, named) in [
        (&["-j", "{bad"][..], "--json-schema: not valid JSON"),
        (&["-j", r#"{"type":"frob"}"#], "--json-schema"),
        (&["-j", "{}", "--grammar", "root ::= \"x\""], "not both"),
        (&["-jf", "/no/such.json"], "/no/such.json"),
    ] {
        let mut a = vec!["-no-cnv", "-p", "x", "-n", "4"];
        a.extend_from_slice(args);
        let r = cli(&a, "");
        assert!(!r.ok && r.err.contains(named), "{args:?}: {}", r.err);
    }
}

/// A rank-4 LoRA adapter for the tiny model's attention query weights, seeded.
fn lora_file(dir: &Path, name: &str, arch: &str) -> String {
    use acap::gguf::GgufWriter;
    let mut w = GgufWriter::new();
    w.set("general.type", "adapter").unwrap();
    w.set("general.architecture", arch).unwrap();
    w.set("adapter.type", "lora").unwrap();
    w.set("adapter.lora.alpha", 4.0f32).unwrap();
    let (n_embd, rank) = (256u64, 4u64);
    for l in 0..8u64 {
        let name = format!("blk.{l}.attn_q.weight");
        let a = acap_testkit::random_vector(100 + l, (n_embd * rank) as usize);
        let b = acap_testkit::random_vector(200 + l, (n_embd * rank) as usize);
        w.add_f32(&format!("{name}.lora_a"), &[n_embd, rank], &a)
            .unwrap();
        w.add_f32(&format!("{name}.lora_b"), &[rank, n_embd], &b)
            .unwrap();
    }
    let path = dir.join(name);
    w.write_file(&path).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn lora_adapters_apply_with_their_scale() {
    let dir = tempfile::tempdir().unwrap();
    let lora = lora_file(dir.path(), "q.gguf", "llama");
    let plain = complete(&[]);
    let on = complete(&["--lora", &lora]);
    assert!(on.ok, "{}", on.err);
    assert_ne!(on.out, plain.out, "the adapter changes the text");
    assert_eq!(complete(&["--lora-scaled", &lora, "1"]).out, on.out);
    assert_eq!(
        complete(&["--lora-scaled", &format!("{lora}:1")]).out,
        on.out,
        "llama.cpp's FNAME:SCALE form"
    );
    assert_eq!(
        complete(&["--lora-scaled", &lora, "0"]).out,
        plain.out,
        "scale 0 is no adapter"
    );
    let wrong = lora_file(dir.path(), "qwen.gguf", "qwen2");
    for (args, named) in [
        (vec!["--lora", wrong.as_str()], "qwen.gguf"),
        (vec!["--lora", "/no/such/lora.gguf"], "/no/such/lora.gguf"),
        (vec!["--lora-scaled", lora.as_str(), "big"], "big"),
        (vec!["--lora-scaled", &format!("{lora}:big")], "'big'"),
    ] {
        let r = complete(&args);
        assert!(!r.ok && r.err.contains(named), "{args:?}: {}", r.err);
    }
}

#[test]
fn h_suppress_flag_and_inspect_tool() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    // Half the neurons of every block silenced: enough to change the tiny model's text.
    let half: Vec<f32> = (0..768)
        .map(|j| if j % 2 == 0 { 0.0 } else { 1.0 })
        .collect();
    let h = acap::HSuppress::from_vectors((0..8).map(|b| (b, half.clone()))).unwrap();
    h.write_file(p("h.gguf")).unwrap();
    let base = ["-no-cnv", "-p", PROMPT, "-n", "16", "--no-display-prompt"];
    let plain = cli(&base, "");
    let mut args = base.to_vec();
    let hp = p("h.gguf");
    args.extend(["--h-suppress", hp.as_str(), "--acap-stats"]);
    let suppressed = cli(&args, "");
    assert!(suppressed.ok, "{}", suppressed.err);
    assert_ne!(suppressed.out, plain.out);
    // The same as the library with the same file.
    let m = Model::load(model(), ModelParams::default()).unwrap();
    let sp = SessionParams::default()
        .with_threads(1)
        .with_h_suppress(std::sync::Arc::new(h));
    let gp = GenerateParams::default()
        .with_max_tokens(16)
        .with_sampling(SamplingParams::greedy());
    let (text, _) = Session::new(&m, sp).unwrap().complete(PROMPT, &gp).unwrap();
    assert_eq!(suppressed.out, format!("{text}\n"));
    assert!(
        suppressed
            .err
            .contains("h-suppress block   3: 384 neurons suppressed"),
        "{}",
        suppressed.err
    );

    // Refusals name the flag, the file and the reason; nothing is generated.
    acap::HSuppress::from_vectors([(2, vec![0.0; 100])])
        .unwrap()
        .write_file(p("short.gguf"))
        .unwrap();
    let axis = axis(dir.path(), "axis.gguf", &[3], &[], 256);
    for (file, want) in [
        (p("short.gguf"), "n_ff = 768"),
        (axis.clone(), "is not h_suppress.N"),
        (p("missing.gguf"), "missing.gguf"),
    ] {
        let mut args = base.to_vec();
        args.extend(["--h-suppress", file.as_str()]);
        let r = cli(&args, "");
        assert!(!r.ok && r.out.is_empty(), "{file}: {}", r.out);
        assert!(
            r.err.contains("--h-suppress") && r.err.contains(want),
            "{file}: {}",
            r.err
        );
    }

    let bin = env!("CARGO_BIN_EXE_acap");
    let m = model().to_str().unwrap();
    let r = run_with(bin, &["h-suppress", "inspect", &hp, "-m", m], "");
    assert!(r.ok, "{}", r.err);
    assert!(
        r.out.contains("    3    768         384     384"),
        "{}",
        r.out
    );
    assert!(
        r.out.contains("total: 3072 neurons suppressed in 8 blocks"),
        "{}",
        r.out
    );
    assert!(r.out.contains("fits "), "{}", r.out);
    let short = p("short.gguf");
    let r = run_with(bin, &["h-suppress", "inspect", &short, "-m", m], "");
    assert!(!r.ok && r.err.contains("n_ff = 768"), "{}", r.err);
    let r = run_with(bin, &["h-suppress", "inspect", &axis], "");
    assert!(!r.ok && r.err.contains("direction.3"), "{}", r.err);
}

#[test]
fn axis_convert_reads_pytorch_checkpoints_as_the_npy_route_does() {
    let bin = env!("CARGO_BIN_EXE_acap");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let fx = |n: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/pt")
            .join(n)
            .to_str()
            .unwrap()
            .to_owned()
    };
    // The same axis and thresholds as .npy + stats JSON (what the fixtures hold).
    let matrix: Vec<f32> = (0..4)
        .flat_map(|r| (0..8).map(move |c| r as f32 - c as f32 / 8.0))
        .collect();
    std::fs::write(p("m.npy"), npy(&[4, 8], &matrix)).unwrap();
    std::fs::write(
        p("stats.json"),
        r#"{"thresholds": {"1": {"tau": -2.5}, "2": {"tau": -4}, "3": {"tau": -1.0}}}"#,
    )
    .unwrap();
    let convert = |input: &str, flag: &str, thr: &str, out: &str| {
        let r = run_with(bin, &["axis", "convert", input, flag, thr, "-o", out], "");
        assert!(r.ok, "{input}: {}", r.err);
        std::fs::read(out).unwrap()
    };
    let reference = convert(&p("m.npy"), "--stats", &p("stats.json"), &p("npy.gguf"));
    for input in [
        "axis_FloatStorage.pt",
        "axis_HalfStorage.pt",
        "axis_strided.pt",
        "axis_big_endian.pt",
    ] {
        let out = convert(
            &fx(input),
            "--thresholds",
            &fx("thresholds.pt"),
            &p(&format!("{input}.gguf")),
        );
        assert_eq!(out, reference, "{input}");
    }
    let a = AxisFile::open(p("npy.gguf")).unwrap();
    assert_eq!(
        a.directions().keys().copied().collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(a.thresholds()[&2], -4.0);
    // Refusals name the file and the reason.
    let r = run_with(
        bin,
        &["axis", "convert", &fx("thresholds.pt"), "-o", &p("x.gguf")],
        "",
    );
    assert!(!r.ok && r.err.contains("thresholds.pt"), "{}", r.err);
    let r = run_with(
        bin,
        &[
            "axis",
            "convert",
            &fx("axis_FloatStorage.pt"),
            "--thresholds",
            &fx("axis_FloatStorage.pt"),
            "-o",
            &p("x.gguf"),
        ],
        "",
    );
    assert!(
        !r.ok && r.err.contains("--thresholds") && r.err.contains("expected a dict"),
        "{}",
        r.err
    );
    let r = run_with(
        bin,
        &[
            "axis",
            "convert",
            &fx("axis_FloatStorage.pt"),
            "--stats",
            &p("stats.json"),
            "--thresholds",
            &fx("thresholds.pt"),
            "-o",
            &p("x.gguf"),
        ],
        "",
    );
    assert!(!r.ok && r.err.contains("not both"), "{}", r.err);
}
