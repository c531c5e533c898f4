//! Axis sets (one or more `--acap` files, summed) and control vectors.

use std::ffi::c_char;

use engine::{AxisFile, AxisSet, ControlVector, LayerRange};

use crate::boundary::{
    arg, free_raw, guard, guard_value, into_raw, out_arg, slice_arg, str_arg, write_out,
};
use crate::result::{Failure, acap_result};

/// Capping axes: one or more axis files summed per layer, as several `--acap` flags are.
/// Created by `acap_axes_load_file` / `acap_axes_load_memory`, grown by `acap_axes_add_*`,
/// released by `acap_axes_free`. Sessions copy what they need, so axes may be freed right
/// after configuring capping. Not thread-safe for concurrent `add`; reading is.
pub struct acap_axes {
    files: Vec<AxisFile>,
    set: AxisSet,
}

/// A summary of an axis set.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct acap_axes_info {
    /// Vector length (must equal the model's `n_embd`).
    pub n_embd: usize,
    /// Files summed.
    pub n_files: usize,
    /// Layers that have a direction.
    pub n_layers: usize,
    /// Lowest layer with a direction.
    pub first_layer: u32,
    /// Highest layer with a direction.
    pub last_layer: u32,
    /// Per-layer thresholds (`acap.threshold.L`) in the first file.
    pub n_thresholds: usize,
}

impl acap_axes {
    pub(crate) fn set(&self) -> &AxisSet {
        &self.set
    }

    fn with(files: Vec<AxisFile>) -> Result<Self, Failure> {
        let set = AxisSet::new(files.clone())?;
        Ok(Self { files, set })
    }
}

/// Reads one axis file from memory (a copy is taken).
///
/// # Safety
/// `data` is NULL or readable for `len` bytes.
unsafe fn file_from_memory(data: *const u8, len: usize) -> Result<AxisFile, Failure> {
    // SAFETY: forwarded contract.
    let bytes = unsafe { slice_arg(data, len, "data") }?;
    if bytes.is_empty() {
        return Err(Failure::null("data"));
    }
    Ok(AxisFile::from_bytes(bytes.to_vec())?)
}

fn create(file: AxisFile, out: *mut *mut acap_axes) -> Result<(), Failure> {
    let axes = acap_axes::with(vec![file])?;
    // SAFETY: the caller checked `out` with `out_arg`.
    unsafe { write_out(out, into_raw(axes)) };
    Ok(())
}

fn add(axes: &mut acap_axes, file: AxisFile) -> Result<(), Failure> {
    let mut files = axes.files.clone();
    files.push(file);
    // Validated as a whole first: a file that does not fit leaves the set unchanged.
    *axes = acap_axes::with(files)?;
    Ok(())
}

/// Loads an axis file (the reference llama.cpp layout, spec section 3).
///
/// On success `*axes_out` receives a new set released with `acap_axes_free`.
/// `ACAP_AXIS_FILE` names the file and the rule it breaks. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_axes_load_file(
    path: *const c_char,
    axes_out: *mut *mut acap_axes,
) -> acap_result {
    guard("acap_axes_load_file", || {
        // SAFETY: NULL or NUL-terminated.
        let path = unsafe { str_arg(path, "path") }?;
        out_arg(axes_out, "axes_out")?;
        create(AxisFile::open(path)?, axes_out)
    })
}

/// Loads an axis file held in memory (`len` bytes of GGUF; acap copies them).
///
/// As `acap_axes_load_file`; errors call the file `<memory>`. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_axes_load_memory(
    data: *const u8,
    len: usize,
    axes_out: *mut *mut acap_axes,
) -> acap_result {
    guard("acap_axes_load_memory", || {
        out_arg(axes_out, "axes_out")?;
        // SAFETY: `data` readable for `len` bytes by this function's contract.
        create(unsafe { file_from_memory(data, len) }?, axes_out)
    })
}

/// Adds another axis file to the set (its directions are summed into the set's, as a second
/// `--acap` flag does; thresholds still come from the first file only). On failure the set is
/// unchanged. Not thread-safe with other calls on the same set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_axes_add_file(
    axes: *mut acap_axes,
    path: *const c_char,
) -> acap_result {
    guard("acap_axes_add_file", || {
        // SAFETY: NULL or a live set, used by this thread only.
        let axes = unsafe { axes.as_mut() }.ok_or_else(|| Failure::null("axes"))?;
        // SAFETY: NULL or NUL-terminated.
        let path = unsafe { str_arg(path, "path") }?;
        add(axes, AxisFile::open(path)?)
    })
}

/// Adds an axis file held in memory; as `acap_axes_add_file`.
/// Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_axes_add_memory(
    axes: *mut acap_axes,
    data: *const u8,
    len: usize,
) -> acap_result {
    guard("acap_axes_add_memory", || {
        // SAFETY: NULL or a live set, used by this thread only.
        let axes = unsafe { axes.as_mut() }.ok_or_else(|| Failure::null("axes"))?;
        // SAFETY: `data` readable for `len` bytes by this function's contract.
        let file = unsafe { file_from_memory(data, len) }?;
        add(axes, file)
    })
}

/// Writes a summary of the set to `*info_out`. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_axes_get_info(
    axes: *const acap_axes,
    info_out: *mut acap_axes_info,
) -> acap_result {
    guard("acap_axes_get_info", || {
        // SAFETY: NULL or a live set.
        let axes = unsafe { arg(axes, "axes") }?;
        out_arg(info_out, "info_out")?;
        let layers = axes.set.layers();
        let info = acap_axes_info {
            n_embd: axes.set.n_embd(),
            n_files: axes.files.len(),
            n_layers: layers.len(),
            first_layer: layers.keys().next().copied().unwrap_or(0),
            last_layer: layers.keys().next_back().copied().unwrap_or(0),
            n_thresholds: axes.set.file_thresholds().len(),
        };
        // SAFETY: checked non-NULL.
        unsafe { write_out(info_out, info) };
        Ok(())
    })
}

/// Releases an axis set. NULL is a no-op. Sessions configured with it are not affected.
/// Thread-safety: no other call may use the object meanwhile.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_axes_free(axes: *mut acap_axes) {
    guard_value((), || {
        // SAFETY: NULL or a set from `acap_axes_load_*`, freed once.
        unsafe { free_raw(axes) }
    })
}

/// Control vectors (`--control-vector-scaled FILE SCALE`), summed and applied to a session
/// with `acap_session_set_control_vector`. Released by `acap_control_vector_free`.
pub struct acap_control_vector {
    pub(crate) cv: ControlVector,
}

/// Loads and sums `n` control-vector files, `paths[i]` scaled by `scales[i]` (`scales` may be
/// NULL for 1.0 each), applied to blocks `layer_start..=layer_end` (`<= 0` for the defaults:
/// block 1 and the last block, as `--control-vector-layer-range`).
///
/// On success `*cv_out` receives a new object released with `acap_control_vector_free`.
/// `ACAP_CONTROL_VECTOR` names the bad file or scale. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_control_vector_load(
    paths: *const *const c_char,
    scales: *const f32,
    n: usize,
    layer_start: i32,
    layer_end: i32,
    cv_out: *mut *mut acap_control_vector,
) -> acap_result {
    guard("acap_control_vector_load", || {
        // SAFETY: NULL (only with 0) or `n` string pointers.
        let paths = unsafe { slice_arg(paths, n, "paths") }?;
        let scales = if scales.is_null() {
            vec![1.0; n]
        } else {
            // SAFETY: non-NULL: `n` floats by this function's contract.
            unsafe { slice_arg(scales, n, "scales") }?.to_vec()
        };
        out_arg(cv_out, "cv_out")?;
        let files = paths
            .iter()
            .zip(scales)
            .enumerate()
            .map(|(i, (&p, s))| {
                // SAFETY: each path is NULL or NUL-terminated.
                let path = unsafe { str_arg(p, &format!("paths[{i}]")) }?;
                Ok((path, s))
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        let cv = ControlVector::load(&files)?
            .with_layer_range(LayerRange::new(layer_start.into(), layer_end.into()));
        // SAFETY: checked non-NULL.
        unsafe { write_out(cv_out, into_raw(acap_control_vector { cv })) };
        Ok(())
    })
}

/// Releases control vectors. NULL is a no-op. Sessions they were applied to keep them.
/// Thread-safety: no other call may use the object meanwhile.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_control_vector_free(cv: *mut acap_control_vector) {
    guard_value((), || {
        // SAFETY: NULL or an object from `acap_control_vector_load`, freed once.
        unsafe { free_raw(cv) }
    })
}
