//! Writing then reading gives back the same values, bit for bit.

use acap_gguf::{Array, GgmlType, GgufFile, GgufWriter, Value, WriteError};

use crate::common::{array_values, pattern, sample_bytes, scalar_values};

/// Compares values by their bits, so NaN payloads and -0.0 count.
fn same_bits(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(Array::F32(x)), Value::Array(Array::F32(y))) => x
            .iter()
            .map(|v| v.to_bits())
            .eq(y.iter().map(|v| v.to_bits())),
        (Value::Array(Array::F64(x)), Value::Array(Array::F64(y))) => x
            .iter()
            .map(|v| v.to_bits())
            .eq(y.iter().map(|v| v.to_bits())),
        _ => a == b,
    }
}

#[test]
fn every_value_type_round_trips() {
    let f = GgufFile::from_bytes(sample_bytes()).unwrap();
    assert_eq!(f.version(), 3);
    for (key, expected) in scalar_values().into_iter().chain(array_values()) {
        let got = f.get(key).unwrap_or_else(|| panic!("{key} missing"));
        assert!(same_bits(got, &expected), "{key}: {got:?} != {expected:?}");
        assert_eq!(got.value_type(), expected.value_type());
    }
}

#[test]
fn rewriting_a_read_file_reproduces_its_bytes() {
    let bytes = sample_bytes();
    let f = GgufFile::from_bytes(bytes.clone()).unwrap();
    let again = GgufWriter::from_file(&f).unwrap().into_bytes().unwrap();
    assert_eq!(again, bytes);
}

#[test]
fn every_tensor_type_round_trips_raw_bytes() {
    let mut w = GgufWriter::new();
    let mut expected = Vec::new();
    for (i, &ty) in GgmlType::ALL.iter().enumerate() {
        let dims = [ty.block_size() * 2, 3];
        let n = (ty.row_size(dims[0]).unwrap() * 3) as usize;
        let data = pattern(n, i as u8);
        let name = format!("t.{}", ty.name());
        w.add_raw(&name, &dims, ty, data.clone()).unwrap();
        expected.push((name, ty, dims, data));
    }
    let f = GgufFile::from_bytes(w.into_bytes().unwrap()).unwrap();
    assert_eq!(f.tensors().len(), GgmlType::ALL.len());
    for (name, ty, dims, data) in expected {
        let t = f.tensor(&name).unwrap();
        assert_eq!(t.info().ggml_type(), ty);
        assert_eq!(t.info().dims(), dims);
        assert_eq!(t.data(), data.as_slice(), "{name}");
        assert_eq!(t.info().offset() % 32, 0);
    }
}

#[test]
fn float_tensors_convert_back() {
    let values = [0.0, -0.0, 1.0, -2.5, 65504.0, 1e-7, f32::INFINITY, 3.140625];
    let mut w = GgufWriter::new();
    w.add_f32("f32", &[8], &values).unwrap();
    w.add_f16("f16", &[8], &values).unwrap();
    w.add_bf16("bf16", &[8], &values).unwrap();
    w.add_f16_bits("bits", &[2], &[0x3c00, 0x7e00]).unwrap();
    let f = GgufFile::from_bytes(w.into_bytes().unwrap()).unwrap();
    let f32s = f.tensor("f32").unwrap().to_f32_vec().unwrap();
    assert!(
        f32s.iter()
            .zip(&values)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
    let f16s = f.tensor("f16").unwrap().to_f32_vec().unwrap();
    let expect16: Vec<f32> = values
        .iter()
        .map(|&v| half::f16::from_f32(v).to_f32())
        .collect();
    assert_eq!(f16s, expect16);
    let bf16s = f.tensor("bf16").unwrap().to_f32_vec().unwrap();
    let expect_bf: Vec<f32> = values
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_f32())
        .collect();
    assert_eq!(bf16s, expect_bf);
    let bits = f.tensor("bits").unwrap().to_f32_vec().unwrap();
    assert_eq!(bits[0], 1.0);
    assert!(bits[1].is_nan());
}

#[test]
fn alignment_key_sets_layout() {
    for align in [1u32, 8, 64, 4096] {
        let mut w = GgufWriter::new();
        w.set("general.alignment", align).unwrap();
        w.add_f32("a", &[3], &[1.0, 2.0, 3.0]).unwrap();
        w.add_f32("b", &[1], &[4.0]).unwrap();
        let bytes = w.into_bytes().unwrap();
        let f = GgufFile::from_bytes(bytes).unwrap();
        assert_eq!(f.alignment(), align);
        assert_eq!(f.data_offset() % u64::from(align), 0);
        for t in f.tensors() {
            assert_eq!(t.offset() % u64::from(align), 0);
        }
        assert_eq!(f.tensor("b").unwrap().to_f32_vec().unwrap(), [4.0]);
    }
}

#[test]
fn deferred_tensor_streams_its_data() {
    let mut w = GgufWriter::new();
    w.add_deferred(
        "big",
        &[256],
        GgmlType::F32,
        Box::new(|out| {
            for i in 0..256 {
                out.write_all(&(i as f32).to_le_bytes())?;
            }
            Ok(())
        }),
    )
    .unwrap();
    let f = GgufFile::from_bytes(w.into_bytes().unwrap()).unwrap();
    let v = f.tensor("big").unwrap().to_f32_vec().unwrap();
    assert_eq!(v[255], 255.0);
}

#[test]
fn writer_rejects_what_readers_reject() {
    let mut w = GgufWriter::new();
    w.set("k", 1u32).unwrap();
    assert!(matches!(
        w.set("k", 2u32),
        Err(WriteError::DuplicateKey { .. })
    ));
    for bad in [Value::U32(0), Value::U32(3), Value::U64(32)] {
        assert!(matches!(
            w.set("general.alignment", bad),
            Err(WriteError::BadAlignment { .. })
        ));
    }
    w.add_f32("t", &[1], &[0.0]).unwrap();
    assert!(matches!(
        w.add_f32("t", &[1], &[0.0]),
        Err(WriteError::DuplicateTensor { .. })
    ));
    let e = w
        .add_raw("q", &[100], GgmlType::Q4_K, vec![0; 144])
        .unwrap_err();
    assert!(matches!(e, WriteError::BadShape { .. }), "{e}");
    assert!(e.to_string().contains("'q'"));
    assert!(matches!(
        w.add_f32("short", &[4], &[1.0]),
        Err(WriteError::DataSize {
            expected: 16,
            actual: 4,
            ..
        })
    ));
    assert!(matches!(
        w.add_f32("dims5", &[1, 1, 1, 1, 1], &[1.0]),
        Err(WriteError::BadShape { .. })
    ));
    let mut deep = Array::U8(vec![]);
    for _ in 0..acap_gguf::MAX_ARRAY_DEPTH {
        deep = Array::Array(vec![deep]);
    }
    assert!(matches!(
        w.set("deep", deep),
        Err(WriteError::NestingTooDeep { .. })
    ));

    let mut w = GgufWriter::new();
    w.add_deferred(
        "d",
        &[4],
        GgmlType::F32,
        Box::new(|out| out.write_all(&[0; 12])),
    )
    .unwrap();
    assert!(matches!(
        w.into_bytes(),
        Err(WriteError::DataSize {
            expected: 16,
            actual: 12,
            ..
        })
    ));
}

#[test]
fn deepest_allowed_nesting_round_trips() {
    let mut deep = Array::U8(vec![9]);
    for _ in 1..acap_gguf::MAX_ARRAY_DEPTH {
        deep = Array::Array(vec![deep]);
    }
    let mut w = GgufWriter::new();
    w.set("deep", deep.clone()).unwrap();
    let f = GgufFile::from_bytes(w.into_bytes().unwrap()).unwrap();
    assert_eq!(f.get_array("deep").unwrap(), &deep);
}

#[test]
fn write_file_is_atomic_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.gguf");
    let mut w = GgufWriter::new();
    w.set("general.name", "x").unwrap();
    w.add_f32("t", &[2], &[1.0, 2.0]).unwrap();
    let n = w.write_file(&path).unwrap();
    assert_eq!(n, std::fs::metadata(&path).unwrap().len());
    assert_eq!(
        GgufFile::open(&path)
            .unwrap()
            .get_str("general.name")
            .unwrap(),
        "x"
    );

    // A failing deferred tensor leaves neither a partial file nor a temporary behind.
    let bad_path = dir.path().join("bad.gguf");
    let mut w = GgufWriter::new();
    w.add_deferred(
        "d",
        &[4],
        GgmlType::F32,
        Box::new(|out| out.write_all(&[0; 4])),
    )
    .unwrap();
    assert!(w.write_file(&bad_path).is_err());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only out.gguf remains: {left:?}");

    let e = GgufWriter::new()
        .write_file(dir.path().join("no/such/dir/x.gguf"))
        .unwrap_err();
    assert!(e.to_string().contains("x.gguf"), "{e}");
}
