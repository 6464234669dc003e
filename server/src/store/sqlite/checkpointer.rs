//! Moves WAL pages into the database file off the commit path.
//!
//! The writer's connection has automatic checkpoints turned off; this thread
//! runs a passive checkpoint on its own connection every 200 ms, so commits
//! only append to the WAL. A passive checkpoint never blocks the writer or
//! the readers. Under sustained writes it never quite reaches the end of the
//! log, so the WAL would grow without bound: the thread publishes the WAL's
//! size, and once it passes `RESTART_PAGES` the writer itself, between two
//! groups, finishes the copy and starts the WAL over (`writer.rs`).
//!
//! The thread lives as long as its [`Checkpointer`] guard: dropping the
//! guard stops the thread and waits for it, so that the writer's final
//! `TRUNCATE` checkpoint at close runs alone.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::store::OpenError;

/// How often the checkpointer looks at the WAL.
const INTERVAL: Duration = Duration::from_millis(200);

/// WAL pages (4 KiB each) past which the writer makes the WAL start over.
pub const RESTART_PAGES: i64 = 16 * 1024;

/// Runs one checkpoint; returns (pages in the WAL, pages copied).
pub fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64)> {
    // Columns: busy, pages in the WAL, pages copied.
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
}

/// The running checkpointer thread; dropping it stops the thread.
pub struct Checkpointer {
    /// Dropped to tell the thread to stop (it waits on the other end).
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    wal_pages: Arc<AtomicI64>,
}

impl Checkpointer {
    /// Opens the thread's connection and starts it. A failure to do either
    /// is an error: the store would otherwise run with a WAL that is only
    /// ever copied back by the writer's restarts.
    pub fn start(path: &Path) -> Result<Checkpointer, OpenError> {
        let database = |source| OpenError::Database { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(database)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(database)?;
        // One checkpoint now: the connection is known to work (and holds
        // the WAL open) before the store takes its first write.
        let (log, _) = checkpoint(&conn, "PASSIVE").map_err(database)?;
        let wal_pages = Arc::new(AtomicI64::new(log));
        let published = wal_pages.clone();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("inlet-sqlite-ckpt".into())
            .spawn(move || {
                // Wakes every INTERVAL; ends when the guard's sender is gone.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    match checkpoint(&conn, "PASSIVE") {
                        Ok((log, _)) => published.store(log, Ordering::Relaxed),
                        Err(e) => tracing::warn!("WAL checkpoint failed: {e}"),
                    }
                }
            })
            .map_err(|source| OpenError::Thread { what: "checkpointer", source })?;
        Ok(Checkpointer { stop: Some(stop), thread: Some(thread), wal_pages })
    }

    /// Where the thread publishes the WAL's size, in pages.
    pub fn wal_pages(&self) -> Arc<AtomicI64> {
        self.wal_pages.clone()
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the checkpointer thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_guard_stops_the_thread() {
        let dir = crate::store::TestDir::new();
        let path = dir.path().join("db.sqlite3");
        let writer = Connection::open(&path).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
        let guard = Checkpointer::start(&path).unwrap();
        let wal_pages = guard.wal_pages();
        // The thread holds its own handle to the counter while it runs.
        assert_eq!(Arc::strong_count(&wal_pages), 3);
        // It checkpointed once already: the WAL's size is published.
        assert!(wal_pages.load(Ordering::Relaxed) > 0);
        drop(guard);
        // The thread ended (its handle is gone) by the time drop returned.
        assert_eq!(Arc::strong_count(&wal_pages), 1);
        // And its connection is closed: the writer's is the last one, so
        // closing it checkpoints and removes the WAL file.
        let wal = dir.path().join("db.sqlite3-wal");
        assert!(wal.exists());
        writer.close().unwrap();
        assert!(!wal.exists(), "the checkpointer's connection is still open");
    }
}
