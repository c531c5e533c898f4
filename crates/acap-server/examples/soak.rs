//! Soak test of `acap-server` (not in CI): thousands of mixed requests against one
//! deterministic `-np 4` server, from several clients at once. Greedy probes (capped and
//! uncapped, `/completion` and `/v1/chat/completions`, plain and streamed) are compared with
//! the reply each gets alone from a fresh server; sampled requests, clients that hang up
//! mid-stream, malformed requests and read-only endpoints run beside them.
//!
//! ```text
//! scripts/soak.sh [-m MODEL|tiny] [--requests 10000] [--clients 8] [--np 4] [--seed 1] [-t 2]
//!     [--plain]
//! ```
//! `--plain` runs the server without `--deterministic`, to measure how far replies move
//! there (differing probes are then reported, not failed).
//! Reports status counts per kind of request, the server's RSS before and after (and its
//! peak), and the probes whose reply differed from their solo reply. Exits 1 when a probe
//! differed, a request got a status it should not (a 5xx other than 503, a 2xx for a
//! malformed request, a 4xx for a valid one), a connection failed where it should not, or
//! the server died.

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use acap_testkit::Rng;
use serde_json::{Value, json};
use support::{Server, arg, http};

/// What a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Probe,
    StreamedProbe,
    Sampled,
    HangUp,
    Malformed,
    ReadOnly,
}

/// Greedy requests whose replies must match their solo replies.
fn probes(n_predict: usize) -> Vec<(&'static str, Value)> {
    let prompts = [
        "The lighthouse keeper climbed the stairs every night",
        "The lighthouse keeper climbed the stairs every night to watch the sea",
        "Tell me a story about a cat who",
        "What is the capital of France? The capital",
        "Write a poem about the sea and the sky",
        "Hello!",
    ];
    let mut out = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        for capped in [false, true] {
            out.push((
                "/completion",
                json!({"prompt": p, "n_predict": n_predict, "temperature": 0,
                       "acap": {"enabled": capped}}),
            ));
            if i % 2 == 0 {
                out.push((
                    "/v1/chat/completions",
                    json!({"messages": [{"role": "user", "content": p}],
                           "max_tokens": n_predict, "temperature": 0,
                           "acap": {"enabled": capped}}),
                ));
            }
        }
    }
    out
}

/// Requests that must be refused with a 4xx.
const MALFORMED: &[(&str, &str, &str)] = &[
    ("POST", "/completion", "{\"prompt\": "),
    ("POST", "/completion", "{\"prompt\": 5}"),
    (
        "POST",
        "/completion",
        "{\"prompt\": \"x\", \"n_predict\": \"many\"}",
    ),
    (
        "POST",
        "/completion",
        "{\"prompt\": \"x\", \"temperature\": -1e999}",
    ),
    (
        "POST",
        "/completion",
        "{\"prompt\": \"x\", \"acap\": {\"enabled\": \"yes\"}}",
    ),
    ("POST", "/completion", "[1, 2, 3]"),
    ("POST", "/v1/chat/completions", "{\"messages\": \"hi\"}"),
    (
        "POST",
        "/v1/chat/completions",
        "{\"messages\": [{\"role\": 7}]}",
    ),
    ("POST", "/v1/chat/completions", "not json at all"),
    ("POST", "/tokenize", "{\"content\": [1, 2]}"),
    ("GET", "/no/such/endpoint", ""),
];

/// The generated text of a reply (plain or streamed, either endpoint).
fn content(path: &str, body: &str) -> Option<String> {
    let pick = |v: &Value| -> Option<String> {
        if path == "/completion" {
            v["content"].as_str().map(str::to_owned)
        } else {
            let c = &v["choices"][0];
            c["message"]["content"]
                .as_str()
                .or_else(|| c["delta"]["content"].as_str())
                .map(str::to_owned)
        }
    };
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        return pick(&v);
    }
    let mut text = String::new();
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if let Ok(v) = serde_json::from_str::<Value>(data) {
            text += &pick(&v).unwrap_or_default();
        }
    }
    Some(text)
}

/// Sends a streamed request and hangs up after the first bytes of the reply.
fn hang_up(port: u16, path: &str, mut body: Value) -> Result<(), String> {
    use std::io::{Read, Write};
    body["stream"] = json!(true);
    let body = body.to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("closed before replying".into());
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    /// (kind, status or 0 for a connection failure) -> count.
    statuses: BTreeMap<(Kind, u16), u64>,
    /// Probes whose reply differed from their solo reply: (probe, got).
    mismatches: Vec<(usize, String)>,
    /// Requests whose status or connection was wrong, with why.
    wrong: Vec<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = support::model(&arg(&args, "-m", "tiny"));
    let requests: usize = arg(&args, "--requests", "10000")
        .parse()
        .expect("--requests");
    let clients: usize = arg(&args, "--clients", "8").parse().expect("--clients");
    let np = arg(&args, "--np", "4");
    let seed: u64 = arg(&args, "--seed", "1").parse().expect("--seed");
    let threads = arg(&args, "-t", "2");
    let n_predict = 12;
    let deterministic = !args.iter().any(|a| a == "--plain");
    let info = acap::ModelInfo::read(&model).expect("model header");
    let dir = std::env::temp_dir().join(format!("acap-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let axis = dir.join("axis.gguf");
    let blocks = acap_frontend::capped_blocks(info.n_layer, None);
    support::write_axis(&axis, blocks, info.n_embd as usize, 0.0);
    let ctx = (np.parse::<usize>().expect("--np") * 512).to_string();
    let mut flags = vec![
        "-np",
        &np,
        "-c",
        &ctx,
        "-b",
        "32",
        "-t",
        &threads,
        "--acap",
        axis.to_str().expect("path"),
    ];
    if deterministic {
        flags.push("--deterministic");
    }
    let probes = probes(n_predict);

    // Each probe's reply alone on a fresh server.
    let t = Instant::now();
    let alone: Vec<String> = probes
        .iter()
        .map(|(path, body)| {
            let fresh = Server::start(&model, &flags);
            let (status, reply) = http(fresh.port, "POST", path, &body.to_string()).expect("solo");
            assert_eq!(status, 200, "solo probe: {reply}");
            content(path, &reply).expect("solo content")
        })
        .collect();
    eprintln!(
        "soak: {} solo replies from fresh servers in {:.1} s",
        alone.len(),
        t.elapsed().as_secs_f64()
    );

    let server = Server::start(&model, &flags);
    let port = server.port;
    let (warm, _) = http(port, "POST", probes[0].0, &probes[0].1.to_string()).expect("warm-up");
    assert_eq!(warm, 200);
    let rss_before = server.rss_kib();
    let peak = AtomicU64::new(rss_before);
    let done = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(server.rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= requests {
                            break;
                        }
                        if i % 1000 == 0 {
                            eprintln!("soak: {i} requests sent");
                        }
                        let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9) ^ i as u64);
                        let roll = rng.below(100);
                        let (kind, outcome) = one(roll, &mut rng, port, &probes, n_predict);
                        let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
                        match outcome {
                            Outcome::Status(code) => {
                                *t.statuses.entry((kind, code)).or_default() += 1;
                                if !expected(kind, code) {
                                    t.wrong.push(format!("{kind:?} request {i}: status {code}"));
                                }
                            }
                            Outcome::Probe(p, code, got) => {
                                *t.statuses.entry((kind, code)).or_default() += 1;
                                if code != 200 {
                                    t.wrong.push(format!("{kind:?} request {i}: status {code}"));
                                } else if got != alone[p] {
                                    t.mismatches.push((p, got));
                                }
                            }
                            Outcome::Failed(why) => {
                                *t.statuses.entry((kind, 0)).or_default() += 1;
                                t.wrong.push(format!("{kind:?} request {i}: {why}"));
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("client");
        }
        done.store(true, Ordering::Relaxed);
    });
    let secs = t.elapsed().as_secs_f64();
    let health = http(port, "GET", "/health", "").map(|(s, _)| s);
    let rss_after = server.rss_kib();
    let t = tally.into_inner().unwrap_or_else(|e| e.into_inner());
    println!(
        "acap-server soak: {requests} requests from {clients} clients in {secs:.0} s, -np {np}, \
         {}, seed {seed}, model {}",
        if deterministic {
            "--deterministic"
        } else {
            "not deterministic"
        },
        model.display()
    );
    println!("\n| kind | status | count |\n|---|---:|---:|");
    for ((kind, status), n) in &t.statuses {
        let shown = if *status == 0 {
            "no reply".to_owned()
        } else {
            status.to_string()
        };
        println!("| {kind:?} | {shown} | {n} |");
    }
    println!(
        "\nRSS: {} MiB before, {} MiB after, {} MiB peak",
        rss_before / 1024,
        rss_after / 1024,
        peak.load(Ordering::Relaxed) / 1024
    );
    println!("health after: {health:?}");
    let probes_run: u64 = t
        .statuses
        .iter()
        .filter(|((k, _), _)| matches!(k, Kind::Probe | Kind::StreamedProbe))
        .map(|(_, n)| n)
        .sum();
    println!(
        "greedy probes differing from their solo reply: {} of {probes_run}",
        t.mismatches.len()
    );
    for (p, got) in t.mismatches.iter().take(5) {
        println!("  probe {p}: got {got:?}, alone {:?}", alone[*p]);
    }
    println!("wrong statuses or failed connections: {}", t.wrong.len());
    for w in t.wrong.iter().take(10) {
        println!("  {w}");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    if (deterministic && !t.mismatches.is_empty())
        || !t.wrong.is_empty()
        || !matches!(health, Ok(200))
    {
        std::process::exit(1);
    }
}

enum Outcome {
    Status(u16),
    /// A probe: which, its status and its text.
    Probe(usize, u16, String),
    Failed(String),
}

/// Whether `status` is right for a request of `kind`.
fn expected(kind: Kind, status: u16) -> bool {
    match kind {
        Kind::Malformed => (400..500).contains(&status),
        _ => status == 200 || status == 503,
    }
}

/// Sends one request of the kind `roll` (0..100) picks.
fn one(
    roll: usize,
    rng: &mut Rng,
    port: u16,
    probes: &[(&'static str, Value)],
    n_predict: usize,
) -> (Kind, Outcome) {
    let failed = |e: String| Outcome::Failed(e);
    match roll {
        0..40 => {
            let p = rng.below(probes.len());
            let (path, body) = &probes[p];
            let r = http(port, "POST", path, &body.to_string());
            let out = r.map_or_else(failed, |(code, reply)| {
                Outcome::Probe(p, code, content(path, &reply).unwrap_or_default())
            });
            (Kind::Probe, out)
        }
        40..50 => {
            let p = rng.below(probes.len());
            let (path, body) = &probes[p];
            let mut body = body.clone();
            body["stream"] = json!(true);
            let r = http(port, "POST", path, &body.to_string());
            let out = r.map_or_else(failed, |(code, reply)| {
                Outcome::Probe(p, code, content(path, &reply).unwrap_or_default())
            });
            (Kind::StreamedProbe, out)
        }
        50..70 => {
            let words = [
                "sea", "cat", "bread", "sky", "light", "stairs", "boat", "rocks",
            ];
            let prompt: Vec<&str> = (0..1 + rng.below(30)).map(|_| *rng.pick(&words)).collect();
            let body = json!({"prompt": prompt.join(" "), "n_predict": 1 + rng.below(n_predict),
                              "temperature": 0.9, "seed": rng.below(1000),
                              "acap": {"enabled": rng.below(2) == 0}});
            let r = http(port, "POST", "/completion", &body.to_string());
            (
                Kind::Sampled,
                r.map_or_else(failed, |(c, _)| Outcome::Status(c)),
            )
        }
        70..80 => {
            let (path, body) = &probes[rng.below(probes.len())];
            let out =
                hang_up(port, path, body.clone()).map_or_else(failed, |()| Outcome::Status(200));
            (Kind::HangUp, out)
        }
        80..95 => {
            let (method, path, body) = *rng.pick(MALFORMED);
            let r = http(port, method, path, body);
            (
                Kind::Malformed,
                r.map_or_else(failed, |(c, _)| Outcome::Status(c)),
            )
        }
        _ => {
            let path = *rng.pick(&["/health", "/props", "/slots", "/metrics", "/v1/models"]);
            let r = http(port, "GET", path, "");
            (
                Kind::ReadOnly,
                r.map_or_else(failed, |(c, _)| Outcome::Status(c)),
            )
        }
    }
}
