//! The context's eval callback: caps and observes `l_out-L` tensors while llama.cpp computes.

use std::ffi::{c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

use llama_cpp_sys_2 as sys;

use super::config::CapPlan;
use super::graph::{BatchRows, GraphCapper, Routing, tensor_name};
use super::hsuppress::HSuppress;
use super::path::CapPath;
use super::rows::{LayerStats, cap_rows};

/// What an observer sees: one block's output after capping (when capping is on).
#[derive(Debug)]
pub struct Observation<'a> {
    /// The block.
    pub layer: u32,
    /// Values per row.
    pub n_embd: usize,
    /// All rows computed in this pass, row-major (`rows.len() / n_embd` tokens). In the last
    /// block only the rows whose logits were requested.
    pub rows: &'a [f32],
}

impl Observation<'_> {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.rows.len() / self.n_embd.max(1)
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.rows[i * self.n_embd..(i + 1) * self.n_embd]
    }
}

/// A read-only observer of chosen blocks.
pub type ObserverFn = Box<dyn FnMut(&Observation<'_>) + Send>;

pub(crate) struct Observer {
    layers: Vec<bool>,
    f: ObserverFn,
}

/// Flags the abort callback reads: a user cancel, or a failure inside the eval callback.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    pub(crate) cancel: AtomicBool,
    pub(crate) hook_failed: AtomicBool,
}

/// The capping of one slot: a session has one slot, the batch engine one per request slot.
#[derive(Debug)]
pub(crate) struct CapSlot {
    /// The resolved plan (`None`: uncapped).
    pub(crate) plan: Option<CapPlan>,
    /// Switched on (a session may keep its plan but run uncapped for a while).
    pub(crate) enabled: bool,
    /// Telemetry per block.
    pub(crate) stats: Vec<LayerStats>,
    /// Bumped whenever the plan or `enabled` may have changed, so the graph path knows when
    /// to upload this slot's data again.
    pub(crate) version: u64,
    /// H-neuron suppression (`None`: none), checked against the model's graph.
    pub(crate) suppress: Option<std::sync::Arc<HSuppress>>,
    /// Suppression switched on (a request may run without it).
    pub(crate) suppress_enabled: bool,
    /// Rows scaled per block since the last reset.
    pub(crate) suppress_rows: Vec<u64>,
}

impl CapSlot {
    fn new(n_layer: usize) -> Self {
        Self {
            plan: None,
            enabled: true,
            stats: vec![LayerStats::default(); n_layer],
            version: 0,
            suppress: None,
            suppress_enabled: true,
            suppress_rows: vec![0; n_layer],
        }
    }

    /// Telemetry of every block the suppression names.
    pub(crate) fn suppress_stats(&self) -> Vec<super::SuppressStats> {
        let Some(h) = self.suppress.as_deref() else {
            return Vec::new();
        };
        h.blocks()
            .iter()
            .map(|(b, _)| super::SuppressStats {
                block: *b,
                neurons: h.suppressed_in(*b),
                rows: self.suppress_rows.get(*b as usize).copied().unwrap_or(0),
            })
            .collect()
    }

    /// The suppression that applies to this slot's rows now.
    pub(crate) fn active_suppress(&self) -> Option<&HSuppress> {
        self.suppress.as_deref().filter(|_| self.suppress_enabled)
    }

    /// Whether this slot's active suppression scales block `layer`.
    pub(crate) fn suppresses(&self, layer: usize) -> bool {
        self.active_suppress()
            .is_some_and(|h| h.scales(layer as u32).is_some())
    }

    /// The plan that applies to this slot's rows now.
    pub(crate) fn active(&self) -> Option<&CapPlan> {
        self.plan.as_ref().filter(|_| self.enabled)
    }

    /// Whether this slot's active plan caps `layer`.
    pub(crate) fn caps(&self, layer: usize) -> bool {
        self.active()
            .is_some_and(|p| p.layers.get(layer).is_some_and(Option::is_some))
    }

    /// Zeroes the telemetry.
    pub(crate) fn reset_stats(&mut self) {
        self.stats
            .iter_mut()
            .for_each(|s| *s = LayerStats::default());
        self.suppress_rows.iter_mut().for_each(|r| *r = 0);
    }

    /// `(block, stats)` for every block the plan caps.
    pub(crate) fn capped_stats(&self) -> Vec<(u32, LayerStats)> {
        let Some(plan) = self.plan.as_ref() else {
            return Vec::new();
        };
        plan.capped_layers()
            .map(|(l, _)| (l, self.stats[l as usize]))
            .collect()
    }
}

/// State of the eval callback, owned by the raw context (`crate::llama::Context`), which hands
/// llama.cpp a pointer to it and touches it only outside `llama_decode`.
///
/// Which plan applies to a row: with one slot, slot 0's for every row; with several, the slot
/// recorded for that row of the batch (`rows`, or `out_rows` in the last block, which only
/// holds the output rows).
pub(crate) struct Hooks {
    n_embd: usize,
    pub(crate) slots: Vec<CapSlot>,
    /// The slot of every token of the batch, in order (recorded only with several slots).
    pub(crate) rows: Vec<u32>,
    /// The slot of every output row (tokens whose logits were requested), in order.
    pub(crate) out_rows: Vec<u32>,
    /// How often each block's `l_out` was offered during the current decode.
    pub(crate) seen: Vec<u32>,
    /// The names (without `-L`) of the model's FFN activation feeding `ffn_down`, if acap
    /// knows them for its architecture.
    ffn_names: Option<&'static [&'static str]>,
    /// The width of each block's FFN activation as offered during the current decode (0:
    /// not offered).
    pub(crate) ffn_width: Vec<usize>,
    pub(crate) observer: Option<Observer>,
    scratch: Vec<f32>,
    /// Why the last decode failed inside the callback (a panic or an unusable tensor).
    pub(crate) failure: Option<String>,
    flags: std::sync::Arc<Flags>,
    /// Where the cap runs.
    path: CapPath,
    /// The graph path's state (device buffers, created when first needed).
    graph: GraphCapper,
    /// Why the graph path could not be set up (`auto` then caps through host copies).
    pub(crate) graph_unavailable: Option<String>,
}

impl Hooks {
    pub(crate) fn new(
        n_layer: u32,
        n_embd: u32,
        n_slots: u32,
        (n_batch, n_ubatch): (u32, u32),
        path: CapPath,
        flags: std::sync::Arc<Flags>,
        ffn_names: Option<&'static [&'static str]>,
    ) -> Self {
        let n_slots = n_slots.max(1) as usize;
        let rows = if n_slots > 1 { n_batch as usize } else { 0 };
        Self {
            path,
            graph_unavailable: None,
            graph: GraphCapper::new(
                n_embd as usize,
                n_layer as usize,
                n_slots,
                n_batch as usize,
                n_ubatch as usize,
            ),
            n_embd: n_embd as usize,
            slots: (0..n_slots)
                .map(|_| CapSlot::new(n_layer as usize))
                .collect(),
            // Reserved up front: recording rows never allocates during decode steps.
            rows: Vec::with_capacity(rows),
            out_rows: Vec::with_capacity(rows),
            seen: vec![0; n_layer as usize],
            ffn_names,
            ffn_width: vec![0; n_layer as usize],
            observer: None,
            scratch: Vec::new(),
            failure: None,
            flags,
        }
    }

    pub(crate) fn set_observer(&mut self, layers: &[u32], f: ObserverFn) {
        let mut wanted = vec![false; self.seen.len()];
        for &l in layers {
            if let Some(w) = wanted.get_mut(l as usize) {
                *w = true;
            }
        }
        self.observer = Some(Observer { layers: wanted, f });
    }

    pub(crate) fn clear_observer(&mut self) {
        self.observer = None;
    }

    /// Records the slot of the next batch row (only needed when slots differ).
    pub(crate) fn record_row(&mut self, slot: u32, output: bool) {
        if self.slots.len() > 1 {
            self.rows.push(slot);
            if output {
                self.out_rows.push(slot);
            }
        }
    }

    /// Forgets the batch's rows and which blocks were offered: a new decode starts.
    pub(crate) fn start_batch(&mut self) {
        self.rows.clear();
        self.out_rows.clear();
    }

    pub(crate) fn start_decode(&mut self) {
        self.seen.iter_mut().for_each(|s| *s = 0);
        self.ffn_width.iter_mut().for_each(|w| *w = 0);
        self.graph.start_decode();
    }

    /// A decode returned: the telemetry the graph path kept on devices joins the slots'.
    pub(crate) fn finish_decode(&mut self) {
        self.graph.collect(&mut self.slots);
    }

    /// Where the cap runs.
    pub(crate) fn cap_path(&self) -> CapPath {
        self.path
    }

    /// A block some active plan caps whose `l_out` the last decode never offered.
    pub(crate) fn unseen_capped_layer(&self) -> Option<u32> {
        self.slots
            .iter()
            .filter_map(CapSlot::active)
            .flat_map(|p| p.capped_layers().map(|(l, _)| l))
            .find(|&l| self.seen.get(l as usize).is_some_and(|&n| n == 0))
    }

    /// A block some active suppression scales whose FFN activation the last decode never
    /// offered.
    pub(crate) fn unseen_suppressed_layer(&self) -> Option<u32> {
        self.slots
            .iter()
            .filter_map(CapSlot::active_suppress)
            .flat_map(|h| h.blocks().iter().map(|(b, _)| *b))
            .find(|&b| self.ffn_width.get(b as usize).is_some_and(|&w| w == 0))
    }

    /// The model's FFN activation names, if acap knows them.
    pub(crate) fn ffn_names(&self) -> Option<&'static [&'static str]> {
        self.ffn_names
    }

    fn suppressing(&self, layer: usize) -> bool {
        self.slots.iter().any(|s| s.suppresses(layer))
    }

    /// The block of an FFN activation tensor (`NAME-L` for one of the model's names).
    fn ffn_layer(&self, name: &[c_char]) -> Option<usize> {
        let names = self.ffn_names?;
        names
            .iter()
            .find_map(|n| layer_of(name, n.as_bytes()))
            .map(|l| l as usize)
            .filter(|&l| l < self.ffn_width.len())
    }

    fn capping(&self, layer: usize) -> bool {
        self.slots.iter().any(|s| s.caps(layer))
    }

    fn observing(&self, layer: usize) -> bool {
        self.observer
            .as_ref()
            .is_some_and(|o| o.layers.get(layer).copied().unwrap_or(false))
    }

    /// The "ask" phase: true exactly for `l_out-L` with L capped or observed.
    fn wants(&mut self, t: &sys::ggml_tensor) -> bool {
        let Some(layer) = l_out_layer(&t.name) else {
            return match self.ffn_layer(&t.name) {
                Some(layer) => {
                    self.ffn_width[layer] = t.ne[0].max(0) as usize;
                    self.suppressing(layer)
                }
                None => false,
            };
        };
        let layer = layer as usize;
        if layer >= self.seen.len() {
            return false;
        }
        self.seen[layer] += 1;
        self.capping(layer) || self.observing(layer)
    }

    /// Which slot each of a block output's `n_rows` rows belongs to.
    fn routing(&self, layer: usize, n_rows: usize) -> Result<Routing, String> {
        if self.slots.len() == 1 {
            Ok(Routing::One)
        } else if n_rows == self.rows.len() {
            Ok(Routing::All)
        } else if n_rows == self.out_rows.len() {
            Ok(Routing::Out)
        } else {
            Err(format!(
                "l_out-{layer} has {n_rows} rows for a batch of {} tokens ({} outputs)",
                self.rows.len(),
                self.out_rows.len()
            ))
        }
    }

    /// Caps the rows of one block's output on the host, each by its own slot's plan.
    fn cap(&mut self, layer: usize, data: &mut [f32]) -> Result<(), String> {
        let slots = match self.routing(layer, data.len() / self.n_embd)? {
            Routing::One => {
                cap_slot_rows(&mut self.slots[0], layer, data);
                return Ok(());
            }
            Routing::All => &self.rows,
            Routing::Out => &self.out_rows,
        };
        for (row, &slot) in data.chunks_exact_mut(self.n_embd).zip(slots.iter()) {
            if let Some(slot) = self.slots.get_mut(slot as usize) {
                cap_slot_rows(slot, layer, row);
            }
        }
        Ok(())
    }

    /// Caps one block's output with a ggml graph on its own backend (`device`, from
    /// `GraphCapper::device`), then lets the observer look (through a copy when the tensor is
    /// not in host memory).
    fn cap_on_device(
        &mut self,
        t: &sys::ggml_tensor,
        layer: usize,
        n: usize,
        host: bool,
        device: usize,
    ) -> Result<(), String> {
        let n_rows = n / self.n_embd;
        let routing = self.routing(layer, n_rows)?;
        self.graph.cap(
            device,
            t,
            layer,
            n_rows,
            routing,
            &mut self.slots,
            BatchRows {
                all: &self.rows,
                out: &self.out_rows,
            },
        )?;
        let Some(obs) = self.observer.as_mut().filter(|o| o.layers[layer]) else {
            return Ok(());
        };
        let rows: &[f32] = if host {
            // SAFETY: a computed, contiguous F32 tensor in host memory holds `n` floats at
            // `data`; the capping graph has finished writing them.
            unsafe { std::slice::from_raw_parts(t.data.cast::<f32>(), n) }
        } else {
            self.scratch.resize(n, 0.0);
            // SAFETY: copies the tensor's `4 * n` bytes into a scratch buffer of that size.
            unsafe { sys::ggml_backend_tensor_get(t, self.scratch.as_mut_ptr().cast(), 0, n * 4) };
            &self.scratch
        };
        (obs.f)(&Observation {
            layer: layer as u32,
            n_embd: self.n_embd,
            rows,
        });
        Ok(())
    }

    /// The data phase: cap in place (host) or through the scratch buffer (device), then let
    /// the observer look. Returns an error when the tensor cannot be used.
    fn on_data(&mut self, t: &sys::ggml_tensor) -> Result<(), String> {
        let Some(layer) = l_out_layer(&t.name).map(|l| l as usize) else {
            return match self.ffn_layer(&t.name) {
                Some(layer) => self.on_ffn_data(t, layer),
                None => Ok(()),
            };
        };
        if t.type_ != sys::GGML_TYPE_F32 {
            return Err(format!(
                "l_out-{layer} has ggml type {}, expected F32",
                t.type_
            ));
        }
        if t.ne[0] as usize != self.n_embd {
            return Err(format!(
                "l_out-{layer} has rows of {} values, expected n_embd {}",
                t.ne[0], self.n_embd
            ));
        }
        // SAFETY: `t` is a live tensor handed to us by the scheduler.
        if !unsafe { sys::ggml_is_contiguous(t) } {
            return Err(format!("l_out-{layer} is not contiguous"));
        }
        // SAFETY: as above.
        let n = unsafe { sys::ggml_nelements(t) } as usize;
        if n == 0 {
            return Ok(());
        }
        let host = is_host(t);
        let cap = self.capping(layer);
        if cap && let Some(d) = self.graph_device(t, host, "capping")? {
            return self.cap_on_device(t, layer, n, host, d);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        // SAFETY: `t` is a computed, contiguous F32 tensor of `n` values (checked above).
        let capped = unsafe {
            with_host_rows(t, n, host, &mut scratch, |data| {
                let capped = if cap { self.cap(layer, data) } else { Ok(()) };
                if capped.is_ok()
                    && let Some(obs) = self.observer.as_mut().filter(|o| o.layers[layer])
                {
                    (obs.f)(&Observation {
                        layer: layer as u32,
                        n_embd: self.n_embd,
                        rows: data,
                    });
                }
                let changed = cap && capped.is_ok();
                (capped, changed)
            })
        };
        self.scratch = scratch;
        capped
    }
}

/// Whether `t`'s data is in host memory (a null buffer means plain host memory).
fn is_host(t: &sys::ggml_tensor) -> bool {
    // SAFETY: a non-null buffer of a live tensor; a read-only query.
    t.buffer.is_null() || unsafe { sys::ggml_backend_buffer_is_host(t.buffer) }
}

/// Runs `f` on `t`'s `n` floats: in place in host memory, or on a copy in `scratch` written
/// back to the device when `f` says it changed them.
///
/// # Safety
/// `t` is a computed, contiguous F32 tensor of `n` values that nothing else reads or writes
/// until the eval callback returns.
unsafe fn with_host_rows<R>(
    t: &sys::ggml_tensor,
    n: usize,
    host: bool,
    scratch: &mut Vec<f32>,
    f: impl FnOnce(&mut [f32]) -> (R, bool),
) -> R {
    if host {
        // SAFETY: per this function's contract, `data` holds `n` floats only we touch now.
        let data = unsafe { std::slice::from_raw_parts_mut(t.data.cast::<f32>(), n) };
        return f(data).0;
    }
    scratch.resize(n, 0.0);
    // SAFETY: copies the tensor's `4 * n` bytes into a scratch buffer of that size.
    unsafe { sys::ggml_backend_tensor_get(t, scratch.as_mut_ptr().cast(), 0, n * 4) };
    let (out, changed) = f(scratch);
    if changed {
        // SAFETY: writes the `4 * n` changed bytes back into the device tensor.
        unsafe {
            sys::ggml_backend_tensor_set(
                (t as *const sys::ggml_tensor).cast_mut(),
                scratch.as_ptr().cast(),
                0,
                n * 4,
            )
        };
    }
    out
}

impl Hooks {
    /// The data phase of an FFN activation: each row scaled by its slot's suppression vector
    /// of the block, on the host or through a graph on the tensor's device.
    fn on_ffn_data(&mut self, t: &sys::ggml_tensor, layer: usize) -> Result<(), String> {
        let label = || format!("{} (block {layer}'s FFN activation)", tensor_name(t));
        if t.type_ != sys::GGML_TYPE_F32 {
            return Err(format!(
                "{} has ggml type {}, expected F32",
                label(),
                t.type_
            ));
        }
        let n_ff = t.ne[0].max(0) as usize;
        for slot in self.slots.iter().filter(|s| s.suppresses(layer)) {
            let want = slot
                .active_suppress()
                .and_then(|h| h.scales(layer as u32))
                .map_or(0, <[f32]>::len);
            if want != n_ff {
                return Err(format!(
                    "{} has rows of {n_ff} values, the suppression vector {want}",
                    label()
                ));
            }
        }
        // SAFETY: `t` is a live tensor handed to us by the scheduler.
        if !unsafe { sys::ggml_is_contiguous(t) } {
            return Err(format!("{} is not contiguous", label()));
        }
        // SAFETY: as above.
        let n = unsafe { sys::ggml_nelements(t) } as usize;
        if n == 0 || n_ff == 0 {
            return Ok(());
        }
        let n_rows = n / n_ff;
        let routing = self.routing(layer, n_rows)?;
        let host = is_host(t);
        if let Some(d) = self.graph_device(t, host, "suppressing")? {
            let rows = BatchRows {
                all: &self.rows,
                out: &self.out_rows,
            };
            return self
                .graph
                .suppress(d, t, layer, n_ff, n_rows, routing, &mut self.slots, rows);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let (all, out, slots) = (&self.rows, &self.out_rows, &mut self.slots);
        // SAFETY: `t` is a computed, contiguous F32 tensor of `n` values (checked above).
        unsafe {
            with_host_rows(t, n, host, &mut scratch, |data| {
                for (row, z) in data.chunks_exact_mut(n_ff).enumerate() {
                    let slot = match routing {
                        Routing::One => 0,
                        Routing::All => all[row] as usize,
                        Routing::Out => out[row] as usize,
                    };
                    let Some(slot) = slots.get_mut(slot) else {
                        continue;
                    };
                    let Some(scales) = slot.active_suppress().and_then(|h| h.scales(layer as u32))
                    else {
                        continue;
                    };
                    for (x, s) in z.iter_mut().zip(scales) {
                        *x *= s;
                    }
                    slot.suppress_rows[layer] += 1;
                }
                ((), true)
            });
        }
        self.scratch = scratch;
        Ok(())
    }

    /// The device whose graph edits `t` in place, or `None` for the host loop: by
    /// `ACAP_CAP_PATH`, with `auto` falling back to host copies (said once) where the graph
    /// path cannot run. A tensor outside any buffer (plain host memory) always takes the host
    /// loop.
    ///
    /// # Errors
    /// The graph path was asked for explicitly and cannot run.
    fn graph_device(
        &mut self,
        t: &sys::ggml_tensor,
        host: bool,
        what: &str,
    ) -> Result<Option<usize>, String> {
        let on_device = match self.path {
            CapPath::Auto => !host,
            CapPath::Host => false,
            CapPath::Graph => true,
        };
        if !on_device || t.buffer.is_null() || self.graph_unavailable.is_some() {
            return Ok(None);
        }
        match self.graph.device(t) {
            Ok(d) => Ok(Some(d)),
            Err(e) if self.path == CapPath::Graph => Err(e),
            Err(e) => {
                log::warn!("{what} through host copies: {e}");
                self.graph_unavailable = Some(e);
                Ok(None)
            }
        }
    }
}

/// Caps `rows` (one or more rows of block `layer`) by `slot`'s plan, if it caps that block.
fn cap_slot_rows(slot: &mut CapSlot, layer: usize, rows: &mut [f32]) {
    let Some(plan) = slot.plan.as_ref().filter(|_| slot.enabled) else {
        return;
    };
    let Some(planned) = plan.layers.get(layer).and_then(Option::as_ref) else {
        return;
    };
    let started = std::time::Instant::now();
    let stats = &mut slot.stats[layer];
    cap_rows(rows, &planned.axis, planned.tau, plan.alpha, stats);
    stats.nanos += started.elapsed().as_nanos() as u64;
}

/// Parses `l_out-L` (L in canonical decimal) from a tensor name, without allocating.
fn l_out_layer(name: &[c_char]) -> Option<u32> {
    layer_of(name, b"l_out")
}

/// Parses `STEM-L` (L in canonical decimal) from a tensor name, without allocating.
fn layer_of(name: &[c_char], stem: &[u8]) -> Option<u32> {
    let n = stem.len() + 1;
    if name.len() <= n
        || name.iter().zip(stem).any(|(&c, &p)| c as u8 != p)
        || name[stem.len()] as u8 != b'-'
    {
        return None;
    }
    let digits = &name[n..];
    let mut value: u32 = 0;
    let mut len = 0;
    for &c in digits {
        let b = c as u8;
        if b == 0 {
            break;
        }
        if !b.is_ascii_digit() || (len == 1 && value == 0) {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
        len += 1;
    }
    // A name without a terminating NUL, or `l_out-` alone, is not ours.
    (len > 0 && len < digits.len()).then_some(value)
}

/// The `cb_eval` trampoline. Never unwinds: a panic is caught, recorded, and the computation
/// aborted; the session turns it into an error once `llama_decode` returns.
pub(crate) unsafe extern "C" fn eval_trampoline(
    t: *mut sys::ggml_tensor,
    ask: bool,
    user: *mut c_void,
) -> bool {
    if t.is_null() || user.is_null() {
        return false;
    }
    // SAFETY: `user` is the `Hooks` the raw context allocated (`Box::into_raw`) before the
    // llama context and frees after it; the context only reaches it outside `llama_decode`,
    // which it calls with `&mut self`, so this is the only reference while the graph runs.
    let hooks = unsafe { &mut *user.cast::<Hooks>() };
    if hooks.failure.is_some() {
        return false;
    }
    // SAFETY: the scheduler passes a live tensor.
    let t = unsafe { &*t };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if ask {
            Ok(hooks.wants(t))
        } else {
            hooks.on_data(t).map(|()| true)
        }
    }));
    let failure = match outcome {
        Ok(Ok(b)) => return b,
        Ok(Err(msg)) => msg,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            format!("panic in the eval callback: {msg}")
        }
    };
    hooks.failure = Some(failure);
    hooks.flags.hook_failed.store(true, Ordering::SeqCst);
    false
}

#[cfg(test)]
mod tests {
    use super::{l_out_layer, layer_of};

    fn name(s: &str) -> [std::ffi::c_char; 64] {
        let mut n = [0; 64];
        for (d, b) in n.iter_mut().zip(s.bytes()) {
            *d = b as std::ffi::c_char;
        }
        n
    }

    #[test]
    fn parses_exact_l_out_names_only() {
        assert_eq!(l_out_layer(&name("l_out-0")), Some(0));
        assert_eq!(l_out_layer(&name("l_out-22")), Some(22));
        for bad in [
            "l_out-",
            "l_out-022",
            "l_out-2a",
            "l_out-22 (copy)",
            "ffn_out-22",
            "l_out_22",
            "l_out",
        ] {
            assert_eq!(l_out_layer(&name(bad)), None, "{bad}");
        }
        let full = [b'1' as std::ffi::c_char; 64];
        assert_eq!(l_out_layer(&full), None);
        assert_eq!(layer_of(&name("ffn_swiglu-3"), b"ffn_swiglu"), Some(3));
        assert_eq!(layer_of(&name("ffn_swiglu_limited-3"), b"ffn_swiglu"), None);
        assert_eq!(
            layer_of(&name("ffn_sqr(relu)-12"), b"ffn_sqr(relu)"),
            Some(12)
        );
    }
}
