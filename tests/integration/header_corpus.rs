//! Issue 20's corpus, in process: 2,000 variants of the tiny model with hostile header
//! values (fixed seed). None may abort the process (a C program embedding acap would die),
//! panic or hang; a variant either loads and decodes, or is refused with a message that
//! names a key the variant changed.

use std::sync::mpsc;
use std::time::Duration;

use acap::{GenerateParams, Model, ModelParams, QuantType, SamplingParams, Session, SessionParams};

/// Loads `path` and greedily completes two tokens; the prompt spans several physical
/// batches, so batch-shape assertions (a non-causal model's, for one) are reached too.
fn load_and_decode(path: &std::path::Path) -> Result<(), String> {
    let m = Model::load(path, ModelParams::default()).map_err(|e| e.to_string())?;
    let params = SessionParams::default()
        .with_n_ctx(128)
        .with_n_batch(32)
        .with_n_ubatch(2)
        .with_threads(1);
    let mut s = Session::new(&m, params).map_err(|e| e.to_string())?;
    let gp = GenerateParams::default()
        .with_max_tokens(2)
        .with_sampling(SamplingParams::greedy());
    s.complete("Hello there", &gp).map_err(|e| e.to_string())?;
    Ok(())
}

/// A variant's changes, with the corpus's `llama.` keys moved to architecture `arch`.
type Changes = Vec<(String, Option<acap::gguf::Value>)>;

/// What happened to each variant of the model at `src` (architecture `arch`): ran, or the
/// refusal.
fn survey(src: std::path::PathBuf, arch: &str, n: usize) -> Vec<(Changes, Result<(), String>)> {
    // In memory where the machine has it: 2,000 copies of a 4 MB model.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let corpus: Vec<Changes> = acap_testkit::header_mutations(acap_testkit::MUTATION_SEED, n)
        .into_iter()
        .map(|c| {
            c.into_iter()
                .map(|(k, v)| match k.strip_prefix("llama.") {
                    Some(rest) => (format!("{arch}.{rest}"), v),
                    None => (k.to_owned(), v),
                })
                .collect()
        })
        .collect();
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let mut out = Vec::new();
        for (i, changes) in corpus.into_iter().enumerate() {
            let path = dir.path().join(format!("v{i:05}.gguf"));
            let refs: Vec<(&str, Option<acap::gguf::Value>)> = changes
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            acap_testkit::with_metadata(&src, &path, &refs);
            if std::env::var_os("ACAP_CORPUS_TRACE").is_some() {
                eprintln!("variant {i}: {}", acap_testkit::describe_changes(&changes));
            }
            let outcome =
                std::panic::catch_unwind(|| load_and_decode(&path)).unwrap_or_else(|_| {
                    panic!(
                        "variant {i} panicked: {}",
                        acap_testkit::describe_changes(&changes)
                    )
                });
            std::fs::remove_file(&path).unwrap();
            tx.send(i).unwrap();
            out.push((changes, outcome));
        }
        out
    });
    // A hang shows as a variant that takes a minute.
    let mut last = None;
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(i) => last = Some(i),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("variant {} hangs", last.map_or(0, |i| i + 1))
            }
        }
    }
    worker.join().expect("survey")
}

/// Surveys `n` variants of `src` and checks the outcome: 0 aborts (the test process would
/// be gone), panics or hangs, and every refusal naming a changed key.
fn check_corpus(src: std::path::PathBuf, arch: &str, n: usize) {
    let results = survey(src, arch, n);
    let mut ran = 0;
    let mut unnamed = Vec::new();
    for (changes, outcome) in &results {
        match outcome {
            Ok(()) => ran += 1,
            Err(msg) => {
                if !changes.iter().any(|(k, _)| msg.contains(k.as_str())) {
                    unnamed.push(format!(
                        "{} -> {msg}",
                        acap_testkit::describe_changes(changes)
                    ));
                }
            }
        }
    }
    eprintln!(
        "header corpus ({arch}): {} variants, {ran} ran, {} refused, {} refusals not naming a changed key",
        results.len(),
        results.len() - ran,
        unnamed.len()
    );
    assert!(
        unnamed.is_empty(),
        "{} refusals do not name the key at fault, e.g.:\n{}",
        unnamed.len(),
        unnamed[..unnamed.len().min(30)].join("\n")
    );
    // The corpus exercises both outcomes.
    assert!(ran > n / 40 && results.len() - ran > n / 4, "{ran} ran");
}

#[test]
fn hostile_header_values_never_abort_and_every_refusal_names_its_key() {
    check_corpus(acap_testkit::tiny(QuantType::Q4KM), "llama", 2000);
}

#[test]
fn hostile_qwen2_header_values_never_abort_and_every_refusal_names_its_key() {
    check_corpus(acap_testkit::tiny_qwen2(QuantType::Q4KM), "qwen2", 1000);
}

/// The holes the corpus found, one by one.
#[test]
fn holes_the_corpus_found_stay_closed() {
    use acap::gguf::Value;
    let src = acap_testkit::tiny(QuantType::Q4KM);
    let dir = tempfile::tempdir().unwrap();
    let variant = |name: &str, changes: &[(&str, Option<Value>)]| {
        acap_testkit::with_metadata(&src, &dir.path().join(name), changes)
    };
    let refusal = |path: &std::path::Path| load_and_decode(path).unwrap_err();

    // A tokenizer type that does not match the tokens: llama.cpp's tokenizer throws a C++
    // exception, which must not unwind into Rust (it would abort the process).
    let spm = variant(
        "spm.gguf",
        &[("tokenizer.ggml.model", Some("llama".into()))],
    );
    let e = refusal(&spm);
    assert!(
        e.contains("llama_tokenize") && e.contains("tokenizer.ggml.model"),
        "{e}"
    );

    // No tokenizer at all: llama.cpp asserts in its tokenizer.
    let none = variant(
        "none.gguf",
        &[("tokenizer.ggml.model", Some("none".into()))],
    );
    let e = refusal(&none);
    assert!(
        e.contains("no tokenizer") && e.contains("tokenizer.ggml.model"),
        "{e}"
    );

    // Tensors off ggml's 32-byte alignment: mapped, ggml asserts; read into memory, fine.
    let packed = variant("packed.gguf", &[("general.alignment", Some(Value::U32(1)))]);
    let e = refusal(&packed);
    assert!(
        e.contains("general.alignment = 1") && e.contains("--no-mmap"),
        "{e}"
    );
    let m = Model::load(&packed, ModelParams::default().with_mmap(false)).unwrap();
    assert!(m.n_layer() > 0);

    // A vocabulary that does not match the embedding.
    let f = acap::gguf::GgufFile::open(&src).unwrap();
    let mut tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap().to_vec();
    tokens.pop();
    let short = variant(
        "short.gguf",
        &[("tokenizer.ggml.tokens", Some(Value::from(tokens)))],
    );
    let e = refusal(&short);
    assert!(
        e.contains("tokenizer.ggml.tokens") && e.contains("token_embd.weight"),
        "{e}"
    );

    // Shapes the header contradicts name the key, not only the tensor.
    for (key, value, says) in [
        ("llama.block_count", Value::U32(9), "they are for 8 blocks"),
        (
            "llama.feed_forward_length",
            Value::U32(7),
            "blk.0.ffn_up.weight is",
        ),
        (
            "llama.attention.head_count_kv",
            Value::U32(3),
            "blk.0.attn_k.weight is",
        ),
        (
            "llama.embedding_length",
            Value::U32(512),
            "llama.embedding_length 512 /",
        ),
        ("tokenizer.ggml.model", "bogus".into(), "one of no_vocab"),
        ("tokenizer.ggml.pre", "llama".into(), "not a pre-tokenizer"),
    ] {
        let path = variant("shape.gguf", &[(key, Some(value))]);
        let e = refusal(&path);
        assert!(e.contains(key) && e.contains(says), "{key}: {e}");
    }
}

/// The model at `src` with its `llama.` keys moved to architecture `arch`, the keys of `set`
/// (suffixes after `{arch}.`) set or added: a header of an architecture the testkit has no
/// model for, which acap's native checks see before llama.cpp looks for that architecture's
/// tensors.
fn moved_to(
    src: &std::path::Path,
    dir: &std::path::Path,
    arch: &str,
    set: &[(&str, acap::gguf::Value)],
) -> std::path::PathBuf {
    use acap::gguf::Value;
    let f = acap::gguf::GgufFile::open(src).unwrap();
    let mut changes: Vec<(String, Option<Value>)> = vec![(
        "general.architecture".to_owned(),
        Some(Value::from(arch.to_owned())),
    )];
    for (k, v) in f.metadata() {
        if let Some(rest) = k.strip_prefix("llama.") {
            changes.push((k.clone(), None));
            let v = set
                .iter()
                .find(|(s, _)| *s == rest)
                .map_or_else(|| v.clone(), |(_, v)| v.clone());
            changes.push((format!("{arch}.{rest}"), Some(v)));
        }
    }
    for (s, v) in set {
        let key = format!("{arch}.{s}");
        if !changes.iter().any(|(k, _)| *k == key) {
            changes.push((key, Some(v.clone())));
        }
    }
    let refs: Vec<(&str, Option<Value>)> = changes
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    acap_testkit::with_metadata(src, &dir.join(format!("{arch}.gguf")), &refs)
}

/// The rest of the assertions on header values (`src/hparams/arch_asserts.rs`, derived from
/// the vendored llama.cpp): recurrent, linear-attention, MLA and MoE builders, and the
/// MTP layer count every architecture loads. Each is refused through `Model::load`, naming
/// the key and the assertion's file.
#[test]
fn architecture_asserts_beyond_head_sizes_are_checked_natively() {
    use acap::gguf::Value;
    let src = acap_testkit::tiny(QuantType::Q4KM);
    let dir = tempfile::tempdir().unwrap();
    let ssm = |groups: u32| {
        vec![
            ("ssm.inner_size", Value::U32(512)),
            ("ssm.state_size", Value::U32(64)),
            ("ssm.time_step_rank", Value::U32(8)),
            ("ssm.group_count", Value::U32(groups)),
            ("ssm.conv_kernel", Value::U32(4)),
        ]
    };
    // Llama 4 with no mixture-of-experts block (interleave step 0) has the tiny model's tensors.
    let llama4 = |window: Option<u32>| {
        let mut set = vec![
            ("expert_count", Value::U32(2)),
            ("expert_used_count", Value::U32(1)),
            ("expert_feed_forward_length", Value::U32(0)),
            ("interleave_moe_layer_step", Value::U32(0)),
        ];
        set.extend(window.map(|w| ("attention.sliding_window", Value::U32(w))));
        set
    };
    load_and_decode(&moved_to(&src, dir.path(), "llama4", &llama4(None))).unwrap();
    for (arch, set, key, file) in [
        ("qwen35", ssm(3), "qwen35.ssm.time_step_rank", "qwen35.cpp"),
        ("mamba2", ssm(0), "mamba2.ssm.group_count", "mamba-base.cpp"),
        // Twice embedding_length 256 is 512, not 640.
        (
            "jamba",
            vec![("ssm.inner_size", Value::U32(640))],
            "jamba.ssm.inner_size",
            "jamba.cpp",
        ),
        (
            "rwkv6qwen2",
            vec![("wkv.head_size", Value::U32(64))],
            "rwkv6qwen2.token_shift_count",
            "rwkv6qwen2.cpp",
        ),
        (
            "deepseek2",
            vec![("rope.dimension_count", Value::U32(64))],
            "deepseek2.rope.dimension_count",
            "deepseek2.cpp",
        ),
        (
            "llama",
            vec![("nextn_predict_layers", Value::U32(9))],
            "llama.nextn_predict_layers",
            "llama-model.cpp",
        ),
        // A window of 0 turns Llama 4's chunked attention off, and with it the temperature
        // scale its graph still asserts on: this aborted at the first decode.
        (
            "llama4",
            llama4(Some(0)),
            "llama4.attention.sliding_window",
            "llama-graph.cpp",
        ),
    ] {
        let path = moved_to(&src, dir.path(), arch, &set);
        let e = load_and_decode(&path).unwrap_err();
        assert!(
            e.contains(key) && e.contains(file) && e.contains("GGML_ASSERT("),
            "{arch}: {e}"
        );
    }
    // Every block with attention: a hybrid model without a recurrent layer, which aborted at
    // the first decode before this check.
    let path = moved_to(
        &src,
        dir.path(),
        "jamba",
        &[("ssm.inner_size", Value::U32(512))],
    );
    let e = load_and_decode(&path).unwrap_err();
    assert!(
        e.contains("jamba.attention.head_count_kv") && e.contains("recurrent"),
        "{e}"
    );
    // A speculative-decoding draft is refused outright, with the reason.
    let e = load_and_decode(&moved_to(&src, dir.path(), "dflash", &[])).unwrap_err();
    assert!(
        e.contains("general.architecture = 'dflash'") && e.contains("speculative-decoding draft"),
        "{e}"
    );
    // A header these checks pass reaches llama.cpp, which refuses the missing tensors itself.
    let path = moved_to(&src, dir.path(), "qwen35", &ssm(4));
    let e = load_and_decode(&path).unwrap_err();
    assert!(!e.contains("GGML_ASSERT("), "{e}");
}

/// The head-size asserts of architectures the testkit has no model for, from the table
/// `scripts/hparam-asserts.py` derives from the vendored graph builders: the tiny model's
/// header moved to such an architecture, with a head size its builder asserts on, is refused
/// naming the key, before llama.cpp gets to build a graph (where the assertion would abort the
/// process).
#[test]
fn head_size_asserts_of_other_architectures_are_checked_natively() {
    use acap::gguf::Value;
    let src = acap_testkit::tiny(QuantType::Q4KM);
    let dir = tempfile::tempdir().unwrap();
    // The tiny model: embedding 256, 4 heads, so a head size of 64.
    let moved = |arch: &str, set: &[(&str, Value)]| moved_to(&src, dir.path(), arch, set);
    for (arch, suffix, value, assertion) in [
        // Builders asserting both sizes.
        (
            "mistral3",
            "rope.dimension_count",
            32,
            "n_embd_head_v == n_rot",
        ),
        (
            "command-r",
            "attention.value_length",
            32,
            "n_embd_head_v == n_embd_head_k",
        ),
        // minicpm takes granite's graph builder by `using graph =`: it aborted in granite.cpp
        // before the derivation followed such aliases.
        (
            "minicpm",
            "rope.dimension_count",
            32,
            "n_embd_head_v == n_rot",
        ),
        // phi2 rotates part of each head: only the key/value sizes are asserted.
        (
            "phi2",
            "attention.value_length",
            128,
            "n_embd_head_v == n_embd_head_k",
        ),
    ] {
        let path = moved(arch, &[(suffix, Value::U32(value))]);
        let e = load_and_decode(&path).unwrap_err();
        let key = format!("{arch}.{suffix}");
        assert!(
            e.contains(&key) && e.contains(assertion) && e.contains("head size 64"),
            "{arch}: {e}"
        );
    }
}

/// The tiny model as Gemma 2: `output.weight` dropped (Gemma ties it to the embeddings) and
/// each block's post-attention and post-feed-forward norms added, with these keys set.
fn as_gemma2(
    src: &std::path::Path,
    dir: &std::path::Path,
    set: &[(&str, acap::gguf::Value)],
) -> std::path::PathBuf {
    use acap::gguf::{GgufFile, GgufWriter, Value};
    let moved = GgufFile::open(moved_to(src, dir, "gemma2", set)).unwrap();
    let Some(Value::U32(blocks)) = moved.get("gemma2.block_count").cloned() else {
        panic!("no gemma2.block_count");
    };
    let Some(Value::U32(n_embd)) = moved.get("gemma2.embedding_length").cloned() else {
        panic!("no gemma2.embedding_length");
    };
    let mut w = GgufWriter::new();
    for (k, v) in moved.metadata() {
        w.set(k.clone(), v.clone()).unwrap();
    }
    for t in moved
        .tensors()
        .iter()
        .filter(|t| t.name() != "output.weight")
    {
        let data = moved.tensor(t.name()).unwrap().data().to_vec();
        w.add_raw(t.name(), t.dims(), t.ggml_type(), data).unwrap();
    }
    let ones = vec![1.0f32; n_embd as usize];
    for i in 0..blocks {
        for norm in ["post_attention_norm", "post_ffw_norm"] {
            w.add_f32(
                &format!("blk.{i}.{norm}.weight"),
                &[u64::from(n_embd)],
                &ones,
            )
            .unwrap();
        }
    }
    let out = dir.join("gemma2-norms.gguf");
    w.write_file(&out).unwrap();
    out
}

/// A sliding-window model whose pattern leaves no sliding-window block: Gemma 2 with
/// `sliding_window_pattern` 1 aborted at context creation (`GGML_ASSERT(is_swa_any())`, seen
/// with the check taken out). Every block sliding (0) and the usual period (2) run.
#[test]
fn sliding_window_models_without_a_window_block_are_refused() {
    use acap::gguf::Value;
    let src = acap_testkit::tiny(QuantType::Q4KM);
    let dir = tempfile::tempdir().unwrap();
    let with_pattern = |p: u32| {
        as_gemma2(
            &src,
            dir.path(),
            &[
                ("attention.sliding_window", Value::U32(4)),
                ("attention.sliding_window_pattern", Value::U32(p)),
            ],
        )
    };
    for runs in [2, 0] {
        load_and_decode(&with_pattern(runs)).unwrap_or_else(|e| panic!("pattern {runs}: {e}"));
    }
    let e = load_and_decode(&with_pattern(1)).unwrap_err();
    assert!(
        e.contains("gemma2.attention.sliding_window_pattern = 1") && e.contains("is_swa_any()"),
        "{e}"
    );
}

/// A vocabulary that adds a special token it does not have: the tiny model's vocabulary as a
/// T5 (Unigram) one, which has no BOS by default, with `add_bos_token` kept on. llama.cpp
/// aborted on the first prompt (`GGML_ASSERT(special_bos_id != LLAMA_TOKEN_NULL)`); with
/// `add_bos_token` off the same vocabulary runs. And one with a token text twice.
#[test]
fn vocabularies_llama_cpp_aborts_on_are_refused() {
    use acap::gguf::Value;
    let src = acap_testkit::tiny(QuantType::Q4KM);
    let dir = tempfile::tempdir().unwrap();
    let t5 = |add_bos: bool| {
        let out = dir.path().join(format!("t5-{add_bos}.gguf"));
        let changes = [
            ("tokenizer.ggml.model", Some(Value::from("t5".to_owned()))),
            ("tokenizer.ggml.bos_token_id", None),
            ("tokenizer.ggml.add_bos_token", Some(Value::Bool(add_bos))),
        ];
        acap_testkit::with_metadata(&src, &out, &changes);
        out
    };
    load_and_decode(&t5(false)).unwrap();
    // A token text twice: llama.cpp aborted at load (llama-vocab.cpp: GGML_ASSERT(
    // id_to_token.size() == token_to_id.size())).
    let f = acap::gguf::GgufFile::open(&src).unwrap();
    let Ok(acap::gguf::Array::String(mut tokens)) = f.get_array("tokenizer.ggml.tokens").cloned()
    else {
        panic!("no token list");
    };
    tokens[100] = tokens[101].clone();
    let dup = dir.path().join("dup.gguf");
    let changes = [(
        "tokenizer.ggml.tokens",
        Some(Value::Array(acap::gguf::Array::String(tokens))),
    )];
    acap_testkit::with_metadata(&src, &dup, &changes);
    let e = load_and_decode(&dup).unwrap_err();
    assert!(
        e.contains("tokenizer.ggml.tokens") && e.contains("token 101") && e.contains("token 100"),
        "{e}"
    );
    let e = load_and_decode(&t5(true)).unwrap_err();
    assert!(
        e.contains("tokenizer.ggml.bos_token_id = missing")
            && e.contains("'t5' vocabulary")
            && e.contains("add_bos_token is true"),
        "{e}"
    );
}

/// Multi-section RoPE values ggml's rope kernel asserts on at the first decode: the Qwen2
/// tiny model as Qwen2-VL, seen aborting on all-zero and on oversized sections.
#[test]
fn multi_section_rope_values_the_rope_kernel_asserts_on_are_checked() {
    use acap::gguf::Value;
    let dir = tempfile::tempdir().unwrap();
    let qwen2 = acap_testkit::tiny_qwen2(QuantType::Q4KM);
    let f = acap::gguf::GgufFile::open(&qwen2).unwrap();
    let vl = |sections: [i32; 4]| {
        let mut changes: Vec<(String, Option<Value>)> = vec![(
            "general.architecture".into(),
            Some(Value::from("qwen2vl".to_owned())),
        )];
        for (k, v) in f.metadata() {
            if let Some(rest) = k.strip_prefix("qwen2.") {
                changes.push((k.clone(), None));
                changes.push((format!("qwen2vl.{rest}"), Some(v.clone())));
            }
        }
        changes.push((
            "qwen2vl.rope.dimension_sections".into(),
            Some(Value::from(sections.to_vec())),
        ));
        let refs: Vec<(&str, Option<Value>)> = changes
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let out = dir.path().join(format!("qwen2vl-{sections:?}.gguf"));
        acap_testkit::with_metadata(&qwen2, &out, &refs);
        out
    };
    load_and_decode(&vl([16, 8, 8, 0])).unwrap();
    for (sections, what) in [
        ([0, 0, 0, 0], "sections[0] > 0"),
        ([100, 100, 100, 100], "sect_dims <= ne0"),
        ([-4, 4, 0, 0], "must not be negative"),
    ] {
        let e = load_and_decode(&vl(sections)).unwrap_err();
        assert!(
            e.contains("qwen2vl.rope.dimension_sections") && e.contains(what),
            "{sections:?}: {e}"
        );
    }
}

/// `attention.causal = false` (or an embedding or diffusion architecture, whose loader turns
/// it off): llama.cpp cannot split such a batch into physical batches and asserts
/// `n_ubatch >= n_tokens` (this aborted the process on any prompt longer than `-ub`). A
/// session feeds such a model one physical batch per decode.
#[test]
fn non_causal_models_take_prompts_longer_than_a_physical_batch() {
    use acap::gguf::Value;
    let src = acap_testkit::tiny(QuantType::Q8_0);
    let dir = tempfile::tempdir().unwrap();
    let path = acap_testkit::with_metadata(
        &src,
        &dir.path().join("non-causal.gguf"),
        &[("llama.attention.causal", Some(Value::Bool(false)))],
    );
    let m = Model::load(&path, ModelParams::default()).unwrap();
    let params = SessionParams::default()
        .with_n_ctx(128)
        .with_n_batch(32)
        .with_n_ubatch(8)
        .with_threads(1);
    let mut s = Session::new(&m, params).unwrap();
    let gp = GenerateParams::default()
        .with_max_tokens(2)
        .with_sampling(SamplingParams::greedy());
    let (_, stats) = s
        .complete(
            "Hello there, this is a much longer prompt of many tokens",
            &gp,
        )
        .unwrap();
    assert!(stats.prompt_tokens > 8, "{stats:?}");
    assert_eq!(stats.generated_tokens, 2, "{stats:?}");
}
