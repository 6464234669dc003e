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
//! Versions: `PRAGMA user_version` says which schema a file has and
//! `PRAGMA application_id` that it is inlet's. At open the file is first
//! read without writing ([`check_header`], [`inspect`]): a file that is not
//! SQLite, is corrupt, is another program's, or has a newer version is
//! refused and left as it was; an older store is migrated in one
//! transaction ([`migrate`]); a new file gets the current version. A store
//! made before `token` existed gets the column then (its events read back
//! with `token` NULL).

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
/// (`retention.rs`): the exact (source, id) (a hash could be made to
/// collide, answering a victim's new event `duplicate`) and when its event
/// was deleted (milliseconds since the epoch). Added by version 2.
pub const FORGOTTEN_KEYS: &str = "
CREATE TABLE IF NOT EXISTS forgotten_keys (
    source     TEXT NOT NULL,
    id         TEXT NOT NULL,
    deleted_at INTEGER NOT NULL,
    PRIMARY KEY (source, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS forgotten_keys_by_time ON forgotten_keys (deleted_at);
";

/// Refused events kept with `--keep-rejected` (`rejected.rs`), with a
/// sequence of their own (AUTOINCREMENT: a number is never used twice, even
/// after every row was deleted, so `after` stays valid). `size` is what the
/// row counts against `--max-rejected-bytes`. Added by version 3.
pub const REJECTED: &str = "
CREATE TABLE IF NOT EXISTS rejected (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms  INTEGER NOT NULL,
    received_at  TEXT NOT NULL,
    token        TEXT,
    mode         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    reason       TEXT NOT NULL,
    type         TEXT,
    source       TEXT,
    errors       TEXT NOT NULL,
    event        TEXT NOT NULL,
    size         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rejected_by_time ON rejected (received_ms);
";

/// Made after the `token` column, which an older database gets first.
const TOKEN_INDEX: &str = "CREATE INDEX IF NOT EXISTS events_by_token ON events (token, seq) WHERE token IS NOT NULL;";

/// The schema version this binary writes (`PRAGMA user_version`). 0: a
/// store made before versions existed (with or without `token`); 1: the
/// `events` table with `token` and its indexes; 2: and `forgotten_keys`
/// (the dedupe window after deletions); 3: and `rejected` (`--keep-rejected`).
pub const VERSION: i64 = 3;

/// `PRAGMA application_id` of an inlet store: "inlt". A file with another
/// non-zero id belongs to another program. Stores made before it was set
/// have 0.
pub const APPLICATION_ID: i64 = 0x696e_6c74;

/// The columns an inlet store's `events` table has in every version.
const REQUIRED_COLUMNS: [&str; 6] = ["seq", "source", "id", "type", "received_at", "event"];

/// What a database file holds, found by reading only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No tables: a new (or empty) file; it gets the current schema.
    Empty,
    /// An inlet store of this version (migrated if older than [`VERSION`]).
    Store { version: i64, application_id: i64, has_token: bool },
}

/// Why a file is refused at open. The file is left as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not SQLite, corrupt, another program's, or other tables.
    NotAStore(String),
    /// A schema version newer than [`VERSION`].
    Newer(i64),
}

/// The SQLite header's magic string (the first 16 bytes of the file).
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Checks the file's header before SQLite opens it for writing: an empty
/// or missing file is fine (it becomes a new store); anything else must be
/// an SQLite database that is not another program's (its
/// `application_id`, at byte 68 of the header, is 0 or inlet's).
pub fn check_header(path: &std::path::Path) -> Result<(), Refusal> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Refusal::NotAStore(format!("cannot read it: {e}"))),
    };
    let mut header = [0u8; 100];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(Refusal::NotAStore(format!("cannot read it: {e}"))),
        }
    }
    if read == 0 {
        return Ok(());
    }
    if read < header.len() || &header[..16] != MAGIC {
        return Err(Refusal::NotAStore("not an SQLite database".into()));
    }
    let application_id = i64::from(i32::from_be_bytes([header[68], header[69], header[70], header[71]]));
    if application_id != 0 && application_id != APPLICATION_ID {
        return Err(Refusal::NotAStore(format!(
            "an SQLite database of another program, application_id {application_id:#x}"
        )));
    }
    Ok(())
}

/// Finds what the database holds, reading only (nothing is written, so a
/// refused file stays byte for byte as it was).
pub fn inspect(conn: &Connection) -> rusqlite::Result<Result<Found, Refusal>> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let application_id: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    if version > VERSION {
        return Ok(Err(Refusal::Newer(version)));
    }
    let mut stmt = conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?;
    let tables = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    if tables.is_empty() && version == 0 {
        return Ok(Ok(Found::Empty));
    }
    if !tables.iter().any(|t| t == "events") {
        let mut listed = tables.join(", ");
        if listed.is_empty() {
            listed = "none".into();
        }
        return Ok(Err(Refusal::NotAStore(format!("it has no `events` table; its tables: {listed}"))));
    }
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('events')")?;
    let columns = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    if let Some(missing) = REQUIRED_COLUMNS.iter().find(|c| !columns.iter().any(|have| have == *c)) {
        return Ok(Err(Refusal::NotAStore(format!("its `events` table has no `{missing}` column"))));
    }
    let has_token = columns.iter().any(|c| c == "token");
    Ok(Ok(Found::Store { version, application_id, has_token }))
}

/// Brings what [`inspect`] found to the current schema, in one transaction
/// (a crash leaves it as it was or migrated, never half): a new file gets
/// the tables; a store of version 0 gets the `token` column (SQLite adds a
/// nullable column without rewriting the table, so this is quick on any
/// size) and its index; a store older than 2 the `forgotten_keys` table,
/// one older than 3 the `rejected` table;
/// every store gets the current `user_version` and
/// inlet's `application_id`. A store already current is not written to.
pub fn migrate(conn: &Connection, found: &Found) -> rusqlite::Result<()> {
    if let Found::Store { version: VERSION, application_id: APPLICATION_ID, has_token: true } = found {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let migrated = (|| {
        conn.execute_batch(SCHEMA)?;
        if let Found::Store { has_token: false, .. } = found {
            conn.execute_batch("ALTER TABLE events ADD COLUMN token TEXT")?;
            tracing::info!("sqlite store: added the `token` column to the events table");
        }
        conn.execute_batch(TOKEN_INDEX)?;
        conn.execute_batch(FORGOTTEN_KEYS)?;
        conn.execute_batch(REJECTED)?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        conn.pragma_update(None, "user_version", VERSION)
    })();
    match migrated {
        Ok(()) => {
            conn.execute_batch("COMMIT")?;
            if let Found::Store { version, .. } = found {
                tracing::info!(from = version, to = VERSION, "sqlite store: schema migrated");
            }
            Ok(())
        }
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
    // Open checked the file with `inspect` before anything wrote to it;
    // a refusal here means it changed since (or a test skipped the check).
    match inspect(conn)? {
        Ok(found) => migrate(conn, &found)?,
        Err(refusal) => {
            let code = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB);
            return Err(rusqlite::Error::SqliteFailure(code, Some(format!("the database was refused: {refusal:?}"))));
        }
    }
    if let Some(pages) = cap_pages(conn, max_bytes)? {
        conn.pragma_update(None, "max_page_count", pages as i64)?;
    }
    Ok(())
}

/// `max_bytes` in pages of this database, at least one.
pub fn cap_pages(conn: &Connection, max_bytes: Option<u64>) -> rusqlite::Result<Option<u64>> {
    let Some(bytes) = max_bytes else { return Ok(None) };
    let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(Some((bytes / page_size.max(512) as u64).max(1)))
}

/// Settings of the read connections.
pub fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(())
}
