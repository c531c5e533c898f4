//! What the generated [`super::arch_asserts`] table is written in: GGUF keys with the value
//! llama.cpp takes when a file lacks them, and the relations between them that one
//! `GGML_ASSERT` of a graph builder or loader needs. An assertion aborts the whole process (a
//! C program embedding acap included), so a value that would fail one is refused here first.

use super::{BadHparam, Metadata, ints};

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
    /// Some block of the second's count has 0 in the first (a per-block array, or a scalar
    /// for all blocks): a hybrid model's recurrent layers.
    SomeZero(Key, Key),
    /// When the third is below the fourth, the first is at least the minimum (MoE blocks
    /// from `leading_dense_block_count` on need experts).
    MinWhenBelow(Key, i64, Key, Key),
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
}

/// A key's value as llama.cpp will hold it.
#[derive(Clone)]
struct Resolved {
    /// The full key name, reported as the culprit.
    key: String,
    values: Vec<i128>,
    /// How the value came about, when not from the key itself.
    absent: Option<String>,
}

impl Resolved {
    fn first(&self) -> i128 {
        self.values.first().copied().unwrap_or(0)
    }

    fn shown(&self) -> String {
        let v = match self.values.as_slice() {
            [one] => one.to_string(),
            many => format!("{many:?}"),
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

fn head_size(md: &Metadata<'_>, arch: &str) -> Option<i128> {
    let n_embd = md.arch_int(arch, "embedding_length")?;
    let n_head = md.arch_int(arch, "attention.head_count")?;
    (n_head > 0).then(|| n_embd / n_head)
}

/// The value llama.cpp will hold for `key`; `None` when it will refuse the file itself (a
/// required key missing, or a value of the wrong type).
fn resolve(md: &Metadata<'_>, arch: &str, key: &Key) -> Option<Resolved> {
    let full = format!("{arch}.{}", key.suffix);
    if key.suffix == "@head" {
        return Some(Resolved {
            key: format!("{arch}.embedding_length / {arch}.attention.head_count"),
            values: vec![head_size(md, arch)?],
            absent: None,
        });
    }
    if let Some(v) = md.get(&full) {
        return Some(Resolved {
            key: full,
            values: ints(v)?,
            absent: None,
        });
    }
    let (values, how) = match key.fallback {
        Fallback::Required => return None,
        Fallback::Int(i) => (vec![i128::from(i)], "llama.cpp's default".to_owned()),
        Fallback::HeadSize => (
            vec![head_size(md, arch)?],
            "llama.cpp takes the head size".to_owned(),
        ),
        Fallback::Key(other) => {
            let fallback = match other {
                "attention.key_length" | "attention.value_length" => Fallback::HeadSize,
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
        Need::SomeZero(k, blocks) => {
            let (k, blocks) = (get(k)?, get(blocks)?);
            let n = usize::try_from(blocks.first()).unwrap_or(0);
            let per_block = |i: usize| k.values.get(i).or(k.values.first()).copied();
            (n > 0 && (0..n).all(|i| per_block(i) != Some(0))).then(|| {
                let why = format!(
                    "must be 0 for at least one of the {n} blocks: the blocks without key-value \
                     heads are this hybrid model's recurrent layers, and llama.cpp aborts on \
                     a hybrid model without one"
                );
                (k, why)
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

/// What `table` leaves unchecked for `arch`, as one line for a warning.
pub(super) fn unchecked(arch: &str, table: &[Unchecked]) -> Option<String> {
    let rows: Vec<String> = table
        .iter()
        .filter(|u| u.archs.contains(&arch))
        .map(|u| format!("{} in {} ({} assertions)", u.what, u.file, u.asserts))
        .collect();
    (!rows.is_empty()).then(|| rows.join("; "))
}

#[cfg(test)]
mod tests {
    use super::super::arch_asserts::{ARCH_ASSERTS, UNCHECKED};
    use super::*;
    use acap_gguf::{GgufFile, GgufWriter, Value};

    /// A header of `arch` with these keys (`{arch}.` is prefixed to each).
    fn header(arch: &str, keys: &[(&str, Value)]) -> GgufFile {
        let mut w = GgufWriter::new();
        w.set("general.architecture", arch).unwrap();
        for (k, v) in keys {
            w.set(format!("{arch}.{k}"), v.clone()).unwrap();
        }
        let mut bytes = Vec::new();
        w.write_to(&mut bytes).unwrap();
        GgufFile::from_bytes(bytes).unwrap()
    }

    fn checked(arch: &str, keys: &[(&str, Value)]) -> Result<(), BadHparam> {
        let f = header(arch, keys);
        let md = Metadata {
            gguf: &f,
            overrides: Vec::new(),
        };
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
    fn hybrid_models_need_a_recurrent_layer() {
        let kv = |v: Value| {
            vec![
                ("block_count", U(3)),
                ("attention.head_count", U(4)),
                ("attention.head_count_kv", v),
            ]
        };
        checked("jamba", &kv(Value::from(vec![0u32, 4, 0]))).unwrap();
        checked("lfm2", &kv(U(0))).unwrap();
        let e = refused(
            "jamba",
            &kv(Value::from(vec![4u32, 4, 4])),
            "attention.head_count_kv",
            "ggml-backend.cpp",
        );
        assert!(e.reason.contains("one of the 3 blocks"), "{e:?}");
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
            assert!(row.source.contains("GGML_ASSERT("), "{}", row.source);
        }
        for u in UNCHECKED {
            assert!(!u.archs.is_empty() && u.asserts > 0, "{}", u.file);
        }
        assert!(unchecked("llama", UNCHECKED).is_none());
        let w = unchecked("dflash", UNCHECKED).unwrap();
        assert!(
            w.contains("deepseek4.cpp") && w.contains("dflash.cpp"),
            "{w}"
        );
    }
}
