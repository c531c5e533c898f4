//! Quantising a model file with llama.cpp (`llama-quantize`).

use std::ffi::CString;
use std::path::Path;

use llama_cpp_sys_2 as sys;

use crate::error::QuantizeError;
use crate::llama::backend;

/// Target types of [`quantize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantType {
    /// All matrices F16.
    F16,
    /// 8-bit blocks of 32 (`Q8_0`).
    Q8_0,
    /// 4-bit K-quants, medium mix (`Q4_K_M`).
    Q4KM,
}

impl QuantType {
    /// The name llama.cpp uses (`Q8_0`, `Q4_K_M`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "F16",
            Self::Q8_0 => "Q8_0",
            Self::Q4KM => "Q4_K_M",
        }
    }

    fn ftype(self) -> sys::llama_ftype {
        match self {
            Self::F16 => sys::LLAMA_FTYPE_MOSTLY_F16,
            Self::Q8_0 => sys::LLAMA_FTYPE_MOSTLY_Q8_0,
            Self::Q4KM => sys::LLAMA_FTYPE_MOSTLY_Q4_K_M,
        }
    }
}

/// Quantises `input` into `output` with `n_threads` threads (0: all cores).
///
/// # Errors
/// See [`QuantizeError`]: each variant says what was wrong.
pub fn quantize(
    input: &Path,
    output: &Path,
    ty: QuantType,
    n_threads: u32,
) -> Result<(), QuantizeError> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| QuantizeError::BadPath {
            path: p.to_owned(),
            reason: "contains a NUL byte".into(),
        })
    };
    if !input.is_file() {
        return Err(QuantizeError::BadPath {
            path: input.to_owned(),
            reason: "no such file".into(),
        });
    }
    let (c_in, c_out) = (c(input)?, c(output)?);
    backend::ensure();
    // SAFETY: returns a plain struct of defaults.
    let mut params = unsafe { sys::llama_model_quantize_default_params() };
    params.ftype = ty.ftype();
    params.nthread = n_threads as i32;
    // SAFETY: both paths are NUL-terminated and outlive the call; `params` starts from
    // llama.cpp's defaults and holds no pointers of ours.
    let code = unsafe { sys::llama_model_quantize(c_in.as_ptr(), c_out.as_ptr(), &params) };
    if code != 0 {
        return Err(QuantizeError::Failed {
            input: input.to_owned(),
            output: output.to_owned(),
            code,
        });
    }
    Ok(())
}
