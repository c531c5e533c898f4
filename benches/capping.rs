//! Capping cost, measured side by side in one process.
//!
//! ```text
//! cargo bench --bench capping [-- --quick] [-- --model PATH]
//! ```
//! 1. The row operation at n_embd 4096: time per row.
//! 2. Prompt processing (pp512) and generation (tg128) on the testkit's `small` model (Q8_0 and
//!    Q4_K_M) with capping on 7 blocks versus off, interleaved (A B, B A, ...) after a warm-up;
//!    the capped/uncapped ratio is computed pair by pair and its median reported. Both sessions
//!    have the eval callback installed; the capped one caps most rows (threshold 0.5).

use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use acap::cap::{LayerStats, cap_rows};
use acap::{
    AxisFile, AxisSet, AxisWriter, CapConfig, GenerateParams, LayerRange, Model, ModelParams,
    QuantType, SamplingParams, Session, SessionParams, Special,
};
use acap_testkit::ModelSpec;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_rows() {
    let n_embd = 4096;
    let rows = 512;
    let axis = {
        let v = acap_testkit::random_vector(1, n_embd);
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect::<Vec<_>>()
    };
    let data = acap_testkit::random_vector(2, n_embd * rows);
    let mut per_row = Vec::new();
    for tau in [f32::MAX, -1e6] {
        let mut samples = Vec::new();
        for _ in 0..20 {
            let mut d = data.clone();
            let mut stats = LayerStats::default();
            let t = Instant::now();
            cap_rows(black_box(&mut d), &axis, tau, 1.0, &mut stats);
            samples.push(t.elapsed().as_secs_f64() * 1e9 / rows as f64);
            black_box(&d);
        }
        per_row.push(median(&mut samples));
    }
    println!("## Row operation, n_embd {n_embd}\n");
    println!("| case | ns per row |\n|---|---|");
    println!("| nothing capped (dot only) | {:.0} |", per_row[0]);
    println!("| every row capped (dot + update) | {:.0} |\n", per_row[1]);
}

struct Pair {
    off: f64,
    on: f64,
}

fn throughput(path: &std::path::Path, label: &str, reps: usize, pp: usize, tg: usize) {
    let model = Model::load(path, ModelParams::default()).expect("model loads");
    let n_layer = model.n_layer();
    // 7 blocks at the same relative depth as 22..28 of 32.
    let end = n_layer - 1;
    let start = end - 6;
    let mut w = AxisWriter::new();
    for l in start..=end {
        w = w.with_direction(
            l,
            acap_testkit::random_vector(u64::from(l), model.n_embd() as usize),
        );
    }
    let axes = AxisSet::new(vec![AxisFile::from_bytes(w.to_bytes().unwrap()).unwrap()]).unwrap();
    // A threshold that caps most rows, so the update path is measured too.
    let cap = CapConfig::new(axes)
        .with_threshold(Some(0.5))
        .with_layer_range(LayerRange::new(i64::from(start), i64::from(end)));
    let params = SessionParams::default().with_n_ctx(1024).with_n_batch(512);
    let mut plain = Session::new(&model, params.clone()).unwrap();
    let mut capped = Session::new(&model, params.with_capping(cap)).unwrap();

    let text =
        "Once upon a time there was a small cat who lived in a house with a big dog. ".repeat(64);
    let mut prompt = model.tokenize(&text, Special::PROMPT).unwrap();
    prompt.truncate(pp);
    let generate = GenerateParams::default()
        .with_max_tokens(tg)
        .with_sampling(SamplingParams::greedy());

    let run = |s: &mut Session| -> (f64, f64) {
        s.clear();
        let t = Instant::now();
        s.prefill(&prompt).unwrap();
        let pp_rate = prompt.len() as f64 / t.elapsed().as_secs_f64();
        s.clear();
        let stats = s
            .generate_tokens(&prompt[..8], &generate, |_| ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(stats.generated_tokens, tg);
        (pp_rate, stats.generation_tokens_per_second())
    };
    // Warm-up both.
    run(&mut plain);
    run(&mut capped);
    let (mut pp_pairs, mut tg_pairs) = (Vec::new(), Vec::new());
    for i in 0..reps {
        // A B, then B A: drift in the machine's speed cancels out of the pair ratios.
        let (a, b) = if i % 2 == 0 {
            let a = run(&mut plain);
            (a, run(&mut capped))
        } else {
            let b = run(&mut capped);
            (run(&mut plain), b)
        };
        pp_pairs.push(Pair { off: a.0, on: b.0 });
        tg_pairs.push(Pair { off: a.1, on: b.1 });
    }
    let stats = capped.cap_stats();
    let capped_frac =
        stats.iter().map(|(_, s)| s.capped_fraction()).sum::<f64>() / stats.len() as f64;
    for (name, pairs) in [
        (format!("pp{pp}"), &pp_pairs),
        (format!("tg{tg}"), &tg_pairs),
    ] {
        let mut off: Vec<f64> = pairs.iter().map(|p| p.off).collect();
        let mut on: Vec<f64> = pairs.iter().map(|p| p.on).collect();
        let mut ratio: Vec<f64> = pairs.iter().map(|p| p.on / p.off).collect();
        let (min_r, max_r) = ratio
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &r| (a.min(r), b.max(r)));
        let (m_off, m_on) = (median(&mut off), median(&mut on));
        println!(
            "| {label} | {name} | {m_off:.1} | {m_on:.1} | {:.3} ({:.3}-{:.3}) | {:.3} |",
            median(&mut ratio),
            min_r,
            max_r,
            m_on / m_off
        );
    }
    eprintln!(
        "  ({label}: blocks {start}..={end} capped, {:.0}% of rows pulled back)",
        capped_frac * 100.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let model_arg = args
        .iter()
        .position(|a| a == "--model")
        .and_then(|i| args.get(i + 1).cloned());
    bench_rows();
    let (reps, pp, tg) = if quick { (3, 128, 32) } else { (12, 512, 128) };
    println!("## Throughput, capped (7 blocks) vs uncapped, tokens/s\n");
    println!(
        "| model | test | uncapped | capped | pair ratio median (min-max) | ratio of medians |\n|---|---|---|---|---|---|"
    );
    let started = Instant::now();
    match model_arg {
        Some(p) => throughput(std::path::Path::new(&p), &p, reps, pp, tg),
        None => {
            let spec = if quick {
                ModelSpec::tiny()
            } else {
                ModelSpec::small()
            };
            for q in [QuantType::Q8_0, QuantType::Q4KM] {
                let path = acap_testkit::model_path(&spec, Some(q)).expect("test model");
                throughput(&path, &format!("{} {}", spec.name, q.name()), reps, pp, tg);
            }
        }
    }
    eprintln!(
        "(took {:?})",
        Duration::from_secs(started.elapsed().as_secs())
    );
}
