//! Aggregate generation throughput of `BatchEngine` with 1, 2, 4 and 8 slots on the same
//! requests (no HTTP): how far continuous batching scales on this machine.
//!
//! `cargo run --release --example batch_scaling -- [MODEL|small] [REQUESTS] [TOKENS]`

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
    for slots in [1u32, 2, 4, 8] {
        let mut e = BatchEngine::new(
            &model,
            slots,
            SessionParams::default()
                .with_n_ctx(slots * 256)
                .with_n_batch(n_batch),
        )
        .expect("engine");
        let t = Instant::now();
        let mut queue: VecDeque<usize> = (0..requests).collect();
        let mut generated = 0;
        let mut steps = 0;
        while !queue.is_empty() || e.is_busy() {
            while let Some(&r) = queue.front() {
                let Some(slot) = e.free_slot(&prompts[r], None, true) else {
                    break;
                };
                queue.pop_front();
                e.start(slot, &prompts[r], &gp, None, true).expect("start");
            }
            for (_, ev) in e.step() {
                if let SlotEvent::Finished(st) = ev {
                    generated += st.generated_tokens;
                }
            }
            steps += 1;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{slots} slots: {generated} tokens in {secs:.1} s = {:.2} t/s ({steps} steps)",
            generated as f64 / secs
        );
    }
}
