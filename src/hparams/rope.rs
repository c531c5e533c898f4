//! RoPE values ggml's rope kernel asserts on (`ggml-cpu/ops.cpp`, `rope_f32`): the rotated
//! dimensions `n_dims` (`rope.dimension_count`, defaulting to the key size) even and within
//! the head they rotate (`n_dims <= ne0`); for multi-section RoPE, some of the first three
//! `rope.dimension_sections` above 0, none below 0 (their sum is a divisor) and their sum
//! within the head (`sect_dims <= ne0`). A bad one aborts at the first decode.

use super::rope_types::{ROPE_MULTI, ROPE_MULTI_IF_SECTIONS, ROPE_NONE};
use super::{BadHparam, Metadata, ints};

/// Checks an architecture's RoPE keys.
pub(super) fn check(md: &Metadata<'_>, arch: &str) -> Result<(), BadHparam> {
    if ROPE_NONE.contains(&arch) {
        return Ok(());
    }
    let Some((key_size, key_from)) = md.head_dim(arch, "attention.key_length") else {
        return Ok(());
    };
    let rot_key = format!("{arch}.rope.dimension_count");
    let (rot, rot_shown) = match md.arch_int(arch, "rope.dimension_count") {
        Some(r) => (r, r.to_string()),
        None => (
            key_size,
            format!("missing (llama.cpp takes the key size: {key_size})"),
        ),
    };
    let bad = |key: &str, value: String, reason: String| BadHparam {
        key: key.to_owned(),
        value,
        reason,
    };
    if rot % 2 != 0 {
        return Err(bad(
            &rot_key,
            rot_shown,
            "must be even: RoPE rotates pairs of dimensions (ggml-cpu ops.cpp: \
             GGML_ASSERT(n_dims % 2 == 0))"
                .to_owned(),
        ));
    }
    // Multi-head latent attention rotates its own rope part, not the whole key.
    let mla = md.get(&format!("{arch}.attention.kv_lora_rank")).is_some();
    if rot > key_size && !mla {
        return Err(bad(
            &rot_key,
            rot_shown,
            format!(
                "must be at most the key size {key_size} ({key_from}) it rotates (ggml-cpu \
                 ops.cpp: GGML_ASSERT(n_dims <= ne0))"
            ),
        ));
    }
    let sections_key = format!("{arch}.rope.dimension_sections");
    let Some(v) = md.get(&sections_key) else {
        return Ok(());
    };
    // llama.cpp reads four sections, a scalar standing for all four.
    let Some(mut s) = ints(v) else {
        return Ok(());
    };
    if s.len() == 1 {
        s = vec![s[0]; 4];
    }
    if s.len() != 4 {
        return Ok(());
    }
    let multi = ROPE_MULTI.contains(&arch)
        || (ROPE_MULTI_IF_SECTIONS.contains(&arch) && s[0] > 0 && s[1] > 0);
    if !multi {
        return Ok(());
    }
    let shown = format!("{s:?}");
    let sum: i128 = s.iter().sum();
    let why = if s.iter().any(|&x| x < 0) {
        "must not be negative: ggml's multi-section RoPE divides by their sum".to_owned()
    } else if s[..3].iter().all(|&x| x <= 0) {
        "must have one of the first three above 0 (ggml-cpu ops.cpp: GGML_ASSERT(sections[0] \
         > 0 || sections[1] > 0 || sections[2] > 0))"
            .to_owned()
    } else if sum > key_size {
        format!(
            "must sum to at most the key size {key_size} ({key_from}), not {sum} (ggml-cpu \
             ops.cpp: GGML_ASSERT(sect_dims <= ne0))"
        )
    } else {
        return Ok(());
    };
    Err(bad(&sections_key, shown, why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use acap_gguf::Value;

    fn checked(arch: &str, keys: &[(&str, Value)]) -> Result<(), BadHparam> {
        let f = super::super::arch_header(arch, keys);
        check(&Metadata::of(&f), arch)
    }

    const U: fn(u32) -> Value = Value::U32;

    #[test]
    fn rotated_dimensions_are_even_and_within_the_key() {
        let keys = |rot: Option<u32>, more: &[(&'static str, Value)]| {
            let mut keys = vec![("embedding_length", U(256)), ("attention.head_count", U(4))];
            keys.extend(rot.map(|r| ("rope.dimension_count", U(r))));
            keys.extend_from_slice(more);
            keys
        };
        checked("phi2", &keys(Some(32), &[])).unwrap();
        checked("phi2", &keys(None, &[])).unwrap();
        let e = checked("phi2", &keys(Some(33), &[])).unwrap_err();
        assert!(
            e.key == "phi2.rope.dimension_count" && e.reason.contains("even"),
            "{e:?}"
        );
        let e = checked("phi2", &keys(Some(66), &[])).unwrap_err();
        assert!(e.reason.contains("key size 64"), "{e:?}");
        // The default is the key size: an odd head size is odd rotated dimensions.
        let odd = [("embedding_length", U(252)), ("attention.head_count", U(4))];
        let e = checked("stablelm", &odd).unwrap_err();
        assert!(e.value.starts_with("missing"), "{e:?}");
        // No RoPE, no check; MLA rotates a part of its own.
        checked("gpt2", &keys(Some(33), &[])).unwrap();
        checked(
            "deepseek2",
            &keys(Some(64), &[("attention.kv_lora_rank", U(512))]),
        )
        .unwrap();
        checked("deepseek2", &keys(Some(66), &[])).unwrap_err();
    }

    #[test]
    fn multi_section_rope_sections_are_checked_where_used() {
        let keys = |s: Vec<i32>| {
            vec![
                ("embedding_length", U(512)),
                ("attention.head_count", U(4)),
                ("rope.dimension_sections", Value::from(s)),
            ]
        };
        checked("qwen3vl", &keys(vec![24, 20, 20, 0])).unwrap();
        for bad in [vec![0, 0, 0, 8], vec![8, -8, 0, 0], vec![64, 64, 64, 0]] {
            let e = checked("qwen3vl", &keys(bad.clone())).unwrap_err();
            assert_eq!(e.key, "qwen3vl.rope.dimension_sections", "{bad:?}");
        }
        // GLM-4 is on M-RoPE only with its first two sections above 0.
        checked("glm4", &keys(vec![0, 0, 0, 8])).unwrap();
        checked("glm4", &keys(vec![8, 8, 200, 0])).unwrap_err();
        // Architectures without M-RoPE ignore the key.
        checked("llama", &keys(vec![0, 0, 0, 0])).unwrap();
    }
}
