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

use crate::config::{Config, StoreKind};
pub use jetstream::{JetStreamStore, Options as JetStreamOptions};
pub use memory::MemoryStore;
pub use sqlite::{Options as SqliteOptions, SqliteStore, Sync as SyncMode};

/// Why a store could not take or serve events. Both are answered `503`
/// with `Retry-After`; nothing is acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Too much queued already; retry shortly.
    #[error("store overloaded: {0}")]
    Overloaded(String),
    /// The store failed (disk full, read-only, unreachable).
    #[error("store unavailable: {0}")]
    Unavailable(String),
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
}

/// A page of query results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    /// The `after` for the next page; `None` when nothing more matches.
    pub next_after: Option<u64>,
}

pub trait Store: Send + Sync + 'static {
    /// Stores `events` atomically, deduplicating by (`source`, `id`).
    fn append<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, Result<Appended, StoreError>>;

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

/// Opens the store the configuration names.
pub async fn open(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match config.store {
        StoreKind::Memory => Ok(Arc::new(MemoryStore::default())),
        StoreKind::Sqlite => {
            let options = SqliteOptions {
                dir: config.data_dir.clone(),
                sync: config.sync,
                queue: config.store_queue,
                max_bytes: config.max_store_bytes,
                readers: 4,
            };
            Ok(Arc::new(SqliteStore::open(&options)?))
        }
        StoreKind::Jetstream => {
            let options = JetStreamOptions {
                urls: config.nats_url.clone(),
                stream: config.stream.clone(),
                subject_prefix: config.subject_prefix.clone(),
                replicas: config.replicas,
                max_age: config.max_age,
                max_bytes: config.max_stream_bytes,
                duplicate_window: config.duplicate_window,
                ack_timeout: std::time::Duration::from_secs(5),
            };
            Ok(Arc::new(JetStreamStore::open(options).await?))
        }
    }
}

/// The current time in RFC 3339, for `received_at`.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
