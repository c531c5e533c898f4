//! An opened GGUF file: parsed metadata and tensor infos over zero-copy tensor data.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use byteorder::{ByteOrder, LittleEndian};
use memmap2::Mmap;

use crate::convert::{bf16_to_f32, f16_to_f32};
use crate::error::{MetadataError, ParseError, ReadError, TensorError};
use crate::reader;
use crate::types::GgmlType;
use crate::value::{Array, Value};

/// Where the bytes live: a read-only memory map of a file, or memory the caller handed over.
enum Backing {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Mapped(m) => m,
            Self::Owned(v) => v,
        }
    }
}

/// Description of one tensor: name, shape, type and where its data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub(crate) name: String,
    pub(crate) dims: Vec<u64>,
    pub(crate) ty: GgmlType,
    pub(crate) offset: u64,
    pub(crate) n_bytes: u64,
    pub(crate) info_offset: u64,
}

impl TensorInfo {
    /// The tensor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Dimensions, innermost first (`ne[0]` is the row length), as stored in the file.
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// The ggml type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ty
    }

    /// Offset of the data relative to the start of the data section.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Size of the data in bytes.
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }

    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        // The reader checked that this product fits in i64.
        self.dims.iter().product()
    }
}

/// A parsed GGUF file (v2 or v3). Opened from a path it is memory-mapped, and tensor data is
/// borrowed from the map without copying.
pub struct GgufFile {
    backing: Backing,
    path: Option<PathBuf>,
    version: u32,
    alignment: u32,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Opens and parses a GGUF file, memory-mapping it read-only.
    ///
    /// Only the header region is read; tensor data pages are touched when asked for. The file
    /// must not be modified while the returned value is alive (the same contract as llama.cpp's
    /// own memory-mapped loading).
    ///
    /// # Errors
    /// See [`ReadError`]: each variant says what was wrong.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ReadError> {
        let path = path.as_ref();
        let io_err = |source| ReadError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let backing = if len == 0 {
            // mmap rejects empty files; parsing still reports what is missing.
            Backing::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only and private to this value. Its soundness relies on
            // no one truncating or rewriting the file while it is mapped, which is the documented
            // contract of `open` (and of every mmap-based GGUF loader, llama.cpp included).
            Backing::Mapped(unsafe { Mmap::map(&file) }.map_err(io_err)?)
        };
        Self::from_backing(backing, Some(path.to_owned())).map_err(|source| ReadError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses a GGUF file held in memory.
    ///
    /// # Errors
    /// See [`ParseError`]: each variant says what was wrong.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, ParseError> {
        Self::from_backing(Backing::Owned(bytes), None)
    }

    fn from_backing(backing: Backing, path: Option<PathBuf>) -> Result<Self, ParseError> {
        let parsed = reader::parse(backing.bytes())?;
        let key_index = index(parsed.metadata.iter().map(|(k, _)| k));
        let tensor_index = index(parsed.tensors.iter().map(|t| &t.name));
        Ok(Self {
            backing,
            path,
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            metadata: parsed.metadata,
            key_index,
            tensors: parsed.tensors,
            tensor_index,
        })
    }

    /// The path this file was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Bytes after the end of the last tensor's data (rounded up to the alignment, the
    /// padding writers add): 0 for a well-formed file. More means data no tensor describes,
    /// such as a file whose tensor count was lowered or whose last tensor was retyped smaller.
    pub fn trailing_bytes(&self) -> u64 {
        let align = u64::from(self.alignment);
        let end = self
            .tensors
            .iter()
            .map(|t| self.data_offset + t.offset() + t.n_bytes())
            .max()
            .map_or(self.data_offset, |e| e.next_multiple_of(align));
        self.file_len().saturating_sub(end)
    }

    /// The data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u32 {
        self.alignment
    }

    /// Absolute byte offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Size of the whole file in bytes.
    pub fn file_len(&self) -> u64 {
        self.backing.bytes().len() as u64
    }

    /// All metadata entries in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// The value of `key`, or [`MetadataError::Missing`].
    ///
    /// # Errors
    /// See [`MetadataError`]: each variant says what was wrong.
    pub fn require(&self, key: &str) -> Result<&Value, MetadataError> {
        self.get(key).ok_or_else(|| MetadataError::Missing {
            key: key.to_owned(),
        })
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        extract: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<T, MetadataError> {
        let value = self.require(key)?;
        extract(value).ok_or_else(|| MetadataError::mismatch(key, expected, value.type_name()))
    }

    /// The string value of `key`.
    ///
    /// # Errors
    /// See [`MetadataError`]: each variant says what was wrong.
    pub fn get_str(&self, key: &str) -> Result<&str, MetadataError> {
        self.typed(key, "STRING", Value::as_str)
    }

    /// The array value of `key`, of any element type.
    ///
    /// # Errors
    /// See [`MetadataError`]: each variant says what was wrong.
    pub fn get_array(&self, key: &str) -> Result<&Array, MetadataError> {
        self.typed(key, "ARRAY", Value::as_array)
    }

    /// The string array value of `key`.
    ///
    /// # Errors
    /// See [`MetadataError`]: each variant says what was wrong.
    pub fn get_str_array(&self, key: &str) -> Result<&[String], MetadataError> {
        self.typed(key, "ARRAY[STRING]", |v| v.as_array()?.as_strings())
    }

    /// Any non-negative integer value of `key`, widened to `u64`.
    ///
    /// # Errors
    /// See [`MetadataError`]: each variant says what was wrong.
    pub fn get_uint(&self, key: &str) -> Result<u64, MetadataError> {
        self.typed(key, "an unsigned integer", Value::to_u64_lossless)
    }

    /// All tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`.
    ///
    /// # Errors
    /// See [`TensorError`]: each variant says what was wrong.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>, TensorError> {
        let &i = self
            .tensor_index
            .get(name)
            .ok_or_else(|| TensorError::NotFound {
                name: name.to_owned(),
            })?;
        Ok(self.view(&self.tensors[i]))
    }

    /// A view of one of this file's tensors (from [`GgufFile::tensors`]).
    pub fn view<'a>(&'a self, info: &'a TensorInfo) -> TensorView<'a> {
        // The reader checked data_offset + offset + n_bytes <= file length for every tensor.
        let start = (self.data_offset + info.offset) as usize;
        let data = &self.backing.bytes()[start..start + info.n_bytes as usize];
        TensorView { info, data }
    }
}

fn index<'a>(names: impl Iterator<Item = &'a String>) -> HashMap<String, usize> {
    names.enumerate().map(|(i, n)| (n.clone(), i)).collect()
}

/// Generates typed scalar and array getters from one list.
macro_rules! typed_getters {
    ($($get:ident, $get_arr:ident, $as:ident, $as_slice:ident, $t:ty, $name:literal;)*) => {
        impl GgufFile {
            $(
                ///
                /// # Errors
                /// See [`MetadataError`]: each variant says what was wrong.
                #[doc = concat!("The `", $name, "` value of `key`.")]
                pub fn $get(&self, key: &str) -> Result<$t, MetadataError> {
                    self.typed(key, $name, Value::$as)
                }

                ///
                /// # Errors
                /// See [`MetadataError`]: each variant says what was wrong.
                #[doc = concat!("The `ARRAY[", $name, "]` value of `key`.")]
                pub fn $get_arr(&self, key: &str) -> Result<&[$t], MetadataError> {
                    self.typed(key, concat!("ARRAY[", $name, "]"), |v| v.as_array()?.$as_slice())
                }
            )*
        }
    };
}

typed_getters! {
    get_u8, get_u8_array, as_u8, as_u8_slice, u8, "UINT8";
    get_i8, get_i8_array, as_i8, as_i8_slice, i8, "INT8";
    get_u16, get_u16_array, as_u16, as_u16_slice, u16, "UINT16";
    get_i16, get_i16_array, as_i16, as_i16_slice, i16, "INT16";
    get_u32, get_u32_array, as_u32, as_u32_slice, u32, "UINT32";
    get_i32, get_i32_array, as_i32, as_i32_slice, i32, "INT32";
    get_f32, get_f32_array, as_f32, as_f32_slice, f32, "FLOAT32";
    get_bool, get_bool_array, as_bool, as_bool_slice, bool, "BOOL";
    get_u64, get_u64_array, as_u64, as_u64_slice, u64, "UINT64";
    get_i64, get_i64_array, as_i64, as_i64_slice, i64, "INT64";
    get_f64, get_f64_array, as_f64, as_f64_slice, f64, "FLOAT64";
}

/// A tensor's info together with its data, borrowed from the file.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    info: &'a TensorInfo,
    data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// The tensor's info.
    pub fn info(&self) -> &'a TensorInfo {
        self.info
    }

    /// The raw data bytes (zero-copy from the memory map).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The data as `&[f32]` without copying, when the tensor is F32, the host is little-endian
    /// and the bytes happen to be 4-byte aligned in memory (always so for a mapped file with
    /// the default alignment).
    pub fn as_f32_slice(&self) -> Option<&'a [f32]> {
        if self.info.ty != GgmlType::F32 || cfg!(target_endian = "big") {
            return None;
        }
        // SAFETY: every bit pattern is a valid f32, and `align_to` only puts correctly
        // aligned, whole elements in the middle slice; we accept it only when nothing was
        // split off, so it covers exactly the tensor's bytes.
        let (head, body, tail) = unsafe { self.data.align_to::<f32>() };
        (head.is_empty() && tail.is_empty()).then_some(body)
    }

    /// Converts F32, F16 or BF16 data to `f32` values.
    ///
    /// # Errors
    /// See [`TensorError`]: each variant says what was wrong.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>, TensorError> {
        let d = self.data;
        Ok(match self.info.ty {
            GgmlType::F32 => {
                let mut out = vec![0.0; d.len() / 4];
                LittleEndian::read_f32_into(d, &mut out);
                out
            }
            GgmlType::F16 => d
                .chunks_exact(2)
                .map(|c| f16_to_f32(LittleEndian::read_u16(c)))
                .collect(),
            GgmlType::BF16 => d
                .chunks_exact(2)
                .map(|c| bf16_to_f32(LittleEndian::read_u16(c)))
                .collect(),
            ty => {
                return Err(TensorError::NotConvertible {
                    name: self.info.name.clone(),
                    ty,
                });
            }
        })
    }
}
