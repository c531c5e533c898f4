//! Build script of the root crate.
//!
//! Today it only embeds the crate version for `acap::version()`'s future callers. The llama.cpp
//! integration adds its preflight (cmake / libclang checks) and backend reporting here.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
