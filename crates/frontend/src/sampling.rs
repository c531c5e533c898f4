//! Sampling flags.

use acap::{SamplerKind, SamplingParams};
use clap::Args;

/// llama.cpp's sampling flags (the defaults are llama-cli's).
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Temperature (0: greedy).
    #[arg(long = "temp", alias = "temperature", default_value_t = defaults().temperature, allow_negative_numbers = true)]
    pub temp: f32,
    /// Top-k (0: off).
    #[arg(long = "top-k", default_value_t = defaults().top_k, allow_negative_numbers = true)]
    pub top_k: i32,
    /// Top-p (1.0: off).
    #[arg(long = "top-p", default_value_t = defaults().top_p, allow_negative_numbers = true)]
    pub top_p: f32,
    /// Min-p (0.0: off).
    #[arg(long = "min-p", default_value_t = defaults().min_p, allow_negative_numbers = true)]
    pub min_p: f32,
    /// Repeat penalty (1.0: off).
    #[arg(long = "repeat-penalty", default_value_t = defaults().repeat_penalty, allow_negative_numbers = true)]
    pub repeat_penalty: f32,
    /// Penalty window (0: off, -1: the context).
    #[arg(
        long = "repeat-last-n",
        default_value_t = defaults().penalty_last_n,
        allow_negative_numbers = true
    )]
    pub repeat_last_n: i32,
    /// Presence penalty (0.0: off).
    #[arg(
        long = "presence-penalty",
        default_value_t = defaults().presence_penalty,
        allow_negative_numbers = true
    )]
    pub presence_penalty: f32,
    /// Frequency penalty (0.0: off).
    #[arg(
        long = "frequency-penalty",
        default_value_t = defaults().frequency_penalty,
        allow_negative_numbers = true
    )]
    pub frequency_penalty: f32,
    /// RNG seed (-1: random).
    #[arg(short = 's', long = "seed", default_value_t = -1, allow_negative_numbers = true)]
    pub seed: i64,
    /// Samplers in order, separated by ';' (`penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;xtc;temperature`).
    #[arg(long = "samplers")]
    pub samplers: Option<String>,
    /// The samplers as letters (`edskypmxt`).
    #[arg(long = "sampling-seq", alias = "sampler-seq")]
    pub sampling_seq: Option<String>,
    /// `TOKEN_ID(+|-)BIAS` added to a token's logit (repeatable; `-inf` bans it).
    #[arg(short = 'l', long = "logit-bias", allow_hyphen_values = true)]
    pub logit_bias: Vec<String>,
    /// Never stop at an end-of-generation token.
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// Locally typical sampling (1.0: off).
    #[arg(long = "typical", alias = "typical-p", default_value_t = defaults().typical_p, allow_negative_numbers = true)]
    pub typical: f32,
    /// Top-n-sigma (-1: off).
    #[arg(long = "top-nsigma", alias = "top-n-sigma", default_value_t = defaults().top_n_sigma, allow_negative_numbers = true)]
    pub top_nsigma: f32,
    /// Dynamic temperature range (0: off).
    #[arg(long = "dynatemp-range", default_value_t = defaults().dynatemp_range, allow_negative_numbers = true)]
    pub dynatemp_range: f32,
    /// Dynamic temperature exponent.
    #[arg(long = "dynatemp-exp", default_value_t = defaults().dynatemp_exponent, allow_negative_numbers = true)]
    pub dynatemp_exp: f32,
    /// XTC probability (0: off).
    #[arg(long = "xtc-probability", default_value_t = defaults().xtc_probability, allow_negative_numbers = true)]
    pub xtc_probability: f32,
    /// XTC threshold.
    #[arg(long = "xtc-threshold", default_value_t = defaults().xtc_threshold, allow_negative_numbers = true)]
    pub xtc_threshold: f32,
    /// DRY multiplier (0: off).
    #[arg(long = "dry-multiplier", default_value_t = defaults().dry_multiplier, allow_negative_numbers = true)]
    pub dry_multiplier: f32,
    /// DRY base.
    #[arg(long = "dry-base", default_value_t = defaults().dry_base, allow_negative_numbers = true)]
    pub dry_base: f32,
    /// DRY allowed length.
    #[arg(long = "dry-allowed-length", default_value_t = defaults().dry_allowed_length, allow_negative_numbers = true)]
    pub dry_allowed_length: i32,
    /// DRY look-back (-1: the context, 0: off).
    #[arg(long = "dry-penalty-last-n", default_value_t = defaults().dry_penalty_last_n, allow_negative_numbers = true)]
    pub dry_penalty_last_n: i32,
    /// A DRY sequence breaker (repeatable; replaces the defaults; `none` for none).
    #[arg(long = "dry-sequence-breaker", allow_hyphen_values = true)]
    pub dry_sequence_breaker: Vec<String>,
    /// Mirostat (0: off, 1, 2).
    #[arg(long = "mirostat", default_value_t = defaults().mirostat, allow_negative_numbers = true)]
    pub mirostat: u8,
    /// Mirostat learning rate (eta).
    #[arg(long = "mirostat-lr", default_value_t = defaults().mirostat_eta, allow_negative_numbers = true)]
    pub mirostat_lr: f32,
    /// Mirostat target entropy (tau).
    #[arg(long = "mirostat-ent", default_value_t = defaults().mirostat_tau, allow_negative_numbers = true)]
    pub mirostat_ent: f32,
}

impl Default for SamplingArgs {
    /// What an empty command line gives: the library's defaults (llama-cli's), which the
    /// attributes above take from [`SamplingParams::default`], the one place they are written.
    fn default() -> Self {
        use clap::{Command, FromArgMatches};
        let matches = Self::augment_args(Command::new("defaults")).get_matches_from(["defaults"]);
        Self::from_arg_matches(&matches).expect("an empty command line parses")
    }
}

/// The library's sampling defaults, for the attributes' `default_value_t`.
fn defaults() -> SamplingParams {
    SamplingParams::default()
}

/// `--samplers a;b;c` (names or llama.cpp's aliases).
fn sampler_names(list: &str) -> Result<Vec<SamplerKind>, String> {
    list.split(';')
        .filter(|n| !n.is_empty())
        .map(|n| {
            SamplerKind::from_name(n).ok_or_else(|| {
                format!(
                    "--samplers {list}: unknown sampler '{n}' (known: penalties, dry, \
                     top_n_sigma, top_k, typ_p, top_p, min_p, xtc, temperature)"
                )
            })
        })
        .collect()
}

/// `--sampling-seq edkypmxt`.
fn sampler_letters(seq: &str) -> Result<Vec<SamplerKind>, String> {
    seq.chars()
        .map(|c| {
            SamplerKind::from_letter(c).ok_or_else(|| {
                format!("--sampling-seq {seq}: unknown sampler letter '{c}' (known: edskypmxt)")
            })
        })
        .collect()
}

/// `--logit-bias TOKEN_ID(+|-)BIAS`, as llama.cpp reads it.
fn logit_bias(arg: &str) -> Result<(i32, f32), String> {
    let bad = || {
        format!("--logit-bias {arg}: expected TOKEN_ID+BIAS or TOKEN_ID-BIAS (e.g. 15043+1, 2-inf)")
    };
    let at = arg
        .char_indices()
        .skip(1)
        .find(|&(_, c)| c == '+' || c == '-')
        .map(|(i, _)| i)
        .ok_or_else(bad)?;
    let token: i32 = arg[..at].trim().parse().map_err(|_| bad())?;
    let magnitude: f32 = arg[at + 1..].trim().parse().map_err(|_| bad())?;
    if magnitude.is_nan() || magnitude < 0.0 && !arg[at + 1..].trim().starts_with('-') {
        return Err(bad());
    }
    Ok((
        token,
        if &arg[at..=at] == "-" {
            -magnitude
        } else {
            magnitude
        },
    ))
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
            samplers: match (&self.samplers, &self.sampling_seq) {
                (Some(names), _) => sampler_names(names)?,
                (None, Some(seq)) => sampler_letters(seq)?,
                (None, None) => SamplerKind::DEFAULT_ORDER.to_vec(),
            },
            logit_bias: self
                .logit_bias
                .iter()
                .map(|b| logit_bias(b))
                .collect::<Result<_, _>>()?,
            ignore_eos: self.ignore_eos,
            typical_p: self.typical,
            top_n_sigma: self.top_nsigma,
            dynatemp_range: self.dynatemp_range,
            dynatemp_exponent: self.dynatemp_exp,
            xtc_probability: self.xtc_probability,
            xtc_threshold: self.xtc_threshold,
            dry_multiplier: self.dry_multiplier,
            dry_base: self.dry_base,
            dry_allowed_length: self.dry_allowed_length,
            dry_penalty_last_n: self.dry_penalty_last_n,
            dry_sequence_breakers: match self.dry_sequence_breaker.as_slice() {
                [] => SamplingParams::default().dry_sequence_breakers,
                [none] if none == "none" => Vec::new(),
                list => list.to_vec(),
            },
            mirostat: self.mirostat,
            mirostat_tau: self.mirostat_ent,
            mirostat_eta: self.mirostat_lr,
            ..SamplingParams::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logit_bias_as_llama_cpp_reads_it() {
        assert_eq!(logit_bias("15043+1").unwrap(), (15043, 1.0));
        assert_eq!(logit_bias("15043-1.5").unwrap(), (15043, -1.5));
        assert_eq!(logit_bias("2-inf").unwrap(), (2, f32::NEG_INFINITY));
        for bad in ["15043", "x+1", "+1", "15043+", "15043+abc"] {
            assert!(logit_bias(bad).unwrap_err().contains(bad), "{bad}");
        }
    }

    #[test]
    fn sampler_lists_by_name_and_letter() {
        assert_eq!(
            sampler_names("top_k;temp").unwrap(),
            [SamplerKind::TopK, SamplerKind::Temperature]
        );
        assert!(
            sampler_names("top_k;bogus")
                .unwrap_err()
                .contains("'bogus'")
        );
        assert_eq!(
            sampler_letters("edskypmxt").unwrap(),
            SamplerKind::DEFAULT_ORDER
        );
        assert!(sampler_letters("kq").unwrap_err().contains("'q'"));
    }

    #[test]
    fn an_empty_command_line_gives_the_library_defaults() {
        assert_eq!(
            SamplingArgs::default().params().unwrap(),
            SamplingParams::default()
        );
        let a = SamplingArgs::default();
        assert_eq!((a.temp, a.top_k, a.seed), (0.8, 40, -1));
    }
}
