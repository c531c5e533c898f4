//! Generation: sampling settings, streaming callbacks, completion and chat.

use std::ffi::{c_char, c_void};
use std::ops::ControlFlow;

use engine::{GenerateParams, GenerationStats, SamplingParams, StopReason};

use crate::boundary::{arg, guard, opt_str_arg, out_arg, slice_arg, str_arg, write_out};
use crate::memory::string_to_c;
use crate::model::{acap_chat_message, chat_messages};
use crate::result::Failure;
use crate::result::acap_result;
use crate::session::acap_session;

/// `seed` value that picks a random seed (llama.cpp's `LLAMA_DEFAULT_SEED`).
pub const ACAP_SEED_RANDOM: u32 = 0xFFFF_FFFF;

/// How tokens are picked. Defaults (`acap_generate_params_default`) are llama-cli's.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct acap_sampling_params {
    /// Temperature; `<= 0` is greedy (`--temp`).
    pub temperature: f32,
    /// Keep the k most likely tokens; `<= 0` disables (`--top-k`).
    pub top_k: i32,
    /// Nucleus sampling; 1 disables (`--top-p`).
    pub top_p: f32,
    /// Minimum probability relative to the best token; 0 disables (`--min-p`).
    pub min_p: f32,
    /// Repetition penalty; 1 disables (`--repeat-penalty`).
    pub repeat_penalty: f32,
    /// Frequency penalty; 0 disables.
    pub frequency_penalty: f32,
    /// Presence penalty; 0 disables.
    pub presence_penalty: f32,
    /// Tokens the penalties look back over; 0 disables, -1 is the context size.
    pub penalty_last_n: i32,
    /// Random seed; `ACAP_SEED_RANDOM` picks one.
    pub seed: u32,
    /// A GBNF grammar (start symbol `root`) the output must follow, or NULL. Borrowed for the
    /// call.
    pub grammar: *const c_char,
}

/// What to generate. Start from `acap_generate_params_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct acap_generate_params {
    /// Most tokens to generate; -1 runs until end of generation or a full context (`-n`).
    pub max_tokens: i32,
    /// Strings that end generation (the output stops before them), or NULL. Borrowed.
    pub stop: *const *const c_char,
    /// Number of `stop` strings.
    pub n_stop: usize,
    /// How tokens are picked.
    pub sampling: acap_sampling_params,
}

/// Why generation stopped.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum acap_stop_reason {
    /// The model produced an end-of-generation token.
    ACAP_STOP_END_OF_GENERATION = 0,
    /// A stop string appeared.
    ACAP_STOP_STRING = 1,
    /// `max_tokens` was reached.
    ACAP_STOP_MAX_TOKENS = 2,
    /// `acap_session_cancel` was called, or the text callback returned non-zero.
    ACAP_STOP_CANCELLED = 3,
    /// The context is full.
    ACAP_STOP_CONTEXT_FULL = 4,
}

/// Statistics of one generation call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct acap_generation_stats {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Of those, tokens reused from the KV cache.
    pub cached_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Milliseconds spent decoding the prompt.
    pub prompt_ms: f64,
    /// Milliseconds spent generating.
    pub generation_ms: f64,
    /// Why generation stopped.
    pub stop_reason: acap_stop_reason,
}

/// Receives generated text as it streams: `len` bytes of complete UTF-8 at `text` (also
/// NUL-terminated; valid only during the call). Return 0 to continue, non-zero to stop.
/// It runs on the calling thread, inside the generate call; it must not throw C++
/// exceptions (catch them and return non-zero) and must not call functions on the same
/// session (they return `ACAP_BUSY`); `acap_session_cancel` is fine.
#[allow(non_camel_case_types)]
pub type acap_text_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, text: *const c_char, len: usize) -> i32>;

/// llama-cli's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no penalties
/// (repeat-last-n 64), random seed, no grammar, 128 tokens, no stop strings. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn acap_generate_params_default() -> acap_generate_params {
    let g = GenerateParams::default();
    let s = g.sampling;
    acap_generate_params {
        max_tokens: g.max_tokens.map_or(-1, |n| n as i32),
        stop: std::ptr::null(),
        n_stop: 0,
        sampling: acap_sampling_params {
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            min_p: s.min_p,
            repeat_penalty: s.repeat_penalty,
            frequency_penalty: s.frequency_penalty,
            presence_penalty: s.presence_penalty,
            penalty_last_n: s.penalty_last_n,
            seed: ACAP_SEED_RANDOM,
            grammar: std::ptr::null(),
        },
    }
}

/// Converts C generate params (NULL: defaults).
///
/// # Safety
/// `p` is NULL or a valid struct whose `stop`/`grammar` pointers follow their field docs.
pub(crate) unsafe fn generate_params(
    p: *const acap_generate_params,
) -> Result<GenerateParams, Failure> {
    // SAFETY: NULL or valid by contract.
    let p = unsafe { p.as_ref() }
        .copied()
        .unwrap_or_else(|| acap_generate_params_default());
    let max_tokens = match p.max_tokens {
        -1 => None,
        n if n >= 0 => Some(n as usize),
        n => {
            return Err(Failure::invalid(format!(
                "params.max_tokens = {n}: must be >= 0, or -1 for no limit"
            )));
        }
    };
    // SAFETY: NULL (only with 0) or `n_stop` string pointers, by contract.
    let stop = unsafe { slice_arg(p.stop, p.n_stop, "params.stop") }?
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            // SAFETY: each stop string is NUL-terminated by contract.
            unsafe { str_arg(s, &format!("params.stop[{i}]")) }.map(str::to_owned)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let s = p.sampling;
    // SAFETY: NULL or NUL-terminated by contract.
    let grammar = unsafe { opt_str_arg(s.grammar, "params.sampling.grammar") }?;
    Ok(GenerateParams {
        max_tokens,
        stop,
        sampling: SamplingParams {
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            min_p: s.min_p,
            repeat_penalty: s.repeat_penalty,
            frequency_penalty: s.frequency_penalty,
            presence_penalty: s.presence_penalty,
            penalty_last_n: s.penalty_last_n,
            seed: (s.seed != ACAP_SEED_RANDOM).then_some(s.seed),
            grammar: grammar.map(str::to_owned),
            // The C struct has the classic samplers; the others keep llama.cpp's defaults.
            ..SamplingParams::default()
        },
    })
}

fn c_stats(s: &GenerationStats) -> acap_generation_stats {
    use acap_stop_reason::*;
    acap_generation_stats {
        prompt_tokens: s.prompt_tokens,
        cached_tokens: s.cached_tokens,
        generated_tokens: s.generated_tokens,
        prompt_ms: s.prompt_time.as_secs_f64() * 1e3,
        generation_ms: s.generation_time.as_secs_f64() * 1e3,
        stop_reason: match s.stop_reason {
            StopReason::EndOfGeneration => ACAP_STOP_END_OF_GENERATION,
            StopReason::StopString(_) => ACAP_STOP_STRING,
            StopReason::MaxTokens => ACAP_STOP_MAX_TOKENS,
            StopReason::Cancelled => ACAP_STOP_CANCELLED,
            StopReason::ContextFull => ACAP_STOP_CONTEXT_FULL,
        },
    }
}

/// Adapts a C callback to the closure the engine calls.
pub(crate) fn streamer(
    callback: acap_text_callback,
    user_data: *mut c_void,
) -> impl FnMut(&str) -> ControlFlow<()> {
    // Reused for every piece so streaming does not allocate per token.
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    move |text: &str| {
        let Some(cb) = callback else {
            return ControlFlow::Continue(());
        };
        buf.clear();
        buf.extend_from_slice(text.as_bytes());
        buf.push(0);
        // SAFETY: the callback's contract (header): it reads `len` bytes (plus the NUL) during
        // the call and does not unwind.
        let stop = unsafe { cb(user_data, buf.as_ptr().cast::<c_char>(), text.len()) };
        if stop == 0 {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    }
}

/// Writes optional stats.
pub(crate) fn finish(stats: &GenerationStats, stats_out: *mut acap_generation_stats) {
    if !stats_out.is_null() {
        // SAFETY: non-NULL; the caller passes a writable struct or NULL.
        unsafe { write_out(stats_out, c_stats(stats)) };
    }
}

/// Tokenizes `prompt` as llama-cli does (BOS added, special tokens parsed), decodes it
/// (reusing the KV cache's common prefix) and generates, calling `callback` (may be NULL)
/// with each piece of text. Capping applies as configured on the session.
///
/// `params` may be NULL for the defaults; `stats_out` may be NULL, otherwise it is written on
/// success. A prompt longer than the context is `ACAP_CONTEXT_FULL`; a bad grammar
/// `ACAP_GRAMMAR`. Not thread-safe on one session (see `acap_session`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_generate(
    session: *mut acap_session,
    prompt: *const c_char,
    params: *const acap_generate_params,
    callback: acap_text_callback,
    user_data: *mut c_void,
    stats_out: *mut acap_generation_stats,
) -> acap_result {
    guard("acap_session_generate", || {
        // SAFETY: NULL or a live session.
        let s = unsafe { arg(session, "session") }?;
        // SAFETY: NULL or NUL-terminated.
        let prompt = unsafe { str_arg(prompt, "prompt") }?;
        // SAFETY: NULL or a valid params struct.
        let params = unsafe { generate_params(params) }?;
        let stats = s
            .lock()?
            .generate(prompt, &params, streamer(callback, user_data))?;
        finish(&stats, stats_out);
        Ok(())
    })
}

/// Like `acap_session_generate`, but returns the whole text: on success `*text_out` receives
/// a new string released with `acap_string_free`.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_complete(
    session: *mut acap_session,
    prompt: *const c_char,
    params: *const acap_generate_params,
    text_out: *mut *mut c_char,
    stats_out: *mut acap_generation_stats,
) -> acap_result {
    guard("acap_session_complete", || {
        // SAFETY: NULL or a live session.
        let s = unsafe { arg(session, "session") }?;
        // SAFETY: NULL or NUL-terminated.
        let prompt = unsafe { str_arg(prompt, "prompt") }?;
        // SAFETY: NULL or a valid params struct.
        let params = unsafe { generate_params(params) }?;
        out_arg(text_out, "text_out")?;
        let (text, stats) = s.lock()?.complete(prompt, &params)?;
        let text = string_to_c(text)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(text_out, text) };
        finish(&stats, stats_out);
        Ok(())
    })
}

/// Renders `messages` with the model's chat template (or `template_name`, e.g. `"llama3"`,
/// when not NULL), ending with the assistant header, and generates the reply as
/// `acap_session_generate` does. The KV cache is reused, so on a follow-up turn (same
/// messages plus the reply and a new user message) only the new tokens are decoded. The
/// caller keeps the conversation: append the reply as an `"assistant"` message.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_chat(
    session: *mut acap_session,
    messages: *const acap_chat_message,
    n_messages: usize,
    template_name: *const c_char,
    params: *const acap_generate_params,
    callback: acap_text_callback,
    user_data: *mut c_void,
    stats_out: *mut acap_generation_stats,
) -> acap_result {
    guard("acap_session_chat", || {
        // SAFETY: NULL or a live session.
        let s = unsafe { arg(session, "session") }?;
        // SAFETY: `n_messages` valid messages.
        let msgs = unsafe { chat_messages(messages, n_messages) }?;
        // SAFETY: NULL or NUL-terminated.
        let template = unsafe { opt_str_arg(template_name, "template_name") }?;
        // SAFETY: NULL or a valid params struct.
        let params = unsafe { generate_params(params) }?;
        let stats = s
            .lock()?
            .chat(&msgs, template, &params, streamer(callback, user_data))?;
        finish(&stats, stats_out);
        Ok(())
    })
}
