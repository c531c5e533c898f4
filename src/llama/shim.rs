//! The exception barrier (`shim.cpp`): llama.cpp entry points that can throw, each called
//! inside a C++ try/catch. A C++ exception unwinding into Rust would abort the process.

use std::ffi::{CStr, c_char};

use llama_cpp_sys_2 as sys;

/// What the `i32` wrappers return when llama.cpp threw.
pub(crate) const THREW: i32 = i32::MIN;

unsafe extern "C" {
    fn acap_llama_exception() -> *const c_char;
    pub(crate) fn acap_llama_tokenize(
        vocab: *const sys::llama_vocab,
        text: *const c_char,
        text_len: i32,
        tokens: *mut sys::llama_token,
        n_tokens_max: i32,
        add_special: bool,
        parse_special: bool,
    ) -> i32;
    pub(crate) fn acap_llama_token_to_piece(
        vocab: *const sys::llama_vocab,
        token: sys::llama_token,
        buf: *mut c_char,
        length: i32,
        lstrip: i32,
        special: bool,
    ) -> i32;
    pub(crate) fn acap_llama_detokenize(
        vocab: *const sys::llama_vocab,
        tokens: *const sys::llama_token,
        n_tokens: i32,
        text: *mut c_char,
        text_len_max: i32,
        remove_special: bool,
        unparse_special: bool,
    ) -> i32;
    pub(crate) fn acap_llama_decode(ctx: *mut sys::llama_context, batch: sys::llama_batch) -> i32;
    pub(crate) fn acap_llama_chat_apply_template(
        tmpl: *const c_char,
        chat: *const sys::llama_chat_message,
        n_msg: usize,
        add_ass: bool,
        buf: *mut c_char,
        length: i32,
    ) -> i32;
    pub(crate) fn acap_llama_sampler_sample(
        smpl: *mut sys::llama_sampler,
        ctx: *mut sys::llama_context,
        idx: i32,
    ) -> sys::llama_token;
    pub(crate) fn acap_llama_sampler_accept(
        smpl: *mut sys::llama_sampler,
        token: sys::llama_token,
    ) -> bool;
}

/// The message of the last exception the barrier caught on this thread.
pub(crate) fn exception() -> String {
    // SAFETY: returns a NUL-terminated string owned by this thread's barrier state, valid
    // until the next wrapper call on this thread; it is copied at once.
    unsafe { CStr::from_ptr(acap_llama_exception()) }
        .to_string_lossy()
        .into_owned()
}
