//! Rejected events kept for inspection (`--keep-rejected`, `GET /rejected`).
//!
//! Each event refused for what it holds (a schema violation, or an invalid
//! envelope whose JSON parsed) is kept as a [`Rejected`] row: its JSON as
//! sent, the errors of the `422`, and who sent it how. The log is separate
//! from the events: its own sequence, its own bound (`--max-rejected-bytes`,
//! oldest dropped first) and the store's `--retention`.
//!
//! Keeping is best-effort and never on the path of an answer: [`RejectedLog::keep`]
//! returns at once (the memory log takes a short lock, the SQLite log hands
//! the rows to its own thread through a bounded queue); a row that does not
//! fit the queue is dropped and counted, never waited for.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use super::{now_ms, ErrorKind, Query, StoreError};

/// The default of `--max-rejected-bytes`.
pub const DEFAULT_MAX_REJECTED_BYTES: u64 = 64 * 1024 * 1024;

/// Settings of the rejected log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectedOptions {
    /// Rows are dropped, oldest first, to keep their total size under this.
    pub max_bytes: u64,
    /// Rows older than this are deleted (`None`: kept until the cap).
    pub retention: Option<Duration>,
}

/// One refused event, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// When the request was refused, milliseconds since the Unix epoch.
    pub received_ms: i64,
    /// RFC 3339 of the same instant.
    pub received_at: String,
    /// The name of the token of the request (`None`: anonymous).
    pub token: Option<String>,
    /// `structured`, `batch`, `json`, `ndjson` or `binary`.
    pub mode: String,
    /// The request's `Content-Type`, as sent (cut at 256 bytes).
    pub content_type: String,
    /// The problem reason: `schema-violation` or `invalid-event`.
    pub reason: String,
    /// The event's `type` and `source`, when it has them as strings (the
    /// filters of `GET /rejected`).
    pub ty: Option<String>,
    pub source: Option<String>,
    /// The `errors` of this event in the `422`: a JSON array.
    pub errors: String,
    /// The event as sent: a JSON object, or a JSON string holding what was
    /// sent when it was not an object.
    pub event: String,
}

#[cfg(test)]
impl Rejected {
    /// A row as tests need one: `event` is its JSON text, the rest fixed.
    pub(crate) fn sample(event: String) -> Rejected {
        Rejected {
            received_ms: 1,
            received_at: "1970-01-01T00:00:00.001Z".into(),
            token: None,
            mode: "json".into(),
            content_type: "application/json".into(),
            reason: "invalid-event".into(),
            ty: None,
            source: None,
            errors: "[]".into(),
            event,
        }
    }
}

impl Rejected {
    /// What the row counts against `--max-rejected-bytes`: its texts plus a
    /// fixed overhead for the rest.
    pub fn size(&self) -> u64 {
        let texts = self.event.len()
            + self.errors.len()
            + self.content_type.len()
            + self.token.as_ref().map_or(0, String::len)
            + self.ty.as_ref().map_or(0, String::len)
            + self.source.as_ref().map_or(0, String::len);
        texts as u64 + ROW_OVERHEAD
    }
}

/// Bytes counted per row beyond its texts (seq, times, mode, reason).
pub const ROW_OVERHEAD: u64 = 64;

/// A kept row with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptRejected {
    pub seq: u64,
    pub row: Rejected,
}

/// A page of `GET /rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RejectedPage {
    pub rows: Vec<KeptRejected>,
    /// The `after` of the next page; `None` when nothing more matches.
    pub next_after: Option<u64>,
}

/// The log's gauges, for `/stats` and `/metrics`.
#[derive(Debug, Default)]
pub struct RejectedGauges {
    /// Rows kept now.
    pub rows: AtomicU64,
    /// Their size now (see [`Rejected::size`]).
    pub bytes: AtomicU64,
    /// Rows dropped (oldest first) to stay under the cap, or refused for
    /// being larger than the cap alone.
    pub dropped_cap: AtomicU64,
    /// Rows never kept: the queue to the log was full, or writing failed.
    pub dropped_queue: AtomicU64,
    /// Rows deleted for being older than the retention.
    pub deleted_retention: AtomicU64,
    pub max_bytes: u64,
}

/// Where refused events are kept.
pub trait RejectedLog: Send + Sync + 'static {
    /// Keeps `rows`, best-effort: returns at once, never fails the caller.
    fn keep(&self, rows: Vec<Rejected>);

    /// Reads a page: rows after `q.after` matching its filters, at most
    /// `q.limit` of them and no more than `max_bytes` of event JSON unless
    /// one row alone is larger.
    fn page(&self, q: Query, max_bytes: usize) -> BoxFuture<'_, Result<RejectedPage, StoreError>>;

    fn gauges(&self) -> Arc<RejectedGauges>;
}

/// Whether `row` passes the filters of `q` (not `after`).
pub fn matches(q: &Query, row: &Rejected) -> bool {
    let is = |want: &Option<String>, have: &Option<String>| want.is_none() || want == have;
    is(&q.ty, &row.ty) && is(&q.source, &row.source) && is(&q.token, &row.token)
}

/// Cuts a page by count and bytes, as `GET /events` pages are: a page holds
/// at least one row; the row that does not fit shows that more match.
#[derive(Debug)]
pub struct RejectedPager {
    limit: usize,
    max_bytes: usize,
    bytes: usize,
    page: RejectedPage,
}

impl RejectedPager {
    pub fn new(limit: usize, max_bytes: usize) -> RejectedPager {
        RejectedPager { limit, max_bytes, bytes: 0, page: RejectedPage::default() }
    }

    /// Takes the next matching row; `false` when the page is full (it then
    /// ends with `next_after` at its last row).
    pub fn offer(&mut self, kept: KeptRejected) -> bool {
        let size = kept.row.event.len() + kept.row.errors.len();
        let count = self.page.rows.len();
        if count == self.limit || (count > 0 && self.bytes.saturating_add(size) > self.max_bytes) {
            self.page.next_after = self.page.rows.last().map(|r| r.seq);
            return false;
        }
        self.bytes += size;
        self.page.rows.push(kept);
        true
    }

    pub fn finish(self) -> RejectedPage {
        self.page
    }
}

/// `--store memory`: a bounded deque, lost at exit like the events.
#[derive(Debug)]
pub struct MemoryRejected {
    inner: Mutex<MemoryInner>,
    gauges: Arc<RejectedGauges>,
    retention: Option<Duration>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    rows: VecDeque<KeptRejected>,
    bytes: u64,
    next_seq: u64,
}

impl MemoryRejected {
    pub fn new(options: RejectedOptions) -> MemoryRejected {
        let gauges = Arc::new(RejectedGauges { max_bytes: options.max_bytes, ..RejectedGauges::default() });
        MemoryRejected { inner: Mutex::new(MemoryInner::default()), gauges, retention: options.retention }
    }

    /// Deletes the rows older than the retention (the oldest are first).
    fn expire(&self, inner: &mut MemoryInner, now: i64) {
        let Some(retention) = self.retention else { return };
        let cutoff = now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        while inner.rows.front().is_some_and(|r| r.row.received_ms < cutoff) {
            if let Some(old) = inner.rows.pop_front() {
                inner.bytes = inner.bytes.saturating_sub(old.row.size());
                self.gauges.deleted_retention.fetch_add(1, Relaxed);
            }
        }
        self.publish(inner);
    }

    fn publish(&self, inner: &MemoryInner) {
        self.gauges.rows.store(inner.rows.len() as u64, Relaxed);
        self.gauges.bytes.store(inner.bytes, Relaxed);
    }
}

impl RejectedLog for MemoryRejected {
    fn keep(&self, rows: Vec<Rejected>) {
        let Ok(mut inner) = self.inner.lock() else {
            self.gauges.dropped_queue.fetch_add(rows.len() as u64, Relaxed);
            return;
        };
        self.expire(&mut inner, now_ms());
        for row in rows {
            let size = row.size();
            if size > self.gauges.max_bytes {
                self.gauges.dropped_cap.fetch_add(1, Relaxed);
                continue;
            }
            while inner.bytes + size > self.gauges.max_bytes {
                let Some(old) = inner.rows.pop_front() else { break };
                inner.bytes = inner.bytes.saturating_sub(old.row.size());
                self.gauges.dropped_cap.fetch_add(1, Relaxed);
            }
            inner.next_seq += 1;
            inner.bytes += size;
            let seq = inner.next_seq;
            inner.rows.push_back(KeptRejected { seq, row });
        }
        self.publish(&inner);
    }

    fn page(&self, q: Query, max_bytes: usize) -> BoxFuture<'_, Result<RejectedPage, StoreError>> {
        let page = (|| {
            let mut inner =
                self.inner.lock().map_err(|_| StoreError::plain(ErrorKind::Unavailable, "the rejected log failed"))?;
            self.expire(&mut inner, now_ms());
            let start = inner.rows.partition_point(|r| r.seq <= q.after);
            let mut pager = RejectedPager::new(q.limit, max_bytes);
            for kept in inner.rows.range(start..).filter(|r| matches(&q, &r.row)) {
                if !pager.offer(kept.clone()) {
                    break;
                }
            }
            Ok(pager.finish())
        })();
        Box::pin(std::future::ready(page))
    }

    fn gauges(&self) -> Arc<RejectedGauges> {
        self.gauges.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row(ty: &str, event_len: usize, received_ms: i64) -> Rejected {
        Rejected {
            received_ms,
            received_at: String::new(),
            token: None,
            mode: "structured".into(),
            content_type: String::new(),
            reason: "invalid-event".into(),
            ty: Some(ty.into()),
            source: None,
            errors: String::new(),
            event: "x".repeat(event_len),
        }
    }

    fn query(after: u64, limit: usize) -> Query {
        Query { after, limit, ..Query::default() }
    }

    #[tokio::test]
    async fn the_cap_drops_the_oldest_rows_first() {
        let size = row("t", 100, now_ms()).size();
        // Room for exactly three rows.
        let log = MemoryRejected::new(RejectedOptions { max_bytes: 3 * size, retention: None });
        log.keep((0..3).map(|_| row("t", 100, now_ms())).collect());
        let page = log.page(query(0, 100), usize::MAX).await.unwrap();
        assert_eq!(page.rows.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3], "at the cap: all kept");
        assert_eq!(log.gauges.dropped_cap.load(Relaxed), 0);
        log.keep(vec![row("t", 100, now_ms())]);
        let page = log.page(query(0, 100), usize::MAX).await.unwrap();
        assert_eq!(page.rows.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3, 4], "one past: the oldest went");
        assert_eq!(log.gauges.dropped_cap.load(Relaxed), 1);
        assert_eq!(log.gauges.bytes.load(Relaxed), 3 * size);
        log.keep(vec![row("t", 4 * size as usize, now_ms())]);
        assert_eq!(log.gauges.dropped_cap.load(Relaxed), 2, "a row larger than the cap is dropped alone");
        assert_eq!(log.gauges.rows.load(Relaxed), 3);
    }

    #[tokio::test]
    async fn retention_deletes_old_rows_and_pages_follow_filters() {
        let log = MemoryRejected::new(RejectedOptions {
            max_bytes: DEFAULT_MAX_REJECTED_BYTES,
            retention: Some(Duration::from_secs(60)),
        });
        let now = now_ms();
        log.keep(vec![row("a", 1, now - 120_000), row("a", 1, now), row("b", 1, now), row("a", 1, now)]);
        assert_eq!(log.gauges.deleted_retention.load(Relaxed), 0, "expired at the next keep or read");
        let page = log.page(Query { ty: Some("a".into()), ..query(0, 1) }, usize::MAX).await.unwrap();
        assert_eq!(log.gauges.deleted_retention.load(Relaxed), 1);
        assert_eq!((page.rows[0].seq, page.next_after), (2, Some(2)));
        let page = log.page(Query { ty: Some("a".into()), ..query(2, 1) }, usize::MAX).await.unwrap();
        assert_eq!((page.rows[0].seq, page.next_after), (4, None));
    }
}
