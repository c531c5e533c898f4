//! Sampling through llama.cpp's sampler chain.

use std::ffi::CString;
use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use crate::error::SamplerError;
use crate::llama::backend;
use crate::model::{Model, Token};

/// llama.h's `LLAMA_DEFAULT_SEED` (a macro bindgen does not export): pick a random seed.
const LLAMA_DEFAULT_SEED: u32 = 0xFFFF_FFFF;

/// Sampling settings, with llama-cli's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Temperature; `<= 0` samples greedily (`--temp`).
    pub temperature: f32,
    /// Keep the `k` most likely tokens; `<= 0` disables (`--top-k`).
    pub top_k: i32,
    /// Nucleus sampling; `1.0` disables (`--top-p`).
    pub top_p: f32,
    /// Minimum probability relative to the best token; `0.0` disables (`--min-p`).
    pub min_p: f32,
    /// Repetition penalty; `1.0` disables (`--repeat-penalty`).
    pub repeat_penalty: f32,
    /// Frequency penalty; `0.0` disables (`--frequency-penalty`).
    pub frequency_penalty: f32,
    /// Presence penalty; `0.0` disables (`--presence-penalty`).
    pub presence_penalty: f32,
    /// Tokens the penalties look back over; `0` disables, `-1` means the context size
    /// (`--repeat-last-n`).
    pub penalty_last_n: i32,
    /// Random seed; `None` picks one at random (`-s`).
    pub seed: Option<u32>,
    /// A GBNF grammar the output must follow (`--grammar`).
    pub grammar: Option<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            seed: None,
            grammar: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding (`--temp 0`): always the most likely token.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Sets the temperature.
    #[must_use]
    pub fn with_temperature(mut self, t: f32) -> Self {
        self.temperature = t;
        self
    }

    /// Sets the seed.
    #[must_use]
    pub fn with_seed(mut self, seed: u32) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets a GBNF grammar (start symbol `root`).
    #[must_use]
    pub fn with_grammar(mut self, gbnf: impl Into<String>) -> Self {
        self.grammar = Some(gbnf.into());
        self
    }

    fn validate(&self) -> Result<(), SamplerError> {
        let bad = |name: &'static str, value: String, reason: &'static str| {
            Err(SamplerError::BadParam {
                name,
                value,
                reason,
            })
        };
        if !self.temperature.is_finite() {
            return bad(
                "temperature",
                self.temperature.to_string(),
                "must be finite",
            );
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return bad("top_p", self.top_p.to_string(), "must be in 0..=1");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", self.min_p.to_string(), "must be in 0..=1");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad(
                "repeat_penalty",
                self.repeat_penalty.to_string(),
                "must be > 0",
            );
        }
        if !self.frequency_penalty.is_finite() {
            return bad(
                "frequency_penalty",
                self.frequency_penalty.to_string(),
                "must be finite",
            );
        }
        if !self.presence_penalty.is_finite() {
            return bad(
                "presence_penalty",
                self.presence_penalty.to_string(),
                "must be finite",
            );
        }
        if self.penalty_last_n < -1 {
            return bad(
                "penalty_last_n",
                self.penalty_last_n.to_string(),
                "must be >= -1",
            );
        }
        Ok(())
    }
}

/// A llama.cpp sampler chain: penalties, grammar, then top-k / top-p / min-p / temperature and
/// a seeded draw (or greedy).
pub struct Sampler {
    chain: NonNull<sys::llama_sampler>,
    /// The penalties sampler inside the chain, fed the prompt so repeats of it count too.
    penalties: Option<NonNull<sys::llama_sampler>>,
}

// SAFETY: a sampler chain is plain heap state with no thread affinity; `Sampler` owns it
// exclusively and all use goes through `&mut self`.
unsafe impl Send for Sampler {}

impl Drop for Sampler {
    fn drop(&mut self) {
        // SAFETY: the chain owns its samplers and is freed once, here.
        unsafe { sys::llama_sampler_free(self.chain.as_ptr()) };
    }
}

impl Sampler {
    /// Builds the chain for `model`. `n_ctx` resolves `penalty_last_n = -1`.
    ///
    /// # Errors
    /// See [`SamplerError`]: each variant says what was wrong.
    pub fn new(model: &Model, params: &SamplingParams, n_ctx: u32) -> Result<Self, SamplerError> {
        params.validate()?;
        backend::ensure();
        // SAFETY: returns a plain struct of defaults.
        let chain_params = unsafe { sys::llama_sampler_chain_default_params() };
        // SAFETY: creates a new, empty chain owned by the returned `Sampler`.
        let chain = unsafe { sys::llama_sampler_chain_init(chain_params) };
        let chain = NonNull::new(chain).expect("llama_sampler_chain_init never returns NULL");
        let mut sampler = Self {
            chain,
            penalties: None,
        };

        let last_n = if params.penalty_last_n < 0 {
            n_ctx as i32
        } else {
            params.penalty_last_n
        };
        let penalties_on = last_n != 0
            && (params.repeat_penalty != 1.0
                || params.frequency_penalty != 0.0
                || params.presence_penalty != 0.0);
        if penalties_on {
            // SAFETY: plain constructor with validated arguments.
            let p = unsafe {
                sys::llama_sampler_init_penalties(
                    model.n_vocab(),
                    last_n,
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                )
            };
            sampler.penalties = NonNull::new(p);
            sampler.add(p);
        }
        if let Some(gbnf) = &params.grammar {
            let grammar = CString::new(gbnf.as_str()).map_err(|_| SamplerError::Grammar {
                root: "root".into(),
                reason: "the grammar contains a NUL byte".into(),
            })?;
            backend::clear_last_error();
            // SAFETY: both strings are NUL-terminated and outlive the call; the vocabulary
            // lives with the model, which outlives every session that samples with this.
            let g = unsafe {
                sys::llama_sampler_init_grammar(
                    model.vocab_ptr(),
                    grammar.as_ptr(),
                    c"root".as_ptr(),
                )
            };
            if g.is_null() {
                return Err(SamplerError::Grammar {
                    root: "root".into(),
                    reason: backend::take_last_error("parse error"),
                });
            }
            sampler.add(g);
        }
        if params.temperature <= 0.0 {
            // SAFETY: plain constructor.
            sampler.add(unsafe { sys::llama_sampler_init_greedy() });
        } else {
            if params.top_k > 0 {
                // SAFETY: plain constructor.
                sampler.add(unsafe { sys::llama_sampler_init_top_k(params.top_k) });
            }
            if params.top_p < 1.0 {
                // SAFETY: plain constructor.
                sampler.add(unsafe { sys::llama_sampler_init_top_p(params.top_p, 1) });
            }
            if params.min_p > 0.0 {
                // SAFETY: plain constructor.
                sampler.add(unsafe { sys::llama_sampler_init_min_p(params.min_p, 1) });
            }
            // SAFETY: plain constructor.
            sampler.add(unsafe { sys::llama_sampler_init_temp(params.temperature) });
            let seed = params.seed.unwrap_or(LLAMA_DEFAULT_SEED);
            // SAFETY: plain constructor; LLAMA_DEFAULT_SEED asks llama.cpp for a random seed.
            sampler.add(unsafe { sys::llama_sampler_init_dist(seed) });
        }
        Ok(sampler)
    }

    fn add(&mut self, s: *mut sys::llama_sampler) {
        // SAFETY: `s` is a freshly created sampler; the chain takes ownership of it.
        unsafe { sys::llama_sampler_chain_add(self.chain.as_ptr(), s) };
    }

    /// Feeds prompt tokens to the penalties (not to the grammar, which constrains only the
    /// output), as llama-cli does.
    pub fn accept_prompt(&mut self, tokens: &[Token]) {
        if let Some(p) = self.penalties {
            for &t in tokens {
                // SAFETY: `p` is owned by the live chain.
                unsafe { sys::llama_sampler_accept(p.as_ptr(), t) };
            }
        }
    }

    /// Samples from the logits of output row `idx` (-1: the last) of `ctx` and accepts the
    /// token into every sampler's state.
    pub(crate) fn sample(&mut self, ctx: *mut sys::llama_context, idx: i32) -> Token {
        // SAFETY: `ctx` is a live context whose last decode produced logits for `idx`;
        // `llama_sampler_sample` also accepts the token into the chain.
        unsafe { sys::llama_sampler_sample(self.chain.as_ptr(), ctx, idx) }
    }
}
