//! LoRA adapters (`--lora`, `--lora-scaled`), loaded by llama.cpp for one model and applied
//! to a session's context with a scale.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use crate::error::LoadError;
use crate::llama::backend;
use crate::model::Model;

/// A LoRA adapter for one model. Sessions hold it (via `Arc`) for as long as they use it.
pub struct LoraAdapter {
    ptr: NonNull<sys::llama_adapter_lora>,
    path: PathBuf,
    /// The adapter is valid only while its model lives.
    model: Model,
}

// SAFETY: an adapter is immutable weights after loading; llama.cpp reads it from any thread
// and `LoraAdapter` only frees it in `Drop`.
unsafe impl Send for LoraAdapter {}
// SAFETY: as above: shared use only reads the weights.
unsafe impl Sync for LoraAdapter {}

impl std::fmt::Debug for LoraAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoraAdapter")
            .field("path", &self.path)
            .finish()
    }
}

impl PartialEq for LoraAdapter {
    fn eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }
}

impl Drop for LoraAdapter {
    fn drop(&mut self) {
        // SAFETY: loaded by `load` for `self.model`, which is still alive (a field dropped
        // after this); freed once, here. Contexts using it hold an `Arc` of `self`.
        unsafe { sys::llama_adapter_lora_free(self.ptr.as_ptr()) };
    }
}

impl LoraAdapter {
    /// Loads the adapter at `path` for `model` (its architecture and tensor shapes must
    /// match).
    ///
    /// # Errors
    /// [`LoadError::Io`] when the file cannot be read, [`LoadError::Llama`] with llama.cpp's
    /// reason when it refuses the adapter.
    pub fn load(model: &Model, path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        std::fs::metadata(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        let c_path =
            CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| LoadError::BadPath {
                path: path.to_owned(),
            })?;
        backend::ensure();
        backend::clear_last_error();
        // SAFETY: the model is live (kept alive by the adapter's `model` field); the path is
        // NUL-terminated. llama.cpp catches its own exceptions and returns NULL.
        let raw = unsafe { sys::llama_adapter_lora_init(model.raw(), c_path.as_ptr()) };
        let ptr = NonNull::new(raw).ok_or_else(|| LoadError::Llama {
            path: path.to_owned(),
            reason: backend::take_last_error("not a LoRA adapter for this model"),
        })?;
        Ok(Self {
            ptr,
            path: path.to_owned(),
            model: model.clone(),
        })
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model it belongs to.
    pub fn model(&self) -> &Model {
        &self.model
    }

    pub(crate) fn raw(&self) -> *mut sys::llama_adapter_lora {
        self.ptr.as_ptr()
    }
}
