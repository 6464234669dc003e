//! Where accepted events go. Handlers talk to the [`Store`] trait only.
//!
//! The contract every store keeps (SPEC §3.1, §5):
//! - `append` is all-or-nothing and keeps the order of the slice;
//! - events are identified by (`source`, `id`): an event already stored is
//!   reported as a duplicate and not stored again, also within one slice;
//! - the future resolves only once the events are as durable as the store
//!   promises, so the caller may answer `202` right after it.

pub mod commits;
mod jetstream;
pub mod live;
mod memory;
pub mod rejected;
mod sqlite;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use inlet_shared::event::Event;
use smallvec::SmallVec;

pub use jetstream::{JetStreamStore, Options as JetStreamOptions};
pub use live::{Live, LiveSettings};
pub use memory::{MemoryStore, Options as MemoryOptions};
pub use rejected::{RejectedGauges, RejectedLog, RejectedOptions, DEFAULT_MAX_REJECTED_BYTES};
pub use sqlite::{backup, BackupError, Options as SqliteOptions, SqliteStore, Sync as SyncMode, DEFAULT_DEDUPE_WINDOW};

/// What a capped store does when a write does not fit (`--when-full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Answer `503` until space is freed (by retention or by hand).
    #[default]
    Refuse,
    /// Delete the oldest events to make room, and keep accepting.
    DropOldest,
}

impl WhenFull {
    pub fn name(self) -> &'static str {
        match self {
            WhenFull::Refuse => "refuse",
            WhenFull::DropOldest => "drop-oldest",
        }
    }
}

/// Why events were deleted: the label of the deletion counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// Older than `--retention`.
    Retention,
    /// Dropped to make room under `--max-store-bytes` (`--when-full drop-oldest`).
    Cap,
}

/// A store's gauges and settings for `/stats` and `/metrics`, kept up to
/// date by the store itself (its writer and deletion job), so that a scrape
/// reads a few atomics and never counts rows.
#[derive(Debug, Default)]
pub struct StoreGauges {
    /// Size of the store in bytes (SQLite: pages times page size).
    pub bytes: AtomicU64,
    /// Events stored now.
    pub events: AtomicU64,
    /// When the oldest stored event was received, in milliseconds since the
    /// Unix epoch; 0 when the store is empty.
    pub oldest_ms: AtomicI64,
    /// Events deleted for being older than the retention.
    pub deleted_retention: AtomicU64,
    /// Events deleted to make room under the cap.
    pub deleted_cap: AtomicU64,
    /// Keys of deleted events remembered for the dedupe window now.
    pub remembered_keys: AtomicU64,
    /// `--retention` (`None`: keep forever).
    pub retention: Option<Duration>,
    /// `--max-store-bytes`.
    pub max_bytes: Option<u64>,
    /// `--when-full`.
    pub when_full: WhenFull,
    /// `--dedupe-window`: how long a deleted event's key is still a duplicate.
    pub dedupe_window: Duration,
    /// The gauges of the rejected log (`--keep-rejected`), if it is kept.
    pub rejected: Option<Arc<RejectedGauges>>,
    /// What the writer's commits hold and how long they take (SQLite only).
    pub commits: Option<commits::CommitStats>,
}

impl StoreGauges {
    pub fn new(
        retention: Option<Duration>,
        max_bytes: Option<u64>,
        when_full: WhenFull,
        dedupe_window: Duration,
    ) -> StoreGauges {
        StoreGauges { retention, max_bytes, when_full, dedupe_window, ..StoreGauges::default() }
    }

    /// Counts `n` deleted events.
    pub fn record_deleted(&self, reason: DeleteReason, n: u64) {
        let counter = match reason {
            DeleteReason::Retention => &self.deleted_retention,
            DeleteReason::Cap => &self.deleted_cap,
        };
        counter.fetch_add(n, Relaxed);
        // Never below zero, even if the count at open was off.
        let _ = self.events.fetch_update(Relaxed, Relaxed, |e| Some(e.saturating_sub(n)));
    }

    /// Age of the oldest stored event at `now_ms`, in whole seconds; `None`
    /// when the store is empty.
    pub fn oldest_age_seconds(&self, now_ms: i64) -> Option<u64> {
        match self.oldest_ms.load(Relaxed) {
            0 => None,
            oldest => Some((now_ms.saturating_sub(oldest).max(0) / 1000) as u64),
        }
    }
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// What kind of failure a [`StoreError`] is. Every kind but `TooLarge`
/// (`413`) is answered `503` with `Retry-After`; nothing of the request
/// was stored, except perhaps under `Unanswered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Too much queued already; retry shortly.
    Overloaded,
    /// The store reached its size cap or the disk is full.
    Full,
    /// The store failed (I/O error, read-only, unreachable, a bug).
    Unavailable,
    /// The store is shutting down.
    Closing,
    /// The write was sent and no answer came (JetStream: no ack in time,
    /// the connection lost): the events may have been stored. A retry
    /// with the same ids is safe (duplicates are detected).
    Unanswered,
    /// The request can never fit under the store's cap (over half of it
    /// under `--when-full drop-oldest`): a retry cannot help.
    TooLarge,
}

/// Why a store could not take or serve events: a kind, a short reason that
/// may be shown to the client, and the underlying cause (logged, never sent).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct StoreError {
    kind: ErrorKind,
    reason: &'static str,
    #[source]
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// The one constructor: every store error is built here.
    pub fn new(kind: ErrorKind, reason: &'static str, cause: Option<Arc<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError { kind, reason, cause }
    }

    /// An error without an underlying cause.
    pub fn plain(kind: ErrorKind, reason: &'static str) -> Self {
        StoreError::new(kind, reason, None)
    }

    /// An error caused by `cause`.
    pub fn caused(
        kind: ErrorKind,
        reason: &'static str,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::new(kind, reason, Some(Arc::new(cause)))
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The short reason, safe to show to a client.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The reason and its chain of causes, for the log.
    pub fn chain(&self) -> String {
        let mut text = self.reason.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }
}

/// Result of an append: for each event of the slice, whether it was a
/// duplicate (already stored, or earlier in the same slice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Per event, in order: whether it was stored already. Inline for up
    /// to 8 events (no allocation for the usual single event).
    pub duplicate: SmallVec<[bool; 8]>,
}

impl Appended {
    pub fn accepted(&self) -> usize {
        self.duplicate.iter().filter(|d| !**d).count()
    }

    pub fn duplicates(&self) -> usize {
        self.duplicate.iter().filter(|d| **d).count()
    }
}

/// Filters and paging of `GET /events` (SPEC §3.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub ty: Option<String>,
    pub source: Option<String>,
    /// Only events written with the token of this name.
    pub token: Option<String>,
    /// Only events with a sequence number greater than this.
    pub after: u64,
    pub limit: usize,
}

/// One stored event as `GET /events` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: u64,
    /// RFC 3339, when the server accepted it.
    pub received_at: String,
    /// The event in the CloudEvents JSON format.
    pub json: Bytes,
    /// The name of the token that wrote it; `None` when written
    /// anonymously (without `--tokens`).
    pub token: Option<Arc<str>>,
}

/// A page of query results, whole (see [`PageStream::collect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    /// The `after` for the next page; `None` when nothing more matches.
    pub next_after: Option<u64>,
}

/// The default of `--max-page-bytes`.
pub const DEFAULT_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// A slice is handed on once it holds this many bytes of events...
const SLICE_BYTES: usize = 64 * 1024;
/// ...or this many events.
const SLICE_EVENTS: usize = 256;
/// Slices waiting between a store's reader and the response at most.
const SLICES_IN_FLIGHT: usize = 2;

/// What a store's read sends, in order: slices of events, then the end.
#[derive(Debug)]
pub enum PageItem {
    /// The next events of the page, in ascending `seq`.
    Events(Vec<StoredEvent>),
    /// The page is complete: the `after` of the next page, `None` when
    /// nothing more matches.
    End { next_after: Option<u64> },
    /// The read failed; nothing more follows.
    Failed(StoreError),
}

/// A page as the store reads it: slices of events through a bounded
/// channel, so that a reader holds a few slices at most (never the whole
/// page) and the store runs only as far ahead of the client as that.
/// Dropping it stops the read.
#[derive(Debug)]
pub struct PageStream {
    rx: tokio::sync::mpsc::Receiver<PageItem>,
}

impl PageStream {
    /// The next item; a read that stopped without its end (a bug, a
    /// panic) is `Failed`.
    pub async fn recv(&mut self) -> PageItem {
        self.rx
            .recv()
            .await
            .unwrap_or_else(|| PageItem::Failed(StoreError::plain(ErrorKind::Unavailable, "the read stopped")))
    }

    /// The whole page (for tests and small pages).
    pub async fn collect(mut self) -> Result<Page, StoreError> {
        let mut events = Vec::new();
        loop {
            match self.recv().await {
                PageItem::Events(slice) => events.extend(slice),
                PageItem::End { next_after } => return Ok(Page { events, next_after }),
                PageItem::Failed(e) => return Err(e),
            }
        }
    }

    /// A page read whole (by a store that cannot read it in slices): cut at
    /// `max_bytes` like any other, sent in slices.
    pub(crate) fn of_page(page: Result<Page, StoreError>, limit: usize, max_bytes: usize) -> PageStream {
        let page = match page {
            Ok(page) => page,
            Err(e) => return PageStream::failed(e),
        };
        let mut pager = Pager::new(limit, max_bytes);
        let mut items = Vec::new();
        let mut events = page.events.into_iter();
        let mut stopped = false;
        for e in events.by_ref() {
            if !pager.offer(e) {
                stopped = true;
                break;
            }
            if let Some(slice) = pager.ready_slice() {
                items.push(PageItem::Events(slice));
            }
        }
        if let Some(slice) = pager.last_slice() {
            items.push(PageItem::Events(slice));
        }
        // Cut here: the next page starts after the last event kept; else
        // the store's own answer (which may be past the last event, where
        // its scan stopped).
        let next_after = if stopped { pager.last_seq() } else { page.next_after };
        items.push(PageItem::End { next_after });
        let (tx, rx) = tokio::sync::mpsc::channel(items.len());
        for item in items {
            // The channel has room for every item.
            let _ = tx.try_send(item);
        }
        PageStream { rx }
    }

    pub(crate) fn failed(e: StoreError) -> PageStream {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let _ = tx.try_send(PageItem::Failed(e));
        PageStream { rx }
    }
}

/// The sending end of a [`PageStream`], for a store's read.
#[derive(Debug)]
pub(crate) struct PageSender {
    tx: tokio::sync::mpsc::Sender<PageItem>,
}

impl PageSender {
    pub(crate) fn channel() -> (PageSender, PageStream) {
        let (tx, rx) = tokio::sync::mpsc::channel(SLICES_IN_FLIGHT);
        (PageSender { tx }, PageStream { rx })
    }

    /// Sends from a task, waiting while the channel is full. `false`: the
    /// reader is gone; stop reading.
    #[cfg(test)]
    pub(crate) async fn send(&self, item: PageItem) -> bool {
        self.tx.send(item).await.is_ok()
    }

    /// Sends from a blocking thread, waiting while the channel is full.
    /// `false`: the reader is gone (the client left); stop reading.
    pub(crate) fn blocking_send(&self, item: PageItem) -> bool {
        self.tx.blocking_send(item).is_ok()
    }
}

/// Cuts a page by count (`limit`) and by bytes (`max_bytes`, the sum of
/// the events' JSON), and gathers its events into slices.
///
/// A page holds at least one event, however large: a page cut before its
/// first event could never be followed by the next. The event that does not
/// fit shows that more match: the page then ends with `next_after` at its
/// last event.
#[derive(Debug)]
pub(crate) struct Pager {
    limit: usize,
    max_bytes: usize,
    count: usize,
    bytes: usize,
    slice: Vec<StoredEvent>,
    slice_bytes: usize,
    last_seq: Option<u64>,
    full: bool,
}

impl Pager {
    pub(crate) fn new(limit: usize, max_bytes: usize) -> Pager {
        Pager { limit, max_bytes, count: 0, bytes: 0, slice: Vec::new(), slice_bytes: 0, last_seq: None, full: false }
    }

    /// Takes the next matching event into the page; `false` if the page is
    /// full, which ends it: more events match.
    pub(crate) fn offer(&mut self, event: StoredEvent) -> bool {
        let size = event.json.len();
        if self.count == self.limit || (self.count > 0 && self.bytes.saturating_add(size) > self.max_bytes) {
            self.full = true;
            return false;
        }
        self.count += 1;
        self.bytes += size;
        self.slice_bytes += size;
        self.last_seq = Some(event.seq);
        self.slice.push(event);
        true
    }

    /// The slice gathered so far, if it is large enough to hand on.
    pub(crate) fn ready_slice(&mut self) -> Option<Vec<StoredEvent>> {
        if self.ready_slice_pending() {
            return self.last_slice();
        }
        None
    }

    /// Whether [`Pager::ready_slice`] has a slice to give.
    pub(crate) fn ready_slice_pending(&self) -> bool {
        self.slice_bytes >= SLICE_BYTES || self.slice.len() >= SLICE_EVENTS
    }

    /// The rest of the page's events, if any.
    pub(crate) fn last_slice(&mut self) -> Option<Vec<StoredEvent>> {
        if self.slice.is_empty() {
            return None;
        }
        self.slice_bytes = 0;
        Some(std::mem::take(&mut self.slice))
    }

    fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// The end of the page: `next_after` is its last event if the page is
    /// full, `None` if the read found nothing more.
    pub(crate) fn end(&self) -> PageItem {
        PageItem::End { next_after: if self.full { self.last_seq } else { None } }
    }
}

pub trait Store: Send + Sync + 'static {
    /// Stores `events` atomically, deduplicating by (`source`, `id`), each
    /// with the name of the `token` that wrote them (`None`: anonymous).
    fn append<'a>(&'a self, events: &'a [Event], token: Option<&'a str>)
        -> BoxFuture<'a, Result<Appended, StoreError>>;

    /// Stores `events` as [`Store::append`] does, at once, if the store can
    /// do it without waiting (the memory store): the handler tries this
    /// first, so that such a store's write costs no boxed future and no
    /// poll. `None`: the store must wait (SQLite's writer thread,
    /// JetStream's acknowledgements); nothing was stored, call `append`.
    fn append_now(&self, events: &[Event], token: Option<&str>) -> Option<Result<Appended, StoreError>> {
        let _ = (events, token);
        None
    }

    /// Reads a page: at most `query.limit` events, and no more than
    /// `max_bytes` of event JSON unless a single event is larger (see
    /// [`Pager`]). The read runs off the caller's thread and sends its
    /// events in slices; dropping the stream stops it.
    fn query(&self, query: Query, max_bytes: usize) -> BoxFuture<'_, PageStream>;

    /// The sequence number of the last event stored (0: none yet).
    fn last_seq(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Makes everything acknowledged durable and releases the store; called
    /// once at shutdown.
    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// A short name for logs and `/health`.
    fn name(&self) -> &'static str;

    /// The hub of the store's live subscribers (`GET /events/stream`): the
    /// store tells it of every append that stored something.
    fn live(&self) -> &Arc<Live>;

    /// Whether the store can take a write now; `Err` says why not (shown by
    /// `/readyz` and `/health`). Cheap: a probe every second writes
    /// nothing and waits on nothing but, at most once, a bounded network
    /// call (JetStream finding its stream).
    fn readiness(&self) -> BoxFuture<'_, Result<(), NotReady>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// The store's gauges (size, events, oldest event, deletions) and its
    /// retention settings, for `/stats` and `/metrics`; `None` when the
    /// store keeps none (JetStream: the stream has its own).
    fn gauges(&self) -> Option<Arc<StoreGauges>> {
        None
    }

    /// Where refused events are kept (`--keep-rejected`); `None` when they
    /// are not.
    fn rejected(&self) -> Option<Arc<dyn RejectedLog>> {
        None
    }
}

/// Why a store cannot take a write now: a stable status word and a short,
/// fixed detail, both safe to show to anyone (no path, no secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotReady {
    /// `full`, `unavailable` or `closing`.
    pub status: &'static str,
    pub detail: &'static str,
}

impl NotReady {
    pub const fn full(detail: &'static str) -> NotReady {
        NotReady { status: "full", detail }
    }

    pub const fn unavailable(detail: &'static str) -> NotReady {
        NotReady { status: "unavailable", detail }
    }

    pub const fn closing(detail: &'static str) -> NotReady {
        NotReady { status: "closing", detail }
    }
}

/// Which store to open, with its settings. Built from the command line in
/// one place (`Config::store_options`); the store knows nothing of flags.
#[derive(Debug, Clone)]
pub enum Options {
    Memory(MemoryOptions),
    Sqlite(SqliteOptions),
    Jetstream(JetStreamOptions),
}

/// Why a store could not be opened at start-up. The message names what
/// failed; the cause is the error's source (`{:#}` prints both).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory {}", path.display())]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the event store {}", path.display())]
    Database {
        path: std::path::PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the data directory {} is in use by another inlet-server{}; stop it first, or give another --data-dir",
        dir.display(),
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Locked { dir: std::path::PathBuf, holder: Option<u32> },
    #[error("cannot lock the data directory {} (its `lock` file)", dir.display())]
    Lock {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the event store {}: it is not an inlet event store ({why}); it was left untouched", path.display())]
    NotAStore { path: std::path::PathBuf, why: String },
    #[error(
        "cannot open the event store {}: it has schema version {found}, newer than the {known} this inlet-server \
         knows; run a newer inlet-server (the file was left untouched)",
        path.display()
    )]
    NewerSchema { path: std::path::PathBuf, found: i64, known: i64 },
    #[error("cannot start the {what} thread")]
    Thread {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid NATS server URL {url:?}")]
    NatsUrl {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to NATS")]
    Nats(#[source] async_nats::ConnectError),
    #[error("the JetStream store cannot start: {0}")]
    Jetstream(String),
}

/// A store to open and the settings of its live subscribers.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub store: Options,
    pub live: LiveSettings,
}

impl From<Options> for OpenOptions {
    fn from(store: Options) -> OpenOptions {
        OpenOptions { store, live: LiveSettings::default() }
    }
}

/// Opens the store `options` name.
pub async fn open(options: impl Into<OpenOptions>) -> Result<Arc<dyn Store>, OpenError> {
    let OpenOptions { store, live } = options.into();
    let store: Arc<dyn Store> = match store {
        Options::Memory(options) => Arc::new(MemoryStore::open(&options)?),
        Options::Sqlite(options) => Arc::new(SqliteStore::open(&options)?),
        Options::Jetstream(options) => Arc::new(JetStreamStore::open(options).await?),
    };
    store.live().configure(live);
    Ok(store)
}

/// The current time in RFC 3339, for `received_at`.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// A fresh directory for a test, removed when dropped (the server crate
/// has no dev-dependencies to bring one).
#[cfg(test)]
pub(crate) struct TestDir(std::path::PathBuf);

#[cfg(test)]
impl TestDir {
    pub(crate) fn new() -> TestDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("inlet-store-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("test dir");
        TestDir(path)
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_error_shows_its_reason_and_logs_its_cause() {
        let e = StoreError::caused(ErrorKind::Full, "the store is full", std::io::Error::other("disk at /var/x"));
        assert_eq!(e.kind(), ErrorKind::Full);
        assert_eq!(e.to_string(), "the store is full");
        assert_eq!(e.chain(), "the store is full: disk at /var/x");
        assert!(std::error::Error::source(&e).is_some());
        let plain = StoreError::plain(ErrorKind::Overloaded, "the write queue is full");
        assert_eq!(plain.chain(), "the write queue is full");
        assert!(std::error::Error::source(&plain).is_none());
    }

    #[test]
    fn sqlite_errors_are_classified() {
        let code = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        let kind = |code_| sqlite::sqlite_error(code(code_)).kind();
        assert_eq!(kind(rusqlite::ffi::SQLITE_FULL), ErrorKind::Full);
        assert_eq!(kind(rusqlite::ffi::SQLITE_BUSY), ErrorKind::Overloaded);
        assert_eq!(kind(rusqlite::ffi::SQLITE_IOERR), ErrorKind::Unavailable);
        assert_eq!(sqlite::sqlite_error(code(rusqlite::ffi::SQLITE_FULL)).reason(), "the store is full");
    }

    fn stored(seq: u64, size: usize) -> StoredEvent {
        StoredEvent { seq, received_at: String::new(), json: Bytes::from(vec![b'x'; size]), token: None }
    }

    #[test]
    fn the_pager_cuts_by_count_and_by_bytes_and_keeps_one_event_at_least() {
        let mut by_count = Pager::new(2, usize::MAX);
        assert!(by_count.offer(stored(1, 10)) && by_count.offer(stored(2, 10)));
        assert!(!by_count.offer(stored(3, 10)), "the third is past the limit");
        assert!(matches!(by_count.end(), PageItem::End { next_after: Some(2) }));

        let mut by_bytes = Pager::new(100, 25);
        assert!(by_bytes.offer(stored(1, 10)) && by_bytes.offer(stored(2, 15)), "25 bytes: at the bound");
        assert!(!by_bytes.offer(stored(3, 1)), "26 bytes: one past");
        assert!(matches!(by_bytes.end(), PageItem::End { next_after: Some(2) }));
        assert_eq!(by_bytes.last_slice().map(|s| s.len()), Some(2));

        let mut huge = Pager::new(100, 25);
        assert!(huge.offer(stored(7, 1000)), "a page holds one event however large");
        assert!(!huge.offer(stored(8, 1)));
        assert!(matches!(huge.end(), PageItem::End { next_after: Some(7) }));

        let mut short = Pager::new(100, 25);
        assert!(short.offer(stored(1, 5)));
        assert!(matches!(short.end(), PageItem::End { next_after: None }), "nothing refused: nothing more");
    }

    #[test]
    fn slices_are_handed_on_by_size() {
        let mut pager = Pager::new(10_000, usize::MAX);
        assert!(pager.offer(stored(1, SLICE_BYTES - 1)));
        assert!(pager.ready_slice().is_none());
        assert!(pager.offer(stored(2, 1)));
        assert_eq!(pager.ready_slice().map(|s| s.len()), Some(2));
        for seq in 3..3 + SLICE_EVENTS as u64 {
            assert!(pager.offer(stored(seq, 1)));
        }
        assert_eq!(pager.ready_slice().map(|s| s.len()), Some(SLICE_EVENTS));
        assert!(pager.last_slice().is_none());
    }

    #[tokio::test]
    async fn the_memory_store_appends_at_once_and_sqlite_only_when_awaited() {
        let memory: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let ev = |id: &str| Event::new(id, "/s", "t");
        let now = memory.append_now(&[ev("1"), ev("2"), ev("1")], Some("shop")).map(|r| r.unwrap().duplicate);
        assert_eq!(now.as_deref(), Some(&[false, false, true][..]));
        // The same store as `append` sees it: a duplicate of what was stored at once.
        assert_eq!(memory.append(&[ev("2"), ev("3")], None).await.unwrap().duplicate[..], [true, false]);
        assert_eq!(memory.last_seq().await.unwrap(), 3);

        let dir = TestDir::new();
        let sqlite_options = SqliteOptions { readers: 1, ..SqliteOptions::new(dir.path().to_path_buf()) };
        let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(&sqlite_options).unwrap());
        assert!(sqlite.append_now(&[ev("1")], None).is_none(), "SQLite's writer is waited for");
        assert_eq!(sqlite.last_seq().await.unwrap(), 0, "nothing was stored by the refused call");
        assert_eq!(sqlite.append(&[ev("1")], None).await.unwrap().duplicate[..], [false]);
        assert_eq!(sqlite.last_seq().await.unwrap(), 1);
        sqlite.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_page_read_whole_is_cut_like_any_other() {
        let events: Vec<StoredEvent> = (1..=4).map(|seq| stored(seq, 10)).collect();
        // Cut by bytes: the next page starts after the last event kept.
        let page = Page { events: events.clone(), next_after: None };
        let cut = PageStream::of_page(Ok(page), 100, 25).collect().await.unwrap();
        assert_eq!((cut.events.len(), cut.next_after), (2, Some(2)));
        // Not cut: the store's own `next_after` stands (it may be past the
        // last event, where a scan stopped).
        let page = Page { events, next_after: Some(90) };
        let whole = PageStream::of_page(Ok(page), 100, 1000).collect().await.unwrap();
        assert_eq!((whole.events.len(), whole.next_after), (4, Some(90)));
        let failed = PageStream::of_page(Err(StoreError::plain(ErrorKind::Unavailable, "x")), 100, 1000);
        assert_eq!(failed.collect().await.unwrap_err().reason(), "x");
    }
}
