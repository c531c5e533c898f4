//! Aggregate generation throughput of `BatchEngine` with 1, 2, 4 and 8 slots on the same
//! requests (no HTTP): how far continuous batching scales on this machine, and what
//! deterministic mode costs. Each slot count runs plain and deterministic alternately,
//! `ROUNDS` times, so both see the same machine noise; the ratio is of the medians.
//!
//! `cargo run --release --example batch_scaling -- [MODEL|small] [REQUESTS] [TOKENS] [N_BATCH] [ROUNDS]`

use std::collections::VecDeque;
use std::time::Instant;

use acap::{
    BatchEngine, GenerateParams, QuantType, SamplingParams, SessionParams, SlotEvent, Special,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model_arg = args.get(1).cloned().unwrap_or_else(|| "small".into());
    let requests: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    let tokens: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(32);
    let path = if std::path::Path::new(&model_arg).is_file() {
        model_arg.into()
    } else {
        let spec = acap_testkit::ModelSpec::by_name(&model_arg).expect("model file or preset");
        acap_testkit::model_path(&spec, Some(QuantType::Q8_0)).expect("model")
    };
    let model = acap::Model::load(&path, acap::ModelParams::default()).expect("model loads");
    let gp = GenerateParams::default()
        .with_max_tokens(tokens)
        .with_sampling(SamplingParams::greedy());
    let prompts: Vec<Vec<i32>> = (0..requests)
        .map(|i| {
            model
                .tokenize(
                    &format!("Request {i}: tell me about the number {i}."),
                    Special::PROMPT,
                )
                .expect("tokenize")
        })
        .collect();
    let n_batch: u32 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(512);
    let rounds: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(3);
    for slots in [1u32, 2, 4, 8] {
        let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (mode, rate) in rates.iter_mut().enumerate() {
                let params = SessionParams::default()
                    .with_n_ctx(slots * 256)
                    .with_n_batch(n_batch)
                    .with_deterministic(mode == 1);
                let mut e = BatchEngine::new(&model, slots, params).expect("engine");
                rate.push(run(&mut e, &prompts, &gp));
            }
        }
        let [plain, det] = rates.map(median);
        println!(
            "{slots} slots: plain {plain:.2} t/s, deterministic {det:.2} t/s \
             (deterministic/plain {:.2}, medians of {rounds})",
            det / plain
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs every prompt through `e`, filling slots as they free up: generated tokens per second.
fn run(e: &mut BatchEngine, prompts: &[Vec<i32>], gp: &GenerateParams) -> f64 {
    let t = Instant::now();
    let mut queue: VecDeque<usize> = (0..prompts.len()).collect();
    let mut generated = 0;
    while !queue.is_empty() || e.is_busy() {
        while let Some(&r) = queue.front() {
            let Some(slot) = e.free_slot(&prompts[r], None, true) else {
                break;
            };
            queue.pop_front();
            e.start(slot, &prompts[r], gp, None, true).expect("start");
        }
        for (_, ev) in e.step() {
            if let SlotEvent::Finished(st) = ev {
                generated += st.generated_tokens;
            }
        }
    }
    generated as f64 / t.elapsed().as_secs_f64()
}
