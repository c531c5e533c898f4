//! Hyper-parameters llama.cpp asserts on (`GGML_ASSERT` aborts the whole process, a C program
//! embedding acap included), checked natively before llama.cpp sees the file. Each rule names
//! the assertion it stands in for in the vendored llama.cpp; the table is the one place they
//! are written.

mod arch_asserts;
mod arch_rules;
mod head_asserts;
mod rope;
mod rope_types;
mod vocab;

use acap_gguf::{GgufFile, Value};

/// A model's metadata as llama.cpp will see it: the file's, with `--override-kv` values on
/// top (an override reaches the same assertions as a value in the file).
pub(crate) struct Metadata<'a> {
    pub(crate) gguf: &'a GgufFile,
    pub(crate) overrides: Vec<(String, Value)>,
}

/// A header of `arch` with these keys (`{arch}.` is prefixed to each), for the checks' tests.
#[cfg(test)]
fn arch_header(arch: &str, keys: &[(&str, Value)]) -> GgufFile {
    let mut w = acap_gguf::GgufWriter::new();
    w.set("general.architecture", arch).unwrap();
    for (k, v) in keys {
        w.set(format!("{arch}.{k}"), v.clone()).unwrap();
    }
    GgufFile::from_bytes(w.into_bytes().unwrap()).unwrap()
}

#[cfg(test)]
impl<'a> Metadata<'a> {
    /// The file's metadata without overrides.
    fn of(gguf: &'a GgufFile) -> Self {
        Self {
            gguf,
            overrides: Vec::new(),
        }
    }
}

impl Metadata<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.overrides
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .or_else(|| self.gguf.get(key))
    }

    /// `embedding_length / attention.head_count`, llama.cpp's default head size.
    fn head_size(&self, arch: &str) -> Option<i128> {
        let n_embd = self.arch_int(arch, "embedding_length")?;
        let n_head = self.arch_int(arch, "attention.head_count")?;
        (n_head > 0).then(|| n_embd / n_head)
    }

    /// A head dimension (`attention.key_length` or `attention.value_length`) as llama.cpp
    /// takes it, the head size when absent, with where it came from for a message.
    fn head_dim(&self, arch: &str, suffix: &str) -> Option<(i128, String)> {
        if let Some(v) = self.arch_int(arch, suffix) {
            return Some((v, format!("{arch}.{suffix}")));
        }
        let n_embd = self.arch_int(arch, "embedding_length")?;
        let n_head = self.arch_int(arch, "attention.head_count")?;
        let from =
            format!("{arch}.embedding_length {n_embd} / {arch}.attention.head_count {n_head}");
        Some((self.head_size(arch)?, from))
    }

    /// The integer of `{arch}.{suffix}`, or its first element when it is an array.
    fn arch_int(&self, arch: &str, suffix: &str) -> Option<i128> {
        self.get(&format!("{arch}.{suffix}"))
            .and_then(ints)
            .and_then(|x| x.first().copied())
    }
}

/// A value llama.cpp would abort on: the key, its value as written, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadHparam {
    pub key: String,
    pub value: String,
    pub reason: String,
}

/// What a rule checks.
enum Check {
    /// An integer (or each element of an integer array) in `min..=max`.
    IntRange { min: u64, max: u64 },
    /// A float that is finite and not negative.
    FiniteNonNegative,
    /// A float that is finite and above 0.
    FinitePositive,
    /// A string among these.
    OneOf(&'static [&'static str]),
}

/// One rule: `{arch}.{suffix}`, when present (or always, with `required`).
struct Rule {
    suffix: &'static str,
    required: bool,
    check: Check,
    /// Why the rule holds.
    source: Source,
}

/// Why a rule holds.
enum Source {
    /// The assertion in the vendored llama.cpp it keeps from firing.
    Asserts(&'static str),
    /// A RoPE value llama.cpp takes unchecked and garbles its output on.
    SilentRope,
}

/// `LLAMA_MAX_LAYERS` and `LLAMA_MAX_EXPERTS` (`src/llama-hparams.h`).
const MAX_LAYERS: u64 = 512;
const MAX_EXPERTS: u64 = 1024;

impl Rule {
    /// Why the rule holds, for a message.
    fn why(&self) -> String {
        match self.source {
            Source::Asserts(assertion) => format!("llama.cpp asserts it: {assertion}"),
            Source::SilentRope => "not asserted by llama.cpp, which silently rotates by it: a \
                                   NaN, zero or negative value makes every attention score NaN \
                                   and the output garbage"
                .to_owned(),
        }
    }
}

/// The per-key rules, for every architecture.
const RULES: &[Rule] = &[
    Rule {
        suffix: "block_count",
        required: true,
        check: Check::IntRange {
            min: 1,
            max: MAX_LAYERS,
        },
        source: Source::Asserts(
            "llama-model.cpp load_hparams: n_layer_all > 0 && n_layer_all <= LLAMA_MAX_LAYERS",
        ),
    },
    Rule {
        suffix: "expert_count",
        required: false,
        check: Check::IntRange {
            min: 0,
            max: MAX_EXPERTS,
        },
        source: Source::Asserts("llama-model.cpp load_hparams: n_expert <= LLAMA_MAX_EXPERTS"),
    },
    Rule {
        suffix: "attention.layer_norm_rms_epsilon",
        required: false,
        check: Check::FiniteNonNegative,
        source: Source::Asserts("ggml-cpu ops.cpp rms_norm: eps >= 0.0f (NaN fails it too)"),
    },
    Rule {
        suffix: "attention.layer_norm_epsilon",
        required: false,
        check: Check::FiniteNonNegative,
        source: Source::Asserts("ggml-cpu ops.cpp norm: eps >= 0.0f (NaN fails it too)"),
    },
    Rule {
        suffix: "rope.freq_base",
        required: false,
        check: Check::FinitePositive,
        source: Source::SilentRope,
    },
    Rule {
        suffix: "rope.freq_base_swa",
        required: false,
        check: Check::FinitePositive,
        source: Source::SilentRope,
    },
    Rule {
        suffix: "rope.scaling.factor",
        required: false,
        check: Check::FiniteNonNegative,
        source: Source::SilentRope,
    },
    Rule {
        suffix: "rope.scaling.type",
        required: false,
        check: Check::OneOf(&["none", "linear", "yarn", "longrope"]),
        source: Source::Asserts(
            "llama-model.cpp load_hparams: rope_scaling_type_train != LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED",
        ),
    },
];

/// Keys without the architecture prefix: `(key, rule)`.
const GLOBAL_RULES: &[(&str, Rule)] = &[(
    "tokenizer.ggml.model",
    Rule {
        suffix: "",
        required: false,
        check: Check::OneOf(&[
            "no_vocab",
            "none",
            "llama",
            "bert",
            "gpt2",
            "hybriddna",
            "whitespace",
            "t5",
            "rwkv",
            "test",
            "plamo2",
            "gemma4",
        ]),
        source: Source::Asserts(
            "llama-vocab.cpp load: throws 'unknown tokenizer' for any other name",
        ),
    },
)];

/// The pre-tokenizers llama.cpp knows for BPE vocabularies (`tokenizer_pre == "..."` in the
/// vendored `llama-vocab.cpp`; any other name throws "unknown pre-tokenizer type").
const PRE_TOKENIZERS: &[&str] = &[
    "a.x-4.0",
    "afmoe",
    "bailingmoe",
    "bailingmoe2",
    "bloom",
    "chameleon",
    "chatglm-bpe",
    "codeshell",
    "cohere2moe",
    "command-r",
    "dbrx",
    "deepseek-coder",
    "deepseek-llm",
    "deepseek-r1-qwen",
    "deepseek-v3",
    "default",
    "exaone",
    "exaone-moe",
    "exaone4",
    "f2llmv2",
    "falcon",
    "falcon-h1",
    "falcon3",
    "gemma4",
    "gigachat",
    "glm4",
    "glm5",
    "gpt-2",
    "gpt-4o",
    "gpt3-finnish",
    "granite-docling",
    "granite-embed-multi-311m",
    "granite-embed-multi-97m",
    "grok-2",
    "hunyuan",
    "hunyuan-dense",
    "hy_v4",
    "jais",
    "jais-2",
    "jina-de",
    "jina-es",
    "jina-v1-en",
    "jina-v2-code",
    "jina-v2-de",
    "jina-v2-es",
    "jina-v5-nano",
    "joyai-llm",
    "kanana2",
    "kimi-k2",
    "kormo",
    "laguna",
    "lfm2",
    "llada-moe",
    "llama-bpe",
    "llama-v3",
    "llama3",
    "llama4",
    "megrez",
    "mellum",
    "mellum2",
    "midm-2.0",
    "minerva-7b",
    "minicpm5",
    "minimax-m2",
    "mmbert",
    "modern-bert",
    "mpt",
    "olmo",
    "phi-2",
    "pixtral",
    "poro-chat",
    "qwen2",
    "qwen35",
    "refact",
    "roberta-bpe",
    "sarvam-moe",
    "seed-coder",
    "smaug-bpe",
    "smollm",
    "solar-open",
    "spark2_5",
    "stablelm2",
    "starcoder",
    "superbpe",
    "talkie",
    "tekken",
    "tiny_aya",
    "trillion",
    "ufakzeka",
    "viking",
    "whitespace",
    "youtu",
];

/// `tokenizer.ggml.pre` of a BPE vocabulary (the only kind that reads it) must be one llama.cpp
/// knows.
fn check_pre_tokenizer(gguf: &Metadata<'_>) -> Result<(), BadHparam> {
    // `gemma4` is a BPE vocabulary too (src/hparams/vocab.rs), but llama-vocab.cpp sets its
    // pre-tokenizer to "gemma4" whatever the file says, so its `tokenizer.ggml.pre` is
    // never looked up and must not be refused.
    let bpe = gguf
        .get("tokenizer.ggml.model")
        .and_then(Value::as_str)
        .is_some_and(|m| ["gpt2", "hybriddna", "whitespace"].contains(&m));
    match gguf.get("tokenizer.ggml.pre") {
        Some(v) if bpe => match v.as_str() {
            Some(p) if p.is_empty() || PRE_TOKENIZERS.contains(&p) => Ok(()),
            _ => Err(BadHparam {
                key: "tokenizer.ggml.pre".into(),
                value: shown(v),
                reason: "not a pre-tokenizer llama.cpp knows for BPE vocabularies \
                         (llama-vocab.cpp throws 'unknown pre-tokenizer type')"
                    .into(),
            }),
        },
        _ => Ok(()),
    }
}

/// Architectures whose tensor layout [`check_shapes`] knows (the Llama-like layouts of the
/// testkit's models: `attn_q` of `head_count * key_length` rows, `ffn_up` of
/// `feed_forward_length`). The head-size asserts cover far more: see [`head_asserts`].
const LLAMA_LAYOUT_ARCHS: &[&str] = &[
    "llama",
    "qwen2",
    "qwen3",
    "qwen2moe",
    "qwen3moe",
    "granite",
    "olmo",
    "olmo2",
    "internlm2",
    "starcoder2",
    "smollm3",
    "exaone",
    "falcon",
    "deepseek",
    "baichuan",
    "orion",
    "xverse",
];

/// The integers of a scalar or an integer array.
fn ints(v: &Value) -> Option<Vec<i128>> {
    if let Some(a) = v.as_array() {
        use acap_gguf::Array as A;
        let out: Vec<i128> = match a {
            A::U8(x) => x.iter().map(|&v| v.into()).collect(),
            A::I8(x) => x.iter().map(|&v| v.into()).collect(),
            A::U16(x) => x.iter().map(|&v| v.into()).collect(),
            A::I16(x) => x.iter().map(|&v| v.into()).collect(),
            A::U32(x) => x.iter().map(|&v| v.into()).collect(),
            A::I32(x) => x.iter().map(|&v| v.into()).collect(),
            A::U64(x) => x.iter().map(|&v| v.into()).collect(),
            A::I64(x) => x.iter().map(|&v| v.into()).collect(),
            _ => return None,
        };
        return Some(out);
    }
    let one: i128 = match *v {
        Value::U8(x) => x.into(),
        Value::I8(x) => x.into(),
        Value::U16(x) => x.into(),
        Value::I16(x) => x.into(),
        Value::U32(x) => x.into(),
        Value::I32(x) => x.into(),
        Value::U64(x) => x.into(),
        Value::I64(x) => x.into(),
        _ => return None,
    };
    Some(vec![one])
}

fn float(v: &Value) -> Option<f64> {
    match *v {
        Value::F32(x) => Some(x.into()),
        Value::F64(x) => Some(x),
        _ => None,
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        Value::F32(x) => format!("{x}"),
        Value::F64(x) => format!("{x}"),
        other => ints(other).map_or_else(
            || other.type_name(),
            |i| match i.as_slice() {
                [one] => one.to_string(),
                many => format!("{many:?}"),
            },
        ),
    }
}

/// Checks `gguf`'s hyper-parameters for architecture `arch`.
///
/// # Errors
/// The first value llama.cpp would abort on.
pub(crate) fn check(gguf: &Metadata<'_>, arch: &str) -> Result<(), BadHparam> {
    let bad = |key: &str, v: Option<&Value>, reason: String| BadHparam {
        key: key.to_owned(),
        value: v.map_or_else(|| "missing".to_owned(), shown),
        reason,
    };
    let keyed = RULES
        .iter()
        .map(|r| (format!("{arch}.{}", r.suffix), r))
        .chain(GLOBAL_RULES.iter().map(|(k, r)| ((*k).to_owned(), r)));
    for (key, rule) in keyed {
        let Some(v) = gguf.get(&key) else {
            if rule.required {
                return Err(bad(&key, None, format!("required ({})", rule.why())));
            }
            continue;
        };
        let ok = match &rule.check {
            Check::IntRange { min, max } => ints(v).is_some_and(|xs| {
                xs.iter()
                    .all(|&x| (i128::from(*min)..=i128::from(*max)).contains(&x))
            }),
            Check::FiniteNonNegative => float(v).is_some_and(|x| x.is_finite() && x >= 0.0),
            Check::FinitePositive => float(v).is_some_and(|x| x.is_finite() && x > 0.0),
            Check::OneOf(names) => v.as_str().is_some_and(|s| names.contains(&s)),
        };
        if !ok {
            let want = match &rule.check {
                Check::IntRange { min, max } => format!("an integer in {min}..={max}"),
                Check::FiniteNonNegative => "a finite number >= 0".to_owned(),
                Check::FinitePositive => "a finite number > 0".to_owned(),
                Check::OneOf(names) => format!("one of {}", names.join(", ")),
            };
            return Err(bad(
                &key,
                Some(v),
                format!("must be {want} ({})", rule.why()),
            ));
        }
    }
    check_pre_tokenizer(gguf)?;
    vocab::check(gguf)?;
    check_experts(gguf, arch)?;
    check_head_dims(
        gguf,
        arch,
        head_asserts::VALUE_EQUALS_KEY.contains(&arch),
        head_asserts::ROPE_EQUALS_VALUE.contains(&arch),
    )?;
    arch_rules::refused(arch, arch_asserts::UNCHECKED)?;
    rope::check(gguf, arch)?;
    arch_rules::check(gguf, arch, arch_asserts::ARCH_ASSERTS)?;
    if LLAMA_LAYOUT_ARCHS.contains(&arch) {
        check_shapes(gguf, arch)?;
    }
    if let Some(what) = arch_rules::unchecked(arch, arch_asserts::UNCHECKED) {
        log::warn!(
            "{arch}: acap does not yet check these header values llama.cpp asserts on before \
             loading (a bad one aborts the process): {what}"
        );
    }
    Ok(())
}

/// `expert_used_count` (largest over blocks), `expert_group_count`, `expert_group_used_count`
/// against `expert_count` (llama-model.cpp load_hparams).
fn check_experts(gguf: &Metadata<'_>, arch: &str) -> Result<(), BadHparam> {
    let get = |s: &str| {
        let key = format!("{arch}.{s}");
        let v = gguf.get(&key).and_then(ints);
        (key, v)
    };
    let max = |v: &Option<Vec<i128>>| {
        v.as_ref()
            .and_then(|x| x.iter().copied().max())
            .unwrap_or(0)
    };
    let (_, experts) = get("expert_count");
    let (used_key, used) = get("expert_used_count");
    let (groups_key, groups) = get("expert_group_count");
    let (gused_key, gused) = get("expert_group_used_count");
    let (n, u, g, gu) = (max(&experts), max(&used), max(&groups), max(&gused));
    let fail = |key: &str, value: i128, reason: String| {
        Err(BadHparam {
            key: key.to_owned(),
            value: value.to_string(),
            reason: format!(
                "{reason} ({arch}.expert_count = {n}; llama.cpp asserts it in load_hparams)"
            ),
        })
    };
    if u > n {
        return fail(
            &used_key,
            u,
            format!("more experts used than there are ({n})"),
        );
    }
    if n > 0 {
        if u == 0 {
            return fail(&used_key, u, format!("{n} experts but none used"));
        }
        if g >= n {
            return fail(&groups_key, g, format!("must be below expert_count {n}"));
        }
        if g > 1 {
            if n % g != 0 {
                return fail(&groups_key, g, format!("must divide expert_count {n}"));
            }
            if gu == 0 || gu >= g {
                return fail(&gused_key, gu, format!("must be in 1..{g}"));
            }
        }
    } else if g != 0 {
        return fail(&groups_key, g, "expert groups without experts".into());
    }
    Ok(())
}

/// The head sizes an architecture's graph builder asserts equal (`value_equals_key`,
/// `rope_equals_value`: from [`head_asserts`]), with llama.cpp's defaults: key and value
/// sizes `embedding_length / attention.head_count`, `rope.dimension_count` the key size.
fn check_head_dims(
    gguf: &Metadata<'_>,
    arch: &str,
    value_equals_key: bool,
    rope_equals_value: bool,
) -> Result<(), BadHparam> {
    if !value_equals_key && !rope_equals_value {
        return Ok(());
    }
    // Without a head size there is nothing to compare (llama.cpp refuses such a file itself).
    if gguf.head_size(arch).is_none() {
        return Ok(());
    }
    let (Some((k, k_from)), Some((v, v_from))) = (
        gguf.head_dim(arch, "attention.key_length"),
        gguf.head_dim(arch, "attention.value_length"),
    ) else {
        return Ok(());
    };
    let rot = gguf.arch_int(arch, "rope.dimension_count").unwrap_or(k);
    for (asserted, suffix, value, want, from, assertion) in [
        (
            value_equals_key,
            "attention.value_length",
            v,
            k,
            &k_from,
            "n_embd_head_v == n_embd_head_k",
        ),
        (
            rope_equals_value,
            "rope.dimension_count",
            rot,
            v,
            &v_from,
            "n_embd_head_v == n_rot",
        ),
    ] {
        if asserted && value != want {
            return Err(BadHparam {
                key: format!("{arch}.{suffix}"),
                value: value.to_string(),
                reason: format!(
                    "the {arch} graph needs it equal to the head size {want} (from {from}; \
                     llama.cpp asserts {assertion} in its {arch} graph builder)"
                ),
            });
        }
    }
    Ok(())
}

/// Header values the tensors contradict, for the Llama-like layouts of [`LLAMA_LAYOUT_ARCHS`]:
/// llama.cpp refuses such a file naming only the tensor ("wrong shape", "not found"), not
/// the key that is wrong.
fn check_shapes(gguf: &Metadata<'_>, arch: &str) -> Result<(), BadHparam> {
    let f = gguf.gguf;
    let dims = |name: &str| {
        f.tensors()
            .iter()
            .find(|t| t.name() == name)
            .map(|t| t.dims().to_vec())
    };
    let all = |s: &str| gguf.get(&format!("{arch}.{s}")).and_then(ints);
    let one = |s: &str| gguf.arch_int(arch, s);
    let contradicts = |suffix: &str, value: i128, what: String| BadHparam {
        key: format!("{arch}.{suffix}"),
        value: value.to_string(),
        reason: format!("the file's tensors say otherwise: {what}"),
    };
    let blocks = f
        .tensors()
        .iter()
        .filter_map(|t| {
            t.name()
                .strip_prefix("blk.")?
                .split('.')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .map(|b| i128::from(b) + 1);
    if let (Some(have), Some(n)) = (blocks, one("block_count"))
        && have != n
    {
        return Err(contradicts(
            "block_count",
            n,
            format!("they are for {have} blocks (blk.0 .. blk.{})", have - 1),
        ));
    }
    let n_embd = one("embedding_length");
    if let (Some(d), Some(n_embd)) = (dims("token_embd.weight"), n_embd)
        && d.first().is_some_and(|&d0| i128::from(d0) != n_embd)
    {
        return Err(contradicts(
            "embedding_length",
            n_embd,
            format!("token_embd.weight is {d:?}"),
        ));
    }
    let n_vocab = f
        .get_str_array("tokenizer.ggml.tokens")
        .map(<[String]>::len);
    if let (Some(d), Ok(n_vocab)) = (dims("token_embd.weight"), n_vocab)
        && d.get(1).is_some_and(|&d1| d1 != n_vocab as u64)
    {
        return Err(BadHparam {
            key: "tokenizer.ggml.tokens".into(),
            value: format!("{n_vocab} tokens"),
            reason: format!("the file's tensors say otherwise: token_embd.weight is {d:?}"),
        });
    }
    let n_blocks = blocks.unwrap_or(0);
    match all("feed_forward_length") {
        Some(n_ff) => {
            for i in 0..n_blocks {
                let name = format!("blk.{i}.ffn_up.weight");
                let want = n_ff.get(i as usize).or(n_ff.first()).copied();
                if let (Some(d), Some(want)) = (dims(&name), want)
                    && d.get(1).is_some_and(|&d1| i128::from(d1) != want)
                {
                    return Err(contradicts(
                        "feed_forward_length",
                        want,
                        format!("{name} is {d:?}"),
                    ));
                }
            }
        }
        None if dims("blk.0.ffn_up.weight").is_some() => {
            return Err(BadHparam {
                key: format!("{arch}.feed_forward_length"),
                value: "missing".into(),
                reason: "required: the blocks have feed-forward tensors".into(),
            });
        }
        None => {}
    }
    let (Some(n_embd), Some(n_head)) = (n_embd, one("attention.head_count")) else {
        if dims("blk.0.attn_q.weight").is_some() && one("attention.head_count").is_none() {
            return Err(BadHparam {
                key: format!("{arch}.attention.head_count"),
                value: "missing".into(),
                reason: "required: the blocks have attention tensors".into(),
            });
        }
        return Ok(());
    };
    if n_head <= 0 {
        return Ok(());
    }
    let head_k = one("attention.key_length").unwrap_or(n_embd / n_head);
    let n_head_kv = one("attention.head_count_kv").unwrap_or(n_head);
    for (tensor, suffix, heads) in [
        ("blk.0.attn_q.weight", "attention.head_count", n_head),
        ("blk.0.attn_k.weight", "attention.head_count_kv", n_head_kv),
    ] {
        if let Some(d) = dims(tensor)
            && d.get(1)
                .is_some_and(|&d1| Some(i128::from(d1)) != heads.checked_mul(head_k))
        {
            return Err(contradicts(
                suffix,
                heads,
                format!("{tensor} is {d:?}, not {heads} heads of {head_k}"),
            ));
        }
    }
    Ok(())
}
