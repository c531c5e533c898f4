//! Continuous batching: requests sharing one context get exactly the text they get alone, each
//! row capped by its own request's settings.

use std::collections::{HashMap, VecDeque};

use acap::{
    AxisFile, AxisSet, AxisWriter, BatchEngine, CapConfig, CapPath, GenerateParams, LayerStats,
    Model, QuantType, SamplingParams, SessionParams, SlotEvent, Special, StopReason,
};

use crate::common::load;

struct Req {
    prompt: Vec<i32>,
    capped: bool,
}

fn engine(m: &Model, slots: u32) -> BatchEngine {
    engine_on(m, slots, None)
}

/// An engine whose cap runs on `path` (`None`: as `ACAP_CAP_PATH` says).
fn engine_on(m: &Model, slots: u32, path: Option<CapPath>) -> BatchEngine {
    let mut p = SessionParams::default()
        .with_n_ctx(512 * slots)
        .with_n_batch(512)
        .with_threads(1);
    p.cap_path = path;
    BatchEngine::new(m, slots, p).unwrap()
}

/// Random axes at blocks 1..=7, all with threshold `tau`.
fn plan_at(m: &Model, tau: f32) -> acap::CapPlan {
    let mut w = AxisWriter::new();
    for l in 1..=7u32 {
        w = w
            .with_direction(l, acap_testkit::random_vector(u64::from(l) + 40, 256))
            .with_threshold(l, tau);
    }
    let axes = AxisSet::new(vec![AxisFile::from_bytes(w.to_bytes().unwrap()).unwrap()]).unwrap();
    CapConfig::new(axes).plan(m).unwrap()
}

/// One request's outcome: its text, statistics and capping telemetry.
type Outcome = (String, acap::GenerationStats, Vec<(u32, LayerStats)>);

/// Runs `reqs` through `e`, filling free slots as they open; returns each request's text,
/// stats and capping telemetry.
fn run_all(e: &mut BatchEngine, reqs: &[Req], gp: &GenerateParams) -> Vec<Outcome> {
    run_all_at(e, reqs, gp, -1e6)
}

/// [`run_all`] with capped requests capped at threshold `tau`.
fn run_all_at(e: &mut BatchEngine, reqs: &[Req], gp: &GenerateParams, tau: f32) -> Vec<Outcome> {
    let m = e.model().clone();
    let mut queue: VecDeque<usize> = (0..reqs.len()).collect();
    let mut owner: HashMap<usize, usize> = HashMap::new();
    let mut text = vec![String::new(); reqs.len()];
    let mut done: Vec<Option<_>> = vec![None; reqs.len()];
    let mut steps = 0;
    while !queue.is_empty() || e.is_busy() {
        while let Some(&r) = queue.front() {
            let p = reqs[r].capped.then(|| plan_at(&m, tau));
            let Some(slot) = e.free_slot(&reqs[r].prompt, p.as_ref(), true) else {
                break;
            };
            queue.pop_front();
            e.start(slot, &reqs[r].prompt, gp, p, true).unwrap();
            owner.insert(slot, r);
        }
        for (slot, ev) in e.step() {
            let r = owner[&slot];
            match ev {
                SlotEvent::Text(t) => text[r].push_str(&t),
                SlotEvent::Finished(st) => done[r] = Some((st, e.slot_cap_stats(slot))),
                SlotEvent::Failed(msg) => panic!("request {r} failed: {msg}"),
            }
        }
        steps += 1;
        assert!(steps < 10_000, "no progress");
    }
    text.into_iter()
        .zip(done)
        .map(|(t, d)| {
            let (st, cap) = d.expect("finished");
            (t, st, cap)
        })
        .collect()
}

#[test]
fn batched_requests_match_their_solo_runs_with_per_request_capping() {
    let m = load(QuantType::Q8_0);
    let prompts = [
        "Tell me a story about a cat.",
        "What is the capital of France?",
        "Write a poem about the sea and the sky.",
        "How do I bake bread?",
        "Explain gravity to a child, please.",
        "List three colours.",
        "Why do birds sing in the morning?",
        "Hello!",
    ];
    let reqs: Vec<Req> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| Req {
            prompt: m.tokenize(p, Special::PROMPT).unwrap(),
            capped: i % 2 == 0,
        })
        .collect();
    let gp = GenerateParams::default()
        .with_max_tokens(12)
        .with_sampling(SamplingParams::greedy());
    let solo: Vec<String> = reqs
        .iter()
        .map(|r| {
            let one = [Req {
                prompt: r.prompt.clone(),
                capped: r.capped,
            }];
            run_all(&mut engine(&m, 1), &one, &gp).remove(0).0
        })
        .collect();
    let mut e = engine(&m, 4);
    let together = run_all(&mut e, &reqs, &gp);
    for (i, (text, st, cap)) in together.iter().enumerate() {
        assert_eq!(
            text, &solo[i],
            "request {i} (capped {}) differs in a batch",
            reqs[i].capped
        );
        assert_eq!(st.stop_reason, StopReason::MaxTokens);
        assert_eq!(st.generated_tokens, 12);
        if reqs[i].capped {
            assert_eq!(cap.len(), 7);
            assert!(
                cap.iter()
                    .all(|(_, s)| s.rows_capped > 0 && s.rows_capped == s.rows_seen)
            );
        } else {
            assert!(cap.is_empty(), "uncapped request {i} has telemetry {cap:?}");
        }
    }
    // Capping changed the capped texts (against the same prompts uncapped).
    let uncapped: Vec<Req> = reqs
        .iter()
        .map(|r| Req {
            prompt: r.prompt.clone(),
            capped: false,
        })
        .collect();
    let plain = run_all(&mut engine(&m, 4), &uncapped, &gp);
    assert_ne!(plain[0].0, together[0].0);
    assert_eq!(plain[1].0, together[1].0);
    // A follow-up with the same prompt reuses the slot's cache.
    let again = run_all(&mut e, &reqs[..1], &gp);
    assert!(again[0].1.cached_tokens > 0);
    assert_eq!(again[0].0, solo[0]);
    // The same prompt uncapped in a one-slot engine whose cache was computed capped: nothing
    // is reused, and the text is the uncapped one.
    let mut one = engine(&m, 1);
    let capped_first = run_all(&mut one, &reqs[..1], &gp);
    let flipped = [Req {
        prompt: reqs[0].prompt.clone(),
        capped: false,
    }];
    let after = run_all(&mut one, &flipped, &gp);
    assert_eq!(after[0].1.cached_tokens, 0);
    assert_eq!(after[0].0, plain[0].0);
    assert_ne!(capped_first[0].0, after[0].0);
}

#[test]
fn engine_errors_cancel_and_limits() {
    let m = load(QuantType::Q8_0);
    let mut e = engine(&m, 2);
    let gp = GenerateParams::default()
        .with_max_tokens(50)
        .with_sampling(SamplingParams::greedy());
    let p = m.tokenize("Tell me a story.", Special::PROMPT).unwrap();
    // Too long for a slot's share of the context.
    let long = vec![p[1]; e.n_ctx_per_slot() + 1];
    assert!(matches!(
        e.start(0, &long, &gp, None, true),
        Err(acap::Error::Decode(acap::DecodeError::ContextFull { .. }))
    ));
    assert!(e.start(0, &[], &gp, None, true).is_err());
    e.start(0, &p, &gp, None, true).unwrap();
    assert!(e.start(0, &p, &gp, None, true).is_err(), "slot 0 is busy");
    e.step();
    e.cancel(0);
    let events = e.step();
    assert!(
        events.iter().any(|(s, ev)| *s == 0
            && matches!(ev, SlotEvent::Finished(st) if st.stop_reason == StopReason::Cancelled)),
        "{events:?}"
    );
    assert!(!e.is_busy());
    assert_eq!(
        e.free_slot(&p, None, true),
        Some(0),
        "the slot with the cached prefix is preferred"
    );
}

#[test]
fn graph_path_batches_like_the_host_loop() {
    let m = load(QuantType::Q8_0);
    let reqs: Vec<Req> = [
        "Tell me a story about a cat.",
        "What is the capital of France?",
        "Write a poem about the sea and the sky.",
        "How do I bake bread?",
        "Hello!",
        "Why do birds sing in the morning?",
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| Req {
        prompt: m.tokenize(p, Special::PROMPT).unwrap(),
        capped: i % 3 != 1,
    })
    .collect();
    let gp = GenerateParams::default()
        .with_max_tokens(10)
        .with_sampling(SamplingParams::greedy());
    // Threshold 0 caps some rows of each request and not others, so the routing of every row
    // to its own request's plan matters.
    let host = run_all_at(&mut engine_on(&m, 4, Some(CapPath::Host)), &reqs, &gp, 0.0);
    let graph = run_all_at(&mut engine_on(&m, 4, Some(CapPath::Graph)), &reqs, &gp, 0.0);
    for (i, (h, g)) in host.iter().zip(&graph).enumerate() {
        assert_eq!(g.0, h.0, "request {i}");
        assert_eq!(g.2.len(), h.2.len(), "request {i}");
        for ((lh, sh), (lg, sg)) in h.2.iter().zip(&g.2) {
            assert_eq!(lh, lg);
            assert_eq!(
                (sg.rows_seen, sg.rows_capped),
                (sh.rows_seen, sh.rows_capped),
                "request {i} block {lh}"
            );
            assert!((sg.sum_excess - sh.sum_excess).abs() <= 1e-4 * sh.sum_excess.max(1.0));
        }
        if reqs[i].capped {
            assert!(
                h.2.iter()
                    .any(|(_, s)| s.rows_capped > 0 && s.rows_capped < s.rows_seen)
            );
        } else {
            assert!(h.2.is_empty());
        }
    }
}
