//! Buffers acap allocates for C and the functions that release them.

use std::ffi::{CString, c_char};

use crate::boundary::guard_value;
use crate::result::Failure;

/// An acap token id.
#[allow(non_camel_case_types)]
pub type acap_token = i32;

/// Hands a Rust string to C as a NUL-terminated `char*` that `acap_string_free` releases.
pub(crate) fn string_to_c(s: String) -> Result<*mut c_char, Failure> {
    CString::new(s)
        .map(CString::into_raw)
        .map_err(|e| Failure::invalid(format!("text contains a NUL byte at {}", e.nul_position())))
}

/// Hands tokens to C; `acap_tokens_free` with the same count releases them.
pub(crate) fn tokens_to_c(tokens: Vec<acap_token>) -> (*mut acap_token, usize) {
    let boxed = tokens.into_boxed_slice();
    let n = boxed.len();
    (Box::into_raw(boxed).cast::<acap_token>(), n)
}

/// Frees a string that acap returned (`acap_model_detokenize`, `acap_session_complete`, ...).
///
/// NULL is a no-op. Passing a string acap did not allocate, or freeing one twice, is undefined
/// behaviour. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_string_free(s: *mut c_char) {
    guard_value((), || {
        if !s.is_null() {
            // SAFETY: by contract `s` came from `CString::into_raw` in `string_to_c`.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

/// Frees a token array that acap returned (`acap_model_tokenize`), with the count it returned.
///
/// NULL is a no-op. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_tokens_free(tokens: *mut acap_token, n_tokens: usize) {
    guard_value((), || {
        if !tokens.is_null() {
            let slice = std::ptr::slice_from_raw_parts_mut(tokens, n_tokens);
            // SAFETY: by contract `tokens`/`n_tokens` came from `tokens_to_c` (a boxed slice of
            // exactly `n_tokens` elements) and are freed once.
            drop(unsafe { Box::from_raw(slice) });
        }
    })
}
