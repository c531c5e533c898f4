//! Loading, metadata, tokenisation and errors on the generated tiny model.

use acap::{
    ChatError, LoadError, MetadataOverride, Model, ModelParams, PieceDecoder, QuantType, Special,
};

use crate::common::{QUANTS, load};

#[test]
fn loads_with_metadata_in_every_quantisation() {
    for q in QUANTS {
        let m = load(q);
        let info = m.info();
        assert_eq!(info.architecture, "llama", "{q:?}");
        assert_eq!(info.n_layer, 8);
        assert_eq!(info.n_embd, 256);
        assert_eq!(m.n_layer(), 8);
        assert_eq!(m.n_embd(), 256);
        assert_eq!(m.n_vocab() as u32, info.n_vocab);
        assert!(
            info.chat_template
                .as_deref()
                .unwrap()
                .contains("<|start_header_id|>")
        );
        assert!(m.size_bytes() > 1_000_000 && m.size_bytes() <= info.file_size);
        let bos = m.token_bos().unwrap();
        let eot = m.token_eot().unwrap();
        assert_eq!(m.detokenize(&[bos], true).unwrap(), "<|begin_of_text|>");
        assert_eq!(m.detokenize(&[eot], true).unwrap(), "<|eot_id|>");
        assert!(m.is_eog(eot));
        assert!(!m.is_eog(bos));
        assert!(m.adds_bos());
    }
}

#[test]
fn q4_k_m_really_uses_k_quants() {
    let m = load(QuantType::Q4KM);
    let g = acap::gguf::GgufFile::open(&m.info().path).unwrap();
    let q = g.tensor("blk.0.ffn_gate.weight").unwrap();
    assert_eq!(q.info().ggml_type(), acap::gguf::GgmlType::Q4_K);
    let q8 = acap::gguf::GgufFile::open(&load(QuantType::Q8_0).info().path).unwrap();
    assert_eq!(
        q8.tensor("blk.0.attn_q.weight").unwrap().info().ggml_type(),
        acap::gguf::GgmlType::Q8_0
    );
}

#[test]
fn tokenize_round_trips_including_multibyte_text() {
    let m = load(QuantType::Q8_0);
    for text in [
        "Hello, how are you today?",
        "héllo wörld ✓ 🦀 日本語",
        "  spaces\nand\ttabs  ",
        "",
    ] {
        let tokens = m.tokenize(text, Special::PLAIN).unwrap();
        assert_eq!(m.detokenize(&tokens, false).unwrap(), text);
    }
    // Merges learned from the built-in text shorten common words.
    let n = m
        .tokenize("The capital of France", Special::PLAIN)
        .unwrap()
        .len();
    assert!(n < "The capital of France".len() / 2, "{n} tokens");
}

#[test]
fn bos_and_special_token_parsing() {
    let m = load(QuantType::Q8_0);
    let bos = m.token_bos().unwrap();
    let with = m.tokenize("hi", Special::PROMPT).unwrap();
    let without = m.tokenize("hi", Special::PLAIN).unwrap();
    assert_eq!(with[0], bos);
    assert_eq!(&with[1..], &without[..]);
    let parsed = m
        .tokenize(
            "<|eot_id|>",
            Special {
                add: false,
                parse: true,
            },
        )
        .unwrap();
    assert_eq!(parsed, [m.token_eot().unwrap()]);
    let literal = m.tokenize("<|eot_id|>", Special::PLAIN).unwrap();
    assert!(literal.len() > 1);
    assert_eq!(m.detokenize(&parsed, false).unwrap(), "");
    assert!(m.detokenize(&[-1], false).is_err());
    assert!(m.token_to_piece(m.n_vocab(), false).is_err());
}

#[test]
fn pieces_never_split_a_character() {
    let m = load(QuantType::Q8_0);
    let text = "é✓🦀日本";
    let tokens = m.tokenize(text, Special::PLAIN).unwrap();
    // Byte-level BPE splits these characters over several byte tokens.
    assert!(tokens.len() > text.chars().count());
    let mut d = PieceDecoder::new();
    let mut out = String::new();
    for t in tokens {
        let s = d.push(&m.token_to_piece(t, false).unwrap());
        assert!(!s.contains('\u{fffd}'), "half a character emitted");
        out.push_str(&s);
    }
    out.push_str(&d.finish());
    assert_eq!(out, text);

    let mut d = PieceDecoder::new();
    assert_eq!(d.push(&[0xe2, 0x9c]), "");
    assert_eq!(d.push(&[0x93, b'a', 0xff, b'b']), "✓a\u{fffd}b");
    assert_eq!(d.push(&[0xf0]), "");
    assert_eq!(d.finish(), "\u{fffd}");
}

#[test]
fn chat_template_layout_of_two_turns() {
    let m = load(QuantType::Q8_0);
    let msgs = [
        acap::ChatMessage::system("Be kind."),
        acap::ChatMessage::user("Hi"),
        acap::ChatMessage::assistant("Hello!"),
        acap::ChatMessage::user("How are you?"),
    ];
    let prompt = m.apply_chat_template(&msgs, true, None).unwrap();
    assert_eq!(
        prompt,
        "<|start_header_id|>system<|end_header_id|>\n\nBe kind.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    // The exact token sequence: BOS, then each header as special tokens around plain text.
    let tokens = m.tokenize(&prompt, Special::PROMPT).unwrap();
    let id = |s: &str| {
        let t = m
            .tokenize(
                s,
                Special {
                    add: false,
                    parse: true,
                },
            )
            .unwrap();
        assert_eq!(t.len(), 1, "{s}");
        t[0]
    };
    let plain = |s: &str| m.tokenize(s, Special::PLAIN).unwrap();
    let (sh, eh, eot) = (
        id("<|start_header_id|>"),
        id("<|end_header_id|>"),
        id("<|eot_id|>"),
    );
    let mut expected = vec![m.token_bos().unwrap()];
    for (role, content) in [
        ("system", "Be kind."),
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "How are you?"),
    ] {
        expected.push(sh);
        expected.extend(plain(role));
        expected.push(eh);
        expected.extend(plain(&format!("\n\n{content}")));
        expected.push(eot);
    }
    expected.push(sh);
    expected.extend(plain("assistant"));
    expected.push(eh);
    expected.extend(plain("\n\n"));
    assert_eq!(tokens, expected);

    // A forced template name.
    let chatml = m
        .apply_chat_template(&msgs[1..2], true, Some("chatml"))
        .unwrap();
    assert_eq!(
        chatml,
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn load_and_template_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    let e = Model::load(&missing, ModelParams::default()).unwrap_err();
    assert!(matches!(e, LoadError::Io { .. }), "{e}");
    assert!(e.to_string().contains("missing.gguf"));

    let not_gguf = dir.path().join("notes.txt");
    std::fs::write(&not_gguf, "just some text, not a model").unwrap();
    let e = Model::load(&not_gguf, ModelParams::default()).unwrap_err();
    assert!(
        e.to_string().contains("notes.txt") && e.to_string().contains("magic"),
        "{e}"
    );

    let full = std::fs::read(&load(QuantType::Q8_0).info().path).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let e = Model::load(&truncated, ModelParams::default()).unwrap_err();
    assert!(
        e.to_string().contains("truncated.gguf") && e.to_string().contains("outside the file"),
        "{e}"
    );

    // A GGUF llama.cpp cannot use: an axis file has no architecture.
    let axis = dir.path().join("axis.gguf");
    acap::AxisWriter::new()
        .with_direction(1, vec![1.0; 8])
        .write_file(&axis)
        .unwrap();
    let e = Model::load(&axis, ModelParams::default()).unwrap_err();
    assert!(e.to_string().contains("general.architecture"), "{e}");

    let m = load(QuantType::Q8_0);
    let e = m
        .apply_chat_template(
            &[acap::ChatMessage::user("x")],
            true,
            Some("no-such-template"),
        )
        .unwrap_err();
    assert!(
        matches!(&e, ChatError::UnknownTemplate { known, .. } if known.contains("llama3")),
        "{e}"
    );
}

#[test]
fn progress_callback_sees_progress_and_can_cancel() {
    use std::sync::{Arc, Mutex};
    let path = load(QuantType::Q8_0).info().path.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    Model::load(
        &path,
        ModelParams::default().with_progress(move |p| {
            s.lock().unwrap().push(p);
            true
        }),
    )
    .unwrap();
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    assert_eq!(*seen.last().unwrap(), 1.0);

    let e = Model::load(&path, ModelParams::default().with_progress(|_| false)).unwrap_err();
    assert!(matches!(e, LoadError::Cancelled { .. }), "{e}");
}

#[test]
fn version_names_llama_cpp() {
    let v = acap::version();
    assert_eq!(v.acap, env!("CARGO_PKG_VERSION"));
    assert_eq!(v.llama_cpp_sys, "0.1.161");
    assert!(!v.llama_cpp.is_empty());
    assert!(v.to_string().contains("llama.cpp"));
}

/// The project's own builds get llama.cpp at full optimisation and with OpenMP (issue: CPU
/// speed), whatever the Rust profile's debug info.
#[test]
fn llama_cpp_is_built_for_speed() {
    let v = acap::version();
    assert_eq!(v.llama_build_type, "Release", "{v}");
    if cfg!(feature = "openmp") {
        assert_eq!(v.llama_openmp, "ON", "{v}");
    }
    assert!(v.to_string().contains("llama.cpp build Release"), "{v}");
}

/// RoPE values llama.cpp takes without a check, which turned every attention score to NaN
/// and the tiny model's greedy output to blanks: a NaN, zero or negative base, a negative
/// scaling factor.
#[test]
fn rope_values_that_silently_garble_the_output_are_refused() {
    use acap::gguf::Value;
    let dir = tempfile::tempdir().unwrap();
    let src = acap_testkit::tiny(QuantType::Q8_0);
    let cases = [
        (
            "llama.rope.freq_base",
            f32::NAN,
            "llama.rope.freq_base = NaN",
        ),
        ("llama.rope.freq_base", 0.0, "llama.rope.freq_base = 0"),
        ("llama.rope.freq_base", -5.0, "llama.rope.freq_base = -5"),
        (
            "llama.rope.scaling.factor",
            -1.0,
            "llama.rope.scaling.factor = -1",
        ),
    ];
    for (i, (key, value, named)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("r{i}.gguf"));
        acap_testkit::with_metadata(&src, &path, &[(key, Some(Value::F32(value)))]);
        let e = Model::load(&path, ModelParams::default()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(named) && msg.contains("garbage"),
            "{key}: {msg}"
        );
    }
    // A plain base and a zero factor (no scaling) load.
    for (i, (key, value)) in [
        ("llama.rope.freq_base", 10_000.0),
        ("llama.rope.scaling.factor", 0.0),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.path().join(format!("ok{i}.gguf"));
        acap_testkit::with_metadata(&src, &path, &[(key, Some(Value::F32(value)))]);
        Model::load(&path, ModelParams::default()).unwrap_or_else(|e| panic!("{key}: {e}"));
    }
}

/// Hyper-parameters llama.cpp asserts on (an abort of the whole process) are refused natively
/// with the key and value named; the process lives on to say so.
#[test]
fn values_llama_cpp_aborts_on_are_refused_by_key() {
    use acap::gguf::Value;
    let dir = tempfile::tempdir().unwrap();
    let src = acap_testkit::tiny(QuantType::Q8_0);
    let cases: Vec<(&str, Option<Value>, &str)> = vec![
        (
            "llama.block_count",
            Some(Value::U32(0)),
            "llama.block_count = 0",
        ),
        (
            "llama.block_count",
            Some(Value::U32(513)),
            "llama.block_count = 513",
        ),
        ("llama.block_count", None, "llama.block_count = missing"),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Some(Value::F32(f32::NAN)),
            "layer_norm_rms_epsilon = NaN",
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Some(Value::F32(-1e-5)),
            "layer_norm_rms_epsilon = -0.00001",
        ),
        (
            "llama.rope.scaling.type",
            Some(Value::from("bogus")),
            "'bogus'",
        ),
        (
            "llama.expert_used_count",
            Some(Value::U32(2)),
            "llama.expert_used_count = 2",
        ),
        (
            "llama.expert_count",
            Some(Value::U32(5000)),
            "llama.expert_count = 5000",
        ),
        (
            "llama.attention.value_length",
            Some(Value::U32(16)),
            "llama.attention.value_length = 16",
        ),
        (
            "llama.rope.dimension_count",
            Some(Value::U32(8)),
            "llama.rope.dimension_count = 8",
        ),
    ];
    for (i, (key, value, named)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("m{i}.gguf"));
        acap_testkit::with_metadata(&src, &path, &[(key, value)]);
        let e = Model::load(&path, ModelParams::default()).unwrap_err();
        assert!(matches!(e, LoadError::Hyperparameter { .. }), "{key}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(named), "{key}: {msg}");
        assert!(msg.contains("llama.cpp asserts"), "{key}: {msg}");
    }
    // A value that is fine stays fine.
    let ok = dir.path().join("ok.gguf");
    acap_testkit::with_metadata(&src, &ok, &[("llama.expert_count", Some(Value::U32(0)))]);
    Model::load(&ok, ModelParams::default()).unwrap();
    // The same values given as overrides (`--override-kv`) reach the same assertions: they
    // are checked the same way, before llama.cpp sees them.
    for (key, value, named) in [
        (
            "llama.block_count",
            MetadataOverride::Int(0),
            "llama.block_count = 0",
        ),
        (
            "llama.block_count",
            MetadataOverride::Int(100_000),
            "100000",
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            MetadataOverride::Float(f64::NAN),
            "NaN",
        ),
        (
            "llama.expert_used_count",
            MetadataOverride::Int(2),
            "expert_used_count = 2",
        ),
        (
            "llama.rope.scaling.type",
            MetadataOverride::Str("bogus".into()),
            "'bogus'",
        ),
    ] {
        let e = Model::load(&src, ModelParams::default().with_override(key, value)).unwrap_err();
        assert!(matches!(e, LoadError::Hyperparameter { .. }), "{key}: {e}");
        assert!(e.to_string().contains(named), "{key}: {e}");
    }
    Model::load(
        &src,
        ModelParams::default().with_override("llama.context_length", MetadataOverride::Int(2048)),
    )
    .unwrap();
    // What llama.cpp itself refuses is reported with its cause, which names the key, not
    // with its last, generic line ("failed to load model").
    let typed = dir.path().join("typed.gguf");
    acap_testkit::with_metadata(
        &src,
        &typed,
        &[("tokenizer.ggml.padding_token_id", Some(Value::Bool(true)))],
    );
    let e = Model::load(&typed, ModelParams::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("tokenizer.ggml.padding_token_id"), "{e}");
}
