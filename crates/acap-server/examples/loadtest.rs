//! A bounded load test of `acap-server` on loopback: a fixed number of chat requests from 1, 4
//! and 8 concurrent clients, all uncapped, all capped and mixed (half and half), modes
//! interleaved per repetition; reports aggregate generated tokens per second and p50/p99
//! latency as a markdown table.
//!
//! ```text
//! cargo build --release -p acap-server --examples
//! ./target/release/examples/loadtest [-m MODEL|small:q8_0] [--requests 8] [--tokens 32] [--reps 2]
//!     [--clients 1,4,8] [--modes uncapped,capped,mixed] [-t THREADS]
//! ```
//! It starts `acap-server` (from the same target directory) with `-np 8`, capping 7 blocks at
//! the relative depth of 22..28 of 32 with thresholds every row exceeds (the most work).

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, arg, http};

fn post(port: u16, body: &str) -> (Value, Duration) {
    let t = Instant::now();
    let (_, reply) = http(port, "POST", "/v1/chat/completions", body).expect("request");
    (
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply}")),
        t.elapsed(),
    )
}

/// Percentile with linear interpolation (the median of two values is their mean).
fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = (p / 100.0) * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model_arg = arg(&args, "-m", "small:q8_0");
    let requests: usize = arg(&args, "--requests", "8").parse().expect("--requests");
    let tokens: usize = arg(&args, "--tokens", "32").parse().expect("--tokens");
    let reps: usize = arg(&args, "--reps", "2").parse().expect("--reps");
    let threads = arg(&args, "-t", "0");
    let client_counts: Vec<usize> = arg(&args, "--clients", "1,4,8")
        .split(',')
        .map(|c| c.parse().expect("--clients"))
        .collect();
    let wanted = arg(&args, "--modes", "uncapped,capped,mixed");
    let model = support::model(&model_arg);
    let info = acap::ModelInfo::read(&model).expect("model header");
    let blocks = acap_frontend::capped_blocks(info.n_layer, None);
    let dir = std::env::temp_dir().join(format!("acap-loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let axis = dir.join("axis.gguf");
    support::write_axis(&axis, blocks.clone(), info.n_embd as usize, -1e30);
    let ctx = (8 * (tokens + 128)).to_string();
    let server = Server::start(
        &model,
        &[
            "-np",
            "8",
            "-t",
            &threads,
            "-c",
            &ctx,
            "--acap",
            axis.to_str().expect("path"),
        ],
    );
    let port = server.port;
    let body = |i: usize, capped: bool| {
        json!({"messages": [{"role": "user", "content": format!("Request {i}: tell me something about the number {i}.")}],
               "max_tokens": tokens, "temperature": 0, "acap": {"enabled": capped}})
        .to_string()
    };
    // Warm-up.
    post(port, &body(999, true));
    let modes = ["uncapped", "capped", "mixed"];
    let active: Vec<usize> = (0..3)
        .filter(|&m| wanted.split(',').any(|w| w == modes[m]))
        .collect();
    let mut results: Vec<(usize, &str, Vec<f64>, Vec<f64>)> = Vec::new();
    for &clients in &client_counts {
        let mut per_mode: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); 3];
        for rep in 0..reps {
            for k in 0..active.len() {
                let m = active[(rep + k) % active.len()];
                let t = Instant::now();
                let mut lat = Vec::new();
                let mut generated = 0u64;
                let next = std::sync::atomic::AtomicUsize::new(0);
                let out: Vec<(u64, f64)> = std::thread::scope(|s| {
                    let hs: Vec<_> = (0..clients)
                        .map(|_| {
                            let next = &next;
                            s.spawn(move || {
                                let mut mine = Vec::new();
                                loop {
                                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                    if i >= requests {
                                        break mine;
                                    }
                                    let capped = match m {
                                        0 => false,
                                        1 => true,
                                        _ => i % 2 == 0,
                                    };
                                    let (v, d) = post(port, &body(i, capped));
                                    let n = v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
                                    mine.push((n, d.as_secs_f64()));
                                }
                            })
                        })
                        .collect();
                    hs.into_iter()
                        .flat_map(|h| h.join().expect("client"))
                        .collect()
                });
                for (n, d) in out {
                    generated += n;
                    lat.push(d);
                }
                let tps = generated as f64 / t.elapsed().as_secs_f64();
                per_mode[m].0.push(tps);
                per_mode[m].1.extend(lat);
                eprintln!("loadtest: {clients} clients, {}: {tps:.1} t/s", modes[m]);
            }
        }
        for (m, (tps, lat)) in per_mode.into_iter().enumerate() {
            if !tps.is_empty() {
                results.push((clients, modes[m], tps, lat));
            }
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "acap-server load test: {}, {requests} requests x {tokens} tokens, -np 8, {reps} repetitions interleaved, capped blocks {}..={}\n",
        info.name.unwrap_or_default(),
        blocks.start(),
        blocks.end()
    );
    println!(
        "| clients | mode | aggregate t/s, median (runs) | p50 latency s | p99 latency s |\n|---:|---|---:|---:|---:|"
    );
    for (clients, mode, mut tps, mut lat) in results {
        let runs: Vec<String> = tps.iter().map(|t| format!("{t:.1}")).collect();
        println!(
            "| {clients} | {mode} | {:.2} ({}) | {:.2} | {:.2} |",
            percentile(&mut tps, 50.0),
            runs.join(", "),
            percentile(&mut lat, 50.0),
            percentile(&mut lat, 99.0)
        );
    }
}
