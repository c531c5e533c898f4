//! `acap axis inspect`: cosine matrix and prompt projections.

use super::*;

/// Projections of a prompt set's last-token states on each layer's unit axis: a table of their
/// distribution and the share above each layer's threshold.
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn projection_report(
    files: &[PathBuf],
    model: &Path,
    prompts: &Path,
    system: Option<&str>,
    chat_template: Option<&str>,
    cli_threshold: Option<f32>,
    n_gpu_layers: i32,
) -> Result<String, String> {
    let axes = acap::AxisSet::open(files).map_err(|e| e.to_string())?;
    let thresholds = axes.thresholds(cli_threshold).map_err(|e| e.to_string())?;
    let prompts = load_prompts(prompts, None, 0)?;
    let model = load_model(model, n_gpu_layers)?;
    crate::warn_chatml_fallback(&model, chat_template);
    if axes.n_embd() != model.n_embd() as usize {
        return Err(format!(
            "axis n_embd {} does not match the model's n_embd {}",
            axes.n_embd(),
            model.n_embd()
        ));
    }
    let params = ExtractParams {
        template: chat_template.map(str::to_owned),
        ..ExtractParams::default()
    };
    let states = persona_states(&model, &prompts, system, &params).map_err(|e| e.to_string())?;
    let mut out = format!(
        "projections of {} prompts on the unit axes{}:\nlayer         min         p25         p50         p75         max         tau  above tau\n",
        prompts.len(),
        system.map_or(String::new(), |_| " (with the system prompt)".into())
    );
    for (&l, axis) in axes.layers() {
        if l >= model.n_layer() {
            continue;
        }
        let proj: Vec<f32> = states
            .iter()
            .map(|s| acap::cap::dot(&axis.unit, &s[l as usize]))
            .collect();
        let tau = thresholds.for_layer(l).tau;
        let above = proj.iter().filter(|&&p| p > tau).count();
        let q = |p: f32| acap::extraction::percentile(&proj, p);
        out += &format!(
            "{l:>5} {:>11.4} {:>11.4} {:>11.4} {:>11.4} {:>11.4} {tau:>11.4} {:>9.0}%\n",
            q(0.0),
            q(25.0),
            q(50.0),
            q(75.0),
            q(100.0),
            100.0 * above as f64 / proj.len() as f64
        );
    }
    Ok(out)
}

/// Cosine similarity of the summed axes of neighbouring layers (and the full matrix for up to
/// 12 layers).
///
/// # Errors
/// A one-line message naming the file, flag or value at fault.
pub fn cosine_report(files: &[PathBuf]) -> Result<String, String> {
    let axes = acap::AxisSet::open(files).map_err(|e| e.to_string())?;
    let layers: Vec<(u32, &Vec<f32>)> = axes.layers().iter().map(|(l, a)| (*l, &a.unit)).collect();
    let cos = |a: &[f32], b: &[f32]| acap::cap::dot(a, b);
    let mut out = String::from("cosine similarity between layers:\n");
    if layers.len() <= 12 {
        out += "     ";
        for (l, _) in &layers {
            out += &format!("{l:>6}");
        }
        out += "\n";
        for (la, a) in &layers {
            out += &format!("{la:>5}");
            for (_, b) in &layers {
                out += &format!("{:>6.2}", cos(a, b));
            }
            out += "\n";
        }
    } else {
        for w in layers.windows(2) {
            out += &format!(
                "{:>5} -> {:>3}: {:.3}\n",
                w[0].0,
                w[1].0,
                cos(w[0].1, w[1].1)
            );
        }
    }
    Ok(out)
}

/// `acap h-suppress inspect`: per block, the neurons suppressed and the range of the scales,
/// the file's metadata, and (with a model) whether the file fits it.
///
/// # Errors
/// A one-line message naming the file and what is wrong with it, or why it does not fit
/// the model.
pub fn h_suppress_report(file: &Path, model: Option<&Path>) -> Result<String, String> {
    let h = acap::HSuppress::open(file).map_err(|e| e.to_string())?;
    let mut out = format!("{}\n", file.display());
    let meta = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{v}"));
    out.push_str(&format!(
        "alpha {}, n_neurons {} (metadata), n_layers {} (metadata)\n",
        meta(h.alpha()),
        meta(h.meta_n_neurons()),
        meta(h.meta_n_layers())
    ));
    out.push_str("block   n_ff  suppressed  zeroed        min        max\n");
    for (block, scales) in h.blocks() {
        let zeroed = scales.iter().filter(|&&x| x == 0.0).count();
        let (min, max) = scales
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        out.push_str(&format!(
            "{block:>5} {:>6} {:>11} {zeroed:>7} {min:>10.4} {max:>10.4}\n",
            scales.len(),
            h.suppressed_in(*block),
        ));
    }
    out.push_str(&format!(
        "total: {} neurons suppressed in {} blocks\n",
        h.suppressed(),
        h.edited_blocks().count()
    ));
    if let Some(meta) = h.meta_n_neurons() {
        if meta != h.suppressed() as f64 {
            out.push_str(&format!(
                "note: h_suppress.n_neurons says {meta}, the tensors suppress {}\n",
                h.suppressed()
            ));
        }
    }
    if let Some(model) = model {
        let m = load_model(model, 0)?;
        let params = acap::SessionParams::default()
            .with_n_ctx(64)
            .with_threads(1)
            .with_h_suppress(std::sync::Arc::new(h));
        acap::Session::new(&m, params).map_err(|e| e.to_string())?;
        out.push_str(&format!("fits {}\n", model.display()));
    }
    Ok(out)
}
