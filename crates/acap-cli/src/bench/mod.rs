//! `acap bench`: prompt processing and generation throughput, uncapped versus capped, in the
//! spirit of llama.cpp's `llama-bench`, plus memory, the memory-bandwidth roofline and the
//! capping callback's cost.
//!
//! Every configuration of a model runs in one process, interleaved (A B C, B C A, C A B, ...)
//! after a warm-up, so the machine's drift cancels out of the ratios, which are computed pair
//! by pair.

pub mod machine;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use acap::cap::{LayerStats, cap_rows};
use acap::{
    AxisFile, AxisSet, AxisWriter, CapConfig, CapPath, LayerRange, Model, ModelParams, Session,
    SessionParams, Special,
};
use acap_frontend::{Names, cap_error};
use serde_json::{Value, json};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Markdown tables.
    Md,
    /// One JSON document.
    Json,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Model files, or testkit presets as `NAME:QUANT` (`small:q8_0`).
    pub models: Vec<String>,
    /// Prompt tokens (pp test); 0 skips it.
    pub n_prompt: usize,
    /// Generated tokens (tg test); 0 skips it.
    pub n_gen: usize,
    /// Measured repetitions of each configuration.
    pub reps: usize,
    /// Threads; 0 uses all cores.
    pub threads: u32,
    /// Layers offloaded to the GPU.
    pub n_gpu_layers: i32,
    /// Logical batch.
    pub n_batch: u32,
    /// Physical batch.
    pub n_ubatch: u32,
    /// Capped blocks; `None`: 7 blocks at the relative depth of 22..28 of 32.
    pub layer_range: Option<(i64, i64)>,
    /// The user's own capping (`--acap FILE ...`): the capped configuration then caps with it
    /// (only the rows its thresholds catch) instead of pulling every row back.
    pub capping: Option<CapConfig>,
    /// Turn off llama.cpp's weight repacking.
    pub no_repack: bool,
    /// Bytes of the buffer the bandwidth test reads.
    pub bandwidth_bytes: usize,
    /// Also run the capped configuration on the other cap path: `capped` then runs the host
    /// loop and `graph` the ggml graph on the tensor's backend, side by side.
    pub compare_cap_paths: bool,
}

/// The configurations, in their column order (`graph` only with `compare_cap_paths`).
const CONFIGS: [&str; 4] = ["uncapped", "noop", "capped", "graph"];
/// Index of the graph-path configuration.
const GRAPH: usize = 3;

/// A resolved model argument.
struct ModelArg {
    label: String,
    path: PathBuf,
}

fn resolve_model(arg: &str) -> Result<ModelArg, String> {
    let path = PathBuf::from(arg);
    if path.is_file() {
        return Ok(ModelArg {
            label: path
                .file_name()
                .map_or(arg.to_owned(), |n| n.to_string_lossy().into_owned()),
            path,
        });
    }
    preset(arg)
}

/// A testkit preset (`small:q8_0`), generated and cached on first use.
#[cfg(feature = "builtin-models")]
fn preset(arg: &str) -> Result<ModelArg, String> {
    use acap::QuantType;
    use acap_testkit::ModelSpec;
    let (name, quant) = arg.split_once(':').unwrap_or((arg, "q8_0"));
    let spec = ModelSpec::by_name(name).ok_or_else(|| {
        format!(
            "-m {arg}: no such file, and not a testkit preset (tiny, tiny-qwen2, small, llama8b, \
             optionally with :f16, :q8_0 or :q4_k_m)"
        )
    })?;
    let q = match quant.to_ascii_lowercase().as_str() {
        "f16" => QuantType::F16,
        "q8_0" => QuantType::Q8_0,
        "q4_k_m" => QuantType::Q4KM,
        other => return Err(format!("-m {arg}: unknown quantisation '{other}'")),
    };
    eprintln!(
        "bench: preparing testkit model {name} {} (cached after the first run)",
        q.name()
    );
    let path = acap_testkit::model_path(&spec, Some(q)).map_err(|e| e.to_string())?;
    Ok(ModelArg {
        label: format!("{name} {}", q.name()),
        path,
    })
}

#[cfg(not(feature = "builtin-models"))]
fn preset(arg: &str) -> Result<ModelArg, String> {
    Err(format!(
        "-m {arg}: no such file (this build has no built-in test models: it was built without \
         the builtin-models feature)"
    ))
}

pub use acap_frontend::capped_blocks;

/// Summary of samples.
#[derive(Debug, Clone, Copy)]
struct Summary {
    median: f64,
    min: f64,
    max: f64,
}

fn summary(v: &[f64]) -> Summary {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Summary {
        median,
        min: s.first().copied().unwrap_or(f64::NAN),
        max: s.last().copied().unwrap_or(f64::NAN),
    }
}

fn summary_json(s: Summary) -> Value {
    json!({"median": s.median, "min": s.min, "max": s.max})
}

/// One test (pp or tg) of one model: tokens per second per configuration and repetition.
struct TestResult {
    name: String,
    /// One list per configuration that ran.
    rates: Vec<Vec<f64>>,
}

impl TestResult {
    /// Configuration `config` against the uncapped one, pair by pair.
    fn ratio(&self, config: usize) -> Summary {
        self.ratio_to(config, 0)
    }

    /// Configuration `config` against configuration `base`, pair by pair.
    fn ratio_to(&self, config: usize, base: usize) -> Summary {
        let pairs: Vec<f64> = self.rates[config]
            .iter()
            .zip(&self.rates[base])
            .map(|(c, u)| c / u)
            .collect();
        summary(&pairs)
    }

    /// Whether the graph-path configuration ran.
    fn has_graph(&self) -> bool {
        self.rates.len() > GRAPH
    }
}

struct ModelResult {
    label: String,
    path: PathBuf,
    size_bytes: u64,
    n_params: u64,
    file_size: u64,
    load_s: f64,
    rss_after_load: machine::Rss,
    anon_growth: u64,
    mapped_file: bool,
    peak_rss: u64,
    blocks: Vec<u32>,
    capped_fraction: f64,
    rows_seen: u64,
    tests: Vec<TestResult>,
    weights_per_token: u64,
    row_ns: (f64, f64),
    /// ns per row inside the callback: (noop, capped).
    callback_ns_per_row: (f64, f64),
}

/// Bytes of weights a batch-1 decode step reads: every tensor except the token embedding,
/// of which one row is read.
fn weights_read_per_token(path: &std::path::Path) -> Result<u64, String> {
    let f = acap::gguf::GgufFile::open(path).map_err(|e| e.to_string())?;
    Ok(f.tensors()
        .iter()
        .map(|t| {
            if t.name() == "token_embd.weight" {
                t.n_bytes() / t.dims().get(1).copied().unwrap_or(1).max(1)
            } else {
                t.n_bytes()
            }
        })
        .sum())
}

/// ns per row of the cap operation alone at `n_embd`: (dot only, dot + update).
fn row_op_ns(n_embd: usize) -> (f64, f64) {
    let rows = 256;
    let axis = {
        let v = pseudo_random(1, n_embd);
        let norm = acap::cap::dot(&v, &v).sqrt();
        v.into_iter().map(|x| x / norm).collect::<Vec<f32>>()
    };
    let data = pseudo_random(2, n_embd * rows);
    let mut out = [0.0; 2];
    for (i, tau) in [f32::MAX, -1e30].into_iter().enumerate() {
        let mut samples = Vec::new();
        let mut d = data.clone();
        for _ in 0..30 {
            d.copy_from_slice(&data);
            let mut stats = LayerStats::default();
            let t = Instant::now();
            cap_rows(black_box(&mut d), &axis, tau, 1.0, &mut stats);
            samples.push(t.elapsed().as_secs_f64() * 1e9 / rows as f64);
            black_box(&d);
        }
        out[i] = summary(&samples).median;
    }
    (out[0], out[1])
}

fn bench_model(opts: &BenchOptions, m: &ModelArg) -> Result<ModelResult, String> {
    machine::reset_peak();
    let before_load = machine::rss();
    let t = Instant::now();
    let model = Model::load(
        &m.path,
        ModelParams::default()
            .with_n_gpu_layers(opts.n_gpu_layers)
            .with_repack(!opts.no_repack),
    )
    .map_err(|e| e.to_string())?;
    let load_s = t.elapsed().as_secs_f64();
    let rss_after_load = machine::rss();
    let anon_growth = rss_after_load.anon.saturating_sub(before_load.anon);
    let mapped_file = machine::is_mapped(&m.path);
    let n_layer = model.n_layer();
    let n_embd = model.n_embd() as usize;
    let blocks = match &opts.capping {
        // The blocks the user's axis caps on this model.
        Some(cfg) => {
            let plan = cfg
                .plan(&model)
                .map_err(|e| format!("{}: {}", m.label, cap_error(&e, Names::FLAGS)))?;
            let layers: Vec<u32> = plan.capped_layers().map(|(l, _)| l).collect();
            layers[0]..=layers[layers.len() - 1]
        }
        None => capped_blocks(n_layer, opts.layer_range),
    };
    if blocks.is_empty() {
        return Err(format!(
            "--acap-layer-range selects no block of {} ({n_layer} blocks)",
            m.label
        ));
    }
    let range = LayerRange::new(i64::from(*blocks.start()), i64::from(*blocks.end()));
    // Raw per-layer thresholds: +huge caps nothing (but every projection is computed), -huge
    // caps every row (the most work the cap can do).
    let cap_with = |tau: f32| -> Result<CapConfig, String> {
        let mut w = AxisWriter::new();
        for l in blocks.clone() {
            w = w
                .with_direction(l, pseudo_random(u64::from(l), n_embd))
                .with_threshold(l, tau);
        }
        let bytes = w.to_bytes().map_err(|e| e.to_string())?;
        let file = AxisFile::from_bytes(bytes).map_err(|e| e.to_string())?;
        let axes = AxisSet::new(vec![file]).map_err(|e| e.to_string())?;
        Ok(CapConfig::new(axes).with_layer_range(range))
    };
    let n_ctx = (opts.n_prompt.max(opts.n_gen + 1) + 16) as u32;
    let base = SessionParams {
        n_ctx,
        n_batch: opts.n_batch,
        n_ubatch: opts.n_ubatch.min(opts.n_batch),
        n_threads: opts.threads,
        n_threads_batch: opts.threads,
        ..SessionParams::default()
    };
    let mk = |p: SessionParams| Session::new(&model, p).map_err(|e| e.to_string());
    let capped = match &opts.capping {
        Some(cfg) => cfg.clone(),
        None => cap_with(-1e30)?,
    };
    let mut capped_params = base.clone().with_capping(capped);
    if opts.compare_cap_paths {
        capped_params = capped_params.with_cap_path(CapPath::Host);
    }
    let mut sessions = vec![
        mk(base.clone().with_eval_callback(false))?,
        mk(base.clone().with_capping(cap_with(f32::MAX)?))?,
        mk(capped_params.clone())?,
    ];
    if opts.compare_cap_paths {
        sessions.push(mk(capped_params.with_cap_path(CapPath::Graph))?);
    }
    let n_configs = sessions.len();

    let text = "Once upon a time there was a small cat who lived in a house with a big dog. "
        .repeat(opts.n_prompt / 8 + 8);
    let mut tokens = model
        .tokenize(&text, Special::PROMPT)
        .map_err(|e| e.to_string())?;
    tokens.truncate(opts.n_prompt.max(opts.n_gen + 1));

    let pp = |s: &mut Session| -> Result<f64, String> {
        s.clear();
        let t = Instant::now();
        s.prefill(&tokens[..opts.n_prompt])
            .map_err(|e| e.to_string())?;
        Ok(opts.n_prompt as f64 / t.elapsed().as_secs_f64())
    };
    // As llama-bench's tg: batch-1 decode steps from an empty context, no sampling.
    let tg = |s: &mut Session, n: usize| -> Result<f64, String> {
        s.clear();
        s.prefill(&tokens[..1]).map_err(|e| e.to_string())?;
        let t = Instant::now();
        for k in 2..=n + 1 {
            s.prefill(&tokens[..k]).map_err(|e| e.to_string())?;
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    };

    let mut tests = Vec::new();
    let mut plan: Vec<(String, bool)> = Vec::new();
    if opts.n_prompt > 0 {
        plan.push((format!("pp{}", opts.n_prompt), true));
    }
    if opts.n_gen > 0 {
        plan.push((format!("tg{}", opts.n_gen), false));
    }
    for (name, is_pp) in plan {
        let run = |s: &mut Session| if is_pp { pp(s) } else { tg(s, opts.n_gen) };
        // Warm-up: page in the weights, grow the buffers.
        for s in sessions.iter_mut() {
            if is_pp {
                pp(s)?;
            } else {
                tg(s, opts.n_gen.min(16))?;
            }
        }
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); n_configs];
        for rep in 0..opts.reps {
            for k in 0..n_configs {
                let c = (rep + k) % n_configs;
                rates[c].push(run(&mut sessions[c])?);
            }
            eprint!("\rbench: {} {name} {}/{}", m.label, rep + 1, opts.reps);
        }
        eprintln!();
        tests.push(TestResult { name, rates });
    }
    let total = |s: &Session| {
        s.cap_stats()
            .iter()
            .fold((0u64, 0u64, 0u64), |(seen, capped, ns), (_, st)| {
                (seen + st.rows_seen, capped + st.rows_capped, ns + st.nanos)
            })
    };
    let (rows_seen, rows_capped, capped_ns) = total(&sessions[2]);
    let (noop_seen, noop_capped, noop_ns) = total(&sessions[1]);
    if noop_capped != 0 || rows_seen == 0 {
        return Err(format!(
            "capping did not behave as configured ({rows_seen} rows seen, {noop_capped} capped \
             by the no-op configuration)"
        ));
    }
    drop(sessions);
    let peak_rss = machine::rss().peak;
    Ok(ModelResult {
        label: m.label.clone(),
        path: m.path.clone(),
        size_bytes: model.size_bytes(),
        n_params: model.n_params(),
        file_size: model.info().file_size,
        load_s,
        rss_after_load,
        anon_growth,
        mapped_file,
        peak_rss,
        blocks: blocks.collect(),
        capped_fraction: rows_capped as f64 / rows_seen as f64,
        rows_seen,
        tests,
        weights_per_token: weights_read_per_token(&m.path)?,
        row_ns: row_op_ns(n_embd),
        callback_ns_per_row: (
            noop_ns as f64 / noop_seen.max(1) as f64,
            capped_ns as f64 / rows_seen.max(1) as f64,
        ),
    })
}

/// Everything one `acap bench` run measured.
pub struct Report {
    cpu: String,
    threads: usize,
    bandwidth: f64,
    opts: BenchOptions,
    models: Vec<ModelResult>,
}

/// Runs the benchmark.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn run(opts: BenchOptions) -> Result<Report, String> {
    if opts.reps == 0 {
        return Err("-r must be at least 1".into());
    }
    if opts.n_prompt == 0 && opts.n_gen == 0 {
        return Err("nothing to measure: -p and -n are both 0".into());
    }
    let models = opts
        .models
        .iter()
        .map(|m| resolve_model(m))
        .collect::<Result<Vec<_>, _>>()?;
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads as usize
    };
    eprintln!("bench: measuring memory read bandwidth");
    let bandwidth = machine::read_bandwidth(opts.bandwidth_bytes, threads, 5);
    let results = models
        .iter()
        .map(|m| bench_model(&opts, m))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Report {
        cpu: machine::cpu_name(),
        threads,
        bandwidth,
        opts,
        models: results,
    })
}

const MIB: f64 = 1024.0 * 1024.0;

impl Report {
    /// Generation roofline of a model: (achieved bytes/s, fraction of the bandwidth).
    fn roofline(&self, m: &ModelResult) -> Option<(f64, f64)> {
        let tg = m.tests.iter().find(|t| t.name.starts_with("tg"))?;
        let rate = summary(&tg.rates[0]).median;
        let achieved = m.weights_per_token as f64 * rate;
        Some((achieved, achieved / self.bandwidth))
    }

    /// The mapped-weights check: the file is mapped and loading grew anonymous memory by less
    /// than half the weights (no copy of them).
    fn mmapped(m: &ModelResult) -> bool {
        m.mapped_file && (m.anon_growth as f64) < 0.5 * m.size_bytes as f64
    }

    /// The report as markdown tables.
    pub fn markdown(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let o = &self.opts;
        let _ = writeln!(
            s,
            "acap bench: {} ({} threads), -ngl {}, -b {}, -ub {}, {} repetitions interleaved\n",
            self.cpu, self.threads, o.n_gpu_layers, o.n_batch, o.n_ubatch, o.reps
        );
        s.push_str("| model | size | params | test | uncapped t/s | noop t/s | capped t/s | noop/uncapped | capped/uncapped (min-max) |\n");
        s.push_str("|---|---:|---:|---|---:|---:|---:|---:|---:|\n");
        for m in &self.models {
            for t in &m.tests {
                let med = |c: usize| summary(&t.rates[c]);
                let (u, n, c) = (med(0), med(1), med(2));
                let (rn, rc) = (t.ratio(1), t.ratio(2));
                let _ = writeln!(
                    s,
                    "| {} | {:.0} MiB | {:.2} B | {} | {:.2} ± {:.2} | {:.2} | {:.2} | {:.3} | {:.3} ({:.3}-{:.3}) |",
                    m.label,
                    m.size_bytes as f64 / MIB,
                    m.n_params as f64 / 1e9,
                    t.name,
                    u.median,
                    (u.max - u.min) / 2.0,
                    n.median,
                    c.median,
                    rn.median,
                    rc.median,
                    rc.min,
                    rc.max
                );
            }
        }
        if self
            .models
            .iter()
            .flat_map(|m| &m.tests)
            .any(TestResult::has_graph)
        {
            s.push_str("\n| model | test | capped (host loop) t/s | graph path t/s | graph/uncapped | graph/host loop (min-max) |\n|---|---|---:|---:|---:|---:|\n");
            for m in &self.models {
                for t in m.tests.iter().filter(|t| t.has_graph()) {
                    let g = t.ratio_to(GRAPH, 2);
                    let _ = writeln!(
                        s,
                        "| {} | {} | {:.2} | {:.2} | {:.3} | {:.3} ({:.3}-{:.3}) |",
                        m.label,
                        t.name,
                        summary(&t.rates[2]).median,
                        summary(&t.rates[GRAPH]).median,
                        t.ratio(GRAPH).median,
                        g.median,
                        g.min,
                        g.max
                    );
                }
            }
        }
        let capped = if self.opts.capping.is_some() {
            "capped: your axis and thresholds (only the rows they catch; the share is in the next table)"
        } else {
            "capped: every row pulled back"
        };
        let _ = write!(
            s,
            "\nuncapped: no eval callback (plain llama.cpp); noop: callback and projections on the capped blocks, nothing pulled back; {capped}. Ratios are medians of per-repetition ratios.\n\n"
        );
        s.push_str("| model | capped blocks | rows capped | callback ns per row, noop / capped | row op alone at n_embd, dot / dot+update (ns) |\n|---|---|---:|---:|---:|\n");
        for m in &self.models {
            let _ = writeln!(
                s,
                "| {} | {}..={} | {:.0}% of {} | {:.0} / {:.0} | {:.0} / {:.0} |",
                m.label,
                m.blocks.first().unwrap_or(&0),
                m.blocks.last().unwrap_or(&0),
                m.capped_fraction * 100.0,
                m.rows_seen,
                m.callback_ns_per_row.0,
                m.callback_ns_per_row.1,
                m.row_ns.0,
                m.row_ns.1
            );
        }
        s.push_str("\n| model | load s | peak RSS MiB | anon RSS growth at load MiB | file-backed RSS MiB | weights memory-mapped |\n|---|---:|---:|---:|---:|---|\n");
        for m in &self.models {
            let _ = writeln!(
                s,
                "| {} | {:.2} | {:.0} | {:.0} | {:.0} | {} |",
                m.label,
                m.load_s,
                m.peak_rss as f64 / MIB,
                m.anon_growth as f64 / MIB,
                m.rss_after_load.file as f64 / MIB,
                if Self::mmapped(m) {
                    "yes".to_owned()
                } else if m.mapped_file {
                    format!(
                        "mapped, but {:.0} MiB repacked into anonymous memory (--no-repack avoids it)",
                        m.anon_growth as f64 / MIB
                    )
                } else {
                    "no (read into memory)".to_owned()
                }
            );
        }
        let _ = writeln!(
            s,
            "\nMemory read bandwidth ({} threads): {:.1} GB/s\n",
            self.threads,
            self.bandwidth / 1e9
        );
        if self.models.iter().all(|m| self.roofline(m).is_none()) {
            return s;
        }
        s.push_str("| model | weights read per token MiB | tg t/s (uncapped) | achieved GB/s | fraction of bandwidth |\n|---|---:|---:|---:|---:|\n");
        for m in &self.models {
            if let Some((achieved, frac)) = self.roofline(m) {
                let tg = m
                    .tests
                    .iter()
                    .find(|t| t.name.starts_with("tg"))
                    .expect("tg ran");
                let _ = writeln!(
                    s,
                    "| {} | {:.0} | {:.2} | {:.1} | {:.0}% |",
                    m.label,
                    m.weights_per_token as f64 / MIB,
                    summary(&tg.rates[0]).median,
                    achieved / 1e9,
                    frac * 100.0
                );
            }
        }
        s
    }

    /// The report as JSON.
    pub fn json(&self) -> Value {
        let o = &self.opts;
        let models: Vec<Value> = self
            .models
            .iter()
            .map(|m| {
                let tests: Vec<Value> = m
                    .tests
                    .iter()
                    .map(|t| {
                        let mut v = json!({"test": t.name});
                        for (name, rates) in CONFIGS.iter().zip(&t.rates) {
                            v[*name] = summary_json(summary(rates));
                            v[format!("{name}_samples")] = json!(rates);
                        }
                        v["ratio"] = summary_json(t.ratio(2));
                        v["noop_ratio"] = summary_json(t.ratio(1));
                        if t.has_graph() {
                            v["graph_ratio"] = summary_json(t.ratio(GRAPH));
                            v["graph_vs_host"] = summary_json(t.ratio_to(GRAPH, 2));
                        }
                        v
                    })
                    .collect();
                let roof = self.roofline(m);
                json!({
                    "model": m.label,
                    "path": m.path.display().to_string(),
                    "size_bytes": m.size_bytes,
                    "file_size": m.file_size,
                    "n_params": m.n_params,
                    "load_s": m.load_s,
                    "peak_rss_bytes": m.peak_rss,
                    "rss_anon_after_load_bytes": m.rss_after_load.anon,
                    "rss_anon_growth_at_load_bytes": m.anon_growth,
                    "rss_file_after_load_bytes": m.rss_after_load.file,
                    "mmapped": Self::mmapped(m),
                    "file_mapped": m.mapped_file,
                    "capped_layers": m.blocks,
                    "capped_fraction": m.capped_fraction,
                    "rows_seen": m.rows_seen,
                    "tests": tests,
                    "callback_ns_per_row": {"noop": m.callback_ns_per_row.0, "capped": m.callback_ns_per_row.1},
                    "row_op_ns": {"dot": m.row_ns.0, "dot_update": m.row_ns.1},
                    "roofline": roof.map(|(a, f)| json!({
                        "weights_per_token_bytes": m.weights_per_token,
                        "achieved_bytes_per_s": a,
                        "fraction": f,
                    })),
                })
            })
            .collect();
        json!({
            "cpu": self.cpu,
            "threads": self.threads,
            "n_gpu_layers": o.n_gpu_layers,
            "n_batch": o.n_batch,
            "n_ubatch": o.n_ubatch,
            "repetitions": o.reps,
            "no_repack": o.no_repack,
            "memory_bandwidth_bytes_per_s": self.bandwidth,
            "backends": acap::version().backends,
            "capped_with": if o.capping.is_some() { "axis files" } else { "synthetic axes, every row" },
            "cap_path": if o.compare_cap_paths {
                "capped: host, graph: graph".to_owned()
            } else {
                CapPath::from_env().ok().flatten().unwrap_or_default().to_string()
            },
            "models": models,
        })
    }
}

/// Deterministic values in -1..1 (splitmix64) for synthetic axes and rows: the benchmark needs
/// arbitrary but repeatable data, not the test models' generator.
fn pseudo_random(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_blocks_follow_the_reference_depth() {
        assert_eq!(capped_blocks(32, None), 22..=28);
        assert_eq!(capped_blocks(16, None), 9..=15);
        assert_eq!(capped_blocks(8, None), 1..=7);
        assert_eq!(capped_blocks(32, Some((10, 12))), 10..=12);
    }

    #[test]
    fn summary_and_pairwise_ratio() {
        let s = summary(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        let t = TestResult {
            name: "pp".into(),
            rates: vec![
                vec![10.0, 20.0, 30.0],
                vec![9.0, 20.0, 33.0],
                vec![5.0, 20.0, 27.0],
                vec![5.0, 30.0, 27.0],
            ],
        };
        let r = t.ratio(2);
        assert_eq!((r.min, r.median, r.max), (0.5, 0.9, 1.0));
        let g = t.ratio_to(GRAPH, 2);
        assert_eq!((g.min, g.median, g.max), (1.0, 1.0, 1.5));
    }
}
