//! Models: load, free, metadata, tokenisation, chat templates.

use std::ffi::{CString, c_char};

use engine::{ChatMessage, Model, ModelParams, Special};

use crate::boundary::{
    arg, free_raw, guard, guard_value, into_raw, opt_str_arg, out_arg, slice_arg, str_arg,
    write_out,
};
use crate::memory::{acap_token, string_to_c, tokens_to_c};
use crate::result::{Failure, acap_result};

/// A loaded model. Created by `acap_model_load`, released by `acap_model_free`. Sessions
/// hold their own reference, so a model may be freed while sessions over it still run.
/// All model functions are thread-safe: a model may be shared by threads and sessions.
pub struct acap_model {
    pub(crate) model: Model,
    architecture: CString,
    name: Option<CString>,
    chat_template: Option<CString>,
}

/// How to load a model. Start from `acap_model_params_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct acap_model_params {
    /// Layers to offload to the GPU (`-ngl`); 0 keeps everything on the CPU, -1 offloads all.
    pub n_gpu_layers: i32,
    /// Memory-map the file (default true).
    pub use_mmap: bool,
    /// Lock the weights in RAM (default false).
    pub use_mlock: bool,
}

/// Facts about a model, read natively from its GGUF header.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct acap_model_info {
    /// Decoder blocks.
    pub n_layer: u32,
    /// Hidden size (the length an axis must have).
    pub n_embd: u32,
    /// Vocabulary size.
    pub n_vocab: u32,
    /// Training context length.
    pub n_ctx_train: u32,
    /// Parameters.
    pub n_params: u64,
    /// Bytes of tensor data.
    pub size_bytes: u64,
    /// Size of the file.
    pub file_size: u64,
    /// Beginning-of-sequence token, or -1.
    pub token_bos: acap_token,
    /// End-of-sequence token, or -1.
    pub token_eos: acap_token,
    /// End-of-turn token, or -1.
    pub token_eot: acap_token,
}

/// One chat message. Both strings are borrowed for the duration of the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct acap_chat_message {
    /// `"system"`, `"user"` or `"assistant"`.
    pub role: *const c_char,
    /// The text.
    pub content: *const c_char,
}

/// The default model parameters: CPU only, memory-mapped, not locked. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn acap_model_params_default() -> acap_model_params {
    acap_model_params {
        n_gpu_layers: 0,
        use_mmap: true,
        use_mlock: false,
    }
}

/// Loads a GGUF model.
///
/// `params` may be NULL for the defaults. On success `*model_out` receives a new model that
/// the caller owns and releases with `acap_model_free`; on failure `*model_out` is untouched.
/// Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_model_load(
    path: *const c_char,
    params: *const acap_model_params,
    model_out: *mut *mut acap_model,
) -> acap_result {
    guard("acap_model_load", || {
        // SAFETY: C passes a NUL-terminated path (or NULL, rejected).
        let path = unsafe { str_arg(path, "path") }?;
        // SAFETY: NULL or a valid params struct.
        let params = unsafe { params.as_ref() }
            .copied()
            .unwrap_or_else(|| acap_model_params_default());
        out_arg(model_out, "model_out")?;
        let model = Model::load(
            path,
            ModelParams::default()
                .with_n_gpu_layers(params.n_gpu_layers)
                .with_mmap(params.use_mmap)
                .with_mlock(params.use_mlock),
        )?;
        let handle = wrap(model);
        // SAFETY: checked non-NULL above.
        unsafe { write_out(model_out, into_raw(handle)) };
        Ok(())
    })
}

fn wrap(model: Model) -> acap_model {
    let c = |s: &str| CString::new(s.replace('\0', "")).unwrap_or_default();
    let info = model.info();
    acap_model {
        architecture: c(&info.architecture),
        name: info.name.as_deref().map(c),
        chat_template: info.chat_template.as_deref().map(c),
        model,
    }
}

/// Releases a model. NULL is a no-op. Sessions created from it keep working (they hold their
/// own reference); the weights are unmapped when the last of them is freed. Must not be
/// called twice for the same model, nor while another thread uses this handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_model_free(model: *mut acap_model) {
    guard_value((), || {
        // SAFETY: NULL or a model from `acap_model_load`, freed once.
        unsafe { free_raw(model) }
    })
}

/// Writes the model's numbers to `*info_out`. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_model_get_info(
    model: *const acap_model,
    info_out: *mut acap_model_info,
) -> acap_result {
    guard("acap_model_get_info", || {
        // SAFETY: NULL or a live model.
        let m = &unsafe { arg(model, "model") }?.model;
        out_arg(info_out, "info_out")?;
        let info = m.info();
        let tok = |t: Option<i32>| t.unwrap_or(-1);
        let out = acap_model_info {
            n_layer: info.n_layer,
            n_embd: info.n_embd,
            n_vocab: info.n_vocab,
            n_ctx_train: info.n_ctx_train,
            n_params: m.n_params(),
            size_bytes: m.size_bytes(),
            file_size: info.file_size,
            token_bos: tok(m.token_bos()),
            token_eos: tok(m.token_eos()),
            token_eot: tok(m.token_eot()),
        };
        // SAFETY: checked non-NULL.
        unsafe { write_out(info_out, out) };
        Ok(())
    })
}

fn borrowed(s: Option<&CString>) -> *const c_char {
    s.map_or(std::ptr::null(), |s| s.as_ptr())
}

/// `general.architecture` (e.g. `"llama"`). The string belongs to the model and lives as long
/// as the handle; NULL when `model` is NULL. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_model_architecture(model: *const acap_model) -> *const c_char {
    guard_value(std::ptr::null(), || {
        // SAFETY: NULL or a live model.
        borrowed(unsafe { model.as_ref() }.map(|m| &m.architecture))
    })
}

/// `general.name`, or NULL when the file has none (or `model` is NULL). Owned by the model,
/// like `acap_model_architecture`. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_model_name(model: *const acap_model) -> *const c_char {
    guard_value(std::ptr::null(), || {
        // SAFETY: NULL or a live model.
        borrowed(unsafe { model.as_ref() }.and_then(|m| m.name.as_ref()))
    })
}

/// The model's chat template (`tokenizer.chat_template`), or NULL when it has none. Owned by
/// the model, like `acap_model_architecture`. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_model_chat_template(model: *const acap_model) -> *const c_char {
    guard_value(std::ptr::null(), || {
        // SAFETY: NULL or a live model.
        borrowed(unsafe { model.as_ref() }.and_then(|m| m.chat_template.as_ref()))
    })
}

/// Tokenizes `text`. `add_special` adds BOS as the model's tokenizer asks; `parse_special`
/// turns special-token text (`<|eot_id|>`) into special tokens. A prompt as llama-cli sees it
/// is `true, true`.
///
/// On success `*tokens_out` receives a new array of `*n_tokens_out` tokens that the caller
/// releases with `acap_tokens_free(tokens, n)`; on failure neither is written. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_model_tokenize(
    model: *const acap_model,
    text: *const c_char,
    add_special: bool,
    parse_special: bool,
    tokens_out: *mut *mut acap_token,
    n_tokens_out: *mut usize,
) -> acap_result {
    guard("acap_model_tokenize", || {
        // SAFETY: NULL or a live model.
        let m = &unsafe { arg(model, "model") }?.model;
        // SAFETY: NULL or a NUL-terminated string.
        let text = unsafe { str_arg(text, "text") }?;
        out_arg(tokens_out, "tokens_out")?;
        out_arg(n_tokens_out, "n_tokens_out")?;
        let tokens = m.tokenize(
            text,
            Special {
                add: add_special,
                parse: parse_special,
            },
        )?;
        let (p, n) = tokens_to_c(tokens);
        // SAFETY: both checked non-NULL.
        unsafe {
            write_out(tokens_out, p);
            write_out(n_tokens_out, n);
        }
        Ok(())
    })
}

/// Converts tokens back to text (invalid UTF-8 replaced by U+FFFD). With `render_special`
/// special tokens appear as their text; otherwise they are dropped.
///
/// On success `*text_out` receives a new NUL-terminated string the caller releases with
/// `acap_string_free`. A token outside the vocabulary is `ACAP_TOKENIZE`. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_model_detokenize(
    model: *const acap_model,
    tokens: *const acap_token,
    n_tokens: usize,
    render_special: bool,
    text_out: *mut *mut c_char,
) -> acap_result {
    guard("acap_model_detokenize", || {
        // SAFETY: NULL or a live model.
        let m = &unsafe { arg(model, "model") }?.model;
        // SAFETY: NULL (only with 0) or `n_tokens` tokens.
        let tokens = unsafe { slice_arg(tokens, n_tokens, "tokens") }?;
        out_arg(text_out, "text_out")?;
        let text = string_to_c(m.detokenize(tokens, render_special)?)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(text_out, text) };
        Ok(())
    })
}

/// Reads `n` C chat messages into owned ones.
///
/// # Safety
/// `messages` is NULL (only with `n == 0`) or points to `n` messages whose strings are
/// NUL-terminated.
pub(crate) unsafe fn chat_messages(
    messages: *const acap_chat_message,
    n: usize,
) -> Result<Vec<ChatMessage>, Failure> {
    // SAFETY: forwarded contract.
    let raw = unsafe { slice_arg(messages, n, "messages") }?;
    raw.iter()
        .enumerate()
        .map(|(i, m)| {
            // SAFETY: forwarded contract.
            let role = unsafe { str_arg(m.role, &format!("messages[{i}].role")) }?;
            // SAFETY: forwarded contract.
            let content = unsafe { str_arg(m.content, &format!("messages[{i}].content")) }?;
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

/// Renders a conversation with the model's chat template, or with `template` (a built-in name
/// such as `"llama3"`, or a template text llama.cpp recognises) when it is not NULL. With
/// `add_assistant` the text ends with the header that starts the assistant's reply.
///
/// A model without a template and no `template` given renders with chatml, as llama.cpp
/// does; `acap_chat_template_new` says when that happens and also takes Jinja templates and
/// template files.
///
/// On success `*prompt_out` receives a new string released with `acap_string_free`.
/// `ACAP_CHAT_TEMPLATE` when the template is unknown. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_model_apply_chat_template(
    model: *const acap_model,
    messages: *const acap_chat_message,
    n_messages: usize,
    template_name: *const c_char,
    add_assistant: bool,
    prompt_out: *mut *mut c_char,
) -> acap_result {
    guard("acap_model_apply_chat_template", || {
        // SAFETY: NULL or a live model.
        let m = &unsafe { arg(model, "model") }?.model;
        // SAFETY: `n_messages` valid messages.
        let msgs = unsafe { chat_messages(messages, n_messages) }?;
        // SAFETY: NULL or NUL-terminated.
        let template = unsafe { opt_str_arg(template_name, "template_name") }?;
        out_arg(prompt_out, "prompt_out")?;
        let text = string_to_c(m.apply_chat_template(&msgs, add_assistant, template)?)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(prompt_out, text) };
        Ok(())
    })
}
