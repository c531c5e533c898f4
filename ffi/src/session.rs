//! Sessions: creation, capping configuration, telemetry, control vectors, cancellation.

use std::sync::{Mutex, MutexGuard, TryLockError};

use engine::{CancelHandle, CapConfig, LayerRange, Session, SessionParams};

use crate::axes::{acap_axes, acap_control_vector};
use crate::boundary::{arg, free_raw, guard, guard_value, into_raw, out_arg, write_out};
use crate::model::acap_model;
use crate::result::{Failure, acap_result};

/// A llama.cpp context over a model, with its KV cache kept across calls and its own capping
/// settings. Created by `acap_session_new`, released by `acap_session_free`. It holds a
/// reference to its model.
///
/// Thread-safety: a session is used by one call at a time. A call made while another is
/// running on the same session (from another thread, or from inside a text callback) returns
/// `ACAP_BUSY` without doing anything. `acap_session_cancel` is the exception: any thread may
/// call it at any time.
pub struct acap_session {
    cancel: CancelHandle,
    inner: Mutex<Session>,
}

impl acap_session {
    /// Locks the session for one call.
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Session>, Failure> {
        match self.inner.try_lock() {
            Ok(g) => Ok(g),
            Err(TryLockError::WouldBlock) => Err(Failure::new(
                acap_result::ACAP_BUSY,
                "the session is in use by another call",
            )),
            Err(TryLockError::Poisoned(_)) => Err(Failure::new(
                acap_result::ACAP_PANIC,
                "an earlier call on this session failed internally; free it",
            )),
        }
    }
}

/// Context settings. Start from `acap_session_params_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct acap_session_params {
    /// Context size in tokens; 0 takes the model's training context (`-c`).
    pub n_ctx: u32,
    /// Logical batch size (`-b`).
    pub n_batch: u32,
    /// Physical batch size (`-ub`), at most `n_batch`.
    pub n_ubatch: u32,
    /// Threads for generation (`-t`); 0 uses all cores.
    pub n_threads: u32,
    /// Threads for prompt processing; 0 uses `n_threads`.
    pub n_threads_batch: u32,
}

/// How to cap. Start from `acap_cap_params_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct acap_cap_params {
    /// First capped block (`--acap-layer-range START END`); `<= 0` means block 1.
    pub layer_start: i32,
    /// Last capped block; `<= 0` means the last block.
    pub layer_end: i32,
    /// Whether `threshold` was given (`--acap-threshold`).
    pub has_threshold: bool,
    /// `--acap-threshold T`: used, negated (`tau = -T`), for layers without a per-layer
    /// threshold in the first axis file, when `T > 0` (spec section 4).
    pub threshold: f32,
    /// Strength in 0..=1 (1 = full cap, acap's `--acap-alpha`).
    pub alpha: f32,
}

/// One capped block's telemetry since the last reset.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct acap_layer_stats {
    /// The block.
    pub layer: u32,
    /// Its threshold.
    pub tau: f32,
    /// Rows (tokens) the cap looked at.
    pub rows_seen: u64,
    /// Rows whose projection exceeded `tau` and were pulled back.
    pub rows_capped: u64,
    /// Mean excess over capped rows.
    pub mean_excess: f64,
    /// Largest excess.
    pub max_excess: f32,
}

/// The default context settings (n_ctx 4096, n_batch 2048, n_ubatch 512, all cores).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn acap_session_params_default() -> acap_session_params {
    let d = SessionParams::default();
    acap_session_params {
        n_ctx: d.n_ctx,
        n_batch: d.n_batch,
        n_ubatch: d.n_ubatch,
        n_threads: d.n_threads,
        n_threads_batch: d.n_threads_batch,
    }
}

/// The default capping settings: every block from 1 to the last, thresholds from the axis
/// file only, alpha 1. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn acap_cap_params_default() -> acap_cap_params {
    acap_cap_params {
        layer_start: 0,
        layer_end: 0,
        has_threshold: false,
        threshold: 0.0,
        alpha: 1.0,
    }
}

/// Creates a session over `model` (`params` may be NULL for the defaults). The session holds
/// its own reference to the model.
///
/// On success `*session_out` receives a new session released with `acap_session_free`.
/// Thread-safe (for different sessions).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_new(
    model: *const acap_model,
    params: *const acap_session_params,
    session_out: *mut *mut acap_session,
) -> acap_result {
    guard("acap_session_new", || {
        // SAFETY: NULL or a live model.
        let model = &unsafe { arg(model, "model") }?.model;
        // SAFETY: NULL or a valid params struct.
        let p = unsafe { params.as_ref() }
            .copied()
            .unwrap_or_else(|| acap_session_params_default());
        out_arg(session_out, "session_out")?;
        let params = SessionParams {
            n_ctx: p.n_ctx,
            n_batch: p.n_batch,
            n_ubatch: p.n_ubatch,
            n_threads: p.n_threads,
            n_threads_batch: p.n_threads_batch,
            ..SessionParams::default()
        };
        let session = Session::new(model, params)?;
        let handle = acap_session {
            cancel: session.cancel_handle(),
            inner: Mutex::new(session),
        };
        // SAFETY: checked non-NULL.
        unsafe { write_out(session_out, into_raw(handle)) };
        Ok(())
    })
}

/// Releases a session (its context and KV cache, and its model reference). NULL is a no-op.
/// Thread-safety: must not be called while another call on the session is running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_free(session: *mut acap_session) {
    guard_value((), || {
        // SAFETY: NULL or a session from `acap_session_new`, freed once.
        unsafe { free_raw(session) }
    })
}

/// Asks a running `acap_session_generate` / `acap_session_chat` on this session to stop as
/// soon as possible (it then returns `ACAP_OK` with stop reason `ACAP_STOP_CANCELLED`, or
/// `ACAP_CANCELLED` if it was still decoding the prompt). Does nothing when nothing runs.
/// Thread-safe: meant to be called from another thread (or a signal-watching thread).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_cancel(session: *const acap_session) -> acap_result {
    guard("acap_session_cancel", || {
        // SAFETY: NULL or a live session; the cancel handle is shared and atomic.
        unsafe { arg(session, "session") }?.cancel.cancel();
        Ok(())
    })
}

/// Empties the KV cache (the next call decodes its whole prompt).
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_clear(session: *mut acap_session) -> acap_result {
    guard("acap_session_clear", || {
        // SAFETY: NULL or a live session.
        unsafe { arg(session, "session") }?.lock()?.clear();
        Ok(())
    })
}

/// Switches deterministic mode on (`on` = 1) or off: while on, each call's output is
/// bit-identical to the same call on a fresh session, whatever the session ran before
/// (prompts are decoded as whole physical batches from position 0, and a cached prefix is
/// reused only in such batches). Changing the mode empties the KV cache.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_set_deterministic(
    session: *mut acap_session,
    on: bool,
) -> acap_result {
    guard("acap_session_set_deterministic", || {
        // SAFETY: NULL or a live session.
        unsafe { arg(session, "session") }?
            .lock()?
            .set_deterministic(on);
        Ok(())
    })
}

/// The context size in tokens, to `*n_ctx_out`.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_n_ctx(
    session: *const acap_session,
    n_ctx_out: *mut u32,
) -> acap_result {
    guard("acap_session_n_ctx", || {
        // SAFETY: NULL or a live session.
        let s = unsafe { arg(session, "session") }?;
        out_arg(n_ctx_out, "n_ctx_out")?;
        let n = s.lock()?.n_ctx();
        // SAFETY: checked non-NULL.
        unsafe { write_out(n_ctx_out, n) };
        Ok(())
    })
}

/// Starts capping with `axes` and `params` (NULL for `acap_cap_params_default()`), replacing
/// any earlier configuration, switched on. Everything is checked first: the axes' length
/// against the model, the threshold rules (spec section 4), a range that caps nothing, alpha,
/// and whether the model's graph has the `l_out` tensors. On failure the session keeps its
/// previous capping exactly. The session copies what it needs from `axes`.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_set_capping(
    session: *mut acap_session,
    axes: *const acap_axes,
    params: *const acap_cap_params,
) -> acap_result {
    guard("acap_session_set_capping", || {
        // SAFETY: NULL or a live session.
        let s = unsafe { arg(session, "session") }?;
        // SAFETY: NULL or a live axis set.
        let axes = unsafe { arg(axes, "axes") }?;
        // SAFETY: NULL or a valid params struct.
        let p = unsafe { params.as_ref() }
            .copied()
            .unwrap_or_else(|| acap_cap_params_default());
        engine::cap::check_alpha(p.alpha)?;
        let cfg = CapConfig::new(axes.set().clone())
            .with_layer_range(LayerRange::new(p.layer_start.into(), p.layer_end.into()))
            .with_threshold(p.has_threshold.then_some(p.threshold))
            .with_alpha(p.alpha);
        s.lock()?.set_capping(Some(cfg))?;
        Ok(())
    })
}

/// Removes capping altogether (telemetry included).
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_clear_capping(session: *mut acap_session) -> acap_result {
    guard("acap_session_clear_capping", || {
        // SAFETY: NULL or a live session.
        unsafe { arg(session, "session") }?
            .lock()?
            .set_capping(None)?;
        Ok(())
    })
}

/// Switches configured capping on or off for the following calls, keeping its settings.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_set_capping_enabled(
    session: *mut acap_session,
    enabled: bool,
) -> acap_result {
    guard("acap_session_set_capping_enabled", || {
        // SAFETY: NULL or a live session.
        unsafe { arg(session, "session") }?
            .lock()?
            .set_capping_enabled(enabled);
        Ok(())
    })
}

/// Whether capping is configured and switched on, to `*enabled_out`.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_capping_enabled(
    session: *const acap_session,
    enabled_out: *mut bool,
) -> acap_result {
    guard("acap_session_capping_enabled", || {
        // SAFETY: NULL or a live session.
        let s = unsafe { arg(session, "session") }?;
        out_arg(enabled_out, "enabled_out")?;
        let on = s.lock()?.capping_enabled();
        // SAFETY: checked non-NULL.
        unsafe { write_out(enabled_out, on) };
        Ok(())
    })
}

/// Changes alpha (0..=1) for the following calls; `ACAP_INVALID_ARGUMENT` otherwise.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_set_cap_alpha(
    session: *mut acap_session,
    alpha: f32,
) -> acap_result {
    guard("acap_session_set_cap_alpha", || {
        // SAFETY: NULL or a live session.
        unsafe { arg(session, "session") }?
            .lock()?
            .set_cap_alpha(alpha)?;
        Ok(())
    })
}

/// Re-resolves every threshold with a new CLI-style `--acap-threshold` (`has_threshold`
/// false: as if it were absent), by the rules of spec section 4. On failure nothing changes.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_set_cap_threshold(
    session: *mut acap_session,
    has_threshold: bool,
    threshold: f32,
) -> acap_result {
    guard("acap_session_set_cap_threshold", || {
        // SAFETY: NULL or a live session.
        unsafe { arg(session, "session") }?
            .lock()?
            .set_cap_threshold(has_threshold.then_some(threshold))?;
        Ok(())
    })
}

/// Sets the raw threshold `tau` of one capped block. `ACAP_CAP_CONFIG` if the block is not
/// capped, `ACAP_THRESHOLD` if `tau` is not finite.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_set_layer_threshold(
    session: *mut acap_session,
    layer: u32,
    tau: f32,
) -> acap_result {
    guard("acap_session_set_layer_threshold", || {
        // SAFETY: NULL or a live session.
        unsafe { arg(session, "session") }?
            .lock()?
            .set_layer_tau(layer, tau)?;
        Ok(())
    })
}

/// The number of capped blocks (0 without capping), to `*n_out`: the size
/// `acap_session_cap_stats` needs.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_cap_layer_count(
    session: *const acap_session,
    n_out: *mut usize,
) -> acap_result {
    guard("acap_session_cap_layer_count", || {
        // SAFETY: NULL or a live session.
        let s = unsafe { arg(session, "session") }?;
        out_arg(n_out, "n_out")?;
        let n = s
            .lock()?
            .cap_plan()
            .map_or(0, |p| p.capped_layers().count());
        // SAFETY: checked non-NULL.
        unsafe { write_out(n_out, n) };
        Ok(())
    })
}

/// Copies the telemetry of every capped block, in block order, into `stats[0..capacity]` and
/// the count to `*n_out`. `ACAP_BUFFER_TOO_SMALL` (nothing written) when `capacity` is less
/// than `acap_session_cap_layer_count`.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_cap_stats(
    session: *const acap_session,
    stats: *mut acap_layer_stats,
    capacity: usize,
    n_out: *mut usize,
) -> acap_result {
    guard("acap_session_cap_stats", || {
        // SAFETY: NULL or a live session.
        let s = unsafe { arg(session, "session") }?;
        out_arg(n_out, "n_out")?;
        let s = s.lock()?;
        let taus: Vec<f32> = s
            .cap_plan()
            .map(|p| p.capped_layers().map(|(_, l)| l.tau).collect())
            .unwrap_or_default();
        let rows: Vec<acap_layer_stats> = s
            .cap_stats()
            .into_iter()
            .zip(taus)
            .map(|((layer, st), tau)| acap_layer_stats {
                layer,
                tau,
                rows_seen: st.rows_seen,
                rows_capped: st.rows_capped,
                mean_excess: st.mean_excess(),
                max_excess: st.max_excess,
            })
            .collect();
        if rows.len() > capacity {
            return Err(Failure::new(
                acap_result::ACAP_BUFFER_TOO_SMALL,
                format!("{} capped blocks, capacity {capacity}", rows.len()),
            ));
        }
        if !rows.is_empty() {
            out_arg(stats, "stats")?;
            // SAFETY: `stats` is writable for `capacity >= rows.len()` elements by contract.
            unsafe { std::ptr::copy_nonoverlapping(rows.as_ptr(), stats, rows.len()) };
        }
        // SAFETY: checked non-NULL.
        unsafe { write_out(n_out, rows.len()) };
        Ok(())
    })
}

/// Zeroes the capping telemetry.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_reset_cap_stats(session: *mut acap_session) -> acap_result {
    guard("acap_session_reset_cap_stats", || {
        // SAFETY: NULL or a live session.
        unsafe { arg(session, "session") }?
            .lock()?
            .reset_cap_stats();
        Ok(())
    })
}

/// Applies control vectors (added to each block's output before the cap), or removes them
/// when `cv` is NULL. Clears the KV cache. The session copies the vectors.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_set_control_vector(
    session: *mut acap_session,
    cv: *const acap_control_vector,
) -> acap_result {
    guard("acap_session_set_control_vector", || {
        // SAFETY: NULL or a live session.
        let s = unsafe { arg(session, "session") }?;
        // SAFETY: NULL or a live control vector.
        let cv = unsafe { cv.as_ref() }.map(|c| &c.cv);
        s.lock()?.set_control_vector(cv)?;
        Ok(())
    })
}
