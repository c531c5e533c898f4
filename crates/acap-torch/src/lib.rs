//! PyTorch `.pt` checkpoints (acap's users' later axis releases, spec section 11), read
//! without executing anything: the zip archive is opened with the `zip` crate and its `data.pkl` run
//! by a pickle interpreter that allows only what a saved tensor or a dict of numbers needs
//! (`torch._utils._rebuild_tensor_v2`, the float storage classes, `collections.OrderedDict`,
//! persistent ids) and refuses any other global by name.

mod pickle;

/// Runs a raw pickle through the allow-list interpreter and says whether it was accepted
/// (for fuzzing: it must never panic, hang or run anything).
#[doc(hidden)]
pub fn fuzz_unpickle(data: &[u8]) -> bool {
    pickle::unpickle(data).is_ok()
}

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Seek};
use std::path::{Path, PathBuf};

use pickle::{DType, PickleError, TensorRef, Value};
use thiserror::Error;

/// Why a `.pt` file could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TorchError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not a PyTorch zip checkpoint, or a broken one.
    #[error("{}: {reason}", path.display())]
    Archive {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The pickle names a global outside the allow-list (it could run code).
    #[error(
        "{}: the pickle calls {global}, which a saved tensor or dict of numbers never needs \
         (refused: loading it could run code)",
        path.display()
    )]
    ForbiddenGlobal {
        /// The file.
        path: PathBuf,
        /// `module.name`.
        global: String,
    },
    /// A malformed or unsupported pickle.
    #[error("{}: data.pkl at byte {offset}: {reason}", path.display())]
    Pickle {
        /// The file.
        path: PathBuf,
        /// Where in `data.pkl`.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// The pickle holds something other than what was asked for, or a tensor whose storage
    /// does not hold it.
    #[error("{}: {reason}", path.display())]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A tensor read from a checkpoint, as row-major f32 values.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchTensor {
    /// The shape.
    pub shape: Vec<usize>,
    /// The values, row-major (contiguous whatever the saved strides were).
    pub data: Vec<f32>,
}

/// Largest `data.pkl` read (a tensor's is a few hundred bytes).
const MAX_PICKLE: u64 = 64 << 20;
/// Most elements a tensor may have.
const MAX_ELEMENTS: u64 = 1 << 31;

/// An opened checkpoint: the archive and the prefix of its entries (`NAME/`).
struct Archive<R> {
    path: PathBuf,
    zip: zip::ZipArchive<R>,
    prefix: String,
}

impl Archive<std::fs::File> {
    fn open(path: &Path) -> Result<Self, TorchError> {
        let file = std::fs::File::open(path).map_err(|source| TorchError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::new(path, file)
    }
}

impl<R: Read + Seek> Archive<R> {
    fn new(path: &Path, file: R) -> Result<Self, TorchError> {
        let archive_err = |reason: String| TorchError::Archive {
            path: path.to_owned(),
            reason,
        };
        let zip = zip::ZipArchive::new(file).map_err(|e| {
            archive_err(format!(
                "not a PyTorch zip checkpoint ({e}); legacy non-zip torch.save files are not \
                 supported"
            ))
        })?;
        let names: Vec<String> = zip
            .file_names()
            .map(|n| n.map(|n| n.into_owned()))
            .collect::<Result<_, _>>()
            .map_err(|e| archive_err(format!("an entry name: {e}")))?;
        let pkl: Vec<&String> = names
            .iter()
            .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            .collect();
        let prefix = match pkl.as_slice() {
            [one] => one.trim_end_matches("data.pkl").to_owned(),
            [] => return Err(archive_err("no NAME/data.pkl entry".into())),
            many => return Err(archive_err(format!("several data.pkl entries: {many:?}"))),
        };
        Ok(Self {
            path: path.to_owned(),
            zip,
            prefix,
        })
    }

    fn err(&self, reason: impl Into<String>) -> TorchError {
        TorchError::Archive {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// The entry `NAME/rel`, at most `limit` bytes; `None` when absent.
    fn read(&mut self, rel: &str, limit: u64) -> Result<Option<Vec<u8>>, TorchError> {
        let name = format!("{}{rel}", self.prefix);
        let read = |zip: &mut zip::ZipArchive<R>| -> Result<Option<Vec<u8>>, String> {
            let mut entry = match zip.by_name(&name) {
                Ok(e) => e,
                Err(zip::result::ZipError::FileNotFound) => return Ok(None),
                Err(e) => return Err(format!("{name}: {e}")),
            };
            let size = entry.size();
            if size > limit {
                return Err(format!("{name} is {size} bytes, more than {limit}"));
            }
            let mut out = Vec::with_capacity(size as usize);
            entry
                .by_ref()
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| format!("{name}: {e}"))?;
            if out.len() as u64 != size {
                return Err(format!("{name}: {} of {size} bytes", out.len()));
            }
            Ok(Some(out))
        };
        read(&mut self.zip).map_err(|reason| self.err(reason))
    }

    fn unpickle(&mut self) -> Result<Value, TorchError> {
        let pkl = self
            .read("data.pkl", MAX_PICKLE)?
            .ok_or_else(|| self.err("no data.pkl"))?;
        pickle::unpickle(&pkl).map_err(|e| match e {
            PickleError::Forbidden(global) => TorchError::ForbiddenGlobal {
                path: self.path.clone(),
                global,
            },
            PickleError::Bad { offset, reason } => TorchError::Pickle {
                path: self.path.clone(),
                offset,
                reason,
            },
        })
    }

    fn content(&self, reason: impl Into<String>) -> TorchError {
        TorchError::Content {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Reads the storage of `t` and gathers its elements in row-major order.
    fn materialise(&mut self, t: &TensorRef) -> Result<TorchTensor, TorchError> {
        let big_endian = match self.read("byteorder", 16)? {
            None => false,
            Some(b) => match b.as_slice() {
                b"little" => false,
                b"big" => true,
                other => {
                    return Err(self.err(format!(
                        "byteorder is '{}', expected little or big",
                        String::from_utf8_lossy(other)
                    )));
                }
            },
        };
        let n = t
            .size
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| {
                self.content(format!(
                    "tensor of shape {:?}: more than {MAX_ELEMENTS} elements",
                    t.size
                ))
            })?;
        // The last element the view reaches must lie inside the storage.
        if n > 0 {
            let last = t
                .size
                .iter()
                .zip(&t.stride)
                .try_fold(t.offset, |a, (&d, &s)| {
                    a.checked_add((d - 1).checked_mul(s)?)
                });
            if last.is_none_or(|l| l >= t.storage.numel) {
                return Err(self.content(format!(
                    "tensor of shape {:?}, stride {:?}, offset {} reaches beyond its storage \
                     of {} elements",
                    t.size, t.stride, t.offset, t.storage.numel
                )));
            }
        }
        let es = t.storage.dtype.size() as u64;
        let want = t
            .storage
            .numel
            .checked_mul(es)
            .filter(|&b| b <= MAX_ELEMENTS * 8)
            .ok_or_else(|| self.content("storage too large"))?;
        let rel = format!("data/{}", t.storage.key);
        let bytes = self.read(&rel, want)?.ok_or_else(|| {
            self.err(format!(
                "no {}{rel} entry for the tensor's storage",
                self.prefix
            ))
        })?;
        if bytes.len() as u64 != want {
            return Err(self.err(format!(
                "{}{rel} has {} bytes, its storage needs {want} ({} elements of {es})",
                self.prefix,
                bytes.len(),
                t.storage.numel
            )));
        }
        let element = |i: u64| -> f32 {
            let at = (i * es) as usize;
            let b = &bytes[at..at + es as usize];
            let word = |b: &[u8]| -> u64 {
                let it = b.iter();
                if big_endian {
                    it.fold(0u64, |a, &x| (a << 8) | u64::from(x))
                } else {
                    it.rev().fold(0u64, |a, &x| (a << 8) | u64::from(x))
                }
            };
            let w = word(b);
            match t.storage.dtype {
                DType::F32 => f32::from_bits(w as u32),
                DType::F64 => f64::from_bits(w) as f32,
                DType::F16 => acap_gguf::f16_to_f32(w as u16),
                DType::BF16 => acap_gguf::bf16_to_f32(w as u16),
            }
        };
        let mut data = Vec::with_capacity(n as usize);
        let mut idx = vec![0u64; t.size.len()];
        for _ in 0..n {
            let at = t.offset + idx.iter().zip(&t.stride).map(|(&i, &s)| i * s).sum::<u64>();
            data.push(element(at));
            // Row-major: the last index moves fastest.
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < t.size[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Ok(TorchTensor {
            shape: t.size.iter().map(|&d| d as usize).collect(),
            data,
        })
    }
}

/// Reads the one tensor a checkpoint holds (`torch.save(tensor, path)`, or a dict with a
/// single tensor value).
///
/// # Errors
/// See [`TorchError`]: each variant names the file and what is wrong.
pub fn load_tensor(path: impl AsRef<Path>) -> Result<TorchTensor, TorchError> {
    tensor_of(Archive::open(path.as_ref())?)
}

/// [`load_tensor`] on a checkpoint held in memory (`<memory>` in errors).
///
/// # Errors
/// As [`load_tensor`].
pub fn tensor_from_bytes(bytes: Vec<u8>) -> Result<TorchTensor, TorchError> {
    tensor_of(Archive::new(Path::new("<memory>"), Cursor::new(bytes))?)
}

/// [`load_number_dict`] on a checkpoint held in memory (`<memory>` in errors).
///
/// # Errors
/// As [`load_number_dict`].
pub fn number_dict_from_bytes(bytes: Vec<u8>) -> Result<BTreeMap<i64, f64>, TorchError> {
    number_dict_of(Archive::new(Path::new("<memory>"), Cursor::new(bytes))?)
}

fn tensor_of<R: Read + Seek>(mut a: Archive<R>) -> Result<TorchTensor, TorchError> {
    let v = a.unpickle()?;
    let t = match &v {
        Value::Tensor(t) => t.clone(),
        Value::Dict(d) => {
            let tensors: Vec<_> = d
                .items
                .iter()
                .filter_map(|(_, v)| match v {
                    Value::Tensor(t) => Some(t.clone()),
                    _ => None,
                })
                .collect();
            match tensors.as_slice() {
                [one] => one.clone(),
                _ => {
                    return Err(a.content(format!(
                        "a dict with {} tensors; expected one tensor",
                        tensors.len()
                    )));
                }
            }
        }
        other => {
            return Err(a.content(format!("holds {other:?}, expected a tensor")));
        }
    };
    a.materialise(&t)
}

/// Reads a checkpoint holding a dict of numbers keyed by integers (`{layer: tau}`); a
/// repeated key keeps its last value, as in Python. 0-d and one-element tensors count as
/// numbers.
///
/// # Errors
/// See [`TorchError`]: a key that is not an integer or a value that is not a finite number is
/// named.
pub fn load_number_dict(path: impl AsRef<Path>) -> Result<BTreeMap<i64, f64>, TorchError> {
    number_dict_of(Archive::open(path.as_ref())?)
}

fn number_dict_of<R: Read + Seek>(mut a: Archive<R>) -> Result<BTreeMap<i64, f64>, TorchError> {
    let v = a.unpickle()?;
    let Value::Dict(d) = &v else {
        return Err(a.content(format!("holds {v:?}, expected a dict {{layer: threshold}}")));
    };
    let mut out = BTreeMap::new();
    for (k, v) in &d.items {
        let Value::Int(key) = k else {
            return Err(a.content(format!("dict key {k:?} is not an integer layer")));
        };
        let x = match v {
            Value::Float(x) => *x,
            Value::Int(i) => *i as f64,
            Value::Tensor(t) => {
                let t = a.materialise(t)?;
                match t.data.as_slice() {
                    [x] => f64::from(*x),
                    _ => {
                        return Err(a.content(format!(
                            "layer {key}: a tensor of shape {:?}, expected one number",
                            t.shape
                        )));
                    }
                }
            }
            other => {
                return Err(a.content(format!("layer {key}: {other:?} is not a number")));
            }
        };
        if !x.is_finite() {
            return Err(a.content(format!("layer {key}: {x} is not finite")));
        }
        out.insert(*key, x);
    }
    Ok(out)
}
