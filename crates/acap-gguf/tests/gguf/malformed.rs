//! Malformed input: every case is an `Err` that says what and where, never a panic.

use acap_gguf::{GgufFile, ParseError, ReadError};

use crate::common::{Bytes, sample_bytes};

fn parse(b: Bytes) -> ParseError {
    match GgufFile::from_bytes(b.0) {
        Ok(_) => panic!("malformed input was accepted"),
        Err(e) => e,
    }
}

/// A header with one key, ready for a value.
fn one_kv(ty: u32) -> Bytes {
    Bytes::header(3, 0, 1).kv("key", ty)
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let bytes = sample_bytes();
    let full = GgufFile::from_bytes(bytes.clone()).unwrap();
    let data_end = full
        .tensors()
        .iter()
        .map(|t| full.data_offset() + t.offset() + t.n_bytes())
        .max()
        .unwrap() as usize;
    for cut in 0..bytes.len() {
        let result = GgufFile::from_bytes(bytes[..cut].to_vec());
        if cut < data_end {
            let e = result.expect_err("truncated file accepted");
            assert!(!e.to_string().is_empty());
        } else {
            // Only the padding after the last tensor is missing: still a complete file.
            assert!(result.is_ok(), "cut at {cut}");
        }
    }
}

#[test]
fn truncated_error_names_offset_and_field() {
    let e = parse(Bytes::header(3, 0, 1).kv("key", 4).raw(&[1, 2]));
    assert!(matches!(
        e.root(),
        ParseError::Truncated {
            offset: 39,
            needed: 4,
            available: 2,
            ..
        }
    ));
    let msg = e.to_string();
    assert!(msg.contains("'key'") && msg.contains("byte 39"), "{msg}");
}

#[test]
fn bad_magic_and_versions() {
    assert!(matches!(
        parse(Bytes::new().raw(b"GGML").u32(3).u64(0).u64(0)),
        ParseError::BadMagic { found } if &found == b"GGML"
    ));
    assert!(matches!(
        parse(Bytes::new()),
        ParseError::Truncated { offset: 0, .. }
    ));
    for v in [0, 1, 4, u32::MAX] {
        assert!(matches!(
            parse(Bytes::header(v, 0, 0)),
            ParseError::UnsupportedVersion { version } if version == v
        ));
    }
    assert!(matches!(
        parse(Bytes::header(3u32.swap_bytes(), 0, 0)),
        ParseError::BigEndian { version: 3 }
    ));
}

#[test]
fn huge_counts_are_rejected_before_allocating() {
    assert!(matches!(
        parse(Bytes::header(3, u64::MAX, 0)),
        ParseError::CountTooLarge {
            what: "tensor count",
            ..
        }
    ));
    assert!(matches!(
        parse(Bytes::header(3, 0, u64::MAX)),
        ParseError::CountTooLarge {
            what: "metadata count",
            ..
        }
    ));
    // Key length.
    assert!(matches!(
        parse(Bytes::header(3, 0, 1).u64(u64::MAX).raw(&[0; 32])),
        ParseError::CountTooLarge {
            what: "metadata key",
            ..
        }
    ));
    // String value length.
    assert!(matches!(
        parse(one_kv(8).u64(1 << 62)).root(),
        ParseError::CountTooLarge { .. }
    ));
    // Array counts of every element type.
    for elem in 0..=12u32 {
        let e = parse(one_kv(9).u32(elem).u64(u64::MAX / 2).raw(&[0; 64]));
        assert!(
            matches!(
                e.root(),
                ParseError::CountTooLarge {
                    what: "array length",
                    ..
                }
            ),
            "element type {elem}: {e}"
        );
    }
    // Tensor name length.
    assert!(matches!(
        parse(Bytes::header(3, 1, 0).u64(u64::MAX - 3).raw(&[0; 40])),
        ParseError::CountTooLarge {
            what: "tensor name",
            ..
        }
    ));
}

#[test]
fn bad_type_codes() {
    let e = parse(one_kv(13).u32(0));
    assert!(
        matches!(e.root(), ParseError::BadValueType { code: 13, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("'key'"));
    assert!(matches!(
        parse(one_kv(u32::MAX)).root(),
        ParseError::BadValueType { .. }
    ));
    assert!(matches!(
        parse(one_kv(9).u32(99).u64(0)).root(),
        ParseError::BadValueType { code: 99, .. }
    ));
    for code in [4, 5, 31, 36, 40, 1000] {
        let e = parse(
            Bytes::header(3, 1, 0)
                .tensor("w", &[32], code, 0)
                .pad(32)
                .raw(&[0; 64]),
        );
        assert!(
            matches!(&e, ParseError::BadTensorType { name, code: c, .. } if name == "w" && *c == code),
            "{e}"
        );
    }
    assert!(matches!(
        parse(one_kv(7).u8(2)).root(),
        ParseError::BadBool { value: 2, .. }
    ));
}

#[test]
fn tensor_shapes() {
    let e = parse(Bytes::header(3, 1, 0).tensor("w", &[1, 1, 1, 1, 1], 0, 0));
    assert!(
        matches!(e, ParseError::TooManyDims { n_dims: 5, .. }),
        "{e}"
    );
    // Q4_K rows must be whole 256-element blocks.
    let e = parse(
        Bytes::header(3, 1, 0)
            .tensor("q", &[100], 12, 0)
            .pad(32)
            .raw(&[0; 200]),
    );
    assert!(
        matches!(&e, ParseError::BadShape { name, .. } if name == "q"),
        "{e}"
    );
    // Element count overflow.
    let e = parse(Bytes::header(3, 1, 0).tensor("big", &[1 << 40, 1 << 40], 0, 0));
    assert!(matches!(e, ParseError::BadShape { .. }), "{e}");
    // A zero dimension with an absurd other one is an empty tensor, not an overflow.
    let b = Bytes::header(3, 1, 0)
        .tensor("empty", &[0, u64::MAX >> 2], 0, 0)
        .pad(32);
    assert!(GgufFile::from_bytes(b.0).is_ok());
}

#[test]
fn tensor_data_bounds_alignment_and_overlap() {
    let e = parse(
        Bytes::header(3, 1, 0)
            .tensor("w", &[8], 0, 0)
            .pad(32)
            .raw(&[0; 31]),
    );
    assert!(
        matches!(&e, ParseError::TensorOutOfBounds { name, .. } if name == "w"),
        "{e}"
    );
    let e = parse(
        Bytes::header(3, 1, 0)
            .tensor("w", &[8], 0, u64::MAX - 31)
            .pad(32),
    );
    assert!(matches!(e, ParseError::TensorOutOfBounds { .. }), "{e}");
    let e = parse(
        Bytes::header(3, 1, 0)
            .tensor("w", &[1], 0, 4)
            .pad(32)
            .raw(&[0; 64]),
    );
    assert!(
        matches!(
            e,
            ParseError::MisalignedTensor {
                offset: 4,
                alignment: 32,
                ..
            }
        ),
        "{e}"
    );
    let e = parse(
        Bytes::header(3, 2, 0)
            .tensor("a", &[16], 0, 0)
            .tensor("b", &[8], 0, 32)
            .pad(32)
            .raw(&[0; 96]),
    );
    assert!(
        matches!(&e, ParseError::TensorOverlap { first, second } if first == "a" && second == "b"),
        "{e}"
    );
    let e = parse(
        Bytes::header(3, 2, 0)
            .tensor("a", &[1], 0, 0)
            .tensor("a", &[1], 0, 32)
            .pad(32)
            .raw(&[0; 64]),
    );
    assert!(matches!(e, ParseError::DuplicateTensor { .. }), "{e}");
}

#[test]
fn alignment_rules() {
    for bad in [0u32, 3, 48, u32::MAX] {
        let e = parse(Bytes::header(3, 0, 1).kv("general.alignment", 4).u32(bad));
        let e = match e {
            ParseError::BadAlignment { value } => value,
            other => panic!("alignment {bad}: {other}"),
        };
        assert_eq!(e, bad);
    }
    let b = Bytes::header(3, 0, 1).kv("general.alignment", 8).str(b"32");
    assert!(matches!(parse(b), ParseError::AlignmentType { found } if found == "STRING"));
    let b = Bytes::header(3, 0, 1).kv("general.alignment", 0).u8(32);
    assert!(matches!(parse(b), ParseError::AlignmentType { .. }));
}

#[test]
fn bad_alignment_value_mentions_the_key() {
    let e = parse(Bytes::header(3, 0, 1).kv("general.alignment", 4).u32(0));
    assert!(e.to_string().contains("general.alignment"), "{e}");
}

#[test]
fn invalid_utf8_everywhere() {
    let e = parse(Bytes::header(3, 0, 1).str(b"k\xff").u32(0).u8(0));
    assert!(
        matches!(
            e,
            ParseError::InvalidUtf8 {
                offset: 32,
                what: "metadata key"
            }
        ),
        "{e}"
    );
    let e = parse(one_kv(8).str(b"\xc3"));
    assert!(matches!(e.root(), ParseError::InvalidUtf8 { .. }), "{e}");
    let e = parse(one_kv(9).u32(8).u64(1).str(b"\xed\xa0\x80"));
    assert!(matches!(e.root(), ParseError::InvalidUtf8 { .. }), "{e}");
    let e = parse(
        Bytes::header(3, 1, 0)
            .str(b"\x80w")
            .u32(1)
            .u64(1)
            .u32(0)
            .u64(0),
    );
    assert!(
        matches!(
            e,
            ParseError::InvalidUtf8 {
                what: "tensor name",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn duplicate_keys_and_deep_nesting() {
    let b = Bytes::header(3, 0, 2).kv("k", 0).u8(1).kv("k", 0).u8(2);
    assert!(matches!(parse(b), ParseError::DuplicateKey { key, offset: 38 } if key == "k"));

    let depth = acap_gguf::MAX_ARRAY_DEPTH + 1;
    let mut b = one_kv(9);
    for _ in 0..depth - 1 {
        b = b.u32(9).u64(1);
    }
    b = b.u32(0).u64(0);
    assert!(matches!(parse(b).root(), ParseError::NestingTooDeep { .. }));

    // A million levels would overflow the stack without the limit.
    let mut b = one_kv(9);
    for _ in 0..1_000_000 {
        b = b.u32(9).u64(1);
    }
    assert!(matches!(parse(b).root(), ParseError::NestingTooDeep { .. }));
}

#[test]
fn open_reports_path_for_io_and_parse_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    let e = GgufFile::open(&missing).unwrap_err();
    assert!(matches!(e, ReadError::Io { .. }));
    assert!(e.to_string().contains("missing.gguf"), "{e}");

    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let e = GgufFile::open(&empty).unwrap_err();
    assert!(matches!(e, ReadError::Parse { .. }));
    assert!(e.to_string().contains("empty.gguf"), "{e}");

    let e = GgufFile::open(dir.path()).unwrap_err();
    assert!(
        e.to_string().contains(&dir.path().display().to_string()),
        "{e}"
    );
}
