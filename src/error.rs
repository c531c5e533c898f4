//! One error enum per operation, under the umbrella [`Error`].

use std::path::PathBuf;

use thiserror::Error;

use crate::axis::AxisError;

/// Why a model could not be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file does not exist or cannot be read.
    #[error("cannot read model {}: {source}", path.display())]
    Io {
        /// The model file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a valid GGUF (checked natively before llama.cpp sees it).
    #[error("model {0}")]
    Gguf(#[from] acap_gguf::ReadError),
    /// llama.cpp refused the model (unknown architecture, missing tensors, truncated data...).
    #[error("llama.cpp could not load model {}: {reason}", path.display())]
    Llama {
        /// The model file.
        path: PathBuf,
        /// What llama.cpp logged last, or a generic reason.
        reason: String,
    },
    /// A hyper-parameter llama.cpp would abort on (checked natively before it sees the file).
    #[error("model {}: {key} = {value}: {reason}", path.display())]
    Hyperparameter {
        /// The model file.
        path: PathBuf,
        /// The metadata key.
        key: String,
        /// Its value, as written.
        value: String,
        /// Why it cannot be loaded.
        reason: String,
    },
    /// The progress callback asked to stop.
    #[error("loading {} was cancelled by the progress callback", path.display())]
    Cancelled {
        /// The model file.
        path: PathBuf,
    },
    /// The path contains a NUL byte.
    #[error("model path {} contains a NUL byte", path.display())]
    BadPath {
        /// The model file.
        path: PathBuf,
    },
}

/// Why a session (llama context) could not be created.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A parameter is out of range.
    #[error("invalid session parameter {name} = {value}: {reason}")]
    BadParam {
        /// The parameter.
        name: &'static str,
        /// Its value, printed.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The capping configuration does not fit the model.
    #[error(transparent)]
    Cap(#[from] crate::cap::CapError),
    /// H-neuron suppression that does not fit the model.
    #[error(transparent)]
    HSuppress(#[from] crate::cap::HSuppressError),
    /// llama.cpp could not create the context (usually out of memory).
    #[error("llama.cpp could not create a context (n_ctx {n_ctx}): {reason}")]
    Create {
        /// The context size asked for.
        n_ctx: u32,
        /// What llama.cpp logged last, or a generic reason.
        reason: String,
    },
}

/// Why text could not be tokenized or detokenized.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenizeError {
    /// The text is longer than llama.cpp's `int32_t` lengths allow.
    #[error("text of {len} bytes is too long to tokenize")]
    TooLong {
        /// Bytes.
        len: usize,
    },
    /// A token id outside the vocabulary.
    #[error("token id {token} is outside the vocabulary (0..{n_vocab})")]
    BadToken {
        /// The id.
        token: i32,
        /// Vocabulary size.
        n_vocab: i32,
    },
    /// llama.cpp reported a failure.
    #[error("llama.cpp failed to tokenize: code {code}")]
    Failed {
        /// The return code.
        code: i32,
    },
    /// The model has no tokenizer (`tokenizer.ggml.model` is `none` or `no_vocab`).
    #[error(
        "the model has no tokenizer (tokenizer.ggml.model is 'none' or 'no_vocab'): text cannot be \
         turned into tokens or back"
    )]
    NoTokenizer,
    /// llama.cpp threw a C++ exception (caught at acap's barrier), typically because the
    /// model's vocabulary is inconsistent (a tokenizer type that does not match its tokens).
    #[error(
        "llama.cpp's {call} failed: {message} (does tokenizer.ggml.model match the model's tokens?)"
    )]
    Exception {
        /// The llama.cpp function.
        call: &'static str,
        /// The exception's message.
        message: String,
    },
}

/// Why decoding (prompt or generation) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The tokens do not fit in the context.
    #[error("context is full: {needed} tokens needed, n_ctx is {n_ctx}")]
    ContextFull {
        /// Tokens the request needs in total.
        needed: usize,
        /// The context size.
        n_ctx: u32,
    },
    /// Nothing to decode.
    #[error("empty prompt: nothing to decode")]
    EmptyPrompt,
    /// See [`TokenizeError`].
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// `llama_decode` failed.
    #[error("llama_decode failed with code {code}: {meaning}")]
    Llama {
        /// The return code.
        code: i32,
        /// What the code means.
        meaning: &'static str,
    },
    /// Sequences that cannot be decoded together (see [`crate::Session::decode_sequences`]).
    #[error("cannot decode these sequences together: {reason}")]
    Batch {
        /// Why.
        reason: String,
    },
    /// The computation was aborted by the cancel flag.
    #[error("decoding was aborted")]
    Aborted,
    /// The eval callback failed (a panic in an observer, an unusable tensor); the KV cache was
    /// cleared because the computation was cut short.
    #[error("capping/observer callback failed: {message}")]
    Hook {
        /// What went wrong.
        message: String,
    },
    /// Capping cannot be applied to this model's graph.
    #[error(transparent)]
    Cap(crate::cap::CapError),
    /// `llama_decode` threw a C++ exception (caught at acap's barrier).
    #[error("llama_decode failed: {message}")]
    Exception {
        /// The exception's message.
        message: String,
    },
}

/// Why a sampler chain could not be built.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum SamplerError {
    /// A sampling parameter is out of range.
    #[error("invalid sampling parameter {name} = {value}: {reason}")]
    BadParam {
        /// The parameter.
        name: &'static str,
        /// Its value, printed.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A JSON schema could not be turned into a grammar.
    #[error("JSON schema: {reason}")]
    JsonSchema {
        /// Why.
        reason: String,
    },
    /// The GBNF grammar does not parse.
    #[error("invalid GBNF grammar (root '{root}'): {reason}")]
    Grammar {
        /// The start symbol.
        root: String,
        /// What llama.cpp logged last, or a generic reason.
        reason: String,
    },
}

/// Why a chat prompt could not be rendered.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatError {
    /// The model has no chat template and none was given.
    #[error("the model has no chat template; pass a template name (e.g. \"llama3\")")]
    NoTemplate,
    /// llama.cpp does not know the template.
    #[error("unsupported chat template '{name}'; built-in templates: {known}")]
    UnknownTemplate {
        /// The template (name or a prefix of its text).
        name: String,
        /// llama.cpp's built-in template names.
        known: String,
    },
    /// A Jinja chat template does not parse or fails to render.
    #[error("chat template from {origin}: {reason}")]
    Jinja {
        /// Where the template came from (`--chat-template-file FILE`, the model).
        origin: String,
        /// minijinja's message.
        reason: String,
    },
    /// A role or content contains a NUL byte.
    #[error("chat message {index} contains a NUL byte")]
    NulByte {
        /// Index of the message.
        index: usize,
    },
}

/// Why quantisation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum QuantizeError {
    /// llama.cpp reported a failure.
    #[error("quantising {} to {}: llama.cpp failed with code {code}", input.display(), output.display())]
    Failed {
        /// Source model.
        input: PathBuf,
        /// Destination.
        output: PathBuf,
        /// The return code.
        code: u32,
    },
    /// A path contains a NUL byte or the input is missing.
    #[error("cannot quantise {}: {reason}", path.display())]
    BadPath {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Any error of acap.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`LoadError`].
    #[error(transparent)]
    Load(#[from] LoadError),
    /// See [`SessionError`].
    #[error(transparent)]
    Session(#[from] SessionError),
    /// See [`TokenizeError`].
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// See [`DecodeError`].
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// See [`SamplerError`].
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    /// See [`ChatError`].
    #[error(transparent)]
    Chat(#[from] ChatError),
    /// See [`QuantizeError`].
    #[error(transparent)]
    Quantize(#[from] QuantizeError),
    /// See [`AxisError`].
    #[error(transparent)]
    Axis(#[from] AxisError),
    /// See [`crate::CapError`].
    #[error(transparent)]
    Cap(#[from] crate::cap::CapError),
    /// H-neuron suppression that does not fit the model.
    #[error(transparent)]
    HSuppress(#[from] crate::cap::HSuppressError),
    /// See [`crate::ControlVectorError`].
    #[error(transparent)]
    ControlVector(#[from] crate::cap::ControlVectorError),
}
