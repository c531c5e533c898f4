//! A session: one llama.cpp context over a model, with its KV cache reused across calls.

use std::ffi::c_void;
use std::ops::ControlFlow;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use llama_cpp_sys_2 as sys;

use crate::backend;
use crate::cap::hooks::{self, Flags, Hooks};
use crate::cap::{
    CapConfig, CapError, CapPlan, ControlVector, ControlVectorError, LayerStats, Observation,
};
use crate::error::{DecodeError, SessionError};
use crate::model::{Model, Token};
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenize::{PieceDecoder, Special};

/// Context settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionParams {
    /// Context size in tokens; 0 takes the model's training context (`-c`).
    pub n_ctx: u32,
    /// Logical batch: prompt tokens submitted per decode call (`-b`).
    pub n_batch: u32,
    /// Physical batch (`-ub`).
    pub n_ubatch: u32,
    /// Threads for generation (`-t`); 0 uses all cores.
    pub n_threads: u32,
    /// Threads for prompt processing; 0 uses `n_threads`.
    pub n_threads_batch: u32,
    /// Sequences [`Session::decode_sequences`] may decode together (default 1). Above 1 the
    /// KV cache is shared: `n_ctx` cells for all sequences of a batch together.
    pub n_seq_max: u32,
    /// Flash attention: `None` lets llama.cpp decide (its default). Its CPU kernel's results
    /// depend slightly on where a sequence's keys sit in the cache, so hidden-state readers
    /// that batch several sequences (axis extraction) turn it off to stay reproducible.
    pub flash_attention: Option<bool>,
    /// Activation capping to apply from the start (validated against the model).
    pub capping: Option<CapConfig>,
    /// Install the eval callback (default). Without it the session is plain llama.cpp: the
    /// baseline benchmarks compare against; capping is then refused and observers never run.
    pub eval_callback: bool,
}

impl Default for SessionParams {
    fn default() -> Self {
        Self {
            n_ctx: 4096,
            n_batch: 2048,
            n_ubatch: 512,
            n_threads: 0,
            n_threads_batch: 0,
            n_seq_max: 1,
            flash_attention: None,
            capping: None,
            eval_callback: true,
        }
    }
}

impl SessionParams {
    /// Sets the context size.
    #[must_use]
    pub fn with_n_ctx(mut self, n: u32) -> Self {
        self.n_ctx = n;
        self
    }

    /// Sets the logical batch size.
    #[must_use]
    pub fn with_n_batch(mut self, n: u32) -> Self {
        self.n_batch = n;
        self
    }

    /// Sets the physical batch size.
    #[must_use]
    pub fn with_n_ubatch(mut self, n: u32) -> Self {
        self.n_ubatch = n;
        self
    }

    /// Sets the thread count.
    #[must_use]
    pub fn with_threads(mut self, n: u32) -> Self {
        self.n_threads = n;
        self
    }

    /// Sets how many sequences [`Session::decode_sequences`] may decode together.
    #[must_use]
    pub fn with_n_seq_max(mut self, n: u32) -> Self {
        self.n_seq_max = n;
        self
    }

    /// Installs the eval callback or not (see [`SessionParams::eval_callback`]).
    #[must_use]
    pub fn with_eval_callback(mut self, on: bool) -> Self {
        self.eval_callback = on;
        self
    }

    /// Caps activations as `cap` says; session creation fails if it cannot.
    #[must_use]
    pub fn with_capping(mut self, cap: CapConfig) -> Self {
        self.capping = Some(cap);
        self
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// A stop string appeared (it is not part of the output).
    StopString(String),
    /// The token limit was reached.
    MaxTokens,
    /// The cancel flag was raised, or the callback asked to stop.
    Cancelled,
    /// The context is full (acap does not shift the context; start a new session or a
    /// shorter conversation).
    ContextFull,
}

/// Statistics of one generation call.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationStats {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Of those, tokens already in the KV cache and not decoded again.
    pub cached_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Time spent decoding the prompt.
    pub prompt_time: Duration,
    /// Time spent generating.
    pub generation_time: Duration,
    /// Why generation stopped.
    pub stop_reason: StopReason,
}

impl GenerationStats {
    /// Prompt tokens decoded per second.
    pub fn prompt_tokens_per_second(&self) -> f64 {
        per_second(self.prompt_tokens - self.cached_tokens, self.prompt_time)
    }

    /// Tokens generated per second.
    pub fn generation_tokens_per_second(&self) -> f64 {
        per_second(self.generated_tokens, self.generation_time)
    }
}

fn per_second(n: usize, t: Duration) -> f64 {
    if t.is_zero() {
        0.0
    } else {
        n as f64 / t.as_secs_f64()
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    /// Most tokens to generate; `None` runs until end of generation or a full context
    /// (`-n`, where -1 means no limit).
    pub max_tokens: Option<usize>,
    /// Strings that end generation; the output stops before them (`-r`).
    pub stop: Vec<String>,
    /// How to pick tokens.
    pub sampling: SamplingParams,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: Some(128),
            stop: Vec::new(),
            sampling: SamplingParams::default(),
        }
    }
}

impl GenerateParams {
    /// Sets the token limit.
    #[must_use]
    pub fn with_max_tokens(mut self, n: usize) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// Adds a stop string.
    #[must_use]
    pub fn with_stop(mut self, s: impl Into<String>) -> Self {
        self.stop.push(s.into());
        self
    }

    /// Sets the sampling settings.
    #[must_use]
    pub fn with_sampling(mut self, s: SamplingParams) -> Self {
        self.sampling = s;
        self
    }
}

/// Raises a session's cancel flag from another thread.
#[derive(Debug, Clone)]
pub struct CancelHandle(Arc<Flags>);

impl CancelHandle {
    /// Stops the current (or next) generation or prompt decode as soon as possible.
    pub fn cancel(&self) {
        self.0.cancel.store(true, Ordering::SeqCst);
    }
}

/// A llama.cpp context over a [`Model`]: decodes prompts, generates, and keeps the KV cache
/// across calls so a follow-up turn only decodes its new tokens.
pub struct Session {
    pub(crate) ctx: NonNull<sys::llama_context>,
    pub(crate) batch: sys::llama_batch,
    model: Model,
    /// The tokens whose keys and values are in the cache (sequence 0), in order.
    cached: Vec<Token>,
    n_ctx: u32,
    n_batch: u32,
    pub(crate) flags: Arc<Flags>,
    /// The eval callback's state; boxed so the pointer llama.cpp holds stays valid.
    pub(crate) hooks: Box<Hooks>,
    cap_config: Option<CapConfig>,
    eval_callback: bool,
    pub(crate) n_ubatch: u32,
    n_seq_max: u32,
}

// SAFETY: a llama context has no thread affinity; `Session` owns it exclusively (together
// with its batch buffers) and every use goes through `&mut self`, so moving it to another
// thread is sound. It is not `Sync`. The model it references is `Sync` (see `Model`).
unsafe impl Send for Session {}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: both were created in `Session::new` and are freed once, here; the context
        // is freed before the model (held by `self.model`, dropped after this).
        unsafe {
            sys::llama_batch_free(self.batch);
            sys::llama_free(self.ctx.as_ptr());
        }
    }
}

unsafe extern "C" fn abort_trampoline(data: *mut c_void) -> bool {
    // SAFETY: `data` points into the `Arc<Flags>` the session keeps alive for as long as the
    // context exists. Loading atomics cannot panic.
    let flags = unsafe { &*data.cast::<Flags>() };
    flags.cancel.load(Ordering::Relaxed) || flags.hook_failed.load(Ordering::Relaxed)
}

impl Session {
    /// Creates a context over `model`.
    pub fn new(model: &Model, params: SessionParams) -> Result<Self, SessionError> {
        let bad = |name, value: u32, reason| SessionError::BadParam {
            name,
            value: value.to_string(),
            reason,
        };
        if params.n_batch == 0 {
            return Err(bad("n_batch", 0, "must be at least 1"));
        }
        if params.n_ubatch == 0 || params.n_ubatch > params.n_batch {
            return Err(bad("n_ubatch", params.n_ubatch, "must be in 1..=n_batch"));
        }
        let max = i32::MAX as u32;
        if params.n_ctx > max || params.n_batch > max || params.n_threads > max {
            return Err(bad("n_ctx", params.n_ctx, "too large"));
        }
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
        if params.capping.is_some() && !params.eval_callback {
            return Err(SessionError::Cap(CapError::NoEvalCallback));
        }
        let plan = params.capping.as_ref().map(|c| c.plan(model)).transpose()?;
        let flags = Arc::new(Flags::default());
        let mut hooks = Box::new(Hooks::new(model.n_layer(), model.n_embd(), flags.clone()));

        // SAFETY: returns a plain struct of defaults.
        let mut cp = unsafe { sys::llama_context_default_params() };
        cp.n_ctx = params.n_ctx;
        cp.n_batch = params.n_batch;
        cp.n_ubatch = params.n_ubatch;
        cp.n_seq_max = params.n_seq_max.max(1);
        cp.kv_unified = params.n_seq_max > 1;
        if let Some(on) = params.flash_attention {
            cp.flash_attn_type = if on {
                sys::LLAMA_FLASH_ATTN_TYPE_ENABLED
            } else {
                sys::LLAMA_FLASH_ATTN_TYPE_DISABLED
            };
        }
        cp.n_threads = threads;
        cp.n_threads_batch = threads_batch;
        cp.abort_callback = Some(abort_trampoline);
        cp.abort_callback_data = Arc::as_ptr(&flags).cast_mut().cast();
        // The eval callback is always installed, so capping and observers can be switched on
        // and off without rebuilding the context; with nothing to cap or observe it only
        // compares tensor names.
        if params.eval_callback {
            cp.cb_eval = Some(hooks::eval_trampoline);
            cp.cb_eval_user_data = (&mut *hooks as *mut Hooks).cast();
        }

        backend::clear_last_error();
        // SAFETY: the model is live (and kept alive by `self.model`); `cp` starts from
        // llama.cpp's defaults; the abort and eval callback data outlive the context (both
        // owned by the session, freed after the context in `Drop`).
        let raw = unsafe { sys::llama_init_from_model(model.raw(), cp) };
        let ctx = NonNull::new(raw).ok_or_else(|| SessionError::Create {
            n_ctx: params.n_ctx,
            reason: backend::take_last_error("unknown error (enable the llama.cpp log)"),
        })?;
        // SAFETY: a live context.
        let n_ctx = unsafe { sys::llama_n_ctx(ctx.as_ptr()) };
        // SAFETY: a live context.
        let n_batch = unsafe { sys::llama_n_batch(ctx.as_ptr()) };
        // SAFETY: allocates arrays for `n_batch` tokens with one sequence id each; freed in
        // `Drop`.
        let batch = unsafe { sys::llama_batch_init(n_batch as i32, 0, 1) };
        let mut session = Self {
            ctx,
            batch,
            model: model.clone(),
            // Reserved up front: decode steps never grow it (no allocation per token).
            cached: Vec::with_capacity(n_ctx as usize),
            n_ctx,
            n_batch,
            flags,
            hooks,
            cap_config: None,
            eval_callback: params.eval_callback,
            // SAFETY: a live context.
            n_ubatch: unsafe { sys::llama_n_ubatch(ctx.as_ptr()) },
            // SAFETY: a live context.
            n_seq_max: unsafe { sys::llama_n_seq_max(ctx.as_ptr()) },
        };
        if let (Some(plan), Some(cfg)) = (plan, params.capping) {
            session.install(cfg, plan).map_err(SessionError::Cap)?;
        }
        Ok(session)
    }

    /// Starts capping with `cap` (replacing any earlier configuration), or stops with `None`.
    /// The configuration is validated against the model and the graph is probed once, so an
    /// architecture without `l_out-L` tensors is an error here rather than an uncapped run.
    ///
    /// This and every other setter that changes what is capped empty the KV cache: keys and
    /// values computed under other capping must not be reused for the following calls.
    pub fn set_capping(&mut self, cap: Option<CapConfig>) -> Result<(), CapError> {
        match cap {
            None => {
                if self.hooks.plan.take().is_some() {
                    self.clear();
                }
                self.cap_config = None;
                Ok(())
            }
            Some(_) if !self.eval_callback => Err(CapError::NoEvalCallback),
            Some(cfg) => {
                let plan = cfg.plan(&self.model)?;
                self.install(cfg, plan)
            }
        }
    }

    fn install(&mut self, cfg: CapConfig, plan: CapPlan) -> Result<(), CapError> {
        let previous = (self.hooks.plan.replace(plan), self.cap_config.replace(cfg));
        if let Err(e) = self.probe() {
            (self.hooks.plan, self.cap_config) = previous;
            return Err(e);
        }
        self.reset_cap_stats();
        self.clear();
        Ok(())
    }

    /// Decodes one throw-away token to check that every capped block's `l_out` exists.
    fn probe(&mut self) -> Result<(), CapError> {
        if self.cached.len() >= self.n_ctx as usize {
            // No room to probe; every decode checks the same thing anyway.
            return Ok(());
        }
        let enabled = std::mem::replace(&mut self.hooks.enabled, true);
        // The probe row is not the user's data: the observer does not see it.
        let observer = self.hooks.observer.take();
        let keep = self.cached.len();
        let token = self.model.token_bos().unwrap_or(0);
        let result = self.decode(&[token]);
        self.hooks.enabled = enabled;
        self.hooks.observer = observer;
        if result.is_ok() {
            // SAFETY: a live context; drops the probe token from sequence 0.
            unsafe {
                sys::llama_memory_seq_rm(
                    sys::llama_get_memory(self.ctx.as_ptr()),
                    0,
                    keep as i32,
                    -1,
                )
            };
            self.cached.truncate(keep);
        }
        match result {
            Err(DecodeError::Cap(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// The capping configuration, if any.
    pub fn capping(&self) -> Option<&CapConfig> {
        self.cap_config.as_ref()
    }

    /// The resolved plan (blocks, axes, thresholds, alpha), if capping is configured.
    pub fn cap_plan(&self) -> Option<&CapPlan> {
        self.hooks.plan.as_ref()
    }

    /// Switches capping on or off for the following calls without rebuilding anything (the
    /// reward evaluator runs uncapped). On by default once configured.
    pub fn set_capping_enabled(&mut self, on: bool) {
        if self.hooks.enabled != on {
            self.hooks.enabled = on;
            if self.hooks.plan.is_some() {
                self.clear();
            }
        }
    }

    /// Whether capping is configured and switched on.
    pub fn capping_enabled(&self) -> bool {
        self.hooks.enabled && self.hooks.plan.is_some()
    }

    /// Changes `alpha` for the following calls.
    pub fn set_cap_alpha(&mut self, alpha: f32) -> Result<(), CapError> {
        crate::cap::check_alpha(alpha)?;
        if let Some(plan) = self.hooks.plan.as_mut() {
            if plan.alpha != alpha {
                plan.alpha = alpha;
                self.clear();
            }
        }
        if let Some(cfg) = self.cap_config.take() {
            self.cap_config = Some(cfg.with_alpha(alpha));
        }
        Ok(())
    }

    /// Re-resolves the thresholds with a new `--acap-threshold` value (spec section 4).
    pub fn set_cap_threshold(&mut self, cli: Option<f32>) -> Result<(), CapError> {
        let Some(cfg) = self.cap_config.clone() else {
            return Ok(());
        };
        let cfg = cfg.with_threshold(cli);
        let plan = cfg.plan(&self.model)?;
        if self.hooks.plan.as_ref() != Some(&plan) {
            self.hooks.plan = Some(plan);
            self.clear();
        }
        self.cap_config = Some(cfg);
        Ok(())
    }

    /// Sets the raw threshold of one capped block directly.
    pub fn set_layer_tau(&mut self, layer: u32, tau: f32) -> Result<(), CapError> {
        let slot = self
            .hooks
            .plan
            .as_mut()
            .and_then(|p| p.layers.get_mut(layer as usize))
            .and_then(Option::as_mut);
        match slot {
            Some(l) if tau.is_finite() => {
                let changed = l.tau != tau;
                l.tau = tau;
                if changed {
                    self.clear();
                }
                Ok(())
            }
            Some(_) => Err(CapError::Threshold(
                crate::axis::ThresholdError::NotFinite { value: tau },
            )),
            None => Err(CapError::NotCapped { layer }),
        }
    }

    /// Telemetry of every capped block since the last reset: `(block, stats)`.
    pub fn cap_stats(&self) -> Vec<(u32, LayerStats)> {
        let Some(plan) = self.hooks.plan.as_ref() else {
            return Vec::new();
        };
        plan.capped_layers()
            .map(|(l, _)| (l, self.hooks.stats[l as usize]))
            .collect()
    }

    /// Zeroes the telemetry.
    pub fn reset_cap_stats(&mut self) {
        self.hooks
            .stats
            .iter_mut()
            .for_each(|s| *s = LayerStats::default());
    }

    /// Registers a read-only observer of the outputs of `layers` (replacing any earlier one).
    /// It sees every row of every decode, after capping when capping is on.
    pub fn set_observer(
        &mut self,
        layers: &[u32],
        observer: impl FnMut(&Observation<'_>) + Send + 'static,
    ) {
        self.hooks.set_observer(layers, Box::new(observer));
    }

    /// Removes the observer.
    pub fn clear_observer(&mut self) {
        self.hooks.clear_observer();
    }

    /// Applies control vectors (added to each block's output before the cap), or removes them
    /// with `None`.
    pub fn set_control_vector(
        &mut self,
        cv: Option<&ControlVector>,
    ) -> Result<(), ControlVectorError> {
        let code = match cv {
            None => {
                // SAFETY: a live context; NULL data clears the control vector.
                unsafe {
                    sys::llama_set_adapter_cvec(self.ctx.as_ptr(), std::ptr::null(), 0, 0, -1, -1)
                }
            }
            Some(cv) => {
                let n_embd = self.model.n_embd() as usize;
                if cv.n_embd() != n_embd {
                    return Err(ControlVectorError::EmbdMismatch {
                        origin: "control vector".into(),
                        n_embd: cv.n_embd(),
                        expected: n_embd,
                    });
                }
                let blocks = cv.range().blocks(self.model.n_layer());
                if blocks.is_empty() {
                    return Ok(());
                }
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
        // Cached keys and values were computed without (or with another) control vector.
        self.clear();
        Ok(())
    }

    /// The model this session runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The context size in tokens.
    pub fn n_ctx(&self) -> u32 {
        self.n_ctx
    }

    /// The tokens currently in the KV cache.
    pub fn cached_tokens(&self) -> &[Token] {
        &self.cached
    }

    /// A handle that cancels generation from another thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(self.flags.clone())
    }

    /// Empties the KV cache.
    pub fn clear(&mut self) {
        // SAFETY: a live context; clearing its memory (data included) is always valid.
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.ctx.as_ptr()), true) };
        self.cached.clear();
    }

    /// Makes the cache hold exactly `tokens`, reusing the longest common prefix with what is
    /// cached and decoding the rest in batches of `n_batch`. At least the last token is always
    /// decoded, so fresh logits are available. Returns how many tokens were reused.
    pub fn prefill(&mut self, tokens: &[Token]) -> Result<usize, DecodeError> {
        if tokens.is_empty() {
            return Err(DecodeError::EmptyPrompt);
        }
        if tokens.len() > self.n_ctx as usize {
            return Err(DecodeError::ContextFull {
                needed: tokens.len(),
                n_ctx: self.n_ctx,
            });
        }
        let common = self
            .cached
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count()
            .min(tokens.len() - 1);
        if common < self.cached.len() {
            // SAFETY: a live context; removing positions [common, end) of sequence 0.
            let ok = unsafe {
                sys::llama_memory_seq_rm(
                    sys::llama_get_memory(self.ctx.as_ptr()),
                    0,
                    common as i32,
                    -1,
                )
            };
            if !ok {
                self.clear();
                return self.prefill(tokens).map(|_| 0);
            }
            self.cached.truncate(common);
        }
        self.decode(&tokens[common..])?;
        Ok(common)
    }

    /// Appends `tokens` to the cache, requesting logits for the last one.
    fn decode(&mut self, tokens: &[Token]) -> Result<(), DecodeError> {
        let needed = self.cached.len() + tokens.len();
        if needed > self.n_ctx as usize {
            return Err(DecodeError::ContextFull {
                needed,
                n_ctx: self.n_ctx,
            });
        }
        let chunks = tokens.chunks(self.n_batch as usize);
        let n_chunks = chunks.len();
        for (ci, chunk) in chunks.enumerate() {
            let last_chunk = ci + 1 == n_chunks;
            for (i, &t) in chunk.iter().enumerate() {
                let logits = last_chunk && i + 1 == chunk.len();
                // SAFETY: the batch holds `n_batch` entries and `i < chunk.len() <= n_batch`.
                unsafe { put_token(&mut self.batch, i, t, self.cached.len() + i, 0, logits) };
            }
            self.batch.n_tokens = chunk.len() as i32;
            self.hooks.seen.iter_mut().for_each(|s| *s = 0);
            // SAFETY: a live context and a batch filled above.
            let code = unsafe { sys::llama_decode(self.ctx.as_ptr(), self.batch) };
            if let Some(message) = self.hooks.failure.take() {
                // The graph was cut short: nothing in the cache can be trusted.
                self.flags.hook_failed.store(false, Ordering::SeqCst);
                self.clear();
                return Err(DecodeError::Hook { message });
            }
            if code != 0 {
                self.resync();
                return Err(match code {
                    2 => DecodeError::Aborted,
                    1 => DecodeError::ContextFull {
                        needed,
                        n_ctx: self.n_ctx,
                    },
                    c => DecodeError::Llama {
                        code: c,
                        meaning: if c == -1 {
                            "invalid batch"
                        } else {
                            "fatal error"
                        },
                    },
                });
            }
            // Only a graph that ran to the end shows which hook points exist (an aborted one
            // stops early and would look like a model without them).
            if let Some(layer) = self.missing_hook_point() {
                self.clear();
                return Err(DecodeError::Cap(CapError::NoHookPoint {
                    arch: self.model.info().architecture.clone(),
                    layer,
                }));
            }
            self.cached.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Decodes independent token sequences together in one batch (sequence ids `0..n`), to read
    /// hidden states through the observer (axis extraction): the observer sees the rows of
    /// every sequence in order, all tokens for blocks before the last and one row per
    /// sequence (its last token) for the last block. Capping applies as configured. The KV
    /// cache is emptied before and after.
    ///
    /// The sequences must fit in one physical batch (`n_ubatch` tokens in total) and number at
    /// most `n_seq_max`.
    pub fn decode_sequences(&mut self, seqs: &[&[Token]]) -> Result<(), DecodeError> {
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        let reason = if seqs.is_empty() || seqs.iter().any(|s| s.is_empty()) {
            Some("no sequences, or an empty one".to_owned())
        } else if seqs.len() > self.n_seq_max as usize {
            Some(format!(
                "{} sequences, but the session allows {} (n_seq_max)",
                seqs.len(),
                self.n_seq_max
            ))
        } else if total > self.n_ubatch as usize || total > self.n_ctx as usize {
            Some(format!(
                "{total} tokens do not fit one batch (n_ubatch {}, n_ctx {})",
                self.n_ubatch, self.n_ctx
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(DecodeError::Batch { reason });
        }
        self.clear();
        let mut i = 0;
        for (seq, tokens) in seqs.iter().enumerate() {
            for (pos, &t) in tokens.iter().enumerate() {
                let logits = pos + 1 == tokens.len();
                // SAFETY: `i < total <= n_ubatch <= n_batch`, the batch's capacity.
                unsafe { put_token(&mut self.batch, i, t, pos, seq, logits) };
                i += 1;
            }
        }
        self.batch.n_tokens = total as i32;
        self.hooks.seen.iter_mut().for_each(|s| *s = 0);
        // SAFETY: a live context and a batch filled above.
        let code = unsafe { sys::llama_decode(self.ctx.as_ptr(), self.batch) };
        let failure = self.hooks.failure.take();
        let missing = if code == 0 {
            self.missing_hook_point()
        } else {
            None
        };
        self.flags.hook_failed.store(false, Ordering::SeqCst);
        self.clear();
        if let Some(message) = failure {
            return Err(DecodeError::Hook { message });
        }
        if let Some(layer) = missing {
            return Err(DecodeError::Cap(CapError::NoHookPoint {
                arch: self.model.info().architecture.clone(),
                layer,
            }));
        }
        match code {
            0 => Ok(()),
            2 => Err(DecodeError::Aborted),
            c => Err(DecodeError::Llama {
                code: c,
                meaning: "decoding several sequences failed",
            }),
        }
    }

    /// A capped block whose `l_out` the last decode never offered, if any.
    fn missing_hook_point(&self) -> Option<u32> {
        if !self.capping_enabled() {
            return None;
        }
        let plan = self.hooks.plan.as_ref()?;
        plan.capped_layers()
            .map(|(l, _)| l)
            .find(|&l| self.hooks.seen[l as usize] == 0)
    }

    /// After a failed decode some ubatches may remain in the cache: trust llama.cpp's view.
    fn resync(&mut self) {
        // SAFETY: a live context.
        let max =
            unsafe { sys::llama_memory_seq_pos_max(sys::llama_get_memory(self.ctx.as_ptr()), 0) };
        self.cached.truncate((max + 1).max(0) as usize);
    }

    /// Decodes `prompt` (reusing the cache) and generates, calling `on_text` with each piece of
    /// text as soon as it is complete UTF-8 and cannot be the start of a stop string. Returning
    /// `ControlFlow::Break` from `on_text` stops generation.
    pub fn generate_tokens(
        &mut self,
        prompt: &[Token],
        params: &GenerateParams,
        mut on_text: impl FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationStats, crate::Error> {
        let mut sampler = Sampler::new(&self.model, &params.sampling, self.n_ctx)?;
        self.flags.cancel.store(false, Ordering::SeqCst);
        let t0 = Instant::now();
        let cached_tokens = self.prefill(prompt)?;
        let prompt_time = t0.elapsed();
        sampler.accept_prompt(prompt);

        let t1 = Instant::now();
        let mut decoder = PieceDecoder::new();
        let mut stop = StopMatcher::new(&params.stop);
        let mut generated = 0usize;
        let reason = loop {
            if self.flags.cancel.load(Ordering::SeqCst) {
                break StopReason::Cancelled;
            }
            if params.max_tokens.is_some_and(|m| generated >= m) {
                break StopReason::MaxTokens;
            }
            let token = sampler.sample(self.ctx.as_ptr(), -1);
            if self.model.is_eog(token) {
                break StopReason::EndOfGeneration;
            }
            generated += 1;
            let piece = self.model.token_to_piece(token, false)?;
            let text = decoder.push(&piece);
            let (emit, hit) = stop.push(&text);
            if !emit.is_empty() && on_text(&emit).is_break() {
                break StopReason::Cancelled;
            }
            if let Some(s) = hit {
                break StopReason::StopString(s);
            }
            if self.cached.len() >= self.n_ctx as usize {
                break StopReason::ContextFull;
            }
            // Cancelled from inside `on_text` or meanwhile from another thread.
            if self.flags.cancel.load(Ordering::SeqCst) {
                break StopReason::Cancelled;
            }
            match self.decode(&[token]) {
                Ok(()) => {}
                Err(DecodeError::Aborted) => break StopReason::Cancelled,
                Err(e) => return Err(e.into()),
            }
        };
        if !matches!(reason, StopReason::StopString(_)) {
            let tail = stop.finish(&decoder.finish());
            if !tail.is_empty() {
                let _ = on_text(&tail);
            }
        }
        Ok(GenerationStats {
            prompt_tokens: prompt.len(),
            cached_tokens,
            generated_tokens: generated,
            prompt_time,
            generation_time: t1.elapsed(),
            stop_reason: reason,
        })
    }

    /// Tokenizes `prompt` as llama-cli does (BOS added, special tokens parsed) and generates.
    pub fn generate(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
        on_text: impl FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationStats, crate::Error> {
        let tokens = self.model.tokenize(prompt, Special::PROMPT)?;
        self.generate_tokens(&tokens, params, on_text)
    }

    /// Generates and returns the whole text.
    pub fn complete(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
    ) -> Result<(String, GenerationStats), crate::Error> {
        let mut out = String::new();
        let stats = self.generate(prompt, params, |t| {
            out.push_str(t);
            ControlFlow::Continue(())
        })?;
        Ok((out, stats))
    }

    /// The logits of the last decoded token (one per vocabulary entry).
    pub fn logits(&self) -> &[f32] {
        // SAFETY: after a decode that requested logits for its last token, llama.cpp keeps
        // `n_vocab` floats for row -1 until the next decode, which needs `&mut self`.
        unsafe {
            let p = sys::llama_get_logits_ith(self.ctx.as_ptr(), -1);
            if p.is_null() {
                return &[];
            }
            std::slice::from_raw_parts(p, self.model.n_vocab() as usize)
        }
    }
}

/// Writes entry `i` of a batch: `token` at `pos` of sequence `seq`, with or without logits.
///
/// # Safety
/// `batch` comes from `llama_batch_init(n, 0, 1)` (one sequence id per token) and `i < n`.
pub(crate) unsafe fn put_token(
    batch: &mut sys::llama_batch,
    i: usize,
    token: Token,
    pos: usize,
    seq: usize,
    logits: bool,
) {
    // SAFETY: by this function's contract every array holds more than `i` entries and
    // `seq_id[i]` points to room for one id.
    unsafe {
        *batch.token.add(i) = token;
        *batch.pos.add(i) = pos as i32;
        *batch.n_seq_id.add(i) = 1;
        *(*batch.seq_id.add(i)) = seq as i32;
        *batch.logits.add(i) = i8::from(logits);
    }
}

/// Holds back text that might be the start of a stop string, and finds stop strings.
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    pub(crate) fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.to_vec(),
            held: String::new(),
        }
    }

    /// Adds text; returns what can be emitted and the stop string found, if any.
    pub(crate) fn push(&mut self, text: &str) -> (String, Option<String>) {
        self.held.push_str(text);
        let hit = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at);
        if let Some((at, s)) = hit {
            let emit = self.held[..at].to_owned();
            self.held.clear();
            return (emit, Some(s.clone()));
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(move |&n| s.is_char_boundary(n))
                    .map(move |n| &s[..n])
            })
            .filter(|p| self.held.ends_with(p))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let emit = self.held[..cut].to_owned();
        self.held.drain(..cut);
        (emit, None)
    }

    pub(crate) fn finish(&mut self, tail: &str) -> String {
        self.held.push_str(tail);
        std::mem::take(&mut self.held)
    }
}
