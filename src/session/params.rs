//! What a session and a generation call take, and what a generation call reports.

use std::time::Duration;

use crate::cap::{CapConfig, CapPath};
use crate::sampling::SamplingParams;

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
    /// Sequences [`crate::Session::decode_sequences`] may decode together (default 1). Above 1 the
    /// KV cache is shared: `n_ctx` cells for all sequences of a batch together.
    pub n_seq_max: u32,
    /// Flash attention: `None` lets llama.cpp decide (its default). Its CPU kernel's results
    /// depend slightly on where a sequence's keys sit in the cache, so hidden-state readers
    /// that batch several sequences (axis extraction) turn it off to stay reproducible.
    pub flash_attention: Option<bool>,
    /// Type of the cached keys (`-ctk`); `None` keeps llama.cpp's default (F16).
    pub cache_type_k: Option<CacheType>,
    /// Type of the cached values (`-ctv`); `None` keeps llama.cpp's default (F16).
    pub cache_type_v: Option<CacheType>,
    /// Activation capping to apply from the start (validated against the model).
    pub capping: Option<CapConfig>,
    /// Install the eval callback (default). Without it the session is plain llama.cpp: the
    /// baseline benchmarks compare against; capping is then refused and observers never run.
    pub eval_callback: bool,
    /// Where the cap runs; `None` takes `ACAP_CAP_PATH` from the environment (`auto` when
    /// unset): see [`CapPath`].
    pub cap_path: Option<CapPath>,
    /// LoRA adapters and their scales (`--lora`, `--lora-scaled`), for this session's model.
    pub lora: Vec<(std::sync::Arc<crate::LoraAdapter>, f32)>,
    /// H-neuron suppression to apply from the start (`--h-suppress`; validated against the
    /// model's graph).
    pub h_suppress: Option<std::sync::Arc<crate::HSuppress>>,
    /// Deterministic mode (`--deterministic`): a request's output is bit-identical to the
    /// same request run alone on a fresh process, whatever ran before or beside it. Prompts
    /// are decoded as whole physical batches from position 0, cached keys and values are
    /// reused only for such batches, and a [`crate::BatchEngine`] decodes one request per
    /// call with a cache stream of its own. Costs prefix reuse and, with several requests
    /// at once, batching across them.
    pub deterministic: bool,
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
            cache_type_k: None,
            cache_type_v: None,
            capping: None,
            eval_callback: true,
            cap_path: None,
            lora: Vec::new(),
            h_suppress: None,
            deterministic: false,
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

    /// Sets how many sequences [`crate::Session::decode_sequences`] may decode together.
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

    /// Chooses where the cap runs (instead of `ACAP_CAP_PATH`).
    #[must_use]
    pub fn with_cap_path(mut self, path: CapPath) -> Self {
        self.cap_path = Some(path);
        self
    }

    /// Suppresses H-neurons as `h` says; session creation fails if it cannot.
    #[must_use]
    pub fn with_h_suppress(mut self, h: std::sync::Arc<crate::HSuppress>) -> Self {
        self.h_suppress = Some(h);
        self
    }

    /// Turns deterministic mode on or off (see [`SessionParams::deterministic`]).
    #[must_use]
    pub fn with_deterministic(mut self, on: bool) -> Self {
        self.deterministic = on;
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

/// A KV cache element type, as llama-cli's `-ctk` / `-ctv` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheType {
    /// 32-bit floats: results do not depend on batch shapes (hidden-state readers use it).
    F32,
    /// 16-bit floats (llama.cpp's default).
    F16,
    /// bfloat16.
    Bf16,
    /// 8-bit blocks.
    Q8_0,
    /// 4-bit blocks.
    Q4_0,
    /// 4-bit blocks with a minimum.
    Q4_1,
    /// 4-bit non-linear blocks.
    Iq4Nl,
    /// 5-bit blocks.
    Q5_0,
    /// 5-bit blocks with a minimum.
    Q5_1,
}

impl CacheType {
    /// Every type with its llama-cli name.
    pub const ALL: [(CacheType, &'static str); 9] = [
        (CacheType::F32, "f32"),
        (CacheType::F16, "f16"),
        (CacheType::Bf16, "bf16"),
        (CacheType::Q8_0, "q8_0"),
        (CacheType::Q4_0, "q4_0"),
        (CacheType::Q4_1, "q4_1"),
        (CacheType::Iq4Nl, "iq4_nl"),
        (CacheType::Q5_0, "q5_0"),
        (CacheType::Q5_1, "q5_1"),
    ];

    /// The type llama-cli calls `name` (`f16`, `q8_0`...).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(t, _)| *t)
    }

    /// llama-cli's name of the type.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("?", |(_, n)| n)
    }

    pub(crate) fn ggml_type(self) -> llama_cpp_sys_2::ggml_type {
        use llama_cpp_sys_2 as sys;
        match self {
            CacheType::F32 => sys::GGML_TYPE_F32,
            CacheType::F16 => sys::GGML_TYPE_F16,
            CacheType::Bf16 => sys::GGML_TYPE_BF16,
            CacheType::Q8_0 => sys::GGML_TYPE_Q8_0,
            CacheType::Q4_0 => sys::GGML_TYPE_Q4_0,
            CacheType::Q4_1 => sys::GGML_TYPE_Q4_1,
            CacheType::Iq4Nl => sys::GGML_TYPE_IQ4_NL,
            CacheType::Q5_0 => sys::GGML_TYPE_Q5_0,
            CacheType::Q5_1 => sys::GGML_TYPE_Q5_1,
        }
    }
}
