//! Progress reporting, passed down from `main`. Stages only call `inc`;
//! this handle decides how to show it: indicatif bars on a terminal, plain
//! lines otherwise, nothing with --quiet.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bars,
    Lines,
    Quiet,
}

#[derive(Debug)]
pub struct Progress {
    mode: Mode,
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines when it is not.
    pub fn new(quiet: bool) -> Progress {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Progress { mode }
    }

    /// A handle that shows nothing (for tests and library use).
    pub fn hidden() -> Progress {
        Progress { mode: Mode::Quiet }
    }

    /// A byte-counting bar for one step.
    pub fn bar(&self, label: &str, total_bytes: u64) -> Bar {
        let inner = match self.mode {
            Mode::Bars => {
                let pb =
                    ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
                pb.set_style(
                    ProgressStyle::with_template(
                        "{msg:>14} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .expect("the template is valid")
                    .progress_chars("=> "),
                );
                pb.set_message(label.to_string());
                Some(pb)
            }
            Mode::Lines => {
                let _ = writeln!(std::io::stderr(), "{label}: {} MiB", total_bytes >> 20);
                None
            }
            Mode::Quiet => None,
        };
        Bar {
            inner,
            mode: self.mode,
            label: label.to_string(),
            done: Cell::new(0),
            started: Instant::now(),
        }
    }

    /// A one-line note for the user, on stderr.
    pub fn note(&self, text: &str) {
        if self.mode != Mode::Quiet {
            let _ = writeln!(std::io::stderr(), "{text}");
        }
    }
}

#[derive(Debug)]
pub struct Bar {
    inner: Option<ProgressBar>,
    mode: Mode,
    label: String,
    done: Cell<u64>,
    started: Instant,
}

impl Bar {
    pub fn inc(&self, bytes: u64) {
        self.done.set(self.done.get() + bytes);
        if let Some(pb) = &self.inner {
            pb.inc(bytes);
        }
    }

    /// Start the bar at `bytes` already done (a resumed download); they do
    /// not count towards the rate in the closing line.
    pub fn set_position(&self, bytes: u64) {
        if let Some(pb) = &self.inner {
            pb.set_position(bytes);
            pb.reset_eta();
        }
    }

    pub fn finish(&self) {
        if let Some(pb) = &self.inner {
            pb.finish_and_clear();
        }
        if self.mode != Mode::Quiet {
            let secs = self.started.elapsed().as_secs_f64();
            let _ = writeln!(
                std::io::stderr(),
                "{}: done, {:.1} MiB in {:.1} s",
                self.label,
                self.done.get() as f64 / (1u64 << 20) as f64,
                secs
            );
        }
    }
}
