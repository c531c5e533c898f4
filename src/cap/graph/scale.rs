//! The graph path of H-neuron suppression: the FFN activation `z` (`n` rows of `n_ff`) is
//! scaled in place on its own device, each row by its slot's vector of that block.
//!
//! The slots' vectors of every block are the columns of `V` (`[n_ff_max, S, n_layer]`; all
//! ones for a slot that does not suppress the block). With one slot `z = z (.) v`
//! (broadcast over rows); with several, each row's vector is picked by the one-hot
//! row-to-slot mask `M` (`[S, n]`, the capping graph's): `z = z (.) (V Mᵀ)` through
//! `ggml_out_prod`, which is exact because each row sums one vector and zeros.

use std::ptr::{NonNull, null_mut};
use std::sync::Arc;

use llama_cpp_sys_2 as sys;

use super::{DeviceCapper, GRAPH_SIZE, Routing, nonnull};
use crate::cap::hooks::CapSlot;
use crate::cap::hsuppress::HSuppress;

/// What a slot's column data was last uploaded from: its file (by address) and switch.
type Uploaded = Option<(*const HSuppress, bool)>;

/// The suppression vectors in one device's memory, and the allocator of their graph.
pub(super) struct DeviceScales {
    ctx: NonNull<sys::ggml_context>,
    buf: sys::ggml_backend_buffer_t,
    /// `[n_ff, S, n_layer]`: slot `s`'s scales of block `l` at column `l * S + s`.
    scales: *mut sys::ggml_tensor,
    galloc: sys::ggml_gallocr_t,
    /// Per slot, what its columns hold (`None` and `Some((null, _))`: all ones).
    uploaded: Vec<Uploaded>,
    /// The column length (the widest FFN activation of the files seen).
    pub(super) n_ff: usize,
    ones: Vec<f32>,
}

impl Drop for DeviceScales {
    fn drop(&mut self) {
        // SAFETY: the three handles were created in `new` and are freed once, here: the
        // allocator and the context before the buffer backing the context's tensor.
        unsafe {
            sys::ggml_gallocr_free(self.galloc);
            sys::ggml_backend_buffer_free(self.buf);
            sys::ggml_free(self.ctx.as_ptr());
        }
    }
}

impl DeviceScales {
    fn new(
        backend: NonNull<sys::ggml_backend>,
        n_ff: usize,
        n_slots: usize,
        n_layer: usize,
    ) -> Result<Self, String> {
        // SAFETY: a live backend; the context holds one tensor's metadata, which
        // `ggml_backend_alloc_ctx_tensors` backs with device memory; failures free what was
        // made before returning.
        unsafe {
            let ctx = sys::ggml_init(sys::ggml_init_params {
                mem_size: 2 * sys::ggml_tensor_overhead(),
                mem_buffer: null_mut(),
                no_alloc: true,
            });
            let ctx = nonnull(ctx, "creating a ggml context")?;
            let scales = sys::ggml_new_tensor_3d(
                ctx.as_ptr(),
                sys::GGML_TYPE_F32,
                n_ff as i64,
                n_slots as i64,
                n_layer as i64,
            );
            let buf = sys::ggml_backend_alloc_ctx_tensors(ctx.as_ptr(), backend.as_ptr());
            if buf.is_null() {
                sys::ggml_free(ctx.as_ptr());
                return Err(format!(
                    "allocating {} KiB for the suppression vectors on the device",
                    (n_ff * n_slots * n_layer * 4) >> 10
                ));
            }
            let galloc =
                sys::ggml_gallocr_new(sys::ggml_backend_get_default_buffer_type(backend.as_ptr()));
            if galloc.is_null() {
                sys::ggml_backend_buffer_free(buf);
                sys::ggml_free(ctx.as_ptr());
                return Err("creating a graph allocator failed".into());
            }
            let mut me = Self {
                ctx,
                buf,
                scales,
                galloc,
                uploaded: vec![None; n_slots],
                n_ff,
                ones: vec![1.0; n_ff],
            };
            for s in 0..n_slots {
                for l in 0..n_layer {
                    me.set_column(l, s, n_slots, None);
                }
            }
            Ok(me)
        }
    }

    /// Writes slot `s`'s column of block `l`: `scales`, padded with ones, or all ones.
    fn set_column(&mut self, l: usize, s: usize, n_slots: usize, scales: Option<&[f32]>) {
        let at = (l * n_slots + s) * self.n_ff * 4;
        let scales = scales.filter(|v| v.len() <= self.n_ff).unwrap_or(&[]);
        // SAFETY: column `l * S + s` of the `[n_ff, S, n_layer]` tensor holds `n_ff` floats
        // from byte `at`; the two writes cover `scales.len()` and the rest of them.
        unsafe {
            if !scales.is_empty() {
                sys::ggml_backend_tensor_set(
                    self.scales,
                    scales.as_ptr().cast(),
                    at,
                    scales.len() * 4,
                );
            }
            let rest = self.n_ff - scales.len();
            if rest > 0 {
                sys::ggml_backend_tensor_set(
                    self.scales,
                    self.ones.as_ptr().cast(),
                    at + scales.len() * 4,
                    rest * 4,
                );
            }
        }
    }

    /// Uploads the columns of every slot whose suppression changed since the last upload.
    fn sync(&mut self, slots: &[CapSlot], n_layer: usize) {
        let n_slots = self.uploaded.len();
        for (s, slot) in slots.iter().enumerate().take(n_slots) {
            let now: Uploaded = Some((
                slot.suppress.as_ref().map_or(std::ptr::null(), Arc::as_ptr),
                slot.suppress_enabled,
            ));
            if self.uploaded[s] == now {
                continue;
            }
            let active = slot.active_suppress();
            for l in 0..n_layer {
                let v = active.and_then(|h| h.scales(l as u32));
                self.set_column(l, s, n_slots, v);
            }
            self.uploaded[s] = now;
        }
    }
}

impl DeviceCapper {
    /// Scales `t` (block `layer`'s FFN activation: `n` rows of `n_ff`) in place on this
    /// device, each row by its slot's vector.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn suppress(
        &mut self,
        t: &sys::ggml_tensor,
        layer: usize,
        n_ff: usize,
        n: usize,
        routing: Routing,
        slots: &[CapSlot],
        n_batch: usize,
        n_layer: usize,
    ) -> Result<(), String> {
        if self.scales.as_ref().is_none_or(|sc| sc.n_ff < n_ff) {
            // A wider activation than the vectors on the device: make room (once per width)
            // and size the allocator for the largest call, so later calls never reallocate.
            self.scales = None;
            let sc = DeviceScales::new(self.backend, n_ff, self.n_slots, n_layer)
                .map_err(|e| format!("cannot suppress block {layer} on its device: {e}"))?;
            self.scales = Some(sc);
            self.reserve_suppress(n_ff, n_batch)?;
        }
        let sc = self.scales.as_mut().expect("created above");
        sc.sync(slots, n_layer);
        let galloc = sc.galloc;
        // SAFETY: `new_block_tensor` resets the graph context, so it has room for the graph;
        // `z` is given `t`'s buffer and address (a computed, contiguous F32 tensor of `n`
        // rows of `n_ff`, checked by the caller), so the graph reads and writes `t`'s memory
        // and nothing else of it; `layer` is below n_layer and `n` at most the mask's rows.
        unsafe {
            let z = self.new_block_tensor(n_ff, n);
            let status = sys::ggml_backend_tensor_alloc(t.buffer, z, t.data);
            if status != sys::GGML_STATUS_SUCCESS {
                return Err(format!(
                    "FFN activation of block {layer}: cannot address its memory ({status})"
                ));
            }
            let graph = self.build_suppress(z, layer, n_ff, n, routing, n_batch);
            if !sys::ggml_gallocr_alloc_graph(galloc, graph) {
                return Err(format!(
                    "block {layer}: allocating the suppression graph failed"
                ));
            }
            let status = sys::ggml_backend_graph_compute(self.backend.as_ptr(), graph);
            if status != sys::GGML_STATUS_SUCCESS {
                return Err(format!(
                    "block {layer}: the suppression graph failed ({status})"
                ));
            }
        }
        Ok(())
    }

    /// Checks that the backend computes every op of the suppression graph and sizes its
    /// allocator for `n_rows_max` rows. The stand-in activation is never computed.
    fn reserve_suppress(&mut self, n_ff: usize, n_batch: usize) -> Result<(), String> {
        let routing = if self.n_slots > 1 {
            Routing::All
        } else {
            Routing::One
        };
        let n = self.n_rows_max;
        let galloc = self.scales.as_ref().expect("created by the caller").galloc;
        // SAFETY: as in `DeviceCapper::reserve`: the stand-in only needs a non-null data
        // pointer for the allocator to treat it as allocated; reserving computes nothing.
        unsafe {
            let z = self.new_block_tensor(n_ff, n);
            (*z).data = sys::ggml_backend_buffer_get_base(self.params_buf);
            let graph = self.build_suppress(z, 0, n_ff, n, routing, n_batch);
            self.check_ops(graph, "H-neuron suppression")?;
            if !sys::ggml_gallocr_reserve(galloc, graph) {
                return Err("reserving the suppression graph's memory failed".into());
            }
        }
        Ok(())
    }

    /// Builds `z = z (.) scales` for block `layer` (`n` rows of `n_ff`) in the graph context.
    ///
    /// # Safety
    /// `z` is an F32 `[n_ff, n]` tensor of the graph context, just reset; the scales exist
    /// with columns of at least `n_ff`; `layer` is a block and `n` at most the mask's rows.
    unsafe fn build_suppress(
        &mut self,
        z: *mut sys::ggml_tensor,
        layer: usize,
        n_ff: usize,
        n: usize,
        routing: Routing,
        n_batch: usize,
    ) -> *mut sys::ggml_cgraph {
        let ctx = self.graph_ctx.as_ptr();
        let (s_n, f) = (self.n_slots, 4usize);
        let sc = self.scales.as_ref().expect("checked by the caller");
        let col = sc.n_ff;
        // SAFETY: every view lies inside its source tensor (by this function's contract) and
        // the graph has room for its handful of nodes.
        unsafe {
            let v = sys::ggml_view_2d(
                ctx,
                sc.scales,
                n_ff as i64,
                s_n as i64,
                col * f,
                layer * s_n * col * f,
            );
            let out = if routing == Routing::One {
                sys::ggml_mul_inplace(ctx, z, v)
            } else {
                let m = sys::ggml_view_2d(
                    ctx,
                    self.mask,
                    s_n as i64,
                    n as i64,
                    s_n * f,
                    routing.index() * s_n * n_batch * f,
                );
                let mt = sys::ggml_cont(ctx, sys::ggml_transpose(ctx, m));
                let per_row = sys::ggml_out_prod(ctx, sys::ggml_cont(ctx, v), mt);
                sys::ggml_mul_inplace(ctx, z, per_row)
            };
            let graph = sys::ggml_new_graph_custom(ctx, GRAPH_SIZE, false);
            sys::ggml_build_forward_expand(graph, out);
            graph
        }
    }
}
