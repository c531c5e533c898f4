//! What llama.cpp's vocabulary loader and tokenizer assert on (`src/llama-vocab.cpp`).
//!
//! Token texts must be distinct: the loader maps each text to one id and asserts the map is as
//! long as the list (`GGML_ASSERT(id_to_token.size() == token_to_id.size())`), aborting at
//! load on a duplicate.
//!
//! The special tokens the tokenizer adds must exist: with
//! `add_special`, which acap's prompts use, a BOS (or EOS, or for WordPiece a separator) the
//! vocabulary is to add must exist, or `GGML_ASSERT(special_bos_id != LLAMA_TOKEN_NULL)`
//! aborts the process at the first tokenization. The ids resolve as llama.cpp resolves them:
//! the tokenizer model's default, disabled when out of the vocabulary, replaced by the key when
//! the key's id is in it.

use super::{BadHparam, Metadata, shown};
use acap_gguf::Value;

/// BPE pre-tokenizers whose vocabularies add a BOS by default (the `add_bos = true` branches
/// of `llama_vocab::impl::load`; `scripts/hparam-asserts.py --check` keeps the list current).
pub(super) const BPE_ADD_BOS: &[&str] = &[
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "jina-v5-nano",
    "tekken",
    "chameleon",
];

/// BPE pre-tokenizers of the Gemma 4 kind, for which llama.cpp forces `add_bos` on.
pub(super) const BPE_FORCE_BOS: &[&str] = &["gemma4", "granite-embed-multi-311m"];

/// What one tokenizer model adds and what its special ids default to.
struct Defaults {
    bos: Option<u32>,
    eos: Option<u32>,
    sep: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    /// WordPiece adds a BOS and a separator whatever `add_bos` says.
    word_piece: bool,
    /// A BPE vocabulary, whose pre-tokenizer may force `add_bos` on.
    bpe: bool,
}

fn defaults(model: &str, pre: &str) -> Option<Defaults> {
    let bpe_bos = BPE_ADD_BOS.contains(&pre) || BPE_FORCE_BOS.contains(&pre);
    let d = |bos, eos, add_bos, add_eos| Defaults {
        bos,
        eos,
        sep: None,
        add_bos,
        add_eos,
        word_piece: false,
        bpe: false,
    };
    Some(match model {
        "llama" => d(Some(1), Some(2), true, false),
        "bert" => Defaults {
            sep: Some(102),
            word_piece: true,
            ..d(Some(101), None, true, false)
        },
        "gpt2" | "hybriddna" | "whitespace" => Defaults {
            bpe: true,
            ..d(Some(11), Some(11), bpe_bos, false)
        },
        "gemma4" => Defaults {
            bpe: true,
            ..d(None, None, bpe_bos, false)
        },
        "t5" => d(None, Some(1), false, true),
        "plamo2" => d(Some(1), Some(2), false, false),
        // No special token asserted (RWKV, the test tokenizer) or no tokenizer at all.
        _ => return None,
    })
}

/// Token texts as llama.cpp keys them (an empty one is `[EMPTY_{id}]`) must be distinct.
fn distinct_tokens(tokens: Option<&acap_gguf::Array>) -> Result<(), BadHparam> {
    let Some(acap_gguf::Array::String(tokens)) = tokens else {
        return Ok(());
    };
    let mut seen = std::collections::HashMap::with_capacity(tokens.len());
    for (id, text) in tokens.iter().enumerate() {
        let text = if text.is_empty() {
            std::borrow::Cow::Owned(format!("[EMPTY_{id}]"))
        } else {
            std::borrow::Cow::Borrowed(text.as_str())
        };
        if let Some(first) = seen.insert(text.clone(), id) {
            return Err(BadHparam {
                key: "tokenizer.ggml.tokens".to_owned(),
                value: format!("token {id} = {text:?}, the text of token {first} too"),
                reason: "must be distinct: llama.cpp maps each text to one id and asserts \
                         the map is as long as the list (llama-vocab.cpp: \
                         GGML_ASSERT(id_to_token.size() == token_to_id.size()))"
                    .to_owned(),
            });
        }
    }
    Ok(())
}

/// Checks the token texts and the special tokens the vocabulary adds.
pub(super) fn check(md: &Metadata<'_>) -> Result<(), BadHparam> {
    let Some(model) = md.get("tokenizer.ggml.model").and_then(Value::as_str) else {
        return Ok(());
    };
    let tokens = md.get("tokenizer.ggml.tokens").and_then(Value::as_array);
    if !matches!(model, "none" | "no_vocab") {
        distinct_tokens(tokens)?;
    }
    let pre = md
        .get("tokenizer.ggml.pre")
        .and_then(Value::as_str)
        .unwrap_or("");
    let (Some(d), Some(tokens)) = (defaults(model, pre), tokens) else {
        return Ok(());
    };
    let n_vocab = tokens.len();
    let in_vocab = |id: u32| usize::try_from(id).is_ok_and(|i| i < n_vocab);
    let id = |key: &str, default: Option<u32>| match md.get(key) {
        Some(Value::U32(v)) if in_vocab(*v) => Some(*v),
        _ => default.filter(|&d| in_vocab(d)),
    };
    // Whether the vocabulary adds the token, and why (for the message).
    let adds = |suffix: &str, default: bool| -> (bool, String) {
        let key = format!("tokenizer.ggml.{suffix}");
        match md.get(&key) {
            Some(Value::Bool(b)) => (*b, format!("{key} is {b}")),
            _ => (
                default,
                format!("{key} is missing: llama.cpp's default for it is {default}"),
            ),
        }
    };
    let always = format!("'{model}' vocabularies add it to every prompt");
    let (add_bos, bos_why) = if d.word_piece {
        (true, always.clone())
    } else if d.bpe && BPE_FORCE_BOS.contains(&pre) {
        (
            true,
            format!("llama.cpp forces add_bos_token on for the '{pre}' pre-tokenizer"),
        )
    } else {
        adds("add_bos_token", d.add_bos)
    };
    let (add_eos, eos_why) = if d.word_piece {
        (false, String::new())
    } else {
        adds("add_eos_token", d.add_eos)
    };
    let needed = [
        (add_bos, "bos_token_id", d.bos, "a BOS token", bos_why),
        (add_eos, "eos_token_id", d.eos, "an EOS token", eos_why),
        (
            d.word_piece,
            "seperator_token_id",
            d.sep,
            "a separator token",
            always,
        ),
    ];
    for (adds, suffix, default, what, why) in needed {
        let key = format!("tokenizer.ggml.{suffix}");
        if adds && id(&key, default).is_none() {
            let value = md.get(&key).map_or_else(|| "missing".to_owned(), shown);
            return Err(BadHparam {
                key,
                value,
                reason: format!(
                    "must name {what} among the {n_vocab} tokens of this '{model}' vocabulary \
                     ({why}): llama.cpp asserts it exists when it tokenizes a prompt \
                     (llama-vocab.cpp: GGML_ASSERT(special_..._id != LLAMA_TOKEN_NULL))"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use acap_gguf::{Array, GgufFile, GgufWriter};

    /// A vocabulary of `n` tokens of tokenizer `model` with these keys (`tokenizer.ggml.`).
    fn vocab(model: &str, n: usize, keys: &[(&str, Value)]) -> Result<(), BadHparam> {
        let mut w = GgufWriter::new();
        w.set("tokenizer.ggml.model", model).unwrap();
        let tokens = (0..n).map(|i| format!("t{i}")).collect();
        w.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)))
            .unwrap();
        for (k, v) in keys {
            w.set(format!("tokenizer.ggml.{k}"), v.clone()).unwrap();
        }
        let f = GgufFile::from_bytes(w.into_bytes().unwrap()).unwrap();
        check(&Metadata::of(&f))
    }

    #[test]
    fn token_texts_must_be_distinct() {
        let with_tokens = |tokens: &[&str]| {
            let mut w = GgufWriter::new();
            w.set("tokenizer.ggml.model", "gpt2").unwrap();
            let tokens = tokens.iter().map(|t| (*t).to_owned()).collect();
            w.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)))
                .unwrap();
            w.set("tokenizer.ggml.add_bos_token", false).unwrap();
            let f = GgufFile::from_bytes(w.into_bytes().unwrap()).unwrap();
            check(&Metadata::of(&f))
        };
        with_tokens(&["a", "b", "", ""]).unwrap();
        let e = with_tokens(&["a", "b", "a"]).unwrap_err();
        assert!(
            e.key == "tokenizer.ggml.tokens"
                && e.value.contains("token 2")
                && e.value.contains("token 0"),
            "{e:?}"
        );
        // An empty token is keyed [EMPTY_<id>], which a literal token can collide with.
        with_tokens(&["[EMPTY_1]", ""]).unwrap_err();
    }

    #[test]
    fn each_added_special_token_must_resolve_in_the_vocabulary() {
        // SPM adds a BOS by default: its default id 1 needs a vocabulary of 2 tokens.
        vocab("llama", 8, &[]).unwrap();
        let e = vocab("llama", 1, &[]).unwrap_err();
        assert_eq!(e.key, "tokenizer.ggml.bos_token_id");
        assert!(e.reason.contains("default for it is true"), "{e:?}");
        // An id out of the vocabulary keeps the (here disabled) default.
        let e = vocab("llama", 1, &[("bos_token_id", Value::U32(7))]).unwrap_err();
        assert_eq!(e.value, "7");
        vocab("llama", 1, &[("add_bos_token", Value::Bool(false))]).unwrap();
        // An EOS is needed only where it is added.
        vocab("t5", 8, &[]).unwrap();
        let e = vocab(
            "t5",
            8,
            &[
                ("eos_token_id", Value::U32(9)),
                ("add_eos_token", Value::Bool(true)),
            ],
        );
        assert!(
            e.is_ok(),
            "t5's default EOS id 1 is in the vocabulary: {e:?}"
        );
        let e = vocab("t5", 1, &[]).unwrap_err();
        assert_eq!(e.key, "tokenizer.ggml.eos_token_id");
        // WordPiece adds a BOS and a separator whatever add_bos_token says.
        vocab("bert", 200, &[]).unwrap();
        let e = vocab("bert", 102, &[("add_bos_token", Value::Bool(false))]).unwrap_err();
        assert_eq!(e.key, "tokenizer.ggml.seperator_token_id");
        vocab("bert", 102, &[("seperator_token_id", Value::U32(5))]).unwrap();
        // BPE: the pre-tokenizer decides the default, Gemma 4's forces it on.
        let pre = |p: &str| ("pre", Value::from(p.to_owned()));
        vocab("gpt2", 4, &[pre("qwen2")]).unwrap();
        vocab("gpt2", 4, &[pre("llama-bpe")]).unwrap_err();
        let e = vocab(
            "gemma4",
            4,
            &[pre("gemma4"), ("add_bos_token", Value::Bool(false))],
        )
        .unwrap_err();
        assert!(e.reason.contains("forces add_bos_token on"), "{e:?}");
        vocab(
            "gemma4",
            4,
            &[pre("gemma4"), ("bos_token_id", Value::U32(2))],
        )
        .unwrap();
        // Tokenizers that add nothing, or no tokenizer at all.
        vocab("rwkv", 1, &[("add_bos_token", Value::Bool(true))]).unwrap();
        vocab("no_vocab", 0, &[]).unwrap();
    }
}
