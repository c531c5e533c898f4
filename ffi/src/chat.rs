//! Chat templates resolved once, as acap-cli resolves `--chat-template`,
//! `--chat-template-file` and `--jinja`, and chat turns rendered with them.

use std::ffi::{CString, c_char, c_void};
use std::path::Path;

use engine::{ChatTemplate, TemplateChoice};

use crate::boundary::{
    arg, free_raw, guard, guard_value, into_raw, opt_str_arg, out_arg, write_out,
};
use crate::generate::{
    acap_generate_params, acap_generation_stats, acap_text_callback, finish, generate_params,
    streamer,
};
use crate::memory::string_to_c;
use crate::model::{acap_chat_message, acap_model, chat_messages};
use crate::result::{Failure, acap_result};
use crate::session::acap_session;

/// Template files are read up to this size (a template is a few KiB).
const FILE_LIMIT: u64 = 16 << 20;

/// A chat template resolved for one model by `acap_chat_template_new`, released by
/// `acap_chat_template_free`. Thread-safe to share once made.
pub struct acap_chat_template {
    template: ChatTemplate,
    origin: CString,
}

/// Resolves the chat template for `model` in llama.cpp's order: `name` (a built-in name such
/// as `"llama3"` or `"chatml"`, or a template text; rendered as Jinja with `jinja` when it is
/// not a built-in), else the Jinja template in the file `file_path`, else the model's own
/// template (as Jinja when llama.cpp's built-in renderers do not recognise it, or always with
/// `jinja`), else chatml (then `acap_chat_template_is_fallback` is true: tell the user, as
/// llama.cpp does). `name` and `file_path` may be NULL, not both non-NULL.
///
/// On success `*template_out` receives a new object released with `acap_chat_template_free`.
/// `ACAP_CHAT_TEMPLATE` for an unknown name, a file that cannot be read, or a Jinja template
/// that does not parse (the message names `name` or `file_path`). Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_chat_template_new(
    model: *const acap_model,
    name: *const c_char,
    file_path: *const c_char,
    jinja: bool,
    template_out: *mut *mut acap_chat_template,
) -> acap_result {
    guard("acap_chat_template_new", || {
        // SAFETY: NULL or a live model.
        let m = &unsafe { arg(model, "model") }?.model;
        // SAFETY: NULL or NUL-terminated.
        let name = unsafe { opt_str_arg(name, "name") }?;
        // SAFETY: NULL or NUL-terminated.
        let file_path = unsafe { opt_str_arg(file_path, "file_path") }?;
        out_arg(template_out, "template_out")?;
        if name.is_some() && file_path.is_some() {
            return Err(Failure::invalid("give `name` or `file_path`, not both"));
        }
        let file = match file_path {
            Some(p) => {
                let text = engine::read_text_bounded(Path::new(p), FILE_LIMIT).map_err(|e| {
                    Failure::new(
                        acap_result::ACAP_CHAT_TEMPLATE,
                        format!("file_path {p}: {e}"),
                    )
                })?;
                Some((format!("file_path {p}"), text))
            }
            None => None,
        };
        let choice = TemplateChoice {
            name: name.map(str::to_owned),
            file,
            jinja,
        };
        let template = ChatTemplate::resolve(m, &choice).map_err(|e| {
            let mut f = Failure::from(e);
            if name.is_some() && !f.message.contains("file_path") {
                f.message = format!("name: {}", f.message);
            }
            f
        })?;
        let origin = CString::new(template.origin().replace('\0', "")).unwrap_or_default();
        // SAFETY: checked non-NULL.
        unsafe {
            write_out(
                template_out,
                into_raw(acap_chat_template { template, origin }),
            )
        };
        Ok(())
    })
}

/// Releases a template. NULL is a no-op.
/// Thread-safety: no other call may use the object meanwhile.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_chat_template_free(template: *mut acap_chat_template) {
    guard_value((), || {
        // SAFETY: NULL or an object from `acap_chat_template_new`, freed once.
        unsafe { free_raw(template) }
    })
}

/// Whether `template` is the chatml fallback for a model without a template (false for
/// NULL). Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_chat_template_is_fallback(
    template: *const acap_chat_template,
) -> bool {
    guard_value(false, || {
        // SAFETY: NULL or a live template.
        unsafe { template.as_ref() }.is_some_and(|t| t.template.is_fallback())
    })
}

/// Whether `template` is rendered as Jinja (false for NULL). Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_chat_template_is_jinja(template: *const acap_chat_template) -> bool {
    guard_value(false, || {
        // SAFETY: NULL or a live template.
        unsafe { template.as_ref() }.is_some_and(|t| t.template.is_jinja())
    })
}

/// Where `template` came from (`"the model's chat template"`, `"chatml"`,
/// `"file_path FILE"`, ...), owned by the template; NULL for NULL. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_chat_template_origin(
    template: *const acap_chat_template,
) -> *const c_char {
    guard_value(std::ptr::null(), || {
        // SAFETY: NULL or a live template.
        unsafe { template.as_ref() }.map_or(std::ptr::null(), |t| t.origin.as_ptr())
    })
}

/// Renders a conversation with `template` (made for `model`); with `add_assistant` the text
/// ends with the header that starts the assistant's reply.
///
/// On success `*prompt_out` receives a new string released with `acap_string_free`.
/// `ACAP_CHAT_TEMPLATE` when a Jinja template fails to render. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_chat_template_apply(
    template: *const acap_chat_template,
    model: *const acap_model,
    messages: *const acap_chat_message,
    n_messages: usize,
    add_assistant: bool,
    prompt_out: *mut *mut c_char,
) -> acap_result {
    guard("acap_chat_template_apply", || {
        // SAFETY: NULL or a live template.
        let t = unsafe { arg(template, "template") }?;
        // SAFETY: NULL or a live model.
        let m = &unsafe { arg(model, "model") }?.model;
        // SAFETY: `n_messages` valid messages.
        let msgs = unsafe { chat_messages(messages, n_messages) }?;
        out_arg(prompt_out, "prompt_out")?;
        let text = string_to_c(t.template.render(m, &msgs, add_assistant)?)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(prompt_out, text) };
        Ok(())
    })
}

/// `acap_session_chat` with a template from `acap_chat_template_new` (for the session's
/// model) instead of a template name: the way to use Jinja templates and template files.
/// Thread-safety: one call per session at a time (a concurrent one returns `ACAP_BUSY`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn acap_session_chat_with(
    session: *mut acap_session,
    messages: *const acap_chat_message,
    n_messages: usize,
    template: *const acap_chat_template,
    params: *const acap_generate_params,
    callback: acap_text_callback,
    user_data: *mut c_void,
    stats_out: *mut acap_generation_stats,
) -> acap_result {
    guard("acap_session_chat_with", || {
        // SAFETY: NULL or a live session.
        let s = unsafe { arg(session, "session") }?;
        // SAFETY: `n_messages` valid messages.
        let msgs = unsafe { chat_messages(messages, n_messages) }?;
        // SAFETY: NULL or a live template.
        let t = unsafe { arg(template, "template") }?;
        // SAFETY: NULL or a valid params struct.
        let params = unsafe { generate_params(params) }?;
        let stats =
            s.lock()?
                .chat_with(&msgs, &t.template, &params, streamer(callback, user_data))?;
        finish(&stats, stats_out);
        Ok(())
    })
}
