//! Sampling flags.

use acap::SamplingParams;
use clap::Args;

/// llama.cpp's sampling flags (the defaults are llama-cli's).
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Temperature (0: greedy).
    #[arg(long = "temp", default_value_t = 0.8, allow_negative_numbers = true)]
    pub temp: f32,
    /// Top-k (0: off).
    #[arg(long = "top-k", default_value_t = 40, allow_negative_numbers = true)]
    pub top_k: i32,
    /// Top-p (1.0: off).
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p (0.0: off).
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    /// Repeat penalty (1.0: off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Penalty window (0: off, -1: the context).
    #[arg(
        long = "repeat-last-n",
        default_value_t = 64,
        allow_negative_numbers = true
    )]
    pub repeat_last_n: i32,
    /// Presence penalty (0.0: off).
    #[arg(
        long = "presence-penalty",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub presence_penalty: f32,
    /// Frequency penalty (0.0: off).
    #[arg(
        long = "frequency-penalty",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub frequency_penalty: f32,
    /// RNG seed (-1: random).
    #[arg(short = 's', long = "seed", default_value_t = -1, allow_negative_numbers = true)]
    pub seed: i64,
}

impl Default for SamplingArgs {
    fn default() -> Self {
        Self {
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: -1,
        }
    }
}

impl SamplingArgs {
    /// The sampling settings (without a grammar). Values the sampler refuses are reported when
    /// the sampler is built; here only the seed's range is checked.
    ///
    /// # Errors
    /// A seed outside `0..4294967295` other than -1, naming `--seed`.
    pub fn params(&self) -> Result<SamplingParams, String> {
        // Negative means random, as in llama-cli; u32::MAX is llama.cpp's "random" marker.
        if self.seed >= i64::from(u32::MAX) || self.seed < -1 {
            return Err(format!(
                "--seed {} is out of range (0..4294967294, or -1)",
                self.seed
            ));
        }
        Ok(SamplingParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            penalty_last_n: self.repeat_last_n,
            seed: u32::try_from(self.seed).ok(),
            ..SamplingParams::default()
        })
    }
}
