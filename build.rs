//! Build script of the root crate: embeds version information for `acap::version()`.
//!
//! A preflight for `cmake` and `libclang` cannot live here: llama-cpp-sys-2 declares
//! `links = "llama"`, so Cargo runs its build script (which needs both) before this one. The
//! check is in `scripts/setup.sh`, which installs them.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/llama/shim.cpp");
    build_shim();
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_GGML_CMAKE_DIR");

    let backends: Vec<&str> = ["cuda", "vulkan", "metal", "openmp"]
        .into_iter()
        .filter(|b| env::var_os(format!("CARGO_FEATURE_{}", b.to_uppercase())).is_some())
        .collect();
    println!("cargo:rustc-env=ACAP_BACKENDS={}", backends.join(","));

    // The exact llama-cpp-sys-2 version, read from the lock file that pins it.
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let sys_version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"llama-cpp-sys-2\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_owned())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ACAP_LLAMA_CPP_SYS_VERSION={sys_version}");

    // How llama.cpp was configured, from the CMake cache of the sys crate's build (its
    // `links = "llama"` metadata names the install's cmake folder, OUT_DIR/lib/cmake).
    let cache = env::var_os("DEP_LLAMA_GGML_CMAKE_DIR")
        .map(std::path::PathBuf::from)
        .and_then(|d| Some(d.parent()?.parent()?.join("build/CMakeCache.txt")))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let value = |key: &str| {
        cache
            .lines()
            .find_map(|l| {
                l.strip_prefix(key)?
                    .split_once('=')
                    .map(|(_, v)| v.to_owned())
            })
            .unwrap_or_else(|| "unknown".into())
    };
    println!(
        "cargo:rustc-env=ACAP_LLAMA_BUILD_TYPE={}",
        value("CMAKE_BUILD_TYPE:")
    );
    println!(
        "cargo:rustc-env=ACAP_LLAMA_OPENMP={}",
        value("GGML_OPENMP_ENABLED:")
    );
    println!(
        "cargo:rustc-env=ACAP_LLAMA_NATIVE={}",
        value("GGML_NATIVE:")
    );
}

/// Compiles the exception barrier (`src/llama/shim.cpp`) against the sys crate's installed
/// `llama.h` (its `OUT_DIR/include`, next to the `lib/cmake` folder it reports).
fn build_shim() {
    let include = env::var_os("DEP_LLAMA_GGML_CMAKE_DIR")
        .map(std::path::PathBuf::from)
        .and_then(|d| Some(d.parent()?.parent()?.join("include")))
        .filter(|d| d.join("llama.h").is_file())
        .expect("llama-cpp-sys-2 did not report where llama.h is installed");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .include(include)
        .file("src/llama/shim.cpp")
        .warnings(true)
        .compile("acap_llama_shim");
}
