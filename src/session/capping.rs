//! A session's capping, observer and control-vector settings.

use super::{SLOT, Session};
use crate::axis::ThresholdError;
use crate::cap::{
    CapConfig, CapError, CapPlan, ControlVector, ControlVectorError, LayerStats, Observation,
};

impl Session {
    /// Sets, replaces (`Some`) or removes (`None`) capping. A configuration that cannot cap
    /// this model (wrong `n_embd`, nothing in range, no thresholds, no `l_out` tensor in the
    /// graph) is an error and leaves the previous capping in place.
    ///
    /// This and every other setter that changes what is capped empty the KV cache: keys and
    /// values computed under other capping must not be reused for the following calls.
    ///
    /// # Errors
    /// See [`CapError`].
    pub fn set_capping(&mut self, cap: Option<CapConfig>) -> Result<(), CapError> {
        match cap {
            None => {
                if self.ctx.cap_slot_mut(SLOT).plan.take().is_some() {
                    self.clear();
                }
                self.cap_config = None;
                Ok(())
            }
            Some(_) if !self.ctx.has_eval_callback() => Err(CapError::NoEvalCallback),
            Some(cfg) => {
                let plan = cfg.plan(self.model())?;
                self.install(cfg, plan)
            }
        }
    }

    pub(super) fn install(&mut self, cfg: CapConfig, plan: CapPlan) -> Result<(), CapError> {
        let checked = self.ctx.check_plan(&plan);
        // A first check decodes a throw-away token: keep the cached-token list in step with
        // the cache whatever happened.
        self.resync();
        checked?;
        let slot = self.ctx.cap_slot_mut(SLOT);
        slot.plan = Some(plan);
        slot.reset_stats();
        self.cap_config = Some(cfg);
        self.clear();
        Ok(())
    }

    /// The capping configuration, if any.
    pub fn capping(&self) -> Option<&CapConfig> {
        self.cap_config.as_ref()
    }

    /// The resolved plan (blocks, axes, thresholds, alpha), if capping is configured.
    pub fn cap_plan(&self) -> Option<&CapPlan> {
        self.ctx.cap_slot(SLOT).plan.as_ref()
    }

    /// Switches capping on or off for the following calls without rebuilding anything (the
    /// reward evaluator runs uncapped). On by default once configured.
    pub fn set_capping_enabled(&mut self, on: bool) {
        let slot = self.ctx.cap_slot_mut(SLOT);
        if slot.enabled != on {
            slot.enabled = on;
            if slot.plan.is_some() {
                self.clear();
            }
        }
    }

    /// Where the cap runs (the host loop or a ggml graph on the tensor's device), as set by
    /// [`SessionParams::cap_path`](crate::SessionParams::cap_path) or `ACAP_CAP_PATH`.
    pub fn cap_path(&self) -> crate::CapPath {
        self.ctx.cap_path()
    }

    /// Whether capping is configured and switched on.
    pub fn capping_enabled(&self) -> bool {
        self.ctx.cap_slot(SLOT).active().is_some()
    }

    /// Changes `alpha` for the following calls.
    ///
    /// # Errors
    /// [`CapError::BadAlpha`] unless `alpha` is in 0..=1.
    pub fn set_cap_alpha(&mut self, alpha: f32) -> Result<(), CapError> {
        crate::cap::check_alpha(alpha)?;
        let mut changed = false;
        if let Some(plan) = self.ctx.cap_slot_mut(SLOT).plan.as_mut() {
            changed = plan.alpha != alpha;
            plan.alpha = alpha;
        }
        if changed {
            self.clear();
        }
        if let Some(cfg) = self.cap_config.take() {
            self.cap_config = Some(cfg.with_alpha(alpha));
        }
        Ok(())
    }

    /// Re-resolves the thresholds with a new CLI-style threshold (spec section 4).
    ///
    /// # Errors
    /// See [`CapError`]: the new threshold leaves some capped block without one.
    pub fn set_cap_threshold(&mut self, cli: Option<f32>) -> Result<(), CapError> {
        let Some(cfg) = self.cap_config.clone() else {
            return Ok(());
        };
        let cfg = cfg.with_threshold(cli);
        let plan = cfg.plan(self.model())?;
        let slot = self.ctx.cap_slot_mut(SLOT);
        if slot.plan.as_ref() != Some(&plan) {
            slot.plan = Some(plan);
            self.clear();
        }
        self.cap_config = Some(cfg);
        Ok(())
    }

    /// Sets the raw threshold of one capped block directly.
    ///
    /// # Errors
    /// [`CapError::NotCapped`] for a block the plan does not cap, [`CapError::Threshold`] for
    /// a value that is not finite.
    pub fn set_layer_tau(&mut self, layer: u32, tau: f32) -> Result<(), CapError> {
        let planned = self
            .ctx
            .cap_slot_mut(SLOT)
            .plan
            .as_mut()
            .and_then(|p| p.layers.get_mut(layer as usize))
            .and_then(Option::as_mut);
        match planned {
            Some(l) if tau.is_finite() => {
                let changed = l.tau != tau;
                l.tau = tau;
                if changed {
                    self.clear();
                }
                Ok(())
            }
            Some(_) => Err(CapError::Threshold(ThresholdError::NotFinite {
                value: tau,
            })),
            None => Err(CapError::NotCapped { layer }),
        }
    }

    /// Telemetry of every capped block since the last reset: `(block, stats)`.
    pub fn cap_stats(&self) -> Vec<(u32, LayerStats)> {
        self.ctx.cap_slot(SLOT).capped_stats()
    }

    /// Zeroes the telemetry.
    pub fn reset_cap_stats(&mut self) {
        self.ctx.cap_slot_mut(SLOT).reset_stats();
    }

    /// Registers a read-only observer of the outputs of `layers` (replacing any earlier one).
    /// It sees every row of every decode, after capping when capping is on.
    pub fn set_observer(
        &mut self,
        layers: &[u32],
        observer: impl FnMut(&Observation<'_>) + Send + 'static,
    ) {
        self.ctx
            .hooks_mut()
            .set_observer(layers, Box::new(observer));
    }

    /// Removes the observer.
    pub fn clear_observer(&mut self) {
        self.ctx.hooks_mut().clear_observer();
    }

    /// Applies control vectors (added to each block's output before the cap), or removes them
    /// with `None`; empties the KV cache.
    ///
    /// # Errors
    /// See [`ControlVectorError`]: a length that does not match the model, or llama.cpp
    /// refusing the vectors.
    pub fn set_control_vector(
        &mut self,
        cv: Option<&ControlVector>,
    ) -> Result<(), ControlVectorError> {
        self.ctx.set_control_vector(cv)?;
        self.forget_from(0);
        Ok(())
    }
}
