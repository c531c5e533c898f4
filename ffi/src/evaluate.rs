//! The reward evaluator: score a (prompt, response) pair, or parse evaluator text from
//! elsewhere.

use std::ffi::{CString, c_char};

use engine::eval::{Evaluation, Evaluator, EvaluatorParams, Rubric, parse_evaluation};

use crate::boundary::{
    arg, free_raw, guard, guard_value, into_raw, opt_str_arg, out_arg, str_arg, write_out,
};
use crate::generate::ACAP_SEED_RANDOM;
use crate::result::{Failure, acap_result};
use crate::session::acap_session;

/// How to evaluate. Start from `acap_evaluator_params_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct acap_evaluator_params {
    /// 6 (default) or 5 (the v8 model card) dimensions.
    pub dimensions: u32,
    /// The system prompt the model was trained with, or NULL for acap's own. Borrowed.
    pub system_prompt: *const c_char,
    /// Temperature (default 0.3).
    pub temperature: f32,
    /// Seed; `ACAP_SEED_RANDOM` picks one.
    pub seed: u32,
    /// Most tokens of the answer (default 1000).
    pub max_tokens: u32,
}

/// A parsed evaluation. Released by `acap_evaluation_free`; its strings live as long as it.
/// Reading is thread-safe.
pub struct acap_evaluation {
    eval: Evaluation,
    names: Vec<CString>,
    red_flags: Option<CString>,
    raw: CString,
}

impl acap_evaluation {
    fn new(eval: Evaluation) -> Self {
        let c = |s: &str| CString::new(s.replace('\0', "")).unwrap_or_default();
        Self {
            names: eval.scores.iter().map(|(n, _)| c(n)).collect(),
            red_flags: eval.red_flags.as_deref().map(c),
            raw: c(&eval.raw),
            eval,
        }
    }
}

/// The reference settings: 6 dimensions, acap's system prompt, temperature 0.3, random seed,
/// 1000 tokens (frequency penalty 0.5 and the forcing grammar are always applied).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn acap_evaluator_params_default() -> acap_evaluator_params {
    let d = EvaluatorParams::default();
    acap_evaluator_params {
        dimensions: 6,
        system_prompt: std::ptr::null(),
        temperature: d.sampling.temperature,
        seed: ACAP_SEED_RANDOM,
        max_tokens: d.max_tokens as u32,
    }
}

fn rubric(dimensions: u32, system: Option<&str>) -> Result<Rubric, Failure> {
    let r = match dimensions {
        5 => Rubric::five_dimensions(),
        6 => Rubric::six_dimensions(),
        n => {
            return Err(Failure::invalid(format!(
                "dimensions = {n}: must be 5 or 6"
            )));
        }
    };
    Ok(match system {
        Some(s) => r.with_system_prompt(s),
        None => r,
    })
}

/// Scores `response` to `prompt` with the session's model (spec section 8): the answer is
/// forced into the evaluator format by a grammar and parsed. Capping is switched off for the
/// evaluation and restored afterwards. On success `*evaluation_out` receives a new object
/// released with `acap_evaluation_free`. Thread-safety: one call per session at a time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_evaluate(
    session: *mut acap_session,
    prompt: *const c_char,
    response: *const c_char,
    params: *const acap_evaluator_params,
    evaluation_out: *mut *mut acap_evaluation,
) -> acap_result {
    guard("acap_session_evaluate", || {
        // SAFETY: NULL or a live session.
        let s = unsafe { arg(session, "session") }?;
        // SAFETY: NULL or NUL-terminated.
        let prompt = unsafe { str_arg(prompt, "prompt") }?;
        // SAFETY: NULL or NUL-terminated.
        let response = unsafe { str_arg(response, "response") }?;
        // SAFETY: NULL or a valid params struct.
        let p = unsafe { params.as_ref() }
            .copied()
            .unwrap_or_else(|| acap_evaluator_params_default());
        // SAFETY: NULL or NUL-terminated.
        let system = unsafe { opt_str_arg(p.system_prompt, "params.system_prompt") }?;
        out_arg(evaluation_out, "evaluation_out")?;
        let mut ep = EvaluatorParams::default().with_rubric(rubric(p.dimensions, system)?);
        ep.sampling.temperature = p.temperature;
        ep.sampling.seed = (p.seed != ACAP_SEED_RANDOM).then_some(p.seed);
        ep.max_tokens = p.max_tokens as usize;
        let mut guard = s.lock()?;
        let eval = Evaluator::new(&mut guard, ep).evaluate(prompt, response)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(evaluation_out, into_raw(acap_evaluation::new(eval))) };
        Ok(())
    })
}

/// Parses evaluator output obtained elsewhere (another server, a log) with the same tolerant
/// rules, for a 5- or 6-dimension rubric. On success `*evaluation_out` receives a new object
/// released with `acap_evaluation_free`. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_evaluation_parse(
    text: *const c_char,
    dimensions: u32,
    evaluation_out: *mut *mut acap_evaluation,
) -> acap_result {
    guard("acap_evaluation_parse", || {
        // SAFETY: NULL or NUL-terminated.
        let text = unsafe { str_arg(text, "text") }?;
        out_arg(evaluation_out, "evaluation_out")?;
        let r = rubric(dimensions, None)?;
        let eval = parse_evaluation(text, &r.dimensions);
        // SAFETY: checked non-NULL.
        unsafe { write_out(evaluation_out, into_raw(acap_evaluation::new(eval))) };
        Ok(())
    })
}

/// Runs `f` on a live evaluation, or returns `fallback` for NULL (or a panic).
fn with_eval<T>(
    e: *const acap_evaluation,
    fallback: T,
    f: impl FnOnce(&acap_evaluation) -> T,
) -> T {
    // SAFETY: NULL or a live evaluation (by each getter's contract).
    let Some(e) = (unsafe { e.as_ref() }) else {
        return fallback;
    };
    guard_value(fallback, || f(e))
}

/// The number of dimensions (0 for NULL). Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_evaluation_dimension_count(e: *const acap_evaluation) -> usize {
    with_eval(e, 0, |e| e.names.len())
}

/// The name of dimension `i` (owned by the evaluation), or NULL when out of range.
/// Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_evaluation_dimension_name(
    e: *const acap_evaluation,
    i: usize,
) -> *const c_char {
    with_eval(e, std::ptr::null(), |e| {
        e.names.get(i).map_or(std::ptr::null(), |n| n.as_ptr())
    })
}

/// The score (1..10) of dimension `i`, or NaN when it did not parse or `i` is out of range.
/// Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_evaluation_score(e: *const acap_evaluation, i: usize) -> f32 {
    with_eval(e, f32::NAN, |e| {
        e.eval
            .scores
            .get(i)
            .and_then(|(_, s)| *s)
            .unwrap_or(f32::NAN)
    })
}

/// The overall score (1..10), or NaN when none was found. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_evaluation_overall(e: *const acap_evaluation) -> f32 {
    with_eval(e, f32::NAN, |e| e.eval.overall.unwrap_or(f32::NAN))
}

/// Whether a parsing fallback was needed (positional scores, or an overall guessed from the
/// last score or averaged from the dimensions, or missing). Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_evaluation_is_fallback(e: *const acap_evaluation) -> bool {
    with_eval(e, true, |e| e.eval.flags.is_fallback())
}

/// The red-flags text (owned by the evaluation), or NULL when absent. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_evaluation_red_flags(e: *const acap_evaluation) -> *const c_char {
    with_eval(e, std::ptr::null(), |e| {
        e.red_flags
            .as_ref()
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// The model's raw answer (owned by the evaluation); NULL only for a NULL evaluation.
/// Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_evaluation_raw(e: *const acap_evaluation) -> *const c_char {
    with_eval(e, std::ptr::null(), |e| e.raw.as_ptr())
}

/// Releases an evaluation. NULL is a no-op. Thread-safety: no other call may use it meanwhile.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_evaluation_free(e: *mut acap_evaluation) {
    guard_value((), || {
        // SAFETY: NULL or an evaluation from acap, freed once.
        unsafe { free_raw(e) }
    })
}
