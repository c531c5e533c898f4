//! Native GGUF reading and writing, with no llama.cpp dependency.
//!
//! * [`GgufFile`] parses GGUF v2 and v3: every metadata value type (including arrays of strings
//!   and nested arrays), tensor infos, `general.alignment` and the data section. Opened from a
//!   path, the file is memory-mapped and tensor data is borrowed without copying.
//! * [`GgufWriter`] writes GGUF v3 that reads back bit for bit.
//!
//! Input is treated as hostile: every count, length and offset is checked against the file
//! size before anything is allocated or read, so malformed files give an error that says what
//! is wrong and where, never a panic or a huge allocation.
//!
//! ```
//! use acap_gguf::{GgufFile, GgufWriter};
//!
//! let mut w = GgufWriter::new();
//! w.set("general.name", "demo")?;
//! w.add_f32("direction.1", &[4], &[1.0, 0.0, 0.0, 0.0])?;
//! let file = GgufFile::from_bytes(w.into_bytes()?)?;
//! assert_eq!(file.get_str("general.name")?, "demo");
//! assert_eq!(file.tensor("direction.1")?.to_f32_vec()?, [1.0, 0.0, 0.0, 0.0]);
//! # Ok::<(), acap_gguf::Error>(())
//! ```

mod convert;
mod cursor;
mod dump;
mod error;
mod file;
mod reader;
mod types;
mod value;
mod writer;

pub use convert::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};
pub use dump::dump;
pub use error::{Error, MetadataError, ParseError, ReadError, TensorError, WriteError};
pub use file::{GgufFile, TensorInfo, TensorView};
pub use types::{GgmlType, ValueType};
pub use value::{Array, Value};
pub use writer::{DeferredData, GgufWriter};

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u32 = 32;

/// Most dimensions a tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// Deepest nesting of arrays of arrays accepted, so hostile input cannot exhaust the stack.
pub const MAX_ARRAY_DEPTH: usize = 16;
