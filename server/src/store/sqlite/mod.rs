//! `--store sqlite` (the default): an event log in SQLite under
//! `--data-dir`, WAL mode, one writer thread with group commit
//! (`writer.rs`), a small pool of read connections for `GET /events` that
//! never wait for the writer, and dedupe by a unique key on (source, id).
//!
//! Durability: a request is acknowledged only after the transaction holding
//! its events committed. With `--sync full` (default) the commit includes an
//! fsync of the WAL, so an acknowledged event survives power loss; with
//! `--sync normal` it survives a crash of the process (`kill -9`) but the
//! last commits may be lost on power loss.

mod backup;
mod checkpointer;
mod lock;
mod rejected;
mod retention;
mod schema;
mod writer;

pub use backup::{backup, BackupError};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use futures::future::BoxFuture;
use inlet_shared::event::Event;
use rusqlite::{Connection, OpenFlags};
use smallvec::SmallVec;
use tokio::sync::oneshot;

use super::{
    Appended, ErrorKind, NotReady, OpenError, PageItem, PageSender, PageStream, Pager, Query, Store, StoreError,
    StoreGauges, StoredEvent, WhenFull,
};
use inlet_shared::event::Text;
use writer::{Job, Outcome, Row};

/// What a commit waits for (SQLite `PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// fsync the WAL on every commit: nothing acknowledged is lost on power loss.
    Full,
    /// fsync only at checkpoints: survives a process crash, not a power loss.
    Normal,
}

/// Settings of the SQLite store.
#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    pub sync: Sync,
    /// Requests waiting for the writer at most; more are answered 503.
    pub queue: usize,
    /// Cap on the database size; writes past it are answered 503.
    pub max_bytes: Option<u64>,
    /// Read connections.
    pub readers: usize,
    /// Events older than this are deleted (`None`: kept forever).
    pub retention: Option<Duration>,
    /// What a write past `max_bytes` does.
    pub when_full: WhenFull,
    /// How long the key of a deleted event still counts as a duplicate.
    pub dedupe_window: Duration,
    /// `--keep-rejected`: refused events are kept in the `rejected` table.
    pub keep_rejected: Option<super::RejectedOptions>,
}

impl Options {
    /// The defaults for the store in `dir` (those of the flags).
    pub fn new(dir: PathBuf) -> Options {
        Options {
            dir,
            sync: Sync::Full,
            queue: 4096,
            max_bytes: None,
            readers: 4,
            retention: None,
            when_full: WhenFull::Refuse,
            dedupe_window: DEFAULT_DEDUPE_WINDOW,
            keep_rejected: None,
        }
    }
}

/// The default of `--dedupe-window`.
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(24 * 3600);

pub struct SqliteStore {
    jobs: Mutex<Option<mpsc::SyncSender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    /// `--max-store-bytes`, and in pages, if set.
    max_bytes: Option<u64>,
    cap_pages: Option<u64>,
    /// Set when a write was refused as full, cleared by the next write that
    /// commits: readiness stays `full` until then, or until it sees room
    /// freed (more free bytes than at the refusal).
    refused_full: AtomicBool,
    /// Free bytes at the refusal (`u64::MAX`: unknown, then the first
    /// probe's).
    free_at_refusal: AtomicU64,
    /// Held for the life of the store: one owner per data directory.
    _lock: lock::DirLock,
    gauges: Arc<StoreGauges>,
    live: Arc<super::Live>,
    /// `--keep-rejected`: the `rejected` table and its thread.
    rejected: Option<Arc<rejected::SqliteRejected>>,
}

/// Readiness is `full` with less room than this left (or an eighth of a
/// smaller cap): a write of a few events needs a few new pages of the table
/// and of each index.
const READY_HEADROOM_BYTES: u64 = 64 * 1024;

/// The name of the database file in `--data-dir`.
pub const FILE_NAME: &str = "events.sqlite3";

fn open_error(path: &Path) -> impl Fn(rusqlite::Error) -> OpenError + '_ {
    move |source| OpenError::Database { path: path.to_path_buf(), source }
}

/// The store error for a failed SQLite call: the size cap or a full disk is
/// `Full`, a lock held too long `Overloaded`, anything else `Unavailable`.
/// The SQLite text stays in the cause, for the log only.
pub(crate) fn sqlite_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    let (kind, reason) = match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => (ErrorKind::Full, "the store is full"),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => (ErrorKind::Overloaded, "the store is busy"),
        _ => (ErrorKind::Unavailable, "the store failed"),
    };
    StoreError::caused(kind, reason, e)
}

impl SqliteStore {
    pub fn open(options: &Options) -> Result<SqliteStore, OpenError> {
        std::fs::create_dir_all(&options.dir)
            .map_err(|source| OpenError::DataDir { path: options.dir.clone(), source })?;
        // The lock first: nothing of the directory is touched while another
        // server owns it.
        let dir_lock = lock::DirLock::acquire(&options.dir)?;
        let path = options.dir.join(FILE_NAME);
        // Checked before SQLite opens it for writing: a file that is not
        // SQLite is never handed to it.
        let refused = |refusal| match refusal {
            schema::Refusal::NotAStore(why) => OpenError::NotAStore { path: path.clone(), why },
            schema::Refusal::Newer(found) => {
                OpenError::NewerSchema { path: path.clone(), found, known: schema::VERSION }
            }
        };
        schema::check_header(&path).map_err(refused)?;
        let conn = Connection::open(&path).map_err(open_error(&path))?;
        // Reading only: a refused file is left as it was.
        match schema::inspect(&conn) {
            Ok(Ok(_)) => {}
            Ok(Err(refusal)) => return Err(refused(refusal)),
            Err(e) if is_not_a_database(&e) => {
                return Err(refused(schema::Refusal::NotAStore(format!("corrupt or not an SQLite database: {e}"))));
            }
            Err(e) => return Err(open_error(&path)(e)),
        }
        schema::configure_writer(&conn, options.sync, options.max_bytes).map_err(open_error(&path))?;
        let cap_pages = schema::cap_pages(&conn, options.max_bytes).map_err(open_error(&path))?;
        let next: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0)).map_err(open_error(&path))?;
        tracing::info!(path = %path.display(), last_seq = next, sync = ?options.sync, "sqlite store opened");

        let mut readers = Vec::with_capacity(options.readers);
        for _ in 0..options.readers.max(1) {
            let r =
                Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                    .map_err(open_error(&path))?;
            schema::configure_reader(&r).map_err(open_error(&path))?;
            readers.push(r);
        }

        // After `configure_writer`, which migrated the file: the table exists.
        let rejected = match options.keep_rejected {
            Some(mut kept) => {
                kept.retention = options.retention;
                Some(Arc::new(rejected::SqliteRejected::open(&path, kept, options.max_bytes)?))
            }
            None => None,
        };
        let gauges = Arc::new(StoreGauges {
            rejected: rejected.as_ref().map(|r| super::RejectedLog::gauges(&**r)),
            commits: Some(super::commits::CommitStats::default()),
            ..StoreGauges::new(options.retention, options.max_bytes, options.when_full, options.dedupe_window)
        });
        let deleter = retention::Deleter::open(&conn, gauges.clone()).map_err(open_error(&path))?;
        let checkpointer = checkpointer::Checkpointer::start(&path)?;
        let (tx, rx) = mpsc::sync_channel(options.queue.max(1));
        let writer = std::thread::Builder::new()
            .name("inlet-sqlite-writer".into())
            .spawn(move || writer::serve(conn, rx, checkpointer, deleter))
            .map_err(|source| OpenError::Thread { what: "writer", source })?;
        Ok(SqliteStore {
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            readers: Arc::new(Mutex::new(readers)),
            path,
            max_bytes: options.max_bytes,
            cap_pages,
            refused_full: AtomicBool::new(false),
            free_at_refusal: AtomicU64::new(u64::MAX),
            _lock: dir_lock,
            gauges,
            live: Arc::default(),
            rejected,
        })
    }

    /// Bytes a write may still use: below the cap (in pages, free pages
    /// inside the file counted as room), or without a cap, what the file
    /// system has free for us. Reads a page-count from a pooled read
    /// connection or asks the file system: nothing is written.
    fn free_bytes(&self) -> Option<u64> {
        // Under `--when-full drop-oldest` the writer makes room under the
        // cap itself: only the file system can run out.
        let cap = self.cap_pages.filter(|_| self.gauges.when_full == WhenFull::Refuse);
        match cap {
            Some(cap) => {
                let conn = self.readers.lock().ok()?.pop()?;
                let counted = (|| -> rusqlite::Result<(u64, u64, u64)> {
                    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
                    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
                    let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
                    Ok((pages as u64, free as u64, size as u64))
                })();
                if let Ok(mut pool) = self.readers.lock() {
                    pool.push(conn);
                }
                let (pages, free, size) = counted.ok()?;
                Some(cap.saturating_sub(pages.saturating_sub(free)).saturating_mul(size))
            }
            None => {
                let dir = self.path.parent()?;
                let fs = rustix::fs::statvfs(dir).ok()?;
                Some(fs.f_bavail.saturating_mul(fs.f_frsize))
            }
        }
    }

    /// Whether the store has room for a write now (see `refused_full`).
    fn room(&self) -> Result<(), NotReady> {
        const FULL: NotReady = NotReady::full("the store is at its size cap (--max-store-bytes) or the disk is full");
        // Unknown (every read connection busy): not a reason to turn
        // traffic away.
        let Some(free) = self.free_bytes() else { return Ok(()) };
        let headroom = match self.max_bytes.filter(|_| self.gauges.when_full == WhenFull::Refuse) {
            Some(cap) => READY_HEADROOM_BYTES.min(cap / 8),
            None => READY_HEADROOM_BYTES,
        };
        if self.refused_full.load(Ordering::Acquire) {
            // Only more room than at the refusal (or, unknown then, at the
            // first probe after it) clears the refusal.
            let mark = match self.free_at_refusal.compare_exchange(u64::MAX, free, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => free,
                Err(then) => then,
            };
            if free <= mark {
                return Err(FULL);
            }
            self.refused_full.store(false, Ordering::Release);
        }
        if free < headroom {
            return Err(FULL);
        }
        Ok(())
    }

    fn submit(&self, events: &[Event], token: Option<&str>) -> Result<oneshot::Receiver<Outcome>, StoreError> {
        let rows = events
            .iter()
            .map(|e| {
                // The JSON comes from the body's parser or from `to_json`:
                // UTF-8 always; checked here so that the type says so.
                let json = Text::try_from(e.json_bytes())
                    .map_err(|e| StoreError::caused(ErrorKind::Unavailable, "an event is not UTF-8", e))?;
                Ok(Row { source: e.share(e.source()), id: e.share(e.id()), ty: e.share(e.ty()), json })
            })
            .collect::<Result<Vec<Row>, StoreError>>()?;
        // drop-oldest would delete most of the store for a request this
        // large, and maybe still not fit it: refused, nothing deleted.
        if let (WhenFull::DropOldest, Some(cap)) = (self.gauges.when_full, self.gauges.max_bytes) {
            let bytes: u64 = rows.iter().map(|r| r.json.len() as u64).sum();
            if bytes > cap / 2 {
                return Err(StoreError::plain(
                    ErrorKind::TooLarge,
                    "the request is larger than half the store's cap: send it in smaller requests",
                ));
            }
        }
        let (reply, answer) = oneshot::channel();
        let jobs =
            self.jobs.lock().map_err(|_| StoreError::plain(ErrorKind::Unavailable, "the writer queue is poisoned"))?;
        let Some(jobs) = jobs.as_ref() else {
            return Err(StoreError::plain(ErrorKind::Closing, "the store is closing"));
        };
        match jobs.try_send(Job { rows, token: token.map(Arc::from), reply }) {
            Ok(()) => Ok(answer),
            Err(mpsc::TrySendError::Full(_)) => {
                Err(StoreError::plain(ErrorKind::Overloaded, "the write queue is full"))
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                Err(StoreError::plain(ErrorKind::Unavailable, "the writer stopped"))
            }
        }
    }
}

/// Runs a query on a pooled read connection (opening one more if all are
/// busy), sending the page into `tx` as its rows are read. The connection
/// (and its read transaction) is held while the page is sent: for as long
/// as the client takes to read it, which the connection's write deadline
/// bounds.
fn read(readers: &Mutex<Vec<Connection>>, path: &Path, q: &Query, max_bytes: usize, tx: &PageSender) {
    let pooled = readers.lock().ok().and_then(|mut pool| pool.pop());
    let conn = match pooled {
        Some(c) => c,
        None => {
            let opened =
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                    .and_then(|c| schema::configure_reader(&c).map(|()| c));
            match opened {
                Ok(c) => c,
                Err(e) => {
                    tx.blocking_send(PageItem::Failed(sqlite_error(e)));
                    return;
                }
            }
        }
    };
    if let Err(e) = query(&conn, q, max_bytes, tx) {
        tx.blocking_send(PageItem::Failed(sqlite_error(e)));
    }
    if let Ok(mut pool) = readers.lock() {
        pool.push(conn);
    }
}

/// The largest `seq` stored, on a pooled reader (0: none).
fn last_seq(readers: &Mutex<Vec<Connection>>, path: &Path) -> Result<u64, StoreError> {
    let pooled = readers.lock().ok().and_then(|mut pool| pool.pop());
    let conn = match pooled {
        Some(c) => c,
        None => Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .and_then(|c| schema::configure_reader(&c).map(|()| c))
            .map_err(sqlite_error)?,
    };
    let last = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get::<_, i64>(0));
    if let Ok(mut pool) = readers.lock() {
        pool.push(conn);
    }
    Ok(u64::try_from(last.map_err(sqlite_error)?).unwrap_or(0))
}

/// Steps through the matching rows, handing each slice on as it fills:
/// at most a slice or two of the page is in memory at once. Stops early if
/// the reader is gone.
fn query(conn: &Connection, q: &Query, max_bytes: usize, tx: &PageSender) -> rusqlite::Result<()> {
    // One statement per combination of filters (at most 8, each cached),
    // with only the filters asked for, so that each uses its index (a
    // `?3 IS NULL OR type = ?3` would not).
    let after = i64::try_from(q.after).unwrap_or(i64::MAX);
    // One more than asked tells whether a next page exists.
    let limit = q.limit as i64 + 1;
    let mut sql = String::from("SELECT seq, received_at, event, token FROM events WHERE seq > ?1");
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&after];
    for (column, value) in [("type", &q.ty), ("source", &q.source), ("token", &q.token)] {
        if let Some(value) = value {
            params.push(value);
            sql.push_str(&format!(" AND {column} = ?{}", params.len()));
        }
    }
    params.push(&limit);
    sql.push_str(&format!(" ORDER BY seq LIMIT ?{}", params.len()));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut pager = Pager::new(q.limit, max_bytes);
    // Rows are stepped one at a time: nothing is read past the row that
    // ends the page.
    let mut rows = stmt.query(params.as_slice())?;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let received_at: String = r.get(1)?;
        let json: String = r.get(2)?;
        let token: Option<String> = r.get(3)?;
        let event = StoredEvent { seq: seq as u64, received_at, json: json.into(), token: token.map(Arc::from) };
        if !pager.offer(event) {
            break;
        }
        if let Some(slice) = pager.ready_slice() {
            if !tx.blocking_send(PageItem::Events(slice)) {
                return Ok(());
            }
        }
    }
    if let Some(slice) = pager.last_slice() {
        if !tx.blocking_send(PageItem::Events(slice)) {
            return Ok(());
        }
    }
    tx.blocking_send(pager.end());
    Ok(())
}

impl Store for SqliteStore {
    fn append<'a>(
        &'a self,
        events: &'a [Event],
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, StoreError>> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(Appended { duplicate: SmallVec::new() });
            }
            let answer = self.submit(events, token)?;
            match answer.await {
                Ok(Ok(duplicate)) => {
                    if self.refused_full.load(Ordering::Relaxed) {
                        self.refused_full.store(false, Ordering::Release);
                    }
                    // Committed by the writer: subscribers may read it now.
                    let appended = Appended { duplicate: duplicate.into() };
                    self.live.committed(appended.accepted());
                    Ok(appended)
                }
                Ok(Err(e)) => {
                    // Under drop-oldest a refusal as full is one request too
                    // large for the cap (the disk is watched by `room`).
                    if e.kind() == ErrorKind::Full && self.gauges.when_full == WhenFull::Refuse {
                        // The room now is the mark readiness compares with
                        // (a page count on a read connection: quick, and on
                        // this path only); unknown: the next probe's.
                        let mark = self.free_bytes().unwrap_or(u64::MAX);
                        self.free_at_refusal.store(mark, Ordering::Release);
                        self.refused_full.store(true, Ordering::Release);
                    }
                    Err(e)
                }
                Err(_) => Err(StoreError::plain(ErrorKind::Unavailable, "the writer stopped")),
            }
        })
    }

    fn last_seq(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        Box::pin(async move {
            let read = tokio::task::spawn_blocking(move || last_seq(&readers, &path));
            match read.await {
                Ok(result) => result,
                Err(_) => Err(StoreError::plain(ErrorKind::Unavailable, "the read stopped")),
            }
        })
    }

    fn query(&self, q: Query, max_bytes: usize) -> BoxFuture<'_, PageStream> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let (tx, stream) = PageSender::channel();
        // A read that panics drops `tx`: the stream reports it as failed.
        tokio::task::spawn_blocking(move || read(&readers, &path, &q, max_bytes, &tx));
        Box::pin(std::future::ready(stream))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            // Dropping the sender lets the writer finish the queue and stop.
            if let Ok(mut jobs) = self.jobs.lock() {
                jobs.take();
            }
            if let Some(rejected) = self.rejected.clone() {
                let _ = tokio::task::spawn_blocking(move || rejected.close()).await;
            }
            let handle = self.writer.lock().ok().and_then(|mut w| w.take());
            if let Some(handle) = handle {
                tokio::task::spawn_blocking(move || handle.join())
                    .await
                    .map_err(|e| StoreError::caused(ErrorKind::Unavailable, "the writer did not stop", e))?
                    .map_err(|_| StoreError::plain(ErrorKind::Unavailable, "the writer thread panicked"))?;
            }
            Ok(())
        })
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn live(&self) -> &Arc<super::Live> {
        &self.live
    }

    fn gauges(&self) -> Option<Arc<StoreGauges>> {
        Some(self.gauges.clone())
    }

    fn rejected(&self) -> Option<Arc<dyn super::RejectedLog>> {
        self.rejected.clone().map(|r| r as Arc<dyn super::RejectedLog>)
    }
    /// Ready when the writer thread runs, the store is not closing, and
    /// there is room for a write (see [`SqliteStore::room`]).
    fn readiness(&self) -> BoxFuture<'_, Result<(), NotReady>> {
        let state = (|| {
            match self.jobs.lock() {
                Ok(jobs) if jobs.is_none() => return Err(NotReady::closing("the store is closing")),
                Ok(_) => {}
                Err(_) => return Err(NotReady::unavailable("the writer failed")),
            }
            match self.writer.lock() {
                Ok(w) if w.as_ref().is_some_and(|h| !h.is_finished()) => {}
                _ => return Err(NotReady::unavailable("the writer stopped")),
            }
            self.room()
        })();
        Box::pin(std::future::ready(state))
    }
}

/// Whether SQLite found the file is not a database, or corrupt.
fn is_not_a_database(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TestDir;
    use std::sync::atomic::Ordering::Relaxed;

    fn open(dir: &TestDir) -> SqliteStore {
        let options = Options { sync: Sync::Normal, queue: 16, readers: 1, ..Options::new(dir.path().to_path_buf()) };
        SqliteStore::open(&options).unwrap()
    }

    fn open_capped(dir: &TestDir, cap: u64, when_full: WhenFull) -> SqliteStore {
        let options = Options {
            sync: Sync::Normal,
            queue: 16,
            readers: 1,
            max_bytes: Some(cap),
            when_full,
            ..Options::new(dir.path().to_path_buf())
        };
        SqliteStore::open(&options).unwrap()
    }

    /// An event whose JSON is exactly `size` bytes.
    fn sized(id: &str, size: usize) -> Event {
        let mut e = Event::new(id, "/s", "t");
        e.set_subject(Some(String::new().into()));
        let base = e.to_json().len();
        e.set_subject(Some("x".repeat(size - base).into()));
        assert_eq!(e.to_json().len(), size);
        e
    }

    async fn stored_seqs(store: &SqliteStore) -> Vec<u64> {
        let page = store.query(Query { limit: 100_000, ..Query::default() }, usize::MAX).await.collect().await.unwrap();
        page.events.iter().map(|e| e.seq).collect()
    }

    #[tokio::test]
    async fn drop_oldest_keeps_accepting_under_the_cap_and_keeps_the_newest() {
        let dir = TestDir::new();
        let store = open_capped(&dir, 64 * 4096, WhenFull::DropOldest);
        for i in 0..600 {
            let appended = store.append(&[sized(&format!("e{i}"), 1500)], None).await.unwrap();
            assert_eq!(appended.accepted(), 1, "event {i}");
        }
        let seqs = stored_seqs(&store).await;
        let g = store.gauges().unwrap();
        assert!(seqs.len() < 600 && seqs.len() > 20, "{} kept", seqs.len());
        // The newest, without gaps, up to the last.
        assert_eq!(seqs, ((600 - seqs.len() as u64 + 1)..=600).collect::<Vec<_>>());
        assert_eq!(g.deleted_cap.load(Relaxed), 600 - seqs.len() as u64);
        assert_eq!(g.events.load(Relaxed), seqs.len() as u64);
        assert!(g.bytes.load(Relaxed) <= 64 * 4096, "{}", g.bytes.load(Relaxed));
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn drop_oldest_refuses_a_request_over_half_the_cap_and_deletes_nothing_for_it() {
        let dir = TestDir::new();
        let cap = 64 * 4096;
        let store = open_capped(&dir, cap, WhenFull::DropOldest);
        for i in 0..10 {
            store.append(&[sized(&format!("e{i}"), 1000)], None).await.unwrap();
        }
        let past = store.append(&[sized("past", cap as usize / 2 + 1)], None).await.unwrap_err();
        assert_eq!(
            (past.kind(), past.reason()),
            (ErrorKind::TooLarge, "the request is larger than half the store's cap: send it in smaller requests")
        );
        assert_eq!(stored_seqs(&store).await, (1..=10).collect::<Vec<_>>(), "nothing deleted for it");
        let at = store.append(&[sized("at", cap as usize / 2)], None).await.unwrap();
        assert_eq!(at.accepted(), 1, "half the cap exactly is taken");
        assert_eq!(stored_seqs(&store).await.last(), Some(&11));
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn gauges_follow_appends_and_are_read_again_at_open() {
        let dir = TestDir::new();
        let store = open(&dir);
        let g = store.gauges().unwrap();
        assert_eq!((g.events.load(Relaxed), g.oldest_ms.load(Relaxed)), (0, 0));
        let before = crate::store::now_ms();
        let events: Vec<Event> = (0..3).map(|i| Event::new(format!("{i}"), "/s", "t")).collect();
        assert_eq!(store.append(&events, None).await.unwrap().accepted(), 3);
        let again = store.append(&[events[0].clone(), Event::new("3", "/s", "t")], None).await.unwrap();
        assert_eq!((again.accepted(), again.duplicates()), (1, 1));
        assert_eq!(g.events.load(Relaxed), 4);
        let oldest = g.oldest_ms.load(Relaxed);
        assert!(oldest >= before && oldest <= crate::store::now_ms(), "{oldest}");
        assert_eq!((g.deleted_retention.load(Relaxed), g.deleted_cap.load(Relaxed)), (0, 0));
        assert_eq!((g.retention, g.max_bytes, g.when_full), (None, None, WhenFull::Refuse));
        assert_eq!(g.dedupe_window, DEFAULT_DEDUPE_WINDOW);
        store.close().await.unwrap();
        drop(store);
        let store = open(&dir);
        let g = store.gauges().unwrap();
        assert_eq!(g.events.load(Relaxed), 4, "counted at open");
        // Read back from received_at (taken when the group began), where the
        // running gauge took the clock after the commit: the same instant
        // within one commit's time, not always the same second.
        let read_back = g.oldest_ms.load(Relaxed);
        assert!(read_back <= oldest && oldest - read_back < 1000, "{read_back} against {oldest}");
        let conn = Connection::open(dir.path().join("events.sqlite3")).unwrap();
        let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0)).unwrap();
        assert_eq!(g.bytes.load(Relaxed), pages as u64 * 4096);
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn refuse_mode_still_refuses_when_full() {
        let dir = TestDir::new();
        let store = open_capped(&dir, 64 * 4096, WhenFull::Refuse);
        let mut refused = None;
        for i in 0..600 {
            if let Err(e) = store.append(&[sized(&format!("e{i}"), 1500)], None).await {
                refused = Some((i, e.kind()));
                break;
            }
        }
        let (at, kind) = refused.expect("the capped store filled up");
        assert_eq!(kind, ErrorKind::Full);
        assert_eq!(stored_seqs(&store).await.len(), at, "nothing deleted");
        assert_eq!(store.gauges().unwrap().deleted_cap.load(Relaxed), 0);
        store.close().await.unwrap();
    }

    async fn stored(store: &SqliteStore) -> Vec<String> {
        let page = store.query(Query { limit: 100, ..Query::default() }, usize::MAX).await.collect().await.unwrap();
        page.events.iter().map(|e| String::from_utf8(e.json.to_vec()).unwrap()).collect()
    }

    #[tokio::test]
    async fn an_event_that_is_not_utf8_is_refused_not_stored_empty() {
        let dir = TestDir::new();
        let store = open(&dir);
        let good = Event::new("good", "/s", "t");
        let mut bad = Event::new("bad", "/s", "t");
        bad.set_raw(Some(bytes::Bytes::from_static(b"{\"id\":\"bad\",\"data\":\"\xff\"}")));
        let err = store.append(&[good.clone(), bad], None).await.unwrap_err();
        assert_eq!((err.kind(), err.reason()), (ErrorKind::Unavailable, "an event is not UTF-8"));
        assert_eq!(stored(&store).await, Vec::<String>::new(), "nothing of the request is stored");
        assert_eq!(store.append(std::slice::from_ref(&good), None).await.unwrap().accepted(), 1);
        assert_eq!(stored(&store).await, [String::from_utf8(good.to_json()).unwrap()]);
        store.close().await.unwrap();
    }

    /// A database made before the `token` column existed is migrated at
    /// open: its events read back with no token, new ones carry theirs,
    /// and the filter works on both.
    #[tokio::test]
    async fn an_old_database_gets_the_token_column() {
        let dir = TestDir::new();
        {
            let old = Connection::open(dir.path().join("events.sqlite3")).unwrap();
            old.execute_batch(
                "CREATE TABLE events (seq INTEGER PRIMARY KEY, source TEXT NOT NULL, id TEXT NOT NULL,
                     type TEXT NOT NULL, received_at TEXT NOT NULL, event TEXT NOT NULL, UNIQUE (source, id));
                 INSERT INTO events (source, id, type, received_at, event)
                     VALUES ('/s', 'old', 't', '2026-01-01T00:00:00Z', '{\"id\":\"old\"}');",
            )
            .unwrap();
        }
        let store = open(&dir);
        assert_eq!(store.append(&[Event::new("new", "/s", "t")], Some("shop")).await.unwrap().accepted(), 1);
        let page = store.query(Query { limit: 10, ..Query::default() }, usize::MAX).await.collect().await.unwrap();
        let tokens: Vec<(u64, Option<&str>)> = page.events.iter().map(|e| (e.seq, e.token.as_deref())).collect();
        assert_eq!(tokens, [(1, None), (2, Some("shop"))]);
        let shop = store
            .query(Query { limit: 10, token: Some("shop".into()), ..Query::default() }, usize::MAX)
            .await
            .collect()
            .await
            .unwrap();
        assert_eq!(shop.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
        let both =
            Query { limit: 10, ty: Some("t".into()), source: Some("/s".into()), token: Some("shop".into()), after: 1 };
        assert_eq!(store.query(both, usize::MAX).await.collect().await.unwrap().events.len(), 1);
        store.close().await.unwrap();
        drop(store);
        // Opening again finds the column and changes nothing.
        let store = open(&dir);
        let page = store.query(Query { limit: 10, ..Query::default() }, usize::MAX).await.collect().await.unwrap();
        assert_eq!(page.events.len(), 2);
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn close_stops_the_checkpointer() {
        let dir = TestDir::new();
        let store = open(&dir);
        assert_eq!(store.append(&[Event::new("1", "/s", "t")], None).await.unwrap().accepted(), 1);
        let wal = dir.path().join("events.sqlite3-wal");
        assert!(wal.exists());
        store.close().await.unwrap();
        // The last connection to close removes the WAL file: the writer's
        // and the checkpointer's are closed by `close`, the reader's here.
        drop(store);
        assert!(!wal.exists(), "a connection is still open after close");
    }

    #[tokio::test]
    async fn pages_are_cut_at_their_byte_bound_and_streamed_in_slices() {
        let dir = TestDir::new();
        let store = open(&dir);
        let events: Vec<Event> = (0..5).map(|i| Event::new(format!("{i}"), "/s", "t")).collect();
        let size = events[0].to_json().len();
        assert_eq!(store.append(&events, None).await.unwrap().accepted(), 5);
        let q = Query { limit: 100, ..Query::default() };
        let page = store.query(q.clone(), 2 * size).await.collect().await.unwrap();
        assert_eq!(page.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(page.next_after, Some(2));
        let page = store.query(q.clone(), 2 * size - 1).await.collect().await.unwrap();
        assert_eq!((page.events.len(), page.next_after), (1, Some(1)));
        let page = store.query(Query { after: 4, ..q.clone() }, 1).await.collect().await.unwrap();
        assert_eq!((page.events.len(), page.next_after), (1, None));
        // Each event in its own slice once the slices are full: 64 KiB events.
        let mut big = Event::new("big", "/s", "t");
        big.set_subject(Some("x".repeat(64 * 1024).into()));
        let mut big2 = big.clone();
        big2.set_id("big2");
        assert_eq!(store.append(&[big, big2], None).await.unwrap().accepted(), 2);
        let mut stream = store.query(Query { after: 5, ..q }, usize::MAX).await;
        for seq in [6, 7] {
            match stream.recv().await {
                PageItem::Events(slice) => assert_eq!(slice.iter().map(|e| e.seq).collect::<Vec<_>>(), [seq]),
                other => panic!("expected a slice, got {other:?}"),
            }
        }
        assert!(matches!(stream.recv().await, PageItem::End { next_after: None }));
        store.close().await.unwrap();
    }

    fn options(dir: &TestDir, max_bytes: Option<u64>) -> Options {
        Options { sync: Sync::Normal, queue: 16, max_bytes, readers: 1, ..Options::new(dir.path().to_path_buf()) }
    }

    /// Opens `dir` expecting a refusal; the file must be left byte for byte.
    fn refused(dir: &TestDir) -> OpenError {
        let file = dir.path().join(FILE_NAME);
        let before = std::fs::read(&file).unwrap();
        let err = match SqliteStore::open(&options(dir, None)) {
            Err(e) => e,
            Ok(_) => panic!("opened a file it should refuse"),
        };
        assert!(std::fs::read(&file).unwrap() == before, "the refused file was changed");
        assert!(!dir.path().join(format!("{FILE_NAME}-wal")).exists(), "a WAL was made beside it");
        err
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused_untouched() {
        let dir = TestDir::new();
        std::fs::write(dir.path().join(FILE_NAME), b"this is not a database, it is a note\n".repeat(200)).unwrap();
        let err = refused(&dir);
        assert!(matches!(&err, OpenError::NotAStore { why, .. } if why == "not an SQLite database"), "{err}");
        assert!(err.to_string().contains("is not an inlet event store"), "{err}");
    }

    #[test]
    fn a_corrupt_database_is_refused_untouched() {
        let dir = TestDir::new();
        {
            let c = Connection::open(dir.path().join(FILE_NAME)).unwrap();
            c.execute_batch("CREATE TABLE events (seq INTEGER PRIMARY KEY, x TEXT);").unwrap();
        }
        // The header stays; the schema page (the rest of page 1) is garbage.
        let mut bytes = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        for b in &mut bytes[100..] {
            *b = 0xA5;
        }
        std::fs::write(dir.path().join(FILE_NAME), &bytes).unwrap();
        let err = refused(&dir);
        assert!(matches!(&err, OpenError::NotAStore { why, .. } if why.starts_with("corrupt")), "{err}");
    }

    #[test]
    fn another_programs_database_is_refused_untouched() {
        let dir = TestDir::new();
        {
            let c = Connection::open(dir.path().join(FILE_NAME)).unwrap();
            c.execute_batch("CREATE TABLE users (name TEXT); CREATE TABLE orders (n INTEGER);").unwrap();
        }
        let err = refused(&dir);
        assert!(
            matches!(&err, OpenError::NotAStore { why, .. } if why == "it has no `events` table; its tables: users, orders"),
            "{err}"
        );
        // Its own `events` table, of another shape.
        let dir = TestDir::new();
        {
            let c = Connection::open(dir.path().join(FILE_NAME)).unwrap();
            c.execute_batch("CREATE TABLE events (seq INTEGER PRIMARY KEY, what TEXT);").unwrap();
        }
        let err = refused(&dir);
        assert!(matches!(&err, OpenError::NotAStore { why, .. } if why.contains("no `source` column")), "{err}");
        // Marked as another program's.
        let dir = TestDir::new();
        {
            let c = Connection::open(dir.path().join(FILE_NAME)).unwrap();
            c.execute_batch("PRAGMA application_id = 1234; CREATE TABLE t (x);").unwrap();
        }
        let err = refused(&dir);
        assert!(matches!(&err, OpenError::NotAStore { why, .. } if why.contains("0x4d2")), "{err}");
    }

    #[tokio::test]
    async fn a_newer_schema_version_is_refused_untouched() {
        let dir = TestDir::new();
        {
            let store = SqliteStore::open(&options(&dir, None)).unwrap();
            store.close().await.unwrap();
            drop(store);
            let c = Connection::open(dir.path().join(FILE_NAME)).unwrap();
            c.pragma_update(None, "user_version", schema::VERSION + 1).unwrap();
        }
        let err = refused(&dir);
        assert!(
            matches!(err, OpenError::NewerSchema { found, known: schema::VERSION, .. } if found == schema::VERSION + 1)
        );
        assert!(err.to_string().contains(&format!("schema version {}", schema::VERSION + 1)), "{err}");
    }

    #[test]
    fn a_new_store_gets_the_current_version_and_a_second_open_is_locked_out() {
        let dir = TestDir::new();
        let store = SqliteStore::open(&options(&dir, None)).unwrap();
        let c = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        let app: i64 = c.pragma_query_value(None, "application_id", |r| r.get(0)).unwrap();
        assert_eq!((version, app), (schema::VERSION, schema::APPLICATION_ID));
        match SqliteStore::open(&options(&dir, None)) {
            Err(OpenError::Locked { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            Err(e) => panic!("expected Locked, got {e}"),
            Ok(_) => panic!("a second store opened the same directory"),
        }
        drop(store);
        assert!(SqliteStore::open(&options(&dir, None)).is_ok(), "free again once the first is gone");
    }

    #[tokio::test]
    async fn a_version_2_store_gets_the_rejected_table_in_the_migration() {
        let dir = TestDir::new();
        {
            let c = Connection::open(dir.path().join(FILE_NAME)).unwrap();
            c.execute_batch(schema::SCHEMA).unwrap();
            c.execute_batch(schema::FORGOTTEN_KEYS).unwrap();
            // Deleted just now: a key older than the dedupe window would be
            // expired by the writer and race with the count below.
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
            c.execute("INSERT INTO forgotten_keys (source, id, deleted_at) VALUES ('/s', '42', ?1)", [now]).unwrap();
            c.pragma_update(None, "application_id", schema::APPLICATION_ID).unwrap();
            c.pragma_update(None, "user_version", 2).unwrap();
        }
        let kept = super::super::RejectedOptions { max_bytes: 1 << 20, retention: None };
        let store = SqliteStore::open(&Options { keep_rejected: Some(kept), ..options(&dir, None) }).unwrap();
        let c = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        let rejected: i64 = c.query_row("SELECT COUNT(*) FROM rejected", [], |r| r.get(0)).unwrap();
        let forgotten: i64 = c.query_row("SELECT COUNT(*) FROM forgotten_keys", [], |r| r.get(0)).unwrap();
        assert_eq!((version, rejected, forgotten), (3, 0, 1));
        let gauges = store.rejected().map(|r| r.gauges()).unwrap();
        assert_eq!(gauges.max_bytes, 1 << 20);
        store.close().await.unwrap();
    }

    /// Rejected rows count against `--max-store-bytes` too: past the cap
    /// they are dropped and counted (`cap`); the file stays within it and
    /// the stored events are kept.
    #[tokio::test]
    async fn rejected_rows_stay_within_the_store_cap() {
        let dir = TestDir::new();
        let cap = 256 * 1024;
        let kept = super::super::RejectedOptions { max_bytes: 64 << 20, retention: None };
        let store = SqliteStore::open(&Options { keep_rejected: Some(kept), ..options(&dir, Some(cap)) }).unwrap();
        let events: Vec<Event> = (0..10).map(|i| Event::new(format!("e{i}"), "/s", "t")).collect();
        store.append(&events, None).await.unwrap();
        let log = store.rejected().unwrap();
        let row = |i: usize| crate::store::rejected::Rejected::sample(format!("\"{i}{}\"", "x".repeat(4000)));
        // 1 MiB of rejected rows, four times the cap, in rounds the queue takes.
        for round in 0..8 {
            log.keep((0..32).map(|i| row(round * 32 + i)).collect());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let gauges = log.gauges();
        store.close().await.unwrap();
        assert_eq!(gauges.dropped_queue.load(std::sync::atomic::Ordering::Relaxed), 0);
        let dropped = gauges.dropped_cap.load(std::sync::atomic::Ordering::Relaxed);
        let rows = gauges.rows.load(std::sync::atomic::Ordering::Relaxed);
        assert!(dropped > 0, "nothing dropped at the cap ({rows} rows kept)");
        assert_eq!(rows + dropped, 256);
        let c = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        let kept: i64 = c.query_row("SELECT COUNT(*) FROM rejected", [], |r| r.get(0)).unwrap();
        assert_eq!(kept as u64, rows);
        let events: i64 = c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap();
        assert_eq!(events, 10);
        let pages: i64 = c.pragma_query_value(None, "page_count", |r| r.get(0)).unwrap();
        let page_size: i64 = c.pragma_query_value(None, "page_size", |r| r.get(0)).unwrap();
        let size = (pages * page_size) as u64;
        assert!(size <= cap, "{size} bytes past a cap of {cap}");
    }

    #[tokio::test]
    async fn readiness_is_full_after_a_refusal_at_the_cap_and_ready_below_it() {
        let dir = TestDir::new();
        let store = SqliteStore::open(&options(&dir, Some(256 * 1024))).unwrap();
        assert_eq!(store.readiness().await, Ok(()));
        let mut refusals = 0;
        for i in 0..2000 {
            let mut e = Event::new(format!("{i}"), "/s", "t");
            e.set_subject(Some("x".repeat(2000).into()));
            match store.append(&[e], None).await {
                Ok(_) => assert_eq!(refusals, 0, "accepted after a refusal"),
                Err(err) => {
                    assert_eq!(err.kind(), ErrorKind::Full);
                    refusals += 1;
                    break;
                }
            }
        }
        assert_eq!(refusals, 1, "the cap was reached");
        let not_ready = store.readiness().await.unwrap_err();
        assert_eq!(not_ready.status, "full");
        // Asked again: still full, nothing freed.
        assert_eq!(store.readiness().await.unwrap_err().status, "full");
        // Room freed inside the file (as retention or an operator's DELETE
        // does): ready again without a write first.
        {
            let other = Connection::open(dir.path().join(FILE_NAME)).unwrap();
            other.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            let deleted =
                other.execute("DELETE FROM events WHERE seq <= (SELECT MAX(seq) / 2 FROM events)", []).unwrap();
            assert!(deleted > 10, "{deleted}");
        }
        assert_eq!(store.readiness().await, Ok(()));
        let mut e = Event::new("after-room", "/s", "t");
        e.set_subject(Some("x".repeat(2000).into()));
        assert_eq!(store.append(&[e], None).await.unwrap().accepted(), 1);
        store.close().await.unwrap();
        assert_eq!(store.readiness().await.unwrap_err().status, "closing");
    }
}
