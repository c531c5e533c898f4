//! The boundary every export goes through: panics are caught, failures become an
//! `acap_result` plus a thread-local message, pointer arguments are checked.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::result::{Failure, acap_result};

thread_local! {
    /// The message of the last call on this thread (empty after a success).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(function: &str, message: &str) {
    // Interior NULs cannot come from acap's messages, but never let them lose the message.
    let text = format!("{function}: {message}").replace('\0', "\\0");
    let c = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs the body of export `function`: clears the thread's error, catches panics, records the
/// message of a failure.
pub(crate) fn guard(
    function: &'static str,
    body: impl FnOnce() -> Result<(), Failure>,
) -> acap_result {
    LAST_ERROR.with(|e| *e.borrow_mut() = CString::default());
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => acap_result::ACAP_OK,
        Ok(Err(f)) => {
            set_last_error(function, &f.message);
            f.code
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            set_last_error(function, &format!("internal error (panic): {what}"));
            acap_result::ACAP_PANIC
        }
    }
}

/// Runs an export that cannot fail but must not unwind (getters, `_free`): a panic yields
/// `fallback`.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// The message describing the last call on the calling thread that failed: empty (`""`)
/// when the last acap call on this thread succeeded.
///
/// The string belongs to acap and stays valid until the next acap call on the same thread;
/// copy it to keep it. Never returns NULL. Thread-safe (each thread has its own message).
#[unsafe(no_mangle)]
pub extern "C" fn acap_last_error_message() -> *const c_char {
    guard_value(c"".as_ptr(), || LAST_ERROR.with(|e| e.borrow().as_ptr()))
}

/// A borrowed reference from a pointer argument, or `ACAP_NULL_ARGUMENT` naming it.
///
/// # Safety
/// `p` is NULL or points to a live `T` that is not mutated for `'a`.
pub(crate) unsafe fn arg<'a, T>(p: *const T, name: &str) -> Result<&'a T, Failure> {
    // SAFETY: by this function's contract.
    unsafe { p.as_ref() }.ok_or_else(|| Failure::null(name))
}

/// A string argument: `ACAP_NULL_ARGUMENT` for NULL, `ACAP_INVALID_UTF8` for bad UTF-8.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that lives for `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: non-NULL and NUL-terminated by this function's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        Failure::new(
            acap_result::ACAP_INVALID_UTF8,
            format!("argument `{name}` is not valid UTF-8: {e}"),
        )
    })
}

/// Like [`str_arg`], but NULL is `None`.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(
    p: *const c_char,
    name: &str,
) -> Result<Option<&'a str>, Failure> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { str_arg(p, name) }.map(Some)
    }
}

/// A slice argument of `len` elements; NULL is allowed only when `len` is 0.
///
/// # Safety
/// `p` is NULL or points to `len` initialised `T`s that live for `'a`.
pub(crate) unsafe fn slice_arg<'a, T>(
    p: *const T,
    len: usize,
    name: &str,
) -> Result<&'a [T], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: non-NULL, `len` elements by this function's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Checks that an out-parameter is not NULL, before any work is done.
pub(crate) fn out_arg<T>(p: *mut T, name: &str) -> Result<(), Failure> {
    if p.is_null() {
        Err(Failure::null(name))
    } else {
        Ok(())
    }
}

/// Writes an out-parameter (checked with [`out_arg`] beforehand); called only on success.
///
/// # Safety
/// `p` is non-NULL, aligned and writable for a `T`.
pub(crate) unsafe fn write_out<T>(p: *mut T, value: T) {
    // SAFETY: by this function's contract. `write` does not drop the (uninitialised) old value.
    unsafe { p.write(value) };
}

/// Moves `value` to the heap and hands ownership to C.
pub(crate) fn into_raw<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back ownership of an object handed out by [`into_raw`] and drops it; NULL is a no-op.
///
/// # Safety
/// `p` is NULL or came from [`into_raw`] for the same `T` and was not freed before.
pub(crate) unsafe fn free_raw<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: by this function's contract.
        drop(unsafe { Box::from_raw(p) });
    }
}
