//! The capping engine: the row operation, and capping end to end on the tiny model.

use std::sync::{Arc, Mutex};

use acap::cap::{cap_row, dot};
use acap::{
    AxisFile, AxisSet, AxisWriter, CapConfig, CapError, DecodeError, GenerateParams, LayerRange,
    Model, QuantType, SamplingParams, Session, SessionError, SessionParams, Special,
};

use crate::common::{QUANTS, load};

const PROMPT: &str = "You are a helpful assistant. Tell me a story about a cat and a dog.";

fn unit(v: &[f32]) -> Vec<f32> {
    let n = dot(v, v).sqrt();
    v.iter().map(|x| x / n).collect()
}

/// An axis set with a random direction at each of `layers` and the given per-layer keys.
fn axes(layers: &[u32], taus: &[(u32, f32)]) -> AxisSet {
    let mut w = AxisWriter::new();
    for &l in layers {
        w = w.with_direction(l, acap_testkit::random_vector(u64::from(l) + 100, 256));
    }
    for &(l, t) in taus {
        w = w.with_threshold(l, t);
    }
    AxisSet::new(vec![AxisFile::from_bytes(w.to_bytes().unwrap()).unwrap()]).unwrap()
}

fn tokens(m: &Model) -> Vec<i32> {
    m.tokenize(PROMPT, Special::PROMPT).unwrap()
}

fn params() -> SessionParams {
    SessionParams::default().with_n_ctx(256).with_threads(1)
}

/// Logits of the last prompt token, with or without capping.
fn logits(m: &Model, cap: Option<CapConfig>) -> Vec<f32> {
    let mut p = params();
    p.capping = cap;
    let mut s = Session::new(m, p).unwrap();
    s.prefill(&tokens(m)).unwrap();
    s.logits().to_vec()
}

fn greedy_text(m: &Model, cap: Option<CapConfig>) -> String {
    let mut p = params();
    p.capping = cap;
    let gp = GenerateParams::default()
        .with_max_tokens(24)
        .with_sampling(SamplingParams::greedy());
    Session::new(m, p).unwrap().complete(PROMPT, &gp).unwrap().0
}

#[test]
fn row_operation_properties() {
    for seed in 0..200u64 {
        let axis = unit(&acap_testkit::random_vector(seed, 256));
        let row = acap_testkit::random_vector(seed + 1000, 256);
        let p = dot(&axis, &row);
        for tau in [p - 1.0, p - 0.01, p, p + 0.5, -3.0, 3.0] {
            let mut h = row.clone();
            let excess = cap_row(&mut h, &axis, tau, 1.0);
            if p <= tau {
                assert!(excess.is_none());
                assert!(h.iter().zip(&row).all(|(a, b)| a.to_bits() == b.to_bits()));
            } else {
                assert!(excess.is_some());
                assert!(
                    dot(&axis, &h) <= tau + 1e-4,
                    "seed {seed}: {} > {tau}",
                    dot(&axis, &h)
                );
            }
            let mut zero = row.clone();
            cap_row(&mut zero, &axis, tau, 0.0);
            assert!(
                zero.iter()
                    .zip(&row)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
            let mut half = row.clone();
            cap_row(&mut half, &axis, tau, 0.5);
            let want = if p > tau { p - 0.5 * (p - tau) } else { p };
            assert!((dot(&axis, &half) - want).abs() < 1e-4);
        }
    }
}

#[test]
fn thresholds_above_every_projection_change_nothing() {
    for q in QUANTS {
        let m = load(q);
        let plain = logits(&m, None);
        let cfg = CapConfig::new(axes(
            &[2, 4, 6, 7],
            &[(2, 1e6), (4, 1e6), (6, 1e6), (7, 1e6)],
        ));
        let capped = logits(&m, Some(cfg.clone()));
        assert!(
            plain
                .iter()
                .zip(&capped)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{q:?}"
        );
        assert_eq!(greedy_text(&m, None), greedy_text(&m, Some(cfg)));
    }
}

#[test]
fn regression_cli_threshold_1e6_caps_hard_and_changes_the_text() {
    // The patched llama.cpp's cap is a no-op: with --acap-threshold 1e6 (tau = -1e6) its greedy
    // text equals the uncapped text. acap's must not.
    for q in QUANTS {
        let m = load(q);
        let cfg = CapConfig::new(axes(&[2, 3, 4, 5, 6], &[]))
            .with_threshold(Some(1e6))
            .with_layer_range(LayerRange::new(2, 6));
        let plan = cfg.plan(&m).unwrap();
        assert!(plan.capped_layers().all(|(_, l)| l.tau == -1e6));
        assert_ne!(logits(&m, None), logits(&m, Some(cfg.clone())));
        assert_ne!(greedy_text(&m, None), greedy_text(&m, Some(cfg)), "{q:?}");
    }
}

#[test]
fn per_layer_key_overrides_the_cli_value() {
    let m = load(QuantType::Q8_0);
    let plain = logits(&m, None);
    // The key (far above) wins over the CLI value (which alone would cap hard).
    let keyed = CapConfig::new(axes(&[3], &[(3, 1e6)])).with_threshold(Some(1e6));
    assert_eq!(plain, logits(&m, Some(keyed)));
    let unkeyed = CapConfig::new(axes(&[3], &[])).with_threshold(Some(1e6));
    assert_ne!(plain, logits(&m, Some(unkeyed)));
}

#[test]
fn layer_range_ends_are_inclusive() {
    let m = load(QuantType::Q8_0);
    let plain = logits(&m, None);
    let r = 4;
    // Block R never caps (tau far above), block R+1 caps hard.
    let a = axes(&[r, r + 1], &[(r, 1e6), (r + 1, -1e6)]);
    let up_to_r = CapConfig::new(a.clone()).with_layer_range(LayerRange::new(1, i64::from(r)));
    assert_eq!(plain, logits(&m, Some(up_to_r)));
    let up_to_r1 = CapConfig::new(a).with_layer_range(LayerRange::new(1, i64::from(r + 1)));
    assert_ne!(plain, logits(&m, Some(up_to_r1)));
    // And the start: a range starting at R includes R.
    let b = axes(&[r - 1, r], &[(r - 1, -1e6), (r, -1e6)]);
    let from_r = CapConfig::new(b).with_layer_range(LayerRange::new(i64::from(r), i64::from(r)));
    let plan = from_r.plan(&m).unwrap();
    assert_eq!(
        plan.capped_layers().map(|(l, _)| l).collect::<Vec<_>>(),
        [r]
    );
    assert_ne!(plain, logits(&m, Some(from_r)));
}

#[test]
fn files_whose_vectors_cancel_change_nothing() {
    let m = load(QuantType::Q8_0);
    let v = acap_testkit::random_vector(7, 256);
    let neg: Vec<f32> = v.iter().map(|x| -x).collect();
    let a = AxisWriter::new()
        .with_direction(3, v)
        .with_threshold(3, -1e6);
    let b = AxisWriter::new().with_direction(3, neg);
    let set = AxisSet::new(vec![
        AxisFile::from_bytes(a.to_bytes().unwrap()).unwrap(),
        AxisFile::from_bytes(b.to_bytes().unwrap()).unwrap(),
    ])
    .unwrap();
    assert_eq!(set.layer(3).unwrap().norm, 0.0);
    let plain = logits(&m, None);
    let capped = logits(&m, Some(CapConfig::new(set)));
    assert!(
        plain
            .iter()
            .zip(&capped)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

/// Projections of every row of `layer` onto `axis` during a prefill of the prompt.
fn projections(m: &Model, cap: Option<CapConfig>, layer: u32, axis: Vec<f32>) -> Vec<f32> {
    let mut p = params();
    p.capping = cap;
    let mut s = Session::new(m, p).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    s.set_observer(&[layer], move |o| {
        let mut sink = sink.lock().unwrap();
        for i in 0..o.n_rows() {
            sink.push(dot(&axis, o.row(i)));
        }
    });
    s.prefill(&tokens(m)).unwrap();
    let out = seen.lock().unwrap().clone();
    drop(s);
    out
}

#[test]
fn observer_sees_capped_projections_and_telemetry_matches_it() {
    let m = load(QuantType::Q8_0);
    let layer = 5;
    let set = axes(&[layer], &[]);
    let axis = set.layer(layer).unwrap().unit.clone();
    let before = projections(&m, None, layer, axis.clone());
    assert_eq!(before.len(), tokens(&m).len());
    let mut sorted = before.clone();
    sorted.sort_by(f32::total_cmp);
    // Between two projections: a row exactly at tau would be capped or not depending on the
    // last bit of its projection, which the host loop and the graph path round differently.
    let tau = (sorted[sorted.len() / 2] + sorted[sorted.len() / 2 - 1]) / 2.0;
    let expected_capped = before.iter().filter(|&&p| p > tau).count() as u64;
    assert!(expected_capped > 0);

    // tau as a per-layer key; the same prompt, now capped at this block only.
    let cfg = CapConfig::new(axes(&[layer], &[(layer, tau)]));
    let after = projections(&m, Some(cfg.clone()), layer, axis);
    assert_eq!(after.len(), before.len());
    assert!(
        after.iter().all(|&p| p <= tau + 1e-3),
        "{after:?} vs tau {tau}"
    );

    let mut s = Session::new(&m, params().with_capping(cfg)).unwrap();
    s.prefill(&tokens(&m)).unwrap();
    let stats = s.cap_stats();
    assert_eq!(stats.len(), 1);
    let (l, st) = stats[0];
    assert_eq!(l, layer);
    assert_eq!(st.rows_seen, before.len() as u64);
    assert_eq!(st.rows_capped, expected_capped);
    let max_excess = before.iter().map(|p| p - tau).fold(0.0f32, f32::max);
    assert!((st.max_excess - max_excess).abs() < 1e-3);
    assert!(st.mean_excess() > 0.0);
    s.reset_cap_stats();
    assert_eq!(s.cap_stats()[0].1.rows_seen, 0);
}

#[test]
fn switching_capping_off_and_on_at_run_time() {
    let m = load(QuantType::Q8_0);
    let cfg = CapConfig::new(axes(&[2, 5], &[])).with_threshold(Some(1e6));
    let plain = logits(&m, None);
    let capped = logits(&m, Some(cfg.clone()));
    assert_ne!(plain, capped);

    let mut s = Session::new(&m, params().with_capping(cfg)).unwrap();
    let t = tokens(&m);
    s.set_capping_enabled(false);
    assert!(!s.capping_enabled());
    s.prefill(&t).unwrap();
    assert_eq!(s.logits(), plain.as_slice());
    s.clear();
    s.set_capping_enabled(true);
    s.prefill(&t).unwrap();
    assert_eq!(s.logits(), capped.as_slice());

    // alpha 0 changes nothing; thresholds can be re-resolved between calls.
    s.set_cap_alpha(0.0).unwrap();
    s.clear();
    s.prefill(&t).unwrap();
    assert_eq!(s.logits(), plain.as_slice());
    s.set_cap_alpha(1.0).unwrap();
    assert!(s.set_cap_alpha(1.5).is_err());
    s.set_layer_tau(2, 1e6).unwrap();
    s.set_layer_tau(5, 1e6).unwrap();
    assert!(s.set_layer_tau(3, 0.0).is_err());
    s.clear();
    s.prefill(&t).unwrap();
    assert_eq!(s.logits(), plain.as_slice());
    s.set_cap_threshold(Some(1e6)).unwrap();
    s.clear();
    s.prefill(&t).unwrap();
    assert_eq!(s.logits(), capped.as_slice());
}

#[test]
fn configuration_errors_name_the_problem() {
    let m = load(QuantType::Q8_0);
    let short = AxisSet::new(vec![
        AxisFile::from_bytes(
            AxisWriter::new()
                .with_direction(3, vec![1.0; 128])
                .with_threshold(3, -1.0)
                .to_bytes()
                .unwrap(),
        )
        .unwrap(),
    ])
    .unwrap();
    match Session::new(&m, params().with_capping(CapConfig::new(short))) {
        Err(SessionError::Cap(CapError::EmbdMismatch {
            axis: 128,
            model: 256,
            ..
        })) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    let e = CapConfig::new(axes(&[3], &[])).plan(&m).unwrap_err();
    assert!(e.to_string().contains("no threshold to cap with"), "{e}");
    let e = CapConfig::new(axes(&[3], &[]))
        .with_threshold(Some(2.0))
        .with_layer_range(LayerRange::new(4, 6))
        .plan(&m)
        .unwrap_err();
    assert!(matches!(e, CapError::NothingCapped { .. }), "{e}");
    assert!(e.to_string().contains("caps nothing"));
    // Layers beyond the model are ignored: an axis only there caps nothing.
    let e = CapConfig::new(axes(&[9], &[(9, -1.0)]))
        .plan(&m)
        .unwrap_err();
    assert!(
        matches!(e, CapError::NothingCapped { n_layer: 8, .. }),
        "{e}"
    );
    assert!(matches!(
        CapConfig::new(axes(&[3], &[(3, -1.0)]))
            .with_alpha(-0.1)
            .plan(&m),
        Err(CapError::BadAlpha(_))
    ));
}

#[test]
fn a_panicking_observer_fails_the_decode_cleanly() {
    let m = load(QuantType::Q8_0);
    let mut s = Session::new(&m, params()).unwrap();
    s.set_observer(&[3], |_| panic!("observer exploded"));
    match s.prefill(&tokens(&m)) {
        Err(DecodeError::Hook { message }) => {
            assert!(message.contains("observer exploded"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(s.cached_tokens().is_empty());
    s.clear_observer();
    s.prefill(&tokens(&m)).unwrap();
    assert_eq!(s.logits(), logits(&m, None).as_slice());
}

#[test]
fn control_vectors_apply_before_the_cap() {
    let m = load(QuantType::Q8_0);
    let layer = 4;
    let set = axes(&[layer], &[]);
    let axis = set.layer(layer).unwrap().unit.clone();
    // A control vector along the axis pushes every projection up by 50.
    let cv_file = AxisFile::from_bytes(
        AxisWriter::new()
            .with_direction(layer, axis.iter().map(|a| a * 10.0).collect())
            .to_bytes()
            .unwrap(),
    )
    .unwrap();
    let cv = acap::ControlVector::from_files(&[(cv_file, 5.0)]).unwrap();
    let base = projections(&m, None, layer, axis.clone());

    let mut s = Session::new(&m, params()).unwrap();
    s.set_control_vector(Some(&cv)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let ax = axis.clone();
    s.set_observer(&[layer], move |o| {
        let mut sink = sink.lock().unwrap();
        for i in 0..o.n_rows() {
            sink.push(dot(&ax, o.row(i)));
        }
    });
    s.prefill(&tokens(&m)).unwrap();
    let pushed = seen.lock().unwrap().clone();
    for (b, p) in base.iter().zip(&pushed) {
        assert!((p - b - 50.0).abs() < 0.05, "{b} -> {p}");
    }

    // With the cap on the same block, the observer sees the sum capped at tau (and not the
    // probe token that validates the graph when capping is attached).
    let tau = base.iter().copied().fold(f32::MIN, f32::max);
    seen.lock().unwrap().clear();
    s.set_capping(Some(CapConfig::new(axes(&[layer], &[(layer, tau)]))))
        .unwrap();
    assert!(seen.lock().unwrap().is_empty());
    s.clear();
    s.prefill(&tokens(&m)).unwrap();
    let capped = seen.lock().unwrap().clone();
    assert!(capped.iter().all(|&p| p <= tau + 1e-3), "{capped:?}");
    assert_eq!(s.cap_stats()[0].1.rows_capped, tokens(&m).len() as u64);

    s.set_control_vector(None).unwrap();
    s.set_capping(None).unwrap();
    s.prefill(&tokens(&m)).unwrap();
    assert_eq!(s.logits(), logits(&m, None).as_slice());
}

#[test]
fn capping_works_on_another_architecture() {
    let m = Model::load(
        acap_testkit::tiny_qwen2(QuantType::Q8_0),
        Default::default(),
    )
    .unwrap();
    assert_eq!(m.info().architecture, "qwen2");
    let plain = logits(&m, None);
    let high = CapConfig::new(axes(&[2, 5], &[(2, 1e6), (5, 1e6)]));
    assert_eq!(plain, logits(&m, Some(high)));
    let hard = CapConfig::new(axes(&[2, 5], &[])).with_threshold(Some(1e6));
    assert_ne!(plain, logits(&m, Some(hard.clone())));
    assert_ne!(greedy_text(&m, None), greedy_text(&m, Some(hard)));
}

/// A cancel that lands while a capped graph is running aborts it part-way; that is a
/// cancellation, not a model without hook points, and the session stays usable.
#[test]
fn cancel_during_a_capped_decode_is_a_cancellation() {
    let m = load(QuantType::Q8_0);
    let cap = CapConfig::new(axes(
        &[2, 3, 4, 5, 6],
        &[(2, 0.0), (3, 0.0), (4, 0.0), (5, 0.0), (6, 0.0)],
    ));
    let expected = greedy_text(&m, Some(cap.clone()));
    let mut p = params();
    p.capping = Some(cap);
    let mut s = Session::new(&m, p).unwrap();
    let handle = s.cancel_handle();
    let calls = Arc::new(Mutex::new(0usize));
    let seen = calls.clone();
    // Block 2's output is observed mid-graph: cancelling there aborts blocks 3..6.
    s.set_observer(&[2], move |_| {
        let mut n = seen.lock().unwrap();
        *n += 1;
        if *n == 4 {
            handle.cancel();
        }
    });
    let gp = GenerateParams::default()
        .with_max_tokens(24)
        .with_sampling(SamplingParams::greedy());
    let stats = s
        .generate(PROMPT, &gp, |_| std::ops::ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(stats.stop_reason, acap::StopReason::Cancelled);
    assert!(stats.generated_tokens < 24);
    s.clear_observer();
    assert_eq!(s.complete(PROMPT, &gp).unwrap().0, expected);
}

/// Changing capping mid-session must not reuse keys and values computed under the old setting:
/// the text equals that of a fresh session with the new setting, in both directions.
#[test]
fn changing_capping_never_reuses_stale_kv_cache() {
    let m = load(QuantType::Q8_0);
    let taus: Vec<(u32, f32)> = (2..=6).map(|l| (l, -2.0)).collect();
    let cap = CapConfig::new(axes(&[2, 3, 4, 5, 6], &taus));
    let capped = greedy_text(&m, Some(cap.clone()));
    let uncapped = greedy_text(&m, None);
    assert_ne!(capped, uncapped);
    let gp = GenerateParams::default()
        .with_max_tokens(24)
        .with_sampling(SamplingParams::greedy());
    let mut s = Session::new(&m, params()).unwrap();
    assert_eq!(s.complete(PROMPT, &gp).unwrap().0, uncapped);
    s.set_capping(Some(cap)).unwrap();
    assert_eq!(
        s.complete(PROMPT, &gp).unwrap().0,
        capped,
        "after set_capping"
    );
    s.set_capping_enabled(false);
    assert_eq!(
        s.complete(PROMPT, &gp).unwrap().0,
        uncapped,
        "after disabling"
    );
    s.set_capping_enabled(true);
    assert_eq!(s.complete(PROMPT, &gp).unwrap().0, capped, "after enabling");
    s.set_cap_alpha(0.0).unwrap();
    assert_eq!(
        s.complete(PROMPT, &gp).unwrap().0,
        uncapped,
        "after alpha 0"
    );
    s.set_cap_alpha(1.0).unwrap();
    assert_eq!(s.complete(PROMPT, &gp).unwrap().0, capped, "after alpha 1");
    for l in 2..=6 {
        s.set_layer_tau(l, 1e6).unwrap();
    }
    assert_eq!(
        s.complete(PROMPT, &gp).unwrap().0,
        uncapped,
        "after loose taus"
    );
    s.set_cap_threshold(None).unwrap();
    assert_eq!(
        s.complete(PROMPT, &gp).unwrap().0,
        capped,
        "after file thresholds"
    );
    s.set_capping(None).unwrap();
    assert_eq!(
        s.complete(PROMPT, &gp).unwrap().0,
        uncapped,
        "after removing"
    );
}
