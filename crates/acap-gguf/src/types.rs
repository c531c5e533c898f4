//! Type codes of the GGUF format: metadata value types and ggml tensor types.

use std::fmt;

/// The type code of a metadata value (`gguf_type` in ggml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    /// `GGUF_TYPE_UINT8`
    U8 = 0,
    /// `GGUF_TYPE_INT8`
    I8 = 1,
    /// `GGUF_TYPE_UINT16`
    U16 = 2,
    /// `GGUF_TYPE_INT16`
    I16 = 3,
    /// `GGUF_TYPE_UINT32`
    U32 = 4,
    /// `GGUF_TYPE_INT32`
    I32 = 5,
    /// `GGUF_TYPE_FLOAT32`
    F32 = 6,
    /// `GGUF_TYPE_BOOL` (one byte, 0 or 1)
    Bool = 7,
    /// `GGUF_TYPE_STRING` (u64 length + UTF-8 bytes)
    String = 8,
    /// `GGUF_TYPE_ARRAY` (u32 element type + u64 count + elements)
    Array = 9,
    /// `GGUF_TYPE_UINT64`
    U64 = 10,
    /// `GGUF_TYPE_INT64`
    I64 = 11,
    /// `GGUF_TYPE_FLOAT64`
    F64 = 12,
}

impl ValueType {
    /// Every value type, in code order.
    pub const ALL: [ValueType; 13] = [
        Self::U8,
        Self::I8,
        Self::U16,
        Self::I16,
        Self::U32,
        Self::I32,
        Self::F32,
        Self::Bool,
        Self::String,
        Self::Array,
        Self::U64,
        Self::I64,
        Self::F64,
    ];

    /// The type for a code read from a file, or `None` for an unknown code.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// The numeric code stored in files.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The name used by ggml (`UINT32`, `STRING`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::U8 => "UINT8",
            Self::I8 => "INT8",
            Self::U16 => "UINT16",
            Self::I16 => "INT16",
            Self::U32 => "UINT32",
            Self::I32 => "INT32",
            Self::F32 => "FLOAT32",
            Self::Bool => "BOOL",
            Self::String => "STRING",
            Self::Array => "ARRAY",
            Self::U64 => "UINT64",
            Self::I64 => "INT64",
            Self::F64 => "FLOAT64",
        }
    }

    /// The fewest bytes one value of this type occupies in a file. Used to reject counts that
    /// cannot fit in what is left of the file before anything is allocated.
    pub(crate) fn min_encoded_size(self) -> u64 {
        match self {
            Self::U8 | Self::I8 | Self::Bool => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 | Self::String => 8,
            Self::Array => 12,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Declares `GgmlType` from one table so code, name, block size and type size never disagree.
macro_rules! ggml_types {
    ($($variant:ident = $code:literal, $name:literal, $block:literal, $size:literal;)*) => {
        /// A ggml tensor type (`ggml_type`), with the block layout needed to size its data.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        #[allow(non_camel_case_types)]
        pub enum GgmlType {
            $(
                #[doc = concat!("`GGML_TYPE_", $name, "` (code ", stringify!($code), ")")]
                $variant = $code,
            )*
        }

        impl GgmlType {
            /// Every type this crate knows, in code order.
            pub const ALL: &'static [GgmlType] = &[$(Self::$variant),*];

            /// The type for a code read from a file, or `None` for an unknown or removed code.
            pub fn from_code(code: u32) -> Option<Self> {
                match code {
                    $($code => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// The ggml name (`F32`, `Q4_K`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            /// Elements per block (1 for plain types, 32 or 256 for quantised ones).
            pub fn block_size(self) -> u64 {
                match self {
                    $(Self::$variant => $block,)*
                }
            }

            /// Bytes per block.
            pub fn type_size(self) -> u64 {
                match self {
                    $(Self::$variant => $size,)*
                }
            }
        }
    };
}

ggml_types! {
    F32 = 0, "F32", 1, 4;
    F16 = 1, "F16", 1, 2;
    Q4_0 = 2, "Q4_0", 32, 18;
    Q4_1 = 3, "Q4_1", 32, 20;
    Q5_0 = 6, "Q5_0", 32, 22;
    Q5_1 = 7, "Q5_1", 32, 24;
    Q8_0 = 8, "Q8_0", 32, 34;
    Q8_1 = 9, "Q8_1", 32, 36;
    Q2_K = 10, "Q2_K", 256, 84;
    Q3_K = 11, "Q3_K", 256, 110;
    Q4_K = 12, "Q4_K", 256, 144;
    Q5_K = 13, "Q5_K", 256, 176;
    Q6_K = 14, "Q6_K", 256, 210;
    Q8_K = 15, "Q8_K", 256, 292;
    IQ2_XXS = 16, "IQ2_XXS", 256, 66;
    IQ2_XS = 17, "IQ2_XS", 256, 74;
    IQ3_XXS = 18, "IQ3_XXS", 256, 98;
    IQ1_S = 19, "IQ1_S", 256, 50;
    IQ4_NL = 20, "IQ4_NL", 32, 18;
    IQ3_S = 21, "IQ3_S", 256, 110;
    IQ2_S = 22, "IQ2_S", 256, 82;
    IQ4_XS = 23, "IQ4_XS", 256, 136;
    I8 = 24, "I8", 1, 1;
    I16 = 25, "I16", 1, 2;
    I32 = 26, "I32", 1, 4;
    I64 = 27, "I64", 1, 8;
    F64 = 28, "F64", 1, 8;
    IQ1_M = 29, "IQ1_M", 256, 56;
    BF16 = 30, "BF16", 1, 2;
    TQ1_0 = 34, "TQ1_0", 256, 54;
    TQ2_0 = 35, "TQ2_0", 256, 66;
    MXFP4 = 39, "MXFP4", 32, 17;
}

impl GgmlType {
    /// The numeric code stored in files.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Bytes of one row of `n_per_row` elements, or `None` when `n_per_row` is not a whole
    /// number of blocks (ggml cannot store such a row) or the size overflows.
    pub fn row_size(self, n_per_row: u64) -> Option<u64> {
        if n_per_row % self.block_size() != 0 {
            return None;
        }
        (n_per_row / self.block_size()).checked_mul(self.type_size())
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The byte size of a tensor of type `ty` and shape `dims` (innermost first, as in GGUF), or
/// a reason why no such tensor can exist. Shared by the reader and the writer.
pub(crate) fn tensor_nbytes(ty: GgmlType, dims: &[u64]) -> Result<u64, &'static str> {
    if dims.len() > crate::MAX_DIMS {
        return Err("more than 4 dimensions");
    }
    // ggml keeps element counts in int64_t, so each dimension and their product must fit.
    let mut n_elements: u64 = 1;
    for &d in dims {
        if d > i64::MAX as u64 {
            return Err("a dimension exceeds INT64_MAX");
        }
        n_elements = n_elements
            .checked_mul(d)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or("element count overflows INT64")?;
    }
    let n_per_row = dims.first().copied().unwrap_or(1);
    let row = ty
        .row_size(n_per_row)
        .ok_or("the first dimension is not a multiple of the block size")?;
    let n_rows = dims
        .iter()
        .skip(1)
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or("row count overflows")?;
    row.checked_mul(n_rows).ok_or("byte size overflows")
}
