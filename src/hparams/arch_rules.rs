//! What the generated [`super::arch_asserts`] table is written in: GGUF keys with the value
//! llama.cpp takes when a file lacks them, and the relations between them that one
//! `GGML_ASSERT` of a graph builder or loader needs. An assertion aborts the whole process (a
//! C program embedding acap included), so a value that would fail one is refused here first.

use super::{BadHparam, Metadata, float, ints, shown};
use acap_gguf::Value;

/// What llama.cpp takes for a key the file does not have.
pub(super) enum Fallback {
    /// Nothing: llama.cpp refuses the file itself ("key not found"), catchably, so a missing
    /// key needs no check here.
    Required,
    /// This value (the `hparams` default or the `get_key` fallback).
    Int(i64),
    /// Another key's value (itself with llama.cpp's fallback: the head size for the
    /// key and value lengths, none for the rest).
    Key(&'static str),
    /// `embedding_length / attention.head_count`.
    HeadSize,
}

/// One GGUF key, `{arch}.{suffix}`; the suffix `@head` is the head size itself.
pub(super) struct Key {
    suffix: &'static str,
    fallback: Fallback,
}

/// A key llama.cpp requires.
pub(super) const fn required(suffix: &'static str) -> Key {
    Key {
        suffix,
        fallback: Fallback::Required,
    }
}

/// A key that is `value` when absent.
pub(super) const fn or_int(suffix: &'static str, value: i64) -> Key {
    Key {
        suffix,
        fallback: Fallback::Int(value),
    }
}

/// A key that is another key's value when absent.
pub(super) const fn or_key(suffix: &'static str, other: &'static str) -> Key {
    Key {
        suffix,
        fallback: Fallback::Key(other),
    }
}

/// A key that is the head size when absent.
pub(super) const fn or_head_size(suffix: &'static str) -> Key {
    Key {
        suffix,
        fallback: Fallback::HeadSize,
    }
}

/// A boolean GGUF key, `{arch}.{suffix}`, and what llama.cpp takes when the file lacks it.
pub(super) struct Flag {
    suffix: &'static str,
    default: bool,
}

/// A boolean key that is `default` when absent.
pub(super) const fn flag(suffix: &'static str, default: bool) -> Flag {
    Flag { suffix, default }
}

/// A float GGUF key, `{arch}.{suffix}`; `default` is `None` where llama.cpp requires it.
pub(super) struct FloatKey {
    suffix: &'static str,
    default: Option<f64>,
}

/// A float key that is `default` when absent (`None`: llama.cpp requires it).
pub(super) const fn float_key(suffix: &'static str, default: Option<f64>) -> FloatKey {
    FloatKey { suffix, default }
}

/// How a hybrid model's blocks split into recurrent and attention blocks (llama.cpp's
/// `is_recr` and the layer filters of its hybrid memory).
pub(super) enum Layers {
    /// Blocks with 0 in the key (`attention.head_count_kv`) are recurrent, the rest attention.
    NoKvHeads(Key),
    /// Nemotron-H: blocks with neither key-value heads (the first) nor a feed-forward (the
    /// second) are recurrent, those with key-value heads and no feed-forward attention, the
    /// rest MLP blocks.
    NoKvHeadsNoFfn(Key, Key),
    /// `{arch}.{suffix}` (a flag per block) marks the recurrent blocks when present; else each
    /// block but every `full_attention_interval`-th (the key) is recurrent.
    Interval(&'static str, Key),
}

/// Where a sliding-window model's per-block window flags come from.
pub(super) enum SwaPattern {
    /// `attention.sliding_window_pattern` as an array of flags (llama.cpp requires it).
    Flags,
    /// The flags array, else a period from that key as an integer (else this default):
    /// llama.cpp's `set_swa_pattern(n, dense_first)` over the trunk's blocks.
    Period(i64, bool),
}

/// When a model's loader turns sliding-window attention on.
pub(super) enum SwaWhen {
    Always,
    /// `attention.sliding_window` is above 0 (absent is 0).
    Window,
    /// `attention.sliding_window` is absent or above 0.
    WindowNotZero,
    /// The trunk has this many blocks (EXAONE 4.0 32B).
    Blocks(i64),
}

/// The first block that reuses an earlier block's KV cache.
pub(super) enum KvFrom {
    /// This block (Gemma 3n: 20).
    Fixed(i64),
    /// The first key less the second (Gemma 4: `block_count - attention.shared_kv_layers`).
    Less(Key, Key),
}

/// What one assertion needs of the keys.
pub(super) enum Need {
    /// The key (each element of an array) is at least this.
    Min(Key, i64),
    /// The key (each element of an array) is this.
    Is(Key, i64),
    /// The second is at least 1 and divides the first.
    Divides(Key, Key),
    /// The first two are at least 1 and their product is the third.
    Product(Key, Key, Key),
    /// The first times the factor is the second.
    Scaled(Key, i64, Key),
    /// The two are equal.
    Equal(Key, Key),
    /// The first is 0 or equals the second.
    ZeroOrEqual(Key, Key),
    /// The first is below the second.
    Below(Key, Key),
    /// The first is at most the second.
    AtMost(Key, Key),
    /// A hybrid model has both a recurrent and an attention block among its trunk's blocks
    /// (`block_count` less `nextn_predict_layers`): without one of the two kinds its memory
    /// has no buffer for that kind's graph inputs, and setting them aborts at the first decode.
    Hybrid(Layers),
    /// Where `{arch}.{suffix}` (the recurrent-block flags) is absent, the key (the interval
    /// llama.cpp takes the block index modulo) is at least 1.
    EveryNth(&'static str, Key),
    /// Where sliding-window attention is on, some block uses it (llama.cpp's `is_swa_any`).
    SomeSwa(SwaPattern, SwaWhen),
    /// Where the float is set (not 0), the key is at least the minimum.
    MinWhenFloat(Key, i64, FloatKey),
    /// The first less the second is at least this.
    Leaves(Key, Key, i64),
    /// The blocks from the given one on reuse the KV cache of an earlier block of their kind
    /// (Gemma 3n, Gemma 4).
    SharedKv(SwaPattern, KvFrom),
    /// The flag is this.
    FlagIs(Flag, bool),
    /// The float is below this (a NaN is not).
    FloatBelow(FloatKey, f64),
    /// The float is within the tolerance of this.
    FloatNear(FloatKey, f64, f64),
    /// The fourth is first x second x (third + 1): HRM's cache slots, layers per stack x high
    /// cycles x (low cycles + 1).
    Cycles(Key, Key, Key, Key),
    /// The product of the two is at most this.
    ProductAtMost(Key, Key, i64),
    /// The array has at most this many elements.
    MaxLength(Key, i64),
    /// The third (key-value heads) is 0, or divides first / second (the head count, from a
    /// width and a head size at least 1).
    DividesQuotient(Key, Key, Key),
    /// Each block's `blk.N.ffn_up.weight` has the key's rows or twice them (a gated
    /// feed-forward stored as one tensor).
    FfnUpRows(Key),
    /// When the third is below the fourth, the first is at least the minimum (MoE blocks
    /// from `leading_dense_block_count` on need experts).
    MinWhenBelow(Key, i64, Key, Key),
    /// The key is what llama.cpp's Hadamard rotation tiles: a multiple of 64, its smallest
    /// rotation; with `exact`, a power of two as well, because the rotation llama.cpp
    /// builds (64 doubled while it still divides the key) then multiplies the key's rows
    /// by `ggml_mul_mat`, which needs the two as wide.
    HadamardTiles(Key, bool),
}

/// One assertion checked natively.
pub(super) struct ArchAssert {
    /// The architectures (`general.architecture`) whose models reach it; `*` is all.
    pub(super) archs: &'static [&'static str],
    /// The file of the vendored `src/` and the assertion as written there.
    pub(super) source: &'static str,
    /// What it needs of the keys.
    pub(super) needs: &'static [Need],
}

/// Assertions of one file not checked natively yet.
pub(super) struct Unchecked {
    pub(super) archs: &'static [&'static str],
    pub(super) file: &'static str,
    pub(super) what: &'static str,
    pub(super) asserts: usize,
    /// The architectures are refused at load (`what` says why) rather than warned about.
    pub(super) refused: bool,
}

/// A key's value as llama.cpp will hold it.
#[derive(Clone, Default)]
struct Resolved {
    /// The full key name, reported as the culprit.
    key: String,
    values: Vec<i128>,
    /// How the value came about, when not from the key itself.
    absent: Option<String>,
    /// A float's or a flag's value, shown instead of `values`.
    text: Option<String>,
}

impl Resolved {
    /// Block `i`'s value: its element of a per-block array, else the one value for all.
    fn at(&self, i: usize) -> Option<i128> {
        self.values.get(i).or(self.values.first()).copied()
    }

    fn first(&self) -> i128 {
        self.values.first().copied().unwrap_or(0)
    }

    fn shown(&self) -> String {
        let v = match (&self.text, self.values.as_slice()) {
            (Some(t), _) => t.clone(),
            (None, [one]) => one.to_string(),
            (None, many) => format!("{many:?}"),
        };
        match &self.absent {
            Some(how) => format!("missing ({how}: {v})"),
            None => v,
        }
    }

    /// `key = value` for a reason's text.
    fn named(&self) -> String {
        format!("{} = {}", self.key, self.shown())
    }
}

/// The value llama.cpp will hold for `key`; `None` when it will refuse the file itself (a
/// required key missing, or a value of the wrong type).
fn resolve(md: &Metadata<'_>, arch: &str, key: &Key) -> Option<Resolved> {
    let full = format!("{arch}.{}", key.suffix);
    if key.suffix == "@head" {
        return Some(Resolved {
            key: format!("{arch}.embedding_length / {arch}.attention.head_count"),
            values: vec![md.head_size(arch)?],
            absent: None,
            ..Resolved::default()
        });
    }
    if let Some(v) = md.get(&full) {
        return Some(Resolved {
            key: full,
            values: ints(v)?,
            absent: None,
            ..Resolved::default()
        });
    }
    let (values, how) = match key.fallback {
        Fallback::Required => return None,
        Fallback::Int(i) => (vec![i128::from(i)], "llama.cpp's default".to_owned()),
        Fallback::HeadSize => (
            vec![md.head_size(arch)?],
            "llama.cpp takes the head size".to_owned(),
        ),
        Fallback::Key(other) => {
            let fallback = match other {
                "attention.key_length" | "attention.value_length" => Fallback::HeadSize,
                "attention.head_count" => Fallback::Int(0),
                _ => Fallback::Required,
            };
            let r = resolve(
                md,
                arch,
                &Key {
                    suffix: other,
                    fallback,
                },
            )?;
            (r.values, format!("llama.cpp takes {arch}.{other}"))
        }
    };
    Some(Resolved {
        key: full,
        values,
        absent: Some(how),
        ..Resolved::default()
    })
}

/// Checks `need`; the culprit and what it must be, when it fails.
fn unmet(md: &Metadata<'_>, arch: &str, need: &Need) -> Option<(Resolved, String)> {
    let get = |k: &Key| resolve(md, arch, k);
    match need {
        Need::Min(k, min) => {
            let a = get(k)?;
            a.values
                .iter()
                .any(|&v| v < i128::from(*min))
                .then(|| (a, format!("must be at least {min}")))
        }
        Need::HadamardTiles(k, exact) => {
            let a = get(k)?;
            let v = a.first();
            let tiles = v >= 64 && v % 64 == 0 && (!exact || (v & (v - 1)) == 0);
            let why = if *exact {
                "must be a power of two, at least 64 (the width of llama.cpp's Hadamard rotation)"
            } else {
                "must be a multiple of 64 (llama.cpp's Hadamard rotation tiles it)"
            };
            (!tiles).then(|| (a, why.to_string()))
        }
        Need::Is(k, want) => {
            let a = get(k)?;
            a.values
                .iter()
                .any(|&v| v != i128::from(*want))
                .then(|| (a, format!("must be {want}")))
        }
        Need::Divides(a, b) => {
            let (a, b) = (get(a)?, get(b)?);
            if b.first() < 1 {
                let why = format!("must be at least 1 (it divides {})", a.named());
                Some((b, why))
            } else if a.first() % b.first() != 0 {
                let why = format!("must be a multiple of {}", b.named());
                Some((a, why))
            } else {
                None
            }
        }
        Need::Product(a, b, c) => {
            let (a, b, c) = (get(a)?, get(b)?, get(c)?);
            if let Some(zero) = [&a, &b].into_iter().find(|r| r.first() < 1) {
                let why = format!("must be at least 1 (it sizes {})", c.key);
                return Some((zero.clone(), why));
            }
            (a.first() * b.first() != c.first()).then(|| {
                let why = format!(
                    "must be {} x {} = {}",
                    a.named(),
                    b.named(),
                    a.first() * b.first()
                );
                (c, why)
            })
        }
        Need::Scaled(a, times, b) => {
            let (a, b) = (get(a)?, get(b)?);
            let want = a.first() * i128::from(*times);
            (b.first() != want).then(|| (b, format!("must be {times} x {} = {want}", a.named())))
        }
        Need::Equal(a, b) => {
            let (a, b) = (get(a)?, get(b)?);
            (a.first() != b.first()).then(|| {
                let why = format!("must equal {}", b.named());
                (a, why)
            })
        }
        Need::ZeroOrEqual(a, b) => {
            let (a, b) = (get(a)?, get(b)?);
            (a.first() != 0 && a.first() != b.first()).then(|| {
                let why = format!("must be 0 or equal {}", b.named());
                (a, why)
            })
        }
        Need::Below(a, b) => {
            let (a, b) = (get(a)?, get(b)?);
            (a.first() >= b.first()).then(|| {
                let why = format!("must be below {}", b.named());
                (a, why)
            })
        }
        Need::AtMost(a, b) => {
            let (a, b) = (get(a)?, get(b)?);
            (a.first() > b.first()).then(|| {
                let why = format!("must be at most {}", b.named());
                (a, why)
            })
        }
        Need::Hybrid(layers) => hybrid(md, arch, layers),
        Need::EveryNth(flags, every) => {
            if md.get(&format!("{arch}.{flags}")).is_some() {
                return None;
            }
            let every = get(every)?;
            (every.first() < 1).then(|| {
                let why = format!(
                    "must be at least 1 without {arch}.{flags}: llama.cpp takes each block's index \
                     modulo it"
                );
                (every, why)
            })
        }
        Need::SomeSwa(pattern, when) => some_swa(md, arch, pattern, when),
        Need::SharedKv(pattern, from) => {
            let from = match from {
                KvFrom::Fixed(f) => i128::from(*f),
                KvFrom::Less(total, shared) => get(total)?.first() - get(shared)?.first(),
            };
            shared_kv(md, arch, pattern, usize::try_from(from).ok()?)
        }
        Need::MinWhenFloat(k, min, f) => {
            let (set, x) = resolve_float(md, arch, f)?;
            let k = get(k)?;
            (x != 0.0 && k.first() < i128::from(*min)).then(|| {
                let why = format!("must be at least {min} where {} is set", set.named());
                (k, why)
            })
        }
        Need::Leaves(total, part, min) => {
            let (total, part) = (get(total)?, get(part)?);
            (total.first() - part.first() < i128::from(*min)).then(|| {
                let why = format!("must leave at least {min} of {}", total.named());
                (part, why)
            })
        }
        Need::FlagIs(f, want) => {
            let full = format!("{arch}.{}", f.suffix);
            let (value, absent) = match md.get(&full) {
                Some(Value::Bool(b)) => (*b, None),
                Some(_) => return None,
                None => (f.default, Some("llama.cpp's default".to_owned())),
            };
            (value != *want).then(|| {
                let r = Resolved {
                    key: full,
                    absent,
                    text: Some(value.to_string()),
                    ..Resolved::default()
                };
                (r, format!("must be {want}"))
            })
        }
        Need::FloatBelow(f, limit) => {
            let (r, x) = resolve_float(md, arch, f)?;
            // A NaN fails, as it fails the assertion.
            (x.is_nan() || x >= *limit).then(|| (r, format!("must be below {limit}")))
        }
        Need::FloatNear(f, want, tol) => {
            let (r, x) = resolve_float(md, arch, f)?;
            let off = (x - want).abs();
            (off.is_nan() || off >= *tol).then(|| (r, format!("must be {want} (within {tol})")))
        }
        Need::Cycles(a, b, c, total) => {
            let (a, b, c, total) = (get(a)?, get(b)?, get(c)?, get(total)?);
            let want = a.first() * b.first() * (c.first() + 1);
            (total.first() != want).then(|| {
                let why = format!(
                    "must be {} x {} x ({} + 1) = {want}",
                    a.named(),
                    b.named(),
                    c.named()
                );
                (total, why)
            })
        }
        Need::ProductAtMost(a, b, max) => {
            let (a, b) = (get(a)?, get(b)?);
            (a.first() * b.first() > i128::from(*max)).then(|| {
                let why = format!("times {} must be at most {max}", a.named());
                (b, why)
            })
        }
        Need::MaxLength(k, max) => {
            let k = get(k)?;
            let n = i128::try_from(k.values.len()).unwrap_or(i128::MAX);
            (n > i128::from(*max)).then(|| (k, format!("must have at most {max} elements")))
        }
        Need::DividesQuotient(width, size, kv) => {
            let (width, size, kv) = (get(width)?, get(size)?, get(kv)?);
            let heads = width.first().checked_div(size.first())?;
            let k = kv.first();
            (k != 0 && k != heads && (k < 0 || heads % k != 0)).then(|| {
                let why = format!(
                    "must be 0 or divide the head count {} / {} = {heads}",
                    width.named(),
                    size.named()
                );
                (kv, why)
            })
        }
        Need::FfnUpRows(n_ff) => {
            let n_ff = get(n_ff)?;
            md.gguf.tensors().iter().find_map(|t| {
                let block: usize = t
                    .name()
                    .strip_prefix("blk.")?
                    .strip_suffix(".ffn_up.weight")?
                    .parse()
                    .ok()?;
                let rows = i128::from(*t.dims().get(1)?);
                let ff = n_ff.at(block)?;
                (rows != ff && rows != 2 * ff).then(|| {
                    let why = format!("must be {} rows of {} or twice that", t.name(), t.dims()[1]);
                    (n_ff.clone(), why)
                })
            })
        }
        Need::MinWhenBelow(k, min, from, blocks) => {
            let (k, from, blocks) = (get(k)?, get(from)?, get(blocks)?);
            (from.first() < blocks.first() && k.first() < i128::from(*min)).then(|| {
                let why = format!(
                    "must be at least {min}: blocks {} to {} are mixture-of-experts blocks ({})",
                    from.first(),
                    blocks.first() - 1,
                    from.named()
                );
                (k, why)
            })
        }
    }
}

/// A float key's value as llama.cpp will hold it; `None` where it refuses the file itself.
fn resolve_float(md: &Metadata<'_>, arch: &str, f: &FloatKey) -> Option<(Resolved, f64)> {
    let full = format!("{arch}.{}", f.suffix);
    let (x, absent) = match md.get(&full) {
        Some(v) => (float(v)?, None),
        None => (f.default?, Some("llama.cpp's default".to_owned())),
    };
    let r = Resolved {
        key: full,
        absent,
        text: Some(x.to_string()),
        ..Resolved::default()
    };
    Some((r, x))
}

/// Which of a hybrid model's `blocks` blocks are recurrent (`Some(true)`), attention blocks
/// (`Some(false)`) or neither (`None`), with the key that decides it.
fn block_kinds(
    md: &Metadata<'_>,
    arch: &str,
    layers: &Layers,
    n: usize,
) -> Option<(Resolved, Vec<Option<bool>>)> {
    Some(match layers {
        Layers::NoKvHeads(kv) => {
            let kv = resolve(md, arch, kv)?;
            let kinds = (0..n).map(|i| kv.at(i).map(|h| h == 0)).collect();
            (kv, kinds)
        }
        Layers::NoKvHeadsNoFfn(kv, ff) => {
            let (kv, ff) = (resolve(md, arch, kv)?, resolve(md, arch, ff)?);
            let kinds = (0..n)
                .map(|i| match (kv.at(i)?, ff.at(i)?) {
                    (h, 0) => Some(h == 0),
                    _ => None,
                })
                .collect();
            (kv, kinds)
        }
        Layers::Interval(flags, interval) => {
            let full = format!("{arch}.{flags}");
            if let Some(v) = md.get(&full) {
                let marks = bools(v)?;
                let kinds = (0..n)
                    .map(|i| marks.get(i).or(marks.first()).copied())
                    .collect();
                let values = marks.iter().map(|&b| i128::from(b)).collect();
                let r = Resolved {
                    key: full,
                    values,
                    ..Resolved::default()
                };
                (r, kinds)
            } else {
                let every = resolve(md, arch, interval)?;
                // A zero interval is a division by zero, refused by its own row.
                let k = usize::try_from(every.first()).ok().filter(|&k| k > 0)?;
                let kinds = (0..n).map(|i| Some((i + 1) % k != 0)).collect();
                (every, kinds)
            }
        }
    })
}

/// A hybrid model without a recurrent or without an attention block.
fn hybrid(md: &Metadata<'_>, arch: &str, layers: &Layers) -> Option<(Resolved, String)> {
    let (_, n) = blocks_and_trunk(md, arch)?;
    if n == 0 {
        return None;
    }
    let (key, kinds) = block_kinds(md, arch, layers, n)?;
    let lacks = if !kinds.contains(&Some(true)) {
        "a recurrent block"
    } else if !kinds.contains(&Some(false)) {
        "an attention block"
    } else {
        return None;
    };
    let why = format!(
        "leaves this hybrid model of {n} blocks without {lacks}: llama.cpp's hybrid memory then \
         has no buffer for that kind's inputs and aborts at the first decode"
    );
    Some((key, why))
}

/// Which of the first `blocks` blocks slide (llama.cpp's `is_swa_impl`), with the pattern
/// key as the culprit to name; `None` where llama.cpp refuses the pattern itself.
fn swa_blocks(
    md: &Metadata<'_>,
    arch: &str,
    pattern: &SwaPattern,
    blocks: usize,
    trunk: usize,
) -> Option<(Resolved, Vec<bool>)> {
    let full = format!("{arch}.attention.sliding_window_pattern");
    let value = md.get(&full);
    let key = match (value, pattern) {
        (Some(v), _) => Resolved {
            key: full,
            text: Some(shown(v)),
            ..Resolved::default()
        },
        (None, SwaPattern::Period(d, _)) => Resolved {
            key: full,
            values: vec![i128::from(*d)],
            absent: Some("llama.cpp's default".to_owned()),
            ..Resolved::default()
        },
        (None, SwaPattern::Flags) => return None,
    };
    let flags = match (value, pattern) {
        (Some(v @ Value::Array(_)), _) => {
            let mut f = bools(v)?;
            f.resize(blocks, false);
            f
        }
        (_, SwaPattern::Flags) => return None,
        (v, SwaPattern::Period(default, dense_first)) => {
            let n = match v {
                Some(v) => *ints(v)?.first()?,
                None => i128::from(*default),
            };
            let n = usize::try_from(n).ok()?;
            (0..blocks)
                .map(|il| {
                    il < trunk
                        && (n == 0
                            || if *dense_first {
                                il % n != 0
                            } else {
                                il % n < n - 1
                            })
                })
                .collect()
        }
    };
    Some((key, flags))
}

/// The block count and the trunk's (less the nextn blocks).
fn blocks_and_trunk(md: &Metadata<'_>, arch: &str) -> Option<(usize, usize)> {
    let blocks = resolve(md, arch, &required("block_count"))?.first();
    let trunk = blocks - resolve(md, arch, &or_int("nextn_predict_layers", 0))?.first();
    Some((
        usize::try_from(blocks).ok()?,
        usize::try_from(trunk).unwrap_or(0),
    ))
}

/// A model whose loader turns sliding-window attention on without any block using it.
fn some_swa(
    md: &Metadata<'_>,
    arch: &str,
    pattern: &SwaPattern,
    when: &SwaWhen,
) -> Option<(Resolved, String)> {
    let (blocks, trunk) = blocks_and_trunk(md, arch)?;
    let window = || resolve(md, arch, &required("attention.sliding_window"));
    let on = match when {
        SwaWhen::Always => true,
        SwaWhen::Window => window().is_some_and(|w| w.first() > 0),
        SwaWhen::WindowNotZero => window().is_none_or(|w| w.first() > 0),
        SwaWhen::Blocks(n) => i128::try_from(trunk).is_ok_and(|t| t == i128::from(*n)),
    };
    if !on {
        return None;
    }
    let (key, flags) = swa_blocks(md, arch, pattern, blocks, trunk)?;
    if flags.contains(&true) {
        return None;
    }
    let why = "leaves no block with sliding-window attention, which this model's loader turns \
               on: llama.cpp asserts is_swa_any() when it creates the context"
        .to_owned();
    Some((key, why))
}

/// Gemma 3n / 4 blocks from `from` on reuse the KV of block `from - 2` (sliding) or
/// `from - 1` (full): each must be of the kind that reuses it, or the cache of that kind has
/// no such block and llama.cpp asserts (llama-kv-cache.cpp: `map_layer_ids.find(il_reuse)`).
fn shared_kv(
    md: &Metadata<'_>,
    arch: &str,
    pattern: &SwaPattern,
    from: usize,
) -> Option<(Resolved, String)> {
    let (blocks, trunk) = blocks_and_trunk(md, arch)?;
    if from < 2 || from >= blocks {
        return None;
    }
    let (key, flags) = swa_blocks(md, arch, pattern, blocks, trunk)?;
    for (sliding, source) in [(true, from - 2), (false, from - 1)] {
        let reused = flags[from..].contains(&sliding);
        if reused && flags[source] != sliding {
            let kind = if sliding {
                "sliding-window"
            } else {
                "full-attention"
            };
            let why = format!(
                "makes block {source} not a {kind} block, though the {kind} blocks from {from} \
                 on reuse its KV cache: llama.cpp asserts the reused block is in that cache"
            );
            return Some((key, why));
        }
    }
    None
}

/// The flags of a boolean (or integer) scalar or array, as llama.cpp reads them into a
/// per-block array (any non-zero value is true).
fn bools(v: &Value) -> Option<Vec<bool>> {
    match v {
        Value::Bool(b) => Some(vec![*b]),
        Value::Array(acap_gguf::Array::Bool(b)) => Some(b.clone()),
        other => Some(ints(other)?.into_iter().map(|i| i != 0).collect()),
    }
}

/// Checks every row of `table` that `arch` reaches.
pub(super) fn check(md: &Metadata<'_>, arch: &str, table: &[ArchAssert]) -> Result<(), BadHparam> {
    for row in table
        .iter()
        .filter(|r| r.archs.iter().any(|a| *a == "*" || *a == arch))
    {
        for need in row.needs {
            if let Some((culprit, why)) = unmet(md, arch, need) {
                return Err(BadHparam {
                    key: culprit.key.clone(),
                    value: culprit.shown(),
                    reason: format!("{why} (llama.cpp asserts it for {arch}, in {})", row.source),
                });
            }
        }
    }
    Ok(())
}

/// Refuses `arch` where `table` says so.
pub(super) fn refused(arch: &str, table: &[Unchecked]) -> Result<(), BadHparam> {
    match table.iter().find(|u| u.refused && u.archs.contains(&arch)) {
        Some(u) => Err(BadHparam {
            key: "general.architecture".to_owned(),
            value: format!("'{arch}'"),
            reason: format!(
                "acap does not run {}, whose {} assertions in llama.cpp's {} it cannot keep \
                 from aborting",
                u.what, u.asserts, u.file
            ),
        }),
        None => Ok(()),
    }
}

/// What `table` leaves unchecked for `arch`, as one line for a warning.
pub(super) fn unchecked(arch: &str, table: &[Unchecked]) -> Option<String> {
    let rows: Vec<String> = table
        .iter()
        .filter(|u| !u.refused && u.archs.contains(&arch))
        .map(|u| format!("{} in {} ({} assertions)", u.what, u.file, u.asserts))
        .collect();
    (!rows.is_empty()).then(|| rows.join("; "))
}

#[cfg(test)]
mod tests {
    use super::super::arch_asserts::{ARCH_ASSERTS, UNCHECKED};
    use super::*;
    use acap_gguf::{GgufFile, GgufWriter, Value};

    fn checked(arch: &str, keys: &[(&str, Value)]) -> Result<(), BadHparam> {
        let f = super::super::arch_header(arch, keys);
        let md = Metadata::of(&f);
        check(&md, arch, ARCH_ASSERTS)
    }

    /// Refused, naming `key` (with the `{arch}.` prefix) and the assertion's file.
    fn refused(arch: &str, keys: &[(&str, Value)], key: &str, file: &str) -> BadHparam {
        let e = checked(arch, keys).expect_err(arch);
        assert_eq!(e.key, format!("{arch}.{key}"), "{arch}: {e:?}");
        assert!(e.reason.contains(file), "{arch}: {e:?}");
        e
    }

    const U: fn(u32) -> Value = Value::U32;

    /// Passes, or is refused for a key other than one ending in `key` (the headers of these
    /// tests set only the keys the rule under test reads).
    fn not_refused_for(arch: &str, keys: &[(&str, Value)], key: &str) {
        let r = checked(arch, keys);
        assert!(
            r.as_ref().map_or_else(|e| !e.key.ends_with(key), |()| true),
            "{arch}: {r:?}"
        );
    }

    #[test]
    fn gated_delta_net_heads_are_checked() {
        let good = [
            ("embedding_length", U(2048)),
            ("block_count", U(4)),
            ("ssm.inner_size", U(4096)),
            ("ssm.state_size", U(128)),
            ("ssm.time_step_rank", U(32)),
            ("ssm.group_count", U(16)),
        ];
        for arch in ["qwen3next", "qwen35", "qwen35moe", "clef"] {
            checked(arch, &good).unwrap();
        }
        let with = |k: &str, v: u32| {
            let mut keys = good.to_vec();
            keys.iter_mut().find(|(s, _)| *s == k).unwrap().1 = U(v);
            keys
        };
        let e = refused(
            "qwen35",
            &with("ssm.group_count", 0),
            "ssm.group_count",
            "qwen35.cpp",
        );
        assert!(e.reason.contains("at least 1"), "{e:?}");
        let e = refused(
            "qwen3next",
            &with("ssm.group_count", 12),
            "ssm.time_step_rank",
            "qwen3next.cpp",
        );
        assert!(
            e.reason
                .contains("multiple of qwen3next.ssm.group_count = 12"),
            "{e:?}"
        );
        let e = refused(
            "qwen35moe",
            &with("ssm.inner_size", 4000),
            "ssm.inner_size",
            "delta-net-base.cpp",
        );
        assert!(e.reason.contains("= 4096"), "{e:?}");
        refused(
            "qwen35",
            &with("ssm.time_step_rank", 0),
            "ssm.time_step_rank",
            "delta-net-base.cpp",
        );
    }

    #[test]
    fn mamba_layers_need_heads_and_groups_that_divide_the_inner_size() {
        let keys = |inner: u32, rank: u32, groups: u32| {
            vec![
                ("embedding_length", U(1024)),
                ("block_count", U(2)),
                ("ssm.inner_size", U(inner)),
                ("ssm.time_step_rank", U(rank)),
                ("ssm.group_count", U(groups)),
                // One recurrent and one attention block, for the hybrids.
                ("attention.head_count", U(4)),
                ("attention.head_count_kv", Value::from(vec![0u32, 4])),
            ]
        };
        checked("mamba2", &keys(2048, 64, 8)).unwrap();
        // Mamba-1 has no groups and no head count to divide by.
        checked("mamba", &keys(2048, 64, 0)).unwrap();
        refused("mamba", &keys(0, 64, 0), "ssm.inner_size", "mamba-base.cpp");
        refused(
            "mamba2",
            &keys(2048, 0, 8),
            "ssm.time_step_rank",
            "mamba-base.cpp",
        );
        refused(
            "nemotron_h",
            &keys(2048, 64, 0),
            "ssm.group_count",
            "mamba-base.cpp",
        );
        refused(
            "falcon-h1",
            &keys(2048, 64, 3),
            "ssm.inner_size",
            "mamba-base.cpp",
        );
        // Jamba and Granite hybrid only support an expansion factor of 2.
        let e = refused("jamba", &keys(1024, 64, 0), "ssm.inner_size", "jamba.cpp");
        assert!(
            e.reason
                .contains("2 x jamba.embedding_length = 1024 = 2048"),
            "{e:?}"
        );
        checked("granitehybrid", &keys(2048, 64, 8)).unwrap();
        refused(
            "plamo2",
            &keys(2048, 64, 8),
            "ssm.group_count",
            "plamo2.cpp",
        );
    }

    #[test]
    fn dsa_indexer_heads_are_as_wide_as_llama_cpp_s_hadamard_rotation() {
        let keys = |indexer: u32| {
            vec![
                ("embedding_length", U(1024)),
                ("block_count", U(2)),
                ("attention.head_count", U(8)),
                ("attention.key_length", U(576)),
                ("attention.value_length", U(576)),
                ("attention.key_length_mla", U(192)),
                ("attention.value_length_mla", U(128)),
                ("rope.dimension_count", U(32)),
                ("attention.indexer.key_length", U(indexer)),
            ]
        };
        // The rotation is 64 doubled while it divides the head: 128 and 256 are one tile.
        for arch in ["deepseek32", "glm-dsa", "dots3note", "deepseek4"] {
            for good in [64, 128, 256] {
                not_refused_for(arch, &keys(good), "indexer.key_length");
            }
            // Below 64 llama.cpp builds no rotation at all.
            let e = refused(arch, &keys(32), "attention.indexer.key_length", "ggml.c");
            assert!(e.reason.contains("Hadamard"), "{e:?}");
        }
        // 192: a rotation of 64 that ggml_mul_mat cannot multiply into 192-wide rows; V4
        // reshapes the head into rows of 64 instead, which 192 tiles.
        for arch in ["deepseek32", "glm-dsa", "dots3note"] {
            let e = refused(
                arch,
                &keys(192),
                "attention.indexer.key_length",
                "ggml_can_mul_mat",
            );
            assert!(e.reason.contains("power of two"), "{e:?}");
        }
        not_refused_for("deepseek4", &keys(192), "indexer.key_length");
        refused(
            "deepseek4",
            &keys(96),
            "attention.indexer.key_length",
            "ggml.c",
        );
        // Hyper-connections need at least one Sinkhorn pass (ggml_dsv4_hc_comb asserts it).
        let mut none = keys(128);
        none.push(("hyper_connection.sinkhorn_iterations", U(0)));
        let e = refused(
            "deepseek4",
            &none,
            "hyper_connection.sinkhorn_iterations",
            "n_iter > 0",
        );
        assert!(e.reason.contains("at least 1"), "{e:?}");
        none.last_mut().unwrap().1 = U(20);
        not_refused_for("deepseek4", &none, "sinkhorn_iterations");
    }

    #[test]
    fn rwkv_heads_divide_the_embedding() {
        // ARWKV7's state is one row of n_embd; RWKV6 and RWKV7 keep two token-shift rows.
        for arch in ["rwkv6", "rwkv7", "arwkv7"] {
            let shifts = if arch == "arwkv7" { 1 } else { 2 };
            let keys = |head: u32| {
                vec![
                    ("embedding_length", U(512)),
                    ("block_count", U(2)),
                    ("token_shift_count", U(shifts)),
                    ("wkv.head_size", U(head)),
                ]
            };
            checked(arch, &keys(64)).unwrap();
            let e = refused(arch, &keys(48), "embedding_length", "ggml_reshape_3d");
            assert!(e.reason.contains("multiple of"), "{e:?}");
        }
    }

    #[test]
    fn defaults_llama_cpp_takes_for_absent_keys_are_checked_too() {
        // token_shift_count defaults to 2; RWKV6-Qwen2's state is one row of n_embd.
        let base = [("embedding_length", U(512)), ("block_count", U(2))];
        let e = refused("rwkv6qwen2", &base, "token_shift_count", "rwkv6qwen2.cpp");
        assert_eq!(e.value, "missing (llama.cpp's default: 2)");
        let mut one = base.to_vec();
        one.push(("token_shift_count", U(1)));
        checked("rwkv6qwen2", &one).unwrap();
        checked("rwkv6", &base).unwrap();
        refused("rwkv6", &one, "token_shift_count", "rwkv6.cpp");
        // MLA: the rope part of the key must leave a non-rope part. Without the MLA keys
        // the key size is embedding_length / head_count.
        let mla = |rope: u32, k_mla: Option<u32>| {
            let mut keys = vec![
                ("embedding_length", U(1024)),
                ("block_count", U(2)),
                ("attention.head_count", U(16)),
                ("rope.dimension_count", U(rope)),
            ];
            if let Some(k) = k_mla {
                keys.push(("attention.key_length_mla", U(k)));
            }
            keys
        };
        let e = refused(
            "deepseek2",
            &mla(64, None),
            "rope.dimension_count",
            "deepseek2.cpp",
        );
        assert!(
            e.reason
                .contains("missing (llama.cpp takes deepseek2.attention.key_length: 64)"),
            "{e:?}"
        );
        checked("deepseek2", &mla(64, Some(192))).unwrap();
        checked("mistral4", &mla(32, None)).unwrap();
    }

    #[test]
    fn moe_blocks_need_experts_and_every_model_its_nextn_layers() {
        let lfm2 = |lead: Option<u32>, experts: u32| {
            let mut keys = vec![
                ("block_count", U(4)),
                ("expert_count", U(experts)),
                ("shortconv.l_cache", U(3)),
                ("attention.head_count", U(4)),
                ("attention.head_count_kv", Value::from(vec![0u32, 4, 0, 4])),
            ];
            if let Some(l) = lead {
                keys.push(("leading_dense_block_count", U(l)));
            }
            keys
        };
        // LFM2 without the key has no MoE blocks.
        checked("lfm2", &lfm2(None, 0)).unwrap();
        let e = refused("lfm2", &lfm2(Some(2), 0), "expert_count", "lfm2.cpp");
        assert!(e.reason.contains("blocks 2 to 3"), "{e:?}");
        // LFM2-MoE's default is 0 dense blocks.
        refused("lfm2moe", &lfm2(None, 0), "expert_count", "lfm2moe.cpp");
        let mut short = lfm2(None, 0);
        short[2].1 = U(1);
        refused("lfm2", &short, "shortconv.l_cache", "lfm2.cpp");
        refused(
            "glm4moe",
            &[("block_count", U(2))],
            "expert_count",
            "glm4-moe.cpp",
        );
        let e = refused(
            "llama",
            &[("block_count", U(2)), ("nextn_predict_layers", U(3))],
            "nextn_predict_layers",
            "llama-model.cpp",
        );
        assert!(e.reason.contains("at most llama.block_count = 2"), "{e:?}");
    }

    #[test]
    fn hybrid_models_need_a_recurrent_and_an_attention_block() {
        let kv = |v: Value| {
            vec![
                ("block_count", U(3)),
                ("attention.head_count", U(4)),
                ("attention.head_count_kv", v),
            ]
        };
        checked("jamba", &kv(Value::from(vec![0u32, 4, 0]))).unwrap();
        let e = refused(
            "jamba",
            &kv(Value::from(vec![4u32, 4, 4])),
            "attention.head_count_kv",
            "ggml-backend.cpp",
        );
        assert!(
            e.reason.contains("of 3 blocks without a recurrent block"),
            "{e:?}"
        );
        let e = refused(
            "lfm2",
            &kv(U(0)),
            "attention.head_count_kv",
            "ggml-backend.cpp",
        );
        assert!(e.reason.contains("without an attention block"), "{e:?}");
        refused(
            "granitehybrid",
            &kv(U(2)),
            "attention.head_count_kv",
            "ggml-backend.cpp",
        );
        // Without the key llama.cpp takes head_count for every block.
        refused(
            "kimi-linear",
            &[("block_count", U(3)), ("attention.head_count", U(4))],
            "attention.head_count_kv",
            "ggml-backend.cpp",
        );
        // Nemotron-H: recurrent blocks have neither KV heads nor a feed-forward, attention
        // blocks KV heads and no feed-forward; the rest are MLP blocks.
        let nemotron = |ff: Vec<u32>| {
            let mut keys = kv(Value::from(vec![0u32, 4, 4]));
            keys.push(("feed_forward_length", Value::from(ff)));
            keys
        };
        checked("nemotron_h", &nemotron(vec![0, 0, 1024])).unwrap();
        let e = refused(
            "nemotron_h_moe",
            &nemotron(vec![0, 1024, 1024]),
            "attention.head_count_kv",
            "ggml-backend.cpp",
        );
        assert!(e.reason.contains("without an attention block"), "{e:?}");
    }

    #[test]
    fn interleaved_hybrids_need_both_kinds_and_a_non_zero_interval() {
        let keys = |blocks: u32, more: &[(&'static str, Value)]| {
            let mut keys = vec![
                ("block_count", U(blocks)),
                ("attention.head_count", U(4)),
                ("embedding_length", U(256)),
            ];
            keys.extend_from_slice(more);
            keys
        };
        // The default interval of 4: blocks 0-2 recurrent, 3 attention.
        checked("qwen35", &keys(4, &[])).unwrap();
        let e = refused(
            "qwen35",
            &keys(3, &[]),
            "full_attention_interval",
            "ggml-backend.cpp",
        );
        assert!(
            e.value.contains("default: 4") && e.reason.contains("without an attention block"),
            "{e:?}"
        );
        let every = |k: u32| [("full_attention_interval", U(k))];
        let e = refused(
            "qwen3next",
            &keys(8, &every(1)),
            "full_attention_interval",
            "ggml-backend.cpp",
        );
        assert!(e.reason.contains("without a recurrent block"), "{e:?}");
        // A zero interval is a division by zero in the loader.
        let e = refused(
            "qwen35moe",
            &keys(8, &every(0)),
            "full_attention_interval",
            "qwen35moe.cpp",
        );
        assert!(e.reason.contains("SIGFPE"), "{e:?}");
        // MiniMax-01 defaults to every eighth block.
        refused(
            "minimax-01",
            &keys(7, &[]),
            "full_attention_interval",
            "ggml-backend.cpp",
        );
        // Explicit flags decide alone, whatever the interval.
        let flags = |f: Vec<bool>| {
            [(
                "attention.recurrent_layers",
                Value::Array(acap_gguf::Array::Bool(f)),
            )]
        };
        let mut mixed = keys(3, &flags(vec![true, false, true]));
        mixed.extend_from_slice(&every(0));
        checked("qwen35", &mixed).unwrap();
        refused(
            "qwen35",
            &keys(3, &flags(vec![true, true, true])),
            "attention.recurrent_layers",
            "ggml-backend.cpp",
        );
        // The nextn blocks after the trunk are neither kind.
        let nextn = |n: u32| [("nextn_predict_layers", U(n))];
        checked("qwen35", &keys(5, &nextn(1))).unwrap();
        refused(
            "qwen35",
            &keys(5, &nextn(2)),
            "full_attention_interval",
            "ggml-backend.cpp",
        );
    }

    #[test]
    fn flags_floats_and_products_are_checked() {
        let bailing = |more: &[(&'static str, Value)]| {
            let mut keys = vec![
                ("block_count", U(2)),
                ("attention.head_count", U(4)),
                ("attention.head_count_kv", Value::from(vec![0u32, 4])),
            ];
            keys.extend_from_slice(more);
            if !more.iter().any(|(k, _)| *k == "kda.gate_lower_bound") {
                keys.push(("kda.gate_lower_bound", Value::F32(-5.0)));
            }
            keys
        };
        checked("bailingmoe3", &bailing(&[])).unwrap();
        let e = refused(
            "bailingmoe3",
            &bailing(&[("kda.safe_gate", Value::Bool(false))]),
            "kda.safe_gate",
            "bailingmoe3.cpp",
        );
        assert!(
            e.value == "false" && e.reason.contains("must be true"),
            "{e:?}"
        );
        for bad in [0.5, f32::NAN] {
            let e = refused(
                "bailingmoe3",
                &bailing(&[("kda.gate_lower_bound", Value::F32(bad))]),
                "kda.gate_lower_bound",
                "bailingmoe3.cpp",
            );
            assert!(e.reason.contains("below 0"), "{e:?}");
        }
        // HRM-Text: block_count is layers per stack x high cycles x (low cycles + 1).
        let hrm = |blocks: u32, low: u32| {
            vec![
                ("block_count", U(blocks)),
                ("hrm.layers_per_stack", U(4)),
                ("hrm.h_cycles", U(2)),
                ("hrm.l_cycles", U(low)),
            ]
        };
        checked("hrm_text", &hrm(24, 2)).unwrap();
        let e = refused("hrm_text", &hrm(20, 2), "block_count", "hrm-text.cpp");
        assert!(e.reason.contains("= 24"), "{e:?}");
        refused("hrm_text", &hrm(8, 0), "hrm.l_cycles", "hrm-text.cpp");
        // Nanbeige loops its blocks; the loops may not exceed LLAMA_MAX_LAYERS.
        let loops = |n: u32| [("block_count", U(64)), ("num_loops", U(n))];
        checked("nanbeige", &loops(8)).unwrap();
        refused("nanbeige", &loops(9), "num_loops", "nanbeige.cpp");
        refused("nanbeige", &loops(0), "num_loops", "nanbeige.cpp");
        // DeepSeek-OCR's fixed rope base; without the key llama.cpp takes 10000.
        checked("deepseek2-ocr", &[("block_count", U(2))]).unwrap();
        let e = refused(
            "deepseek2-ocr",
            &[("block_count", U(2)), ("rope.freq_base", Value::F32(5e5))],
            "rope.freq_base",
            "deepseek2.cpp",
        );
        assert!(e.value == "500000", "{e:?}");
        // DeepSeek-2's attention temperature tuning needs its length where the scale is set.
        let temp = |scale: f32, length: Option<u32>| {
            let mut keys = vec![
                ("block_count", U(2)),
                ("attention.temperature_scale", Value::F32(scale)),
            ];
            keys.extend(length.map(|l| ("attention.temperature_length", U(l))));
            keys
        };
        checked("deepseek2", &temp(0.0, None)).unwrap();
        checked("deepseek2", &temp(0.1, Some(8192))).unwrap();
        let e = refused(
            "deepseek2",
            &temp(0.1, None),
            "attention.temperature_length",
            "llama-graph.cpp",
        );
        assert!(e.reason.contains("temperature_scale = 0.1"), "{e:?}");
        // DeepSeek-V4: at most LLAMA_MAX_LAYERS compress ratios.
        let e = checked(
            "deepseek4",
            &[
                ("block_count", U(2)),
                ("attention.compress_ratios", Value::from(vec![4u32; 513])),
            ],
        )
        .unwrap_err();
        assert!(
            e.key.ends_with("compress_ratios") && e.reason.contains("at most 512"),
            "{e:?}"
        );
    }

    #[test]
    fn rwkv6_key_value_heads_group_the_heads() {
        let rwkv = |size: u32, kv: u32| {
            vec![
                ("block_count", U(2)),
                ("embedding_length", U(512)),
                ("wkv.head_size", U(size)),
                ("attention.head_count_kv", U(kv)),
                ("token_shift_count", U(1)),
            ]
        };
        // 512 / 64 = 8 heads: 0, 8 and divisors of 8 are fine.
        for kv in [0, 8, 4] {
            checked("rwkv6qwen2", &rwkv(64, kv)).unwrap();
        }
        let e = refused(
            "rwkv6qwen2",
            &rwkv(64, 3),
            "attention.head_count_kv",
            "rwkv6-base.cpp",
        );
        assert!(e.reason.contains("= 8"), "{e:?}");
        let e = refused("rwkv6qwen2", &rwkv(0, 0), "wkv.head_size", "rwkv6-base.cpp");
        assert!(e.reason.contains("SIGFPE"), "{e:?}");
    }

    #[test]
    fn jina_bert_v2_ffn_up_has_the_feed_forward_rows_or_twice_them() {
        let model = |rows: u64| {
            let mut w = GgufWriter::new();
            w.set("general.architecture", "jina-bert-v2").unwrap();
            w.set("jina-bert-v2.block_count", 1u32).unwrap();
            w.set("jina-bert-v2.feed_forward_length", 8u32).unwrap();
            let n = usize::try_from(4 * rows).unwrap();
            w.add_f32("blk.0.ffn_up.weight", &[4, rows], &vec![0.0; n])
                .unwrap();
            GgufFile::from_bytes(w.into_bytes().unwrap()).unwrap()
        };
        let run = |f: &GgufFile| {
            let md = Metadata::of(f);
            check(&md, "jina-bert-v2", ARCH_ASSERTS)
        };
        run(&model(8)).unwrap();
        run(&model(16)).unwrap();
        let e = run(&model(12)).unwrap_err();
        assert!(
            e.key == "jina-bert-v2.feed_forward_length"
                && e.reason.contains("blk.0.ffn_up.weight rows of 12"),
            "{e:?}"
        );
    }

    #[test]
    fn sliding_window_models_need_a_sliding_window_block() {
        let keys = |blocks: u32, more: &[(&'static str, Value)]| {
            let mut keys = vec![("block_count", U(blocks))];
            keys.extend_from_slice(more);
            keys
        };
        let pattern = |p: u32| ("attention.sliding_window_pattern", U(p));
        let window = |w: u32| ("attention.sliding_window", U(w));
        // Gemma 2 and gpt-oss: always on, a period of 2 by default (block 0 slides).
        checked("gemma2", &keys(1, &[])).unwrap();
        let e = refused(
            "gpt-oss",
            &keys(4, &[pattern(1)]),
            "attention.sliding_window_pattern",
            "llama-model.cpp",
        );
        assert!(e.reason.contains("is_swa_any()"), "{e:?}");
        // A period of 0 makes every block slide.
        checked("gemma2", &keys(4, &[pattern(0)])).unwrap();
        // Gemma 3: on only with a window.
        checked("gemma3", &keys(4, &[pattern(1)])).unwrap();
        refused(
            "gemma3",
            &keys(4, &[pattern(1), window(512)]),
            "attention.sliding_window_pattern",
            "llama-model.cpp",
        );
        // Dense-first periods leave block 0 dense: one block is no sliding block.
        let e = refused(
            "cohere2moe",
            &keys(1, &[]),
            "attention.sliding_window_pattern",
            "llama-model.cpp",
        );
        assert_eq!(e.value, "missing (llama.cpp's default: 4)");
        checked("cohere2moe", &keys(2, &[])).unwrap();
        // Llama 4: off only with a window of 0, which its temperature input asserts on.
        refused(
            "llama4",
            &keys(4, &[pattern(1), window(0)]),
            "attention.sliding_window",
            "llama-graph.cpp",
        );
        refused(
            "llama4",
            &keys(4, &[pattern(1)]),
            "attention.sliding_window_pattern",
            "llama-model.cpp",
        );
        // The flags, where the loader requires them; only the first block_count count.
        let flags = |f: Vec<bool>| {
            (
                "attention.sliding_window_pattern",
                Value::Array(acap_gguf::Array::Bool(f)),
            )
        };
        checked("gemma4", &keys(2, &[flags(vec![false, true])])).unwrap();
        refused(
            "gemma4",
            &keys(2, &[flags(vec![false, false, true])]),
            "attention.sliding_window_pattern",
            "llama-model.cpp",
        );
        // Gemma 4 must keep two blocks of its own KV.
        let shared = |n: u32| ("attention.shared_kv_layers", U(n));
        checked("gemma4", &keys(4, &[flags(vec![true; 4]), shared(2)])).unwrap();
        let e = refused(
            "gemma4",
            &keys(4, &[flags(vec![true; 4]), shared(3)]),
            "attention.shared_kv_layers",
            "llama-model.cpp",
        );
        assert!(
            e.reason.contains("at least 2 of gemma4.block_count = 4"),
            "{e:?}"
        );
    }

    #[test]
    fn blocks_sharing_kv_reuse_a_block_of_their_kind() {
        // Gemma 3n: blocks from 20 on reuse block 18 (sliding) or 19 (full).
        let gemma3n = |p: Option<u32>| {
            let mut keys = vec![("block_count", U(30))];
            keys.extend(p.map(|p| ("attention.sliding_window_pattern", U(p))));
            keys
        };
        checked("gemma3n", &gemma3n(None)).unwrap();
        checked("gemma3n", &gemma3n(Some(2))).unwrap();
        let e = refused(
            "gemma3n",
            &gemma3n(Some(3)),
            "attention.sliding_window_pattern",
            "llama-kv-cache.cpp",
        );
        assert!(
            e.reason.contains("block 19 not a full-attention block"),
            "{e:?}"
        );
        // Short of block 20 nothing is shared.
        checked(
            "gemma3n",
            &[
                ("block_count", U(12)),
                ("attention.sliding_window_pattern", U(3)),
            ],
        )
        .unwrap();
        // Gemma 4: from block_count - shared_kv_layers on.
        let gemma4 = |flags: Vec<bool>| {
            vec![
                ("block_count", U(6)),
                ("attention.shared_kv_layers", U(2)),
                (
                    "attention.sliding_window_pattern",
                    Value::Array(acap_gguf::Array::Bool(flags)),
                ),
            ]
        };
        checked(
            "gemma4",
            &gemma4(vec![true, true, true, false, true, false]),
        )
        .unwrap();
        let e = refused(
            "gemma4",
            &gemma4(vec![true, true, false, true, true, false]),
            "attention.sliding_window_pattern",
            "llama-kv-cache.cpp",
        );
        assert!(
            e.reason.contains("block 2 not a sliding-window block"),
            "{e:?}"
        );
    }

    #[test]
    fn gemma4_sliding_window_layers_have_equal_head_sizes() {
        let keys = |v_swa: u32| {
            vec![
                ("embedding_length", U(1024)),
                ("block_count", U(2)),
                ("attention.head_count", U(8)),
                ("attention.key_length", U(512)),
                ("attention.value_length", U(512)),
                ("attention.key_length_swa", U(256)),
                ("attention.value_length_swa", U(v_swa)),
            ]
        };
        checked("gemma4", &keys(256)).unwrap();
        refused(
            "gemma4",
            &keys(512),
            "attention.value_length_swa",
            "gemma4.cpp",
        );
    }

    #[test]
    fn the_table_names_known_architectures_and_what_it_leaves_unchecked() {
        for row in ARCH_ASSERTS {
            assert!(
                !row.archs.is_empty() && !row.needs.is_empty(),
                "{}",
                row.source
            );
            assert!(
                row.source.contains("GGML_ASSERT(") || row.source.contains("SIGFPE"),
                "{}",
                row.source
            );
        }
        for u in UNCHECKED {
            assert!(!u.archs.is_empty() && u.asserts > 0, "{}", u.file);
        }
        assert!(unchecked("llama", UNCHECKED).is_none());
        assert!(unchecked("deepseek4", UNCHECKED).is_none());
        // DFlash drafts are refused, not warned about.
        assert!(unchecked("dflash", UNCHECKED).is_none());
        let e = super::refused("dflash", UNCHECKED).unwrap_err();
        assert!(
            e.key == "general.architecture" && e.reason.contains("speculative-decoding draft"),
            "{e:?}"
        );
        super::refused("llama", UNCHECKED).unwrap();
    }
}
