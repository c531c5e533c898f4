//! Scoring a (prompt, response) pair with the model, uncapped, under a forcing grammar.

use std::ops::ControlFlow;

use crate::chat::ChatMessage;
use crate::eval::parse::{Evaluation, parse_evaluation};
use crate::eval::rubric::Rubric;
use crate::sampling::SamplingParams;
use crate::session::{GenerateParams, Session};

/// Evaluation settings. Defaults follow the reference: temperature 0.3, at most 1000 tokens,
/// frequency penalty 0.5, the rubric's grammar forced, no capping.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatorParams {
    /// What to score.
    pub rubric: Rubric,
    /// Sampling (the grammar is set from the rubric unless `free_form`).
    pub sampling: SamplingParams,
    /// Most tokens of the answer.
    pub max_tokens: usize,
    /// Chat template name or text; `None` uses the model's.
    pub template: Option<String>,
    /// Let the model answer without the grammar (the parser's fallbacks then matter).
    pub free_form: bool,
}

impl Default for EvaluatorParams {
    fn default() -> Self {
        Self {
            rubric: Rubric::six_dimensions(),
            sampling: SamplingParams {
                temperature: 0.3,
                frequency_penalty: 0.5,
                ..SamplingParams::default()
            },
            max_tokens: 1000,
            template: None,
            free_form: false,
        }
    }
}

impl EvaluatorParams {
    /// Uses `rubric`.
    #[must_use]
    pub fn with_rubric(mut self, rubric: Rubric) -> Self {
        self.rubric = rubric;
        self
    }

    /// Fixes the seed (reproducible scores).
    #[must_use]
    pub fn with_seed(mut self, seed: u32) -> Self {
        self.sampling.seed = Some(seed);
        self
    }

    /// Replaces the sampling settings.
    #[must_use]
    pub fn with_sampling(mut self, sampling: SamplingParams) -> Self {
        self.sampling = sampling;
        self
    }
}

/// Scores responses with a session's model. Capping is switched off for each evaluation
/// (the reference evaluates uncapped) and restored afterwards, even on error.
pub struct Evaluator<'s> {
    session: &'s mut Session,
    params: EvaluatorParams,
}

/// Restores a session's capping switch when dropped.
struct CappingOff<'a> {
    session: &'a mut Session,
    was_on: bool,
}

impl<'a> CappingOff<'a> {
    fn new(session: &'a mut Session) -> Self {
        let was_on = session.capping_enabled();
        if was_on {
            session.set_capping_enabled(false);
        }
        Self { session, was_on }
    }
}

impl Drop for CappingOff<'_> {
    fn drop(&mut self) {
        if self.was_on {
            self.session.set_capping_enabled(true);
        }
    }
}

impl<'s> Evaluator<'s> {
    /// An evaluator over `session` with `params`.
    pub fn new(session: &'s mut Session, params: EvaluatorParams) -> Self {
        Self { session, params }
    }

    /// The settings.
    pub fn params(&self) -> &EvaluatorParams {
        &self.params
    }

    /// The generation settings one evaluation uses.
    fn generate_params(&self) -> GenerateParams {
        let mut sampling = self.params.sampling.clone();
        if !self.params.free_form {
            sampling.grammar = Some(self.params.rubric.grammar());
        }
        GenerateParams {
            max_tokens: Some(self.params.max_tokens),
            stop: Vec::new(),
            sampling,
        }
    }

    /// Scores `response` to `prompt`.
    ///
    /// # Errors
    /// See [`crate::Error`]: each variant says what was wrong.
    pub fn evaluate(&mut self, prompt: &str, response: &str) -> Result<Evaluation, crate::Error> {
        let rubric = &self.params.rubric;
        let messages = [
            ChatMessage::system(rubric.system_prompt.clone()),
            ChatMessage::user(rubric.user_message(prompt, response)),
        ];
        let gp = self.generate_params();
        let template = self.params.template.clone();
        let guard = CappingOff::new(self.session);
        let mut raw = String::new();
        guard
            .session
            .chat(&messages, template.as_deref(), &gp, |t| {
                raw.push_str(t);
                ControlFlow::Continue(())
            })?;
        drop(guard);
        Ok(parse_evaluation(&raw, &self.params.rubric.dimensions))
    }
}
