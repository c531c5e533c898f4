//! The reward evaluator (spec section 8): the model scores an AI response to a user prompt on
//! several dimensions and overall (1..10) in a fixed format, forced by a grammar generated from
//! the rubric and read back by a tolerant parser.

mod evaluator;
mod parse;
mod rubric;

pub use evaluator::{Evaluator, EvaluatorParams};
pub use parse::{Evaluation, OverallSource, ParseFlags, parse_evaluation};
pub use rubric::{Rubric, SIX_DIMENSIONS, USER_TEMPLATE};
