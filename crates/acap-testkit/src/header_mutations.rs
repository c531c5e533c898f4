//! A deterministic corpus of hostile header *values* (not structure) for a Llama-family
//! model: numeric keys set to extremes, types swapped, keys llama.cpp asserts on added,
//! token ids out of range, keys removed. The in-process corpus test and
//! `scripts/header-mutations.sh` (one process per variant) both load it.

use acap_gguf::Value;

use crate::Rng;

/// One variant: keys set (`Some`) or removed (`None`).
pub type Changes = Vec<(&'static str, Option<Value>)>;

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
    match rng.next_u64() % 8 {
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
        6 => Value::Bool(rng.next_u64() % 2 == 0),
        _ => Value::from(*rng.pick(&["", "none", "yarn", "bogus", "llama"])),
    }
}

/// Keys llama.cpp reads for Llama-family models, present or not in the test model.
pub const KEYS: &[&str] = &[
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

/// `n` variants from `seed`, each changing one to three keys of [`KEYS`].
pub fn header_mutations(seed: u64, n: usize) -> Vec<Changes> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let mut changes: Changes = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let key = *rng.pick(KEYS);
                if changes.iter().any(|(k, _)| *k == key) {
                    continue;
                }
                let v = (rng.below(10) != 0).then(|| hostile(&mut rng));
                changes.push((key, v));
            }
            // general.alignment must stay a power of two for the file to be written at all.
            changes.retain(|(k, v)| {
                *k != "general.alignment" || matches!(v, Some(Value::U32(x)) if x.is_power_of_two())
            });
            changes
        })
        .collect()
}

/// `key=value` / `key removed`, space-separated.
pub fn describe<K: AsRef<str>>(changes: &[(K, Option<Value>)]) -> String {
    let parts: Vec<String> = changes
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{}={v:?}", k.as_ref()),
            None => format!("{} removed", k.as_ref()),
        })
        .collect();
    parts.join(" ")
}
