//! Writes a deterministic corpus of the tiny test model with hostile header *values* (not
//! structure): every numeric key set to extremes, types swapped, keys llama.cpp asserts on
//! added, token ids out of range. `scripts/header-mutations.sh` loads each variant in its own
//! `acap-cli` process and counts refusals, successes and aborts.
//!
//!     cargo run --example header_mutations -- OUT_DIR [N]

use acap::gguf::{GgufFile, Value};

/// xorshift64*: the same corpus everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// Values that break assumptions: zero, one, powers of two at type edges, negatives, NaN.
fn hostile(rng: &mut Rng) -> Value {
    let ints: [i64; 16] = [
        0,
        1,
        2,
        3,
        7,
        255,
        256,
        1023,
        65_535,
        65_536,
        i64::from(i32::MAX),
        i64::from(u32::MAX),
        -1,
        -2,
        i64::MIN,
        i64::MAX,
    ];
    let floats = [
        0.0,
        -0.0,
        -1e-5,
        1e-30,
        1e30,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        -f32::MAX,
    ];
    match rng.next() % 8 {
        0 | 1 => {
            let v = *rng.pick(&ints);
            if v < 0 {
                Value::I32(v as i32)
            } else {
                Value::U32(v.min(i64::from(u32::MAX)) as u32)
            }
        }
        2 => Value::I64(*rng.pick(&ints)),
        3 => Value::U64(*rng.pick(&ints) as u64),
        4 | 5 => Value::F32(*rng.pick(&floats)),
        6 => Value::Bool(rng.next() % 2 == 0),
        _ => Value::from(*rng.pick(&["", "none", "yarn", "bogus", "llama"])),
    }
}

/// Keys llama.cpp reads for Llama-family models, present or not in the test model.
const KEYS: &[&str] = &[
    "llama.context_length",
    "llama.embedding_length",
    "llama.block_count",
    "llama.feed_forward_length",
    "llama.attention.head_count",
    "llama.attention.head_count_kv",
    "llama.rope.freq_base",
    "llama.rope.freq_scale",
    "llama.rope.dimension_count",
    "llama.rope.scaling.type",
    "llama.rope.scaling.factor",
    "llama.rope.scaling.original_context_length",
    "llama.attention.layer_norm_rms_epsilon",
    "llama.attention.key_length",
    "llama.attention.value_length",
    "llama.attention.sliding_window",
    "llama.expert_count",
    "llama.expert_used_count",
    "llama.vocab_size",
    "llama.logit_scale",
    "llama.attention.causal",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "general.alignment",
    "general.file_type",
    "general.quantization_version",
];

fn main() {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().expect("usage: header_mutations OUT_DIR [N]"));
    let n: usize = args.next().map_or(2000, |s| s.parse().expect("N"));
    std::fs::create_dir_all(&out).unwrap();
    let src = acap_testkit::tiny(acap::QuantType::Q8_0);
    let f = GgufFile::open(&src).unwrap();
    let mut rng = Rng(0x5eed_0020_0003);
    let mut log = String::new();
    for i in 0..n {
        // One to three keys changed (or removed) per variant.
        let mut changes: Vec<(&str, Option<Value>)> = Vec::new();
        for _ in 0..1 + rng.next() % 3 {
            let key = *rng.pick(KEYS);
            if changes.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let v = if rng.next() % 10 == 0 {
                None
            } else {
                Some(hostile(&mut rng))
            };
            changes.push((key, v));
        }
        // general.alignment must stay a power of two for the file to be written at all.
        changes.retain(|(k, v)| {
            *k != "general.alignment" || matches!(v, Some(Value::U32(x)) if x.is_power_of_two())
        });
        let path = out.join(format!("v{i:05}.gguf"));
        acap_testkit::with_metadata(&src, &path, &changes);
        let desc: Vec<String> = changes
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v:?}"),
                None => format!("{k} removed"),
            })
            .collect();
        log.push_str(&format!("v{i:05} {}\n", desc.join(" ")));
    }
    drop(f);
    std::fs::write(out.join("variants.txt"), log).unwrap();
    eprintln!("{n} variants in {}", out.display());
}
