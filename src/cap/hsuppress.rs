//! H-neuron suppression (spec section 10): per-block scaling vectors multiplied, element by
//! element, into the FFN activation that feeds the down projection, `h = W_down (s (.) z)`.
//!
//! Unlike the reference, which logs and runs unsuppressed on every error, loading is strict:
//! every tensor must be `h_suppress.N` (N a block), F32, 1-D and finite, and when the file is
//! applied to a model each vector must have that block's `n_ff` values and the block must
//! offer its FFN activation to the eval callback.

use std::path::Path;

use acap_gguf::{GgmlType, GgufFile, ParseError, ReadError, Value};
use thiserror::Error;

/// Tensor name prefix: `h_suppress.N` for block N (0-based).
pub const H_SUPPRESS_PREFIX: &str = "h_suppress.";

/// Why a suppression file is invalid, or cannot be applied to a model.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HSuppressError {
    /// The file could not be read or is not GGUF.
    #[error("h-suppress file {0}")]
    Read(#[from] ReadError),
    /// In-memory bytes are not GGUF.
    #[error("h-suppress file {origin}: {source}")]
    Parse {
        /// Where the bytes came from.
        origin: String,
        /// What is wrong.
        source: ParseError,
    },
    /// No tensors: a file that suppresses nothing is a mistake, not a no-op.
    #[error("h-suppress file {origin}: no h_suppress.N tensors")]
    NoTensors {
        /// The file.
        origin: String,
    },
    /// Bytes after the last tensor's data.
    #[error(
        "h-suppress file {origin}: {bytes} bytes after the last tensor's data that no tensor \
         describes (a truncated tensor list or a retyped tensor?)"
    )]
    TrailingData {
        /// The file.
        origin: String,
        /// How many bytes.
        bytes: u64,
    },
    /// A tensor whose name is not `h_suppress.N` with N a decimal block number.
    #[error(
        "h-suppress file {origin}: tensor '{name}' is not h_suppress.N (N a 0-based block \
         number in decimal, without leading zeros)"
    )]
    BadTensorName {
        /// The file.
        origin: String,
        /// The tensor.
        name: String,
    },
    /// Two tensors for one block.
    #[error("h-suppress file {origin}: tensor '{name}' repeats block {block}")]
    Duplicate {
        /// The file.
        origin: String,
        /// The second tensor.
        name: String,
        /// The block.
        block: u32,
    },
    /// A tensor that is not F32.
    #[error("h-suppress file {origin}: tensor '{name}' has type {ty}, expected F32")]
    NotF32 {
        /// The file.
        origin: String,
        /// The tensor.
        name: String,
        /// Its type.
        ty: GgmlType,
    },
    /// A tensor that is not 1-D.
    #[error(
        "h-suppress file {origin}: tensor '{name}' has shape {dims:?}, expected one dimension \
         of n_ff values"
    )]
    NotOneDimensional {
        /// The file.
        origin: String,
        /// The tensor.
        name: String,
        /// Its shape.
        dims: Vec<u64>,
    },
    /// A NaN or infinite scale.
    #[error("h-suppress file {origin}: tensor '{name}' has value {value} at index {index}")]
    NotFinite {
        /// The file.
        origin: String,
        /// The tensor.
        name: String,
        /// The first bad element.
        index: usize,
        /// Its value.
        value: f32,
    },
    /// `h_suppress.alpha`, `.n_neurons` or `.n_layers` of the wrong type.
    #[error("h-suppress file {origin}: metadata {key} is {found}, expected a number")]
    BadMetadata {
        /// The file.
        origin: String,
        /// The key.
        key: String,
        /// Its type.
        found: String,
    },
    /// A block the model does not have.
    #[error(
        "h-suppress file {origin}: tensor '{name}' is for block {block}, but the model has \
         {n_layer} blocks (0..{n_layer})"
    )]
    BlockOutOfRange {
        /// The file.
        origin: String,
        /// The tensor.
        name: String,
        /// The block.
        block: u32,
        /// The model's blocks.
        n_layer: u32,
    },
    /// A vector whose length is not the block's FFN width.
    #[error(
        "h-suppress file {origin}: tensor '{name}' has {len} values, but block {block}'s FFN \
         activation has n_ff = {n_ff}"
    )]
    WrongLength {
        /// The file.
        origin: String,
        /// The tensor.
        name: String,
        /// The block.
        block: u32,
        /// The tensor's length.
        len: usize,
        /// The block's FFN width.
        n_ff: usize,
    },
    /// An architecture whose dense FFN activation acap does not know.
    #[error(
        "H-neuron suppression: acap does not know which graph tensor feeds the FFN down \
         projection of architecture '{arch}' (known: {known})"
    )]
    UnsupportedArchitecture {
        /// The model's architecture.
        arch: String,
        /// The architectures acap knows.
        known: String,
    },
    /// A block whose graph never offered the FFN activation (a mixture-of-experts block, or
    /// a graph that names it differently).
    #[error(
        "H-neuron suppression: block {block} of this '{arch}' model offers no {names} tensor \
         (mixture-of-experts blocks are not suppressed; spec section 10)"
    )]
    NoActivation {
        /// The model's architecture.
        arch: String,
        /// The block.
        block: u32,
        /// The tensor names looked for.
        names: String,
    },
    /// The session was created without the eval callback.
    #[error("H-neuron suppression needs the eval callback, which this session was created without")]
    NoEvalCallback,
}

/// Telemetry of one suppressed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuppressStats {
    /// The block.
    pub block: u32,
    /// Neurons whose scale is not 1.
    pub neurons: usize,
    /// Rows (tokens) scaled since the last reset.
    pub rows: u64,
}

/// A validated H-neuron suppression file: a scaling vector per block it names.
#[derive(Debug, Clone, PartialEq)]
pub struct HSuppress {
    origin: String,
    /// `(block, scales)` in block order.
    blocks: Vec<(u32, Vec<f32>)>,
    alpha: Option<f64>,
    meta_neurons: Option<f64>,
    meta_layers: Option<f64>,
}

impl HSuppress {
    /// Opens and validates a suppression file.
    ///
    /// # Errors
    /// See [`HSuppressError`]: each variant names the file and what was wrong.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, HSuppressError> {
        Self::from_gguf(&GgufFile::open(path)?)
    }

    /// Validates a suppression file held in memory (`<memory>` in errors).
    ///
    /// # Errors
    /// As [`HSuppress::open`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, HSuppressError> {
        let gguf = GgufFile::from_bytes(bytes).map_err(|source| HSuppressError::Parse {
            origin: "<memory>".into(),
            source,
        })?;
        Self::from_gguf(&gguf)
    }

    /// Validates an already parsed GGUF.
    ///
    /// # Errors
    /// As [`HSuppress::open`].
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, HSuppressError> {
        let origin = gguf
            .path()
            .map_or_else(|| "<memory>".to_owned(), |p| p.display().to_string());
        if gguf.tensors().is_empty() {
            return Err(HSuppressError::NoTensors { origin });
        }
        let bytes = gguf.trailing_bytes();
        if bytes > 0 {
            return Err(HSuppressError::TrailingData { origin, bytes });
        }
        let mut blocks: Vec<(u32, Vec<f32>)> = Vec::new();
        for info in gguf.tensors() {
            let name = info.name();
            let Some(block) = block_of(name) else {
                return Err(HSuppressError::BadTensorName {
                    origin,
                    name: name.into(),
                });
            };
            if blocks.iter().any(|(b, _)| *b == block) {
                return Err(HSuppressError::Duplicate {
                    origin,
                    name: name.into(),
                    block,
                });
            }
            if info.ggml_type() != GgmlType::F32 {
                return Err(HSuppressError::NotF32 {
                    origin,
                    name: name.into(),
                    ty: info.ggml_type(),
                });
            }
            if info.dims().len() != 1 {
                return Err(HSuppressError::NotOneDimensional {
                    origin,
                    name: name.into(),
                    dims: info.dims().to_vec(),
                });
            }
            let values = gguf
                .view(info)
                .to_f32_vec()
                .expect("F32 tensors always convert");
            if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(HSuppressError::NotFinite {
                    origin,
                    name: name.into(),
                    index,
                    value,
                });
            }
            blocks.push((block, values));
        }
        blocks.sort_by_key(|(b, _)| *b);
        let number = |key: &str| -> Result<Option<f64>, HSuppressError> {
            let Some(v) = gguf.get(key) else {
                return Ok(None);
            };
            let x = match *v {
                Value::F32(x) => f64::from(x),
                Value::F64(x) => x,
                Value::U8(x) => f64::from(x),
                Value::I8(x) => f64::from(x),
                Value::U16(x) => f64::from(x),
                Value::I16(x) => f64::from(x),
                Value::U32(x) => f64::from(x),
                Value::I32(x) => f64::from(x),
                Value::U64(x) => x as f64,
                Value::I64(x) => x as f64,
                ref other => {
                    return Err(HSuppressError::BadMetadata {
                        origin: origin.clone(),
                        key: key.into(),
                        found: other.type_name(),
                    });
                }
            };
            Ok(Some(x))
        };
        Ok(Self {
            alpha: number("h_suppress.alpha")?,
            meta_neurons: number("h_suppress.n_neurons")?,
            meta_layers: number("h_suppress.n_layers")?,
            origin,
            blocks,
        })
    }

    /// Suppression built in memory: `(block, scales)` pairs (`<memory>` in errors).
    ///
    /// # Errors
    /// [`HSuppressError::NoTensors`], [`HSuppressError::Duplicate`] or
    /// [`HSuppressError::NotFinite`].
    pub fn from_vectors(
        vectors: impl IntoIterator<Item = (u32, Vec<f32>)>,
    ) -> Result<Self, HSuppressError> {
        let origin = "<memory>".to_owned();
        let mut blocks: Vec<(u32, Vec<f32>)> = Vec::new();
        for (block, values) in vectors {
            let name = format!("{H_SUPPRESS_PREFIX}{block}");
            if blocks.iter().any(|(b, _)| *b == block) {
                return Err(HSuppressError::Duplicate {
                    origin,
                    name,
                    block,
                });
            }
            if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(HSuppressError::NotFinite {
                    origin,
                    name,
                    index,
                    value,
                });
            }
            blocks.push((block, values));
        }
        if blocks.is_empty() {
            return Err(HSuppressError::NoTensors { origin });
        }
        blocks.sort_by_key(|(b, _)| *b);
        Ok(Self {
            origin,
            blocks,
            alpha: None,
            meta_neurons: None,
            meta_layers: None,
        })
    }

    /// The file's bytes in the layout the reference reads: F32 `h_suppress.N` tensors,
    /// `h_suppress.n_layers` and `h_suppress.n_neurons` (counted), `h_suppress.alpha` when
    /// known.
    ///
    /// # Errors
    /// What the GGUF writer reports (it cannot fail for a validated suppression).
    pub fn to_bytes(&self) -> Result<Vec<u8>, acap_gguf::WriteError> {
        self.writer()?.into_bytes()
    }

    fn writer(&self) -> Result<acap_gguf::GgufWriter, acap_gguf::WriteError> {
        let mut w = acap_gguf::GgufWriter::new();
        w.set("general.architecture", "h_suppress")?;
        if let Some(a) = self.alpha {
            w.set("h_suppress.alpha", a as f32)?;
        }
        w.set("h_suppress.n_layers", self.edited_blocks().count() as u32)?;
        w.set("h_suppress.n_neurons", self.suppressed() as u32)?;
        for (b, v) in &self.blocks {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            w.add_raw(
                &format!("{H_SUPPRESS_PREFIX}{b}"),
                &[v.len() as u64],
                GgmlType::F32,
                bytes,
            )?;
        }
        Ok(w)
    }

    /// Writes [`HSuppress::to_bytes`] to `path`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<(), acap_gguf::WriteError> {
        self.writer()?.write_file(path).map(|_| ())
    }

    /// Where the file came from: its path, or `<memory>`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// `(block, scales)` for every block the file names, in block order.
    pub fn blocks(&self) -> &[(u32, Vec<f32>)] {
        &self.blocks
    }

    /// The scales of `block`, if the file names it (other blocks use all ones).
    pub fn scales(&self, block: u32) -> Option<&[f32]> {
        self.blocks
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, v)| v.as_slice())
    }

    /// Neurons of `block` whose scale is not 1 (0 for blocks the file does not name).
    pub fn suppressed_in(&self, block: u32) -> usize {
        self.scales(block)
            .map_or(0, |s| s.iter().filter(|&&x| x != 1.0).count())
    }

    /// Neurons whose scale is not 1, over all blocks.
    pub fn suppressed(&self) -> usize {
        self.blocks
            .iter()
            .map(|(_, s)| s.iter().filter(|&&x| x != 1.0).count())
            .sum()
    }

    /// Blocks that suppress at least one neuron.
    pub fn edited_blocks(&self) -> impl Iterator<Item = u32> + '_ {
        self.blocks
            .iter()
            .filter(|(_, s)| s.iter().any(|&x| x != 1.0))
            .map(|(b, _)| *b)
    }

    /// `h_suppress.alpha`, if present (informational).
    pub fn alpha(&self) -> Option<f64> {
        self.alpha
    }

    /// `h_suppress.n_neurons`, if present (informational; compare [`HSuppress::suppressed`]).
    pub fn meta_n_neurons(&self) -> Option<f64> {
        self.meta_neurons
    }

    /// `h_suppress.n_layers`, if present (informational).
    pub fn meta_n_layers(&self) -> Option<f64> {
        self.meta_layers
    }

    /// Checks the file against a model of `n_layer` blocks whose block `L` has an FFN
    /// activation of `n_ff(L)` values (`None`: the block offers none).
    pub(crate) fn check_fit(
        &self,
        arch: &str,
        n_layer: u32,
        n_ff: impl Fn(u32) -> Option<usize>,
    ) -> Result<(), HSuppressError> {
        let names = activation_names(arch).ok_or_else(|| unsupported(arch))?;
        for (block, scales) in &self.blocks {
            let name = format!("{H_SUPPRESS_PREFIX}{block}");
            if *block >= n_layer {
                return Err(HSuppressError::BlockOutOfRange {
                    origin: self.origin.clone(),
                    name,
                    block: *block,
                    n_layer,
                });
            }
            match n_ff(*block) {
                None => {
                    return Err(HSuppressError::NoActivation {
                        arch: arch.into(),
                        block: *block,
                        names: names
                            .iter()
                            .map(|n| format!("{n}-{block}"))
                            .collect::<Vec<_>>()
                            .join(" or "),
                    });
                }
                Some(n) if n != scales.len() => {
                    return Err(HSuppressError::WrongLength {
                        origin: self.origin.clone(),
                        name,
                        block: *block,
                        len: scales.len(),
                        n_ff: n,
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

pub(crate) fn unsupported(arch: &str) -> HSuppressError {
    HSuppressError::UnsupportedArchitecture {
        arch: arch.into(),
        known: ACTIVATIONS
            .iter()
            .flat_map(|(archs, _)| archs.iter())
            .copied()
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The block of `h_suppress.N` (N canonical decimal: no sign, no leading zeros).
fn block_of(name: &str) -> Option<u32> {
    let n = name.strip_prefix(H_SUPPRESS_PREFIX)?;
    let canonical =
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'));
    canonical.then(|| n.parse().ok()).flatten()
}

/// Which graph tensor (`NAME-L`) is the FFN activation feeding `ffn_down` in the dense
/// blocks of each architecture, from the vendored llama.cpp's `build_ffn`
/// (`src/llama-graph.cpp`) and each architecture's call of it (`src/models/*.cpp`):
/// a parallel SiLU gate or a fused SwiGLU gives `ffn_swiglu` (`ffn_swiglu_limited` where the
/// model clamps it), a parallel GELU gate `ffn_geglu`, an ungated GELU `ffn_gelu`, squared
/// ReLU `ffn_sqr(relu)`. Architectures with several FFN calls per block, activation scales
/// or only mixture-of-experts blocks are not listed.
const ACTIVATIONS: &[(&[&str], &[&str])] = &[
    (
        &[
            "llama",
            "mistral3",
            "deci",
            "baichuan",
            "refact",
            "stablelm",
            "qwen",
            "qwen2",
            "qwen2vl",
            "qwen3",
            "qwen3vl",
            "phi3",
            "plamo",
            "plamo2",
            "plamo3",
            "orion",
            "internlm2",
            "minicpm3",
            "xverse",
            "command-r",
            "cohere2",
            "olmo",
            "olmo2",
            "openelm",
            "chatglm",
            "glm4",
            "bitnet",
            "exaone",
            "exaone4",
            "granite",
            "chameleon",
            "ernie4_5",
            "smollm3",
            "seed_oss",
            "hunyuan-dense",
            "dream",
            "llada",
        ],
        &["ffn_swiglu", "ffn_swiglu_limited"],
    ),
    (
        &["gemma", "gemma2", "gemma3", "gemma-embedding"],
        &["ffn_geglu"],
    ),
    (
        &[
            "gpt2",
            "starcoder",
            "starcoder2",
            "phi2",
            "bloom",
            "gptneox",
            "codeshell",
            "falcon",
        ],
        &["ffn_gelu"],
    ),
    (&["nemotron", "arcee", "jais2", "plm"], &["ffn_sqr(relu)"]),
];

/// The activation tensor names (without `-L`) of `arch`'s dense FFN, if acap knows them.
pub(crate) fn activation_names(arch: &str) -> Option<&'static [&'static str]> {
    ACTIVATIONS
        .iter()
        .find(|(archs, _)| archs.contains(&arch))
        .map(|(_, names)| *names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_names_are_canonical() {
        assert_eq!(block_of("h_suppress.0"), Some(0));
        assert_eq!(block_of("h_suppress.31"), Some(31));
        for bad in [
            "h_suppress.",
            "h_suppress.01",
            "h_suppress.-1",
            "h_suppress.1a",
            "x.1",
        ] {
            assert_eq!(block_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn counts_and_lookups() {
        let h = HSuppress::from_vectors([(3, vec![1.0, 0.0, 0.5]), (1, vec![1.0; 3])]).unwrap();
        assert_eq!(h.blocks()[0].0, 1, "sorted by block");
        assert_eq!(h.suppressed(), 2);
        assert_eq!(h.suppressed_in(3), 2);
        assert_eq!(h.suppressed_in(2), 0);
        assert_eq!(h.edited_blocks().collect::<Vec<_>>(), vec![3]);
        assert!(matches!(
            HSuppress::from_vectors([(1, vec![f32::NAN])]),
            Err(HSuppressError::NotFinite { index: 0, .. })
        ));
        assert!(matches!(
            HSuppress::from_vectors([(1, vec![1.0]), (1, vec![1.0])]),
            Err(HSuppressError::Duplicate { block: 1, .. })
        ));
        assert!(matches!(
            HSuppress::from_vectors([]),
            Err(HSuppressError::NoTensors { .. })
        ));
    }

    #[test]
    fn fit_names_block_length_and_architecture() {
        let h = HSuppress::from_vectors([(2, vec![0.0; 4])]).unwrap();
        assert!(h.check_fit("llama", 3, |_| Some(4)).is_ok());
        let e = h
            .check_fit("llama", 2, |_| Some(4))
            .unwrap_err()
            .to_string();
        assert!(e.contains("h_suppress.2") && e.contains("2 blocks"), "{e}");
        let e = h
            .check_fit("llama", 3, |_| Some(8))
            .unwrap_err()
            .to_string();
        assert!(e.contains("4 values") && e.contains("n_ff = 8"), "{e}");
        let e = h.check_fit("llama", 3, |_| None).unwrap_err().to_string();
        assert!(e.contains("ffn_swiglu-2"), "{e}");
        let e = h
            .check_fit("mamba", 3, |_| Some(4))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'mamba'") && e.contains("gemma3"), "{e}");
    }
}
