//! Every validation rule of spec section 3, each with its own error.

use acap::gguf::{GgmlType, GgufWriter, Value};
use acap::{AxisFile, AxisFileError};

/// An axis file made of the given tensors (name, dims, F32 data) and metadata.
fn axis(tensors: &[(&str, &[u64], &[f32])], meta: &[(&str, Value)]) -> Vec<u8> {
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.set(*k, v.clone()).unwrap();
    }
    for (name, dims, data) in tensors {
        w.add_f32(name, dims, data).unwrap();
    }
    w.into_bytes().unwrap()
}

fn load(tensors: &[(&str, &[u64], &[f32])], meta: &[(&str, Value)]) -> AxisFileError {
    AxisFile::from_bytes(axis(tensors, meta)).expect_err("invalid axis file accepted")
}

#[test]
fn valid_file_in_reference_layout() {
    let f = AxisFile::from_bytes(axis(
        &[
            ("direction.22", &[3], &[1.0, 2.0, 2.0]),
            ("direction.28", &[3], &[0.0, -1.0, 0.5]),
        ],
        &[
            ("acap.threshold.22", Value::F32(-3.25)),
            ("general.name", Value::from("ignored")),
            ("acap.model_hint", Value::from("llama-3.1-8b")),
        ],
    ))
    .unwrap();
    assert_eq!(f.origin(), "<memory>");
    assert_eq!(f.n_embd(), 3);
    assert_eq!(f.direction(22), Some(&[1.0, 2.0, 2.0][..]));
    assert_eq!(f.direction(28), Some(&[0.0, -1.0, 0.5][..]));
    assert_eq!(f.direction(23), None);
    assert_eq!(f.thresholds().len(), 1);
    assert_eq!(f.thresholds()[&22], -3.25);
    assert_eq!(f.model_hint(), Some("llama-3.1-8b"));
    assert_eq!(f.hook(), None);
}

#[test]
fn no_tensors() {
    assert!(matches!(
        load(&[], &[("acap.threshold.1", Value::F32(-1.0))]),
        AxisFileError::NoTensors { .. }
    ));
}

#[test]
fn other_tensor_names() {
    for name in [
        "dir.1",
        "output.weight",
        "direction",
        "directions.3",
        "l_out-3",
    ] {
        let e = load(&[(name, &[2], &[1.0, 0.0])], &[]);
        assert!(
            matches!(&e, AxisFileError::UnexpectedTensor { name: n, .. } if n == name),
            "{name}: {e}"
        );
        assert!(e.to_string().contains(name));
    }
}

#[test]
fn non_integer_layer_index() {
    for name in [
        "direction.",
        "direction.x",
        "direction.1.5",
        "direction.-1",
        "direction.+2",
        "direction. 3",
        "direction.3a",
        "direction.99999999999",
    ] {
        let e = load(&[(name, &[2], &[1.0, 0.0])], &[]);
        assert!(
            matches!(e, AxisFileError::BadLayerIndex { .. }),
            "{name}: {e}"
        );
    }
}

#[test]
fn layer_zero() {
    for name in ["direction.0", "direction.000"] {
        let e = load(
            &[
                ("direction.1", &[2], &[1.0, 0.0]),
                (name, &[2], &[1.0, 0.0]),
            ],
            &[],
        );
        assert!(matches!(e, AxisFileError::LayerZero { .. }), "{name}: {e}");
    }
}

#[test]
fn non_f32_tensor() {
    let mut w = GgufWriter::new();
    w.add_f16("direction.3", &[2], &[1.0, 0.0]).unwrap();
    let e = AxisFile::from_bytes(w.into_bytes().unwrap()).unwrap_err();
    assert!(
        matches!(
            e,
            AxisFileError::NotF32 {
                ty: GgmlType::F16,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("direction.3"));
}

#[test]
fn non_1d_tensor() {
    let e = load(&[("direction.3", &[2, 2], &[1.0, 0.0, 0.0, 1.0])], &[]);
    assert!(
        matches!(&e, AxisFileError::NotOneDimensional { dims, .. } if dims == &[2, 2]),
        "{e}"
    );
    let e = load(&[("direction.3", &[2, 1], &[1.0, 0.0])], &[]);
    assert!(matches!(e, AxisFileError::NotOneDimensional { .. }), "{e}");
}

#[test]
fn unequal_lengths() {
    let e = load(
        &[
            ("direction.1", &[3], &[1.0, 0.0, 0.0]),
            ("direction.2", &[2], &[1.0, 0.0]),
        ],
        &[],
    );
    assert!(
        matches!(&e, AxisFileError::LengthMismatch { name, len: 2, expected: 3, .. } if name == "direction.2"),
        "{e}"
    );
}

#[test]
fn threshold_of_wrong_type() {
    for bad in [
        Value::F64(-2.0),
        Value::I32(-2),
        Value::from("-2.0"),
        Value::from(vec![-2.0f32]),
    ] {
        let found = bad.type_name();
        let e = load(
            &[("direction.5", &[2], &[1.0, 0.0])],
            &[("acap.threshold.5", bad)],
        );
        assert!(
            matches!(&e, AxisFileError::ThresholdNotF32 { key, found: f, .. } if key == "acap.threshold.5" && *f == found),
            "{e}"
        );
    }
}

#[test]
fn unknown_and_non_canonical_keys_are_ignored() {
    let f = AxisFile::from_bytes(axis(
        &[("direction.5", &[2], &[1.0, 0.0])],
        &[
            ("acap.threshold.05", Value::from("not a threshold key")),
            ("acap.threshold.x", Value::I32(1)),
            ("acap.threshold.0", Value::I32(1)),
            ("something.else", Value::Bool(true)),
        ],
    ))
    .unwrap();
    assert!(f.thresholds().is_empty());
}

#[test]
fn non_finite_values_are_rejected() {
    let e = load(&[("direction.5", &[2], &[1.0, f32::NAN])], &[]);
    assert!(
        matches!(e, AxisFileError::NonFiniteDirection { index: 1, .. }),
        "{e}"
    );
    let e = load(
        &[("direction.5", &[2], &[1.0, 0.0])],
        &[("acap.threshold.5", Value::F32(f32::NEG_INFINITY))],
    );
    assert!(matches!(e, AxisFileError::NonFiniteThreshold { .. }), "{e}");
}

#[test]
fn tensors_of_one_layer_are_summed() {
    let f = AxisFile::from_bytes(axis(
        &[
            ("direction.7", &[2], &[1.0, 2.0]),
            ("direction.007", &[2], &[0.5, -2.0]),
        ],
        &[],
    ))
    .unwrap();
    assert_eq!(f.direction(7), Some(&[1.5, 0.0][..]));
    assert_eq!(f.directions().len(), 1);
}

#[test]
fn not_gguf_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("axis.gguf");
    std::fs::write(&path, b"definitely not gguf").unwrap();
    let e = AxisFile::open(&path).unwrap_err();
    assert!(e.to_string().contains("axis.gguf"), "{e}");
    let e = AxisFile::open(dir.path().join("missing.gguf")).unwrap_err();
    assert!(e.to_string().contains("missing.gguf"), "{e}");

    // Rule errors name the file too.
    std::fs::write(&path, axis(&[("direction.0", &[1], &[1.0])], &[])).unwrap();
    let e = AxisFile::open(&path).unwrap_err();
    assert!(
        matches!(&e, AxisFileError::LayerZero { origin, .. } if origin.ends_with("axis.gguf")),
        "{e}"
    );
}

/// Bytes no tensor describes are refused: appended data, and the tell-tale of a file whose
/// tensor count was lowered (the remaining tensors' data is still there). Padding up to the
/// alignment is not data.
#[test]
fn trailing_data_is_refused() {
    let two = [
        ("direction.2", &[64u64][..], &[0.5f32; 64][..]),
        ("direction.3", &[64], &[0.25; 64]),
    ];
    let good = axis(&two, &[]);
    assert!(AxisFile::from_bytes(good.clone()).is_ok());
    let mut appended = good.clone();
    appended.extend_from_slice(&[0u8; 40]);
    let e = AxisFile::from_bytes(appended).unwrap_err();
    assert!(
        matches!(e, AxisFileError::TrailingData { bytes: 40, .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains("40 bytes after the last tensor"),
        "{e}"
    );
    // n_tensors (u64 after the magic and the version) lowered from 2 to 1.
    let mut lowered = good;
    assert_eq!(lowered[8], 2);
    lowered[8] = 1;
    match AxisFile::from_bytes(lowered) {
        Err(AxisFileError::TrailingData { .. } | AxisFileError::Parse { .. }) => {}
        other => panic!("a lowered tensor count was accepted: {other:?}"),
    }
}
