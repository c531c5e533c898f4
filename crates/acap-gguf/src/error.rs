//! One error type per operation (parse, open, metadata access, tensor access, write), under the
//! umbrella [`Error`].

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::types::GgmlType;

/// Why bytes are not a valid GGUF file. Every variant says where: a byte offset, a key or a
/// tensor name.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: bad magic {found:02x?} at byte 0 (expected \"GGUF\")")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// A version other than 2 or 3.
    #[error("unsupported GGUF version {version} at byte 4 (supported: 2 and 3)")]
    UnsupportedVersion {
        /// The version found.
        version: u32,
    },
    /// The version reads as 2 or 3 only when byte-swapped: a big-endian file.
    #[error("big-endian GGUF (version {version}) is not supported")]
    BigEndian {
        /// The byte-swapped version.
        version: u32,
    },
    /// The file ends before a field is complete.
    #[error(
        "unexpected end of file at byte {offset} reading {what}: need {needed} bytes, {available} left"
    )]
    Truncated {
        /// Where the field starts.
        offset: u64,
        /// What was being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// A count or length claims more elements than the rest of the file can hold.
    #[error(
        "{what} at byte {offset} is {count}, which needs at least {needed} bytes but only {available} are left"
    )]
    CountTooLarge {
        /// Where the count is stored.
        offset: u64,
        /// What is counted.
        what: &'static str,
        /// The count found.
        count: u64,
        /// Smallest number of bytes that many elements take (saturated).
        needed: u64,
        /// Bytes left in the file after the count.
        available: u64,
    },
    /// A string is not valid UTF-8.
    #[error("{what} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Where the string's bytes start.
        offset: u64,
        /// Which string.
        what: &'static str,
    },
    /// An unknown metadata value type code.
    #[error("unknown value type code {code} at byte {offset}")]
    BadValueType {
        /// Where the code is stored.
        offset: u64,
        /// The code found.
        code: u32,
    },
    /// A bool byte other than 0 or 1.
    #[error("invalid bool byte {value:#04x} at byte {offset} (expected 0 or 1)")]
    BadBool {
        /// Where the byte is.
        offset: u64,
        /// The byte found.
        value: u8,
    },
    /// Arrays of arrays nested beyond [`crate::MAX_ARRAY_DEPTH`].
    #[error("arrays nested deeper than {max} levels at byte {offset}")]
    NestingTooDeep {
        /// Where the too-deep array starts.
        offset: u64,
        /// The limit.
        max: usize,
    },
    /// The same key appears twice.
    #[error("duplicate metadata key '{key}' at byte {offset}")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Where the second occurrence starts.
        offset: u64,
    },
    /// `general.alignment` is not a UINT32.
    #[error("general.alignment must be UINT32, found {found}")]
    AlignmentType {
        /// The type found.
        found: String,
    },
    /// `general.alignment` is 0 or not a power of two.
    #[error("general.alignment = {value} is not a power of two")]
    BadAlignment {
        /// The value found.
        value: u32,
    },
    /// A tensor with more than 4 dimensions.
    #[error("tensor '{name}' at byte {offset} has {n_dims} dimensions (at most 4)")]
    TooManyDims {
        /// The tensor.
        name: String,
        /// Where its info starts.
        offset: u64,
        /// Dimensions claimed.
        n_dims: u32,
    },
    /// An unknown or removed ggml type code.
    #[error("tensor '{name}' at byte {offset} has unknown ggml type code {code}")]
    BadTensorType {
        /// The tensor.
        name: String,
        /// Where the code is stored.
        offset: u64,
        /// The code found.
        code: u32,
    },
    /// A shape ggml cannot store (overflow, or a row that is not a whole number of blocks).
    #[error("tensor '{name}' has shape {dims:?} which is invalid for type {ty}: {reason}")]
    BadShape {
        /// The tensor.
        name: String,
        /// Its dimensions, innermost first.
        dims: Vec<u64>,
        /// Its type.
        ty: GgmlType,
        /// What is wrong.
        reason: &'static str,
    },
    /// Two tensors with the same name.
    #[error("duplicate tensor name '{name}' at byte {offset}")]
    DuplicateTensor {
        /// The name.
        name: String,
        /// Where the second info starts.
        offset: u64,
    },
    /// A tensor's data offset is not a multiple of the alignment.
    #[error("tensor '{name}': data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        /// The tensor.
        name: String,
        /// Its offset relative to the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u32,
    },
    /// A tensor's data does not lie inside the file.
    #[error("tensor '{name}': data bytes {start}..{end} lie outside the file ({file_len} bytes)")]
    TensorOutOfBounds {
        /// The tensor.
        name: String,
        /// Absolute start (saturated).
        start: u64,
        /// Absolute end (saturated).
        end: u64,
        /// File size.
        file_len: u64,
    },
    /// Two tensors share data bytes.
    #[error("tensors '{first}' and '{second}' overlap in the data section")]
    TensorOverlap {
        /// The tensor whose data starts first.
        first: String,
        /// The tensor that starts inside it.
        second: String,
    },
    /// Context: the error happened inside the value of this key.
    #[error("in metadata key '{key}': {source}")]
    InKey {
        /// The key being read.
        key: String,
        /// What went wrong.
        source: Box<ParseError>,
    },
    /// Context: the error happened inside this tensor's info.
    #[error("in tensor info '{name}': {source}")]
    InTensor {
        /// The tensor being read.
        name: String,
        /// What went wrong.
        source: Box<ParseError>,
    },
}

impl ParseError {
    /// The innermost error, without the key/tensor context wrappers.
    pub fn root(&self) -> &ParseError {
        match self {
            Self::InKey { source, .. } | Self::InTensor { source, .. } => source.root(),
            other => other,
        }
    }
}

/// Why a GGUF file could not be opened.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Opening, sizing or mapping the file failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is not valid GGUF.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: ParseError,
    },
}

/// Why a typed metadata lookup failed.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataError {
    /// The key is absent.
    #[error("metadata key '{key}' is missing")]
    Missing {
        /// The key.
        key: String,
    },
    /// The key holds another type.
    #[error("metadata key '{key}' has type {found}, expected {expected}")]
    TypeMismatch {
        /// The key.
        key: String,
        /// The type asked for.
        expected: &'static str,
        /// The type found.
        found: String,
    },
}

/// Why a tensor could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TensorError {
    /// No tensor of that name.
    #[error("tensor '{name}' not found")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// The tensor's type cannot be converted to f32 by this crate.
    #[error("tensor '{name}' has type {ty}; only F32, F16 and BF16 convert to f32")]
    NotConvertible {
        /// The tensor.
        name: String,
        /// Its type.
        ty: GgmlType,
    },
}

/// Why a GGUF file could not be written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WriteError {
    /// A key was set twice.
    #[error("duplicate metadata key '{key}'")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A tensor name was used twice.
    #[error("duplicate tensor name '{name}'")]
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// `general.alignment` is not a UINT32 power of two.
    #[error("general.alignment must be a UINT32 power of two, got {value}")]
    BadAlignment {
        /// The value given, printed.
        value: String,
    },
    /// An array value nests arrays deeper than readers accept.
    #[error("metadata key '{key}': arrays nested deeper than {max} levels")]
    NestingTooDeep {
        /// The key.
        key: String,
        /// The limit.
        max: usize,
    },
    /// The shape cannot be stored with that type.
    #[error("tensor '{name}': shape {dims:?} is invalid for type {ty}: {reason}")]
    BadShape {
        /// The tensor.
        name: String,
        /// Its dimensions, innermost first.
        dims: Vec<u64>,
        /// Its type.
        ty: GgmlType,
        /// What is wrong.
        reason: &'static str,
    },
    /// The data given does not match the shape.
    #[error("tensor '{name}': shape and type need {expected} bytes of data, got {actual}")]
    DataSize {
        /// The tensor.
        name: String,
        /// Bytes the shape needs.
        expected: u64,
        /// Bytes given (or written by a deferred writer).
        actual: u64,
    },
    /// Writing failed.
    #[error("cannot write {}: {source}", path.as_ref().map_or("GGUF output".into(), |p| p.display().to_string()))]
    Io {
        /// The file, when writing to a path.
        path: Option<PathBuf>,
        /// The OS error.
        source: io::Error,
    },
}

/// Any error of this crate.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`ParseError`].
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// See [`ReadError`].
    #[error(transparent)]
    Read(#[from] ReadError),
    /// See [`MetadataError`].
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// See [`TensorError`].
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// See [`WriteError`].
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl MetadataError {
    pub(crate) fn mismatch(key: &str, expected: &'static str, found: String) -> Self {
        Self::TypeMismatch {
            key: key.to_owned(),
            expected,
            found,
        }
    }
}
