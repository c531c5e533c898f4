//! The graph path: the cap as a small ggml graph computed on the block output's own backend,
//! so a block output in GPU memory is capped on the GPU and never copied to the host.
//!
//! For a block output `h` (`n` rows of `n_embd`), the block's unit axes of the `S` capping
//! slots as the columns of `A` (`[n_embd, S]`) and per-slot `tau` and `alpha`:
//!
//! ```text
//! P = Aᵀ h                [S, n]       ggml_mul_mat
//! E = relu(P - tau)       [S, n]       (times the one-hot row-to-slot mask when S > 1)
//! K = alpha · Eᵀ          [n, S]
//! h = h - A Kᵀ            [n_embd, n]  ggml_out_prod, written into h's own memory
//! ```
//!
//! A slot that does not cap the block has `tau = +inf` and `alpha = 0`, so its `E` is 0
//! whatever `A` holds. Telemetry per slot and block (rows capped `Σ step(E)`, `Σ E`, `max E`)
//! is accumulated on the device and read back in one small transfer per decode.
//!
//! Everything that outlives one call (the backend, the axes, thresholds and routing masks,
//! the telemetry, the graph's own memory) is allocated once per context and device; a call
//! only rebuilds the graph's metadata in memory it already owns. Slot data is uploaded when a
//! slot's plan changes (its `version`), the routing masks once per decode.

use std::ptr::{NonNull, null_mut};

use llama_cpp_sys_2 as sys;

use super::hooks::CapSlot;

mod scale;

/// Room for the graph's tensors (it has about 30).
const GRAPH_SIZE: usize = 64;

/// Which rows of the batch one callback call sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Routing {
    /// One slot: every row is slot 0's.
    One,
    /// Every token of the batch, in order.
    All,
    /// Only the output rows (the last block).
    Out,
}

impl Routing {
    fn index(self) -> usize {
        usize::from(self == Self::Out)
    }
}

/// The slot of every row of the batch being decoded (recorded only with several slots).
#[derive(Clone, Copy)]
pub(crate) struct BatchRows<'a> {
    /// Every token's slot, in order.
    pub(crate) all: &'a [u32],
    /// Every output row's slot, in order.
    pub(crate) out: &'a [u32],
}

/// The graph path of one context: one [`DeviceCapper`] per device that has offered a capped
/// block output.
pub(crate) struct GraphCapper {
    n_embd: usize,
    n_layer: usize,
    n_slots: usize,
    n_batch: usize,
    n_rows_max: usize,
    devices: Vec<DeviceCapper>,
    /// Counts decodes, so the masks are built and uploaded once per decode.
    decode: u64,
    /// Host staging of the two routing masks (`[S, n_batch]` each: all rows, output rows).
    mask: Vec<f32>,
    mask_built: u64,
    /// Rows per slot in the current batch: `[all rows | output rows]`, `S` each.
    counts: Vec<u64>,
    /// Host staging for the telemetry read-back.
    stats: Vec<f32>,
}

impl GraphCapper {
    pub(crate) fn new(
        n_embd: usize,
        n_layer: usize,
        n_slots: usize,
        n_batch: usize,
        n_rows_max: usize,
    ) -> Self {
        let masked = n_slots > 1;
        Self {
            n_embd,
            n_layer,
            n_slots,
            n_batch,
            n_rows_max: n_rows_max.max(1),
            devices: Vec::new(),
            decode: 1,
            mask: if masked {
                vec![0.0; 2 * n_slots * n_batch]
            } else {
                Vec::new()
            },
            mask_built: 0,
            counts: vec![0; 2 * n_slots],
            stats: Vec::new(),
        }
    }

    /// A new decode starts: the routing changes.
    pub(crate) fn start_decode(&mut self) {
        self.decode += 1;
    }

    /// Caps `t` (block `layer`, `n_rows` rows) on its device (the index [`Self::device`]
    /// returned for it), each row by its slot's plan, and counts the rows each capping slot saw.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn cap(
        &mut self,
        d: usize,
        t: &sys::ggml_tensor,
        layer: usize,
        n_rows: usize,
        routing: Routing,
        slots: &mut [CapSlot],
        rows: BatchRows<'_>,
    ) -> Result<(), String> {
        self.check_rows(n_rows, || format!("l_out-{layer}"))?;
        let started = std::time::Instant::now();
        self.sync_mask(d, routing, rows);
        let dev = &mut self.devices[d];
        dev.sync_slots(slots, self.n_embd, self.n_layer);
        dev.compute(t, layer, n_rows, routing, self.n_batch)?;
        let nanos = started.elapsed().as_nanos() as u64;
        for (s, slot) in slots.iter_mut().enumerate() {
            if !slot.caps(layer) {
                continue;
            }
            let stats = &mut slot.stats[layer];
            stats.rows_seen += self.rows_of(routing, n_rows, s);
            stats.nanos += nanos;
        }
        Ok(())
    }

    /// Builds this decode's routing masks and puts them on device `d`, once per decode.
    fn sync_mask(&mut self, d: usize, routing: Routing, rows: BatchRows<'_>) {
        if routing == Routing::One {
            return;
        }
        self.build_mask(rows);
        let dev = &mut self.devices[d];
        if dev.mask_uploaded != self.decode {
            dev.upload_mask(&self.mask, rows.all.len(), rows.out.len(), self.n_batch);
            dev.mask_uploaded = self.decode;
        }
    }

    /// Rows of slot `s` among the `n_rows` one call sees.
    fn rows_of(&self, routing: Routing, n_rows: usize, s: usize) -> u64 {
        match routing {
            Routing::One => n_rows as u64,
            r => self.counts[r.index() * self.n_slots + s],
        }
    }

    /// A tensor (`what`) of `n_rows` rows fits the graphs, which are built for one physical
    /// batch.
    fn check_rows(&self, n_rows: usize, what: impl FnOnce() -> String) -> Result<(), String> {
        if n_rows > self.n_rows_max {
            return Err(format!(
                "{} has {n_rows} rows, more than the physical batch ({})",
                what(),
                self.n_rows_max
            ));
        }
        Ok(())
    }

    /// Scales `t` (block `layer`'s FFN activation, `n_rows` rows of `n_ff`) on its device
    /// (the index [`Self::device`] returned for it), each row by its slot's vector, and
    /// counts the rows each suppressing slot saw.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn suppress(
        &mut self,
        d: usize,
        t: &sys::ggml_tensor,
        layer: usize,
        n_ff: usize,
        n_rows: usize,
        routing: Routing,
        slots: &mut [CapSlot],
        rows: BatchRows<'_>,
    ) -> Result<(), String> {
        self.check_rows(n_rows, || format!("the FFN activation of block {layer}"))?;
        self.sync_mask(d, routing, rows);
        let dev = &mut self.devices[d];
        dev.suppress(
            t,
            layer,
            n_ff,
            n_rows,
            routing,
            slots,
            self.n_batch,
            self.n_layer,
        )?;
        for (s, slot) in slots.iter_mut().enumerate() {
            if slot.suppresses(layer) {
                slot.suppress_rows[layer] += self.rows_of(routing, n_rows, s);
            }
        }
        Ok(())
    }

    /// Reads the telemetry accumulated on the devices during the last decode into `slots`
    /// and zeroes it there.
    pub(crate) fn collect(&mut self, slots: &mut [CapSlot]) {
        let (n_slots, n_layer) = (self.n_slots, self.n_layer);
        for dev in self.devices.iter_mut().filter(|d| d.used) {
            dev.read_stats(&mut self.stats);
            dev.used = false;
            for layer in 0..n_layer {
                for (s, slot) in slots.iter_mut().enumerate() {
                    let at = |k: usize| self.stats[(layer * 3 + k) * n_slots + s];
                    let capped = at(0);
                    if capped > 0.0 {
                        let st = &mut slot.stats[layer];
                        st.rows_capped += capped.round() as u64;
                        st.sum_excess += f64::from(at(1));
                        st.max_excess = st.max_excess.max(at(2));
                    }
                }
            }
        }
    }

    /// Builds the host masks and row counts for this decode's batch (once per decode).
    fn build_mask(&mut self, rows: BatchRows<'_>) {
        if self.mask_built == self.decode {
            return;
        }
        let s = self.n_slots;
        self.counts.iter_mut().for_each(|c| *c = 0);
        for (k, list) in [rows.all, rows.out].into_iter().enumerate() {
            let base = k * s * self.n_batch;
            let mask = &mut self.mask[base..base + list.len().min(self.n_batch) * s];
            mask.iter_mut().for_each(|m| *m = 0.0);
            for (row, &slot) in mask.chunks_exact_mut(s).zip(list) {
                if let Some(m) = row.get_mut(slot as usize) {
                    *m = 1.0;
                    self.counts[k * s + slot as usize] += 1;
                }
            }
        }
        self.mask_built = self.decode;
    }

    /// The index of the capper for `t`'s device, created the first time the device is seen.
    /// An error here (no backend, an op the backend lacks, no device memory) comes before
    /// anything was changed.
    pub(crate) fn device(&mut self, t: &sys::ggml_tensor) -> Result<usize, String> {
        // SAFETY: `t.buffer` is the live buffer the scheduler allocated `t` in (checked
        // non-null by the caller); these only read its type and that type's device.
        let mut dev = unsafe {
            sys::ggml_backend_buft_get_device(sys::ggml_backend_buffer_get_type(t.buffer))
        };
        // ggml's plain CPU buffer type names no device: host memory belongs to the CPU.
        // SAFETY: as above; the CPU device is registered statically, so the lookup only
        // reads ggml's device registry.
        if dev.is_null() && unsafe { sys::ggml_backend_buffer_is_host(t.buffer) } {
            // SAFETY: as above.
            dev = unsafe { sys::ggml_backend_dev_by_type(sys::GGML_BACKEND_DEVICE_TYPE_CPU) };
        }
        if dev.is_null() {
            return Err(format!("{} lives in a buffer of no device", tensor_name(t)));
        }
        if let Some(i) = self.devices.iter().position(|d| d.dev == dev) {
            return Ok(i);
        }
        let capper = DeviceCapper::new(
            dev,
            self.n_embd,
            self.n_layer,
            self.n_slots,
            self.n_batch,
            self.n_rows_max,
        )
        .map_err(|e| format!("cannot edit {} on its device: {e}", tensor_name(t)))?;
        self.devices.push(capper);
        Ok(self.devices.len() - 1)
    }
}

/// The graph path on one device: its backend, the plan data in its memory, and the memory the
/// per-call graph is built and computed in.
struct DeviceCapper {
    dev: sys::ggml_backend_dev_t,
    backend: NonNull<sys::ggml_backend>,
    /// The CPU backend's thread pool (null on other devices): without one ggml creates and
    /// frees a pool for every graph.
    threadpool: sys::ggml_threadpool_t,
    /// Holds the metadata of the tensors below (`no_alloc`).
    params_ctx: NonNull<sys::ggml_context>,
    params_buf: sys::ggml_backend_buffer_t,
    /// `[n_embd, S, n_layer]`: slot `s`'s unit axis of block `l` at column `l * S + s`.
    axes: *mut sys::ggml_tensor,
    /// `[S, 2, n_layer]`: per block, the slots' `tau`, then their `alpha`.
    tau_alpha: *mut sys::ggml_tensor,
    /// `[S, n_batch, 2]`: the one-hot row-to-slot masks (all rows, output rows).
    mask: *mut sys::ggml_tensor,
    /// `[S, 3, n_layer]`: per block, rows capped, sum of excess, max excess.
    acc: *mut sys::ggml_tensor,
    tau_alpha_host: Vec<f32>,
    /// The graph context's memory; the context only refers to it.
    _graph_mem: Vec<u8>,
    graph_ctx: NonNull<sys::ggml_context>,
    galloc: sys::ggml_gallocr_t,
    /// The slot versions whose data is on the device (`u64::MAX`: none yet).
    versions: Vec<u64>,
    mask_uploaded: u64,
    /// Telemetry was accumulated since the last read-back.
    used: bool,
    n_slots: usize,
    n_embd: usize,
    /// The most rows one call sees (the physical batch).
    n_rows_max: usize,
    /// H-neuron suppression's vectors (created when a suppressed activation first comes).
    scales: Option<scale::DeviceScales>,
}

impl Drop for DeviceCapper {
    fn drop(&mut self) {
        // The suppression vectors live in this backend's memory: freed first.
        self.scales = None;
        // SAFETY: every handle was created in `new` and is freed once, here: the allocator
        // and contexts before the buffer they describe, the backend before its thread pool.
        unsafe {
            sys::ggml_gallocr_free(self.galloc);
            sys::ggml_free(self.graph_ctx.as_ptr());
            sys::ggml_backend_buffer_free(self.params_buf);
            sys::ggml_free(self.params_ctx.as_ptr());
            sys::ggml_backend_free(self.backend.as_ptr());
            if !self.threadpool.is_null() {
                sys::ggml_threadpool_free(self.threadpool);
            }
        }
    }
}

/// Frees what `DeviceCapper::new` created before it failed.
struct Partial {
    backend: sys::ggml_backend_t,
    threadpool: sys::ggml_threadpool_t,
    params_ctx: *mut sys::ggml_context,
    params_buf: sys::ggml_backend_buffer_t,
    graph_ctx: *mut sys::ggml_context,
}

impl Drop for Partial {
    fn drop(&mut self) {
        // SAFETY: each handle is null or was created by `DeviceCapper::new` and not yet handed
        // to a `DeviceCapper` (which nulls them here when it takes them over).
        unsafe {
            if !self.graph_ctx.is_null() {
                sys::ggml_free(self.graph_ctx);
            }
            if !self.params_buf.is_null() {
                sys::ggml_backend_buffer_free(self.params_buf);
            }
            if !self.params_ctx.is_null() {
                sys::ggml_free(self.params_ctx);
            }
            if !self.backend.is_null() {
                sys::ggml_backend_free(self.backend);
            }
            if !self.threadpool.is_null() {
                sys::ggml_threadpool_free(self.threadpool);
            }
        }
    }
}

/// A tensor's name, for messages.
pub(crate) fn tensor_name(t: &sys::ggml_tensor) -> String {
    let bytes: Vec<u8> = t
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn nonnull<T>(p: *mut T, what: &str) -> Result<NonNull<T>, String> {
    NonNull::new(p).ok_or_else(|| format!("{what} failed"))
}

impl DeviceCapper {
    fn new(
        dev: sys::ggml_backend_dev_t,
        n_embd: usize,
        n_layer: usize,
        n_slots: usize,
        n_batch: usize,
        n_rows_max: usize,
    ) -> Result<Self, String> {
        let mut p = Partial {
            backend: null_mut(),
            threadpool: null_mut(),
            params_ctx: null_mut(),
            params_buf: null_mut(),
            graph_ctx: null_mut(),
        };
        let (e, s, l) = (n_embd as i64, n_slots as i64, n_layer as i64);
        // SAFETY: `dev` is a registered ggml device (from a live buffer type); the calls below
        // create objects `p` frees on failure, and build tensors only in `params_ctx` with the
        // shapes stated, which `ggml_backend_alloc_ctx_tensors` then backs with device memory.
        unsafe {
            p.backend = sys::ggml_backend_dev_init(dev, std::ptr::null());
            let backend = nonnull(p.backend, "creating a backend for the device")?;
            if sys::ggml_backend_dev_type(dev) == sys::GGML_BACKEND_DEVICE_TYPE_CPU {
                // One thread, like the host loop; a pool of its own so computing a graph
                // creates none.
                sys::ggml_backend_cpu_set_n_threads(p.backend, 1);
                let mut tpp = sys::ggml_threadpool_params_default(1);
                p.threadpool = sys::ggml_threadpool_new(&mut tpp);
                nonnull(p.threadpool, "creating a thread pool")?;
                sys::ggml_backend_cpu_set_threadpool(p.backend, p.threadpool);
            }
            p.params_ctx = sys::ggml_init(sys::ggml_init_params {
                mem_size: 8 * sys::ggml_tensor_overhead(),
                mem_buffer: null_mut(),
                no_alloc: true,
            });
            let params_ctx = nonnull(p.params_ctx, "creating a ggml context")?;
            let f32t = sys::GGML_TYPE_F32;
            let axes = sys::ggml_new_tensor_3d(p.params_ctx, f32t, e, s, l);
            let tau_alpha = sys::ggml_new_tensor_3d(p.params_ctx, f32t, s, 2, l);
            let mask = sys::ggml_new_tensor_3d(p.params_ctx, f32t, s, n_batch.max(1) as i64, 2);
            let acc = sys::ggml_new_tensor_3d(p.params_ctx, f32t, s, 3, l);
            p.params_buf = sys::ggml_backend_alloc_ctx_tensors(p.params_ctx, p.backend);
            if p.params_buf.is_null() {
                return Err(format!(
                    "allocating {} KiB for the axes on the device",
                    (n_embd * n_slots * n_layer * 4) >> 10
                ));
            }
            // Everything starts at zero: the axes of slots and blocks without a plan take part
            // in the outer product (times 0), and uninitialised memory may hold NaN, which
            // times 0 is NaN. The telemetry accumulator starts at zero too.
            sys::ggml_backend_buffer_clear(p.params_buf, 0);
            let graph_bytes = GRAPH_SIZE * sys::ggml_tensor_overhead()
                + sys::ggml_graph_overhead_custom(GRAPH_SIZE, false);
            let mut graph_mem = vec![0u8; graph_bytes];
            p.graph_ctx = sys::ggml_init(sys::ggml_init_params {
                mem_size: graph_bytes,
                mem_buffer: graph_mem.as_mut_ptr().cast(),
                no_alloc: true,
            });
            let graph_ctx = nonnull(p.graph_ctx, "creating a ggml context")?;
            let galloc =
                sys::ggml_gallocr_new(sys::ggml_backend_get_default_buffer_type(p.backend));
            if galloc.is_null() {
                return Err("creating a graph allocator failed".into());
            }
            let params_buf = p.params_buf;
            let threadpool = p.threadpool;
            // Ownership moves to the capper.
            std::mem::forget(p);
            let mut capper = Self {
                dev,
                backend,
                threadpool,
                params_ctx,
                params_buf,
                axes,
                tau_alpha,
                mask,
                acc,
                tau_alpha_host: Vec::new(),
                _graph_mem: graph_mem,
                graph_ctx,
                galloc,
                versions: vec![u64::MAX; n_slots],
                mask_uploaded: 0,
                used: false,
                n_slots,
                n_embd,
                n_rows_max,
                scales: None,
            };
            // Until a slot's plan arrives, no slot caps anything.
            capper.tau_alpha_host = (0..n_layer * 2 * n_slots)
                .map(|i| {
                    if (i / n_slots) % 2 == 0 {
                        f32::INFINITY
                    } else {
                        0.0
                    }
                })
                .collect();
            capper.upload_tau_alpha();
            capper.reserve(n_rows_max)?;
            Ok(capper)
        }
    }

    fn upload_tau_alpha(&mut self) {
        // SAFETY: `tau_alpha` holds `S * 2 * n_layer` floats, the length of the host mirror.
        unsafe {
            sys::ggml_backend_tensor_set(
                self.tau_alpha,
                self.tau_alpha_host.as_ptr().cast(),
                0,
                self.tau_alpha_host.len() * 4,
            );
        }
    }

    /// Empties the graph context (the previous call's graph is done with) and makes in it the
    /// `[width, n_rows]` F32 tensor the graph edits, without data yet.
    ///
    /// # Safety
    /// No tensor or graph made in the graph context before may be used afterwards.
    unsafe fn new_block_tensor(&mut self, width: usize, n_rows: usize) -> *mut sys::ggml_tensor {
        // SAFETY: the context is live and sized for one graph of `GRAPH_SIZE` nodes
        // (metadata only); by this function's contract nothing made in it before is used.
        unsafe {
            sys::ggml_reset(self.graph_ctx.as_ptr());
            sys::ggml_new_tensor_2d(
                self.graph_ctx.as_ptr(),
                sys::GGML_TYPE_F32,
                width as i64,
                n_rows as i64,
            )
        }
    }

    /// Sizes the graph allocator for the largest call (`n_rows_max` rows), so later calls
    /// never reallocate. The stand-in block output is never computed.
    fn reserve(&mut self, n_rows_max: usize) -> Result<(), String> {
        let routing = if self.n_slots > 1 {
            Routing::All
        } else {
            Routing::One
        };
        // SAFETY: the graph context has room for the graph (`GRAPH_SIZE`); the stand-in `h`
        // only needs a non-null data pointer so the allocator treats it as allocated, and
        // reserving computes nothing.
        unsafe {
            let h = self.new_block_tensor(self.n_embd, n_rows_max);
            (*h).data = sys::ggml_backend_buffer_get_base(self.params_buf);
            let graph = self.build(h, 0, n_rows_max, routing, 0);
            self.check_ops(graph, "capping")?;
            if !sys::ggml_gallocr_reserve(self.galloc, graph) {
                return Err("reserving the capping graph's memory failed".into());
            }
        }
        Ok(())
    }

    /// An error naming the first op of `graph` this device's backend cannot compute.
    ///
    /// # Safety
    /// `graph` is a graph built in the graph context and not yet reset.
    unsafe fn check_ops(&self, graph: *mut sys::ggml_cgraph, what: &str) -> Result<(), String> {
        // SAFETY: by the contract, `graph` and its nodes are live; the queries only read.
        unsafe {
            for i in 0..sys::ggml_graph_n_nodes(graph) {
                let node = sys::ggml_graph_node(graph, i);
                if !sys::ggml_backend_supports_op(self.backend.as_ptr(), node) {
                    let op = std::ffi::CStr::from_ptr(sys::ggml_op_desc(node));
                    return Err(format!(
                        "the device's backend cannot compute ggml op {} ({what})",
                        op.to_string_lossy()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Uploads the data of every slot whose plan changed since the last upload.
    fn sync_slots(&mut self, slots: &[CapSlot], n_embd: usize, n_layer: usize) {
        let s_n = self.n_slots;
        let mut changed = false;
        for (s, slot) in slots.iter().enumerate().take(s_n) {
            if self.versions[s] == slot.version {
                continue;
            }
            changed = true;
            self.versions[s] = slot.version;
            let plan = slot.active();
            for l in 0..n_layer {
                let planned = plan.and_then(|p| p.layers.get(l)?.as_ref().map(|pl| (pl, p.alpha)));
                let (tau, alpha) = match planned {
                    Some((pl, alpha)) if pl.axis.len() == n_embd => {
                        // SAFETY: column `l * S + s` of `axes` holds `n_embd` floats at this
                        // offset, inside the tensor; the axis has `n_embd` floats.
                        unsafe {
                            sys::ggml_backend_tensor_set(
                                self.axes,
                                pl.axis.as_ptr().cast(),
                                (l * s_n + s) * n_embd * 4,
                                n_embd * 4,
                            );
                        }
                        (pl.tau, alpha)
                    }
                    _ => {
                        // A column that held an axis before is zeroed: its product with the
                        // zero excess must stay 0 whatever it held.
                        // SAFETY: the same column as above, inside the tensor.
                        unsafe {
                            sys::ggml_backend_tensor_memset(
                                self.axes,
                                0,
                                (l * s_n + s) * n_embd * 4,
                                n_embd * 4,
                            );
                        }
                        (f32::INFINITY, 0.0)
                    }
                };
                self.tau_alpha_host[l * 2 * s_n + s] = tau;
                self.tau_alpha_host[(l * 2 + 1) * s_n + s] = alpha;
            }
        }
        if changed {
            self.upload_tau_alpha();
        }
    }

    fn upload_mask(&mut self, mask: &[f32], n_all: usize, n_out: usize, n_batch: usize) {
        let s = self.n_slots;
        for (k, n) in [(0, n_all), (1, n_out)] {
            let n = n.min(n_batch);
            if n == 0 {
                continue;
            }
            let base = k * s * n_batch;
            // SAFETY: mask `k` starts at float `base` of the `[S, n_batch, 2]` tensor and of
            // the host staging (same layout); `n * S` floats of it are written.
            unsafe {
                sys::ggml_backend_tensor_set(
                    self.mask,
                    mask[base..].as_ptr().cast(),
                    base * 4,
                    n * s * 4,
                );
            }
        }
    }

    /// Builds the capping graph for block `layer` over `h` (`n` rows) in the graph context.
    ///
    /// # Safety
    /// `h` is an F32 `[n_embd, n]` tensor of the graph context, just reset; `layer` is a
    /// block of the model and `n` at most the mask's rows.
    unsafe fn build(
        &mut self,
        h: *mut sys::ggml_tensor,
        layer: usize,
        n: usize,
        routing: Routing,
        n_batch: usize,
    ) -> *mut sys::ggml_cgraph {
        let ctx = self.graph_ctx.as_ptr();
        let (e, s) = (self.n_embd, self.n_slots);
        let f = 4usize;
        // SAFETY: every view below lies inside its source tensor (shapes from `new`, `layer`
        // below n_layer, `n` below n_batch), and the graph has room for all nodes.
        unsafe {
            let a = sys::ggml_view_2d(ctx, self.axes, e as i64, s as i64, e * f, layer * s * e * f);
            let tau = sys::ggml_view_2d(ctx, self.tau_alpha, s as i64, 1, s * f, layer * 2 * s * f);
            let alpha =
                sys::ggml_view_2d(ctx, self.tau_alpha, 1, s as i64, f, (layer * 2 + 1) * s * f);
            let p = sys::ggml_mul_mat(ctx, a, h);
            let mut excess = sys::ggml_relu(ctx, sys::ggml_sub(ctx, p, tau));
            if routing != Routing::One {
                let m = sys::ggml_view_2d(
                    ctx,
                    self.mask,
                    s as i64,
                    n as i64,
                    s * f,
                    routing.index() * s * n_batch * f,
                );
                excess = sys::ggml_mul(ctx, excess, m);
            }
            let et = sys::ggml_cont(ctx, sys::ggml_transpose(ctx, excess));
            let k = sys::ggml_mul(ctx, et, alpha);
            let d = sys::ggml_out_prod(ctx, a, k);
            let out = sys::ggml_sub_inplace(ctx, h, d);

            let acc = |k: usize| {
                sys::ggml_view_2d(ctx, self.acc, 1, s as i64, f, (layer * 3 + k) * s * f)
            };
            let count = sys::ggml_sum_rows(ctx, sys::ggml_step(ctx, et));
            let sum = sys::ggml_sum_rows(ctx, et);
            let at = sys::ggml_reshape_2d(ctx, sys::ggml_argmax(ctx, et), 1, s as i64);
            let rows3 = sys::ggml_reshape_3d(ctx, et, 1, n as i64, s as i64);
            let max = sys::ggml_reshape_2d(ctx, sys::ggml_get_rows(ctx, rows3, at), 1, s as i64);
            let count_acc = sys::ggml_add_inplace(ctx, acc(0), count);
            let sum_acc = sys::ggml_add_inplace(ctx, acc(1), sum);
            // max(a, b) = (a + b + |a - b|) / 2: ggml has no element-wise maximum.
            let old = acc(2);
            let both = sys::ggml_add(ctx, old, max);
            let gap = sys::ggml_abs(ctx, sys::ggml_sub(ctx, old, max));
            let new_max = sys::ggml_scale(ctx, sys::ggml_add(ctx, both, gap), 0.5);
            let max_acc = sys::ggml_cpy(ctx, new_max, acc(2));

            let graph = sys::ggml_new_graph_custom(ctx, GRAPH_SIZE, false);
            for t in [out, count_acc, sum_acc, max_acc] {
                sys::ggml_build_forward_expand(graph, t);
            }
            graph
        }
    }

    /// Caps `t` in place by computing the graph on this device.
    fn compute(
        &mut self,
        t: &sys::ggml_tensor,
        layer: usize,
        n: usize,
        routing: Routing,
        n_batch: usize,
    ) -> Result<(), String> {
        // SAFETY: the graph context was reset, so it has room; `h` is given `t`'s buffer and
        // address, so the graph reads and writes `t`'s memory (a computed, contiguous F32
        // tensor of `n` rows of `n_embd`, checked by the caller) and nothing else of it.
        unsafe {
            let h = self.new_block_tensor(self.n_embd, n);
            let status = sys::ggml_backend_tensor_alloc(t.buffer, h, t.data);
            if status != sys::GGML_STATUS_SUCCESS {
                return Err(format!(
                    "l_out-{layer}: cannot address its memory ({status})"
                ));
            }
            let graph = self.build(h, layer, n, routing, n_batch);
            if !sys::ggml_gallocr_alloc_graph(self.galloc, graph) {
                return Err(format!(
                    "l_out-{layer}: allocating the capping graph failed"
                ));
            }
            let status = sys::ggml_backend_graph_compute(self.backend.as_ptr(), graph);
            if status != sys::GGML_STATUS_SUCCESS {
                return Err(format!(
                    "l_out-{layer}: the capping graph failed ({status})"
                ));
            }
        }
        self.used = true;
        Ok(())
    }

    /// Copies the telemetry into `into` (resized once) and zeroes it on the device.
    fn read_stats(&mut self, into: &mut Vec<f32>) {
        // SAFETY: `acc` is a live F32 tensor of `nbytes / 4` floats; `into` gets that many.
        unsafe {
            let bytes = sys::ggml_nbytes(self.acc);
            into.resize(bytes / 4, 0.0);
            sys::ggml_backend_tensor_get(self.acc, into.as_mut_ptr().cast(), 0, bytes);
            sys::ggml_backend_tensor_memset(self.acc, 0, 0, bytes);
        }
    }
}
