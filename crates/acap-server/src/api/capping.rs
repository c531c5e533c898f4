//! What capping a request gets: the server's default, changed by the request's `acap` object.

use acap_frontend::{Names, cap_error};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::request::AcapRequest;

/// What capping a request gets, as applied.
pub struct Capping {
    /// The plan (`None`: uncapped).
    pub plan: Option<acap::CapPlan>,
    /// Whether the server's H-neuron suppression applies to the request's rows.
    pub h_suppress: bool,
    /// What the response reports as applied.
    pub applied: Value,
}

/// Resolves a request's capping against the model, and its H-neuron suppression switch
/// (`"h_suppress"`, default: on when the server has a file).
pub fn capping(
    state: &AppState,
    req: Option<&AcapRequest>,
    h_suppress: Option<bool>,
) -> Result<Capping, ApiError> {
    let mut c = cap_only(state, req)?;
    c.h_suppress = h_suppress.unwrap_or(state.h_suppress.is_some());
    match (&state.h_suppress, c.h_suppress) {
        (None, true) => {
            return Err(ApiError::bad(
                "h_suppress",
                "H-neuron suppression was requested but the server has no file (start it with \
                 --h-suppress FILE)",
            ));
        }
        (Some(h), true) => {
            c.applied["h_suppress"] = json!({
                "enabled": true,
                "file": h.origin(),
                "blocks": h.edited_blocks().collect::<Vec<_>>(),
                "neurons": h.suppressed(),
            });
        }
        (Some(_), false) => c.applied["h_suppress"] = json!({"enabled": false}),
        // A server without a file reports nothing about it (the shape clients saw before).
        (None, false) => {}
    }
    Ok(c)
}

/// Resolves a request's capping (`acap` object) against the model.
fn cap_only(state: &AppState, req: Option<&AcapRequest>) -> Result<Capping, ApiError> {
    let default = AcapRequest::default();
    let req = req.unwrap_or(&default);
    let enabled = req.enabled.unwrap_or(state.capping.is_some());
    if !enabled {
        return Ok(Capping {
            plan: None,
            h_suppress: false,
            applied: json!({"enabled": false}),
        });
    }
    let Some(mut cfg) = state.capping.clone() else {
        return Err(ApiError::bad(
            "acap",
            "capping was requested but the server has no axis (start it with --acap FILE)",
        ));
    };
    if let Some(a) = req.alpha {
        cfg = cfg.with_alpha(a);
    }
    if let Some(t) = req.threshold {
        cfg = cfg.with_threshold(Some(t));
    }
    if let Some(r) = req.range() {
        cfg = cfg.with_layer_range(r);
    }
    let plan = cfg
        .plan(&state.model)
        .map_err(|e| ApiError::bad("acap", cap_error(&e, Names::JSON)))?;
    let layers: Vec<u32> = plan.capped_layers().map(|(l, _)| l).collect();
    let taus: serde_json::Map<String, Value> = plan
        .capped_layers()
        .map(|(l, p)| (l.to_string(), json!(p.tau)))
        .collect();
    // Where each tau came from: the file's per-layer key wins over a global threshold (the
    // reference rule), so a request's threshold can be without effect: say so.
    let source = |l: u32, src: acap::axis::ThresholdSource| match src {
        acap::axis::ThresholdSource::File => format!("file key acap.threshold.{l}"),
        acap::axis::ThresholdSource::Cli if req.threshold.is_some() => {
            "request threshold (negated)".to_owned()
        }
        acap::axis::ThresholdSource::Cli => "start-up --acap-threshold (negated)".to_owned(),
        acap::axis::ThresholdSource::DefaultOne => "default (global 1.0, negated)".to_owned(),
    };
    let sources: serde_json::Map<String, Value> = plan
        .capped_layers()
        .map(|(l, p)| (l.to_string(), json!(source(l, p.source))))
        .collect();
    let mut applied = json!({
        "enabled": true,
        "alpha": plan.alpha(),
        "layers": layers,
        "thresholds": taus,
        "threshold_sources": sources,
    });
    let from_file: Vec<u32> = plan
        .capped_layers()
        .filter(|(_, p)| p.source == acap::axis::ThresholdSource::File)
        .map(|(l, _)| l)
        .collect();
    if req.threshold.is_some() && !from_file.is_empty() {
        applied["note"] = json!(format!(
            "'threshold' does not apply to blocks {from_file:?}: the axis file has per-layer \
             thresholds for them, which take precedence (as in the reference)"
        ));
    }
    Ok(Capping {
        plan: Some(plan),
        h_suppress: false,
        applied,
    })
}
