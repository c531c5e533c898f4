//! Files built byte by byte in the test, checked against the parser's view.

use acap_gguf::{GgmlType, GgufFile, Value};

use crate::common::Bytes;

fn golden(version: u32) -> Vec<u8> {
    let b = Bytes::header(version, 2, 3)
        .kv("general.name", 8)
        .str(b"tiny")
        .kv("n.layers", 4)
        .u32(8)
        .kv("tok", 9)
        .u32(8)
        .u64(2)
        .str(b"<s>")
        .str(b"\xc3\xa9")
        .tensor("w", &[2, 3], 0, 0)
        .tensor("v", &[4], 1, 32)
        .pad(32);
    assert_eq!(b.len() % 32, 0);
    let mut b = b;
    for i in 0..6 {
        b = b.f32(i as f32 * 0.5);
    }
    let b = b.pad(32);
    // F16 1.0, 2.0, -0.5, 65504
    b.raw(&[0x00, 0x3c, 0x00, 0x40, 0x00, 0xb8, 0xff, 0x7b]).0
}

#[test]
fn parser_view_of_a_hand_built_file() {
    for version in [2, 3] {
        let bytes = golden(version);
        let f = GgufFile::from_bytes(bytes.clone()).unwrap();
        assert_eq!(f.version(), version);
        assert_eq!(f.alignment(), 32);
        // 24 header + 36 (name) + 24 (n.layers) + 48 (tok) + 41 (w) + 33 (v) = 206, padded to 224.
        assert_eq!(f.data_offset(), 224);
        assert_eq!(f.file_len(), bytes.len() as u64);
        let keys: Vec<_> = f.metadata().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["general.name", "n.layers", "tok"]);
        assert_eq!(f.get_str("general.name").unwrap(), "tiny");
        assert_eq!(f.get_u32("n.layers").unwrap(), 8);
        assert_eq!(f.get_str_array("tok").unwrap(), ["<s>", "é"]);

        let w = f.tensor("w").unwrap();
        assert_eq!(w.info().dims(), [2, 3]);
        assert_eq!(w.info().ggml_type(), GgmlType::F32);
        assert_eq!(w.info().offset(), 0);
        assert_eq!(w.info().n_bytes(), 24);
        assert_eq!(w.info().n_elements(), 6);
        assert_eq!(w.to_f32_vec().unwrap(), [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
        assert_eq!(w.data(), &bytes[224..248]);

        let v = f.tensor("v").unwrap();
        assert_eq!(v.info().ggml_type(), GgmlType::F16);
        assert_eq!(v.info().offset(), 32);
        assert_eq!(v.to_f32_vec().unwrap(), [1.0, 2.0, -0.5, 65504.0]);
        assert!(v.as_f32_slice().is_none());
    }
}

#[test]
fn mapped_file_is_zero_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.gguf");
    std::fs::write(&path, golden(3)).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.path(), Some(path.as_path()));
    let w = f.tensor("w").unwrap();
    let slice = w.as_f32_slice().expect("mapped F32 data is aligned");
    assert_eq!(slice, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
    // The slice points into the map, not into a copy.
    assert_eq!(slice.as_ptr() as *const u8, w.data().as_ptr());
}

#[test]
fn custom_alignment_is_honoured() {
    let b = Bytes::header(3, 1, 1)
        .kv("general.alignment", 4)
        .u32(64)
        .tensor("t", &[1], 0, 0)
        .pad(64)
        .f32(42.0);
    let f = GgufFile::from_bytes(b.0).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    assert_eq!(f.tensor("t").unwrap().to_f32_vec().unwrap(), [42.0]);
    assert_eq!(f.get("general.alignment"), Some(&Value::U32(64)));
}

#[test]
fn metadata_only_file_may_omit_trailing_padding() {
    let b = Bytes::header(3, 0, 1).kv("k", 0).u8(7);
    let f = GgufFile::from_bytes(b.0).unwrap();
    assert!(f.tensors().is_empty());
    assert_eq!(f.get_u8("k").unwrap(), 7);
}
