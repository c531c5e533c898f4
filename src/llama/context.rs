//! [`Context`]: the only owner of a `llama_context`, its batch and its eval-callback state.
//!
//! It is the only caller of `llama_decode` and of llama.cpp's memory (KV cache) functions, and
//! turns return codes and callback failures into [`DecodeError`]s in one place. Sessions and
//! the batch engine are built on it and never see a raw pointer.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use llama_cpp_sys_2 as sys;

use super::{backend, shim};
use crate::cap::hooks::{self, CapSlot, Flags, Hooks};
use crate::cap::{CAP_PATH_ENV, CapError, CapPath, CapPlan, ControlVector, ControlVectorError};
use crate::cap::{HSuppress, HSuppressError};
use crate::error::{DecodeError, SessionError};
use crate::model::{Model, Token};
use crate::sampling::Sampler;
use crate::session::SessionParams;

/// A llama context with its batch buffer and callback state.
pub(crate) struct Context {
    ctx: NonNull<sys::llama_context>,
    batch: sys::llama_batch,
    /// Entries of `batch` filled since the last [`Context::clear_batch`].
    batch_len: usize,
    /// Highest position in the batch plus one: what a "no KV slot" failure needed.
    batch_end: usize,
    /// The eval callback's state, from `Box::into_raw`: llama.cpp holds this pointer, so it is
    /// never owned by a `Box` while the context lives; freed in `Drop` after the context.
    hooks: NonNull<Hooks>,
    flags: Arc<Flags>,
    model: Model,
    n_ctx: u32,
    n_batch: u32,
    n_ubatch: u32,
    n_seq_max: u32,
    /// Whether the model attends causally (llama.cpp's `attention.causal`, or false for the
    /// embedding and diffusion architectures whose loaders turn it off).
    causal: bool,
    eval_callback: bool,
    /// Which blocks offer an `l_out` tensor, once a probe decode has shown it.
    hook_points: Option<Vec<bool>>,
    /// The width of each block's FFN activation (0: none offered), learnt with `hook_points`.
    ffn_points: Option<Vec<usize>>,
    /// The LoRA adapters applied to the context, kept alive while it uses them.
    _lora: Vec<std::sync::Arc<crate::LoraAdapter>>,
}

// SAFETY: a llama context has no thread affinity; `Context` owns it exclusively (with its
// batch buffers and callback state) and every use goes through `&mut self` or `&self` methods
// that llama.cpp allows concurrently with nothing else, so moving it to another thread is
// sound. It is not `Sync`. The model it references is `Sync` (see `Model`).
unsafe impl Send for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the batch and context were created in `Context::new` and are freed once,
        // here; the context goes first, so llama.cpp no longer holds the hooks pointer when
        // the hooks are freed. The model (held by `self.model`) is dropped after this.
        unsafe {
            sys::llama_batch_free(self.batch);
            sys::llama_free(self.ctx.as_ptr());
            drop(Box::from_raw(self.hooks.as_ptr()));
        }
    }
}

unsafe extern "C" fn abort_trampoline(data: *mut c_void) -> bool {
    // SAFETY: `data` points into the `Arc<Flags>` the context keeps alive for as long as the
    // llama context exists. Loading atomics cannot panic.
    let flags = unsafe { &*data.cast::<Flags>() };
    flags.cancel.load(Ordering::Relaxed) || flags.hook_failed.load(Ordering::Relaxed)
}

/// The flash-attention setting a context of `arch` runs with (`None`: llama.cpp's auto).
///
/// MiniMax-M3's sparse attention reads V untransposed, a layout llama.cpp keeps only with
/// flash attention: without it the graph asserts ("MSA assumes v_trans=false (FA on)",
/// `minimax-m3.cpp`) and the process aborts. So it is switched on there, and asking for it
/// off is refused.
fn flash_attention_for(arch: &str, asked: Option<bool>) -> Result<Option<bool>, SessionError> {
    if arch != "minimax-m3" {
        return Ok(asked);
    }
    if asked == Some(false) {
        return Err(SessionError::BadParam {
            name: "flash_attention",
            value: "false".to_owned(),
            reason: "minimax-m3 models need flash attention (their sparse attention reads V in \
                     the layout only flash attention keeps; the batch engine, which runs \
                     without it, cannot serve them)",
        });
    }
    Ok(Some(true))
}

fn bad(name: &'static str, value: u32, reason: &'static str) -> SessionError {
    SessionError::BadParam {
        name,
        value: value.to_string(),
        reason,
    }
}

impl Context {
    /// Creates a context over `model` whose callback keeps `n_slots` capping slots (a session:
    /// one; the batch engine: one per sequence). Capping in `params` is not applied here.
    pub(crate) fn new(
        model: &Model,
        params: &SessionParams,
        n_slots: u32,
    ) -> Result<Self, SessionError> {
        if params.n_batch == 0 {
            return Err(bad("n_batch", 0, "must be at least 1"));
        }
        if params.n_ubatch == 0 || params.n_ubatch > params.n_batch {
            return Err(bad("n_ubatch", params.n_ubatch, "must be in 1..=n_batch"));
        }
        let max = i32::MAX as u32;
        for (name, value) in [
            ("n_ctx", params.n_ctx),
            ("n_batch", params.n_batch),
            ("n_threads", params.n_threads),
            ("n_threads_batch", params.n_threads_batch),
        ] {
            if value > max {
                return Err(bad(name, value, "too large"));
            }
        }
        let flash_attention =
            flash_attention_for(&model.info().architecture, params.flash_attention)?;
        backend::ensure();
        let threads = if params.n_threads == 0 {
            std::thread::available_parallelism().map_or(4, |n| n.get()) as i32
        } else {
            params.n_threads as i32
        };
        let threads_batch = if params.n_threads_batch == 0 {
            threads
        } else {
            params.n_threads_batch as i32
        };
        let path = match params.cap_path {
            Some(p) => p,
            None => CapPath::from_env()
                .map_err(|value| SessionError::BadParam {
                    name: CAP_PATH_ENV,
                    value,
                    reason: "must be auto, host or graph",
                })?
                .unwrap_or_default(),
        };
        let flags = Arc::new(Flags::default());
        let hooks = Box::new(Hooks::new(
            model.n_layer(),
            model.n_embd(),
            n_slots,
            (params.n_batch, params.n_ubatch),
            path,
            flags.clone(),
            crate::cap::activation_names(&model.info().architecture),
        ));
        let hooks = NonNull::from(Box::leak(hooks));

        // SAFETY: returns a plain struct of defaults.
        let mut cp = unsafe { sys::llama_context_default_params() };
        cp.n_ctx = params.n_ctx;
        cp.n_batch = params.n_batch;
        cp.n_ubatch = params.n_ubatch;
        cp.n_seq_max = params.n_seq_max.max(1);
        // Deterministic mode gives each sequence a cache stream of its own, so its keys sit
        // at the cells a fresh run would put them in (attention sums over cells in SIMD
        // lanes: placement changes the rounding).
        cp.kv_unified = params.n_seq_max > 1 && !params.deterministic;
        if let Some(on) = flash_attention {
            cp.flash_attn_type = if on {
                sys::LLAMA_FLASH_ATTN_TYPE_ENABLED
            } else {
                sys::LLAMA_FLASH_ATTN_TYPE_DISABLED
            };
        }
        if let Some(t) = params.cache_type_k {
            cp.type_k = t.ggml_type();
        }
        if let Some(t) = params.cache_type_v {
            cp.type_v = t.ggml_type();
        }
        cp.n_threads = threads;
        cp.n_threads_batch = threads_batch;
        cp.abort_callback = Some(abort_trampoline);
        cp.abort_callback_data = Arc::as_ptr(&flags).cast_mut().cast();
        // The eval callback is installed unless asked otherwise, so capping and observers can
        // be switched on and off without rebuilding the context; with nothing to cap or
        // observe it only compares tensor names.
        if params.eval_callback {
            cp.cb_eval = Some(hooks::eval_trampoline);
            cp.cb_eval_user_data = hooks.as_ptr().cast();
        }

        backend::clear_last_error();
        // SAFETY: the model is live (and kept alive by `self.model`); `cp` starts from
        // llama.cpp's defaults; the abort and eval callback data outlive the llama context
        // (both owned by `Context`, freed after it in `Drop`).
        let raw = unsafe { sys::llama_init_from_model(model.raw(), cp) };
        let Some(ctx) = NonNull::new(raw) else {
            // SAFETY: from `Box::leak` above; llama.cpp never got a context to keep it in.
            drop(unsafe { Box::from_raw(hooks.as_ptr()) });
            return Err(SessionError::Create {
                n_ctx: params.n_ctx,
                reason: backend::take_last_error("unknown error (enable the llama.cpp log)"),
            });
        };
        // SAFETY: a live context (these five only read its settings).
        let (n_ctx, n_batch, n_ubatch, n_seq_max, causal) = unsafe {
            (
                sys::llama_n_ctx(ctx.as_ptr()),
                sys::llama_n_batch(ctx.as_ptr()),
                sys::llama_n_ubatch(ctx.as_ptr()),
                sys::llama_n_seq_max(ctx.as_ptr()),
                sys::llama_get_causal_attn(ctx.as_ptr()),
            )
        };
        if !params.lora.is_empty() {
            if let Some((a, _)) = params
                .lora
                .iter()
                .find(|(a, _)| a.model().raw() != model.raw())
            {
                // SAFETY: a context we own and have not handed out.
                unsafe { sys::llama_free(ctx.as_ptr()) };
                // SAFETY: from `Box::leak` above; the freed context no longer holds it.
                drop(unsafe { Box::from_raw(hooks.as_ptr()) });
                return Err(SessionError::BadParam {
                    name: "lora",
                    value: a.path().display().to_string(),
                    reason: "the adapter was loaded for another model",
                });
            }
            let mut adapters: Vec<*mut sys::llama_adapter_lora> =
                params.lora.iter().map(|(a, _)| a.raw()).collect();
            let mut scales: Vec<f32> = params.lora.iter().map(|(_, s)| *s).collect();
            // SAFETY: a live context; both arrays hold `len` entries; the adapters belong to
            // this model and live as long as the context (kept in `_lora`).
            let code = unsafe {
                sys::llama_set_adapters_lora(
                    ctx.as_ptr(),
                    adapters.as_mut_ptr(),
                    adapters.len(),
                    scales.as_mut_ptr(),
                )
            };
            if code != 0 {
                // SAFETY: as above.
                unsafe { sys::llama_free(ctx.as_ptr()) };
                // SAFETY: as above.
                drop(unsafe { Box::from_raw(hooks.as_ptr()) });
                return Err(SessionError::Create {
                    n_ctx: params.n_ctx,
                    reason: format!("llama.cpp refused the LoRA adapters (code {code})"),
                });
            }
        }
        // SAFETY: allocates arrays for `n_batch` tokens with one sequence id each; freed in
        // `Drop`.
        let batch = unsafe { sys::llama_batch_init(n_batch as i32, 0, 1) };
        Ok(Self {
            ctx,
            batch,
            batch_len: 0,
            batch_end: 0,
            hooks,
            flags,
            model: model.clone(),
            n_ctx,
            n_batch,
            n_ubatch,
            n_seq_max,
            causal,
            eval_callback: params.eval_callback,
            hook_points: None,
            ffn_points: None,
            _lora: params.lora.iter().map(|(a, _)| a.clone()).collect(),
        })
    }

    /// The model.
    pub(crate) fn model(&self) -> &Model {
        &self.model
    }

    /// Context size in tokens.
    pub(crate) fn n_ctx(&self) -> u32 {
        self.n_ctx
    }

    /// Physical batch size.
    pub(crate) fn n_ubatch(&self) -> u32 {
        self.n_ubatch
    }

    /// The most tokens one [`Self::decode`] takes: the logical batch (the batch buffer's
    /// capacity), or for a model without causal attention one physical batch, because
    /// llama.cpp cannot split a non-causal batch (it asserts `n_ubatch >= n_tokens`, which
    /// aborts the process).
    pub(crate) fn n_decode(&self) -> u32 {
        if self.causal {
            self.n_batch
        } else {
            self.n_ubatch
        }
    }

    /// Sequences the context keeps apart.
    pub(crate) fn n_seq_max(&self) -> u32 {
        self.n_seq_max
    }

    /// Whether the eval callback is installed.
    pub(crate) fn has_eval_callback(&self) -> bool {
        self.eval_callback
    }

    /// The cancel and failure flags the abort callback reads.
    pub(crate) fn flags(&self) -> &Arc<Flags> {
        &self.flags
    }

    /// The callback state.
    pub(crate) fn hooks(&self) -> &Hooks {
        // SAFETY: the hooks live as long as `self`; llama.cpp only dereferences its pointer
        // inside `llama_decode`, which runs under `&mut self` in `decode`, never while this
        // shared borrow lives.
        unsafe { self.hooks.as_ref() }
    }

    /// The callback state, mutably.
    pub(crate) fn hooks_mut(&mut self) -> &mut Hooks {
        // SAFETY: as in `hooks`; `&mut self` makes this the only reference.
        unsafe { self.hooks.as_mut() }
    }

    /// The capping slot `slot`.
    pub(crate) fn cap_slot(&self, slot: usize) -> &CapSlot {
        &self.hooks().slots[slot]
    }

    /// The capping slot `slot`, mutably (the graph path uploads its data again).
    pub(crate) fn cap_slot_mut(&mut self, slot: usize) -> &mut CapSlot {
        let slot = &mut self.hooks_mut().slots[slot];
        slot.version += 1;
        slot
    }

    /// Where the cap runs.
    pub(crate) fn cap_path(&self) -> CapPath {
        self.hooks().cap_path()
    }

    /// Empties the batch.
    pub(crate) fn clear_batch(&mut self) {
        self.batch_len = 0;
        self.batch_end = 0;
        self.hooks_mut().start_batch();
    }

    /// Entries in the batch.
    pub(crate) fn batch_len(&self) -> usize {
        self.batch_len
    }

    /// Appends `token` at `pos` of sequence `seq` to the batch, with or without logits, and
    /// returns its index (the output row to sample from). The batch must have room: callers
    /// keep to `n_batch` entries.
    pub(crate) fn push(&mut self, token: Token, pos: usize, seq: usize, logits: bool) -> i32 {
        let i = self.batch_len;
        assert!(
            i < self.n_batch as usize,
            "batch full ({} entries)",
            self.n_batch
        );
        // SAFETY: the batch comes from `llama_batch_init(n_batch, 0, 1)`: every array holds
        // `n_batch > i` entries and `seq_id[i]` points to room for one id.
        unsafe {
            *self.batch.token.add(i) = token;
            *self.batch.pos.add(i) = pos as i32;
            *self.batch.n_seq_id.add(i) = 1;
            *(*self.batch.seq_id.add(i)) = seq as i32;
            *self.batch.logits.add(i) = i8::from(logits);
        }
        self.batch_len += 1;
        self.batch_end = self.batch_end.max(pos + 1);
        let slot = seq as u32;
        self.hooks_mut().record_row(slot, logits);
        i as i32
    }

    /// Decodes the batch. On failure the callback state is reset and, when the graph was cut
    /// short by the callback or a capped block was never offered, the batch's sequences are
    /// removed from the cache (their keys and values cannot be trusted); after other failures
    /// llama.cpp's own view of the cache stands (see [`Context::seq_pos_max`]).
    pub(crate) fn decode(&mut self) -> Result<(), DecodeError> {
        if self.batch_len > self.n_decode() as usize {
            return Err(DecodeError::Batch {
                reason: format!(
                    "{} tokens in one batch, but this model attends non-causally and \
                     llama.cpp takes at most one physical batch (n_ubatch = {}) of those",
                    self.batch_len, self.n_ubatch
                ),
            });
        }
        self.batch.n_tokens = self.batch_len as i32;
        self.hooks_mut().start_decode();
        let (ctx, batch) = (self.ctx.as_ptr(), self.batch);
        // A cancel's "failed to compute graph" lines are expected, not errors to print.
        let code = backend::quiet_when_stopped(&self.flags.cancel, || {
            // SAFETY: a live context and a batch of `batch_len` entries filled by `push`; the
            // hooks pointer llama.cpp holds is not borrowed during the call.
            unsafe { shim::acap_llama_decode(ctx, batch) }
        });
        self.hooks_mut().finish_decode();
        let failure = self.hooks_mut().failure.take();
        self.flags.hook_failed.store(false, Ordering::SeqCst);
        if let Some(message) = failure {
            self.forget_batch_sequences();
            return Err(DecodeError::Hook { message });
        }
        match code {
            0 => {}
            shim::THREW => {
                // Part of the batch may be in the cache: as after other failures, the
                // caller resynchronises with llama.cpp's view of it.
                return Err(DecodeError::Exception {
                    message: shim::exception(),
                });
            }
            1 => {
                return Err(DecodeError::ContextFull {
                    needed: self.batch_end,
                    n_ctx: self.n_ctx,
                });
            }
            2 => return Err(DecodeError::Aborted),
            c => {
                return Err(DecodeError::Llama {
                    code: c,
                    meaning: if c == -1 {
                        "invalid batch"
                    } else {
                        "fatal error"
                    },
                });
            }
        }
        // Only a graph that ran to the end shows which hook points exist (an aborted one
        // stops early and would look like a model without them).
        if let Some(layer) = self.hooks().unseen_capped_layer() {
            self.forget_batch_sequences();
            return Err(DecodeError::Cap(self.no_hook_point(layer)));
        }
        if let Some(block) = self.hooks().unseen_suppressed_layer() {
            self.forget_batch_sequences();
            return Err(DecodeError::Hook {
                message: format!(
                    "H-neuron suppression: block {block} offered no FFN activation tensor"
                ),
            });
        }
        Ok(())
    }

    /// Checks that `h` can be applied to this model: the eval callback is installed, acap
    /// knows the architecture's FFN activation, and every block `h` names exists and offers
    /// an activation of the vector's length (learnt from one throw-away decode).
    pub(crate) fn check_suppress(&mut self, h: &HSuppress) -> Result<(), HSuppressError> {
        if !self.eval_callback {
            return Err(HSuppressError::NoEvalCallback);
        }
        let arch = self.model.info().architecture.clone();
        if self.hooks().ffn_names().is_none() {
            return Err(crate::cap::unsupported_ffn_arch(&arch));
        }
        if self.ffn_points.is_none() {
            self.probe();
        }
        let points = self.ffn_points.clone();
        h.check_fit(&arch, self.model.n_layer(), |block| match &points {
            // Without a probe (a full context) every decode still checks the blocks.
            None => h.scales(block).map(<[f32]>::len),
            Some(p) => p.get(block as usize).copied().filter(|&w| w > 0),
        })
    }

    fn no_hook_point(&self, layer: u32) -> CapError {
        CapError::NoHookPoint {
            arch: self.model.info().architecture.clone(),
            layer,
        }
    }

    /// Removes every sequence that has a token in the batch from the cache.
    fn forget_batch_sequences(&mut self) {
        for i in 0..self.batch_len {
            // SAFETY: `i < batch_len <= n_batch` and every entry has one sequence id.
            let seq = unsafe { *(*self.batch.seq_id.add(i)) };
            self.seq_rm(seq as usize, 0, None);
        }
    }

    /// Checks that `plan` can be applied: the eval callback is installed and every capped block
    /// offers its `l_out` tensor (learnt from one throw-away decode the first time).
    pub(crate) fn check_plan(&mut self, plan: &CapPlan) -> Result<(), CapError> {
        if !self.eval_callback {
            return Err(CapError::NoEvalCallback);
        }
        if self.hook_points.is_none() {
            self.probe();
        }
        if let Some(points) = &self.hook_points {
            if let Some((layer, _)) = plan
                .capped_layers()
                .find(|(l, _)| !points.get(*l as usize).copied().unwrap_or(false))
            {
                return Err(self.no_hook_point(layer));
            }
        }
        Ok(())
    }

    /// Decodes one throw-away token after sequence 0's cached tokens to learn which blocks
    /// offer `l_out`; nothing is capped or observed and the token is removed again. Without
    /// room for it the probe is skipped (every decode checks the capped blocks anyway).
    pub(crate) fn probe(&mut self) {
        if !self.eval_callback || self.hook_points.is_some() {
            return;
        }
        let end = (self.seq_pos_max(0) + 1).max(0) as usize;
        if end >= self.n_ctx as usize {
            return;
        }
        let hooks = self.hooks_mut();
        // The probe row is not the user's data: no slot caps it and the observer does not see
        // it.
        let observer = hooks.observer.take();
        let enabled: Vec<bool> = hooks
            .slots
            .iter_mut()
            .map(|s| std::mem::replace(&mut s.enabled, false))
            .collect();
        let token = self.model.token_bos().unwrap_or(0);
        self.clear_batch();
        self.push(token, end, 0, true);
        let result = self.decode();
        self.clear_batch();
        let hooks = self.hooks_mut();
        hooks.observer = observer;
        for (s, on) in hooks.slots.iter_mut().zip(enabled) {
            s.enabled = on;
        }
        if result.is_ok() {
            self.hook_points = Some(self.hooks().seen.iter().map(|&n| n > 0).collect());
            self.ffn_points = Some(self.hooks().ffn_width.clone());
            self.seq_rm(0, end, None);
        }
    }

    /// Empties the KV cache (all sequences).
    pub(crate) fn clear_memory(&mut self) {
        // SAFETY: a live context; clearing its memory (data included) is always valid.
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.ctx.as_ptr()), true) };
    }

    /// Removes positions `from..to` (`None`: to the end) of sequence `seq` from the cache;
    /// false when llama.cpp cannot remove part of a sequence.
    pub(crate) fn seq_rm(&mut self, seq: usize, from: usize, to: Option<usize>) -> bool {
        let to = to.map_or(-1, |t| t as i32);
        // SAFETY: a live context; removing a position range of one sequence is always valid.
        unsafe {
            sys::llama_memory_seq_rm(
                sys::llama_get_memory(self.ctx.as_ptr()),
                seq as i32,
                from as i32,
                to,
            )
        }
    }

    /// The highest position of sequence `seq` in the cache, -1 when it holds none.
    pub(crate) fn seq_pos_max(&self, seq: usize) -> i32 {
        // SAFETY: a live context; a read-only query.
        unsafe {
            sys::llama_memory_seq_pos_max(sys::llama_get_memory(self.ctx.as_ptr()), seq as i32)
        }
    }

    /// Samples from output row `idx` (-1: the last) of the last decode.
    pub(crate) fn sample(&self, sampler: &mut Sampler, idx: i32) -> Result<Token, String> {
        sampler.sample(self.ctx.as_ptr(), idx)
    }

    /// The logits of output row `idx` (-1: the last) of the last decode, if it requested them.
    pub(crate) fn logits(&self, idx: i32) -> &[f32] {
        // SAFETY: after a decode that requested logits for `idx`, llama.cpp keeps `n_vocab`
        // floats for it until the next decode, which needs `&mut self`; NULL otherwise.
        unsafe {
            let p = sys::llama_get_logits_ith(self.ctx.as_ptr(), idx);
            if p.is_null() {
                return &[];
            }
            std::slice::from_raw_parts(p, self.model.n_vocab() as usize)
        }
    }

    /// Applies control vectors or removes them with `None`, then empties the cache (its keys
    /// and values were computed without, or with other, control vectors).
    pub(crate) fn set_control_vector(
        &mut self,
        cv: Option<&ControlVector>,
    ) -> Result<(), ControlVectorError> {
        let n_embd = self.model.n_embd() as usize;
        if let Some(cv) = cv.filter(|cv| cv.n_embd() != n_embd) {
            return Err(ControlVectorError::EmbdMismatch {
                origin: "control vector".into(),
                n_embd: cv.n_embd(),
                expected: n_embd,
            });
        }
        let n_layer = self.model.n_layer();
        // Vectors for no block of this model are no control vector at all.
        let cv = cv.filter(|cv| !cv.range().blocks(n_layer).is_empty());
        let code = match cv {
            // SAFETY: a live context; NULL data clears the control vector.
            None => unsafe {
                sys::llama_set_adapter_cvec(self.ctx.as_ptr(), std::ptr::null(), 0, 0, -1, -1)
            },
            Some(cv) => {
                let blocks = cv.range().blocks(n_layer);
                let data = cv.data();
                // SAFETY: `data` holds `data.len()` floats laid out as llama.cpp expects
                // (layer 1 first, `n_embd` each); llama.cpp copies them.
                unsafe {
                    sys::llama_set_adapter_cvec(
                        self.ctx.as_ptr(),
                        data.as_ptr(),
                        data.len(),
                        n_embd as i32,
                        *blocks.start() as i32,
                        *blocks.end() as i32,
                    )
                }
            }
        };
        if code != 0 {
            return Err(ControlVectorError::Rejected(code));
        }
        self.clear_memory();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimax_m3_runs_with_flash_attention_and_refuses_it_off() {
        for asked in [None, Some(true), Some(false)] {
            assert_eq!(flash_attention_for("llama", asked).unwrap(), asked);
        }
        assert_eq!(flash_attention_for("minimax-m3", None).unwrap(), Some(true));
        assert_eq!(
            flash_attention_for("minimax-m3", Some(true)).unwrap(),
            Some(true)
        );
        let e = flash_attention_for("minimax-m3", Some(false)).unwrap_err();
        assert!(e.to_string().contains("flash_attention"), "{e}");
    }
}
