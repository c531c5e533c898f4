//! Fuzzes model loading through header *values*: the input chooses up to four metadata
//! changes to the tiny test model (which key, which type, which value, or removal), and the
//! variant is loaded by llama.cpp through acap and decoded. Nothing may abort the process
//! (a `GGML_ASSERT`, a C++ exception unwinding into Rust) or panic: a variant loads and
//! decodes, or is refused with an error. CI runs the fixed-seed corpus of 2,000 variants
//! (`tests/integration/header_corpus.rs`); this target searches further.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use acap::gguf::Value;
use acap::{GenerateParams, Model, ModelParams, QuantType, SamplingParams, Session, SessionParams};
use libfuzzer_sys::fuzz_target;

/// Strings worth trying where llama.cpp expects a name.
const STRINGS: &[&str] = &["", "none", "no_vocab", "llama", "gpt2", "bert", "yarn", "linear", "bogus"];

/// One change per 10 input bytes: key, kind, 8 value bytes.
fn changes(data: &[u8]) -> Vec<(&'static str, Option<Value>)> {
    let keys = acap_testkit::MUTATED_KEYS;
    let mut out: Vec<(&'static str, Option<Value>)> = Vec::new();
    for c in data.chunks_exact(10).take(4) {
        let key = keys[usize::from(c[0]) % keys.len()];
        let bits = u64::from_le_bytes(c[2..10].try_into().expect("8 bytes"));
        let value = match c[1] % 9 {
            0 => None,
            1 => Some(Value::U32(bits as u32)),
            2 => Some(Value::I32(bits as i32)),
            3 => Some(Value::U64(bits)),
            4 => Some(Value::I64(bits as i64)),
            5 => Some(Value::F32(f32::from_bits(bits as u32))),
            6 => Some(Value::F64(f64::from_bits(bits))),
            7 => Some(Value::Bool(bits & 1 == 1)),
            _ => Some(Value::from(STRINGS[(bits as usize) % STRINGS.len()])),
        };
        // The writer refuses an alignment that is not a power of two.
        if key == "general.alignment"
            && !matches!(value, Some(Value::U32(x)) if x.is_power_of_two())
        {
            continue;
        }
        out.retain(|(k, _)| *k != key);
        out.push((key, value));
    }
    out
}

fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("acap-fuzz-header-{}.gguf", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    static SRC: OnceLock<PathBuf> = OnceLock::new();
    let src = SRC.get_or_init(|| acap_testkit::tiny(QuantType::Q4KM));
    let path = acap_testkit::with_metadata(src, scratch(), &changes(data));
    let Ok(model) = Model::load(&path, ModelParams::default()) else {
        return;
    };
    let params = SessionParams::default()
        .with_n_ctx(128)
        .with_n_batch(32)
        .with_n_ubatch(32)
        .with_threads(1);
    let Ok(mut session) = Session::new(&model, params) else {
        return;
    };
    let gp = GenerateParams::default()
        .with_max_tokens(2)
        .with_sampling(SamplingParams::greedy());
    let _ = session.complete("Hello there", &gp);
});
