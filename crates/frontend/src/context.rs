//! Context flags: `-c`, `-b`, `-ub`, `-t`, `-tb`.

use acap::SessionParams;
use clap::Args;

/// Context size, batch sizes and threads, as llama-cli and llama-server take them.
#[derive(Debug, Clone, Args)]
pub struct ContextArgs {
    /// Context size in tokens (0: the model's training context).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx_size: u32,
    /// Logical batch size.
    #[arg(short = 'b', long = "batch-size", default_value_t = 2048)]
    pub batch_size: u32,
    /// Physical batch size (`-ub`).
    #[arg(long = "ubatch-size", default_value_t = 512)]
    pub ubatch_size: u32,
    /// Threads for generation (-1: all cores).
    #[arg(short = 't', long = "threads", default_value_t = -1, allow_negative_numbers = true)]
    pub threads: i32,
    /// Threads for prompt processing (`-tb`; -1: as `--threads`).
    #[arg(long = "threads-batch", default_value_t = -1, allow_negative_numbers = true)]
    pub threads_batch: i32,
}

impl Default for ContextArgs {
    fn default() -> Self {
        Self {
            ctx_size: 4096,
            batch_size: 2048,
            ubatch_size: 512,
            threads: -1,
            threads_batch: -1,
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
        Ok(p)
    }
}

/// `-1` (all cores, 0 for the library) or a positive count.
fn threads(flag: &str, n: i32) -> Result<u32, String> {
    match n {
        -1 => Ok(0),
        n if n > 0 => Ok(n as u32),
        n => Err(format!(
            "{flag} {n}: must be a positive number of threads, or -1"
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
    }
}
