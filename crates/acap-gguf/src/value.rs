//! Metadata values. Arrays are typed vectors, so an array of a million `u8` costs a million
//! bytes, not a million enum values.

use crate::types::ValueType;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `UINT8`
    U8(u8),
    /// `INT8`
    I8(i8),
    /// `UINT16`
    U16(u16),
    /// `INT16`
    I16(i16),
    /// `UINT32`
    U32(u32),
    /// `INT32`
    I32(i32),
    /// `FLOAT32`
    F32(f32),
    /// `BOOL`
    Bool(bool),
    /// `STRING`
    String(String),
    /// `ARRAY`
    Array(Array),
    /// `UINT64`
    U64(u64),
    /// `INT64`
    I64(i64),
    /// `FLOAT64`
    F64(f64),
}

/// An array value: every element has the same type. Nested arrays may differ from each other.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    /// `ARRAY[UINT8]`
    U8(Vec<u8>),
    /// `ARRAY[INT8]`
    I8(Vec<i8>),
    /// `ARRAY[UINT16]`
    U16(Vec<u16>),
    /// `ARRAY[INT16]`
    I16(Vec<i16>),
    /// `ARRAY[UINT32]`
    U32(Vec<u32>),
    /// `ARRAY[INT32]`
    I32(Vec<i32>),
    /// `ARRAY[FLOAT32]`
    F32(Vec<f32>),
    /// `ARRAY[BOOL]`
    Bool(Vec<bool>),
    /// `ARRAY[STRING]`
    String(Vec<String>),
    /// `ARRAY[ARRAY]`: each element is an array of its own type.
    Array(Vec<Array>),
    /// `ARRAY[UINT64]`
    U64(Vec<u64>),
    /// `ARRAY[INT64]`
    I64(Vec<i64>),
    /// `ARRAY[FLOAT64]`
    F64(Vec<f64>),
}

/// Generates, for each scalar variant, `Value::as_x`, the `From` conversion, and for each array
/// variant `Array::as_x_slice` and `From<Vec<_>>`.
macro_rules! value_accessors {
    ($($variant:ident, $t:ty, $as_fn:ident, $slice_fn:ident;)*) => {
        impl Value {
            $(
                #[doc = concat!("The value if it is a `", stringify!($variant), "`.")]
                pub fn $as_fn(&self) -> Option<$t> {
                    match self {
                        Self::$variant(v) => Some(*v),
                        _ => None,
                    }
                }
            )*
        }

        impl Array {
            $(
                #[doc = concat!("The elements if this is an array of `", stringify!($variant), "`.")]
                pub fn $slice_fn(&self) -> Option<&[$t]> {
                    match self {
                        Self::$variant(v) => Some(v),
                        _ => None,
                    }
                }
            )*
        }

        $(
            impl From<$t> for Value {
                fn from(v: $t) -> Self {
                    Self::$variant(v)
                }
            }

            impl From<Vec<$t>> for Array {
                fn from(v: Vec<$t>) -> Self {
                    Self::$variant(v)
                }
            }

            impl From<Vec<$t>> for Value {
                fn from(v: Vec<$t>) -> Self {
                    Self::Array(Array::$variant(v))
                }
            }
        )*
    };
}

value_accessors! {
    U8, u8, as_u8, as_u8_slice;
    I8, i8, as_i8, as_i8_slice;
    U16, u16, as_u16, as_u16_slice;
    I16, i16, as_i16, as_i16_slice;
    U32, u32, as_u32, as_u32_slice;
    I32, i32, as_i32, as_i32_slice;
    F32, f32, as_f32, as_f32_slice;
    Bool, bool, as_bool, as_bool_slice;
    U64, u64, as_u64, as_u64_slice;
    I64, i64, as_i64, as_i64_slice;
    F64, f64, as_f64, as_f64_slice;
}

impl Value {
    /// The value's type code.
    pub fn value_type(&self) -> ValueType {
        match self {
            Self::U8(_) => ValueType::U8,
            Self::I8(_) => ValueType::I8,
            Self::U16(_) => ValueType::U16,
            Self::I16(_) => ValueType::I16,
            Self::U32(_) => ValueType::U32,
            Self::I32(_) => ValueType::I32,
            Self::F32(_) => ValueType::F32,
            Self::Bool(_) => ValueType::Bool,
            Self::String(_) => ValueType::String,
            Self::Array(_) => ValueType::Array,
            Self::U64(_) => ValueType::U64,
            Self::I64(_) => ValueType::I64,
            Self::F64(_) => ValueType::F64,
        }
    }

    /// A readable type name: `UINT32`, `ARRAY[STRING]`, `ARRAY[ARRAY]`.
    pub fn type_name(&self) -> String {
        match self {
            Self::Array(a) => format!("ARRAY[{}]", a.element_type()),
            other => other.value_type().name().to_owned(),
        }
    }

    /// The string if this is a `STRING`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array if this is an `ARRAY`.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Any integer value that is non-negative, widened to `u64` (GGUF writers disagree on the
    /// width they use for counts such as `context_length`).
    pub fn to_u64_lossless(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

impl Array {
    /// The type of the elements.
    pub fn element_type(&self) -> ValueType {
        match self {
            Self::U8(_) => ValueType::U8,
            Self::I8(_) => ValueType::I8,
            Self::U16(_) => ValueType::U16,
            Self::I16(_) => ValueType::I16,
            Self::U32(_) => ValueType::U32,
            Self::I32(_) => ValueType::I32,
            Self::F32(_) => ValueType::F32,
            Self::Bool(_) => ValueType::Bool,
            Self::String(_) => ValueType::String,
            Self::Array(_) => ValueType::Array,
            Self::U64(_) => ValueType::U64,
            Self::I64(_) => ValueType::I64,
            Self::F64(_) => ValueType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::U16(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.len(),
            Self::Array(v) => v.len(),
            Self::U64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::F64(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements if this is an array of strings.
    pub fn as_strings(&self) -> Option<&[String]> {
        match self {
            Self::String(v) => Some(v),
            _ => None,
        }
    }

    /// The elements if this is an array of arrays.
    pub fn as_arrays(&self) -> Option<&[Array]> {
        match self {
            Self::Array(v) => Some(v),
            _ => None,
        }
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::String(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::String(v.to_owned())
    }
}

impl From<Array> for Value {
    fn from(v: Array) -> Self {
        Self::Array(v)
    }
}

impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Self {
        Self::Array(Array::String(v))
    }
}

impl From<Vec<Array>> for Value {
    fn from(v: Vec<Array>) -> Self {
        Self::Array(Array::Array(v))
    }
}
