//! Deterministic test models for acap: random-weight Llama-architecture GGUF files with a
//! byte-level BPE vocabulary, the Llama 3 special tokens and a Llama 3.1 chat template, so
//! tests exercise the same paths as the real model. Quantised variants come from llama.cpp's
//! own quantiser. Files are generated on demand into a cache directory and reused while the
//! generator and the spec are unchanged.
//!
//! Not shipped in any library: tests, examples and benchmarks only.

#![forbid(unsafe_code)]

mod header_mutations;
mod model;
mod rng;

pub use header_mutations::{
    Changes, KEYS as MUTATED_KEYS, describe as describe_changes, header_mutations,
};
pub use rng::Rng;

/// The seed of the header-value corpus CI loads (`header_mutations`).
pub const MUTATION_SEED: u64 = 0x5eed_0020_0003;
pub mod vocab;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Mutex;

pub use acap::QuantType;
pub use model::{Arch, LLAMA31_CHAT_TEMPLATE, ModelSpec, write_model};

/// Bumped whenever generated files change, so stale cache entries are never reused.
const GENERATOR_VERSION: u32 = 3;

/// Why a test model could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// Writing the F16 model failed.
    #[error("writing test model: {0}")]
    Write(#[from] acap_gguf::WriteError),
    /// Quantising failed.
    #[error("quantising test model: {0}")]
    Quantize(#[from] acap::QuantizeError),
    /// The cache directory could not be used.
    #[error("test model cache {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Where generated models are kept: `$ACAP_TESTKIT_CACHE`, else `target/acap-testkit` in the
/// workspace.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("ACAP_TESTKIT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            // crates/acap-testkit -> the workspace root.
            let root = crate_dir
                .parent()
                .and_then(|p| p.parent())
                .unwrap_or(crate_dir);
            root.join("target").join("acap-testkit")
        })
}

/// Serialises generation within a process; across processes the atomic renames make
/// concurrent generation of the same file harmless.
static GENERATING: Mutex<()> = Mutex::new(());

/// The path of `spec` as F16 (`None`) or quantised, generating it if missing.
///
/// # Errors
/// See [`TestkitError`]: each variant says what was wrong.
pub fn model_path(spec: &ModelSpec, quant: Option<QuantType>) -> Result<PathBuf, TestkitError> {
    let dir = cache_dir();
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |source| TestkitError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut h = DefaultHasher::new();
    (GENERATOR_VERSION, spec).hash(&mut h);
    let stem = format!("{}-{:016x}", spec.name, h.finish());
    let f16 = dir.join(format!("{stem}-F16.gguf"));
    let _guard = GENERATING.lock().unwrap_or_else(|e| e.into_inner());
    if !f16.is_file() {
        remove_stale(&dir, spec.name, &stem);
        write_model(spec, &f16)?;
    }
    let Some(q) = quant.filter(|q| *q != QuantType::F16) else {
        return Ok(f16);
    };
    let out = dir.join(format!("{stem}-{}.gguf", q.name()));
    if !out.is_file() {
        let tmp = dir.join(format!(".{stem}-{}.tmp-{}", q.name(), std::process::id()));
        acap::quantize(&f16, &tmp, q, 0)?;
        std::fs::rename(&tmp, &out).map_err(io(&out))?;
    }
    Ok(out)
}

/// Removes files of the same preset made by another generator version or spec (names
/// `{preset}-{16 hex digits}-{TYPE}.gguf` with a different hash), so the cache does not grow.
fn remove_stale(dir: &std::path::Path, preset: &str, current_stem: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(preset).and_then(|r| r.strip_prefix('-')) else {
            continue;
        };
        let is_ours = rest.len() > 17
            && rest.as_bytes()[16] == b'-'
            && rest[..16].bytes().all(|b| b.is_ascii_hexdigit());
        if is_ours && !name.starts_with(current_stem) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `n` deterministic pseudo-random values, uniform in [-1, 1): directions and rows for tests,
/// demos and benchmarks.
pub fn random_vector(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = rng::Rng::for_tensor(seed, "random_vector");
    (0..n).map(|_| rng.uniform()).collect()
}

/// The tiny model (n_embd 256, 8 blocks) in the given type.
pub fn tiny(quant: QuantType) -> PathBuf {
    model_path(&ModelSpec::tiny(), Some(quant)).expect("generating the tiny test model")
}

/// The tiny shape with the Qwen2 architecture, in the given type.
pub fn tiny_qwen2(quant: QuantType) -> PathBuf {
    model_path(&ModelSpec::tiny_qwen2(), Some(quant)).expect("generating the tiny Qwen2 test model")
}

/// A copy of the model at `src` written to `dst` with metadata changed: `(key, Some(v))`
/// sets (or adds) a key, `(key, None)` removes it. For tests of what a loader accepts.
pub fn with_metadata(
    src: &std::path::Path,
    dst: &std::path::Path,
    changes: &[(&str, Option<acap_gguf::Value>)],
) -> PathBuf {
    use acap_gguf::{GgufFile, GgufWriter};
    let f = GgufFile::open(src).expect("reading the test model");
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        if !changes.iter().any(|(c, _)| c == k) {
            w.set(k.clone(), v.clone()).expect("copying metadata");
        }
    }
    for (k, v) in changes {
        if let Some(v) = v {
            w.set(*k, v.clone()).expect("setting metadata");
        }
    }
    for t in f.tensors() {
        w.add_raw(t.name(), t.dims(), t.ggml_type(), f.view(t).data().to_vec())
            .expect("copying a tensor");
    }
    w.write_file(dst).expect("writing the copy");
    dst.to_owned()
}

/// A copy of the model at `src` without `tokenizer.chat_template`, written into `dir` (a
/// model whose chat requests fall back to chatml, as llama.cpp's do).
pub fn without_chat_template(src: &std::path::Path, dir: &std::path::Path) -> PathBuf {
    with_metadata(
        src,
        &dir.join("no-template.gguf"),
        &[("tokenizer.chat_template", None)],
    )
}

/// A copy of the model at `src` written to `dst` with every F16 tensor widened to F32 (exact),
/// after `edit(name, values)` may change each tensor's values (F32 and F16 tensors only;
/// others are copied as they are). An F32 model computes its matrix products without
/// rounding activations to F16, so edits inside the graph and edits of the weights can be
/// compared bit for bit.
pub fn f32_copy(
    src: &std::path::Path,
    dst: &std::path::Path,
    mut edit: impl FnMut(&str, &[u64], &mut [f32]),
) -> PathBuf {
    use acap_gguf::{GgmlType, GgufFile, GgufWriter};
    let f = GgufFile::open(src).expect("reading the test model");
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        // general.file_type says F16; llama.cpp only reports it.
        if k != "general.file_type" {
            w.set(k.clone(), v.clone()).expect("copying metadata");
        }
    }
    w.set("general.file_type", 0u32)
        .expect("setting the file type");
    for t in f.tensors() {
        let view = f.view(t);
        match t.ggml_type() {
            GgmlType::F16 | GgmlType::F32 => {
                let mut values = view.to_f32_vec().expect("F16 and F32 convert");
                edit(t.name(), t.dims(), &mut values);
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                w.add_raw(t.name(), t.dims(), GgmlType::F32, bytes)
                    .expect("copying a tensor");
            }
            other => {
                w.add_raw(t.name(), t.dims(), other, view.data().to_vec())
                    .expect("copying a tensor");
            }
        }
    }
    w.write_file(dst).expect("writing the copy");
    dst.to_owned()
}
