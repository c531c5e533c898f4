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
    /// The samplers and their order (`--samplers`); llama.cpp's default order.
    pub samplers: Vec<SamplerKind>,
    /// Added to the logits of these tokens before any sampler (`--logit-bias`); `-inf` bans
    /// a token.
    pub logit_bias: Vec<(Token, f32)>,
    /// Never end the output with an end-of-generation token (`--ignore-eos`): they are
    /// banned.
    pub ignore_eos: bool,
    /// Locally typical sampling; `1.0` disables (`--typical`).
    pub typical_p: f32,
    /// Top-n-sigma; `<= 0` disables (`--top-nsigma`).
    pub top_n_sigma: f32,
    /// Dynamic temperature range; `0` disables (`--dynatemp-range`).
    pub dynatemp_range: f32,
    /// Dynamic temperature exponent (`--dynatemp-exp`).
    pub dynatemp_exponent: f32,
    /// XTC probability; `0` disables (`--xtc-probability`).
    pub xtc_probability: f32,
    /// XTC threshold (`--xtc-threshold`).
    pub xtc_threshold: f32,
    /// DRY multiplier; `0` disables (`--dry-multiplier`).
    pub dry_multiplier: f32,
    /// DRY base (`--dry-base`).
    pub dry_base: f32,
    /// DRY allowed length (`--dry-allowed-length`).
    pub dry_allowed_length: i32,
    /// DRY look-back; `-1` the context, `0` off (`--dry-penalty-last-n`).
    pub dry_penalty_last_n: i32,
    /// DRY sequence breakers (`--dry-sequence-breaker`).
    pub dry_sequence_breakers: Vec<String>,
    /// Mirostat: 0 off, 1 or 2 (`--mirostat`); it replaces the samplers after temperature.
    pub mirostat: u8,
    /// Mirostat target entropy tau (`--mirostat-ent`).
    pub mirostat_tau: f32,
    /// Mirostat learning rate eta (`--mirostat-lr`).
    pub mirostat_eta: f32,
}

/// One sampler of the chain (`--samplers`), named as llama.cpp names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    /// Repeat, frequency and presence penalties.
    Penalties,
    /// DRY ("don't repeat yourself").
    Dry,
    /// Top-n-sigma.
    TopNSigma,
    /// Top-k.
    TopK,
    /// Locally typical.
    TypicalP,
    /// Top-p.
    TopP,
    /// Min-p.
    MinP,
    /// Exclude top choices.
    Xtc,
    /// Temperature (and dynamic temperature).
    Temperature,
}

impl SamplerKind {
    /// llama.cpp's default order.
    pub const DEFAULT_ORDER: [Self; 9] = [
        Self::Penalties,
        Self::Dry,
        Self::TopNSigma,
        Self::TopK,
        Self::TypicalP,
        Self::TopP,
        Self::MinP,
        Self::Xtc,
        Self::Temperature,
    ];

    /// The sampler a `--samplers` name (or one of llama.cpp's aliases) stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "penalties" => Self::Penalties,
            "dry" => Self::Dry,
            "top_n_sigma" | "top-n-sigma" => Self::TopNSigma,
            "top_k" | "top-k" => Self::TopK,
            "typ_p" | "typical_p" | "typical-p" | "typical" | "typ-p" | "typ" => Self::TypicalP,
            "top_p" | "top-p" | "nucleus" => Self::TopP,
            "min_p" | "min-p" => Self::MinP,
            "xtc" => Self::Xtc,
            "temperature" | "temp" => Self::Temperature,
            _ => return None,
        })
    }

    /// The sampler a `--sampling-seq` letter stands for.
    pub fn from_letter(c: char) -> Option<Self> {
        Some(match c {
            'e' => Self::Penalties,
            'd' => Self::Dry,
            's' => Self::TopNSigma,
            'k' => Self::TopK,
            'y' => Self::TypicalP,
            'p' => Self::TopP,
            'm' => Self::MinP,
            'x' => Self::Xtc,
            't' => Self::Temperature,
            _ => return None,
        })
    }
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
            samplers: SamplerKind::DEFAULT_ORDER.to_vec(),
            logit_bias: Vec::new(),
            ignore_eos: false,
            typical_p: 1.0,
            top_n_sigma: -1.0,
            dynatemp_range: 0.0,
            dynatemp_exponent: 1.0,
            xtc_probability: 0.0,
            xtc_threshold: 0.1,
            dry_multiplier: 0.0,
            dry_base: 1.75,
            dry_allowed_length: 2,
            dry_penalty_last_n: -1,
            dry_sequence_breakers: ["\n", ":", "\"", "*"].map(String::from).to_vec(),
            mirostat: 0,
            mirostat_tau: 5.0,
            mirostat_eta: 0.1,
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
        for (name, v) in [
            ("typical_p", self.typical_p),
            ("xtc_probability", self.xtc_probability),
            ("xtc_threshold", self.xtc_threshold),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(name, v.to_string(), "must be in 0..=1");
            }
        }
        for (name, v) in [
            ("top_n_sigma", self.top_n_sigma),
            ("dynatemp_range", self.dynatemp_range),
            ("dynatemp_exponent", self.dynatemp_exponent),
            ("dry_base", self.dry_base),
            ("mirostat_tau", self.mirostat_tau),
            ("mirostat_eta", self.mirostat_eta),
        ] {
            if !v.is_finite() {
                return bad(name, v.to_string(), "must be finite");
            }
        }
        if !(self.dry_multiplier.is_finite() && self.dry_multiplier >= 0.0) {
            return bad(
                "dry_multiplier",
                self.dry_multiplier.to_string(),
                "must be >= 0",
            );
        }
        if self.dry_allowed_length < 0 {
            return bad(
                "dry_allowed_length",
                self.dry_allowed_length.to_string(),
                "must be >= 0",
            );
        }
        if self.dry_penalty_last_n < -1 {
            return bad(
                "dry_penalty_last_n",
                self.dry_penalty_last_n.to_string(),
                "must be >= -1",
            );
        }
        if self.mirostat > 2 {
            return bad("mirostat", self.mirostat.to_string(), "must be 0, 1 or 2");
        }
        if let Some((t, b)) = self.logit_bias.iter().find(|(_, b)| b.is_nan()) {
            return bad("logit_bias", format!("{t}: {b}"), "must be a number");
        }
        Ok(())
    }
}

/// Converts a JSON schema to a GBNF grammar with llama.cpp's own converter (what llama-cli's
/// `-j` and llama-server's `response_format` use), for [`SamplingParams::grammar`].
///
/// # Errors
/// [`SamplerError::JsonSchema`] when the text is not JSON or not a schema llama.cpp converts.
pub fn json_schema_to_grammar(schema: &str) -> Result<String, SamplerError> {
    let bad = |reason: &str| SamplerError::JsonSchema {
        reason: reason.to_owned(),
    };
    let c = CString::new(schema).map_err(|_| bad("the schema contains a NUL byte"))?;
    let mut out: *mut std::ffi::c_char = std::ptr::null_mut();
    // SAFETY: `c` is NUL-terminated and outlives the call; `out` is written only on success.
    // The wrapper catches every C++ exception and returns a status instead.
    let status = unsafe { sys::llama_rs_json_schema_to_grammar(c.as_ptr(), false, &mut out) };
    if status != sys::LLAMA_RS_STATUS_OK || out.is_null() {
        return Err(bad(if status == sys::LLAMA_RS_STATUS_EXCEPTION {
            "not valid JSON, or a schema llama.cpp cannot convert"
        } else {
            "llama.cpp's converter failed"
        }));
    }
    // SAFETY: on success `out` is a NUL-terminated string the wrapper allocated, freed once
    // here after copying.
    let grammar = unsafe {
        let g = std::ffi::CStr::from_ptr(out).to_string_lossy().into_owned();
        sys::llama_rs_string_free(out);
        g
    };
    Ok(grammar)
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

        let n_vocab = model.n_vocab();
        let mut biases: Vec<sys::llama_logit_bias> = Vec::new();
        for &(token, bias) in &params.logit_bias {
            if token < 0 || token >= n_vocab {
                return Err(SamplerError::BadParam {
                    name: "logit_bias",
                    value: token.to_string(),
                    reason: "not a token of the model's vocabulary",
                });
            }
            biases.push(sys::llama_logit_bias { token, bias });
        }
        if params.ignore_eos {
            biases.extend((0..n_vocab).filter(|&t| model.is_eog(t)).map(|token| {
                sys::llama_logit_bias {
                    token,
                    bias: f32::NEG_INFINITY,
                }
            }));
        }
        if !biases.is_empty() {
            // SAFETY: `biases` holds `len` entries for tokens of the vocabulary; llama.cpp
            // copies them.
            sampler.add(unsafe {
                sys::llama_sampler_init_logit_bias(n_vocab, biases.len() as i32, biases.as_ptr())
            });
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
        let seed = params.seed.unwrap_or(LLAMA_DEFAULT_SEED);
        let greedy = params.temperature <= 0.0;
        let context = |n: i32| if n < 0 { n_ctx as i32 } else { n };
        // Greedy keeps the most likely token, which every truncating sampler keeps too: only
        // the samplers that change logits (or, XTC, drop top tokens) matter before it.
        for &kind in &params.samplers {
            match kind {
                SamplerKind::Penalties => {
                    let last_n = context(params.penalty_last_n);
                    if last_n != 0
                        && (params.repeat_penalty != 1.0
                            || params.frequency_penalty != 0.0
                            || params.presence_penalty != 0.0)
                    {
                        // SAFETY: plain constructor with validated arguments.
                        let p = unsafe {
                            sys::llama_sampler_init_penalties(
                                n_vocab,
                                last_n,
                                params.repeat_penalty,
                                params.frequency_penalty,
                                params.presence_penalty,
                            )
                        };
                        sampler.penalties = NonNull::new(p);
                        sampler.add(p);
                    }
                }
                SamplerKind::Dry if params.dry_multiplier > 0.0 => {
                    let breakers: Vec<CString> = params
                        .dry_sequence_breakers
                        .iter()
                        .map(|b| CString::new(b.as_str()))
                        .collect::<Result<_, _>>()
                        .map_err(|_| SamplerError::BadParam {
                            name: "dry_sequence_breakers",
                            value: "(a NUL byte)".into(),
                            reason: "must not contain NUL",
                        })?;
                    let ptrs: Vec<*const std::ffi::c_char> =
                        breakers.iter().map(|b| b.as_ptr()).collect();
                    // SAFETY: the vocabulary outlives the sampler (see the grammar); the
                    // breaker strings are NUL-terminated and copied by llama.cpp.
                    sampler.add(unsafe {
                        sys::llama_sampler_init_dry(
                            model.vocab_ptr(),
                            params.dry_multiplier,
                            params.dry_base,
                            params.dry_allowed_length,
                            context(params.dry_penalty_last_n),
                            ptrs.as_ptr().cast_mut(),
                            ptrs.len(),
                        )
                    });
                }
                SamplerKind::Xtc if params.xtc_probability > 0.0 => {
                    // SAFETY: plain constructor with validated arguments.
                    sampler.add(unsafe {
                        sys::llama_sampler_init_xtc(
                            params.xtc_probability,
                            params.xtc_threshold,
                            1,
                            seed,
                        )
                    });
                }
                _ if greedy || params.mirostat != 0 => {}
                SamplerKind::TopNSigma if params.top_n_sigma > 0.0 => {
                    // SAFETY: plain constructor.
                    sampler.add(unsafe { sys::llama_sampler_init_top_n_sigma(params.top_n_sigma) });
                }
                SamplerKind::TopK if params.top_k > 0 => {
                    // SAFETY: plain constructor.
                    sampler.add(unsafe { sys::llama_sampler_init_top_k(params.top_k) });
                }
                SamplerKind::TypicalP if params.typical_p < 1.0 => {
                    // SAFETY: plain constructor.
                    sampler.add(unsafe { sys::llama_sampler_init_typical(params.typical_p, 1) });
                }
                SamplerKind::TopP if params.top_p < 1.0 => {
                    // SAFETY: plain constructor.
                    sampler.add(unsafe { sys::llama_sampler_init_top_p(params.top_p, 1) });
                }
                SamplerKind::MinP if params.min_p > 0.0 => {
                    // SAFETY: plain constructor.
                    sampler.add(unsafe { sys::llama_sampler_init_min_p(params.min_p, 1) });
                }
                SamplerKind::Temperature => {
                    // SAFETY: plain constructor.
                    sampler.add(unsafe {
                        sys::llama_sampler_init_temp_ext(
                            params.temperature,
                            params.dynatemp_range,
                            params.dynatemp_exponent,
                        )
                    });
                }
                _ => {}
            }
        }
        if greedy {
            // SAFETY: plain constructor.
            sampler.add(unsafe { sys::llama_sampler_init_greedy() });
        } else if params.mirostat != 0 {
            // As llama.cpp: temperature, then mirostat instead of the other samplers.
            // SAFETY: plain constructors with validated arguments.
            unsafe {
                sampler.add(sys::llama_sampler_init_temp_ext(
                    params.temperature,
                    0.0,
                    1.0,
                ));
                sampler.add(if params.mirostat == 1 {
                    sys::llama_sampler_init_mirostat(
                        n_vocab,
                        seed,
                        params.mirostat_tau,
                        params.mirostat_eta,
                        100,
                    )
                } else {
                    sys::llama_sampler_init_mirostat_v2(
                        seed,
                        params.mirostat_tau,
                        params.mirostat_eta,
                    )
                });
            }
        } else {
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
                // SAFETY: `p` is owned by the live chain. A penalty sampler that threw only
                // misses one prompt token's count; sampling reports its own failures.
                let _ = unsafe { crate::llama::shim::acap_llama_sampler_accept(p.as_ptr(), t) };
            }
        }
    }

    /// Samples from the logits of output row `idx` (-1: the last) of `ctx` and accepts the
    /// token into every sampler's state.
    ///
    /// # Errors
    /// llama.cpp threw (a grammar with no way forward, an inconsistent vocabulary): the
    /// exception's message.
    pub(crate) fn sample(
        &mut self,
        ctx: *mut sys::llama_context,
        idx: i32,
    ) -> Result<Token, String> {
        use crate::llama::shim;
        // SAFETY: `ctx` is a live context whose last decode produced logits for `idx`;
        // `llama_sampler_sample` also accepts the token into the chain.
        let t = unsafe { shim::acap_llama_sampler_sample(self.chain.as_ptr(), ctx, idx) };
        // LLAMA_TOKEN_NULL (-1) is what the barrier returns when llama.cpp threw.
        if t == -1 {
            let why = shim::exception();
            if !why.is_empty() {
                return Err(why);
            }
        }
        Ok(t)
    }
}
