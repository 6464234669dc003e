//! The `rejected` table (schema version 3): refused events kept with
//! `--keep-rejected`, written by a thread of its own.
//!
//! Rows reach the thread through a bounded queue ([`QUEUE_ROWS`] rows and
//! [`QUEUE_BYTES`] bytes); a row
//! that does not fit is dropped and counted (`dropped_queue`), so a flood of
//! bad events never makes a request wait. The thread writes what queued up
//! in one short transaction on its own connection, with `synchronous =
//! NORMAL` (no fsync per commit: a refusal is answered before its row is
//! written, and the last rows may be lost on power loss), then drops the
//! oldest rows past `--max-rejected-bytes` and, about once a second, the
//! rows older than `--retention`. Its transactions take SQLite's one write
//! lock like the event writer's do (both begin `IMMEDIATE`, so each waits for
//! the other instead of failing): they are short (at most [`MAX_BATCH_ROWS`]
//! rows and [`MAX_BATCH_BYTES`] bytes) so that the event writer waits little
//! for them.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};

use super::{schema, sqlite_error};
use crate::store::rejected::{
    matches, KeptRejected, Rejected, RejectedGauges, RejectedLog, RejectedOptions, RejectedPage, RejectedPager,
};
use crate::store::{now_ms, ErrorKind, OpenError, Query, StoreError};

/// Rows waiting for the thread at most; more are dropped.
pub const QUEUE_ROWS: usize = 4096;
/// Bytes (as [`Rejected::size`] counts them) waiting for the thread at
/// most; a row past them is dropped (rows are up to 256 KiB each, so the
/// row bound alone would let 1 GiB wait).
pub const QUEUE_BYTES: u64 = 16 * 1024 * 1024;
/// Rows written in one transaction at most.
const MAX_BATCH_ROWS: usize = 512;
/// Bytes (as [`Rejected::size`] counts them) written in one transaction at
/// most; a single larger row is written alone.
const MAX_BATCH_BYTES: u64 = 1024 * 1024;
/// How often the thread looks for rows past the retention.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

pub struct SqliteRejected {
    queue: Mutex<Option<mpsc::SyncSender<Rejected>>>,
    /// The bytes of the rows in `queue` (added by `keep`, taken off by the
    /// thread as it receives them).
    queued: Arc<AtomicU64>,
    thread: Mutex<Option<JoinHandle<()>>>,
    reader: Arc<Mutex<Connection>>,
    gauges: Arc<RejectedGauges>,
}

impl SqliteRejected {
    /// Opens the log in the (already migrated) database at `path`. Its
    /// connection gets the store's cap (`--max-store-bytes`, `store_cap`)
    /// too: a row that does not fit is dropped and counted (`cap`), never
    /// grows the file past the cap nor makes room by deleting events.
    pub fn open(path: &Path, options: RejectedOptions, store_cap: Option<u64>) -> Result<SqliteRejected, OpenError> {
        let error = |source| OpenError::Database { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(error)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(error)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(error)?;
        if let Some(pages) = schema::cap_pages(&conn, store_cap).map_err(error)? {
            conn.pragma_update(None, "max_page_count", pages as i64).map_err(error)?;
        }
        let (rows, bytes): (i64, i64) = conn
            .query_row("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM rejected", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(error)?;
        let gauges = Arc::new(RejectedGauges { max_bytes: options.max_bytes, ..RejectedGauges::default() });
        gauges.rows.store(rows as u64, Relaxed);
        gauges.bytes.store(bytes as u64, Relaxed);
        let reader =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(error)?;
        schema::configure_reader(&reader).map_err(error)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_ROWS);
        let thread_gauges = gauges.clone();
        let queued = Arc::new(AtomicU64::new(0));
        let thread_queued = queued.clone();
        let thread = std::thread::Builder::new()
            .name("inlet-sqlite-rejected".into())
            .spawn(move || serve(conn, rx, &thread_queued, options, &thread_gauges))
            .map_err(|source| OpenError::Thread { what: "rejected log", source })?;
        Ok(SqliteRejected {
            queue: Mutex::new(Some(tx)),
            queued,
            thread: Mutex::new(Some(thread)),
            reader: Arc::new(Mutex::new(reader)),
            gauges,
        })
    }

    /// Stops the thread once it wrote what is queued (at shutdown).
    pub fn close(&self) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.take();
        }
        if let Some(handle) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = handle.join();
        }
    }
}

impl RejectedLog for SqliteRejected {
    fn keep(&self, rows: Vec<Rejected>) {
        let Ok(queue) = self.queue.lock() else { return };
        for row in rows {
            let size = row.size();
            // Room in bytes first (reserved), then in rows.
            let reserved =
                self.queued.fetch_update(Relaxed, Relaxed, |q| (q + size <= QUEUE_BYTES).then_some(q + size)).is_ok();
            let sent = reserved && queue.as_ref().is_some_and(|q| q.try_send(row).is_ok());
            if !sent {
                if reserved {
                    self.queued.fetch_sub(size, Relaxed);
                }
                self.gauges.dropped_queue.fetch_add(1, Relaxed);
            }
        }
    }

    fn page(&self, q: Query, max_bytes: usize) -> BoxFuture<'_, Result<RejectedPage, StoreError>> {
        let reader = self.reader.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let conn =
                    reader.lock().map_err(|_| StoreError::plain(ErrorKind::Unavailable, "the rejected log failed"))?;
                read(&conn, &q, max_bytes).map_err(sqlite_error)
            })
            .await
            .map_err(|e| StoreError::caused(ErrorKind::Unavailable, "the rejected log failed", e))?
        })
    }

    fn gauges(&self) -> Arc<RejectedGauges> {
        self.gauges.clone()
    }
}

/// Reads one page. The table is bounded by its cap, so the filters are
/// applied while stepping through the rows after `q.after` in order.
fn read(conn: &Connection, q: &Query, max_bytes: usize) -> rusqlite::Result<RejectedPage> {
    let after = i64::try_from(q.after).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT seq, received_ms, received_at, token, mode, content_type, reason, type, source, errors, event
         FROM rejected WHERE seq > ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query(params![after])?;
    let mut pager = RejectedPager::new(q.limit, max_bytes);
    while let Some(r) = rows.next()? {
        let row = Rejected {
            received_ms: r.get(1)?,
            received_at: r.get(2)?,
            token: r.get(3)?,
            mode: r.get(4)?,
            content_type: r.get(5)?,
            reason: r.get(6)?,
            ty: r.get(7)?,
            source: r.get(8)?,
            errors: r.get(9)?,
            event: r.get(10)?,
        };
        if !matches(q, &row) {
            continue;
        }
        let seq: i64 = r.get(0)?;
        if !pager.offer(KeptRejected { seq: seq as u64, row }) {
            break;
        }
    }
    Ok(pager.finish())
}

/// The thread: writes what queued up, keeps the table under its cap and
/// its retention, until the queue's sender is gone.
fn serve(
    mut conn: Connection,
    rx: mpsc::Receiver<Rejected>,
    queued: &AtomicU64,
    options: RejectedOptions,
    gauges: &RejectedGauges,
) {
    let mut last_expiry = Instant::now();
    loop {
        let first = match rx.recv_timeout(EXPIRE_EVERY) {
            Ok(row) => Some(row),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Some(first) = first {
            let mut batch = Vec::new();
            let mut next = Some(first);
            let mut bytes = 0u64;
            while let Some(row) = next.take() {
                let size = row.size();
                queued.fetch_sub(size, Relaxed);
                bytes += size;
                batch.push(row);
                if batch.len() >= MAX_BATCH_ROWS || bytes >= MAX_BATCH_BYTES {
                    break;
                }
                next = rx.try_recv().ok();
            }
            let n = batch.len() as u64;
            if let Err(e) = write(&mut conn, batch, options.max_bytes, gauges) {
                gauges.dropped_queue.fetch_add(n, Relaxed);
                tracing::warn!("keeping rejected events failed: {e}");
            }
        }
        if last_expiry.elapsed() >= EXPIRE_EVERY {
            last_expiry = Instant::now();
            if let Some(retention) = options.retention {
                if let Err(e) = expire(&conn, retention, gauges) {
                    tracing::warn!("deleting old rejected events failed: {e}");
                }
            }
        }
    }
}

/// Inserts `batch` and drops the oldest rows past `max_bytes`, in one
/// transaction.
fn write(conn: &mut Connection, batch: Vec<Rejected>, max_bytes: u64, gauges: &RejectedGauges) -> rusqlite::Result<()> {
    // IMMEDIATE: wait for the write lock (busy timeout) up front, never
    // fail on upgrading a read.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut added = (0u64, 0u64);
    let mut too_large = 0u64;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO rejected (received_ms, received_at, token, mode, content_type, reason, type, source, errors,
             event, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for row in &batch {
            let size = row.size();
            if size > max_bytes {
                too_large += 1;
                continue;
            }
            let inserted = insert.execute(params![
                row.received_ms,
                row.received_at,
                row.token,
                row.mode,
                row.content_type,
                row.reason,
                row.ty,
                row.source,
                row.errors,
                row.event,
                size as i64
            ]);
            match inserted {
                Ok(_) => {
                    added.0 += 1;
                    added.1 += size;
                }
                // The store's cap: this row is dropped, the ones before stay
                // (SQLite undid only the statement)...
                Err(e) if is_full(&e) && !tx.is_autocommit() => too_large += 1,
                // ...or SQLite rolled the whole transaction back: the batch
                // is dropped, counted against the cap.
                Err(e) if is_full(&e) => {
                    drop(insert);
                    drop(tx);
                    gauges.dropped_cap.fetch_add(batch.len() as u64, Relaxed);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }
    let (mut rows, mut bytes) = (gauges.rows.load(Relaxed) + added.0, gauges.bytes.load(Relaxed) + added.1);
    let mut dropped = 0u64;
    if bytes > max_bytes {
        // The oldest rows whose sizes bring the total under the cap.
        let mut oldest = tx.prepare_cached("SELECT seq, size FROM rejected ORDER BY seq")?;
        let mut scan = oldest.query([])?;
        let mut last = None;
        while bytes > max_bytes {
            let Some(r) = scan.next()? else { break };
            let seq: i64 = r.get(0)?;
            let size: i64 = r.get(1)?;
            bytes = bytes.saturating_sub(size as u64);
            rows = rows.saturating_sub(1);
            dropped += 1;
            last = Some(seq);
        }
        drop(scan);
        if let Some(last) = last {
            tx.execute("DELETE FROM rejected WHERE seq <= ?1", params![last])?;
        }
    }
    tx.commit()?;
    gauges.rows.store(rows, Relaxed);
    gauges.bytes.store(bytes, Relaxed);
    gauges.dropped_cap.fetch_add(dropped + too_large, Relaxed);
    Ok(())
}

/// Whether `e` is SQLite's `SQLITE_FULL` (the store's cap or a full disk).
fn is_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

/// Deletes the rows older than `retention`.
fn expire(conn: &Connection, retention: Duration, gauges: &RejectedGauges) -> rusqlite::Result<()> {
    let cutoff = now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    let (n, size): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM rejected WHERE received_ms < ?1",
        params![cutoff],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if n == 0 {
        return Ok(());
    }
    conn.execute("DELETE FROM rejected WHERE received_ms < ?1", params![cutoff])?;
    let _ = gauges.rows.fetch_update(Relaxed, Relaxed, |r| Some(r.saturating_sub(n as u64)));
    let _ = gauges.bytes.fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(size as u64)));
    gauges.deleted_retention.fetch_add(n as u64, Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(size: usize) -> Rejected {
        Rejected::sample(format!("\"{}\"", "x".repeat(size)))
    }

    /// A log whose thread never runs: what `keep` queues stays queued.
    fn stalled() -> (SqliteRejected, mpsc::Receiver<Rejected>) {
        let (tx, rx) = mpsc::sync_channel(QUEUE_ROWS);
        let log = SqliteRejected {
            queue: Mutex::new(Some(tx)),
            queued: Arc::new(AtomicU64::new(0)),
            thread: Mutex::new(None),
            reader: Arc::new(Mutex::new(Connection::open_in_memory().unwrap())),
            gauges: Arc::new(RejectedGauges::default()),
        };
        (log, rx)
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_and_drops_past_them() {
        let (log, rx) = stalled();
        let size = row(250 * 1024).size();
        let fit = (QUEUE_BYTES / size) as usize;
        // Up to the bound: every row queued.
        log.keep((0..fit).map(|_| row(250 * 1024)).collect());
        assert_eq!(log.gauges.dropped_queue.load(Relaxed), 0);
        assert_eq!(log.queued.load(Relaxed), fit as u64 * size);
        // Past it: dropped and counted, while the row bound is far off.
        log.keep((0..10).map(|_| row(250 * 1024)).collect());
        assert_eq!(log.gauges.dropped_queue.load(Relaxed), 10);
        assert_eq!(rx.try_iter().count(), fit);
    }
}
