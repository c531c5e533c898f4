//! A session: one llama.cpp context over a model, with its KV cache reused across calls.

mod canonical;
mod capping;
mod params;
mod suppress;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::cap::CapConfig;
use crate::cap::hooks::Flags;
use crate::error::{DecodeError, SessionError};
use crate::generation::Generation;
use crate::llama::Context;
use crate::model::{Model, Token};
use crate::tokenize::Special;

pub(crate) use canonical::CanonicalPrefix;
pub use params::{CacheType, GenerateParams, GenerationStats, SessionParams, StopReason};

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
    ctx: Context,
    /// The tokens whose keys and values are in the cache (sequence 0), in order.
    cached: Vec<Token>,
    /// What deterministic mode may reuse of `cached`.
    canonical: CanonicalPrefix,
    /// The capping as configured (the resolved plan lives in the context's capping slot).
    cap_config: Option<CapConfig>,
}

/// The one capping slot of a session's context.
const SLOT: usize = 0;

impl Session {
    /// Creates a context over `model`, capped as `params.capping` says.
    ///
    /// # Errors
    /// [`SessionError::BadParam`] for sizes out of range, [`SessionError::Cap`] when the
    /// capping does not fit the model, [`SessionError::Create`] when llama.cpp cannot create
    /// the context (usually out of memory).
    pub fn new(model: &Model, params: SessionParams) -> Result<Self, SessionError> {
        if params.capping.is_some() && !params.eval_callback {
            return Err(SessionError::Cap(crate::cap::CapError::NoEvalCallback));
        }
        // Resolved before the context exists: a configuration that cannot fit fails fast.
        let plan = params.capping.as_ref().map(|c| c.plan(model)).transpose()?;
        let ctx = Context::new(model, &params, 1)?;
        let mut session = Self {
            // Reserved up front: decode steps never grow it (no allocation per token).
            cached: Vec::with_capacity(ctx.n_ctx() as usize),
            canonical: CanonicalPrefix::new(params.deterministic, ctx.n_ubatch()),
            ctx,
            cap_config: None,
        };
        if let (Some(plan), Some(cfg)) = (plan, params.capping) {
            session.install(cfg, plan)?;
        }
        if let Some(h) = params.h_suppress {
            session.set_h_suppress(Some(h))?;
        }
        Ok(session)
    }

    /// The model this session runs.
    pub fn model(&self) -> &Model {
        self.ctx.model()
    }

    /// The context size in tokens.
    pub fn n_ctx(&self) -> u32 {
        self.ctx.n_ctx()
    }

    /// The tokens currently in the KV cache.
    pub fn cached_tokens(&self) -> &[Token] {
        &self.cached
    }

    /// A handle that cancels generation from another thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(self.ctx.flags().clone())
    }

    /// Empties the KV cache.
    pub fn clear(&mut self) {
        self.ctx.clear_memory();
        self.forget_from(0);
    }

    /// Cuts the cached-token list (and what deterministic mode may reuse of it) to `n`.
    fn forget_from(&mut self, n: usize) {
        self.cached.truncate(n);
        self.canonical.truncate(n);
    }

    /// Switches deterministic mode (see [`SessionParams::deterministic`]) on or off. Turning
    /// it on empties the KV cache, since what it holds may have been batched otherwise.
    pub fn set_deterministic(&mut self, on: bool) {
        if on != self.canonical.is_on() {
            self.canonical = CanonicalPrefix::new(on, self.ctx.n_ubatch());
            self.clear();
        }
    }

    /// Whether deterministic mode is on.
    pub fn is_deterministic(&self) -> bool {
        self.canonical.is_on()
    }

    /// Makes the cache hold exactly `tokens`, reusing the longest common prefix with what is
    /// cached and decoding the rest in batches of `n_batch`. At least the last token is always
    /// decoded, so fresh logits are available. Returns how many tokens were reused.
    ///
    /// # Errors
    /// See [`DecodeError`]: an empty prompt, a prompt longer than the context, a cancel, a
    /// failure inside the capping callback or in llama.cpp.
    pub fn prefill(&mut self, tokens: &[Token]) -> Result<usize, DecodeError> {
        if tokens.is_empty() {
            return Err(DecodeError::EmptyPrompt);
        }
        if tokens.len() > self.n_ctx() as usize {
            return Err(DecodeError::ContextFull {
                needed: tokens.len(),
                n_ctx: self.n_ctx(),
            });
        }
        let common = self
            .canonical
            .reusable(common_prefix(&self.cached, tokens).min(tokens.len() - 1));
        if common < self.cached.len() {
            if !self.ctx.seq_rm(0, common, None) {
                self.clear();
                return self.prefill(tokens).map(|_| 0);
            }
            self.forget_from(common);
        }
        self.decode(&tokens[common..])?;
        Ok(common)
    }

    /// Appends `tokens` to the cache, requesting logits for the last one.
    fn decode(&mut self, tokens: &[Token]) -> Result<(), DecodeError> {
        let needed = self.cached.len() + tokens.len();
        if needed > self.n_ctx() as usize {
            return Err(DecodeError::ContextFull {
                needed,
                n_ctx: self.n_ctx(),
            });
        }
        let size = self
            .canonical
            .chunk(tokens.len(), self.ctx.n_decode() as usize);
        let chunks = tokens.chunks(size.max(1));
        let n_chunks = chunks.len();
        for (ci, chunk) in chunks.enumerate() {
            let last_chunk = ci + 1 == n_chunks;
            self.ctx.clear_batch();
            for (i, &t) in chunk.iter().enumerate() {
                let logits = last_chunk && i + 1 == chunk.len();
                self.ctx.push(t, self.cached.len() + i, 0, logits);
            }
            if let Err(e) = self.ctx.decode() {
                self.resync();
                return Err(match e {
                    DecodeError::ContextFull { n_ctx, .. } => {
                        DecodeError::ContextFull { needed, n_ctx }
                    }
                    e => e,
                });
            }
            self.canonical
                .decoded_prompt(self.cached.len(), chunk.len());
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
    ///
    /// # Errors
    /// [`DecodeError::Batch`] when the sequences do not fit together, otherwise as
    /// [`Session::prefill`].
    pub fn decode_sequences(&mut self, seqs: &[&[Token]]) -> Result<(), DecodeError> {
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        let (n_seq_max, n_ubatch, n_ctx) =
            (self.ctx.n_seq_max(), self.ctx.n_ubatch(), self.n_ctx());
        let reason = if seqs.is_empty() || seqs.iter().any(|s| s.is_empty()) {
            Some("no sequences, or an empty one".to_owned())
        } else if seqs.len() > n_seq_max as usize {
            Some(format!(
                "{} sequences, but the session allows {n_seq_max} (n_seq_max)",
                seqs.len(),
            ))
        } else if total > n_ubatch as usize || total > n_ctx as usize {
            Some(format!(
                "{total} tokens do not fit one batch (n_ubatch {n_ubatch}, n_ctx {n_ctx})"
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(DecodeError::Batch { reason });
        }
        self.clear();
        self.ctx.clear_batch();
        for (seq, tokens) in seqs.iter().enumerate() {
            for (pos, &t) in tokens.iter().enumerate() {
                self.ctx.push(t, pos, seq, pos + 1 == tokens.len());
            }
        }
        let result = self.ctx.decode();
        self.clear();
        result.map_err(|e| match e {
            DecodeError::Llama { code, .. } => DecodeError::Llama {
                code,
                meaning: "decoding several sequences failed",
            },
            e => e,
        })
    }

    /// After a failed decode some ubatches may remain in the cache: trust llama.cpp's view.
    fn resync(&mut self) {
        let max = self.ctx.seq_pos_max(0);
        self.forget_from((max + 1).max(0) as usize);
    }

    /// Decodes `prompt` (reusing the cache) and generates, calling `on_text` with each piece of
    /// text as soon as it is complete UTF-8 and cannot be the start of a stop string. Returning
    /// `ControlFlow::Break` from `on_text` stops generation.
    ///
    /// # Errors
    /// A bad sampling setting ([`crate::SamplerError`]), a failed decode
    /// ([`crate::DecodeError`]) or a token that cannot be turned into text.
    pub fn generate_tokens(
        &mut self,
        prompt: &[Token],
        params: &GenerateParams,
        mut on_text: impl FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationStats, crate::Error> {
        let n_ctx = self.n_ctx();
        let mut generation = Generation::new(self.model(), params, n_ctx, prompt)?;
        let flags = self.ctx.flags().clone();
        flags.cancel.store(false, Ordering::SeqCst);
        let t0 = Instant::now();
        let cached_tokens = self.prefill(prompt)?;
        let prompt_time = t0.elapsed();

        let t1 = Instant::now();
        let reason = loop {
            if flags.cancel.load(Ordering::SeqCst) {
                break StopReason::Cancelled;
            }
            let step = generation.step(&self.ctx, -1, self.cached.len(), n_ctx as usize)?;
            if !step.text.is_empty() && on_text(&step.text).is_break() {
                break StopReason::Cancelled;
            }
            let token = match step.next {
                Ok(token) => token,
                Err(reason) => break reason,
            };
            // Cancelled from inside `on_text` or meanwhile from another thread.
            if flags.cancel.load(Ordering::SeqCst) {
                break StopReason::Cancelled;
            }
            match self.decode(&[token]) {
                Ok(()) => {}
                Err(DecodeError::Aborted) => break StopReason::Cancelled,
                Err(e) => return Err(e.into()),
            }
        };
        let tail = generation.finish(&reason);
        if !tail.is_empty() {
            let _ = on_text(&tail);
        }
        Ok(GenerationStats {
            prompt_tokens: prompt.len(),
            cached_tokens,
            generated_tokens: generation.generated(),
            prompt_time,
            generation_time: t1.elapsed(),
            stop_reason: reason,
        })
    }

    /// Tokenizes `prompt` as llama-cli does (BOS added, special tokens parsed) and generates.
    ///
    /// # Errors
    /// As [`Session::generate_tokens`], or a prompt that cannot be tokenized.
    pub fn generate(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
        on_text: impl FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationStats, crate::Error> {
        let tokens = self.model().tokenize(prompt, Special::PROMPT)?;
        self.generate_tokens(&tokens, params, on_text)
    }

    /// Generates and returns the whole text.
    ///
    /// # Errors
    /// As [`Session::generate`].
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
        self.ctx.logits(-1)
    }
}

/// Length of the longest common prefix.
pub(crate) fn common_prefix(a: &[Token], b: &[Token]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
