//! A session's H-neuron suppression (spec section 10).

use std::sync::Arc;

use super::{SLOT, Session};
use crate::cap::{HSuppress, HSuppressError, SuppressStats};

impl Session {
    /// Sets, replaces (`Some`) or removes (`None`) H-neuron suppression. A file that does not
    /// fit this model (a block it lacks, a vector that is not the block's `n_ff` long, an
    /// architecture whose FFN activation acap cannot find) is an error and leaves the previous
    /// suppression in place. Empties the KV cache when anything changes.
    ///
    /// # Errors
    /// See [`HSuppressError`].
    pub fn set_h_suppress(&mut self, h: Option<Arc<HSuppress>>) -> Result<(), HSuppressError> {
        if let Some(h) = &h {
            let checked = self.ctx.check_suppress(h);
            // A first check decodes a throw-away token: keep the cached-token list in step.
            self.resync();
            checked?;
        }
        let slot = self.ctx.cap_slot_mut(SLOT);
        let changed = match (&slot.suppress, &h) {
            (None, None) => false,
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            _ => true,
        };
        slot.suppress = h;
        slot.suppress_rows.iter_mut().for_each(|r| *r = 0);
        if changed {
            self.clear();
        }
        Ok(())
    }

    /// The suppression file, if one is set.
    pub fn h_suppress(&self) -> Option<&HSuppress> {
        self.ctx.cap_slot(SLOT).suppress.as_deref()
    }

    /// Switches suppression on or off for the following calls (on by default once set).
    pub fn set_h_suppress_enabled(&mut self, on: bool) {
        let slot = self.ctx.cap_slot_mut(SLOT);
        if slot.suppress_enabled != on {
            slot.suppress_enabled = on;
            if slot.suppress.is_some() {
                self.clear();
            }
        }
    }

    /// Whether suppression is set and switched on.
    pub fn h_suppress_enabled(&self) -> bool {
        self.ctx.cap_slot(SLOT).active_suppress().is_some()
    }

    /// Telemetry of every block the suppression file names since the last
    /// [`Session::reset_cap_stats`].
    pub fn h_suppress_stats(&self) -> Vec<SuppressStats> {
        self.ctx.cap_slot(SLOT).suppress_stats()
    }
}
