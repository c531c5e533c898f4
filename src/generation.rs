//! One generation step, shared by [`crate::Session`] and [`crate::BatchEngine`]: sample the
//! next token, turn it into text, hold back what may start a stop string, and apply the
//! limits.

use crate::error::{SamplerError, TokenizeError};
use crate::llama::Context;
use crate::model::{Model, Token};
use crate::sampling::Sampler;
use crate::session::{GenerateParams, StopReason};
use crate::tokenize::PieceDecoder;

/// The state of one request's generation.
pub(crate) struct Generation {
    sampler: Sampler,
    decoder: PieceDecoder,
    stop: StopMatcher,
    max_tokens: Option<usize>,
    generated: usize,
}

/// What one step produced.
pub(crate) struct Step {
    /// Text that can be shown now (possibly empty).
    pub(crate) text: String,
    /// The token to decode next, or why generation ends.
    pub(crate) next: Result<Token, StopReason>,
}

impl Step {
    fn stop(reason: StopReason) -> Self {
        Self {
            text: String::new(),
            next: Err(reason),
        }
    }
}

impl Generation {
    /// Starts generating after `prompt` (which the sampler's penalties see) with `params`
    /// in a context of `n_ctx` tokens.
    pub(crate) fn new(
        model: &Model,
        params: &GenerateParams,
        n_ctx: u32,
        prompt: &[Token],
    ) -> Result<Self, SamplerError> {
        let mut sampler = Sampler::new(model, &params.sampling, n_ctx)?;
        sampler.accept_prompt(prompt);
        Ok(Self {
            sampler,
            decoder: PieceDecoder::new(),
            stop: StopMatcher::new(&params.stop),
            max_tokens: params.max_tokens,
            generated: 0,
        })
    }

    /// Tokens generated so far.
    pub(crate) fn generated(&self) -> usize {
        self.generated
    }

    /// Samples from output row `row` of `ctx`'s last decode, where the request's sequence now
    /// holds `n_cached` of its `n_ctx` tokens.
    pub(crate) fn step(
        &mut self,
        ctx: &Context,
        row: i32,
        n_cached: usize,
        n_ctx: usize,
    ) -> Result<Step, TokenizeError> {
        if self.max_tokens.is_some_and(|m| self.generated >= m) {
            return Ok(Step::stop(StopReason::MaxTokens));
        }
        let model = ctx.model();
        let token =
            ctx.sample(&mut self.sampler, row)
                .map_err(|message| TokenizeError::Exception {
                    call: "llama_sampler_sample",
                    message,
                })?;
        if model.is_eog(token) {
            return Ok(Step::stop(StopReason::EndOfGeneration));
        }
        self.generated += 1;
        let piece = model.token_to_piece(token, false)?;
        let text = self.decoder.push(&piece);
        let (text, hit) = self.stop.push(&text);
        let next = match hit {
            Some(s) => Err(StopReason::StopString(s)),
            None if n_cached >= n_ctx => Err(StopReason::ContextFull),
            None => Ok(token),
        };
        Ok(Step { text, next })
    }

    /// Ends generation for `reason`: the text still held back (none after a stop string,
    /// which is never part of the output).
    pub(crate) fn finish(&mut self, reason: &StopReason) -> String {
        if matches!(reason, StopReason::StopString(_)) {
            return String::new();
        }
        self.stop.finish(&self.decoder.finish())
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
