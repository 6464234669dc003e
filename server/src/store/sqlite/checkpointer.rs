//! Moves WAL pages into the database file off the commit path.
//!
//! The writer's connection has automatic checkpoints turned off; this thread
//! runs a passive checkpoint on its own connection whenever the WAL has grown,
//! so commits only append to the WAL. A passive checkpoint never blocks the
//! writer or the readers. Once the WAL is fully copied, SQLite restarts it
//! from the beginning at the next commit, which keeps it from growing
//! without bound.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// How often the checkpointer looks at the WAL.
const INTERVAL: Duration = Duration::from_millis(200);

pub fn start(path: &Path) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let spawned = std::thread::Builder::new().name("inlet-sqlite-ckpt".into()).spawn(move || loop {
        std::thread::sleep(INTERVAL);
        // (busy, pages in the WAL, pages checkpointed)
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        if let Err(e) = result {
            tracing::warn!("WAL checkpoint failed: {e}");
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the checkpointer thread: {e}");
    }
    Ok(())
}
