//! `acap_result`: the status every fallible function returns, and how acap's errors map to it.

use engine::{
    AxisError, AxisFileError, AxisSetError, CapError, ChatError, ControlVectorError, DecodeError,
    HSuppressError, LoadError, SamplerError, SessionError, TokenizeError,
};

/// The status of a call. The numbers are fixed: a value is never reused or renumbered, new
/// ones are only added. `ACAP_OK` is 0; every other value is a failure whose text
/// `acap_last_error_message` gives.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum acap_result {
    /// Success.
    ACAP_OK = 0,
    /// A required pointer argument was NULL (the message names it).
    ACAP_NULL_ARGUMENT = 1,
    /// An argument is out of range (the message names it and its value).
    ACAP_INVALID_ARGUMENT = 2,
    /// A string argument is not valid UTF-8.
    ACAP_INVALID_UTF8 = 3,
    /// acap hit an internal error (a Rust panic, caught at the boundary). The object it
    /// happened on should be freed.
    ACAP_PANIC = 4,
    /// The session is in use by another call (another thread, or a callback re-entering it).
    ACAP_BUSY = 5,
    /// A caller-provided buffer is too small; nothing was written.
    ACAP_BUFFER_TOO_SMALL = 6,
    /// The model could not be loaded (missing file, not GGUF, refused by llama.cpp).
    ACAP_MODEL_LOAD = 100,
    /// llama.cpp could not create a context (usually out of memory).
    ACAP_SESSION_CREATE = 101,
    /// An axis file is invalid (spec section 3).
    ACAP_AXIS_FILE = 110,
    /// Axes whose length differs from each other or from the model's hidden size.
    ACAP_AXIS_MISMATCH = 111,
    /// No threshold can be resolved (spec section 4), or a threshold is not finite.
    ACAP_THRESHOLD = 112,
    /// Capping cannot be applied as asked (range caps nothing, block not capped,
    /// architecture without `l_out` tensors).
    ACAP_CAP_CONFIG = 113,
    /// A control vector is invalid or does not fit the model.
    ACAP_CONTROL_VECTOR = 114,
    /// Tokenisation or detokenisation failed (e.g. a token id outside the vocabulary).
    ACAP_TOKENIZE = 120,
    /// llama.cpp failed to decode, or the capping callback failed.
    ACAP_DECODE = 121,
    /// The prompt does not fit in the context.
    ACAP_CONTEXT_FULL = 122,
    /// The GBNF grammar does not parse.
    ACAP_GRAMMAR = 123,
    /// The chat template is missing or unknown.
    ACAP_CHAT_TEMPLATE = 124,
    /// Prompt decoding was cancelled by `acap_session_cancel`.
    ACAP_CANCELLED = 125,
    /// An H-neuron suppression file is invalid or does not fit the model (spec section 10).
    ACAP_H_SUPPRESS = 115,
}

/// A failed call: its status and the message `acap_last_error_message` returns.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: acap_result,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: acap_result, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn null(argument: &str) -> Self {
        Self::new(
            acap_result::ACAP_NULL_ARGUMENT,
            format!("argument `{argument}` is NULL"),
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(acap_result::ACAP_INVALID_ARGUMENT, message)
    }
}

use acap_result::*;

fn fail(code: acap_result, e: &dyn std::fmt::Display) -> Failure {
    Failure::new(code, e.to_string())
}

impl From<LoadError> for Failure {
    fn from(e: LoadError) -> Self {
        fail(ACAP_MODEL_LOAD, &e)
    }
}

impl From<SessionError> for Failure {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Cap(c) => c.into(),
            SessionError::HSuppress(h) => h.into(),
            SessionError::BadParam { .. } => fail(ACAP_INVALID_ARGUMENT, &e),
            _ => fail(ACAP_SESSION_CREATE, &e),
        }
    }
}

impl From<HSuppressError> for Failure {
    fn from(e: HSuppressError) -> Self {
        fail(ACAP_H_SUPPRESS, &e)
    }
}

impl From<CapError> for Failure {
    fn from(e: CapError) -> Self {
        let code = match e {
            CapError::EmbdMismatch { .. } => ACAP_AXIS_MISMATCH,
            CapError::Threshold(_) => ACAP_THRESHOLD,
            CapError::BadAlpha(_) => ACAP_INVALID_ARGUMENT,
            _ => ACAP_CAP_CONFIG,
        };
        fail(code, &e)
    }
}

impl From<AxisFileError> for Failure {
    fn from(e: AxisFileError) -> Self {
        fail(ACAP_AXIS_FILE, &e)
    }
}

impl From<AxisSetError> for Failure {
    fn from(e: AxisSetError) -> Self {
        let code = match e {
            AxisSetError::EmbdMismatch { .. } => ACAP_AXIS_MISMATCH,
            _ => ACAP_INVALID_ARGUMENT,
        };
        fail(code, &e)
    }
}

impl From<AxisError> for Failure {
    fn from(e: AxisError) -> Self {
        match e {
            AxisError::File(f) => f.into(),
            AxisError::Set(s) => s.into(),
            AxisError::Threshold(_) => fail(ACAP_THRESHOLD, &e),
            _ => fail(ACAP_AXIS_FILE, &e),
        }
    }
}

impl From<ControlVectorError> for Failure {
    fn from(e: ControlVectorError) -> Self {
        fail(ACAP_CONTROL_VECTOR, &e)
    }
}

impl From<TokenizeError> for Failure {
    fn from(e: TokenizeError) -> Self {
        fail(ACAP_TOKENIZE, &e)
    }
}

impl From<DecodeError> for Failure {
    fn from(e: DecodeError) -> Self {
        let code = match e {
            DecodeError::ContextFull { .. } => ACAP_CONTEXT_FULL,
            DecodeError::EmptyPrompt => ACAP_INVALID_ARGUMENT,
            DecodeError::Tokenize(_) => ACAP_TOKENIZE,
            DecodeError::Aborted => ACAP_CANCELLED,
            DecodeError::Cap(c) => return c.into(),
            _ => ACAP_DECODE,
        };
        fail(code, &e)
    }
}

impl From<SamplerError> for Failure {
    fn from(e: SamplerError) -> Self {
        let code = match e {
            SamplerError::Grammar { .. } => ACAP_GRAMMAR,
            _ => ACAP_INVALID_ARGUMENT,
        };
        fail(code, &e)
    }
}

impl From<ChatError> for Failure {
    fn from(e: ChatError) -> Self {
        let code = match e {
            ChatError::NulByte { .. } => ACAP_INVALID_ARGUMENT,
            _ => ACAP_CHAT_TEMPLATE,
        };
        fail(code, &e)
    }
}

impl From<engine::Error> for Failure {
    fn from(e: engine::Error) -> Self {
        use engine::Error as E;
        match e {
            E::Load(e) => e.into(),
            E::Session(e) => e.into(),
            E::Tokenize(e) => e.into(),
            E::Decode(e) => e.into(),
            E::Sampler(e) => e.into(),
            E::Chat(e) => e.into(),
            E::Axis(e) => e.into(),
            E::Cap(e) => e.into(),
            E::ControlVector(e) => e.into(),
            E::HSuppress(e) => e.into(),
            other => fail(ACAP_INVALID_ARGUMENT, &other),
        }
    }
}

/// The name of a status (`"ACAP_NULL_ARGUMENT"`), for logs.
///
/// Returns a static string that must not be freed; `"ACAP_UNKNOWN"` for a number that is
/// not an `acap_result`. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn acap_result_name(result: i32) -> *const std::ffi::c_char {
    let name: &'static std::ffi::CStr = match result {
        0 => c"ACAP_OK",
        1 => c"ACAP_NULL_ARGUMENT",
        2 => c"ACAP_INVALID_ARGUMENT",
        3 => c"ACAP_INVALID_UTF8",
        4 => c"ACAP_PANIC",
        5 => c"ACAP_BUSY",
        6 => c"ACAP_BUFFER_TOO_SMALL",
        100 => c"ACAP_MODEL_LOAD",
        101 => c"ACAP_SESSION_CREATE",
        110 => c"ACAP_AXIS_FILE",
        111 => c"ACAP_AXIS_MISMATCH",
        112 => c"ACAP_THRESHOLD",
        113 => c"ACAP_CAP_CONFIG",
        114 => c"ACAP_CONTROL_VECTOR",
        115 => c"ACAP_H_SUPPRESS",
        120 => c"ACAP_TOKENIZE",
        121 => c"ACAP_DECODE",
        122 => c"ACAP_CONTEXT_FULL",
        123 => c"ACAP_GRAMMAR",
        124 => c"ACAP_CHAT_TEMPLATE",
        125 => c"ACAP_CANCELLED",
        _ => c"ACAP_UNKNOWN",
    };
    name.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_has_its_own_name() {
        let all = [
            ACAP_OK,
            ACAP_NULL_ARGUMENT,
            ACAP_INVALID_ARGUMENT,
            ACAP_INVALID_UTF8,
            ACAP_PANIC,
            ACAP_BUSY,
            ACAP_BUFFER_TOO_SMALL,
            ACAP_MODEL_LOAD,
            ACAP_SESSION_CREATE,
            ACAP_AXIS_FILE,
            ACAP_AXIS_MISMATCH,
            ACAP_THRESHOLD,
            ACAP_CAP_CONFIG,
            ACAP_CONTROL_VECTOR,
            ACAP_TOKENIZE,
            ACAP_DECODE,
            ACAP_CONTEXT_FULL,
            ACAP_GRAMMAR,
            ACAP_CHAT_TEMPLATE,
            ACAP_CANCELLED,
        ];
        for r in all {
            // SAFETY: acap_result_name returns a static NUL-terminated string.
            let name = unsafe { std::ffi::CStr::from_ptr(acap_result_name(r as i32)) };
            assert_eq!(name.to_str().unwrap(), format!("{r:?}"));
        }
        // SAFETY: as above.
        let unknown = unsafe { std::ffi::CStr::from_ptr(acap_result_name(7)) };
        assert_eq!(unknown.to_str().unwrap(), "ACAP_UNKNOWN");
    }
}
