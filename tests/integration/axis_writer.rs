//! Axis files written by acap follow the reference layout and read back unchanged.

use acap::gguf::{GgmlType, GgufFile};
use acap::{AxisFile, AxisWriteError, AxisWriter};

fn published_like() -> AxisWriter {
    let mut w = AxisWriter::new()
        .with_model_hint("karma-electric-llama31-8b")
        .with_hook("l_out")
        .with_operation("cap");
    for layer in 22..=28u32 {
        let v: Vec<f32> = (0..4096)
            .map(|i| ((i as f32) * 0.001 * layer as f32).sin())
            .collect();
        w = w
            .with_direction(layer, v)
            .with_threshold(layer, -2.4 - 0.5 * (layer - 22) as f32);
    }
    w
}

#[test]
fn layout_matches_published_axis_files() {
    let bytes = published_like().to_bytes().unwrap();
    let g = GgufFile::from_bytes(bytes.clone()).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 32);
    assert!(g.get("general.architecture").is_none());
    assert!(g.get("general.alignment").is_none());
    let names: Vec<_> = g.tensors().iter().map(|t| t.name()).collect();
    assert_eq!(
        names,
        (22..=28)
            .map(|l| format!("direction.{l}"))
            .collect::<Vec<_>>()
    );
    for t in g.tensors() {
        assert_eq!(t.ggml_type(), GgmlType::F32);
        assert_eq!(t.dims(), [4096]);
    }
    for l in 22..=28 {
        assert!(g.get_f32(&format!("acap.threshold.{l}")).is_ok());
    }
    // Published files are about 113 KB: 7 x 4096 x 4 bytes of data plus a small header.
    assert!(
        (114_688..116_000).contains(&bytes.len()),
        "{} bytes",
        bytes.len()
    );
}

#[test]
fn round_trip_is_exact() {
    let w = published_like();
    let f = AxisFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.n_embd(), 4096);
    assert_eq!(f.thresholds()[&22], -2.4);
    assert_eq!(f.model_hint(), Some("karma-electric-llama31-8b"));
    assert_eq!(f.hook(), Some("l_out"));
    assert_eq!(f.operation(), Some("cap"));
    // Reading, re-writing and reading again changes nothing.
    let again = AxisFile::from_bytes(AxisWriter::from(&f).to_bytes().unwrap()).unwrap();
    assert_eq!(again.directions(), f.directions());
    assert_eq!(again.thresholds(), f.thresholds());
    assert_eq!(again.model_hint(), f.model_hint());
}

#[test]
fn writer_refuses_invalid_files() {
    let invalid = |w: AxisWriter| match w.to_bytes() {
        Err(AxisWriteError::Invalid { reason }) => reason,
        other => panic!("accepted: {other:?}"),
    };
    assert!(invalid(AxisWriter::new()).contains("no directions"));
    assert!(invalid(AxisWriter::new().with_direction(0, vec![1.0])).contains("layer 0"));
    assert!(
        invalid(
            AxisWriter::new()
                .with_direction(1, vec![1.0])
                .with_direction(2, vec![1.0, 2.0])
        )
        .contains("length")
    );
    assert!(invalid(AxisWriter::new().with_direction(1, vec![f32::NAN])).contains("NaN"));
    assert!(
        invalid(
            AxisWriter::new()
                .with_direction(1, vec![1.0])
                .with_threshold(1, f32::NAN)
        )
        .contains("threshold")
    );
    assert!(
        invalid(
            AxisWriter::new()
                .with_direction(1, vec![1.0])
                .with_metadata("acap.threshold.1", -1.0f64)
        )
        .contains("with_threshold")
    );
}

#[test]
fn metadata_replaces_earlier_value() {
    let f = AxisFile::from_bytes(
        AxisWriter::new()
            .with_direction(1, vec![1.0])
            .with_hook("a")
            .with_hook("l_out")
            .to_bytes()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(f.hook(), Some("l_out"));
}
