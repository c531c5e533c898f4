//! Context flags (`-c`, `-b`, `-ub`, `-t`, `-tb`, `-fa`, `-ctk`, `-ctv`) and model-loading
//! flags (`--no-mmap`, `--mlock`).

use acap::{CacheType, MetadataOverride, ModelParams, SessionParams};
use clap::Args;

/// ggml's thread limit (`GGML_MAX_N_THREADS`).
const MAX_THREADS: i32 = 512;

/// Context size, batch sizes and threads, as llama-cli and llama-server take them.
#[derive(Debug, Clone, Args)]
pub struct ContextArgs {
    /// Context size in tokens (0: the model's training context).
    #[arg(
        short = 'c',
        long = "ctx-size",
        default_value_t = 4096,
        allow_negative_numbers = true
    )]
    pub ctx_size: u32,
    /// Logical batch size.
    #[arg(
        short = 'b',
        long = "batch-size",
        default_value_t = 2048,
        allow_negative_numbers = true
    )]
    pub batch_size: u32,
    /// Physical batch size (`-ub`).
    #[arg(
        long = "ubatch-size",
        default_value_t = 512,
        allow_negative_numbers = true
    )]
    pub ubatch_size: u32,
    /// Threads for generation (-1: all cores).
    #[arg(short = 't', long = "threads", default_value_t = -1, allow_negative_numbers = true)]
    pub threads: i32,
    /// Threads for prompt processing (`-tb`; -1: as `--threads`).
    #[arg(long = "threads-batch", default_value_t = -1, allow_negative_numbers = true)]
    pub threads_batch: i32,
    /// Flash attention (`-fa`): on, off or auto.
    #[arg(long = "flash-attn")]
    pub flash_attn: Option<String>,
    /// Type of the cached keys (`-ctk`): f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1.
    #[arg(long = "cache-type-k")]
    pub cache_type_k: Option<String>,
    /// Type of the cached values (`-ctv`).
    #[arg(long = "cache-type-v")]
    pub cache_type_v: Option<String>,
    /// Reproducible results: a request's output is bit-identical to the same request run
    /// alone on a fresh process, whatever ran before or beside it (prompts decoded as whole
    /// physical batches from position 0, a cached prefix reused only in such batches, one
    /// request per decode call). Costs prefix reuse and batching across requests.
    #[arg(long = "deterministic")]
    pub deterministic: bool,
}

/// How the model file is loaded.
#[derive(Debug, Clone, Default, Args)]
pub struct LoadArgs {
    /// Read the model into memory instead of mapping it.
    #[arg(long = "no-mmap")]
    pub no_mmap: bool,
    /// Map the model file (the default).
    #[arg(long = "mmap")]
    pub mmap: bool,
    /// Keep the model in RAM (no swapping).
    #[arg(long = "mlock")]
    pub mlock: bool,
    /// `KEY=TYPE:VALUE` replacing a model metadata entry (repeatable; TYPE int, float, bool, str).
    #[arg(long = "override-kv")]
    pub override_kv: Vec<String>,
}

impl LoadArgs {
    /// The model parameters these flags ask for, over `base`.
    ///
    /// # Errors
    /// A malformed `--override-kv`, naming it.
    pub fn model_params(&self, base: ModelParams) -> Result<ModelParams, String> {
        let mut p = base.with_mlock(self.mlock);
        if self.no_mmap {
            p = p.with_mmap(false);
        }
        for spec in &self.override_kv {
            let (key, value) =
                MetadataOverride::parse(spec).map_err(|e| format!("--override-kv {e}"))?;
            p = p.with_override(key, value);
        }
        Ok(p)
    }
}

/// `-fa`'s value, as llama.cpp reads it.
fn flash_attn(v: &str) -> Result<Option<bool>, String> {
    match v {
        "on" | "true" | "1" | "enabled" => Ok(Some(true)),
        "off" | "false" | "0" | "disabled" => Ok(Some(false)),
        "auto" => Ok(None),
        _ => Err(format!("--flash-attn {v}: expected on, off or auto")),
    }
}

fn cache_type(flag: &str, v: &str) -> Result<CacheType, String> {
    CacheType::from_name(v).ok_or_else(|| {
        let names: Vec<&str> = CacheType::ALL.iter().map(|(_, n)| *n).collect();
        format!(
            "{flag} {v}: unknown cache type (one of {})",
            names.join(", ")
        )
    })
}

impl Default for ContextArgs {
    fn default() -> Self {
        Self {
            ctx_size: 4096,
            batch_size: 2048,
            ubatch_size: 512,
            threads: -1,
            threads_batch: -1,
            flash_attn: None,
            cache_type_k: None,
            cache_type_v: None,
            deterministic: false,
        }
    }
}

impl ContextArgs {
    /// Session parameters for a model trained with `n_ctx_train` tokens of context. As in
    /// llama.cpp, a physical batch larger than the logical one is clamped to it.
    ///
    /// # Errors
    /// A zero batch size or a thread count of 0 or below -1, naming the flag.
    pub fn session_params(&self, n_ctx_train: u32) -> Result<SessionParams, String> {
        if self.batch_size == 0 {
            return Err("--batch-size 0: must be at least 1".into());
        }
        if self.ubatch_size == 0 {
            return Err("--ubatch-size 0: must be at least 1".into());
        }
        let n_threads = threads("--threads", self.threads)?;
        let threads_batch = threads("--threads-batch", self.threads_batch)?;
        let flash = self
            .flash_attn
            .as_deref()
            .map(flash_attn)
            .transpose()?
            .flatten();
        let type_k = self
            .cache_type_k
            .as_deref()
            .map(|v| cache_type("--cache-type-k", v))
            .transpose()?;
        let type_v = self
            .cache_type_v
            .as_deref()
            .map(|v| cache_type("--cache-type-v", v))
            .transpose()?;
        let mut p = SessionParams::default()
            .with_n_ctx(if self.ctx_size == 0 {
                n_ctx_train
            } else {
                self.ctx_size
            })
            .with_n_batch(self.batch_size)
            .with_n_ubatch(self.ubatch_size.min(self.batch_size))
            .with_threads(n_threads);
        p.n_threads_batch = threads_batch;
        p.flash_attention = flash;
        p.cache_type_k = type_k;
        p.cache_type_v = type_v;
        p.deterministic = self.deterministic;
        Ok(p)
    }
}

/// `-1` (all cores, 0 for the library) or a positive count.
fn threads(flag: &str, n: i32) -> Result<u32, String> {
    match n {
        -1 => Ok(0),
        n if n > 0 && n <= MAX_THREADS => Ok(n as u32),
        n => Err(format!(
            "{flag} {n}: must be a number of threads in 1..={MAX_THREADS}, or -1"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_like_llama_cpp() {
        let a = ContextArgs {
            batch_size: 64,
            threads: 3,
            ..ContextArgs::default()
        };
        let p = a.session_params(8192).unwrap();
        assert_eq!(
            (p.n_batch, p.n_ubatch, p.n_threads, p.n_threads_batch),
            (64, 64, 3, 0)
        );
        let a = ContextArgs {
            ctx_size: 0,
            ..ContextArgs::default()
        };
        assert_eq!(a.session_params(8192).unwrap().n_ctx, 8192);
        let a = ContextArgs {
            threads: 0,
            ..ContextArgs::default()
        };
        assert!(a.session_params(1).unwrap_err().contains("--threads 0"));
        let a = ContextArgs {
            threads: 1000,
            ..ContextArgs::default()
        };
        assert!(a.session_params(1).unwrap_err().contains("--threads 1000"));
        let a = ContextArgs {
            flash_attn: Some("off".into()),
            cache_type_k: Some("q8_0".into()),
            cache_type_v: Some("Q8_0".into()),
            ..ContextArgs::default()
        };
        let p = a.session_params(1).unwrap();
        assert_eq!(p.flash_attention, Some(false));
        assert_eq!(p.cache_type_k, Some(CacheType::Q8_0));
        assert_eq!(p.cache_type_v, Some(CacheType::Q8_0));
        for (a, named) in [
            (
                ContextArgs {
                    flash_attn: Some("yes".into()),
                    ..ContextArgs::default()
                },
                "--flash-attn yes",
            ),
            (
                ContextArgs {
                    cache_type_k: Some("q3".into()),
                    ..ContextArgs::default()
                },
                "--cache-type-k q3",
            ),
        ] {
            assert!(a.session_params(1).unwrap_err().contains(named));
        }
    }
}
