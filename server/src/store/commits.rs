//! What the SQLite writer's commits hold and how long they take: the
//! figures that tell whether `--sync full` is bound by the disk (each commit
//! waits for one fsync) or by how few requests there are to group.
//!
//! The writer records each commit once (a few relaxed atomic adds per
//! group, not per request); `/stats` shows the sums and `/metrics` two
//! histograms, read at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the commit-duration buckets: 50 µs doubling to ~3.3 s.
const DURATION_BUCKETS: usize = 17;
/// Upper bounds of the requests-per-commit buckets: 1, 2, 4, ... 4096.
const SIZE_BUCKETS: usize = 13;

/// Counters of the writer's commits.
#[derive(Debug)]
pub struct CommitStats {
    /// Commits attempted (groups written, including drop-oldest rounds).
    pub commits: AtomicU64,
    /// Requests (jobs) written, summed over commits.
    pub requests: AtomicU64,
    /// Events in the requests written (duplicates included), summed over commits.
    pub events: AtomicU64,
    /// Time spent in `COMMIT` (with `--sync full`, the fsync of the WAL).
    pub commit_nanos: AtomicU64,
    /// Per-bucket (not cumulative) counts; the last one is +Inf.
    duration: [AtomicU64; DURATION_BUCKETS + 1],
    size: [AtomicU64; SIZE_BUCKETS + 1],
}

impl Default for CommitStats {
    fn default() -> CommitStats {
        CommitStats {
            commits: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            events: AtomicU64::new(0),
            commit_nanos: AtomicU64::new(0),
            duration: std::array::from_fn(|_| AtomicU64::new(0)),
            size: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

fn duration_bound(i: usize) -> f64 {
    0.000_05 * f64::from(1u32 << i)
}

fn size_bound(i: usize) -> f64 {
    f64::from(1u32 << i)
}

impl CommitStats {
    /// Records one commit of `requests` jobs holding `events` rows whose
    /// `COMMIT` took `took`.
    pub fn record(&self, requests: usize, events: usize, took: Duration) {
        self.commits.fetch_add(1, Relaxed);
        self.requests.fetch_add(requests as u64, Relaxed);
        self.events.fetch_add(events as u64, Relaxed);
        self.commit_nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        let secs = took.as_secs_f64();
        let d = (0..DURATION_BUCKETS).find(|i| secs <= duration_bound(*i)).unwrap_or(DURATION_BUCKETS);
        self.duration[d].fetch_add(1, Relaxed);
        let n = requests as f64;
        let s = (0..SIZE_BUCKETS).find(|i| n <= size_bound(*i)).unwrap_or(SIZE_BUCKETS);
        self.size[s].fetch_add(1, Relaxed);
    }

    /// The commit durations as (upper bound in seconds, count in that
    /// bucket) pairs, +Inf last, with their sum in seconds.
    pub fn duration_histogram(&self) -> (f64, Vec<(f64, u64)>) {
        let sum = self.commit_nanos.load(Relaxed) as f64 / 1e9;
        (sum, buckets(&self.duration, duration_bound))
    }

    /// Requests per commit as (upper bound, count in that bucket) pairs,
    /// +Inf last, with their sum.
    pub fn size_histogram(&self) -> (f64, Vec<(f64, u64)>) {
        (self.requests.load(Relaxed) as f64, buckets(&self.size, size_bound))
    }
}

fn buckets(counts: &[AtomicU64], bound: fn(usize) -> f64) -> Vec<(f64, u64)> {
    let last = counts.len() - 1;
    counts.iter().enumerate().map(|(i, n)| (if i == last { f64::MAX } else { bound(i) }, n.load(Relaxed))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_land_in_their_buckets() {
        let c = CommitStats::default();
        c.record(1, 1, Duration::from_micros(50));
        c.record(3, 300, Duration::from_micros(51));
        c.record(5000, 5000, Duration::from_secs(10));
        assert_eq!(c.commits.load(Relaxed), 3);
        assert_eq!(c.requests.load(Relaxed), 5004);
        assert_eq!(c.events.load(Relaxed), 5301);
        let (sum, d) = c.duration_histogram();
        assert!((sum - 10.000_101).abs() < 1e-9, "{sum}");
        assert_eq!(d.len(), DURATION_BUCKETS + 1);
        assert_eq!((d[0].1, d[1].1, d[DURATION_BUCKETS].1), (1, 1, 1), "at the bound, past it, past the last");
        assert_eq!(d.iter().map(|b| b.1).sum::<u64>(), 3);
        let (requests, s) = c.size_histogram();
        assert_eq!(requests, 5004.0);
        // 1 → bucket "1", 3 → bucket "4", 5000 → +Inf.
        assert_eq!((s[0].1, s[1].1, s[2].1, s[SIZE_BUCKETS].1), (1, 0, 1, 1));
        assert_eq!(s[SIZE_BUCKETS - 1].0, 4096.0);
    }
}
