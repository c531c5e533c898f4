//! Every branch of threshold resolution (spec section 4).

use acap::{AxisFile, AxisSet, AxisWriter, Threshold, ThresholdError, ThresholdSource};

fn set(taus: &[(u32, f32)]) -> AxisSet {
    let mut w = AxisWriter::new()
        .with_direction(22, vec![1.0, 0.0])
        .with_direction(23, vec![0.0, 1.0]);
    for &(l, t) in taus {
        w = w.with_threshold(l, t);
    }
    AxisSet::new(vec![AxisFile::from_bytes(w.to_bytes().unwrap()).unwrap()]).unwrap()
}

fn t(tau: f32, source: ThresholdSource) -> Threshold {
    Threshold { tau, source }
}

#[test]
fn file_key_is_used_exactly_even_with_a_cli_value() {
    let th = set(&[(22, -3.5)]).thresholds(Some(2.1)).unwrap();
    assert_eq!(th.for_layer(22), t(-3.5, ThresholdSource::File));
    // Positive file values are not negated either.
    let th = set(&[(22, 0.75)]).thresholds(None).unwrap();
    assert_eq!(th.for_layer(22), t(0.75, ThresholdSource::File));
}

#[test]
fn positive_cli_value_is_negated_for_layers_without_a_key() {
    let th = set(&[(22, -3.5)]).thresholds(Some(2.1)).unwrap();
    assert_eq!(th.for_layer(23), t(-2.1, ThresholdSource::Cli));
    let th = set(&[]).thresholds(Some(2.1)).unwrap();
    assert_eq!(th.for_layer(22), t(-2.1, ThresholdSource::Cli));
    assert_eq!(th.global(), t(-2.1, ThresholdSource::Cli));
}

#[test]
fn missing_threshold_everywhere_is_an_error() {
    for cli in [None, Some(0.0), Some(-2.0)] {
        let e = set(&[]).thresholds(cli).unwrap_err();
        assert!(matches!(e, ThresholdError::Missing { .. }), "{cli:?}");
        assert!(
            e.to_string().contains(
                "has no per-layer thresholds (acap.threshold.N) and no positive global threshold"
            ),
            "{e}"
        );
    }
}

#[test]
fn global_becomes_one_when_the_file_has_some_thresholds() {
    for cli in [None, Some(0.0), Some(-5.0)] {
        let th = set(&[(22, -3.5)]).thresholds(cli).unwrap();
        assert_eq!(th.for_layer(22), t(-3.5, ThresholdSource::File));
        assert_eq!(
            th.for_layer(23),
            t(-1.0, ThresholdSource::DefaultOne),
            "{cli:?}"
        );
    }
}

#[test]
fn non_finite_cli_value_is_rejected() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert!(matches!(
            set(&[(22, -1.0)]).thresholds(Some(bad)),
            Err(ThresholdError::NotFinite { .. })
        ));
    }
}

#[test]
fn only_the_first_file_counts_for_the_missing_rule() {
    let first = AxisWriter::new()
        .with_direction(3, vec![1.0])
        .to_bytes()
        .unwrap();
    let second = AxisWriter::new()
        .with_direction(3, vec![1.0])
        .with_threshold(3, -9.0)
        .to_bytes()
        .unwrap();
    let set = AxisSet::new(vec![
        AxisFile::from_bytes(first).unwrap(),
        AxisFile::from_bytes(second).unwrap(),
    ])
    .unwrap();
    assert!(matches!(
        set.thresholds(None),
        Err(ThresholdError::Missing { .. })
    ));
    assert_eq!(
        set.thresholds(Some(1.5)).unwrap().for_layer(3),
        t(-1.5, ThresholdSource::Cli)
    );
}
