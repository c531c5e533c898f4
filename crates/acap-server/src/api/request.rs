//! The request bodies, as typed serde structs. A body that does not fit is a 400 naming the
//! JSON path of the culprit (`messages[0].content`, `acap.layer_range`), found by
//! `serde_path_to_error`.

use acap::{ChatMessage, GenerateParams, LayerRange, Model, Special, Token};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;

/// Parses a body into `T`, naming the field that does not fit.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // serde would also read a struct from an array; a body is an object.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != b'{') {
        return Err(ApiError::bad(
            "body",
            "the request body must be a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad("body", format!("malformed JSON: {inner}"))
        } else if path == "." {
            ApiError::bad("body", inner.to_string())
        } else {
            ApiError::bad(&path, format!("'{path}': {inner}"))
        }
    })
}

/// `/v1/chat/completions` and `/v1/completions`: OpenAI's fields plus llama.cpp's sampling
/// fields and acap's `acap` object. Unknown top-level fields are ignored, as OpenAI clients
/// send many.
#[derive(Debug, Default, Deserialize)]
pub struct GenerationRequest {
    /// The conversation (chat).
    pub messages: Option<Vec<Message>>,
    /// The text to continue (completions): a string or a one-string array.
    pub prompt: Option<Prompt>,
    /// Tokens to generate.
    pub max_tokens: Option<i64>,
    /// llama-server's name for the tokens to generate (-1: until the end or a full context).
    pub n_predict: Option<i64>,
    /// Penalty window (llama.cpp; 0 off, -1 the context).
    pub repeat_last_n: Option<i32>,
    /// A JSON schema the output must follow (llama-server's `/completion`).
    pub json_schema: Option<Value>,
    /// OpenAI's `response_format`: `text`, `json_object` or `json_schema`.
    pub response_format: Option<ResponseFormat>,
    /// Choices to return (only 1 is supported).
    pub n: Option<i64>,
    /// OpenAI log probabilities (not supported: refused when asked for).
    pub logprobs: Option<bool>,
    /// OpenAI top log probabilities per token (not supported: refused when > 0).
    pub top_logprobs: Option<i64>,
    /// llama-server's token probabilities (not supported: refused when > 0).
    pub n_probs: Option<i64>,
    /// OpenAI tools (not supported: refused when non-empty).
    pub tools: Option<Vec<Value>>,
    /// llama-server's prompt cache switch, accepted: the prefix cache is always used (a
    /// reused prefix is only taken under the same capping).
    #[allow(dead_code)]
    pub cache_prompt: Option<bool>,
    /// llama-server's slot choice; any slot with the longest cached prefix is used.
    pub id_slot: Option<i64>,
    /// OpenAI's newer name for `max_tokens` (wins when both are given).
    pub max_completion_tokens: Option<i64>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Top-p.
    pub top_p: Option<f32>,
    /// Min-p.
    pub min_p: Option<f32>,
    /// Top-k.
    pub top_k: Option<i32>,
    /// Repeat penalty.
    pub repeat_penalty: Option<f32>,
    /// Frequency penalty.
    pub frequency_penalty: Option<f32>,
    /// Presence penalty.
    pub presence_penalty: Option<f32>,
    /// RNG seed (negative: random).
    pub seed: Option<i64>,
    /// GBNF grammar for the output.
    pub grammar: Option<String>,
    /// Stop strings.
    pub stop: Option<Stop>,
    /// Stream server-sent events.
    pub stream: Option<bool>,
    /// Capping for this request.
    pub acap: Option<AcapRequest>,
    /// H-neuron suppression for this request (default: on when the server has a file).
    pub h_suppress: Option<bool>,
}

/// One chat message.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant`...
    pub role: Option<String>,
    /// A string, text parts, or nothing.
    pub content: Option<Content>,
}

/// A message's content.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// OpenAI's content parts; the `text` of each is used.
    Parts(Vec<Part>),
}

/// One content part.
#[derive(Debug, Deserialize)]
pub struct Part {
    /// Its text (image parts have none).
    pub text: Option<String>,
}

/// A completion prompt.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// The text.
    Text(String),
    /// Token ids and text pieces (llama-server), or a batch of one prompt (OpenAI).
    Parts(Vec<PromptPart>),
}

/// One element of a prompt array.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptPart {
    /// A token id.
    Token(i64),
    /// Text.
    Text(String),
}

/// OpenAI's `response_format`.
#[derive(Debug, Deserialize)]
pub struct ResponseFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `json_schema`: `{"name": .., "schema": {..}}`.
    pub json_schema: Option<Value>,
    /// llama-server also takes the schema here.
    pub schema: Option<Value>,
}

/// Stop strings: one or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// The per-request `acap` object. Unknown keys are refused: a misspelt `alpha` must not run
/// as a hard cap.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcapRequest {
    /// Capping on or off (default: on when the server has an axis).
    pub enabled: Option<bool>,
    /// Cap strength in 0..=1.
    pub alpha: Option<f32>,
    /// Global threshold (negated; spec section 4).
    pub threshold: Option<f32>,
    /// Capped blocks `[start, end]`, inclusive.
    pub layer_range: Option<[i64; 2]>,
}

impl AcapRequest {
    /// The layer range, if given.
    pub fn range(&self) -> Option<LayerRange> {
        self.layer_range.map(|[a, b]| LayerRange::new(a, b))
    }
}

/// `/v1/evaluate`.
#[derive(Debug, Deserialize)]
pub struct EvaluateRequest {
    /// The prompt the response answers.
    pub prompt: String,
    /// The response to score.
    pub response: String,
    /// 5 or 6 dimensions (default 6).
    pub dimensions: Option<i64>,
    /// The evaluator's system prompt (default: the rubric's).
    pub system_prompt: Option<String>,
    /// RNG seed (negative: random).
    pub seed: Option<i64>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
}

/// A token id from a request (`field` names it in the error): one of the model's vocabulary.
pub fn token_id(model: &Model, field: &str, t: i64) -> Result<Token, ApiError> {
    let n_vocab = model.n_vocab();
    i32::try_from(t)
        .ok()
        .filter(|t| (0..n_vocab).contains(t))
        .ok_or_else(|| {
            ApiError::bad(
                field,
                format!("token {t} is not in the vocabulary (0..{n_vocab})"),
            )
        })
}

/// A seed field: negative means random, as in llama.cpp.
pub fn seed(field: &str, v: i64) -> Result<Option<u32>, ApiError> {
    if v < 0 {
        return Ok(None);
    }
    u32::try_from(v)
        .map(Some)
        .map_err(|_| ApiError::bad(field, format!("'{field}' {v} is out of range")))
}

impl GenerationRequest {
    /// The conversation, checked message by message.
    pub fn chat_messages(&self) -> Result<Vec<ChatMessage>, ApiError> {
        let msgs = self
            .messages
            .as_ref()
            .ok_or_else(|| ApiError::bad("messages", "'messages' must be an array of messages"))?;
        if msgs.is_empty() {
            return Err(ApiError::bad("messages", "'messages' is empty"));
        }
        msgs.iter()
            .enumerate()
            .map(|(i, m)| {
                let role = m.role.as_deref().ok_or_else(|| {
                    ApiError::bad(
                        &format!("messages[{i}].role"),
                        "a message needs a 'role' string",
                    )
                })?;
                let content = match &m.content {
                    None => String::new(),
                    Some(Content::Text(s)) => s.clone(),
                    Some(Content::Parts(parts)) => {
                        parts.iter().filter_map(|p| p.text.as_deref()).collect()
                    }
                };
                Ok(ChatMessage::new(role, content))
            })
            .collect()
    }

    /// The prompt's tokens: text is tokenized as llama-server does (BOS added, special tokens
    /// parsed, for the first piece), token ids are checked and taken as they are.
    pub fn prompt_tokens(&self, model: &Model) -> Result<Vec<Token>, ApiError> {
        let tokenize = |text: &str, first: bool| {
            let special = if first {
                Special::PROMPT
            } else {
                Special {
                    add: false,
                    parse: true,
                }
            };
            model
                .tokenize(text, special)
                .map_err(|e| ApiError::bad("prompt", e.to_string()))
        };
        match &self.prompt {
            Some(Prompt::Text(s)) => tokenize(s, true),
            Some(Prompt::Parts(parts)) if parts.is_empty() => {
                Err(ApiError::bad("prompt", "'prompt' is empty"))
            }
            Some(Prompt::Parts(parts)) => {
                let texts = parts
                    .iter()
                    .filter(|p| matches!(p, PromptPart::Text(_)))
                    .count();
                if texts > 1 && texts == parts.len() {
                    return Err(ApiError::bad(
                        "prompt",
                        "'prompt' must be one string (batches of prompts are not supported)",
                    ));
                }
                let mut out = Vec::new();
                for (i, part) in parts.iter().enumerate() {
                    match part {
                        PromptPart::Text(s) => out.extend(tokenize(s, i == 0)?),
                        PromptPart::Token(t) => {
                            out.push(token_id(model, &format!("prompt[{i}]"), *t)?);
                        }
                    }
                }
                Ok(out)
            }
            None => Err(ApiError::bad("prompt", "'prompt' must be a string")),
        }
    }

    /// Refuses an `id_slot` that names no slot (-1, any slot, is the default; the engine
    /// picks the free slot with the longest cached prefix).
    pub fn check_slot(&self, n_slots: usize) -> Result<(), ApiError> {
        match self.id_slot {
            Some(id) if id < -1 || id >= n_slots as i64 => Err(ApiError::bad(
                "id_slot",
                format!("'id_slot' {id}: the server has slots 0..{n_slots} (-1: any)"),
            )),
            _ => Ok(()),
        }
    }

    /// Refuses, naming the field, what the request asks for that acap does not do, instead
    /// of ignoring it.
    pub fn check_supported(&self) -> Result<(), ApiError> {
        if let Some(n) = self.n.filter(|&n| n != 1) {
            return Err(ApiError::bad(
                "n",
                format!("'n' is {n}: one choice per request is supported; send several requests"),
            ));
        }
        if self.logprobs == Some(true) || self.top_logprobs.is_some_and(|n| n > 0) {
            let field = if self.logprobs == Some(true) {
                "logprobs"
            } else {
                "top_logprobs"
            };
            return Err(ApiError::bad(
                field,
                format!("'{field}' is not supported by acap-server yet"),
            ));
        }
        if self.n_probs.is_some_and(|n| n > 0) {
            return Err(ApiError::bad(
                "n_probs",
                "'n_probs' is not supported by acap-server yet",
            ));
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(ApiError::bad(
                "tools",
                "'tools' (function calling) is not supported by acap-server yet",
            ));
        }
        Ok(())
    }

    /// The grammar `json_schema` or `response_format` asks for, through llama.cpp's converter
    /// (the CLI's `-j`).
    fn schema_grammar(&self) -> Result<Option<String>, ApiError> {
        let (field, schema) = match (&self.json_schema, &self.response_format) {
            (Some(s), None) => ("json_schema", s.clone()),
            (Some(_), Some(_)) => {
                return Err(ApiError::bad(
                    "json_schema",
                    "give 'json_schema' or 'response_format', not both",
                ));
            }
            (None, Some(f)) => match f.kind.as_str() {
                "text" => return Ok(None),
                "json_object" => (
                    "response_format",
                    f.schema
                        .clone()
                        .unwrap_or_else(|| serde_json::json!({"type": "object"})),
                ),
                "json_schema" => {
                    let schema = f
                        .json_schema
                        .as_ref()
                        .and_then(|j| j.get("schema").cloned())
                        .or_else(|| f.schema.clone())
                        .ok_or_else(|| {
                            ApiError::bad(
                                "response_format.json_schema.schema",
                                "'response_format' json_schema needs json_schema.schema",
                            )
                        })?;
                    ("response_format", schema)
                }
                other => {
                    return Err(ApiError::bad(
                        "response_format.type",
                        format!(
                            "'response_format.type' '{other}' is not text, json_object or json_schema"
                        ),
                    ));
                }
            },
            (None, None) => return Ok(None),
        };
        if self.grammar.is_some() {
            return Err(ApiError::bad(
                field,
                format!("give 'grammar' or '{field}', not both"),
            ));
        }
        acap::json_schema_to_grammar(&schema.to_string())
            .map(Some)
            .map_err(|e| ApiError::bad(field, format!("'{field}': {e}")))
    }

    /// Generation settings: the server's `defaults` overridden by the request's fields.
    pub fn generate_params(&self, defaults: &GenerateParams) -> Result<GenerateParams, ApiError> {
        self.check_supported()?;
        let mut p = defaults.clone();
        if let Some(v) = self.max_completion_tokens.or(self.max_tokens) {
            if v < 0 {
                return Err(ApiError::bad("max_tokens", "'max_tokens' must be >= 0"));
            }
            p.max_tokens = Some(v as usize);
        } else if let Some(v) = self.n_predict {
            if v < -1 {
                return Err(ApiError::bad("n_predict", "'n_predict' must be >= -1"));
            }
            p.max_tokens = usize::try_from(v).ok();
        }
        let s = &mut p.sampling;
        let set = |dst: &mut f32, v: Option<f32>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut s.temperature, self.temperature);
        set(&mut s.top_p, self.top_p);
        set(&mut s.min_p, self.min_p);
        set(&mut s.repeat_penalty, self.repeat_penalty);
        set(&mut s.frequency_penalty, self.frequency_penalty);
        set(&mut s.presence_penalty, self.presence_penalty);
        if let Some(v) = self.top_k {
            s.top_k = v;
        }
        if let Some(v) = self.repeat_last_n {
            s.penalty_last_n = v;
        }
        if let Some(v) = self.seed {
            s.seed = seed("seed", v)?;
        }
        if let Some(g) = &self.grammar {
            s.grammar = Some(g.clone());
        }
        if let Some(g) = self.schema_grammar()? {
            p.sampling.grammar = Some(g);
        }
        match &self.stop {
            None => {}
            Some(Stop::One(x)) => p.stop = vec![x.clone()],
            Some(Stop::Many(v)) => p.stop.clone_from(v),
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_json_path() {
        let e = parse::<GenerationRequest>(br#"{"messages": [{"role": "user", "content": 5}]}"#)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        let e = parse::<GenerationRequest>(br#"{"acap": {"alhpa": 0.5}}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("acap.alhpa"), "{}", e.message);
        assert!(e.message.contains("unknown field `alhpa`"), "{}", e.message);
        let e = parse::<GenerationRequest>(b"[1]").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("body"));
        let e = parse::<GenerationRequest>(b"{nope").unwrap_err();
        assert!(e.message.starts_with("malformed JSON"), "{}", e.message);
    }

    #[test]
    fn fields_override_the_defaults() {
        let r: GenerationRequest = parse(
            br#"{"max_tokens": 3, "max_completion_tokens": 5, "temperature": 0, "stop": "x",
                 "seed": -1, "top_k": 2, "unknown_openai_field": true}"#,
        )
        .unwrap();
        let p = r.generate_params(&GenerateParams::default()).unwrap();
        assert_eq!(p.max_tokens, Some(5));
        assert_eq!(p.sampling.temperature, 0.0);
        assert_eq!(p.sampling.top_k, 2);
        assert_eq!(p.sampling.seed, None);
        assert_eq!(p.stop, ["x"]);
    }
}
