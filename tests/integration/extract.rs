//! Axis extraction and calibration on the tiny model, checked against an independent
//! computation: hidden states captured by the observer one prompt at a time, means,
//! difference and percentile computed here.

use std::sync::{Arc, Mutex};

use acap::axis::normalise;
use acap::extraction::{ExtractError, ExtractParams, ThresholdRule, calibrate, extract};
use acap::gguf::{GgmlType, GgufFile};
use acap::{
    AxisFile, AxisSet, ChatMessage, LayerRange, Model, QuantType, Session, SessionParams, Special,
};

use crate::common::load;

const PERSONA: &str = "You are Sage, a calm and careful assistant who values honesty.";

fn prompts() -> Vec<String> {
    [
        "How do I make a cup of tea?",
        "Tell me about the history of Rome.",
        "What is the capital of France?",
        "Write a short poem about the sea.",
        "Can you help me plan a trip to Japan?",
        "Why is the sky blue?",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn params() -> ExtractParams {
    ExtractParams {
        persona_system: PERSONA.into(),
        generic_systems: vec![None, Some("You are a helpful assistant.".into())],
        cap_layers: LayerRange::new(2, 6),
        threads: 1,
        ..ExtractParams::default()
    }
}

/// Last-token output of every block for one rendered prompt, one sequence at a time.
fn states_one_by_one(m: &Model, prompt: &str, system: Option<&str>) -> Vec<Vec<f32>> {
    let mut msgs = Vec::new();
    if let Some(s) = system {
        msgs.push(ChatMessage::system(s));
    }
    msgs.push(ChatMessage::user(prompt));
    let text = m.apply_chat_template(&msgs, true, None).unwrap();
    let tokens = m.tokenize(&text, Special::PROMPT).unwrap();
    // Flash attention off, as the extractor runs (its CPU kernel depends on cache placement).
    let mut params = SessionParams::default().with_n_ctx(512).with_threads(1);
    params.flash_attention = Some(false);
    let mut s = Session::new(m, params).unwrap();
    let n_layer = m.n_layer() as usize;
    let got = Arc::new(Mutex::new(vec![Vec::new(); n_layer]));
    let sink = got.clone();
    let layers: Vec<u32> = (0..m.n_layer()).collect();
    s.set_observer(&layers, move |o| {
        // The last row is the last token's (the last block only has that row).
        sink.lock().unwrap()[o.layer as usize] = o.row(o.n_rows() - 1).to_vec();
    });
    s.prefill(&tokens).unwrap();
    got.lock().unwrap().clone()
}

/// numpy's default percentile, written independently of acap's.
fn np_percentile(v: &[f32], p: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().map(|&x| f64::from(x)).collect();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pos = p / 100.0 * (s.len() as f64 - 1.0);
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < s.len() {
        s[i] * (1.0 - frac) + s[i + 1] * frac
    } else {
        s[i]
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn extracted_axis_and_thresholds_equal_an_independent_computation() {
    let m = load(QuantType::Q8_0);
    // One sequence per batch, as the independent computation decodes: this test checks the
    // arithmetic (means, difference, percentile); what batching changes is bounded by
    // `batched_and_one_by_one_extraction_agree_and_the_file_loads`.
    let p = ExtractParams {
        batch_sequences: 1,
        ..params()
    };
    let ex = extract(&m, &prompts(), &p, |_, _| {}).unwrap();
    assert_eq!(ex.capping_layers, [2, 3, 4, 5, 6]);
    assert_eq!(ex.n_samples, 6);
    let generic: Vec<Option<&str>> = vec![None, Some("You are a helpful assistant.")];
    let persona: Vec<Vec<Vec<f32>>> = prompts()
        .iter()
        .map(|q| states_one_by_one(&m, q, Some(PERSONA)))
        .collect();
    let generic_states: Vec<Vec<Vec<Vec<f32>>>> = prompts()
        .iter()
        .map(|q| {
            generic
                .iter()
                .map(|g| states_one_by_one(&m, q, *g))
                .collect()
        })
        .collect();
    for l in 2..=6usize {
        let n = 256;
        let mut want = vec![0f64; n];
        for (pi, ps) in persona.iter().enumerate() {
            for j in 0..n {
                let g: f64 = generic_states[pi]
                    .iter()
                    .map(|s| f64::from(s[l][j]))
                    .sum::<f64>()
                    / 2.0;
                want[j] += (g - f64::from(ps[l][j])) / 6.0;
            }
        }
        let want: Vec<f32> = want.into_iter().map(|x| x as f32).collect();
        let got = &ex.axes[&(l as u32)];
        let scale = want.iter().map(|x| x.abs()).fold(0.0, f32::max);
        let d = max_abs_diff(got, &want);
        assert!(
            d <= 1e-4 * scale.max(1.0),
            "layer {l}: axis differs by {d} (scale {scale})"
        );
        // Threshold: the 25th percentile of the persona projections on the unit axis.
        let unit = normalise(want.clone()).unit;
        let proj: Vec<f32> = persona
            .iter()
            .map(|s| unit.iter().zip(&s[l]).map(|(a, b)| a * b).sum())
            .collect();
        let tau = np_percentile(&proj, 25.0) as f32;
        let st = ex.thresholds[&(l as u32)];
        assert!(
            (st.tau - tau).abs() <= 1e-3 * tau.abs().max(1.0),
            "layer {l}: tau {} vs {tau}",
            st.tau
        );
        assert!(st.min <= st.p25 && st.p25 <= st.p50 && st.p50 <= st.p75 && st.p75 <= st.max);
        assert!((ex.norms[&(l as u32)] - normalise(want).norm).abs() < 1e-3);
    }
}

#[test]
fn batched_and_one_by_one_extraction_agree_and_the_file_loads() {
    let m = load(QuantType::Q8_0);
    let batched = extract(
        &m,
        &prompts(),
        &ExtractParams {
            batch_sequences: 5,
            ..params()
        },
        |_, _| {},
    )
    .unwrap();
    let single = extract(
        &m,
        &prompts(),
        &ExtractParams {
            batch_sequences: 1,
            ..params()
        },
        |_, _| {},
    )
    .unwrap();
    for (l, a) in &batched.axes {
        let b = &single.axes[l];
        let scale = b.iter().map(|x| x.abs()).fold(0.0, f32::max).max(1.0);
        let d = max_abs_diff(a, b);
        // Not bit-identical on every CPU: llama.cpp's attention over the F16 cache picks its
        // kernel by cache size, and on AMD EPYC (AVX2) batched rows round differently (seen:
        // 7e-4 of the scale at block 6). Intel AVX-512 machines agree to 1e-4.
        assert!(
            d <= 2e-3 * scale,
            "layer {l}: batched vs one by one differ by {d} (scale {scale})"
        );
        let (ta, tb) = (batched.thresholds[l].tau, single.thresholds[l].tau);
        assert!(
            (ta - tb).abs() <= 2e-3 * tb.abs().max(1.0),
            "layer {l}: tau batched {ta} vs one by one {tb}"
        );
    }
    // The file: the reference layout (direction.L F32 1-D, no layer 0) plus acap's keys.
    let bytes = batched
        .to_writer("tiny", ThresholdRule::Percentile(25.0))
        .to_bytes()
        .unwrap();
    let g = GgufFile::from_bytes(bytes.clone()).unwrap();
    for t in g.tensors() {
        assert!(t.name().starts_with("direction."));
        assert_ne!(t.name(), "direction.0");
        assert_eq!(t.ggml_type(), GgmlType::F32);
        assert_eq!(t.dims(), [256]);
    }
    assert_eq!(g.get_str("acap.hook").unwrap(), "l_out");
    assert_eq!(g.get_u32("acap.n_layer").unwrap(), 8);
    assert_eq!(g.get_f32("acap.threshold_percentile").unwrap(), 25.0);
    let file = AxisFile::from_bytes(bytes).unwrap();
    assert_eq!(
        file.directions().keys().copied().collect::<Vec<_>>(),
        [2, 3, 4, 5, 6]
    );
    assert_eq!(file.thresholds()[&4], batched.thresholds[&4].tau);
    AxisSet::new(vec![file]).unwrap().thresholds(None).unwrap();
}

#[test]
fn calibration_recomputes_thresholds_on_another_quantisation() {
    let q8 = load(QuantType::Q8_0);
    let ex = extract(&q8, &prompts(), &params(), |_, _| {}).unwrap();
    let file = AxisFile::from_bytes(
        ex.to_writer("tiny", ThresholdRule::Percentile(25.0))
            .to_bytes()
            .unwrap(),
    )
    .unwrap();
    // Same model, same percentile: the thresholds come back.
    let same = calibrate(&q8, &file, &prompts(), &params(), |_, _| {}).unwrap();
    // Exactly: the persona prompts are decoded in the same batches as in extraction.
    for (l, (old, st)) in &same.layers {
        assert_eq!(*old, Some(ex.thresholds[l].tau));
        assert_eq!(st.tau, ex.thresholds[l].tau, "layer {l}");
        assert_eq!(st.mean, ex.thresholds[l].mean, "layer {l}");
    }
    // Q4_K_M, mean - 1 std: new values, written with the same directions.
    let q4 = load(QuantType::Q4KM);
    let rule = ThresholdRule::MeanMinusKStd(1.0);
    let cal = calibrate(
        &q4,
        &file,
        &prompts(),
        &ExtractParams { rule, ..params() },
        |_, _| {},
    )
    .unwrap();
    let new = AxisFile::from_bytes(cal.to_writer(&file, rule).to_bytes().unwrap()).unwrap();
    assert_eq!(new.directions(), file.directions());
    for (l, (_, st)) in &cal.layers {
        assert_eq!(new.thresholds()[l], st.tau);
        assert!((st.tau - (st.mean - st.std)).abs() < 1e-5);
    }
    // A mismatched axis is refused.
    let wrong = AxisFile::from_bytes(
        acap::AxisWriter::new()
            .with_direction(3, vec![1.0; 128])
            .to_bytes()
            .unwrap(),
    )
    .unwrap();
    assert!(matches!(
        calibrate(&q4, &wrong, &prompts(), &params(), |_, _| {}),
        Err(ExtractError::EmbdMismatch {
            axis: 128,
            model: 256
        })
    ));
}

#[test]
fn bad_extraction_inputs_are_clear_errors() {
    let m = load(QuantType::Q8_0);
    assert!(matches!(
        extract(&m, &[], &params(), |_, _| {}),
        Err(ExtractError::NoPrompts)
    ));
    let e = extract(
        &m,
        &prompts(),
        &ExtractParams {
            cap_layers: LayerRange::new(9, 12),
            ..params()
        },
        |_, _| {},
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("layer range 9 12 selects no block"),
        "{e}"
    );
    let e = extract(
        &m,
        &prompts(),
        &ExtractParams {
            rule: ThresholdRule::Percentile(150.0),
            ..params()
        },
        |_, _| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("percentile 150 must be"), "{e}");
}
