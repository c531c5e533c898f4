//! JSON shapes shared by `acap judge` and acap-server's `/v1/evaluate`.

use acap::eval::{Evaluation, OverallSource};
use serde_json::{Value, json};

/// The JSON name of where the overall score came from.
pub fn source_name(s: OverallSource) -> &'static str {
    match s {
        OverallSource::Labelled => "labelled",
        OverallSource::Positional => "positional",
        OverallSource::EvaluationHeader => "evaluation_header",
        OverallSource::LastScore => "last_score",
        OverallSource::DimensionMean => "dimension_mean",
        OverallSource::Missing => "missing",
    }
}

/// An evaluation as JSON.
pub fn evaluation_json(e: &Evaluation) -> Value {
    let scores: serde_json::Map<String, Value> = e
        .scores
        .iter()
        .map(|(d, s)| (d.clone(), json!(s)))
        .collect();
    json!({
        "scores": scores,
        "red_flags": e.red_flags,
        "overall": e.overall,
        "overall_source": source_name(e.flags.overall),
        "positional": e.flags.positional,
        "fallback": e.flags.is_fallback(),
        "complete": e.is_complete(),
        "degenerate": e.degenerate(),
        "raw": e.raw,
    })
}
