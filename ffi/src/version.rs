//! Version information.

use std::ffi::{CString, c_char};
use std::sync::OnceLock;

use crate::boundary::guard_value;

// Literals, so cbindgen can write them into the header; a test keeps them equal to the
// crate version.
/// acap's major version number (the header's, i.e. compiled against).
pub const ACAP_VERSION_MAJOR: u32 = 0;
/// acap's minor version number.
pub const ACAP_VERSION_MINOR: u32 = 1;
/// acap's patch version number.
pub const ACAP_VERSION_PATCH: u32 = 0;

/// The numbers of an acap build, for checks at run time (the header's `ACAP_VERSION_*`
/// give the numbers compiled against).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct acap_version_triple {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

struct Strings {
    acap: CString,
    full: CString,
    llama_cpp: CString,
}

fn strings() -> &'static Strings {
    static S: OnceLock<Strings> = OnceLock::new();
    S.get_or_init(|| {
        let v = engine::version();
        let c = |s: String| CString::new(s).unwrap_or_default();
        Strings {
            acap: c(v.acap.to_owned()),
            full: c(v.to_string()),
            llama_cpp: c(format!(
                "{} (llama-cpp-sys-2 {})",
                v.llama_cpp, v.llama_cpp_sys
            )),
        }
    })
}

/// acap's version, e.g. `"0.1.0"`. A static string: never freed, never NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn acap_version() -> *const c_char {
    guard_value(c"".as_ptr(), || strings().acap.as_ptr())
}

/// The version as numbers. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn acap_version_numbers() -> acap_version_triple {
    acap_version_triple {
        major: ACAP_VERSION_MAJOR,
        minor: ACAP_VERSION_MINOR,
        patch: ACAP_VERSION_PATCH,
    }
}

/// The vendored llama.cpp's version and the `llama-cpp-sys-2` crate that vendors it, e.g.
/// `"0.0.0-dev (llama-cpp-sys-2 0.1.161)"`. A static string: never freed, never NULL.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn acap_llama_cpp_version() -> *const c_char {
    guard_value(c"".as_ptr(), || strings().llama_cpp.as_ptr())
}

/// Everything in one line, as `acap version` prints it (acap, llama.cpp, enabled backends).
/// A static string: never freed, never NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn acap_build_info() -> *const c_char {
    guard_value(c"".as_ptr(), || strings().full.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_constants_match_the_crate_version() {
        let expected = format!("{ACAP_VERSION_MAJOR}.{ACAP_VERSION_MINOR}.{ACAP_VERSION_PATCH}");
        assert_eq!(env!("CARGO_PKG_VERSION"), expected);
        // SAFETY: a static NUL-terminated string.
        let s = unsafe { std::ffi::CStr::from_ptr(acap_version()) };
        assert_eq!(s.to_str().unwrap(), expected);
    }
}
