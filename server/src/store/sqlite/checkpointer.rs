//! Moves WAL pages into the database file off the commit path.
//!
//! The writer's connection has automatic checkpoints turned off; this thread
//! runs a passive checkpoint on its own connection every 200 ms, so commits
//! only append to the WAL. A passive checkpoint never blocks the writer or
//! the readers. Under sustained writes it never quite reaches the end of the
//! log, so the WAL would grow without bound: the thread publishes the WAL's
//! size, and once it passes `RESTART_PAGES` the writer itself, between two
//! groups, finishes the copy and starts the WAL over (`writer.rs`).

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

/// How often the checkpointer looks at the WAL.
const INTERVAL: Duration = Duration::from_millis(200);

/// WAL pages (4 KiB each) past which the writer makes the WAL start over.
pub const RESTART_PAGES: i64 = 16 * 1024;

/// Runs one checkpoint; returns (pages in the WAL, pages copied).
pub fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64)> {
    // Columns: busy, pages in the WAL, pages copied.
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
}

/// Starts the thread; `wal_pages` is where it publishes the WAL's size.
pub fn start(path: &Path, wal_pages: Arc<AtomicI64>) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let spawned = std::thread::Builder::new().name("inlet-sqlite-ckpt".into()).spawn(move || loop {
        std::thread::sleep(INTERVAL);
        match checkpoint(&conn, "PASSIVE") {
            Ok((log, _)) => wal_pages.store(log, Ordering::Relaxed),
            Err(e) => tracing::warn!("WAL checkpoint failed: {e}"),
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the checkpointer thread: {e}");
    }
    Ok(())
}
