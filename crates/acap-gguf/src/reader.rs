//! Parsing: header, metadata, tensor infos, alignment and the data section's bounds.

use std::collections::HashSet;

use byteorder::{ByteOrder, LittleEndian};

use crate::cursor::Cursor;
use crate::error::ParseError;
use crate::file::TensorInfo;
use crate::types::{GgmlType, ValueType, tensor_nbytes};
use crate::value::{Array, Value};
use crate::{DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};

/// Everything the header region says; tensor data stays in the caller's bytes.
pub(crate) struct Parsed {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u32,
    pub data_offset: u64,
}

pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, ParseError> {
    let mut cur = Cursor::new(buf);
    let magic = cur.take(4, "magic")?;
    if magic != MAGIC {
        return Err(ParseError::BadMagic {
            found: [magic[0], magic[1], magic[2], magic[3]],
        });
    }
    let version = cur.u32("version")?;
    match version {
        2 | 3 => {}
        v if matches!(v.swap_bytes(), 2 | 3) => {
            return Err(ParseError::BigEndian {
                version: v.swap_bytes(),
            });
        }
        v => return Err(ParseError::UnsupportedVersion { version: v }),
    }
    // Smallest tensor info: name length (8) + n_dims (4) + type (4) + offset (8).
    let n_tensors = cur.count(24, "tensor count")?;
    // Smallest metadata entry: key length (8) + type (4) + one byte of value.
    let n_kv = cur.count(13, "metadata count")?;

    let mut metadata = Vec::with_capacity(prealloc::<(String, Value)>(n_kv, cur.remaining()));
    let mut keys = HashSet::new();
    for _ in 0..n_kv {
        let offset = cur.pos();
        let key = cur.string("metadata key")?;
        let value = read_value(&mut cur).map_err(|e| ParseError::InKey {
            key: key.clone(),
            source: Box::new(e),
        })?;
        if !keys.insert(key.clone()) {
            return Err(ParseError::DuplicateKey { key, offset });
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, Value::U32(a))) if a.is_power_of_two() => *a,
        Some((_, Value::U32(a))) => return Err(ParseError::BadAlignment { value: *a }),
        Some((_, other)) => {
            return Err(ParseError::AlignmentType {
                found: other.type_name(),
            });
        }
    };

    let mut tensors = Vec::with_capacity(prealloc::<TensorInfo>(n_tensors, cur.remaining()));
    let mut names = HashSet::new();
    for _ in 0..n_tensors {
        let info = read_tensor_info(&mut cur, alignment)?;
        if !names.insert(info.name.clone()) {
            return Err(ParseError::DuplicateTensor {
                name: info.name,
                offset: info.info_offset,
            });
        }
        tensors.push(info);
    }

    // The data section starts at the next multiple of the alignment. With no tensors a file
    // may end before that point (writers differ on the trailing padding).
    let data_offset = cur.pos().next_multiple_of(u64::from(alignment));
    check_tensor_data(&tensors, data_offset, buf.len() as u64)?;

    Ok(Parsed {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

fn read_value(cur: &mut Cursor<'_>) -> Result<Value, ParseError> {
    let ty = cur.value_type()?;
    read_typed_value(cur, ty)
}

fn read_typed_value(cur: &mut Cursor<'_>, ty: ValueType) -> Result<Value, ParseError> {
    const V: &str = "metadata value";
    Ok(match ty {
        ValueType::U8 => Value::U8(cur.u8(V)?),
        ValueType::I8 => Value::I8(cur.u8(V)? as i8),
        ValueType::U16 => Value::U16(LittleEndian::read_u16(cur.take(2, V)?)),
        ValueType::I16 => Value::I16(LittleEndian::read_i16(cur.take(2, V)?)),
        ValueType::U32 => Value::U32(cur.u32(V)?),
        ValueType::I32 => Value::I32(LittleEndian::read_i32(cur.take(4, V)?)),
        ValueType::F32 => Value::F32(LittleEndian::read_f32(cur.take(4, V)?)),
        ValueType::Bool => Value::Bool(cur.bool()?),
        ValueType::String => Value::String(cur.string("string value")?),
        ValueType::Array => Value::Array(read_array(cur, 1)?),
        ValueType::U64 => Value::U64(cur.u64(V)?),
        ValueType::I64 => Value::I64(LittleEndian::read_i64(cur.take(8, V)?)),
        ValueType::F64 => Value::F64(LittleEndian::read_f64(cur.take(8, V)?)),
    })
}

/// Reads an array body (element type, count, elements). `depth` is 1 for a top-level array;
/// nesting is bounded so hostile input cannot exhaust the stack.
fn read_array(cur: &mut Cursor<'_>, depth: usize) -> Result<Array, ParseError> {
    let start = cur.pos();
    if depth > MAX_ARRAY_DEPTH {
        return Err(ParseError::NestingTooDeep {
            offset: start,
            max: MAX_ARRAY_DEPTH,
        });
    }
    let ty = cur.value_type()?;
    let n = cur.count(ty.min_encoded_size(), "array length")?;
    const W: &str = "array elements";
    Ok(match ty {
        ValueType::U8 => Array::U8(cur.take(n as u64, W)?.to_vec()),
        ValueType::I8 => Array::I8(cur.take(n as u64, W)?.iter().map(|&b| b as i8).collect()),
        ValueType::U16 => Array::U16(cur.fixed_vec(n, W, LittleEndian::read_u16_into)?),
        ValueType::I16 => Array::I16(cur.fixed_vec(n, W, LittleEndian::read_i16_into)?),
        ValueType::U32 => Array::U32(cur.fixed_vec(n, W, LittleEndian::read_u32_into)?),
        ValueType::I32 => Array::I32(cur.fixed_vec(n, W, LittleEndian::read_i32_into)?),
        ValueType::F32 => Array::F32(cur.fixed_vec(n, W, LittleEndian::read_f32_into)?),
        ValueType::U64 => Array::U64(cur.fixed_vec(n, W, LittleEndian::read_u64_into)?),
        ValueType::I64 => Array::I64(cur.fixed_vec(n, W, LittleEndian::read_i64_into)?),
        ValueType::F64 => Array::F64(cur.fixed_vec(n, W, LittleEndian::read_f64_into)?),
        ValueType::Bool => Array::Bool(collect(cur, n, Cursor::bool)?),
        ValueType::String => Array::String(collect(cur, n, |c| c.string("string array element"))?),
        ValueType::Array => Array::Array(collect(cur, n, |c| read_array(c, depth + 1))?),
    })
}

/// How many elements of `T` to reserve for a claimed count: never more memory than the bytes
/// left in the file, so a hostile count cannot cause a large allocation before parsing fails.
fn prealloc<T>(count: usize, remaining: u64) -> usize {
    let per_element = std::mem::size_of::<T>().max(1) as u64;
    count.min((remaining / per_element) as usize)
}

/// Reads `n` elements with `read`, reserving memory only as [`prealloc`] allows.
fn collect<'a, T>(
    cur: &mut Cursor<'a>,
    n: usize,
    mut read: impl FnMut(&mut Cursor<'a>) -> Result<T, ParseError>,
) -> Result<Vec<T>, ParseError> {
    let mut out = Vec::with_capacity(prealloc::<T>(n, cur.remaining()));
    for _ in 0..n {
        out.push(read(cur)?);
    }
    Ok(out)
}

fn read_tensor_info(cur: &mut Cursor<'_>, alignment: u32) -> Result<TensorInfo, ParseError> {
    let info_offset = cur.pos();
    let name = cur.string("tensor name")?;
    let in_tensor = |e| ParseError::InTensor {
        name: name.clone(),
        source: Box::new(e),
    };
    let n_dims = cur.u32("tensor dimension count").map_err(in_tensor)?;
    if n_dims as usize > MAX_DIMS {
        return Err(ParseError::TooManyDims {
            name,
            offset: info_offset,
            n_dims,
        });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(cur.u64("tensor dimension").map_err(in_tensor)?);
    }
    let type_offset = cur.pos();
    let code = cur.u32("tensor type").map_err(in_tensor)?;
    let ty = GgmlType::from_code(code).ok_or_else(|| ParseError::BadTensorType {
        name: name.clone(),
        offset: type_offset,
        code,
    })?;
    let offset = cur.u64("tensor data offset").map_err(in_tensor)?;
    let n_bytes = tensor_nbytes(ty, &dims).map_err(|reason| ParseError::BadShape {
        name: name.clone(),
        dims: dims.clone(),
        ty,
        reason,
    })?;
    if offset % u64::from(alignment) != 0 {
        return Err(ParseError::MisalignedTensor {
            name,
            offset,
            alignment,
        });
    }
    Ok(TensorInfo {
        name,
        dims,
        ty,
        offset,
        n_bytes,
        info_offset,
    })
}

fn check_tensor_data(
    tensors: &[TensorInfo],
    data_offset: u64,
    file_len: u64,
) -> Result<(), ParseError> {
    for t in tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match end {
            Some(end) if end <= file_len => {}
            _ => {
                return Err(ParseError::TensorOutOfBounds {
                    name: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_len,
                });
            }
        }
    }
    // All ranges are in bounds now; sort by start and compare neighbours. Empty tensors own
    // no bytes and cannot overlap anything.
    let mut order: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    order.sort_by_key(|t| t.offset);
    for pair in order.windows(2) {
        if pair[0].offset + pair[0].n_bytes > pair[1].offset {
            return Err(ParseError::TensorOverlap {
                first: pair[0].name.clone(),
                second: pair[1].name.clone(),
            });
        }
    }
    Ok(())
}
