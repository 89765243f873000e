//! Progress reporting, passed down from `main`. Stages only call `inc`;
//! this handle decides how to show it: indicatif bars on a terminal, plain
//! lines otherwise, nothing with --quiet.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::{Cell, RefCell};
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

    /// A byte-counting bar for one step. Its clock starts at the first
    /// byte counted (or [`Bar::set_position`]), not here: a bar made before
    /// its step begins (flash's "verifying", made before the write) would
    /// otherwise show a wrong rate and ETA.
    pub fn bar(&self, label: &str, total_bytes: u64) -> Bar {
        Bar {
            inner: RefCell::new(None),
            mode: self.mode,
            label: label.to_string(),
            total_bytes,
            done: Cell::new(0),
            started: Cell::new(None),
            last_line: Cell::new(None),
        }
    }

    /// A one-line note for the user, on stderr.
    pub fn note(&self, text: &str) {
        if self.mode != Mode::Quiet {
            let _ = writeln!(std::io::stderr(), "{text}");
        }
    }
}

/// The widest label a bar shows whole ("cni-plugins 1.10.12" fits).
pub const LABEL_WIDTH: usize = 20;

/// When output is not a terminal: a line at least this often while bytes
/// flow, so a log shows a slow download is alive.
const LINE_INTERVAL_SECS: u64 = 10;

/// `label` cut to [`LABEL_WIDTH`], with an ellipsis when cut.
pub fn fit_label(label: &str) -> String {
    if label.chars().count() <= LABEL_WIDTH {
        label.to_string()
    } else {
        let mut s: String = label.chars().take(LABEL_WIDTH - 1).collect();
        s.push('…');
        s
    }
}

/// Whether a plain progress line is due: every 10 % of a known total, and
/// every [`LINE_INTERVAL_SECS`] in any case. `last` is the done count and
/// the time of the last line.
fn line_due(done: u64, total: u64, last: (u64, Instant), now: Instant) -> bool {
    let (last_done, last_at) = last;
    let tenth = |n: u64| n.saturating_mul(10) / total.max(1);
    (total > 0 && tenth(done) > tenth(last_done))
        || now.duration_since(last_at).as_secs() >= LINE_INTERVAL_SECS
}

#[derive(Debug)]
pub struct Bar {
    inner: RefCell<Option<ProgressBar>>,
    mode: Mode,
    label: String,
    total_bytes: u64,
    done: Cell<u64>,
    /// When the step began: the first byte counted.
    started: Cell<Option<Instant>>,
    /// Lines mode: the done count and time of the last line printed.
    last_line: Cell<Option<(u64, Instant)>>,
}

impl Bar {
    /// Start the clock and show the bar, once.
    fn start(&self) {
        if self.started.get().is_some() {
            return;
        }
        let now = Instant::now();
        self.started.set(Some(now));
        match self.mode {
            Mode::Bars => {
                let pb = ProgressBar::with_draw_target(
                    Some(self.total_bytes),
                    ProgressDrawTarget::stderr(),
                );
                pb.set_style(
                    ProgressStyle::with_template(
                        "{msg:>20} [{bar:22}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .expect("the template is valid")
                    .progress_chars("=> "),
                );
                pb.set_message(fit_label(&self.label));
                *self.inner.borrow_mut() = Some(pb);
            }
            Mode::Lines => {
                let _ = writeln!(
                    std::io::stderr(),
                    "{}: {} MiB",
                    self.label,
                    self.total_bytes >> 20
                );
                self.last_line.set(Some((0, now)));
            }
            Mode::Quiet => {}
        }
    }

    pub fn inc(&self, bytes: u64) {
        self.start();
        let done = self.done.get() + bytes;
        self.done.set(done);
        if let Some(pb) = self.inner.borrow().as_ref() {
            pb.inc(bytes);
        }
        if let (Mode::Lines, Some(last)) = (self.mode, self.last_line.get()) {
            let now = Instant::now();
            // At the end, finish's "done" line says it all.
            let at_end = self.total_bytes > 0 && done >= self.total_bytes;
            if !at_end && line_due(done, self.total_bytes, last, now) {
                self.last_line.set(Some((done, now)));
                let _ = writeln!(std::io::stderr(), "{}", self.line(done, now));
            }
        }
    }

    /// A plain progress line: "kernel: 12.0 of 96.0 MiB (12%), 3.1 MiB/s".
    fn line(&self, done: u64, now: Instant) -> String {
        let mib = |n: u64| n as f64 / (1u64 << 20) as f64;
        let secs = self
            .started
            .get()
            .map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        let rate = if secs > 0.0 { mib(done) / secs } else { 0.0 };
        if self.total_bytes > 0 {
            format!(
                "{}: {:.1} of {:.1} MiB ({}%), {rate:.1} MiB/s",
                self.label,
                mib(done),
                mib(self.total_bytes),
                done.saturating_mul(100) / self.total_bytes
            )
        } else {
            format!("{}: {:.1} MiB, {rate:.1} MiB/s", self.label, mib(done))
        }
    }

    /// Start the bar at `bytes` already done (a resumed download); they do
    /// not count towards the rate in the closing line.
    pub fn set_position(&self, bytes: u64) {
        self.start();
        if let Some(pb) = self.inner.borrow().as_ref() {
            pb.set_position(bytes);
            pb.reset_eta();
        }
        if let Some((_, at)) = self.last_line.get() {
            self.last_line.set(Some((bytes, at)));
        }
    }

    pub fn finish(&self) {
        if let Some(pb) = self.inner.borrow().as_ref() {
            pb.finish_and_clear();
        }
        if self.mode != Mode::Quiet {
            let secs = self
                .started
                .get()
                .map_or(0.0, |t| t.elapsed().as_secs_f64());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_come_every_tenth_and_every_ten_seconds() {
        let t0 = Instant::now();
        let total = 1000;
        // Within the same tenth, soon after the last line: nothing.
        assert!(!line_due(
            150,
            total,
            (100, t0),
            t0 + Duration::from_secs(1)
        ));
        // A new tenth.
        assert!(line_due(200, total, (199, t0), t0 + Duration::from_secs(1)));
        // Ten seconds without a line, even within the same tenth.
        assert!(line_due(
            150,
            total,
            (100, t0),
            t0 + Duration::from_secs(10)
        ));
        // An unknown total: by time alone.
        assert!(!line_due(1 << 30, 0, (0, t0), t0 + Duration::from_secs(9)));
        assert!(line_due(1 << 30, 0, (0, t0), t0 + Duration::from_secs(10)));
    }

    #[test]
    fn the_clock_starts_at_the_first_byte() {
        let p = Progress { mode: Mode::Quiet };
        let bar = p.bar("verifying", 100);
        assert!(bar.started.get().is_none());
        std::thread::sleep(Duration::from_millis(50));
        let before = Instant::now();
        bar.inc(1);
        assert!(bar.started.get().unwrap() >= before);
    }

    #[test]
    fn labels_fit_whole() {
        assert_eq!(fit_label("cni-plugins 1.9.1"), "cni-plugins 1.9.1");
        assert_eq!(fit_label("cni-plugins 1.10.12"), "cni-plugins 1.10.12");
        let long = fit_label("a label far longer than twenty");
        assert_eq!(long.chars().count(), LABEL_WIDTH);
        assert!(long.ends_with('…'));
    }
}
