//! The examples, run as a user runs them. `cargo test` builds examples next to the test
//! binaries (`target/<profile>/examples/`).

use std::path::PathBuf;
use std::process::{Command, Output};

use acap::AxisWriter;

fn example(name: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/integration-<hash> -> target/<profile>/examples/<name>
    let path: PathBuf = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join(name))
        .unwrap();
    assert!(path.exists(), "example binary {} not built", path.display());
    Command::new(path)
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.success(),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

#[test]
fn axis_write_then_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.gguf");
    let (ok, out, err) = run(example("axis_write").arg(&path).args(["--n-embd", "256"]));
    assert!(ok, "{err}");
    assert!(out.contains("layers 22..=28"), "{out}");

    let (ok, out, err) = run(example("axis_inspect").arg(&path));
    assert!(ok, "{err}");
    for layer in 22..=28 {
        assert!(
            out.contains(&format!("file (acap.threshold.{layer})")),
            "layer {layer} missing:\n{out}"
        );
    }
    assert!(out.contains("n_embd 256"), "{out}");
}

#[test]
fn axis_inspect_reports_cli_and_default_sources() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.gguf");
    AxisWriter::new()
        .with_direction(3, vec![3.0, 4.0])
        .with_direction(4, vec![0.0, 0.0])
        .with_threshold(3, -2.5)
        .write_file(&path)
        .unwrap();
    let (ok, out, _) = run(example("axis_inspect").arg(&path));
    assert!(ok);
    let line4 = out
        .lines()
        .find(|l| l.trim_start().starts_with("4 "))
        .unwrap();
    assert!(
        line4.contains("-1.0000") && line4.contains("default"),
        "{line4}"
    );
    assert!(line4.contains("zero axis"), "{line4}");
    let line3 = out
        .lines()
        .find(|l| l.trim_start().starts_with("3 "))
        .unwrap();
    assert!(
        line3.contains("5.0000") && line3.contains("-2.5000"),
        "{line3}"
    );

    let (ok, out, _) = run(example("axis_inspect")
        .args(["--acap-threshold", "2.1"])
        .arg(&path));
    assert!(ok);
    assert!(out.contains("-2.1000  global threshold"), "{out}");
}

#[test]
fn axis_inspect_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00").unwrap();
    let (ok, out, err) = run(example("axis_inspect").arg(&bad));
    assert!(!ok);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: axis file") && err.contains("bad.gguf"),
        "{err}"
    );
}

/// A valid axis file without per-layer thresholds is shown (directions and norms), with what
/// running it needs; a global threshold previews the taus.
#[test]
fn axis_inspect_shows_a_file_without_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let no_tau = dir.path().join("no_tau.gguf");
    AxisWriter::new()
        .with_direction(3, vec![3.0, 4.0])
        .write_file(&no_tau)
        .unwrap();
    let (ok, out, err) = run(example("axis_inspect").arg(&no_tau));
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("3 "))
        .unwrap_or_default();
    assert!(row.contains("5.0000") && row.contains("none"), "{out}");
    assert!(
        out.contains("no thresholds: ") && out.contains("no_tau.gguf"),
        "{out}"
    );
    assert!(
        out.contains("note: run it with --acap-threshold T"),
        "{out}"
    );
    let (ok, out, _) = run(example("axis_inspect")
        .args(["--acap-threshold", "2"])
        .arg(&no_tau));
    assert!(ok);
    assert!(out.contains("-2.0000  global threshold"), "{out}");
    assert!(!out.contains("no thresholds"), "{out}");
}

#[test]
fn gguf_dump_lists_metadata_and_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.gguf");
    AxisWriter::new()
        .with_direction(7, vec![1.0; 64])
        .with_threshold(7, -3.0)
        .with_model_hint("m")
        .write_file(&path)
        .unwrap();
    let (ok, out, err) = run(example("gguf_dump").arg(&path));
    assert!(ok, "{err}");
    assert!(out.contains("GGUF.tensor_count = 1"), "{out}");
    assert!(
        out.contains("FLOAT32    |        1 | acap.threshold.7 = -3"),
        "{out}"
    );
    assert!(out.contains("acap.model_hint = \"m\""), "{out}");
    assert!(out.contains("| F32     | direction.7"), "{out}");

    let (ok, _, err) = run(example("gguf_dump").arg(dir.path().join("missing.gguf")));
    assert!(!ok);
    assert!(err.contains("missing.gguf"), "{err}");
}

#[test]
fn generate_is_deterministic_across_processes() {
    let run_once = || {
        run(example("generate").args([
            "-p",
            "Hello, how are you",
            "-n",
            "16",
            "--temp",
            "0",
            "-t",
            "1",
        ]))
    };
    let (ok, first, err) = run_once();
    assert!(ok, "{err}");
    assert!(err.contains("generated 16 tokens"), "{err}");
    assert!(first.trim().len() > 4, "{first:?}");
    let (ok, second, err) = run_once();
    assert!(ok, "{err}");
    assert_eq!(first, second);

    let (ok, _, err) = run(example("generate").args(["-m", "/no/such/model.gguf", "-p", "x"]));
    assert!(!ok);
    assert!(
        err.starts_with("error: ") && err.contains("/no/such/model.gguf"),
        "{err}"
    );
}
