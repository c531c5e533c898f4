//! H-neuron suppression (spec section 10): a file of ones changes nothing; zeroing neuron j of
//! block L equals zeroing column j of that block's `ffn_down` in the weights; it composes with
//! capping and control vectors; each request of a batch gets its own switch; bad files and
//! files that do not fit the model are refused by name.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use acap::gguf::{GgmlType, GgufWriter};
use acap::{
    AxisFile, AxisSet, AxisWriter, BatchEngine, CapConfig, CapPath, ControlVector, GenerateParams,
    HSuppress, HSuppressError, Model, ModelParams, QuantType, SamplingParams, Session,
    SessionParams, SlotEvent, Special,
};

const PROMPT: &str = "Tell me about the river and the old stone bridge.";
/// The tiny model's FFN width.
const N_FF: usize = 768;
/// The neurons the tests silence, and where.
const BLOCKS: [u32; 2] = [2, 5];
const NEURONS: [usize; 3] = [3, 100, 511];

fn tmp() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// The tiny model widened to F32, and (`zeroed`) a copy whose `ffn_down` columns of the
/// silenced neurons are zero.
fn f32_model(zeroed: bool) -> Model {
    static PATHS: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    let path = PATHS[usize::from(zeroed)].get_or_init(|| {
        let src = acap_testkit::tiny(QuantType::F16);
        let name = if zeroed { "zeroed.gguf" } else { "f32.gguf" };
        acap_testkit::f32_copy(&src, &tmp().join(name), |name, dims, values| {
            let silenced = BLOCKS
                .iter()
                .any(|b| name == format!("blk.{b}.ffn_down.weight"));
            if zeroed && silenced {
                // ffn_down is [n_ff, n_embd]: row r holds W_down[r, ..]; column j is
                // element j of every row.
                let n_ff = dims[0] as usize;
                assert_eq!(n_ff, N_FF);
                for row in values.chunks_exact_mut(n_ff) {
                    for &j in &NEURONS {
                        row[j] = 0.0;
                    }
                }
            }
        })
    });
    Model::load(path, ModelParams::default()).unwrap()
}

/// A tensor to write: name, shape, type, bytes.
type Tensor<'a> = (&'a str, Vec<u64>, GgmlType, Vec<u8>);

/// A suppression file written to disk with the given tensors (a fresh name on every call:
/// tests run in parallel and may write the same file).
fn write_file(name: &str, tensors: &[Tensor<'_>]) -> PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut w = GgufWriter::new();
    w.set("h_suppress.alpha", 0.0f32).unwrap();
    w.set("h_suppress.n_neurons", 6u32).unwrap();
    for (n, dims, ty, bytes) in tensors {
        w.add_raw(n, dims, *ty, bytes.clone()).unwrap();
    }
    let path = tmp().join(format!("{call}-{name}"));
    w.write_file(&path).unwrap();
    path
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The suppression the tests use: ones, with `NEURONS` of `BLOCKS` at `value`.
fn silencing(value: f32) -> Arc<HSuppress> {
    let mut v = vec![1.0f32; N_FF];
    for &j in &NEURONS {
        v[j] = value;
    }
    let tensors: Vec<_> = BLOCKS
        .iter()
        .map(|b| {
            (
                format!("h_suppress.{b}"),
                vec![N_FF as u64],
                GgmlType::F32,
                f32_bytes(&v),
            )
        })
        .collect();
    let refs: Vec<_> = tensors
        .iter()
        .map(|(n, d, t, b)| (n.as_str(), d.clone(), *t, b.clone()))
        .collect();
    let path = write_file(&format!("silence-{value}.gguf"), &refs);
    Arc::new(HSuppress::open(path).unwrap())
}

fn params(path: CapPath) -> SessionParams {
    SessionParams::default()
        .with_n_ctx(256)
        .with_threads(1)
        .with_cap_path(path)
}

/// The logits after the prompt and 16 greedy tokens.
fn run(m: &Model, p: SessionParams) -> (Vec<f32>, String) {
    let mut s = Session::new(m, p).unwrap();
    s.prefill(&m.tokenize(PROMPT, Special::PROMPT).unwrap())
        .unwrap();
    let logits = s.logits().to_vec();
    let gp = GenerateParams::default()
        .with_max_tokens(16)
        .with_sampling(SamplingParams::greedy());
    let text = s.complete(PROMPT, &gp).unwrap().0;
    (logits, text)
}

fn cap() -> CapConfig {
    let mut w = AxisWriter::new();
    for l in [3u32, 6] {
        w = w
            .with_direction(l, acap_testkit::random_vector(u64::from(l) + 70, 256))
            .with_threshold(l, 0.0);
    }
    CapConfig::new(
        AxisSet::new(vec![AxisFile::from_bytes(w.to_bytes().unwrap()).unwrap()]).unwrap(),
    )
}

#[test]
fn ones_leave_the_output_bit_identical() {
    let m = crate::common::load(QuantType::Q8_0);
    let ones = Arc::new(HSuppress::from_vectors(BLOCKS.map(|b| (b, vec![1.0; N_FF]))).unwrap());
    for path in [CapPath::Host, CapPath::Graph] {
        let plain = run(&m, params(path));
        let suppressed = run(&m, params(path).with_h_suppress(ones.clone()));
        assert_eq!(suppressed.0, plain.0, "{path:?}: logits");
        assert_eq!(suppressed.1, plain.1, "{path:?}: text");
    }
}

#[test]
fn zeroing_a_neuron_equals_zeroing_its_down_projection_column() {
    let m = f32_model(false);
    let zeroed = f32_model(true);
    let h = silencing(0.0);
    assert_eq!(h.suppressed(), BLOCKS.len() * NEURONS.len());
    let reference = run(&zeroed, params(CapPath::Host));
    let plain = run(&m, params(CapPath::Host));
    assert_ne!(
        plain.0, reference.0,
        "silencing the neurons changes the logits"
    );
    for path in [CapPath::Host, CapPath::Graph] {
        let mut s = Session::new(&m, params(path).with_h_suppress(h.clone())).unwrap();
        s.prefill(&m.tokenize(PROMPT, Special::PROMPT).unwrap())
            .unwrap();
        assert_eq!(s.logits(), reference.0.as_slice(), "{path:?}: logits");
        let stats = s.h_suppress_stats();
        let tokens = m.tokenize(PROMPT, Special::PROMPT).unwrap().len() as u64;
        assert_eq!(stats.len(), BLOCKS.len());
        for st in &stats {
            assert_eq!(st.neurons, NEURONS.len(), "{path:?}");
            assert_eq!(
                st.rows, tokens,
                "{path:?}: every prompt row of block {}",
                st.block
            );
        }
        drop(s);
        assert_eq!(
            run(&m, params(path).with_h_suppress(h.clone())),
            reference,
            "{path:?}: logits and text"
        );
    }
    // Switched off for a while, the session runs the plain model.
    let mut s = Session::new(&m, params(CapPath::Host).with_h_suppress(h)).unwrap();
    s.set_h_suppress_enabled(false);
    assert!(!s.h_suppress_enabled());
    s.prefill(&m.tokenize(PROMPT, Special::PROMPT).unwrap())
        .unwrap();
    assert_eq!(s.logits(), plain.0.as_slice());
}

#[test]
fn composes_with_capping_and_control_vectors() {
    let m = f32_model(false);
    let zeroed = f32_model(true);
    let mut w = AxisWriter::new();
    for l in 1..m.n_layer() {
        let v: Vec<f32> = acap_testkit::random_vector(u64::from(l) + 5, 256)
            .into_iter()
            .map(|x| x * 0.05)
            .collect();
        w = w.with_direction(l, v);
    }
    let cv =
        ControlVector::from_files(&[(AxisFile::from_bytes(w.to_bytes().unwrap()).unwrap(), 1.0)])
            .unwrap();
    let with_all = |model: &Model, h: Option<Arc<HSuppress>>, path: CapPath| {
        let mut p = params(path).with_capping(cap());
        p.h_suppress = h;
        let mut s = Session::new(model, p).unwrap();
        s.set_control_vector(Some(&cv)).unwrap();
        s.prefill(&model.tokenize(PROMPT, Special::PROMPT).unwrap())
            .unwrap();
        assert!(s.cap_stats().iter().any(|(_, st)| st.rows_capped > 0));
        s.logits().to_vec()
    };
    for path in [CapPath::Host, CapPath::Graph] {
        assert_eq!(
            with_all(&m, Some(silencing(0.0)), path),
            with_all(&zeroed, None, path),
            "{path:?}"
        );
    }
}

#[test]
fn each_request_of_a_batch_gets_its_own_switch() {
    let m = f32_model(false);
    // Every block, every other neuron at a quarter: enough to change the text.
    let h = Arc::new(
        HSuppress::from_vectors((0..8).map(|b| {
            (
                b,
                (0..N_FF)
                    .map(|j| if j % 2 == 0 { 0.25 } else { 1.0 })
                    .collect(),
            )
        }))
        .unwrap(),
    );
    let gp = GenerateParams::default()
        .with_max_tokens(12)
        .with_sampling(SamplingParams::greedy());
    let prompts: Vec<Vec<i32>> = ["The bridge", "A river runs", "Stones and water", "Old"]
        .iter()
        .map(|p| m.tokenize(p, Special::PROMPT).unwrap())
        .collect();
    let solo = |prompt: &[i32], on: bool, path: CapPath| {
        let mut p = params(path);
        if on {
            p.h_suppress = Some(h.clone());
        }
        let mut s = Session::new(&m, p).unwrap();
        let mut out = String::new();
        s.generate_tokens(prompt, &gp, |t| {
            out.push_str(t);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        out
    };
    for path in [CapPath::Host, CapPath::Graph] {
        let mut p = SessionParams::default()
            .with_n_ctx(1024)
            .with_n_batch(256)
            .with_threads(1)
            .with_cap_path(path);
        p.h_suppress = Some(h.clone());
        let mut e = BatchEngine::new(&m, 4, p).unwrap();
        let mut texts = vec![String::new(); prompts.len()];
        for (i, prompt) in prompts.iter().enumerate() {
            e.start(i, prompt, &gp, None, i % 2 == 0).unwrap();
        }
        while e.is_busy() {
            for (slot, ev) in e.step() {
                match ev {
                    SlotEvent::Text(t) => texts[slot].push_str(&t),
                    SlotEvent::Finished(_) => {}
                    SlotEvent::Failed(msg) => panic!("slot {slot}: {msg}"),
                }
            }
        }
        for (i, prompt) in prompts.iter().enumerate() {
            let on = i % 2 == 0;
            assert_eq!(
                texts[i],
                solo(prompt, on, CapPath::Host),
                "{path:?} request {i}"
            );
            let rows: u64 = e.slot_suppress_stats(i).iter().map(|s| s.rows).sum();
            assert_eq!(rows > 0, on, "{path:?} request {i}: rows {rows}");
        }
        // Suppression changes this text, so the comparison above can fail.
        assert_ne!(
            solo(&prompts[0], true, CapPath::Host),
            solo(&prompts[0], false, CapPath::Host)
        );
    }
}

#[test]
fn bad_files_are_refused_by_name() {
    let ones = f32_bytes(&vec![1.0; N_FF]);
    let cases: Vec<(&str, Vec<Tensor<'_>>, &str)> = vec![
        (
            "name",
            vec![("ffn_mask.3", vec![N_FF as u64], GgmlType::F32, ones.clone())],
            "'ffn_mask.3' is not h_suppress.N",
        ),
        (
            "leading-zero",
            vec![(
                "h_suppress.03",
                vec![N_FF as u64],
                GgmlType::F32,
                ones.clone(),
            )],
            "'h_suppress.03' is not h_suppress.N",
        ),
        (
            "f16",
            vec![(
                "h_suppress.3",
                vec![N_FF as u64],
                GgmlType::F16,
                vec![0u8; N_FF * 2],
            )],
            "'h_suppress.3' has type F16, expected F32",
        ),
        (
            "2d",
            vec![(
                "h_suppress.3",
                vec![N_FF as u64 / 2, 2],
                GgmlType::F32,
                ones.clone(),
            )],
            "'h_suppress.3' has shape [384, 2]",
        ),
        (
            "nan",
            vec![(
                "h_suppress.3",
                vec![2],
                GgmlType::F32,
                f32_bytes(&[1.0, f32::NAN]),
            )],
            "'h_suppress.3' has value NaN at index 1",
        ),
    ];
    for (name, tensors, want) in cases {
        let path = write_file(&format!("bad-{name}.gguf"), &tensors);
        let e = HSuppress::open(&path).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{name}: {e}");
        assert!(e.contains(want), "{name}: {e}");
    }
    let empty = write_file("empty.gguf", &[]);
    let e = HSuppress::open(&empty).unwrap_err();
    assert!(matches!(e, HSuppressError::NoTensors { .. }), "{e}");
    let missing = tmp().join("missing.gguf");
    let e = HSuppress::open(&missing).unwrap_err().to_string();
    assert!(e.contains("missing.gguf"), "{e}");
}

#[test]
fn files_that_do_not_fit_the_model_are_refused_before_anything_runs() {
    let m = crate::common::load(QuantType::Q8_0);
    let file = |name: &str, block: u32, len: usize| {
        let path = write_file(
            name,
            &[(
                &format!("h_suppress.{block}"),
                vec![len as u64],
                GgmlType::F32,
                f32_bytes(&vec![0.0; len]),
            )],
        );
        Arc::new(HSuppress::open(path).unwrap())
    };
    let refused = |h: Arc<HSuppress>| {
        let e = Session::new(&m, params(CapPath::Host).with_h_suppress(h.clone()))
            .err()
            .expect("refused");
        // An engine refuses it the same way, and a running session keeps what it had.
        let mut s = Session::new(&m, params(CapPath::Host)).unwrap();
        assert!(s.set_h_suppress(Some(h)).is_err());
        assert!(s.h_suppress().is_none());
        e.to_string()
    };
    let e = refused(file("long.gguf", 2, 1024));
    assert!(
        e.contains("h_suppress.2") && e.contains("1024 values") && e.contains("n_ff = 768"),
        "{e}"
    );
    let e = refused(file("block.gguf", 8, N_FF));
    assert!(e.contains("h_suppress.8") && e.contains("8 blocks"), "{e}");
    // Without the eval callback nothing could be suppressed.
    let h = file("ok.gguf", 1, N_FF);
    let e = Session::new(
        &m,
        params(CapPath::Host)
            .with_eval_callback(false)
            .with_h_suppress(h),
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(e.contains("eval callback"), "{e}");
    // The metadata is informational.
    let h = silencing(0.0);
    assert_eq!(h.alpha(), Some(0.0));
    assert_eq!(h.meta_n_neurons(), Some(6.0));
}

/// `tests/fixtures/h_suppress_tiny.gguf`, which `scripts/gpu-check.sh` runs with on a GPU
/// (half the neurons of every block of the tiny models silenced): kept equal to what
/// [`HSuppress::to_bytes`] writes (`ACAP_BLESS=1` rewrites it).
#[test]
fn gpu_check_fixture_is_current() {
    let half: Vec<f32> = (0..N_FF)
        .map(|j| if j % 2 == 0 { 0.0 } else { 1.0 })
        .collect();
    let h = HSuppress::from_vectors((0..8).map(|b| (b, half.clone()))).unwrap();
    let bytes = h.to_bytes().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/h_suppress_tiny.gguf");
    if std::env::var_os("ACAP_BLESS").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "rewrite it with ACAP_BLESS=1 cargo test --test integration gpu_check_fixture"
    );
    assert_eq!(HSuppress::open(&path).unwrap().suppressed(), 8 * N_FF / 2);
}
