//! acap: run GGUF language models with activation capping.
//!
//! At chosen decoder blocks the hidden state's projection on a per-layer axis is clamped from
//! above: `h' = h - alpha * max(0, dot(a, h) - tau) * a`. This crate is acap's safe layer
//! over the vendored llama.cpp (`llama-cpp-sys-2`) plus the domain model every front end
//! shares:
//!
//! * [`Model`], [`Session`], [`SamplingParams`], [`ChatMessage`]: load GGUF models, decode
//!   prompts with KV-cache reuse, sample through llama.cpp's sampler chain, stream text, chat;
//! * [`axis`]: axis files (the reference llama.cpp layout), summing several of them into an
//!   [`AxisSet`], the f32 normalisation and the per-layer threshold rules;
//! * [`layers`]: which decoder blocks a `--acap-layer-range` selects.
//!
//! * [`eval`]: the reward evaluator (rubric, grammar, tolerant parser).
//!
//! GGUF parsing is native, in [`gguf`] (re-exported `acap-gguf`); PyTorch `.pt` checkpoints
//! are read without executing anything by [`torch`] (re-exported `acap-torch`).

pub mod axis;
mod batch;
pub mod cap;
mod chat;
mod error;
pub mod eval;
pub mod extraction;
mod files;
mod generation;
mod hparams;
pub mod layers;
mod llama;
mod lora;
mod model;
mod quantize;
mod sampling;
mod session;
mod tokenize;
mod version;

pub use acap_gguf as gguf;
pub use acap_torch as torch;
pub use axis::{
    AxisError, AxisFile, AxisFileError, AxisSet, AxisSetError, AxisWriteError, AxisWriter,
    Threshold, ThresholdError, ThresholdSource, Thresholds,
};
pub use batch::{BatchEngine, SlotEvent, SlotInfo};
pub use cap::{
    CAP_PATH_ENV, CapConfig, CapError, CapPath, CapPlan, ControlVector, ControlVectorError,
    HSuppress, HSuppressError, LayerStats, Observation, SuppressStats,
};
pub use chat::{ChatMessage, ChatTemplate, TemplateChoice, builtin_templates};
pub use error::{
    ChatError, DecodeError, Error, LoadError, QuantizeError, SamplerError, SessionError,
    TokenizeError,
};
pub use files::read_text_bounded;
pub use layers::LayerRange;
pub use lora::LoraAdapter;
pub use model::{MetadataOverride, Model, ModelInfo, ModelParams, Token};
pub use quantize::{QuantType, quantize};
pub use sampling::{Sampler, SamplerKind, SamplingParams, json_schema_to_grammar};
pub use session::{
    CacheType, CancelHandle, GenerateParams, GenerationStats, Session, SessionParams, StopReason,
};
pub use tokenize::{PieceDecoder, Special};
pub use version::{Version, version};

/// The README's Rust examples, compiled as doctests so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
