//! What to cap: axes, layer range, thresholds and alpha, validated against a model.

use std::fmt;

use thiserror::Error;

use crate::axis::{AxisSet, ThresholdError, ThresholdSource};
use crate::layers::LayerRange;
use crate::model::Model;

/// Why capping cannot be set up for a model. Capping is never silently skipped: every case a
/// user could mistake for a capped run is one of these.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum CapError {
    /// The axes' length differs from the model's hidden size.
    #[error("axis n_embd {axis} does not match the model's n_embd {model} ({origin})")]
    EmbdMismatch {
        /// The axes' length.
        axis: usize,
        /// The model's hidden size.
        model: u32,
        /// The first axis file.
        origin: String,
    },
    /// See [`ThresholdError`].
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
    /// The layer range selects no block that has an axis.
    #[error(
        "layer range {start} {end} caps nothing: it selects {blocks} of this {n_layer}-block model, and the axes cover layers {axis_layers}"
    )]
    NothingCapped {
        /// Range start as given.
        start: i64,
        /// Range end as given.
        end: i64,
        /// The blocks the range resolved to.
        blocks: String,
        /// The model's block count.
        n_layer: u32,
        /// Layers the axes cover.
        axis_layers: String,
    },
    /// `alpha` outside 0..=1 or not finite.
    #[error("alpha {0} must be a number in 0..=1")]
    BadAlpha(f32),
    /// A threshold was set for a block that is not capped.
    #[error("block {layer} is not capped")]
    NotCapped {
        /// The block.
        layer: u32,
    },
    /// The session was created without the eval callback (a measuring baseline), so it
    /// cannot cap.
    #[error("this session was created without the eval callback and cannot cap")]
    NoEvalCallback,
    /// The model's graph has no `l_out-L` tensor for a capped block.
    #[error("cannot cap architecture '{arch}': its graph has no tensor named l_out-{layer}")]
    NoHookPoint {
        /// The model's architecture.
        arch: String,
        /// The first block that was not found.
        layer: u32,
    },
}

/// Capping as the user asked for it: `--acap` files, `--acap-layer-range`,
/// `--acap-threshold` and `--acap-alpha`.
#[derive(Debug, Clone, PartialEq)]
pub struct CapConfig {
    axes: AxisSet,
    range: LayerRange,
    cli_threshold: Option<f32>,
    alpha: f32,
}

impl CapConfig {
    /// Capping with `axes`, the default range (blocks 1..n_layer), no CLI threshold (per-layer
    /// thresholds from the first file are then required) and `alpha` 1.0.
    pub fn new(axes: AxisSet) -> Self {
        Self {
            axes,
            range: LayerRange::default(),
            cli_threshold: None,
            alpha: 1.0,
        }
    }

    /// Sets the blocks to cap (`--acap-layer-range`).
    #[must_use]
    pub fn with_layer_range(mut self, range: LayerRange) -> Self {
        self.range = range;
        self
    }

    /// Sets `--acap-threshold` (positive values are negated; see spec section 4).
    #[must_use]
    pub fn with_threshold(mut self, t: Option<f32>) -> Self {
        self.cli_threshold = t;
        self
    }

    /// Sets `alpha`: 1.0 caps hard, 0.5 moves the projection half-way back.
    #[must_use]
    pub fn with_alpha(mut self, alpha: f32) -> Self {
        self.alpha = alpha;
        self
    }

    /// Checks everything that does not need a model: `alpha` in 0..=1, and a threshold for
    /// every layer of the axes (from the first file or the global threshold, finite).
    ///
    /// # Errors
    /// [`CapError::BadAlpha`] or [`CapError::Threshold`].
    pub fn validate(&self) -> Result<(), CapError> {
        check_alpha(self.alpha)?;
        self.axes.thresholds(self.cli_threshold)?;
        Ok(())
    }

    /// The axes.
    pub fn axes(&self) -> &AxisSet {
        &self.axes
    }

    /// Resolves the per-block plan for `model`, or says why it cannot cap.
    ///
    /// # Errors
    /// See [`CapError`].
    pub fn plan(&self, model: &Model) -> Result<CapPlan, CapError> {
        check_alpha(self.alpha)?;
        if self.axes.n_embd() != model.n_embd() as usize {
            return Err(CapError::EmbdMismatch {
                axis: self.axes.n_embd(),
                model: model.n_embd(),
                origin: self.axes.origins()[0].clone(),
            });
        }
        let thresholds = self.axes.thresholds(self.cli_threshold)?;
        let n_layer = model.n_layer();
        let blocks = self.range.blocks(n_layer);
        let mut layers: Vec<Option<PlannedLayer>> = vec![None; n_layer as usize];
        for block in blocks.clone() {
            if let Some(axis) = self.axes.layer(block) {
                let t = thresholds.for_layer(block);
                layers[block as usize] = Some(PlannedLayer {
                    axis: axis.unit.clone(),
                    tau: t.tau,
                    source: t.source,
                });
            }
        }
        if layers.iter().all(Option::is_none) {
            let axis_layers: Vec<String> = self.axes.layers().keys().map(u32::to_string).collect();
            return Err(CapError::NothingCapped {
                start: self.range.start,
                end: self.range.end,
                blocks: if blocks.is_empty() {
                    "no block".into()
                } else {
                    format!("blocks {}..={}", blocks.start(), blocks.end())
                },
                n_layer,
                axis_layers: axis_layers.join(", "),
            });
        }
        Ok(CapPlan {
            layers,
            alpha: self.alpha,
        })
    }
}

/// Checks an `alpha`: a number in 0..=1.
///
/// # Errors
/// [`CapError::BadAlpha`] for anything else (NaN included).
pub fn check_alpha(alpha: f32) -> Result<(), CapError> {
    if (0.0..=1.0).contains(&alpha) {
        Ok(())
    } else {
        Err(CapError::BadAlpha(alpha))
    }
}

/// One capped block.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedLayer {
    /// The unit axis.
    pub axis: Vec<f32>,
    /// The threshold.
    pub tau: f32,
    /// Where the threshold came from.
    pub source: ThresholdSource,
}

/// The resolved plan: for every block of the model, its axis and threshold if capped.
#[derive(Debug, Clone, PartialEq)]
pub struct CapPlan {
    pub(crate) layers: Vec<Option<PlannedLayer>>,
    pub(crate) alpha: f32,
}

impl CapPlan {
    /// The capped blocks in order.
    pub fn capped_layers(&self) -> impl Iterator<Item = (u32, &PlannedLayer)> {
        self.layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.as_ref().map(|l| (i as u32, l)))
    }

    /// `alpha`.
    pub fn alpha(&self) -> f32 {
        self.alpha
    }
}

impl fmt::Display for CapPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "capping {} block(s), alpha {}:",
            self.capped_layers().count(),
            self.alpha
        )?;
        for (l, p) in self.capped_layers() {
            write!(f, " {l}(tau {:.4}, {:?})", p.tau, p.source)?;
        }
        Ok(())
    }
}
