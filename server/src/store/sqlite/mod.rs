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

mod checkpointer;
mod retention;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use futures::future::BoxFuture;
use inlet_shared::event::Event;
use rusqlite::{Connection, OpenFlags};
use smallvec::SmallVec;
use tokio::sync::oneshot;

use super::{
    Appended, ErrorKind, OpenError, PageItem, PageSender, PageStream, Pager, Query, Store, StoreError, StoreGauges,
    StoredEvent, WhenFull,
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
    gauges: Arc<StoreGauges>,
}

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
        let path = options.dir.join("events.sqlite3");
        let conn = Connection::open(&path).map_err(open_error(&path))?;
        schema::configure_writer(&conn, options.sync, options.max_bytes).map_err(open_error(&path))?;
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

        let gauges =
            Arc::new(StoreGauges::new(options.retention, options.max_bytes, options.when_full, options.dedupe_window));
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
            gauges,
        })
    }

    fn submit(&self, events: &[Event], token: Option<&str>) -> Result<oneshot::Receiver<Outcome>, StoreError> {
        let rows = events
            .iter()
            .map(|e| {
                // The JSON comes from the body's parser or from `to_json`:
                // UTF-8 always; checked here so that the type says so.
                let json = Text::try_from(e.json_bytes())
                    .map_err(|e| StoreError::caused(ErrorKind::Unavailable, "an event is not UTF-8", e))?;
                Ok(Row { source: e.source.clone(), id: e.id.clone(), ty: e.ty.clone(), json })
            })
            .collect::<Result<Vec<Row>, StoreError>>()?;
        // drop-oldest would delete most of the store for a request this
        // large, and maybe still not fit it: refused, nothing deleted.
        if let (WhenFull::DropOldest, Some(cap)) = (self.gauges.when_full, self.gauges.max_bytes) {
            let bytes: u64 = rows.iter().map(|r| r.json.len() as u64).sum();
            if bytes > cap / 2 {
                return Err(StoreError::plain(ErrorKind::Full, "the request is larger than half the store's cap"));
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
                Ok(Ok(duplicate)) => Ok(Appended { duplicate: duplicate.into() }),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::plain(ErrorKind::Unavailable, "the writer stopped")),
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

    fn gauges(&self) -> Option<Arc<StoreGauges>> {
        Some(self.gauges.clone())
    }
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
        e.subject = Some(String::new().into());
        let base = e.to_json().len();
        e.subject = Some("x".repeat(size - base).into());
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
        assert_eq!((past.kind(), past.reason()), (ErrorKind::Full, "the request is larger than half the store's cap"));
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
        // received_at keeps milliseconds and more: the same instant, read back.
        assert_eq!(g.oldest_ms.load(Relaxed) / 1000, oldest / 1000);
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
        bad.raw = Some(bytes::Bytes::from_static(b"{\"id\":\"bad\",\"data\":\"\xff\"}"));
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
        big.subject = Some("x".repeat(64 * 1024).into());
        let mut big2 = big.clone();
        big2.id = "big2".into();
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
}
