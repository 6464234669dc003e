//! `post`'s progress bar: lines read, accepted, refused, retried and the
//! rate, redrawn four times a second on stderr, and only when stderr is a
//! terminal: a script (stderr piped or sent to a file) sees the summary
//! alone. The bar is cleared before the summary is printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::input::Inbox;
use super::worker::Shared;

/// How often the counts are read and the bar redrawn.
const TICK: Duration = Duration::from_millis(250);

/// A bar being drawn; [`Progress::finish`] clears it.
pub struct Progress {
    bar: indicatif::ProgressBar,
    ticker: JoinHandle<()>,
}

/// What the bar shows, read from the inbox and the summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub read: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub refused: u64,
    pub retried: u64,
    pub failed: u64,
}

impl Counts {
    fn of(inbox: &Inbox, summary: &Shared) -> Counts {
        let s = summary.lock().unwrap_or_else(|e| e.into_inner());
        Counts {
            read: inbox.lines_read(),
            accepted: s.accepted,
            duplicates: s.duplicates,
            refused: s.rejected.len() as u64,
            retried: s.retried,
            failed: s.failed.len() as u64,
        }
    }

    /// Lines with a final answer (stored, duplicate or refused).
    fn answered(&self) -> u64 {
        self.accepted + self.duplicates + self.refused
    }
}

/// The bar's text; `rate`: lines answered per second since the last tick.
pub fn message(c: &Counts, rate: f64) -> String {
    let mut out = format!("{} read, {} accepted", c.read, c.accepted);
    if c.duplicates > 0 {
        out.push_str(&format!(" (+{} duplicates)", c.duplicates));
    }
    out.push_str(&format!(", {} refused, {} retried", c.refused, c.retried));
    if c.failed > 0 {
        out.push_str(&format!(", {} failed", c.failed));
    }
    out.push_str(&format!(", {rate:.0} lines/s"));
    out
}

/// Starts the bar when `visible` (stderr is a terminal), else nothing.
pub fn start(visible: bool, inbox: Arc<Inbox>, summary: Shared) -> Option<Progress> {
    if !visible {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(TICK).await;
                let counts = Counts::of(&inbox, &summary);
                let elapsed = last.0.elapsed().as_secs_f64();
                let rate = if elapsed > 0.0 { counts.answered().saturating_sub(last.1) as f64 / elapsed } else { 0.0 };
                last = (Instant::now(), counts.answered());
                bar.set_message(message(&counts, rate));
                bar.tick();
            }
        })
    };
    Some(Progress { bar, ticker })
}

impl Progress {
    /// Stops redrawing and clears the bar, so the summary stands alone.
    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_each_count() {
        let c = Counts { read: 120, accepted: 100, duplicates: 0, refused: 3, retried: 7, failed: 0 };
        assert_eq!(message(&c, 1234.4), "120 read, 100 accepted, 3 refused, 7 retried, 1234 lines/s");
        let c = Counts { duplicates: 2, failed: 5, ..c };
        assert_eq!(
            message(&c, 0.0),
            "120 read, 100 accepted (+2 duplicates), 3 refused, 7 retried, 5 failed, 0 lines/s"
        );
    }
}
