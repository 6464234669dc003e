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
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use futures::future::BoxFuture;
use inlet_shared::event::Event;
use rusqlite::{Connection, OpenFlags};
use smallvec::SmallVec;
use tokio::sync::oneshot;

use super::{
    Appended, ErrorKind, OpenError, PageItem, PageSender, PageStream, Pager, Query, Store, StoreError, StoredEvent,
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
}

pub struct SqliteStore {
    jobs: Mutex<Option<mpsc::SyncSender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    live: Arc<super::Live>,
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

        let checkpointer = checkpointer::Checkpointer::start(&path)?;
        let (tx, rx) = mpsc::sync_channel(options.queue.max(1));
        let writer = std::thread::Builder::new()
            .name("inlet-sqlite-writer".into())
            .spawn(move || writer::serve(conn, rx, checkpointer))
            .map_err(|source| OpenError::Thread { what: "writer", source })?;
        Ok(SqliteStore {
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            readers: Arc::new(Mutex::new(readers)),
            path,
            live: Arc::default(),
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
            .collect::<Result<_, StoreError>>()?;
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
                    // Committed by the writer: subscribers may read it now.
                    let appended = Appended { duplicate: duplicate.into() };
                    self.live.committed(appended.accepted());
                    Ok(appended)
                }
                Ok(Err(e)) => Err(e),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TestDir;

    fn open(dir: &TestDir) -> SqliteStore {
        let options =
            Options { dir: dir.path().to_path_buf(), sync: Sync::Normal, queue: 16, max_bytes: None, readers: 1 };
        SqliteStore::open(&options).unwrap()
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
