//! Version information: acap, the vendored llama.cpp and the enabled backends.

use std::ffi::CStr;

use llama_cpp_sys_2 as sys;

/// What this build of acap is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// acap's own version.
    pub acap: &'static str,
    /// The vendored llama.cpp's version string (`llama_version()`).
    pub llama_cpp: String,
    /// The pinned `llama-cpp-sys-2` crate version that vendors it.
    pub llama_cpp_sys: &'static str,
    /// Compiled-in backends besides the CPU (`cuda`, `vulkan`, `metal`, `openmp`).
    pub backends: Vec<&'static str>,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "acap {} (llama.cpp {} via llama-cpp-sys-2 {}; backends: cpu",
            self.acap, self.llama_cpp, self.llama_cpp_sys
        )?;
        for b in &self.backends {
            write!(f, ", {b}")?;
        }
        f.write_str(")")
    }
}

/// Version information of this build.
pub fn version() -> Version {
    // SAFETY: returns a pointer to a static NUL-terminated string.
    let llama = unsafe { CStr::from_ptr(sys::llama_version()) };
    Version {
        acap: env!("CARGO_PKG_VERSION"),
        llama_cpp: llama.to_string_lossy().into_owned(),
        llama_cpp_sys: env!("ACAP_LLAMA_CPP_SYS_VERSION"),
        backends: env!("ACAP_BACKENDS")
            .split(',')
            .filter(|b| !b.is_empty())
            .collect(),
    }
}
