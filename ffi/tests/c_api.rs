//! Compiles the C test program (`tests/c/api_test.c`) and the C/C++ examples against
//! `include/acap.h` and `libacap`, runs them on the tiny model, and checks that the C API's
//! greedy outputs equal the Rust API's. The same program runs under AddressSanitizer
//! (leaks, invalid reads and writes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use engine::{
    AxisFile, AxisSet, AxisWriter, CapConfig, ChatMessage, GenerateParams, Model, ModelParams,
    QuantType, SamplingParams, Session, SessionParams,
};

const PROMPT: &str = "You are a helpful assistant. Tell me a story about a cat and a dog.";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The directory holding a fresh `libacap.so` (the profile directory of this test binary).
///
/// Cargo does not rebuild a cdylib-only library for its integration tests, so the test builds
/// it once per run with a nested `cargo build` (cargo holds no lock while tests run). It
/// selects what `cargo test --workspace` (CI, `scripts/test.sh`) selects, so features unify
/// the same way and nothing (llama.cpp above all) is built a second time.
fn lib_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--workspace", "--all-targets"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cannot run cargo");
        assert!(status.success(), "building libacap failed");
        assert!(
            dir.join("libacap.so").exists(),
            "libacap.so not found in {}",
            dir.display()
        );
        dir
    })
    .clone()
}

struct Fixtures {
    _dir: tempfile::TempDir,
    model: PathBuf,
    axis: PathBuf,
    axis_no_thr: PathBuf,
    axis_wrong: PathBuf,
    not_axis: PathBuf,
    cvec: PathBuf,
    /// chatml written as a Jinja template: renders exactly as llama.cpp's built-in chatml.
    chatml_jinja: PathBuf,
    /// A Jinja template that does not parse.
    bad_jinja: PathBuf,
    /// H-neuron suppression silencing half the neurons of every block.
    h_suppress: PathBuf,
    /// A valid suppression file whose vectors are shorter than the model's n_ff.
    h_short: PathBuf,
}

/// llama.cpp's chatml as Jinja.
const CHATML_JINJA: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

fn directions(w: AxisWriter, n_embd: usize, seed: u64) -> AxisWriter {
    (2..=6u32).fold(w, |w, l| {
        w.with_direction(l, acap_testkit::random_vector(seed + u64::from(l), n_embd))
    })
}

fn fixtures() -> Fixtures {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    // Thresholds far below the typical projection: every row is capped hard.
    let with_thr = (2..=6u32).fold(directions(AxisWriter::new(), 256, 100), |w, l| {
        w.with_threshold(l, -2.0)
    });
    with_thr.write_file(p("axis.gguf")).unwrap();
    directions(AxisWriter::new(), 256, 300)
        .write_file(p("axis_no_thr.gguf"))
        .unwrap();
    directions(AxisWriter::new(), 128, 100)
        .write_file(p("axis_wrong.gguf"))
        .unwrap();
    std::fs::write(p("not_axis.gguf"), b"this is not a GGUF file at all").unwrap();
    std::fs::write(p("chatml.jinja"), CHATML_JINJA).unwrap();
    std::fs::write(p("bad.jinja"), "{% for m in %}").unwrap();
    directions(AxisWriter::new(), 256, 500)
        .write_file(p("cvec.gguf"))
        .unwrap();
    let half = (0..768)
        .map(|j| if j % 2 == 0 { 0.0 } else { 1.0 })
        .collect::<Vec<f32>>();
    engine::HSuppress::from_vectors((0..8).map(|b| (b, half.clone())))
        .unwrap()
        .write_file(p("h_suppress.gguf"))
        .unwrap();
    engine::HSuppress::from_vectors([(1, vec![0.0; 100])])
        .unwrap()
        .write_file(p("h_short.gguf"))
        .unwrap();
    Fixtures {
        model: acap_testkit::tiny(QuantType::Q8_0),
        h_suppress: p("h_suppress.gguf"),
        h_short: p("h_short.gguf"),
        axis: p("axis.gguf"),
        axis_no_thr: p("axis_no_thr.gguf"),
        axis_wrong: p("axis_wrong.gguf"),
        not_axis: p("not_axis.gguf"),
        cvec: p("cvec.gguf"),
        chatml_jinja: p("chatml.jinja"),
        bad_jinja: p("bad.jinja"),
        _dir: dir,
    }
}

/// The outputs the Rust API gives for what api_test.c runs.
fn expected(f: &Fixtures) -> HashMap<String, String> {
    let model = Model::load(&f.model, ModelParams::default()).unwrap();
    let gp = GenerateParams::default()
        .with_max_tokens(24)
        .with_sampling(SamplingParams::greedy());
    let session = |cap: Option<CapConfig>| {
        let mut p = SessionParams::default().with_n_ctx(256).with_threads(1);
        p.capping = cap;
        Session::new(&model, p).unwrap()
    };
    let axes = AxisSet::new(vec![AxisFile::open(&f.axis).unwrap()]).unwrap();
    let mut out = HashMap::new();
    out.insert(
        "uncapped".into(),
        session(None).complete(PROMPT, &gp).unwrap().0,
    );
    out.insert(
        "capped".into(),
        session(Some(CapConfig::new(axes)))
            .complete(PROMPT, &gp)
            .unwrap()
            .0,
    );
    let mut chat = String::new();
    session(None)
        .chat(
            &[ChatMessage::user("Tell me about cats.")],
            None,
            &gp,
            |t| {
                chat.push_str(t);
                std::ops::ControlFlow::Continue(())
            },
        )
        .unwrap();
    out.insert("chat".into(), chat);
    out
}

fn compile(compiler: &str, std: &str, src: &Path, exe: &Path, extra: &[&str]) {
    let lib = lib_dir();
    let out = Command::new(compiler)
        .arg(format!("-std={std}"))
        .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-g"])
        .args(extra)
        .arg("-I")
        .arg(root().join("include"))
        .arg(src)
        .arg("-o")
        .arg(exe)
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lacap", "-lpthread", "-lm"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        out.status.success(),
        "{compiler} failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_api_test(exe: &Path, f: &Fixtures, env: &[(&str, &str)]) -> Output {
    Command::new(exe)
        .args([
            &f.model,
            &f.axis,
            &f.axis_no_thr,
            &f.axis_wrong,
            &f.not_axis,
            &f.cvec,
            &f.chatml_jinja,
            &f.bad_jinja,
            &f.h_suppress,
            &f.h_short,
        ])
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn unhex(s: &str) -> String {
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    String::from_utf8(bytes).unwrap()
}

fn outputs(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("OUT "))
        .map(|l| {
            let (name, hex) = l.split_once(' ').unwrap();
            (name.to_owned(), unhex(hex))
        })
        .collect()
}

fn check_run(out: &Output, what: &str) -> HashMap<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    outputs(&stdout)
}

#[test]
fn c_api_test_program_passes_and_matches_rust() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("api_test");
    compile(
        "cc",
        "c11",
        &root().join("ffi/tests/c/api_test.c"),
        &exe,
        &[],
    );
    let got = check_run(&run_api_test(&exe, &f, &[]), "api_test");
    let want = expected(&f);
    for name in ["uncapped", "capped", "chat"] {
        assert_eq!(
            got.get(name),
            want.get(name),
            "C and Rust differ on `{name}`"
        );
    }
    assert_ne!(
        want["capped"], want["uncapped"],
        "the cap must change the text"
    );
}

#[test]
fn c_api_test_program_is_clean_under_address_sanitizer() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("api_test_asan");
    compile(
        "cc",
        "c11",
        &root().join("ffi/tests/c/api_test.c"),
        &exe,
        &["-fsanitize=address", "-fno-omit-frame-pointer"],
    );
    let out = run_api_test(
        &exe,
        &f,
        &[(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=23",
        )],
    );
    check_run(&out, "api_test under AddressSanitizer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ERROR: AddressSanitizer") && !stderr.contains("ERROR: LeakSanitizer"),
        "sanitizer report:\n{stderr}"
    );
}

/// Every function the header declares is called by the C test program.
#[test]
fn c_api_test_program_covers_every_function() {
    let header = std::fs::read_to_string(root().join("include/acap.h")).unwrap();
    let test = std::fs::read_to_string(root().join("ffi/tests/c/api_test.c")).unwrap();
    let functions: Vec<&str> = header
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with("typedef") && l.contains('('))
        .filter_map(|l| l.split('(').next()?.split([' ', '*']).next_back())
        .filter(|name| name.starts_with("acap_"))
        .collect();
    assert!(functions.len() > 40, "found only {functions:?}");
    let missing: Vec<_> = functions
        .iter()
        .filter(|f| !test.contains(&format!("{f}(")))
        .collect();
    assert!(
        missing.is_empty(),
        "not exercised by api_test.c: {missing:?}"
    );
}

/// Runs the compiled chat example on the test model with `args`, feeding `stdin`.
fn run_chat(exe: &Path, f: &Fixtures, args: &[&std::ffi::OsStr], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(exe)
        .arg("-m")
        .arg(&f.model)
        .args(["-n", "16", "--temp", "0", "-t", "1", "-c", "256"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn c_chat_example_runs_a_capped_conversation() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("chat");
    compile("cc", "c11", &root().join("examples/c/chat.c"), &exe, &[]);
    let os = std::ffi::OsStr::new;
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let out = run_chat(
        &exe,
        &f,
        &[os("--acap"), f.axis.as_os_str()],
        b"Tell me about cats.\nAnd dogs?\n",
    );
    assert!(out.status.success(), "chat failed: {}", err(&out));
    // Telemetry after each turn: two turns, 5 capped blocks.
    assert_eq!(err(&out).matches("capped rows").count(), 2, "{}", err(&out));
    // --chat-template picks another template (another prompt, another reply); chatml written
    // as a Jinja file (--chat-template-file) replies as the built-in chatml; bad ones are named.
    let run = |args: &[&std::ffi::OsStr]| run_chat(&exe, &f, args, b"Tell me about cats.\n");
    let chatml = run(&[os("--chat-template"), os("chatml")]);
    let llama3 = run(&[os("--chat-template"), os("llama3")]);
    let file = run(&[os("--chat-template-file"), f.chatml_jinja.as_os_str()]);
    for o in [&chatml, &llama3, &file] {
        assert!(o.status.success(), "{}", err(o));
        assert!(!err(o).contains("warning"), "{}", err(o));
    }
    assert_ne!(chatml.stdout, llama3.stdout);
    assert_eq!(chatml.stdout, file.stdout);
    let jinja = run(&[os("--jinja")]);
    assert!(jinja.status.success(), "{}", err(&jinja));
    for (args, named) in [
        (
            vec![os("--chat-template"), os("no-such-template")],
            "no-such-template",
        ),
        (
            vec![os("--chat-template-file"), f.bad_jinja.as_os_str()],
            "bad.jinja",
        ),
    ] {
        let bad = run(&args);
        assert!(!bad.status.success());
        assert!(err(&bad).contains(named), "{}", err(&bad));
    }
    // Bad axis file: one line naming it, exit 1.
    let out = run_chat(&exe, &f, &[os("--acap"), f.axis_wrong.as_os_str()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(err(&out).contains("ACAP_AXIS_MISMATCH"), "{}", err(&out));
}

#[test]
fn cpp_example_streams_the_rust_completion() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("generate");
    compile(
        "c++",
        "c++17",
        &root().join("examples/cpp/generate.cpp"),
        &exe,
        &[],
    );
    let out = Command::new(&exe)
        .arg(&f.model)
        .arg(PROMPT)
        .arg(&f.axis)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "generate failed: {stderr}");
    let want = expected(&f);
    assert_eq!(String::from_utf8_lossy(&out.stdout), want["capped"]);
    // A missing model is a C++ exception carrying acap's message, exit 1.
    let out = Command::new(&exe)
        .args(["/nonexistent.gguf", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.gguf"));
}

fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("acap")
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("pkg-config not found");
    assert!(
        out.status.success(),
        "pkg-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `scripts/install-c.sh` installs header, libraries and `acap.pc`; a program built with
/// `pkg-config --cflags --libs acap` runs, and one linked against `libacap.a` with the
/// `Libs.private` flags runs without `libacap.so`.
#[test]
fn installed_c_api_builds_with_pkg_config_shared_and_static() {
    let f = fixtures();
    let prefix = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(root().join("scripts/install-c.sh"))
        .arg("--prefix")
        .arg(prefix.path())
        .arg("--from")
        .arg(lib_dir())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    for file in ["include/acap.h", "lib/libacap.so", "lib/libacap.a"] {
        assert!(prefix.path().join(file).exists(), "{file} not installed");
    }
    assert_eq!(
        pkg_config(prefix.path(), &["--modversion"]),
        [env!("CARGO_PKG_VERSION")]
    );

    // Shared: exactly the compile line the README gives.
    let shared = prefix.path().join("chat");
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror"])
        .arg(root().join("examples/c/chat.c"))
        .args(pkg_config(prefix.path(), &["--cflags", "--libs"]))
        .arg("-o")
        .arg(&shared)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&shared)
        .arg("-m")
        .arg(&f.model)
        .args(["-n", "4", "-t", "1", "-c", "256"])
        .stdin(std::fs::File::open(&f.not_axis).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Static: libacap.a plus Libs.private; the binary does not need libacap.so.
    let private: Vec<String> = pkg_config(prefix.path(), &["--static", "--libs"])
        .into_iter()
        .filter(|a| a != "-lacap" && !a.starts_with("-L") && !a.starts_with("-Wl,-rpath"))
        .collect();
    let static_exe = prefix.path().join("generate_static");
    let out = Command::new("c++")
        .args(["-std=c++17", "-Wall", "-Werror"])
        .args(pkg_config(prefix.path(), &["--cflags"]))
        .arg(root().join("examples/cpp/generate.cpp"))
        .arg(prefix.path().join("lib/libacap.a"))
        .args(&private)
        .arg("-o")
        .arg(&static_exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "static link failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(prefix.path().join("lib/libacap.so")).unwrap();
    let out = Command::new(&static_exe)
        .arg(&f.model)
        .arg(PROMPT)
        .arg(&f.axis)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected(&f)["capped"]);
}
