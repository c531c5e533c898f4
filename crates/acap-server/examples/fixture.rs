//! Prepares a model and a matching axis file for scripts that drive `acap-server` from
//! outside Rust (`scripts/fleet-test.py`): prints `{"model": PATH, "axis": PATH}`.
//!
//! ```text
//! fixture DIR [-m MODEL|tiny|small]
//! ```
//! The model is a file or a testkit preset (generated once, cached); the axis file, written
//! to `DIR/axis.gguf`, has a random direction at threshold 0 for each block acap caps by
//! default, so that capped and uncapped greedy replies differ.

mod support;

use serde_json::json;
use support::arg;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("usage: fixture DIR [-m MODEL]"));
    let model = support::model(&arg(&args, "-m", "tiny"));
    let info = acap::ModelInfo::read(&model).expect("model header");
    std::fs::create_dir_all(&dir).expect("DIR");
    let axis = dir.join("axis.gguf");
    let blocks = acap_frontend::capped_blocks(info.n_layer, None);
    support::write_axis(&axis, blocks, info.n_embd as usize, 0.0);
    println!("{}", json!({"model": model, "axis": axis}));
}
