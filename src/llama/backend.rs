//! Process-wide llama.cpp setup: backend initialisation (once) and its log routed to the `log`
//! crate under the target `llama.cpp`.
//!
//! llama.cpp is quiet by default: nothing is printed unless the application installs a logger
//! (e.g. `env_logger`) and enables the target. Its INFO lines map to `debug`, DEBUG to `trace`,
//! so `-v`-style verbosity is a matter of the logger's level.

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use llama_cpp_sys_2 as sys;

static INIT: Once = Once::new();

thread_local! {
    /// The first error-level line llama.cpp logged on this thread since `clear_last_error`,
    /// to explain a failed call.
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The level of the previous line, for llama.cpp's "continuation" level.
    static LAST_LEVEL: RefCell<log::Level> = const { RefCell::new(log::Level::Debug) };
    /// While a decode runs on this thread: the flag that, once raised, means the caller asked
    /// the computation to stop (so llama.cpp's "failed to compute graph" lines are expected).
    static STOPPING: Cell<*const AtomicBool> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` (a decode) with llama.cpp's error lines lowered to debug once `stop` is raised:
/// an abort the caller asked for (a user's Ctrl-C) is not an error to print.
pub(crate) fn quiet_when_stopped<R>(stop: &AtomicBool, f: impl FnOnce() -> R) -> R {
    // The pointer is kept only until `f` returns (the guard clears it, also on unwinding),
    // while `stop` is borrowed.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            STOPPING.with(|s| s.set(std::ptr::null()));
        }
    }
    STOPPING.with(|s| s.set(std::ptr::from_ref(stop)));
    let _reset = Reset;
    f()
}

/// Initialises llama.cpp's backends once per process. Every entry point calls this.
pub(crate) fn ensure() {
    INIT.call_once(|| {
        // SAFETY: `log_trampoline` has the signature llama.cpp expects and never unwinds; the
        // null user pointer is never dereferenced. Setting the callback before the backend
        // starts means no line is printed to stderr behind the logger's back.
        unsafe { sys::llama_log_set(Some(log_trampoline), std::ptr::null_mut()) };
        // SAFETY: called once, before any other llama.cpp call of this crate (the `Once`).
        unsafe { sys::llama_backend_init() };
    });
}

/// Takes the first error line llama.cpp logged on this thread since `clear_last_error` (the
/// cause, not the generic lines after it), or `fallback`.
pub(crate) fn take_last_error(fallback: &str) -> String {
    LAST_ERROR
        .with(|e| e.borrow_mut().take())
        .unwrap_or_else(|| fallback.to_owned())
}

/// Forgets any earlier error line, before a call whose failure we want to explain.
pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|e| *e.borrow_mut() = None);
}

unsafe extern "C" fn log_trampoline(
    level: sys::ggml_log_level,
    text: *const c_char,
    _: *mut c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string valid for the duration of the call.
    let text = unsafe { CStr::from_ptr(text) };
    // A panic in a logger must not unwind into C; the line is dropped instead.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let text = text.to_string_lossy();
        let line = text.trim_end();
        let level = match level {
            sys::GGML_LOG_LEVEL_ERROR => log::Level::Error,
            sys::GGML_LOG_LEVEL_WARN => log::Level::Warn,
            sys::GGML_LOG_LEVEL_INFO => log::Level::Debug,
            sys::GGML_LOG_LEVEL_CONT => LAST_LEVEL.with(|l| *l.borrow()),
            _ => log::Level::Trace,
        };
        let stop = STOPPING.with(Cell::get);
        // SAFETY: a non-null pointer was set by `quiet_when_stopped` on this thread and points
        // to the flag it borrows until it clears the pointer.
        let stopped = !stop.is_null() && unsafe { (*stop).load(Ordering::Relaxed) };
        let level = if stopped && level <= log::Level::Warn {
            log::Level::Debug
        } else {
            level
        };
        LAST_LEVEL.with(|l| *l.borrow_mut() = level);
        // The first error line since `clear_last_error` is the cause; llama.cpp follows it
        // with generic ones ("failed to load model").
        if level == log::Level::Error && !line.is_empty() {
            LAST_ERROR.with(|e| {
                e.borrow_mut().get_or_insert_with(|| line.to_owned());
            });
        }
        if !line.is_empty() {
            log::log!(target: "llama.cpp", level, "{line}");
        }
    }));
}
