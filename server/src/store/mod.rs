//! Where accepted events go. Handlers talk to the [`Store`] trait only.
//!
//! The contract every store keeps (SPEC §3.1, §5):
//! - `append` is all-or-nothing and keeps the order of the slice;
//! - events are identified by (`source`, `id`): an event already stored is
//!   reported as a duplicate and not stored again, also within one slice;
//! - the future resolves only once the events are as durable as the store
//!   promises, so the caller may answer `202` right after it.

mod jetstream;
mod memory;
mod sqlite;

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use inlet_shared::event::Event;
use smallvec::SmallVec;

pub use jetstream::{JetStreamStore, Options as JetStreamOptions};
pub use memory::MemoryStore;
pub use sqlite::{Options as SqliteOptions, SqliteStore, Sync as SyncMode};

/// What kind of failure a [`StoreError`] is. Every kind is answered `503`
/// with `Retry-After`; nothing of the request was stored.
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

/// A page of query results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    /// The `after` for the next page; `None` when nothing more matches.
    pub next_after: Option<u64>,
}

pub trait Store: Send + Sync + 'static {
    /// Stores `events` atomically, deduplicating by (`source`, `id`), each
    /// with the name of the `token` that wrote them (`None`: anonymous).
    fn append<'a>(&'a self, events: &'a [Event], token: Option<&'a str>)
        -> BoxFuture<'a, Result<Appended, StoreError>>;

    fn query(&self, query: Query) -> BoxFuture<'_, Result<Page, StoreError>>;

    /// Makes everything acknowledged durable and releases the store; called
    /// once at shutdown.
    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// A short name for logs and `/health`.
    fn name(&self) -> &'static str;

    /// Whether the store can take writes now; `Err` says why not (shown by
    /// `/health`).
    fn readiness(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Which store to open, with its settings. Built from the command line in
/// one place (`Config::store_options`); the store knows nothing of flags.
#[derive(Debug, Clone)]
pub enum Options {
    Memory,
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
}

/// Opens the store `options` name.
pub async fn open(options: impl Into<Options>) -> Result<Arc<dyn Store>, OpenError> {
    match options.into() {
        Options::Memory => Ok(Arc::new(MemoryStore::default())),
        Options::Sqlite(options) => Ok(Arc::new(SqliteStore::open(&options)?)),
        Options::Jetstream(options) => Ok(Arc::new(JetStreamStore::open(options).await?)),
    }
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
}
