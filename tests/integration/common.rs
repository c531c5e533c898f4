//! Shared fixtures: the generated tiny model.

use acap::{Model, ModelParams, QuantType};

/// The quantisations every model test runs on.
pub const QUANTS: [QuantType; 2] = [QuantType::Q8_0, QuantType::Q4KM];

/// Loads the tiny test model (generated into the cache on first use).
pub fn load(q: QuantType) -> Model {
    Model::load(acap_testkit::tiny(q), ModelParams::default()).expect("tiny model loads")
}
