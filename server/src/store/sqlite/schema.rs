//! The SQLite schema and connection settings.
//!
//! One table, `events`: `seq` is the rowid (ascending, resumed after a
//! restart), `(source, id)` is the unique dedupe key, and two indexes keep
//! `GET /events` filtered by type or source fast on a large log. The event
//! itself is stored as its CloudEvents JSON, exactly as it is served back;
//! `token` is the name of the token that wrote it (NULL when written
//! anonymously), with a partial index over the rows that have one, so that
//! anonymous writes do not pay for it. Users can open the file with the
//! `sqlite3` shell.
//!
//! A database made before `token` existed gets the column at open: one
//! `ALTER TABLE events ADD COLUMN token TEXT` in its own transaction (SQLite
//! adds a nullable column without rewriting the table, so this is quick on
//! any size; the events already stored read back with `token` NULL).

use rusqlite::Connection;

use super::Sync;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,
    received_at TEXT NOT NULL,
    event       TEXT NOT NULL,
    token       TEXT,
    UNIQUE (source, id)
);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, seq);
CREATE INDEX IF NOT EXISTS events_by_source ON events (source, seq);
";

/// The keys of deleted events, remembered for `--dedupe-window`
/// (`retention.rs`): a 64-bit hash of (source, id) and when its event was
/// deleted (milliseconds since the epoch). Created at open, also in an
/// existing database (to be folded into the versioned migrations).
pub const FORGOTTEN_KEYS: &str = "
CREATE TABLE IF NOT EXISTS forgotten_keys (
    key        INTEGER PRIMARY KEY,
    deleted_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS forgotten_keys_by_time ON forgotten_keys (deleted_at);
";

/// Made after [`add_token_column`], which an older database needs first.
const TOKEN_INDEX: &str = "CREATE INDEX IF NOT EXISTS events_by_token ON events (token, seq) WHERE token IS NOT NULL;";

/// Adds the `token` column to a database made before it existed; a no-op
/// when the column is there. In one transaction, so that a crash leaves the
/// table as it was or migrated, never half.
pub fn add_token_column(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let migrated = (|| {
        let has: bool =
            conn.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('events') WHERE name = 'token'", [], |r| {
                r.get(0)
            })?;
        if !has {
            conn.execute_batch("ALTER TABLE events ADD COLUMN token TEXT")?;
            tracing::info!("sqlite store: added the `token` column to the events table");
        }
        conn.execute_batch(TOKEN_INDEX)
    })();
    match migrated {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Settings of the one write connection.
pub fn configure_writer(conn: &Connection, sync: Sync, max_bytes: Option<u64>) -> rusqlite::Result<()> {
    // Free pages can be given back to the file system after deletions
    // (`PRAGMA incremental_vacuum`). SQLite takes this only before the
    // first table exists: a database made without it keeps `none` (its
    // free pages are reused, not given back; see docs/storage.md).
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    // WAL: readers never wait for the writer, and a commit is one append
    // (plus one fsync with synchronous=FULL) to the log.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            Sync::Full => "FULL",
            Sync::Normal => "NORMAL",
        },
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Index pages stay in memory (64 MiB) instead of being re-read.
    conn.pragma_update(None, "cache_size", -65536)?;
    // The writer never checkpoints: the checkpointer thread does, so that
    // copying WAL pages into the database is not on the commit path.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // When the WAL starts over, its file is cut back to this size.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.execute_batch(SCHEMA)?;
    add_token_column(conn)?;
    conn.execute_batch(FORGOTTEN_KEYS)?;
    if let Some(bytes) = max_bytes {
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let pages = (bytes / page_size.max(512) as u64).max(1);
        conn.pragma_update(None, "max_page_count", pages as i64)?;
    }
    Ok(())
}

/// Settings of the read connections.
pub fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(())
}
