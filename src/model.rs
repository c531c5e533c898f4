//! Loading a model and reading its metadata.

use std::ffi::{CString, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use acap_gguf::{GgufFile, Value};
use llama_cpp_sys_2 as sys;

use crate::error::LoadError;
use crate::llama::backend;

/// A token id.
pub type Token = i32;

type ProgressFn = Box<dyn FnMut(f32) -> bool + Send>;

/// How to load a model.
#[derive(Default)]
pub struct ModelParams {
    n_gpu_layers: i32,
    use_mmap: Option<bool>,
    use_mlock: bool,
    no_repack: bool,
    progress: Option<ProgressFn>,
    overrides: Vec<(String, MetadataOverride)>,
}

/// A value that replaces a model metadata entry at load time (`--override-kv`).
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataOverride {
    /// `int:`
    Int(i64),
    /// `float:`
    Float(f64),
    /// `bool:`
    Bool(bool),
    /// `str:` (at most 127 bytes)
    Str(String),
}

impl MetadataOverride {
    /// Parses llama.cpp's `KEY=TYPE:VALUE` (`TYPE` one of `int`, `float`, `bool`, `str`).
    ///
    /// # Errors
    /// What is wrong with `spec`, naming it.
    pub fn parse(spec: &str) -> Result<(String, Self), String> {
        let bad = |why: &str| {
            format!("{spec}: {why} (expected KEY=TYPE:VALUE, TYPE int, float, bool or str)")
        };
        let (key, typed) = spec.split_once('=').ok_or_else(|| bad("no '='"))?;
        let (ty, value) = typed
            .split_once(':')
            .ok_or_else(|| bad("no ':' after the type"))?;
        if key.is_empty() || key.len() >= 128 {
            return Err(bad("the key must be 1 to 127 bytes"));
        }
        let v = match ty {
            "int" => Self::Int(value.parse().map_err(|_| bad("not an integer"))?),
            "float" => Self::Float(value.parse().map_err(|_| bad("not a number"))?),
            "bool" => Self::Bool(match value {
                "true" => true,
                "false" => false,
                _ => return Err(bad("a bool is true or false")),
            }),
            "str" if value.len() < 128 && !value.contains('\0') => Self::Str(value.to_owned()),
            "str" => return Err(bad("a str value must be under 128 bytes")),
            _ => return Err(bad("unknown type")),
        };
        Ok((key.to_owned(), v))
    }

    /// llama.cpp's form of `key = self`.
    fn raw(&self, key: &str) -> sys::llama_model_kv_override {
        let mut key_buf = [0 as std::ffi::c_char; 128];
        for (d, b) in key_buf.iter_mut().zip(key.bytes().take(127)) {
            *d = b as std::ffi::c_char;
        }
        let (tag, value) = match self {
            Self::Int(v) => (
                sys::LLAMA_KV_OVERRIDE_TYPE_INT,
                sys::llama_model_kv_override__bindgen_ty_1 { val_i64: *v },
            ),
            Self::Float(v) => (
                sys::LLAMA_KV_OVERRIDE_TYPE_FLOAT,
                sys::llama_model_kv_override__bindgen_ty_1 { val_f64: *v },
            ),
            Self::Bool(v) => (
                sys::LLAMA_KV_OVERRIDE_TYPE_BOOL,
                sys::llama_model_kv_override__bindgen_ty_1 { val_bool: *v },
            ),
            Self::Str(v) => {
                let mut buf = [0 as std::ffi::c_char; 128];
                for (d, b) in buf.iter_mut().zip(v.bytes().take(127)) {
                    *d = b as std::ffi::c_char;
                }
                (
                    sys::LLAMA_KV_OVERRIDE_TYPE_STR,
                    sys::llama_model_kv_override__bindgen_ty_1 { val_str: buf },
                )
            }
        };
        sys::llama_model_kv_override {
            tag,
            key: key_buf,
            __bindgen_anon_1: value,
        }
    }
}

impl std::fmt::Debug for ModelParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelParams")
            .field("n_gpu_layers", &self.n_gpu_layers)
            .field("use_mmap", &self.use_mmap)
            .field("use_mlock", &self.use_mlock)
            .field("no_repack", &self.no_repack)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl ModelParams {
    /// Layers to offload to the GPU (`-ngl`); negative means all. Ignored without a GPU backend.
    #[must_use]
    pub fn with_n_gpu_layers(mut self, n: i32) -> Self {
        self.n_gpu_layers = n;
        self
    }

    /// Memory-map the file (the default where supported) or read it into memory.
    #[must_use]
    pub fn with_mmap(mut self, on: bool) -> Self {
        self.use_mmap = Some(on);
        self
    }

    /// Replaces metadata entry `key` with `value` while loading (`--override-kv`); keys of
    /// 128 bytes or more, and string values of 128 bytes or more, are refused by `load`.
    #[must_use]
    pub fn with_override(mut self, key: impl Into<String>, value: MetadataOverride) -> Self {
        self.overrides.push((key.into(), value));
        self
    }

    /// Lock the weights in RAM (`--mlock`).
    #[must_use]
    pub fn with_mlock(mut self, on: bool) -> Self {
        self.use_mlock = on;
        self
    }

    /// Let llama.cpp's CPU backend repack weights into interleaved layouts for faster matrix
    /// products (the default; `--no-repack` turns it off). Repacked tensors are copies in
    /// anonymous memory, not pages of the mapped file.
    #[must_use]
    pub fn with_repack(mut self, on: bool) -> Self {
        self.no_repack = !on;
        self
    }

    /// Called with the load progress in 0..=1; returning `false` cancels loading.
    #[must_use]
    pub fn with_progress(mut self, f: impl FnMut(f32) -> bool + Send + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }
}

/// Facts about a model, read natively from its GGUF header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// `general.architecture` (e.g. `llama`).
    pub architecture: String,
    /// `general.name`, if present.
    pub name: Option<String>,
    /// Decoder blocks.
    pub n_layer: u32,
    /// Hidden size.
    pub n_embd: u32,
    /// Vocabulary size.
    pub n_vocab: u32,
    /// Training context length.
    pub n_ctx_train: u32,
    /// `tokenizer.chat_template`, if present.
    pub chat_template: Option<String>,
    /// Size of the file in bytes.
    pub file_size: u64,
}

struct ModelHandle {
    ptr: NonNull<sys::llama_model>,
    info: ModelInfo,
}

// SAFETY: a loaded `llama_model` is immutable: llama.cpp only reads it (weights, vocabulary,
// metadata) and documents using one model from several contexts on several threads. The only
// mutation, freeing, happens in `Drop` when the last reference is gone.
unsafe impl Send for ModelHandle {}
// SAFETY: see `Send`: every method takes `&self` and calls read-only llama.cpp functions.
unsafe impl Sync for ModelHandle {}

impl Drop for ModelHandle {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `llama_model_load_from_file` and is freed exactly once, here,
        // after every session (each holding a clone of the `Arc`) is gone.
        unsafe { sys::llama_model_free(self.ptr.as_ptr()) };
    }
}

/// A loaded model. Cheap to clone (reference counted); sessions keep their model alive, so
/// dropping order never matters.
#[derive(Clone)]
pub struct Model {
    handle: Arc<ModelHandle>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("info", &self.handle.info)
            .finish()
    }
}

struct ProgressState {
    callback: ProgressFn,
    panic: Option<Box<dyn std::any::Any + Send>>,
    cancelled: bool,
}

unsafe extern "C" fn progress_trampoline(progress: f32, user: *mut c_void) -> bool {
    // SAFETY: `user` is the `ProgressState` that `Model::load` keeps alive, exclusively
    // borrowed, for the whole `llama_model_load_from_file` call.
    let state = unsafe { &mut *user.cast::<ProgressState>() };
    if state.panic.is_some() {
        return false;
    }
    match catch_unwind(AssertUnwindSafe(|| (state.callback)(progress))) {
        Ok(go_on) => {
            state.cancelled |= !go_on;
            go_on
        }
        Err(payload) => {
            // Stash the panic, stop loading, and re-raise once llama.cpp has returned.
            state.panic = Some(payload);
            false
        }
    }
}

impl Model {
    /// Loads a GGUF model.
    ///
    /// The file is first parsed natively, so a missing, non-GGUF or truncated file gives a
    /// precise error before llama.cpp sees it.
    ///
    /// # Errors
    /// See [`LoadError`]: each variant says what was wrong.
    pub fn load(path: impl AsRef<Path>, params: ModelParams) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let mmap = params
            .use_mmap
            // SAFETY: a pure query.
            .unwrap_or_else(|| unsafe { sys::llama_supports_mmap() });
        let info = read_info(path, &params.overrides, mmap)?;
        let c_path =
            CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| LoadError::BadPath {
                path: path.to_owned(),
            })?;
        backend::ensure();

        // SAFETY: returns a plain struct of defaults.
        let mut mp = unsafe { sys::llama_model_default_params() };
        mp.n_gpu_layers = params.n_gpu_layers;
        mp.use_extra_bufts = !params.no_repack;
        mp.load_mode = match (mmap, params.use_mlock) {
            (true, true) => sys::LLAMA_LOAD_MODE_MMAP_MLOCK,
            (true, false) => sys::LLAMA_LOAD_MODE_MMAP,
            (false, true) => sys::LLAMA_LOAD_MODE_MLOCK,
            (false, false) => sys::LLAMA_LOAD_MODE_NONE,
        };
        for (key, v) in &params.overrides {
            let too_long = match v {
                MetadataOverride::Str(s) => s.len() >= 128 || s.contains('\0'),
                _ => false,
            };
            if key.is_empty() || key.len() >= 128 || key.contains('\0') || too_long {
                return Err(LoadError::Llama {
                    path: path.to_owned(),
                    reason: format!(
                        "metadata override {key}: keys and string values must be 1 to 127 bytes"
                    ),
                });
            }
        }
        // llama.cpp reads the overrides up to an entry with an empty key; they live until
        // loading returns.
        let mut overrides: Vec<sys::llama_model_kv_override> =
            params.overrides.iter().map(|(k, v)| v.raw(k)).collect();
        if !overrides.is_empty() {
            overrides.push(MetadataOverride::Int(0).raw(""));
            mp.kv_overrides = overrides.as_ptr();
        }
        let mut progress = params.progress.map(|callback| ProgressState {
            callback,
            panic: None,
            cancelled: false,
        });
        if let Some(state) = progress.as_mut() {
            mp.progress_callback = Some(progress_trampoline);
            mp.progress_callback_user_data = (state as *mut ProgressState).cast();
        }

        backend::clear_last_error();
        // SAFETY: `c_path` is NUL-terminated and outlives the call; `mp` is fully initialised
        // from llama.cpp's defaults; the progress state (if any) outlives the call and is only
        // touched by the trampoline during it.
        let raw = unsafe { sys::llama_model_load_from_file(c_path.as_ptr(), mp) };
        if let Some(state) = progress.as_mut() {
            if let Some(payload) = state.panic.take() {
                if let Some(ptr) = NonNull::new(raw) {
                    // SAFETY: a model we own and have not handed out.
                    unsafe { sys::llama_model_free(ptr.as_ptr()) };
                }
                resume_unwind(payload);
            }
        }
        let Some(ptr) = NonNull::new(raw) else {
            if progress.as_ref().is_some_and(|s| s.cancelled) {
                return Err(LoadError::Cancelled {
                    path: path.to_owned(),
                });
            }
            return Err(LoadError::Llama {
                path: path.to_owned(),
                reason: backend::take_last_error("unknown error (enable the llama.cpp log)"),
            });
        };
        Ok(Self {
            handle: Arc::new(ModelHandle { ptr, info }),
        })
    }

    /// Metadata read from the GGUF header.
    pub fn info(&self) -> &ModelInfo {
        &self.handle.info
    }

    /// Decoder blocks.
    pub fn n_layer(&self) -> u32 {
        self.handle.info.n_layer
    }

    /// Hidden size.
    pub fn n_embd(&self) -> u32 {
        self.handle.info.n_embd
    }

    /// Vocabulary size as llama.cpp sees it.
    pub fn n_vocab(&self) -> i32 {
        // SAFETY: the vocabulary pointer is valid while the model lives.
        unsafe { sys::llama_vocab_n_tokens(self.vocab_ptr()) }
    }

    /// Bytes of all weights as loaded.
    pub fn size_bytes(&self) -> u64 {
        // SAFETY: read-only query on a live model.
        unsafe { sys::llama_model_size(self.handle.ptr.as_ptr()) }
    }

    /// Number of parameters.
    pub fn n_params(&self) -> u64 {
        // SAFETY: read-only query on a live model.
        unsafe { sys::llama_model_n_params(self.handle.ptr.as_ptr()) }
    }

    /// The beginning-of-sequence token, if the model has one.
    pub fn token_bos(&self) -> Option<Token> {
        // SAFETY: read-only query on a live vocabulary.
        let t = unsafe { sys::llama_vocab_bos(self.vocab_ptr()) };
        (t >= 0).then_some(t)
    }

    /// The end-of-sequence token, if the model has one.
    pub fn token_eos(&self) -> Option<Token> {
        // SAFETY: read-only query on a live vocabulary.
        let t = unsafe { sys::llama_vocab_eos(self.vocab_ptr()) };
        (t >= 0).then_some(t)
    }

    /// The end-of-turn token (`<|eot_id|>` for Llama 3), if the model has one.
    pub fn token_eot(&self) -> Option<Token> {
        // SAFETY: read-only query on a live vocabulary.
        let t = unsafe { sys::llama_vocab_eot(self.vocab_ptr()) };
        (t >= 0).then_some(t)
    }

    /// Whether `token` ends generation (EOS, EOT and the like).
    pub fn is_eog(&self, token: Token) -> bool {
        // SAFETY: read-only query; llama.cpp bounds-checks the id.
        unsafe { sys::llama_vocab_is_eog(self.vocab_ptr(), token) }
    }

    /// Whether the tokenizer adds BOS by itself.
    pub fn adds_bos(&self) -> bool {
        // SAFETY: read-only query on a live vocabulary.
        unsafe { sys::llama_vocab_get_add_bos(self.vocab_ptr()) }
    }

    pub(crate) fn raw(&self) -> *mut sys::llama_model {
        self.handle.ptr.as_ptr()
    }

    pub(crate) fn vocab_ptr(&self) -> *const sys::llama_vocab {
        // SAFETY: returns a pointer owned by the live model.
        unsafe { sys::llama_model_get_vocab(self.handle.ptr.as_ptr()) }
    }
}

/// Reads the facts acap needs from the GGUF header, natively.
impl ModelInfo {
    /// Reads the facts from a model's GGUF header natively, without loading any weights.
    ///
    /// # Errors
    /// See [`LoadError`]: each variant says what was wrong.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        read_info(path.as_ref(), &[], false)
    }
}

/// ggml's `TENSOR_ALIGNMENT`: a mapped tensor's data must start at a multiple of it.
const TENSOR_ALIGNMENT: u64 = 32;

/// With the file mapped, llama.cpp hands each tensor's bytes to ggml in place, and ggml
/// asserts (aborting the process) that they start on a 32-byte boundary; a file written with
/// a smaller `general.alignment` puts them elsewhere. Read into memory they are copied to
/// aligned buffers, so `--no-mmap` loads such a file.
fn check_mmap_alignment(path: &Path, gguf: &GgufFile) -> Result<(), LoadError> {
    let base = gguf.data_offset();
    match gguf
        .tensors()
        .iter()
        .find(|t| (base + t.offset()) % TENSOR_ALIGNMENT != 0)
    {
        None => Ok(()),
        Some(t) => Err(LoadError::Hyperparameter {
            path: path.to_owned(),
            key: "general.alignment".into(),
            value: gguf.alignment().to_string(),
            reason: format!(
                "tensor '{}' starts at byte {}, not a multiple of {TENSOR_ALIGNMENT}: mapped, \
                 llama.cpp asserts it is (load it without mmap: --no-mmap)",
                t.name(),
                base + t.offset()
            ),
        }),
    }
}

/// The header's facts, checked as llama.cpp will read the file: with `overrides` on top and,
/// when `mapped`, its tensors in place.
fn read_info(
    path: &Path,
    overrides: &[(String, MetadataOverride)],
    mapped: bool,
) -> Result<ModelInfo, LoadError> {
    let file_size = std::fs::metadata(path)
        .map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?
        .len();
    let gguf = GgufFile::open(path)?;
    // llama.cpp ignores what follows the last tensor; it may be harmless (a tool's appendix)
    // or a sign of a damaged file, so it is said, not refused.
    let trailing = gguf.trailing_bytes();
    if trailing > 0 {
        log::warn!(
            "{}: {trailing} bytes after the last tensor's data that no tensor describes",
            path.display()
        );
    }
    let bad = |reason: String| LoadError::Llama {
        path: path.to_owned(),
        reason,
    };
    let architecture = gguf
        .get_str("general.architecture")
        .map_err(|e| bad(e.to_string()))?
        .to_owned();
    let metadata = crate::hparams::Metadata {
        gguf: &gguf,
        overrides: overrides
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    MetadataOverride::Int(i) => Value::I64(*i),
                    MetadataOverride::Float(x) => Value::F64(*x),
                    MetadataOverride::Bool(b) => Value::Bool(*b),
                    MetadataOverride::Str(t) => Value::String(t.clone()),
                };
                (k.clone(), v)
            })
            .collect(),
    };
    crate::hparams::check(&metadata, &architecture).map_err(|h| LoadError::Hyperparameter {
        path: path.to_owned(),
        key: h.key,
        value: h.value,
        reason: h.reason,
    })?;
    let arch_u32 = |key: &str| {
        let key = format!("{architecture}.{key}");
        gguf.get_uint(&key)
            .map_err(|e| bad(e.to_string()))
            .and_then(|v| u32::try_from(v).map_err(|_| bad(format!("{key} = {v} is too large"))))
    };
    let n_vocab = match gguf.get_str_array("tokenizer.ggml.tokens") {
        Ok(tokens) => tokens.len() as u32,
        Err(_) => arch_u32("vocab_size")?,
    };
    let info = ModelInfo {
        path: path.to_owned(),
        name: gguf.get_str("general.name").ok().map(str::to_owned),
        n_layer: arch_u32("block_count")?,
        n_embd: arch_u32("embedding_length")?,
        n_ctx_train: arch_u32("context_length")?,
        n_vocab,
        chat_template: gguf
            .get_str("tokenizer.chat_template")
            .ok()
            .map(str::to_owned),
        file_size,
        architecture,
    };
    if mapped {
        check_mmap_alignment(path, &gguf)?;
    }
    Ok(info)
}
