//! H-neuron suppression files (`--h-suppress`, spec section 10).

use std::ffi::c_char;
use std::sync::Arc;

use engine::HSuppress;

use crate::boundary::{arg, free_raw, guard, guard_value, into_raw, out_arg, str_arg, write_out};
use crate::result::acap_result;
use crate::session::acap_session;

/// A validated H-neuron suppression file, applied to sessions with
/// `acap_session_set_h_suppress`. Released by `acap_h_suppress_free`; sessions keep what
/// they were given.
pub struct acap_h_suppress {
    pub(crate) h: Arc<HSuppress>,
}

/// Loads and strictly validates a suppression file: every tensor must be `h_suppress.N`
/// (N a 0-based block), F32, 1-D and finite. Its fit to a model (blocks, lengths equal to
/// `n_ff`) is checked by `acap_session_set_h_suppress`.
///
/// On success `*out` receives a new object released with `acap_h_suppress_free`.
/// `ACAP_H_SUPPRESS` names the file, the tensor and the reason. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_h_suppress_load(
    path: *const c_char,
    out: *mut *mut acap_h_suppress,
) -> acap_result {
    guard("acap_h_suppress_load", || {
        // SAFETY: NULL or NUL-terminated.
        let path = unsafe { str_arg(path, "path") }?;
        out_arg(out, "out")?;
        let h = Arc::new(HSuppress::open(path)?);
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, into_raw(acap_h_suppress { h })) };
        Ok(())
    })
}

/// Neurons whose scale is not 1, over all blocks (0 for NULL). Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_h_suppress_neurons(h: *const acap_h_suppress) -> usize {
    guard_value(0, || {
        // SAFETY: NULL or a live object.
        unsafe { h.as_ref() }.map_or(0, |h| h.h.suppressed())
    })
}

/// Releases a suppression file. NULL is a no-op.
/// Thread-safety: no other call may use the object meanwhile.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_h_suppress_free(h: *mut acap_h_suppress) {
    guard_value((), || {
        // SAFETY: NULL or an object from `acap_h_suppress_load`, freed once.
        unsafe { free_raw(h) }
    })
}

/// Applies H-neuron suppression (composes with capping and control vectors), or removes it
/// when `h` is NULL. A file that does not fit the model (a block it lacks, a length other
/// than the block's `n_ff`, an architecture whose FFN activation acap cannot find) fails
/// with `ACAP_H_SUPPRESS` and leaves the previous setting. Clears the KV cache when the
/// setting changes.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_set_h_suppress(
    session: *mut acap_session,
    h: *const acap_h_suppress,
) -> acap_result {
    guard("acap_session_set_h_suppress", || {
        // SAFETY: NULL or a live session.
        let s = unsafe { arg(session, "session") }?;
        // SAFETY: NULL or a live suppression file.
        let h = unsafe { h.as_ref() }.map(|h| h.h.clone());
        s.lock()?.set_h_suppress(h)?;
        Ok(())
    })
}

/// Switches the session's suppression off (`on` = 0) or back on for the following calls.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_set_h_suppress_enabled(
    session: *mut acap_session,
    on: bool,
) -> acap_result {
    guard("acap_session_set_h_suppress_enabled", || {
        // SAFETY: NULL or a live session.
        let s = unsafe { arg(session, "session") }?;
        s.lock()?.set_h_suppress_enabled(on);
        Ok(())
    })
}
