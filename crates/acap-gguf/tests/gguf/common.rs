//! Helpers to build GGUF bytes by hand (for golden and hostile inputs) and a rich sample file.

use acap_gguf::{Array, GgmlType, GgufWriter, Value};

/// Appends little-endian GGUF fields to a byte vector.
#[derive(Default, Clone)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Magic, version, tensor count, key count.
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        Self::new()
            .raw(b"GGUF")
            .u32(version)
            .u64(n_tensors)
            .u64(n_kv)
    }

    pub fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }

    pub fn u8(self, v: u8) -> Self {
        self.raw(&[v])
    }

    pub fn u32(self, v: u32) -> Self {
        self.raw(&v.to_le_bytes())
    }

    pub fn u64(self, v: u64) -> Self {
        self.raw(&v.to_le_bytes())
    }

    pub fn f32(self, v: f32) -> Self {
        self.raw(&v.to_le_bytes())
    }

    /// A GGUF string: u64 length + bytes.
    pub fn str(self, s: &[u8]) -> Self {
        self.u64(s.len() as u64).raw(s)
    }

    /// A key and a typed value header (the caller appends the value).
    pub fn kv(self, key: &str, ty: u32) -> Self {
        self.str(key.as_bytes()).u32(ty)
    }

    /// A tensor info.
    pub fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let mut b = self.str(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            b = b.u64(d);
        }
        b.u32(ty).u64(offset)
    }

    /// Zero bytes up to the next multiple of `alignment`.
    pub fn pad(self, alignment: usize) -> Self {
        let n = self.0.len().next_multiple_of(alignment) - self.0.len();
        self.raw(&vec![0; n])
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Bytes of `n` elements of `ty` laid out as `dims`, filled with a deterministic pattern.
pub fn pattern(n_bytes: usize, seed: u8) -> Vec<u8> {
    (0..n_bytes)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// One value of every scalar type, edge values included.
pub fn scalar_values() -> Vec<(&'static str, Value)> {
    vec![
        ("u8.max", Value::U8(u8::MAX)),
        ("i8.min", Value::I8(i8::MIN)),
        ("u16.max", Value::U16(u16::MAX)),
        ("i16.min", Value::I16(i16::MIN)),
        ("u32.max", Value::U32(u32::MAX)),
        ("i32.min", Value::I32(i32::MIN)),
        ("f32.neg_zero", Value::F32(-0.0)),
        ("f32.nan_payload", Value::F32(f32::from_bits(0x7fc0_1234))),
        ("f32.inf", Value::F32(f32::NEG_INFINITY)),
        ("f32.tiny", Value::F32(f32::from_bits(1))),
        ("bool.true", Value::Bool(true)),
        ("bool.false", Value::Bool(false)),
        ("string.empty", Value::String(String::new())),
        ("string.unicode", Value::String("héllo ✓ 🦀\0nul".into())),
        ("u64.max", Value::U64(u64::MAX)),
        ("i64.min", Value::I64(i64::MIN)),
        ("f64.pi", Value::F64(std::f64::consts::PI)),
        (
            "f64.nan_payload",
            Value::F64(f64::from_bits(0x7ff8_0000_dead_beef)),
        ),
    ]
}

/// One array of every element type, empty arrays and nested arrays included.
pub fn array_values() -> Vec<(&'static str, Value)> {
    vec![
        ("arr.u8", Array::U8(vec![0, 1, 255]).into()),
        ("arr.i8", Array::I8(vec![-128, 0, 127]).into()),
        ("arr.u16", Array::U16(vec![0, 65535]).into()),
        ("arr.i16", Array::I16(vec![-32768, 32767]).into()),
        ("arr.u32", Array::U32(vec![1, 2, 3]).into()),
        ("arr.i32", Array::I32(vec![-1, i32::MAX]).into()),
        ("arr.f32", Array::F32(vec![0.5, -0.0, f32::INFINITY]).into()),
        ("arr.bool", Array::Bool(vec![true, false, true]).into()),
        (
            "arr.str",
            Array::String(vec!["a".into(), String::new(), "ü".into()]).into(),
        ),
        ("arr.u64", Array::U64(vec![u64::MAX]).into()),
        ("arr.i64", Array::I64(vec![i64::MIN, 0]).into()),
        ("arr.f64", Array::F64(vec![1e300, -1e-300]).into()),
        ("arr.empty_u32", Array::U32(vec![]).into()),
        ("arr.empty_str", Array::String(vec![]).into()),
        (
            "arr.nested",
            Array::Array(vec![
                Array::U32(vec![1, 2]),
                Array::String(vec!["x".into()]),
                Array::Array(vec![Array::F32(vec![]), Array::Bool(vec![true])]),
                Array::I8(vec![]),
            ])
            .into(),
        ),
    ]
}

/// A file with every value type and a few tensors of different types.
pub fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama").unwrap();
    for (k, v) in scalar_values().into_iter().chain(array_values()) {
        w.set(k, v).unwrap();
    }
    w.add_f32(
        "a.f32",
        &[4, 2],
        &[1.0, -2.0, 3.5, 0.0, 1e-3, -1e3, 7.0, 8.0],
    )
    .unwrap();
    w.add_f16("b.f16", &[3], &[1.0, 0.5, -65504.0]).unwrap();
    w.add_raw("c.q8_0", &[32, 2], GgmlType::Q8_0, pattern(68, 7))
        .unwrap();
    w.add_bf16("d.bf16", &[2], &[1.5, -3.0]).unwrap();
    w
}

pub fn sample_bytes() -> Vec<u8> {
    sample_writer().into_bytes().unwrap()
}
