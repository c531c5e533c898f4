//! Progress of the `acap` tool's long jobs: a bar on a terminal (indicatif), otherwise a log
//! line at every 5% (and at the end), so redirected runs show they are alive.

use std::io::IsTerminal;
use std::time::Instant;

/// Progress of one job of `total` steps.
pub struct Progress {
    label: &'static str,
    total: usize,
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    logged: usize,
}

impl Progress {
    /// Starts reporting on stderr.
    pub fn new(label: &'static str, total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} ({elapsed}, ETA {eta})",
            ) {
                bar.set_style(style.progress_chars("#>."));
            }
            bar.set_prefix(label);
            bar
        });
        Self {
            label,
            total,
            bar,
            started: Instant::now(),
            logged: 0,
        }
    }

    /// `done` of the steps are finished.
    pub fn set(&mut self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            if done >= self.total {
                bar.finish();
            }
            return;
        }
        let step = (self.total / 20).max(1);
        if done >= self.total || done >= self.logged + step {
            self.logged = done;
            let secs = self.started.elapsed().as_secs_f64();
            eprintln!(
                "{}: {done}/{} ({:.0}%), {secs:.1} s",
                self.label,
                self.total,
                100.0 * done as f64 / self.total.max(1) as f64
            );
        }
    }
}
