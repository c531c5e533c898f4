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
    /// llama.cpp's CMake build type (`Release` for -O3; `RelWithDebInfo` is -O2).
    pub llama_build_type: &'static str,
    /// Whether ggml was built with OpenMP (`ON`/`OFF`).
    pub llama_openmp: &'static str,
    /// Whether ggml was built for this machine's CPU (`GGML_NATIVE`, `ON`/`OFF`).
    pub llama_native: &'static str,
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
        write!(
            f,
            "; llama.cpp build {}, OpenMP {}, native CPU {})",
            self.llama_build_type, self.llama_openmp, self.llama_native
        )
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
        llama_build_type: env!("ACAP_LLAMA_BUILD_TYPE"),
        llama_openmp: env!("ACAP_LLAMA_OPENMP"),
        llama_native: env!("ACAP_LLAMA_NATIVE"),
    }
}
