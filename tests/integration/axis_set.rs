//! Summing several files, first-file thresholds, f32 normalisation.

use acap::axis::LayerAxis;
use acap::{AxisFile, AxisSet, AxisSetError, AxisWriter};

fn file(dirs: &[(u32, Vec<f32>)], taus: &[(u32, f32)]) -> AxisFile {
    let mut w = AxisWriter::new();
    for (l, v) in dirs {
        w = w.with_direction(*l, v.clone());
    }
    for &(l, t) in taus {
        w = w.with_threshold(l, t);
    }
    AxisFile::from_bytes(w.to_bytes().unwrap()).unwrap()
}

/// The reference normalisation, written out independently: sequential f32 sum of squares.
fn reference_unit(v: &[f32]) -> Vec<f32> {
    let mut sum = 0.0f32;
    for x in v {
        sum += x * x;
    }
    let norm = sum.sqrt();
    if norm > 1e-8 {
        let inv = 1.0f32 / norm;
        v.iter().map(|x| x * inv).collect()
    } else {
        v.to_vec()
    }
}

#[test]
fn single_file_is_normalised_per_layer() {
    let set = AxisSet::new(vec![file(&[(3, vec![3.0, 4.0]), (5, vec![0.0, 2.0])], &[])]).unwrap();
    assert_eq!(set.n_embd(), 2);
    let l3 = set.layer(3).unwrap();
    assert_eq!(l3.norm, 5.0);
    assert_eq!(l3.unit, reference_unit(&[3.0, 4.0]));
    assert_eq!(set.layer(5).unwrap().unit, [0.0, 1.0]);
    assert!(set.layer(4).is_none());
}

#[test]
fn normalisation_is_bit_exact_with_the_reference() {
    // Values whose f32 sum of squares depends on the order of accumulation.
    let v: Vec<f32> = (0..4096)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.37)
        .collect();
    let set = AxisSet::new(vec![file(&[(22, v.clone())], &[])]).unwrap();
    let got = &set.layer(22).unwrap().unit;
    let want = reference_unit(&v);
    assert!(
        got.iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

#[test]
fn zero_and_tiny_vectors_stay_as_they_are() {
    let set = AxisSet::new(vec![file(
        &[(1, vec![0.0; 4]), (2, vec![1e-9, 0.0, 0.0, 0.0])],
        &[],
    )])
    .unwrap();
    assert_eq!(
        set.layer(1).unwrap(),
        &LayerAxis {
            unit: vec![0.0; 4],
            norm: 0.0
        }
    );
    assert_eq!(set.layer(2).unwrap().unit, [1e-9, 0.0, 0.0, 0.0]);
}

#[test]
fn several_files_sum_per_layer_before_normalising() {
    let a = file(&[(2, vec![1.0, 0.0]), (3, vec![0.0, 1.0])], &[(2, -4.0)]);
    let b = file(
        &[(2, vec![0.0, 1.0]), (9, vec![2.0, 0.0])],
        &[(2, -1.0), (9, -7.0)],
    );
    let set = AxisSet::new(vec![a, b]).unwrap();
    assert_eq!(set.layers().keys().copied().collect::<Vec<_>>(), [2, 3, 9]);
    let l2 = set.layer(2).unwrap();
    assert_eq!(l2.norm, 2.0f32.sqrt());
    assert_eq!(l2.unit, reference_unit(&[1.0, 1.0]));
    assert_eq!(set.layer(9).unwrap().unit, [1.0, 0.0]);
    // Thresholds come from the first file only: layer 9's -7.0 is not used.
    assert_eq!(set.file_thresholds().len(), 1);
    assert_eq!(set.file_thresholds()[&2], -4.0);
}

#[test]
fn opposite_files_cancel_to_a_no_op_layer() {
    let a = file(&[(4, vec![1.0, -2.0])], &[]);
    let b = file(&[(4, vec![-1.0, 2.0])], &[]);
    let set = AxisSet::new(vec![a, b]).unwrap();
    assert_eq!(set.layer(4).unwrap().norm, 0.0);
    assert_eq!(set.layer(4).unwrap().unit, [0.0, 0.0]);
}

#[test]
fn mismatched_n_embd_and_no_files() {
    let a = file(&[(2, vec![1.0, 0.0])], &[]);
    let b = file(&[(2, vec![1.0, 0.0, 0.0])], &[]);
    let e = AxisSet::new(vec![a, b]).unwrap_err();
    assert!(
        matches!(
            e,
            AxisSetError::EmbdMismatch {
                n_embd: 3,
                expected: 2,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(AxisSet::new(vec![]).unwrap_err(), AxisSetError::NoFiles);
}

#[test]
fn open_combines_files_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let p1 = dir.path().join("a.gguf");
    let p2 = dir.path().join("b.gguf");
    AxisWriter::new()
        .with_direction(1, vec![2.0, 0.0])
        .with_threshold(1, -2.0)
        .write_file(&p1)
        .unwrap();
    AxisWriter::new()
        .with_direction(1, vec![0.0, 2.0])
        .write_file(&p2)
        .unwrap();
    let set = AxisSet::open(&[&p1, &p2]).unwrap();
    assert_eq!(set.origins().len(), 2);
    assert!(set.origins()[0].ends_with("a.gguf"));
    assert_eq!(set.layer(1).unwrap().unit, reference_unit(&[2.0, 2.0]));
    let e = AxisSet::open(&[&p1, &dir.path().join("nope.gguf")]).unwrap_err();
    assert!(e.to_string().contains("nope.gguf"), "{e}");
}
