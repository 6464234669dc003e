//! Deleting events: `--retention`, `--when-full drop-oldest`, and the keys
//! of deleted events kept for `--dedupe-window`.
//!
//! Everything here runs on the writer thread, between two commit groups
//! (`writer.rs`), never beside them: SQLite has one writer, and a deletion
//! on its own connection would hold the write lock while the writer waits
//! (busy waits on the commit path) or the other way round. On the writer
//! thread a request waits at most for one deletion batch: at most
//! [`BATCH_ROWS`] rows in one short transaction, then the writer takes the
//! next group before the next batch. A retention batch that takes longer
//! than [`BATCH_TARGET`] halves the next one (down to [`MIN_BATCH_ROWS`]);
//! a quick one doubles it back.
//!
//! Sequence numbers: the newest event is never deleted. The `events` table
//! takes its `seq` from the largest one present (it has no AUTOINCREMENT),
//! so an emptied table would number new events from 1 again and a reader
//! resuming with `after` would miss them.
//!
//! Dedupe after deletion: each deleted event's (source, id) is remembered
//! as a 64-bit hash in `forgotten_keys` with the time of its deletion, for
//! the dedupe window; `append` treats a remembered key as a duplicate. The
//! same job deletes keys older than the window, in batches.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::store::{now_ms, DeleteReason, StoreGauges, WhenFull};

/// Rows deleted in one transaction at most.
pub const BATCH_ROWS: i64 = 1000;
/// Rows of a retention batch at least, however slow the disk.
pub const MIN_BATCH_ROWS: i64 = 50;
/// How long a retention batch should take at most.
const BATCH_TARGET: Duration = Duration::from_millis(2);
/// With a backlog, a round is followed by a pause this many times as long
/// as it took (bench/retention.sh: with 1 the p99 of ingest during a large
/// deletion was 6x its p99 without).
const BACKLOG_PAUSE: u32 = 4;
/// Free pages kept for reuse after retention deletes (4 MiB of 4 KiB
/// pages); more are given back to the file system, [`VACUUM_STEP`] per round.
const FREE_PAGES_KEPT: i64 = 1024;
const VACUUM_STEP: i64 = 256;
/// Bytes of events `drop-oldest` deletes in one round at least: whole pages
/// come free only when every row on them is gone, and the keys remembered
/// for the dedupe window need room too.
pub const MIN_DROP_BYTES: u64 = 64 * 1024;
/// The deletion job looks at the store this often at most...
const MAX_INTERVAL: Duration = Duration::from_secs(1);
/// ...and this often at least (short retentions, for tests).
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// Milliseconds since the epoch of a stored `received_at`.
fn parse_ms(received_at: &str) -> Option<i64> {
    OffsetDateTime::parse(received_at, &Rfc3339).ok().map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The deletion job's state, owned by the writer thread.
pub struct Deleter {
    gauges: Arc<StoreGauges>,
    interval: Duration,
    next_run: Instant,
    /// More to delete than one batch took: run again at once.
    backlog: bool,
    page_size: i64,
    incremental_vacuum: bool,
    /// Rows of the next retention batch (see [`BATCH_TARGET`]).
    batch_rows: i64,
}

impl Deleter {
    /// Reads the store's gauges once (the only `COUNT(*)`s, at start).
    pub fn open(conn: &Connection, gauges: Arc<StoreGauges>) -> rusqlite::Result<Deleter> {
        let events: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
        gauges.events.store(events.max(0) as u64, Relaxed);
        let remembered: i64 = conn.query_row("SELECT COUNT(*) FROM forgotten_keys", [], |r| r.get(0))?;
        gauges.remembered_keys.store(remembered.max(0) as u64, Relaxed);
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let auto_vacuum: i64 = conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0))?;
        let interval = match gauges.retention {
            Some(r) => (r / 4).clamp(MIN_INTERVAL, MAX_INTERVAL),
            None => MAX_INTERVAL,
        };
        let deleter = Deleter {
            gauges,
            interval,
            next_run: Instant::now(),
            backlog: false,
            page_size,
            incremental_vacuum: auto_vacuum == 2,
            batch_rows: BATCH_ROWS,
        };
        deleter.refresh_oldest(conn)?;
        deleter.refresh_bytes(conn)?;
        Ok(deleter)
    }

    /// Whether appends must look keys up in `forgotten_keys`.
    pub fn remembering(&self) -> bool {
        self.gauges.remembered_keys.load(Relaxed) > 0
    }

    /// The store's gauges (the writer records its commits there).
    pub fn gauges(&self) -> &StoreGauges {
        &self.gauges
    }

    pub fn drops_oldest(&self) -> bool {
        self.gauges.when_full == WhenFull::DropOldest && self.gauges.max_bytes.is_some()
    }

    /// How long the writer may wait for a job before the job is due.
    pub fn wait(&self) -> Duration {
        self.next_run.saturating_duration_since(Instant::now())
    }

    /// After a commit that stored `accepted` new events.
    pub fn stored(&self, accepted: u64) {
        if accepted == 0 {
            return;
        }
        if self.gauges.events.fetch_add(accepted, Relaxed) == 0 {
            self.gauges.oldest_ms.store(now_ms(), Relaxed);
        }
    }

    /// One round of the job, if due: one batch of expired events, one of
    /// expired keys, a bounded vacuum, fresh gauges. Errors are logged; the
    /// next round tries again.
    pub fn tick(&mut self, conn: &Connection) {
        if self.wait() > Duration::ZERO {
            return;
        }
        let started = Instant::now();
        if let Err(e) = self.round(conn) {
            tracing::warn!("deleting old events failed: {e}");
            self.backlog = false;
        }
        // With a backlog the next round waits BACKLOG_PAUSE times as long as
        // this one took: the job takes a fifth of the writer's time at most.
        let now = Instant::now();
        self.next_run = now + if self.backlog { (now - started) * BACKLOG_PAUSE } else { self.interval };
    }

    fn round(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let now = now_ms();
        let mut full_batch = false;
        if let Some(retention) = self.gauges.retention {
            let cutoff = now.saturating_sub(retention.as_millis().min(i64::MAX as u128) as i64);
            let rows = self.batch_rows;
            let started = Instant::now();
            let deleted = self.delete_oldest(conn, DeleteReason::Retention, Some(cutoff), None, rows)?;
            full_batch = deleted == rows as u64;
            self.batch_rows = next_batch_rows(rows, started.elapsed());
        }
        let expired = self.expire_keys(conn, now)?;
        self.backlog = full_batch || expired == BATCH_ROWS as u64;
        if self.incremental_vacuum && self.gauges.retention.is_some() {
            let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
            if free > FREE_PAGES_KEPT {
                let n = (free - FREE_PAGES_KEPT).min(VACUUM_STEP);
                // Each step of the statement frees one page: step it to the end.
                let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({n})"))?;
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
                self.backlog |= free - n > FREE_PAGES_KEPT;
            }
        }
        self.refresh_bytes(conn)
    }

    /// Makes room for `bytes` of events (`--when-full drop-oldest`):
    /// deletes the oldest events, that many bytes of them (at least
    /// [`MIN_DROP_BYTES`]) or one batch, whichever is less. Returns the
    /// events deleted; 0 when only the newest is left.
    pub fn drop_oldest(&mut self, conn: &Connection, bytes: u64) -> rusqlite::Result<u64> {
        let n = self.delete_oldest(conn, DeleteReason::Cap, None, Some(bytes.max(MIN_DROP_BYTES)), BATCH_ROWS)?;
        self.refresh_bytes(conn)?;
        Ok(n)
    }

    /// Deletes, in one transaction, the oldest events (never the newest):
    /// those received before `cutoff_ms`, or enough to free `bytes`, at
    /// most `rows`; remembers their keys for the dedupe window.
    fn delete_oldest(
        &self,
        conn: &Connection,
        reason: DeleteReason,
        cutoff_ms: Option<i64>,
        bytes: Option<u64>,
        rows: i64,
    ) -> rusqlite::Result<u64> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let done = self.delete_in_transaction(conn, cutoff_ms, bytes, rows);
        match done {
            Ok(0) => conn.execute_batch("ROLLBACK").map(|()| 0),
            Ok(n) => {
                conn.execute_batch("COMMIT")?;
                self.gauges.record_deleted(reason, n);
                if self.gauges.dedupe_window > Duration::ZERO {
                    self.gauges.remembered_keys.fetch_add(n, Relaxed);
                }
                self.refresh_oldest(conn)?;
                Ok(n)
            }
            Err(e) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                Err(e)
            }
        }
    }

    fn delete_in_transaction(
        &self,
        conn: &Connection,
        cutoff_ms: Option<i64>,
        bytes: Option<u64>,
        limit: i64,
    ) -> rusqlite::Result<u64> {
        let newest: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        let mut stmt = conn.prepare_cached(
            "SELECT seq, source, id, received_at, length(event) FROM events WHERE seq < ?1 ORDER BY seq LIMIT ?2",
        )?;
        let mut rows = stmt.query(params![newest, limit])?;
        let mut last = None;
        let mut keys = Vec::new();
        let mut freed = 0u64;
        while let Some(r) = rows.next()? {
            if let Some(cutoff) = cutoff_ms {
                let received_at: String = r.get(3)?;
                // An unreadable time is not a reason to delete.
                match parse_ms(&received_at) {
                    Some(ms) if ms < cutoff => {}
                    _ => break,
                }
            }
            if let Some(wanted) = bytes {
                if freed >= wanted {
                    break;
                }
            }
            let seq: i64 = r.get(0)?;
            let source: String = r.get(1)?;
            let id: String = r.get(2)?;
            let size: i64 = r.get(4)?;
            freed += size.max(0) as u64;
            keys.push((source, id));
            last = Some(seq);
        }
        drop(rows);
        let Some(last) = last else { return Ok(0) };
        // Deleted first: a full store has room for the keys only once the
        // events' pages are free.
        let n = conn.execute("DELETE FROM events WHERE seq <= ?1", [last])?;
        if self.gauges.dedupe_window > Duration::ZERO {
            let now = now_ms();
            let mut remember = conn
                .prepare_cached("INSERT OR REPLACE INTO forgotten_keys (source, id, deleted_at) VALUES (?1, ?2, ?3)")?;
            for (source, id) in &keys {
                remember.execute(params![source, id, now])?;
            }
        }
        Ok(n as u64)
    }

    /// Forgets, in one batch, the keys deleted longer ago than the window.
    fn expire_keys(&self, conn: &Connection, now: i64) -> rusqlite::Result<u64> {
        if self.gauges.remembered_keys.load(Relaxed) == 0 {
            return Ok(0);
        }
        let window = self.gauges.dedupe_window.as_millis().min(i64::MAX as u128) as i64;
        let n = conn.execute(
            "DELETE FROM forgotten_keys WHERE (source, id) IN
                (SELECT source, id FROM forgotten_keys WHERE deleted_at <= ?1 ORDER BY deleted_at LIMIT ?2)",
            params![now.saturating_sub(window), BATCH_ROWS],
        )? as u64;
        let _ = self.gauges.remembered_keys.fetch_update(Relaxed, Relaxed, |k| Some(k.saturating_sub(n)));
        Ok(n)
    }

    fn refresh_oldest(&self, conn: &Connection) -> rusqlite::Result<()> {
        let oldest: Option<String> =
            conn.query_row("SELECT received_at FROM events ORDER BY seq LIMIT 1", [], |r| r.get(0)).optional()?;
        let ms = oldest.as_deref().and_then(parse_ms).unwrap_or(0);
        self.gauges.oldest_ms.store(ms, Relaxed);
        Ok(())
    }

    fn refresh_bytes(&self, conn: &Connection) -> rusqlite::Result<()> {
        let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
        self.gauges.bytes.store((pages.max(0) * self.page_size.max(0)) as u64, Relaxed);
        Ok(())
    }
}

/// The rows of the next retention batch after one of `rows` that took
/// `took`: half past [`BATCH_TARGET`], double under a third of it.
fn next_batch_rows(rows: i64, took: Duration) -> i64 {
    if took > BATCH_TARGET {
        (rows / 2).max(MIN_BATCH_ROWS)
    } else if took < BATCH_TARGET / 3 {
        (rows * 2).min(BATCH_ROWS)
    } else {
        rows
    }
}

/// Whether a key is remembered: the event was deleted within the window.
/// The exact key is compared (one lookup by primary key).
pub fn is_remembered(conn: &Connection, source: &str, id: &str) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM forgotten_keys WHERE source = ?1 AND id = ?2")?;
    stmt.exists([source, id])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::writer::{write_group, Row};
    use crate::store::sqlite::{schema, Sync};
    use crate::store::TestDir;

    fn open(dir: &TestDir, max_bytes: Option<u64>) -> Connection {
        let conn = Connection::open(dir.path().join("events.sqlite3")).unwrap();
        schema::configure_writer(&conn, Sync::Normal, max_bytes).unwrap();
        conn
    }

    fn row(id: &str) -> Row {
        Row { source: "/s".into(), id: id.into(), ty: "t".into(), json: format!(r#"{{"id":"{id}"}}"#).into() }
    }

    /// Writes `ids` in one group; the duplicate flags.
    fn write(conn: &mut Connection, ids: &[String], remembering: bool) -> Vec<bool> {
        let rows: Vec<Row> = ids.iter().map(|id| row(id)).collect();
        write_group(conn, &[(&rows, None)], remembering).pop().unwrap().unwrap()
    }

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("e{i}")).collect()
    }

    fn stored(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT seq FROM events ORDER BY seq").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    fn gauges(retention: Option<Duration>, when_full: WhenFull, window: Duration) -> Arc<StoreGauges> {
        Arc::new(StoreGauges::new(retention, Some(1 << 30), when_full, window))
    }

    /// Makes every stored event look received in 2000.
    fn age_all(conn: &Connection) {
        conn.execute_batch("UPDATE events SET received_at = '2000-01-01T00:00:00Z'").unwrap();
    }

    #[test]
    fn a_slow_batch_halves_the_next_and_a_quick_one_doubles_it() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        assert_eq!(BATCH_TARGET, ms(2));
        assert_eq!(next_batch_rows(1000, us(2_500)), 500);
        assert_eq!(next_batch_rows(1000, BATCH_TARGET), 1000, "at the target: kept");
        assert_eq!(next_batch_rows(60, ms(50)), MIN_BATCH_ROWS);
        assert_eq!(next_batch_rows(MIN_BATCH_ROWS, ms(50)), MIN_BATCH_ROWS);
        assert_eq!(next_batch_rows(500, us(500)), 1000);
        assert_eq!(next_batch_rows(800, us(500)), BATCH_ROWS);
        assert_eq!(next_batch_rows(500, us(1_000)), 500, "between a third and the target: kept");
    }

    #[test]
    fn retention_deletes_in_batches_and_keeps_the_newest() {
        let dir = TestDir::new();
        let mut conn = open(&dir, None);
        write(&mut conn, &ids(0..2500), false);
        age_all(&conn);
        let g = gauges(Some(Duration::from_secs(3600)), WhenFull::Refuse, Duration::ZERO);
        let mut deleter = Deleter::open(&conn, g.clone()).unwrap();
        assert_eq!(g.events.load(Relaxed), 2500);
        assert_eq!(g.oldest_age_seconds(now_ms()).map(|a| a > 3600 * 24 * 365), Some(true));
        deleter.tick(&conn);
        assert_eq!((stored(&conn).len(), g.deleted_retention.load(Relaxed)), (1500, 1000), "one batch");
        assert!(deleter.backlog, "a full batch: the next round is due after as long as this one took");
        // The next batches are 1,000 rows or fewer (a slow batch halves the next).
        for _ in 0..100 {
            if !deleter.backlog {
                break;
            }
            let before = g.deleted_retention.load(Relaxed);
            deleter.next_run = Instant::now();
            deleter.tick(&conn);
            assert!(g.deleted_retention.load(Relaxed) - before <= 1000);
        }
        // The newest event stays, however old: seq never starts over.
        assert_eq!(stored(&conn), [2500]);
        assert_eq!((g.events.load(Relaxed), g.deleted_retention.load(Relaxed)), (1, 2499));
        assert_eq!(g.deleted_cap.load(Relaxed), 0);
        assert!(!deleter.backlog, "caught up");
        assert!(deleter.wait() > Duration::from_millis(100), "caught up: the job waits its interval");
        // New events are numbered after it, and recent ones are kept.
        write(&mut conn, &ids(2500..2502), false);
        deleter.next_run = Instant::now();
        deleter.tick(&conn);
        assert_eq!(stored(&conn), [2501, 2502]);
        assert_eq!(g.deleted_retention.load(Relaxed), 2500);
    }

    /// Three events stored and aged past a 60 s retention with a 60 s
    /// dedupe window, then one round: e0 and e1 deleted and remembered, e2
    /// (the newest) kept.
    fn three_aged_and_one_round(dir: &TestDir) -> (Connection, Arc<StoreGauges>, Deleter) {
        let mut conn = open(dir, None);
        write(&mut conn, &ids(0..3), false);
        age_all(&conn);
        let g = gauges(Some(Duration::from_secs(60)), WhenFull::Refuse, Duration::from_secs(60));
        let mut deleter = Deleter::open(&conn, g.clone()).unwrap();
        deleter.tick(&conn);
        (conn, g, deleter)
    }

    #[test]
    fn a_deleted_key_is_a_duplicate_for_the_window_then_accepted_again() {
        let dir = TestDir::new();
        let (mut conn, g, mut deleter) = three_aged_and_one_round(&dir);
        assert_eq!(stored(&conn), [3]);
        assert_eq!(g.remembered_keys.load(Relaxed), 2);
        assert!(deleter.remembering());
        // e0 and e1 were deleted: duplicates within the window; e5 is new.
        let again = [ids(0..2), ids(5..6)].concat();
        assert_eq!(write(&mut conn, &again, deleter.remembering()), [true, true, false]);
        // The window passes for e0's and e1's keys: accepted again. (The
        // same round deletes e2, now older than the newest, and remembers it.)
        conn.execute_batch("UPDATE forgotten_keys SET deleted_at = 0").unwrap();
        deleter.next_run = Instant::now();
        deleter.tick(&conn);
        assert_eq!(stored(&conn), [4]);
        assert_eq!(g.remembered_keys.load(Relaxed), 1);
        assert_eq!(write(&mut conn, &ids(0..3), deleter.remembering()), [false, false, true]);
    }

    /// The window remembers the exact (source, id) of each deleted event,
    /// and the lookup compares both: a key of another source, or with the
    /// parts split elsewhere, is not a duplicate.
    #[test]
    fn the_window_remembers_and_compares_exact_keys() {
        let dir = TestDir::new();
        let (conn, _, _) = three_aged_and_one_round(&dir);
        let mut stmt = conn.prepare("SELECT source, id FROM forgotten_keys ORDER BY id").unwrap();
        let keys: Vec<(String, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(keys, [("/s".to_string(), "e0".to_string()), ("/s".to_string(), "e1".to_string())]);
        assert!(is_remembered(&conn, "/s", "e0").unwrap());
        assert!(!is_remembered(&conn, "/t", "e0").unwrap());
        assert!(!is_remembered(&conn, "/se", "0").unwrap());
        assert!(!is_remembered(&conn, "/s", "e2").unwrap());
    }

    #[test]
    fn without_a_window_no_key_is_remembered() {
        let dir = TestDir::new();
        let mut conn = open(&dir, None);
        write(&mut conn, &ids(0..3), false);
        age_all(&conn);
        let g = gauges(Some(Duration::from_secs(60)), WhenFull::Refuse, Duration::ZERO);
        let mut deleter = Deleter::open(&conn, g.clone()).unwrap();
        deleter.tick(&conn);
        assert_eq!(g.deleted_retention.load(Relaxed), 2);
        let remembered: i64 = conn.query_row("SELECT COUNT(*) FROM forgotten_keys", [], |r| r.get(0)).unwrap();
        assert_eq!((remembered, g.remembered_keys.load(Relaxed)), (0, 0));
        assert_eq!(write(&mut conn, &ids(0..1), deleter.remembering()), [false]);
    }

    #[test]
    fn dropping_the_oldest_frees_the_bytes_asked_and_at_least_min_drop_bytes() {
        let dir = TestDir::new();
        let mut conn = open(&dir, None);
        // 300 events of 1000 bytes of JSON each.
        let rows: Vec<Row> = (0..300)
            .map(|i| {
                let head = format!(r#"{{"id":"{i:03}","data":""#);
                Row { json: format!("{head}{}\"}}", "x".repeat(1000 - head.len() - 2)).into(), ..row(&i.to_string()) }
            })
            .collect();
        assert!(rows.iter().all(|r| r.json.len() == 1000));
        write_group(&mut conn, &[(&rows, None)], false).pop().unwrap().unwrap();
        let g = gauges(None, WhenFull::DropOldest, Duration::from_secs(60));
        let mut deleter = Deleter::open(&conn, g.clone()).unwrap();
        assert_eq!(MIN_DROP_BYTES, 65_536);
        assert_eq!(deleter.drop_oldest(&conn, 1).unwrap(), 66, "65,000 bytes are not MIN_DROP_BYTES yet");
        assert_eq!(deleter.drop_oldest(&conn, 100_000).unwrap(), 100);
        assert_eq!(stored(&conn).first(), Some(&167));
        assert_eq!(deleter.drop_oldest(&conn, u64::MAX).unwrap(), 133, "all but the newest");
        assert_eq!(deleter.drop_oldest(&conn, 1).unwrap(), 0, "only the newest is left");
        assert_eq!(stored(&conn), [300]);
        assert_eq!(
            (g.deleted_cap.load(Relaxed), g.events.load(Relaxed), g.remembered_keys.load(Relaxed)),
            (299, 1, 299)
        );
        assert_eq!(g.deleted_retention.load(Relaxed), 0);
    }

    #[test]
    fn a_store_made_without_auto_vacuum_keeps_it_and_reuses_its_free_pages() {
        let dir = TestDir::new();
        {
            let old = Connection::open(dir.path().join("events.sqlite3")).unwrap();
            // A store of version 0 (before versions and `token`), made
            // without auto_vacuum.
            old.execute_batch(
                "CREATE TABLE events (seq INTEGER PRIMARY KEY, source TEXT NOT NULL, id TEXT NOT NULL,
                 type TEXT NOT NULL, received_at TEXT NOT NULL, event TEXT NOT NULL, UNIQUE (source, id))",
            )
            .unwrap();
        }
        let mut conn = open(&dir, None);
        let auto_vacuum: i64 = conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0)).unwrap();
        assert_eq!(auto_vacuum, 0, "not converted at open");
        let rows = |from: usize| -> Vec<Row> {
            (from..from + 500)
                .map(|i| Row {
                    json: format!(r#"{{"id":"{i}","data":"{}"}}"#, "x".repeat(2000)).into(),
                    ..row(&i.to_string())
                })
                .collect()
        };
        write_group(&mut conn, &[(&rows(0), None)], false).pop().unwrap().unwrap();
        age_all(&conn);
        let g = gauges(Some(Duration::from_secs(60)), WhenFull::Refuse, Duration::ZERO);
        let mut deleter = Deleter::open(&conn, g.clone()).unwrap();
        deleter.tick(&conn);
        assert_eq!(g.deleted_retention.load(Relaxed), 499);
        let pages = |conn: &Connection| -> i64 { conn.pragma_query_value(None, "page_count", |r| r.get(0)).unwrap() };
        let (before, free) =
            (pages(&conn), conn.pragma_query_value::<i64, _>(None, "freelist_count", |r| r.get(0)).unwrap());
        assert!(free > 200, "{free} free pages, kept in the file");
        // The same amount again (one event more is stored: the newest stays)
        // goes into the free pages: the file grows by a page or two, not by
        // the hundreds of pages the events take.
        write_group(&mut conn, &[(&rows(500), None)], false).pop().unwrap().unwrap();
        assert!(pages(&conn) - before <= 2, "{} pages, {before} before", pages(&conn));
    }

    #[test]
    fn a_new_store_returns_free_pages_to_the_file_system() {
        let dir = TestDir::new();
        let mut conn = open(&dir, None);
        let auto_vacuum: i64 = conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0)).unwrap();
        assert_eq!(auto_vacuum, 2, "incremental");
        let big: Vec<Row> = (0..3000)
            .map(|i| Row {
                json: format!(r#"{{"id":"{i}","data":"{}"}}"#, "x".repeat(4000)).into(),
                ..row(&i.to_string())
            })
            .collect();
        write_group(&mut conn, &[(&big, None)], false).pop().unwrap().unwrap();
        age_all(&conn);
        let pages = |conn: &Connection| -> i64 { conn.pragma_query_value(None, "page_count", |r| r.get(0)).unwrap() };
        let before = pages(&conn);
        let g = gauges(Some(Duration::from_secs(60)), WhenFull::Refuse, Duration::ZERO);
        let mut deleter = Deleter::open(&conn, g.clone()).unwrap();
        assert_eq!(g.bytes.load(Relaxed), before as u64 * 4096);
        for _ in 0..100 {
            deleter.next_run = Instant::now();
            deleter.tick(&conn);
        }
        let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0)).unwrap();
        assert_eq!(free, FREE_PAGES_KEPT, "free pages past the slack are given back");
        assert!(pages(&conn) < before - 1500, "{} of {before} pages", pages(&conn));
        assert_eq!(g.bytes.load(Relaxed), pages(&conn) as u64 * 4096);
    }
}
