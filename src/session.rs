//! A session: one llama.cpp context over a model, with its KV cache reused across calls.

use std::ffi::c_void;
use std::ops::ControlFlow;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use llama_cpp_sys_2 as sys;

use crate::backend;
use crate::error::{DecodeError, SessionError};
use crate::model::{Model, Token};
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenize::{PieceDecoder, Special};

/// Context settings.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl Default for SessionParams {
    fn default() -> Self {
        Self {
            n_ctx: 4096,
            n_batch: 2048,
            n_ubatch: 512,
            n_threads: 0,
            n_threads_batch: 0,
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
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// Stops the current (or next) generation or prompt decode as soon as possible.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A llama.cpp context over a [`Model`]: decodes prompts, generates, and keeps the KV cache
/// across calls so a follow-up turn only decodes its new tokens.
pub struct Session {
    ctx: NonNull<sys::llama_context>,
    batch: sys::llama_batch,
    model: Model,
    /// The tokens whose keys and values are in the cache (sequence 0), in order.
    cached: Vec<Token>,
    n_ctx: u32,
    n_batch: u32,
    cancel: Arc<AtomicBool>,
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
    // SAFETY: `data` points into the `Arc<AtomicBool>` the session keeps alive for as long as
    // the context exists. Loading an atomic cannot panic.
    unsafe { &*data.cast::<AtomicBool>() }.load(Ordering::Relaxed)
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
        let cancel = Arc::new(AtomicBool::new(false));

        // SAFETY: returns a plain struct of defaults.
        let mut cp = unsafe { sys::llama_context_default_params() };
        cp.n_ctx = params.n_ctx;
        cp.n_batch = params.n_batch;
        cp.n_ubatch = params.n_ubatch;
        cp.n_seq_max = 1;
        cp.n_threads = threads;
        cp.n_threads_batch = threads_batch;
        cp.abort_callback = Some(abort_trampoline);
        cp.abort_callback_data = Arc::as_ptr(&cancel).cast_mut().cast();

        backend::clear_last_error();
        // SAFETY: the model is live (and kept alive by `self.model`); `cp` starts from
        // llama.cpp's defaults; the abort data outlives the context (same struct).
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
        Ok(Self {
            ctx,
            batch,
            model: model.clone(),
            cached: Vec::new(),
            n_ctx,
            n_batch,
            cancel,
        })
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
        CancelHandle(self.cancel.clone())
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
                let pos = (self.cached.len() + i) as i32;
                // SAFETY: the batch arrays hold `n_batch` entries and `chunk.len() <= n_batch`;
                // each `seq_id[i]` points to room for one id (`llama_batch_init(.., 1)`).
                unsafe {
                    *self.batch.token.add(i) = t;
                    *self.batch.pos.add(i) = pos;
                    *self.batch.n_seq_id.add(i) = 1;
                    *(*self.batch.seq_id.add(i)) = 0;
                    *self.batch.logits.add(i) = i8::from(last_chunk && i + 1 == chunk.len());
                }
            }
            self.batch.n_tokens = chunk.len() as i32;
            // SAFETY: a live context and a batch filled above.
            let code = unsafe { sys::llama_decode(self.ctx.as_ptr(), self.batch) };
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
            self.cached.extend_from_slice(chunk);
        }
        Ok(())
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
        self.cancel.store(false, Ordering::SeqCst);
        let t0 = Instant::now();
        let cached_tokens = self.prefill(prompt)?;
        let prompt_time = t0.elapsed();
        sampler.accept_prompt(prompt);

        let t1 = Instant::now();
        let mut decoder = PieceDecoder::new();
        let mut stop = StopMatcher::new(&params.stop);
        let mut generated = 0usize;
        let reason = loop {
            if self.cancel.load(Ordering::SeqCst) {
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

/// Holds back text that might be the start of a stop string, and finds stop strings.
struct StopMatcher<'a> {
    stops: &'a [String],
    held: String,
}

impl<'a> StopMatcher<'a> {
    fn new(stops: &'a [String]) -> Self {
        Self {
            stops,
            held: String::new(),
        }
    }

    /// Adds text; returns what can be emitted and the stop string found, if any.
    fn push(&mut self, text: &str) -> (String, Option<String>) {
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

    fn finish(&mut self, tail: &str) -> String {
        self.held.push_str(tail);
        std::mem::take(&mut self.held)
    }
}
