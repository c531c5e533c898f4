//! Axis extraction from C.

use std::ffi::c_char;

use engine::LayerRange;
use engine::extraction::{ExtractParams, ThresholdRule, extract};

use crate::boundary::{arg, guard, opt_str_arg, slice_arg, str_arg};
use crate::model::acap_model;
use crate::result::{Failure, acap_result};

/// How to extract an axis. Start from `acap_extract_params_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct acap_extract_params {
    /// The persona system prompt (required). Borrowed.
    pub persona_system: *const c_char,
    /// Generic system prompts (NULL or "" entries mean no system prompt); NULL with 0 for the
    /// default (one condition without a system prompt). Borrowed.
    pub generic_systems: *const *const c_char,
    /// Number of `generic_systems`.
    pub n_generic_systems: usize,
    /// Prompt tokens kept (default 512).
    pub max_tokens: u32,
    /// First capping layer (`<= 0`: block 1).
    pub layer_start: i32,
    /// Last capping layer (`<= 0`: the last block).
    pub layer_end: i32,
    /// Threshold percentile of the persona projections (default 25).
    pub percentile: f32,
    /// Sequences decoded together (default 8).
    pub batch_sequences: u32,
    /// Threads (0: all cores).
    pub threads: u32,
}

/// The defaults of `acap axis extract`. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn acap_extract_params_default() -> acap_extract_params {
    let d = ExtractParams::default();
    acap_extract_params {
        persona_system: std::ptr::null(),
        generic_systems: std::ptr::null(),
        n_generic_systems: 0,
        max_tokens: d.max_tokens as u32,
        layer_start: 0,
        layer_end: 0,
        percentile: 25.0,
        batch_sequences: d.batch_sequences,
        threads: d.threads,
    }
}

/// Extracts an axis from `prompts` on `model` (spec section 9) and writes it, in the
/// reference layout with per-layer thresholds, to `output_path` (atomically). Nothing is
/// written on failure. Thread-safe (it uses its own context).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_axis_extract(
    model: *const acap_model,
    prompts: *const *const c_char,
    n_prompts: usize,
    params: *const acap_extract_params,
    output_path: *const c_char,
) -> acap_result {
    guard("acap_axis_extract", || {
        // SAFETY: NULL or a live model.
        let m = &unsafe { arg(model, "model") }?.model;
        // SAFETY: NULL (only with 0) or `n_prompts` string pointers.
        let raw = unsafe { slice_arg(prompts, n_prompts, "prompts") }?;
        let prompts = raw
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                // SAFETY: each prompt is NUL-terminated by contract.
                unsafe { str_arg(p, &format!("prompts[{i}]")) }.map(str::to_owned)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // SAFETY: NULL or a valid params struct.
        let p = unsafe { arg(params, "params") }?;
        // SAFETY: NUL-terminated by contract.
        let persona = unsafe { str_arg(p.persona_system, "params.persona_system") }?;
        // SAFETY: NULL (only with 0) or `n_generic_systems` pointers.
        let generics = unsafe {
            slice_arg(
                p.generic_systems,
                p.n_generic_systems,
                "params.generic_systems",
            )
        }?
        .iter()
        .enumerate()
        .map(|(i, &g)| {
            // SAFETY: NULL or NUL-terminated by contract.
            unsafe { opt_str_arg(g, &format!("params.generic_systems[{i}]")) }
                .map(|g| g.filter(|s| !s.is_empty()).map(str::to_owned))
        })
        .collect::<Result<Vec<_>, _>>()?;
        // SAFETY: NUL-terminated by contract.
        let output = unsafe { str_arg(output_path, "output_path") }?;
        let ep = ExtractParams {
            persona_system: persona.to_owned(),
            generic_systems: if generics.is_empty() {
                vec![None]
            } else {
                generics
            },
            max_tokens: p.max_tokens as usize,
            cap_layers: LayerRange::new(p.layer_start.into(), p.layer_end.into()),
            rule: ThresholdRule::Percentile(p.percentile),
            batch_sequences: p.batch_sequences,
            threads: p.threads,
            ..ExtractParams::default()
        };
        let ex = extract(m, &prompts, &ep, |_, _| {}).map_err(|e| {
            let code = match e {
                engine::extraction::ExtractError::Decode(_) => acap_result::ACAP_DECODE,
                engine::extraction::ExtractError::NoPrompts
                | engine::extraction::ExtractError::NoLayers { .. }
                | engine::extraction::ExtractError::BadParam { .. } => {
                    acap_result::ACAP_INVALID_ARGUMENT
                }
                _ => acap_result::ACAP_DECODE,
            };
            Failure::new(code, e.to_string())
        })?;
        let hint = m
            .info()
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        ex.to_writer(&hint, ep.rule)
            .write_file(output)
            .map_err(|e| Failure::new(acap_result::ACAP_AXIS_FILE, format!("{output}: {e}")))
    })
}
