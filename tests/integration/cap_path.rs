//! The graph path (the cap as a ggml graph on the tensor's own backend, which GPUs use) gives
//! the host loop's results: the same rows within 1e-5, the same telemetry, the same text. On
//! these machines it runs on the CPU backend, chosen with `CapPath::Graph`.

use std::sync::{Arc, Mutex};

use acap::{
    AxisFile, AxisSet, AxisWriter, CapConfig, CapPath, GenerateParams, LayerStats, Model,
    QuantType, SamplingParams, Session, SessionParams, Special,
};

use crate::common::{QUANTS, load};

const PROMPT: &str = "You are a helpful assistant. Tell me a story about a cat and a dog.";

/// Random axes at `layers`, all with threshold `tau` (0 caps about half the rows).
fn config(layers: &[u32], tau: f32) -> CapConfig {
    let mut w = AxisWriter::new();
    for &l in layers {
        w = w
            .with_direction(l, acap_testkit::random_vector(u64::from(l) + 900, 256))
            .with_threshold(l, tau);
    }
    CapConfig::new(
        AxisSet::new(vec![AxisFile::from_bytes(w.to_bytes().unwrap()).unwrap()]).unwrap(),
    )
}

fn params(path: CapPath, cap: CapConfig) -> SessionParams {
    SessionParams::default()
        .with_n_ctx(256)
        .with_threads(1)
        .with_cap_path(path)
        .with_capping(cap)
}

/// Every row of block `layer` after capping during a prefill of the prompt, and the telemetry.
fn capped_rows(
    m: &Model,
    path: CapPath,
    cap: CapConfig,
    layer: u32,
) -> (Vec<Vec<f32>>, LayerStats) {
    let mut s = Session::new(m, params(path, cap)).unwrap();
    assert_eq!(s.cap_path(), path);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    s.set_observer(&[layer], move |o| {
        let mut sink = sink.lock().unwrap();
        for i in 0..o.n_rows() {
            sink.push(o.row(i).to_vec());
        }
    });
    s.prefill(&m.tokenize(PROMPT, Special::PROMPT).unwrap())
        .unwrap();
    let stats = s.cap_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].0, layer);
    drop(s);
    let rows = seen.lock().unwrap().clone();
    (rows, stats[0].1)
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-6)
}

#[test]
fn graph_path_caps_every_row_as_the_host_loop_does() {
    for q in QUANTS {
        let m = load(q);
        let last = m.n_layer() - 1;
        // A middle block (all prompt rows) and the last one (only the output row).
        for layer in [2, last] {
            let cap = config(&[layer], 0.0);
            let (host, hs) = capped_rows(&m, CapPath::Host, cap.clone(), layer);
            let (graph, gs) = capped_rows(&m, CapPath::Graph, cap, layer);
            let tokens = m.tokenize(PROMPT, Special::PROMPT).unwrap().len();
            assert_eq!(host.len(), if layer == last { 1 } else { tokens });
            assert_eq!(graph.len(), host.len(), "{q:?} block {layer}");
            for (i, (h, g)) in host.iter().zip(&graph).enumerate() {
                let diff: Vec<f32> = h.iter().zip(g).map(|(a, b)| a - b).collect();
                let rel = norm(&diff) / norm(h);
                assert!(
                    rel <= 1e-5,
                    "{q:?} block {layer} row {i}: relative difference {rel}"
                );
            }
            assert_eq!(gs.rows_seen, hs.rows_seen, "{q:?} block {layer}");
            assert_eq!(gs.rows_capped, hs.rows_capped, "{q:?} block {layer}");
            if layer == 2 {
                assert!(
                    hs.rows_capped > 0 && hs.rows_capped < hs.rows_seen,
                    "a threshold that caps some rows: {hs:?}"
                );
            }
            assert!(
                close(gs.sum_excess, hs.sum_excess, 1e-4),
                "{gs:?} vs {hs:?}"
            );
            assert!(
                close(f64::from(gs.max_excess), f64::from(hs.max_excess), 1e-4),
                "{gs:?} vs {hs:?}"
            );
        }
    }
}

#[test]
fn graph_path_generates_the_host_loops_text() {
    let m = load(QuantType::Q8_0);
    let layers: Vec<u32> = (1..m.n_layer()).collect();
    let gp = GenerateParams::default()
        .with_max_tokens(24)
        .with_sampling(SamplingParams::greedy());
    let text = |p: SessionParams| {
        Session::new(&m, p)
            .unwrap()
            .complete(PROMPT, &gp)
            .unwrap()
            .0
    };
    let cap = config(&layers, 0.0);
    let host = text(params(CapPath::Host, cap.clone()));
    let graph = text(params(CapPath::Graph, cap.clone()));
    assert_eq!(graph, host);
    let plain = text(SessionParams::default().with_n_ctx(256).with_threads(1));
    assert_ne!(plain, host, "the cap changed the text");
    // Auto on host memory is the host loop.
    assert_eq!(text(params(CapPath::Auto, cap)), host);
}

#[test]
fn graph_path_switches_off_and_back_on() {
    let m = load(QuantType::Q8_0);
    let cap = config(&[1, 3], -1e6);
    let gp = GenerateParams::default()
        .with_max_tokens(8)
        .with_sampling(SamplingParams::greedy());
    let mut s = Session::new(&m, params(CapPath::Graph, cap)).unwrap();
    let capped = s.complete(PROMPT, &gp).unwrap().0;
    s.set_capping_enabled(false);
    s.reset_cap_stats();
    let plain = s.complete(PROMPT, &gp).unwrap().0;
    assert!(s.cap_stats().iter().all(|(_, st)| st.rows_seen == 0));
    s.set_capping_enabled(true);
    assert_eq!(s.complete(PROMPT, &gp).unwrap().0, capped);
    assert_ne!(plain, capped);
}
