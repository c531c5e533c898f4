//! Sessions: deterministic greedy generation, batching, KV reuse, stops, cancel, context
//! limits, grammar, threads.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use acap::{
    ChatMessage, DecodeError, Error, GenerateParams, Model, QuantType, SamplingParams, Session,
    SessionParams, StopReason,
};

use crate::common::{QUANTS, load};

const PROMPT: &str = "The capital of France is";

fn greedy(n: usize) -> GenerateParams {
    GenerateParams::default()
        .with_max_tokens(n)
        .with_sampling(SamplingParams::greedy())
}

/// One thread per session: tests run in parallel, and ggml's spinning worker threads slow
/// to a crawl when there are more of them than cores.
fn session(m: &Model) -> Session {
    Session::new(m, SessionParams::default().with_n_ctx(512).with_threads(1)).unwrap()
}

#[test]
fn greedy_is_deterministic_across_sessions_and_runs() {
    for q in QUANTS {
        let m = load(q);
        let (a, stats) = session(&m).complete(PROMPT, &greedy(32)).unwrap();
        let (b, _) = session(&m).complete(PROMPT, &greedy(32)).unwrap();
        assert_eq!(a, b, "{q:?}");
        assert_eq!(stats.generated_tokens, 32);
        assert_eq!(stats.stop_reason, StopReason::MaxTokens);
        assert!(!a.is_empty());
        // A second run in the same session (cache reused) gives the same text too.
        let mut s = session(&m);
        let first = s.complete(PROMPT, &greedy(32)).unwrap();
        let again = s.complete(PROMPT, &greedy(32)).unwrap();
        assert_eq!(first.0, again.0);
        assert!(again.1.cached_tokens > 0);
    }
}

#[test]
fn batched_prompt_equals_token_by_token() {
    let m = load(QuantType::Q8_0);
    let prompt = "Once upon a time there was a small cat who lived in a house with a big dog.";
    let (batched, s1) = session(&m).complete(prompt, &greedy(24)).unwrap();
    let one = SessionParams::default()
        .with_n_ctx(512)
        .with_n_batch(1)
        .with_n_ubatch(1)
        .with_threads(1);
    let (single, s2) = Session::new(&m, one)
        .unwrap()
        .complete(prompt, &greedy(24))
        .unwrap();
    assert_eq!(s1.prompt_tokens, s2.prompt_tokens);
    assert!(s1.prompt_tokens > 16);
    assert_eq!(batched, single);
}

#[test]
fn sampling_with_a_seed_is_reproducible() {
    let m = load(QuantType::Q8_0);
    let p = |seed| {
        GenerateParams::default().with_max_tokens(24).with_sampling(
            SamplingParams::default()
                .with_temperature(1.5)
                .with_seed(seed),
        )
    };
    let a = session(&m).complete(PROMPT, &p(7)).unwrap().0;
    let b = session(&m).complete(PROMPT, &p(7)).unwrap().0;
    let c = session(&m).complete(PROMPT, &p(8)).unwrap().0;
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn follow_up_turn_decodes_only_new_tokens() {
    let m = load(QuantType::Q8_0);
    let mut s = session(&m);
    let mut msgs = vec![
        ChatMessage::system("Be kind."),
        ChatMessage::user("Hello, how are you?"),
    ];
    let mut reply = String::new();
    let first = s
        .chat(&msgs, None, &greedy(12), |t| {
            reply.push_str(t);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(first.cached_tokens, 0);
    msgs.push(ChatMessage::assistant(reply));
    msgs.push(ChatMessage::user("Tell me a story."));
    let second = s
        .chat(&msgs, None, &greedy(12), |_| ControlFlow::Continue(()))
        .unwrap();
    // Everything up to the end of the first prompt was cached, plus the part of the reply
    // that re-tokenises identically.
    assert!(
        second.cached_tokens >= first.prompt_tokens,
        "{second:?} vs {first:?}"
    );
    assert!(second.prompt_tokens > second.cached_tokens);
}

#[test]
fn stop_strings_cut_the_output() {
    let m = load(QuantType::Q8_0);
    let (full, _) = session(&m).complete(PROMPT, &greedy(40)).unwrap();
    // Pick a stop string from the middle of the greedy text.
    let chars: Vec<char> = full.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let (cut, stats) = session(&m)
        .complete(PROMPT, &greedy(40).with_stop(stop.clone()))
        .unwrap();
    assert_eq!(stats.stop_reason, StopReason::StopString(stop.clone()));
    assert!(full.starts_with(&cut), "{cut:?} / {full:?}");
    assert_eq!(cut, full[..full.find(&stop).unwrap()]);
    assert!(!cut.contains(&stop));
}

#[test]
fn callback_break_and_cancel_handle_stop_generation() {
    let m = load(QuantType::Q8_0);
    let mut s = session(&m);
    let mut n = 0;
    let stats = s
        .generate(PROMPT, &greedy(100), |_| {
            n += 1;
            if n == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(stats.stop_reason, StopReason::Cancelled);
    assert!(stats.generated_tokens < 100);

    let handle = s.cancel_handle();
    let stats = s
        .generate(PROMPT, &greedy(100), |_| {
            handle.cancel();
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(stats.stop_reason, StopReason::Cancelled);
    assert!(stats.generated_tokens < 5);
    // The flag is reset for the next call.
    let stats = s
        .generate(PROMPT, &greedy(4), |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(stats.stop_reason, StopReason::MaxTokens);
}

#[test]
fn context_limits() {
    let m = load(QuantType::Q8_0);
    // llama.cpp rounds tiny contexts up (to 256 here); the session reports the real size.
    let mut s = Session::new(&m, SessionParams::default().with_n_ctx(32).with_threads(1)).unwrap();
    let n_ctx = s.n_ctx();
    assert!(n_ctx >= 32);
    let long = "word ".repeat(n_ctx as usize + 10);
    match s.complete(&long, &greedy(4)) {
        Err(Error::Decode(DecodeError::ContextFull { n_ctx: n, needed })) => {
            assert_eq!(n, n_ctx);
            assert!(needed > n_ctx as usize);
        }
        other => panic!("expected ContextFull, got {other:?}"),
    }
    // Generation that reaches the end of the context stops cleanly.
    let stats = s
        .generate("Hello", &greedy(100_000), |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(stats.stop_reason, StopReason::ContextFull);
    assert_eq!(s.cached_tokens().len(), n_ctx as usize);
    assert!(matches!(
        s.complete("", &greedy(4)).map(|_| ()),
        Err(Error::Decode(DecodeError::EmptyPrompt)) | Ok(())
    ));
}

#[test]
fn grammar_constrains_output_and_ends_generation() {
    let m = load(QuantType::Q8_0);
    let grammar = r#"root ::= "Score: " [1-9] "/10""#;
    for seed in 0..3 {
        let params = GenerateParams::default().with_max_tokens(40).with_sampling(
            SamplingParams::default()
                .with_seed(seed)
                .with_grammar(grammar),
        );
        let (text, stats) = session(&m).complete(PROMPT, &params).unwrap();
        assert_eq!(stats.stop_reason, StopReason::EndOfGeneration, "{text:?}");
        let digit = text
            .strip_prefix("Score: ")
            .and_then(|t| t.strip_suffix("/10"));
        assert!(
            matches!(digit, Some(d) if d.len() == 1 && d.chars().all(|c| c.is_ascii_digit())),
            "{text:?}"
        );
    }
    let bad = GenerateParams::default()
        .with_sampling(SamplingParams::default().with_grammar("root ::= ("));
    match session(&m).complete(PROMPT, &bad) {
        Err(Error::Sampler(e)) => assert!(e.to_string().contains("grammar"), "{e}"),
        other => panic!("bad grammar accepted: {other:?}"),
    }
}

#[test]
fn invalid_parameters_are_errors() {
    let m = load(QuantType::Q8_0);
    assert!(Session::new(&m, SessionParams::default().with_n_batch(0)).is_err());
    assert!(
        Session::new(
            &m,
            SessionParams::default().with_n_batch(8).with_n_ubatch(16)
        )
        .is_err()
    );
    let mut s = session(&m);
    let mut p = greedy(4);
    p.sampling.top_p = 2.0;
    assert!(matches!(s.complete(PROMPT, &p), Err(Error::Sampler(_))));
}

#[test]
fn two_sessions_on_one_model_in_two_threads() {
    let m = load(QuantType::Q8_0);
    let expected = session(&m).complete(PROMPT, &greedy(16)).unwrap().0;
    let results = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let m = m.clone();
            let results = results.clone();
            std::thread::spawn(move || {
                let mut s =
                    Session::new(&m, SessionParams::default().with_n_ctx(256).with_threads(1))
                        .unwrap();
                let text = s.complete(PROMPT, &greedy(16)).unwrap().0;
                results.lock().unwrap().push(text);
            })
        })
        .collect();
    drop(m);
    for t in threads {
        t.join().unwrap();
    }
    let results = results.lock().unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| *r == expected));
}

#[test]
fn session_moves_to_another_thread_and_outlives_its_model_handle() {
    let m = load(QuantType::Q8_0);
    let mut s = session(&m);
    drop(m);
    let text = std::thread::spawn(move || s.complete(PROMPT, &greedy(8)).unwrap().0)
        .join()
        .unwrap();
    assert!(!text.is_empty());
}

#[test]
fn penalties_change_greedy_choices_and_respect_the_window() {
    let m = load(QuantType::Q8_0);
    let plain = session(&m).complete(PROMPT, &greedy(48)).unwrap().0;
    let with = |repeat: f32, freq: f32, last_n: i32| {
        let mut p = greedy(48);
        p.sampling.repeat_penalty = repeat;
        p.sampling.frequency_penalty = freq;
        p.sampling.penalty_last_n = last_n;
        session(&m).complete(PROMPT, &p).unwrap().0
    };
    assert_ne!(with(1.5, 0.0, 64), plain);
    assert_ne!(with(1.0, 2.0, 64), plain);
    // A window of 0 disables the penalties entirely.
    assert_eq!(with(1.5, 2.0, 0), plain);
}
