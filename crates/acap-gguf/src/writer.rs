//! Writing GGUF v3: metadata of every type, tensors from f32/f16/bf16 data or raw bytes of any
//! ggml type, laid out as llama.cpp writes them (each tensor padded to the alignment).

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use byteorder::{LittleEndian, WriteBytesExt};

use crate::convert::{f32_to_bf16, f32_to_f16};
use crate::error::WriteError;
use crate::file::GgufFile;
use crate::types::{GgmlType, tensor_nbytes};
use crate::value::{Array, Value};
use crate::{DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH};

/// Writes tensor data straight into the output, for tensors too large to hold in memory.
pub type DeferredData = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()>>;

enum TensorData {
    Bytes(Vec<u8>),
    Deferred(DeferredData),
}

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    n_bytes: u64,
    data: TensorData,
}

/// Builds a GGUF v3 file. Keys and tensors are written in the order they were added.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    keys: HashSet<String>,
    tensors: Vec<PendingTensor>,
    names: HashSet<String>,
}

impl GgufWriter {
    /// An empty file: no metadata, no tensors.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer that reproduces `file`: the same metadata and tensors (data copied).
    ///
    /// # Errors
    /// See [`WriteError`]: each variant says what was wrong.
    pub fn from_file(file: &GgufFile) -> Result<Self, WriteError> {
        let mut w = Self::new();
        for (k, v) in file.metadata() {
            w.set(k.clone(), v.clone())?;
        }
        for info in file.tensors() {
            let data = file.view(info).data().to_vec();
            w.add_raw(info.name(), info.dims(), info.ggml_type(), data)?;
        }
        Ok(w)
    }

    /// Adds a metadata entry. `general.alignment` must be a UINT32 power of two; it sets the
    /// alignment the file is written with.
    ///
    /// # Errors
    /// See [`WriteError`]: each variant says what was wrong.
    pub fn set(
        &mut self,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<(), WriteError> {
        let key = key.into();
        let value = value.into();
        if key == "general.alignment" && !matches!(value, Value::U32(a) if a.is_power_of_two()) {
            return Err(WriteError::BadAlignment {
                value: format!("{value:?}"),
            });
        }
        if let Value::Array(a) = &value {
            if depth(a) > MAX_ARRAY_DEPTH {
                return Err(WriteError::NestingTooDeep {
                    key,
                    max: MAX_ARRAY_DEPTH,
                });
            }
        }
        if !self.keys.insert(key.clone()) {
            return Err(WriteError::DuplicateKey { key });
        }
        self.metadata.push((key, value));
        Ok(())
    }

    /// Adds an F32 tensor. `dims` are innermost first, as in GGUF.
    ///
    /// # Errors
    /// See [`WriteError`]: each variant says what was wrong.
    pub fn add_f32(&mut self, name: &str, dims: &[u64], data: &[f32]) -> Result<(), WriteError> {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_raw(name, dims, GgmlType::F32, bytes)
    }

    /// Adds an F16 tensor, converting `data` with round-to-nearest-even.
    ///
    /// # Errors
    /// See [`WriteError`]: each variant says what was wrong.
    pub fn add_f16(&mut self, name: &str, dims: &[u64], data: &[f32]) -> Result<(), WriteError> {
        let bytes = data
            .iter()
            .flat_map(|&v| f32_to_f16(v).to_le_bytes())
            .collect();
        self.add_raw(name, dims, GgmlType::F16, bytes)
    }

    /// Adds an F16 tensor from raw binary16 bits (no conversion).
    ///
    /// # Errors
    /// See [`WriteError`]: each variant says what was wrong.
    pub fn add_f16_bits(
        &mut self,
        name: &str,
        dims: &[u64],
        bits: &[u16],
    ) -> Result<(), WriteError> {
        let bytes = bits.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_raw(name, dims, GgmlType::F16, bytes)
    }

    /// Adds a BF16 tensor, converting `data` as ggml does.
    ///
    /// # Errors
    /// See [`WriteError`]: each variant says what was wrong.
    pub fn add_bf16(&mut self, name: &str, dims: &[u64], data: &[f32]) -> Result<(), WriteError> {
        let bytes = data
            .iter()
            .flat_map(|&v| f32_to_bf16(v).to_le_bytes())
            .collect();
        self.add_raw(name, dims, GgmlType::BF16, bytes)
    }

    /// Adds a tensor of any ggml type from its raw bytes, which must be exactly the size the
    /// shape needs (rows are whole blocks).
    ///
    /// # Errors
    /// See [`WriteError`]: each variant says what was wrong.
    pub fn add_raw(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<(), WriteError> {
        let n_bytes = self.check_tensor(name, dims, ty)?;
        if data.len() as u64 != n_bytes {
            return Err(WriteError::DataSize {
                name: name.to_owned(),
                expected: n_bytes,
                actual: data.len() as u64,
            });
        }
        self.push(name, dims, ty, n_bytes, TensorData::Bytes(data));
        Ok(())
    }

    /// Adds a tensor whose bytes are produced while the file is written. `write` must write
    /// exactly the shape's byte size; otherwise writing fails with [`WriteError::DataSize`].
    ///
    /// # Errors
    /// See [`WriteError`]: each variant says what was wrong.
    pub fn add_deferred(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        write: DeferredData,
    ) -> Result<(), WriteError> {
        let n_bytes = self.check_tensor(name, dims, ty)?;
        self.push(name, dims, ty, n_bytes, TensorData::Deferred(write));
        Ok(())
    }

    fn check_tensor(&self, name: &str, dims: &[u64], ty: GgmlType) -> Result<u64, WriteError> {
        if self.names.contains(name) {
            return Err(WriteError::DuplicateTensor {
                name: name.to_owned(),
            });
        }
        tensor_nbytes(ty, dims).map_err(|reason| WriteError::BadShape {
            name: name.to_owned(),
            dims: dims.to_vec(),
            ty,
            reason,
        })
    }

    fn push(&mut self, name: &str, dims: &[u64], ty: GgmlType, n_bytes: u64, data: TensorData) {
        self.names.insert(name.to_owned());
        self.tensors.push(PendingTensor {
            name: name.to_owned(),
            dims: dims.to_vec(),
            ty,
            n_bytes,
            data,
        });
    }

    fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find_map(|(k, v)| match v {
                Value::U32(a) if k == "general.alignment" => Some(u64::from(*a)),
                _ => None,
            })
            .unwrap_or(u64::from(DEFAULT_ALIGNMENT))
    }

    /// Writes the file to `out` and returns the number of bytes written.
    ///
    /// # Errors
    /// See [`WriteError`]: each variant says what was wrong.
    pub fn write_to(self, out: impl Write) -> Result<u64, WriteError> {
        let io_err = |source| WriteError::Io { path: None, source };
        let alignment = self.alignment();
        let mut w = CountingWriter { inner: out, n: 0 };

        w.write_all(&MAGIC).map_err(io_err)?;
        w.write_u32::<LittleEndian>(3).map_err(io_err)?;
        w.write_u64::<LittleEndian>(self.tensors.len() as u64)
            .map_err(io_err)?;
        w.write_u64::<LittleEndian>(self.metadata.len() as u64)
            .map_err(io_err)?;
        for (key, value) in &self.metadata {
            write_str(&mut w, key).map_err(io_err)?;
            w.write_u32::<LittleEndian>(value.value_type().code())
                .map_err(io_err)?;
            write_value(&mut w, value).map_err(io_err)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_str(&mut w, &t.name).map_err(io_err)?;
            w.write_u32::<LittleEndian>(t.dims.len() as u32)
                .map_err(io_err)?;
            for &d in &t.dims {
                w.write_u64::<LittleEndian>(d).map_err(io_err)?;
            }
            w.write_u32::<LittleEndian>(t.ty.code()).map_err(io_err)?;
            w.write_u64::<LittleEndian>(offset).map_err(io_err)?;
            offset += t.n_bytes.next_multiple_of(alignment);
        }
        pad(&mut w, alignment).map_err(io_err)?;
        for t in self.tensors {
            let start = w.n;
            match t.data {
                TensorData::Bytes(b) => w.write_all(&b).map_err(io_err)?,
                TensorData::Deferred(f) => f(&mut w).map_err(io_err)?,
            }
            let actual = w.n - start;
            if actual != t.n_bytes {
                return Err(WriteError::DataSize {
                    name: t.name,
                    expected: t.n_bytes,
                    actual,
                });
            }
            pad(&mut w, alignment).map_err(io_err)?;
        }
        w.flush().map_err(io_err)?;
        Ok(w.n)
    }

    /// Writes the file into memory.
    ///
    /// # Errors
    /// See [`WriteError`]: each variant says what was wrong.
    pub fn into_bytes(self) -> Result<Vec<u8>, WriteError> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Writes the file to `path` atomically: into a temporary file beside it, renamed into place
    /// only when complete, so a failed write never leaves a half-written file under `path`.
    ///
    /// # Errors
    /// See [`WriteError`]: each variant says what was wrong.
    pub fn write_file(self, path: impl AsRef<Path>) -> Result<u64, WriteError> {
        let path = path.as_ref();
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}",
            file_name.as_deref().unwrap_or("gguf"),
            std::process::id()
        ));
        let with_path = |source| WriteError::Io {
            path: Some(path.to_owned()),
            source,
        };
        let result = fs::File::create(&tmp)
            .map_err(with_path)
            .and_then(|f| {
                let mut buf = BufWriter::new(f);
                let n = self.write_to(&mut buf).map_err(|e| match e {
                    WriteError::Io { path: None, source } => with_path(source),
                    other => other,
                })?;
                let f = buf.into_inner().map_err(|e| with_path(e.into_error()))?;
                f.sync_all().map_err(with_path)?;
                Ok(n)
            })
            .and_then(|n| fs::rename(&tmp, path).map(|()| n).map_err(with_path));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

struct CountingWriter<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn pad<W: Write>(w: &mut CountingWriter<W>, alignment: u64) -> io::Result<()> {
    let n = (w.n.next_multiple_of(alignment) - w.n) as usize;
    w.write_all(&vec![0u8; n])
}

fn depth(a: &Array) -> usize {
    match a {
        Array::Array(inner) => 1 + inner.iter().map(depth).max().unwrap_or(0),
        _ => 1,
    }
}

fn write_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    w.write_u64::<LittleEndian>(s.len() as u64)?;
    w.write_all(s.as_bytes())
}

fn write_value(w: &mut impl Write, value: &Value) -> io::Result<()> {
    match value {
        Value::U8(v) => w.write_u8(*v),
        Value::I8(v) => w.write_i8(*v),
        Value::U16(v) => w.write_u16::<LittleEndian>(*v),
        Value::I16(v) => w.write_i16::<LittleEndian>(*v),
        Value::U32(v) => w.write_u32::<LittleEndian>(*v),
        Value::I32(v) => w.write_i32::<LittleEndian>(*v),
        Value::F32(v) => w.write_f32::<LittleEndian>(*v),
        Value::Bool(v) => w.write_u8(u8::from(*v)),
        Value::String(s) => write_str(w, s),
        Value::Array(a) => write_array(w, a),
        Value::U64(v) => w.write_u64::<LittleEndian>(*v),
        Value::I64(v) => w.write_i64::<LittleEndian>(*v),
        Value::F64(v) => w.write_f64::<LittleEndian>(*v),
    }
}

fn write_array(w: &mut impl Write, a: &Array) -> io::Result<()> {
    w.write_u32::<LittleEndian>(a.element_type().code())?;
    w.write_u64::<LittleEndian>(a.len() as u64)?;
    fn each<T: Copy, W: Write>(
        w: &mut W,
        v: &[T],
        f: fn(&mut W, T) -> io::Result<()>,
    ) -> io::Result<()> {
        v.iter().try_for_each(|&x| f(w, x))
    }
    match a {
        Array::U8(v) => w.write_all(v),
        Array::I8(v) => each(w, v, |w, x| w.write_i8(x)),
        Array::U16(v) => each(w, v, |w, x| w.write_u16::<LittleEndian>(x)),
        Array::I16(v) => each(w, v, |w, x| w.write_i16::<LittleEndian>(x)),
        Array::U32(v) => each(w, v, |w, x| w.write_u32::<LittleEndian>(x)),
        Array::I32(v) => each(w, v, |w, x| w.write_i32::<LittleEndian>(x)),
        Array::F32(v) => each(w, v, |w, x| w.write_f32::<LittleEndian>(x)),
        Array::Bool(v) => each(w, v, |w, x| w.write_u8(u8::from(x))),
        Array::U64(v) => each(w, v, |w, x| w.write_u64::<LittleEndian>(x)),
        Array::I64(v) => each(w, v, |w, x| w.write_i64::<LittleEndian>(x)),
        Array::F64(v) => each(w, v, |w, x| w.write_f64::<LittleEndian>(x)),
        Array::String(v) => v.iter().try_for_each(|s| write_str(w, s)),
        Array::Array(v) => v.iter().try_for_each(|inner| write_array(w, inner)),
    }
}
