//! Typed accessors: values, missing keys, type mismatches.

use acap_gguf::{GgufFile, MetadataError, TensorError};

use crate::common::sample_bytes;

fn sample() -> GgufFile {
    GgufFile::from_bytes(sample_bytes()).unwrap()
}

#[test]
fn typed_getters_return_values() {
    let f = sample();
    assert_eq!(f.get_u8("u8.max").unwrap(), u8::MAX);
    assert_eq!(f.get_i8("i8.min").unwrap(), i8::MIN);
    assert_eq!(f.get_u16("u16.max").unwrap(), u16::MAX);
    assert_eq!(f.get_i16("i16.min").unwrap(), i16::MIN);
    assert_eq!(f.get_u32("u32.max").unwrap(), u32::MAX);
    assert_eq!(f.get_i32("i32.min").unwrap(), i32::MIN);
    assert_eq!(f.get_f32("f32.inf").unwrap(), f32::NEG_INFINITY);
    assert!(f.get_bool("bool.true").unwrap());
    assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(f.get_u64("u64.max").unwrap(), u64::MAX);
    assert_eq!(f.get_i64("i64.min").unwrap(), i64::MIN);
    assert_eq!(f.get_f64("f64.pi").unwrap(), std::f64::consts::PI);
    assert_eq!(f.get_u32_array("arr.u32").unwrap(), [1, 2, 3]);
    assert_eq!(f.get_bool_array("arr.bool").unwrap(), [true, false, true]);
    assert_eq!(f.get_f64_array("arr.f64").unwrap(), [1e300, -1e-300]);
    assert_eq!(f.get_str_array("arr.str").unwrap(), ["a", "", "ü"]);
    assert_eq!(f.get_array("arr.nested").unwrap().len(), 4);
    assert!(f.get_u32_array("arr.empty_u32").unwrap().is_empty());
    assert_eq!(f.get_uint("u8.max").unwrap(), 255);
    assert_eq!(f.get_uint("u64.max").unwrap(), u64::MAX);
}

#[test]
fn missing_key_is_a_typed_error() {
    let f = sample();
    assert_eq!(
        f.get_u32("no.such.key"),
        Err(MetadataError::Missing {
            key: "no.such.key".into()
        })
    );
    assert!(f.get("no.such.key").is_none());
    let msg = f.get_str("no.such.key").unwrap_err().to_string();
    assert!(msg.contains("no.such.key"), "{msg}");
}

#[test]
fn type_mismatch_names_key_and_both_types() {
    let f = sample();
    let e = f.get_u32("general.architecture").unwrap_err();
    assert_eq!(
        e,
        MetadataError::TypeMismatch {
            key: "general.architecture".into(),
            expected: "UINT32",
            found: "STRING".into()
        }
    );
    assert_eq!(
        f.get_str_array("arr.u32").unwrap_err(),
        MetadataError::TypeMismatch {
            key: "arr.u32".into(),
            expected: "ARRAY[STRING]",
            found: "ARRAY[UINT32]".into()
        }
    );
    assert!(matches!(
        f.get_u64("u32.max"),
        Err(MetadataError::TypeMismatch { .. })
    ));
    assert!(matches!(
        f.get_uint("i8.min"),
        Err(MetadataError::TypeMismatch { .. })
    ));
    assert!(matches!(
        f.get_uint("f32.inf"),
        Err(MetadataError::TypeMismatch { .. })
    ));
}

#[test]
fn tensor_lookup_errors() {
    let f = sample();
    assert_eq!(
        f.tensor("nope").unwrap_err(),
        TensorError::NotFound {
            name: "nope".into()
        }
    );
    let q = f.tensor("c.q8_0").unwrap();
    assert_eq!(q.data().len(), 68);
    let e = q.to_f32_vec().unwrap_err();
    assert!(
        e.to_string().contains("c.q8_0") && e.to_string().contains("Q8_0"),
        "{e}"
    );
}
