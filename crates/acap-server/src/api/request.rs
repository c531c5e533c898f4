//! The request bodies, as typed serde structs. A body that does not fit is a 400 naming the
//! JSON path of the culprit (`messages[0].content`, `acap.layer_range`), found by
//! `serde_path_to_error`.

use acap::{ChatMessage, GenerateParams, LayerRange};
use serde::Deserialize;
use serde::de::DeserializeOwned;

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
    /// A batch of prompts (only one is supported).
    Batch(Vec<String>),
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

    /// The completion prompt.
    pub fn prompt_text(&self) -> Result<String, ApiError> {
        match &self.prompt {
            Some(Prompt::Text(s)) => Ok(s.clone()),
            Some(Prompt::Batch(v)) if v.len() == 1 => Ok(v[0].clone()),
            Some(Prompt::Batch(_)) => Err(ApiError::bad(
                "prompt",
                "'prompt' must be one string (batches of prompts are not supported)",
            )),
            None => Err(ApiError::bad("prompt", "'prompt' must be a string")),
        }
    }

    /// Generation settings: the server's `defaults` overridden by the request's fields.
    pub fn generate_params(&self, defaults: &GenerateParams) -> Result<GenerateParams, ApiError> {
        let mut p = defaults.clone();
        if let Some(v) = self.max_completion_tokens.or(self.max_tokens) {
            if v < 0 {
                return Err(ApiError::bad("max_tokens", "'max_tokens' must be >= 0"));
            }
            p.max_tokens = Some(v as usize);
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
        if let Some(v) = self.seed {
            s.seed = seed("seed", v)?;
        }
        if let Some(g) = &self.grammar {
            s.grammar = Some(g.clone());
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
