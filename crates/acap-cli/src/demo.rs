//! `acap demo`: the whole pipeline offline on built-in data.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use acap::{
    AxisFile, AxisSet, AxisWriter, CapConfig, ChatMessage, GenerateParams, LayerRange, Model,
    ModelParams, QuantType, SamplingParams, Session, SessionParams, Special,
};

/// Blocks the demo caps (the tiny model has 8).
const LAYERS: std::ops::RangeInclusive<u32> = 3..=6;

/// Runs the demo, printing to stdout (text) and stderr (progress).
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn run(prompt: &str, n_predict: usize) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    eprintln!(
        "acap demo: preparing the tiny test model (generated once, cached in {})",
        acap_testkit::cache_dir().display()
    );
    let path = acap_testkit::model_path(&acap_testkit::ModelSpec::tiny(), Some(QuantType::Q8_0))
        .map_err(|e| err(&e))?;
    let model = Model::load(&path, ModelParams::default()).map_err(|e| err(&e))?;
    let n_embd = model.n_embd() as usize;
    let messages = [
        ChatMessage::system("You are a kind and honest assistant."),
        ChatMessage::user(prompt),
    ];
    let rendered = model
        .apply_chat_template(&messages, true, None)
        .map_err(|e| err(&e))?;
    let tokens = model
        .tokenize(&rendered, Special::PROMPT)
        .map_err(|e| err(&e))?;

    // An axis per capped block (random here; `acap axis extract` makes real ones), with the
    // threshold calibrated on this prompt: the median projection, so about half the rows cap.
    let mut w = AxisWriter::new()
        .with_model_hint("acap-testkit tiny (demo)")
        .with_hook("l_out")
        .with_operation("cap");
    for l in LAYERS {
        w = w.with_direction(l, acap_testkit::random_vector(u64::from(l), n_embd));
    }
    let raw = AxisSet::new(vec![
        AxisFile::from_bytes(w.to_bytes().map_err(|e| err(&e))?).map_err(|e| err(&e))?,
    ])
    .map_err(|e| err(&e))?;
    let projections: Arc<Mutex<Vec<(u32, f32)>>> = Arc::default();
    {
        let mut s =
            Session::new(&model, SessionParams::default().with_n_ctx(1024)).map_err(|e| err(&e))?;
        let sink = projections.clone();
        let axes: Vec<(u32, Vec<f32>)> = LAYERS
            .map(|l| (l, raw.layer(l).expect("axis").unit.clone()))
            .collect();
        s.set_observer(&LAYERS.collect::<Vec<_>>(), move |o| {
            let axis = &axes
                .iter()
                .find(|(l, _)| *l == o.layer)
                .expect("observed layer")
                .1;
            let mut sink = sink.lock().expect("observer lock");
            for i in 0..o.n_rows() {
                sink.push((o.layer, acap::cap::dot(axis, o.row(i))));
            }
        });
        s.prefill(&tokens).map_err(|e| err(&e))?;
    }
    let projections = projections
        .lock()
        .map_err(|_| "observer lock poisoned".to_string())?
        .clone();
    for l in LAYERS {
        let mut p: Vec<f32> = projections
            .iter()
            .filter(|(x, _)| *x == l)
            .map(|(_, v)| *v)
            .collect();
        p.sort_by(f32::total_cmp);
        w = w.with_threshold(l, p[p.len() / 2]);
    }
    let axis_path = acap_testkit::cache_dir().join("demo-axis.gguf");
    w.write_file(&axis_path).map_err(|e| err(&e))?;
    let axes = AxisSet::open(&[&axis_path]).map_err(|e| err(&e))?;
    eprintln!(
        "acap demo: wrote {} (blocks {}..={}, thresholds calibrated at the median projection)",
        axis_path.display(),
        LAYERS.start(),
        LAYERS.end()
    );

    let params = GenerateParams::default()
        .with_max_tokens(n_predict)
        .with_sampling(SamplingParams::greedy());
    let cap = CapConfig::new(axes).with_layer_range(LayerRange::new(
        i64::from(*LAYERS.start()),
        i64::from(*LAYERS.end()),
    ));
    for capped in [false, true] {
        let mut sp = SessionParams::default().with_n_ctx(1024);
        if capped {
            sp = sp.with_capping(cap.clone());
        }
        let mut s = Session::new(&model, sp).map_err(|e| err(&e))?;
        let mut reply = String::new();
        s.chat(&messages, None, &params, |t| {
            reply.push_str(t);
            ControlFlow::Continue(())
        })
        .map_err(|e| err(&e))?;
        crate::outln!(
            "{} reply: {}",
            if capped { "capped  " } else { "uncapped" },
            reply.trim()
        );
        if capped {
            crate::outln!("\ncapping telemetry (block: rows capped / seen, mean and max excess):");
            for (l, st) in s.cap_stats() {
                crate::outln!(
                    "  block {l}: {:>3} / {:>3} rows, mean {:.3}, max {:.3}",
                    st.rows_capped,
                    st.rows_seen,
                    st.mean_excess(),
                    st.max_excess
                );
            }
        }
    }
    crate::outln!("\n(random weights: the text is gibberish; the pipeline is the real one)");
    Ok(())
}
