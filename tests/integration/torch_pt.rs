//! The `.pt` reader against checkpoints written by an independent writer
//! (`scripts/make-pt-fixtures.py`: CPython's pickler and zipfile, without torch), and hostile
//! archives: unknown globals, deep nesting, huge sizes, truncation.

use std::io::Write;
use std::path::{Path, PathBuf};

use acap::torch::{TorchError, load_number_dict, load_tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pt")
        .join(name)
}

/// What the fixtures hold: value (r, c) = r - c / 8, 4 x 8.
fn expected() -> Vec<f32> {
    (0..4)
        .flat_map(|r| (0..8).map(move |c| r as f32 - c as f32 / 8.0))
        .collect()
}

#[test]
fn every_storage_type_byte_order_and_layout_reads_the_same_matrix() {
    for name in [
        "axis_FloatStorage.pt",
        "axis_DoubleStorage.pt",
        "axis_HalfStorage.pt",
        "axis_BFloat16Storage.pt",
        "axis_big_endian.pt",
        "axis_strided.pt",
        "axis_offset.pt",
        "axis_dict.pt",
    ] {
        let t = load_tensor(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.shape, [4, 8], "{name}");
        assert_eq!(t.data, expected(), "{name}");
    }
}

#[test]
fn thresholds_dict() {
    let d = load_number_dict(fixture("thresholds.pt")).unwrap();
    assert_eq!(
        d.into_iter().collect::<Vec<_>>(),
        [(1, -2.5), (2, -4.0), (3, -1.0)]
    );
    // A tensor file is not a dict, and the other way round.
    let e = load_number_dict(fixture("axis_FloatStorage.pt")).unwrap_err();
    assert!(e.to_string().contains("expected a dict"), "{e}");
    let e = load_tensor(fixture("thresholds.pt")).unwrap_err();
    assert!(e.to_string().contains("0 tensors"), "{e}");
}

#[test]
fn truncated_storage_is_an_error() {
    let e = load_tensor(fixture("axis_truncated.pt"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("data/0") && e.contains("116 bytes") && e.contains("needs 128"),
        "{e}"
    );
}

/// A checkpoint whose `data.pkl` is `pkl` (plus optional storage entries).
fn archive(dir: &Path, name: &str, pkl: &[u8], storages: &[(&str, Vec<u8>)]) -> PathBuf {
    let path = dir.join(format!("{name}.pt"));
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file(format!("{name}/data.pkl"), opts).unwrap();
    z.write_all(pkl).unwrap();
    for (key, bytes) in storages {
        z.start_file(format!("{name}/data/{key}"), opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
    path
}

/// The pickle of a float32 tensor of `size` / `stride` over storage "0" of `numel` elements.
fn tensor_pickle(numel: u32, size: &[u32], stride: &[u32]) -> Vec<u8> {
    let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ".to_vec();
    p.extend(numel.to_le_bytes());
    p.extend(b"tQK\x00(");
    for &d in size {
        p.push(b'J');
        p.extend(d.to_le_bytes());
    }
    p.extend(b"t(");
    for &s in stride {
        p.push(b'J');
        p.extend(s.to_le_bytes());
    }
    p.extend(b"t\x89ccollections\nOrderedDict\n)RtR.");
    p
}

#[test]
fn hostile_archives_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The hand-written pickle reads like the fixtures.
    let ok = archive(
        d,
        "ok",
        &tensor_pickle(2, &[2], &[1]),
        &[(
            "0",
            [1.5f32, -2.0]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        )],
    );
    assert_eq!(load_tensor(&ok).unwrap().data, [1.5, -2.0]);

    let forbidden = [
        (
            b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00idtR.".to_vec(),
            "os.system",
        ),
        (
            b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93X\x01\x00\x00\x001tR.".to_vec(),
            "builtins.eval",
        ),
        (
            b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00cposix\nsystem\n.".to_vec(),
            "posix.system",
        ),
    ];
    for (i, (pkl, global)) in forbidden.iter().enumerate() {
        let p = archive(d, &format!("evil{i}"), pkl, &[]);
        let e = load_tensor(&p).unwrap_err();
        assert!(
            matches!(&e, TorchError::ForbiddenGlobal { global: g, .. } if g == global),
            "{e}"
        );
        assert!(
            e.to_string().contains(global) && e.to_string().contains("evil"),
            "{e}"
        );
    }

    // Recursion: a million nested one-tuples.
    let mut deep = b"\x80\x02K\x01".to_vec();
    deep.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    deep.push(b'.');
    let e = load_tensor(archive(d, "deep", &deep, &[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nested deeper"), "{e}");

    // Huge sizes: more elements than any axis, and a view beyond its storage.
    let huge = tensor_pickle(4, &[1 << 30, 1 << 30], &[1, 1]);
    let e = load_tensor(archive(d, "huge", &huge, &[("0", vec![0; 16])]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than"), "{e}");
    let beyond = tensor_pickle(4, &[2, 4], &[4, 1]);
    let e = load_tensor(archive(d, "beyond", &beyond, &[("0", vec![0; 16])]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("beyond its storage of 4 elements"), "{e}");
    // A storage entry that is missing, or longer than the storage says.
    let e = load_tensor(archive(d, "nodata", &tensor_pickle(2, &[2], &[1]), &[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no nodata/data/0"), "{e}");
    let e = load_tensor(archive(
        d,
        "long",
        &tensor_pickle(2, &[2], &[1]),
        &[("0", vec![0; 64])],
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("more than 8"), "{e}");

    // A truncated pickle, an unknown opcode, not a zip, no data.pkl.
    let mut cut = tensor_pickle(2, &[2], &[1]);
    cut.truncate(40);
    let e = load_tensor(archive(d, "cut", &cut, &[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("truncated") || e.contains("data.pkl at byte"),
        "{e}"
    );
    let e = load_tensor(archive(d, "op", b"\x80\x02\xff.", &[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("opcode 0xff"), "{e}");
    let junk = d.join("junk.pt");
    std::fs::write(&junk, b"\x80\x02K\x01.").unwrap();
    let e = load_tensor(&junk).unwrap_err().to_string();
    assert!(
        e.contains("junk.pt") && e.contains("not a PyTorch zip checkpoint"),
        "{e}"
    );
    let empty = d.join("empty.pt");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&empty).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("x/other", opts).unwrap();
    z.finish().unwrap();
    let e = load_tensor(&empty).unwrap_err().to_string();
    assert!(e.contains("no NAME/data.pkl"), "{e}");
    let e = load_tensor(d.join("missing.pt")).unwrap_err().to_string();
    assert!(e.contains("missing.pt"), "{e}");
}
