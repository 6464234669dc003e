//! The writer thread and its group commit.
//!
//! One thread owns the only write connection. Connection tasks hand it a
//! job (the rows of one request) through a bounded queue and wait for the
//! answer. The writer takes the first job, then everything else that queued
//! up while it was busy, and writes them all in one transaction: one commit
//! (one fsync with `--sync full`) serves every request in the group. Each
//! job sits in its own savepoint, so one job's failure does not spoil the
//! others; a job is answered only after the commit that holds it succeeded.
//!
//! Some failures (`SQLITE_FULL`, `SQLITE_IOERR`, `SQLITE_NOMEM`) make SQLite
//! roll back the whole transaction, not just the failing statement. After
//! any failure the writer asks the connection whether a transaction is still
//! open; if not, every job of the group fails (the ones before were rolled
//! back with it) and the jobs after are not run, since they would run in
//! autocommit mode and be stored although the group is answered `503`.

use inlet_shared::event::Text;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::{checkpointer, retention, sqlite_error};
use crate::store::commits::CommitStats;
use crate::store::{now_rfc3339, ErrorKind, StoreError};

/// Upper bound of rows in one transaction, so a commit stays short.
const MAX_GROUP_ROWS: usize = 20_000;

/// One event to insert.
pub struct Row {
    pub source: Text,
    pub id: Text,
    pub ty: Text,
    /// The event's CloudEvents JSON; UTF-8 by its type (checked when the
    /// job is built, so the writer never has to decide what to do if not).
    pub json: Text,
}

/// What a job is answered with: per row, whether it was a duplicate.
pub type Outcome = Result<Vec<bool>, StoreError>;

/// The rows of one request and where to send its answer.
pub struct Job {
    pub rows: Vec<Row>,
    /// The name of the token that wrote them (`None`: anonymous).
    pub token: Option<std::sync::Arc<str>>,
    pub reply: oneshot::Sender<Outcome>,
}

/// Inserts one job's rows; `Ok(duplicate flags)`. With `remembering`, a
/// row whose key belongs to an event deleted within the dedupe window is a
/// duplicate too (one lookup by primary key; skipped while no key is
/// remembered).
fn insert(
    tx: &Connection,
    rows: &[Row],
    token: Option<&str>,
    received_at: &str,
    remembering: bool,
) -> rusqlite::Result<Vec<bool>> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO events (source, id, type, received_at, event, token) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (source, id) DO NOTHING",
    )?;
    let mut duplicate = Vec::with_capacity(rows.len());
    for row in rows {
        if remembering && retention::is_remembered(tx, &row.source, &row.id)? {
            duplicate.push(true);
            continue;
        }
        let changed = stmt.execute(params![&*row.source, &*row.id, &*row.ty, received_at, &*row.json, token])?;
        duplicate.push(changed == 0);
    }
    Ok(duplicate)
}

/// How a job failed: the error, and whether its savepoint was undone (its
/// rows are out of the transaction).
struct JobFailure {
    error: rusqlite::Error,
    undone: bool,
}

/// Runs one job in its own savepoint of the open transaction. The
/// savepoint is handled in SQL so that every step's failure is seen.
fn write_job(tx: &Connection, job: JobRows<'_>, received_at: &str, remembering: bool) -> Result<Vec<bool>, JobFailure> {
    tx.execute_batch("SAVEPOINT job").map_err(|error| JobFailure { error, undone: true })?;
    let written = insert(tx, job.0, job.1, received_at, remembering)
        .and_then(|flags| tx.execute_batch("RELEASE job").map(|()| flags));
    written.map_err(|error| {
        // When SQLite rolled back the whole transaction there is no
        // savepoint left to roll back to; the caller sees that.
        let undone = tx.is_autocommit() || tx.execute_batch("ROLLBACK TO job; RELEASE job").is_ok();
        JobFailure { error, undone }
    })
}

/// Writes one group in one transaction and returns each job's outcome. No
/// job is answered `Ok` unless the commit holding it succeeded.
/// One job's rows and the name of the token that wrote them.
pub type JobRows<'a> = (&'a [Row], Option<&'a str>);

#[cfg(test)]
pub fn write_group(conn: &mut Connection, jobs: &[JobRows<'_>], remembering: bool) -> Vec<Outcome> {
    write_group_timed(conn, jobs, remembering).0
}

/// [`write_group`], also returning how long its `COMMIT` took (`None`
/// when the group failed before it).
fn write_group_timed(
    conn: &mut Connection,
    jobs: &[JobRows<'_>],
    remembering: bool,
) -> (Vec<Outcome>, Option<Duration>) {
    let received_at = now_rfc3339();
    // IMMEDIATE: the write lock is taken (waiting for it up to the busy
    // timeout) before the first statement. A deferred transaction would
    // start reading (the dedupe lookup) and then fail at once with
    // SQLITE_BUSY when upgrading while the rejected thread writes.
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let err = sqlite_error(e);
            return (jobs.iter().map(|_| Err(err.clone())).collect(), None);
        }
    };
    let mut results: Vec<Outcome> = Vec::with_capacity(jobs.len());
    for job in jobs {
        match write_job(&tx, *job, &received_at, remembering) {
            Ok(flags) => results.push(Ok(flags)),
            Err(JobFailure { error, undone }) => {
                let err = sqlite_error(error);
                if tx.is_autocommit() || !undone {
                    // SQLite rolled the transaction back (SQLITE_FULL, IOERR,
                    // NOMEM), or the job's rows could not be taken out of it:
                    // the whole group fails, what it wrote is (or, dropping
                    // `tx`, will be) rolled back, and no later job runs, for
                    // it would run in autocommit and be stored.
                    tracing::error!("write failed, the group is rolled back: {}", err.chain());
                    return (jobs.iter().map(|_| Err(err.clone())).collect(), None);
                }
                results.push(Err(err));
            }
        }
    }
    let started = Instant::now();
    let committed = tx.commit();
    let took = Some(started.elapsed());
    match committed {
        Ok(()) => (results, took),
        Err(e) => {
            // Nothing of the group is durable: nobody may be acknowledged.
            // (Dropping the failed transaction rolled it back.)
            let err = sqlite_error(e);
            (jobs.iter().map(|_| Err(err.clone())).collect(), took)
        }
    }
}

/// Counts one commit in the store's commit figures: the jobs it wrote
/// (those answered `Ok`; a job that failed alone, or is written again in a
/// drop-oldest round, is not counted here).
fn record_commit(stats: Option<&CommitStats>, jobs: &[JobRows<'_>], results: &[Outcome], took: Option<Duration>) {
    if let (Some(stats), Some(took)) = (stats, took) {
        let written = jobs.iter().zip(results).filter(|(_, r)| r.is_ok());
        let (requests, events) = written.fold((0, 0), |(n, e), (job, _)| (n + 1, e + job.0.len()));
        stats.record(requests, events, took);
    }
}

/// Takes `first` and everything queued behind it as one group, writes it,
/// and answers each job. Under `--when-full drop-oldest`, the jobs refused
/// for lack of room are written again after the oldest events are deleted.
fn write(conn: &mut Connection, jobs: &mpsc::Receiver<Job>, first: Job, deleter: &mut retention::Deleter) {
    let mut group = vec![first];
    let mut rows = group[0].rows.len();
    // Group commit: everything that queued up meanwhile joins this transaction.
    while rows < MAX_GROUP_ROWS {
        match jobs.try_recv() {
            Ok(job) => {
                rows += job.rows.len();
                group.push(job);
            }
            Err(_) => break,
        }
    }
    let slices: Vec<JobRows<'_>> = group.iter().map(|job| (job.rows.as_slice(), job.token.as_deref())).collect();
    let (mut results, took) = write_group_timed(conn, &slices, deleter.remembering());
    record_commit(deleter.gauges().commits.as_ref(), &slices, &results, took);
    if deleter.drops_oldest() {
        let full = |r: &Outcome| matches!(r, Err(e) if e.kind() == ErrorKind::Full);
        for _ in 0..MAX_DROP_ROUNDS {
            let refused: Vec<usize> = (0..results.len()).filter(|i| full(&results[*i])).collect();
            if refused.is_empty() {
                break;
            }
            let bytes: u64 = refused.iter().flat_map(|i| slices[*i].0).map(|r| r.json.len() as u64).sum();
            match deleter.drop_oldest(conn, bytes) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("dropping the oldest events failed: {e}");
                    break;
                }
            }
            let retry: Vec<JobRows<'_>> = refused.iter().map(|i| slices[*i]).collect();
            let (retried, took) = write_group_timed(conn, &retry, deleter.remembering());
            record_commit(deleter.gauges().commits.as_ref(), &retry, &retried, took);
            for (i, result) in refused.into_iter().zip(retried) {
                results[i] = result;
            }
        }
    }
    // The gauges first: a client that reads /stats after its 202 sees them.
    let accepted: u64 =
        results.iter().filter_map(|r| r.as_ref().ok()).map(|flags| flags.iter().filter(|d| !**d).count() as u64).sum();
    deleter.stored(accepted);
    for (job, result) in group.into_iter().zip(results) {
        if let Err(e) = &result {
            tracing::error!("write failed: {}", e.chain());
        }
        let _ = job.reply.send(result);
    }
}

/// Rounds of dropping the oldest events for one group at most (each round
/// one batch); past them the group is answered `503`.
const MAX_DROP_ROUNDS: usize = 64;

/// The writer loop: runs until every sender is gone, then stops the
/// checkpointer, checkpoints the WAL into the database file and returns.
/// Between groups (and while idle) it runs the deletion job, one bounded
/// batch at a time (`retention.rs`).
pub fn serve(
    mut conn: Connection,
    jobs: mpsc::Receiver<Job>,
    checkpointer: checkpointer::Checkpointer,
    mut deleter: retention::Deleter,
) {
    let wal_pages = checkpointer.wal_pages();
    loop {
        let first = match jobs.recv_timeout(deleter.wait()) {
            Ok(job) => Some(job),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Some(first) = first {
            write(&mut conn, &jobs, first, &mut deleter);
        }
        deleter.tick(&conn);
        // The WAL is large: copy its tail (the checkpointer copied the rest)
        // and start it over, between two groups, where no lock is held.
        if wal_pages.load(Ordering::Relaxed) > checkpointer::RESTART_PAGES {
            match checkpointer::checkpoint(&conn, "RESTART") {
                Ok(_) => wal_pages.store(0, Ordering::Relaxed),
                Err(e) => tracing::warn!("WAL restart failed: {e}"),
            }
        }
    }
    // The checkpointer must not run beside the final checkpoint.
    drop(checkpointer);
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!("final WAL checkpoint failed: {e}");
    }
    match conn.close() {
        Ok(()) => tracing::info!("sqlite writer closed"),
        Err((_, e)) => tracing::error!("closing sqlite failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{schema, Sync};
    use crate::store::{ErrorKind, TestDir};

    fn row(id: &str, ty: &str, size: usize) -> Row {
        let json = format!(r#"{{"id":"{id}","type":"{ty}","data":"{}"}}"#, "x".repeat(size));
        Row { source: "/s".into(), id: id.into(), ty: ty.into(), json: json.into() }
    }

    fn open(dir: &TestDir, max_bytes: Option<u64>) -> Connection {
        let conn = Connection::open(dir.path().join("events.sqlite3")).unwrap();
        schema::configure_writer(&conn, Sync::Normal, max_bytes).unwrap();
        conn
    }

    /// How often each id is stored.
    fn stored(conn: &Connection, id: &str) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM events WHERE id = ?1", [id], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_failing_job_fails_only_itself() {
        let dir = TestDir::new();
        let mut conn = open(&dir, None);
        // A row of type "refuse" fails its statement (only the statement).
        conn.execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.type = 'refuse'
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
        let a = [row("a1", "t", 10), row("a2", "t", 10)];
        let b = [row("b1", "t", 10), row("b2", "refuse", 10)];
        let c = [row("c1", "t", 10), row("a1", "t", 10)];
        let jobs: [JobRows<'_>; 3] = [(&a, None), (&b, None), (&c, None)];
        let (results, took) = write_group_timed(&mut conn, &jobs, false);
        // The commit figures count what was written: a and c, not b.
        let stats = CommitStats::default();
        record_commit(Some(&stats), &jobs, &results, took);
        let counts = |s: &CommitStats| [&s.commits, &s.requests, &s.events].map(|n| n.load(Ordering::Relaxed));
        assert_eq!(counts(&stats), [1, 2, 4]);
        assert_eq!(results[0].as_ref().unwrap(), &vec![false, false]);
        assert_eq!(results[1].as_ref().unwrap_err().kind(), ErrorKind::Unavailable);
        // c's second row repeats a1, stored earlier in the same transaction.
        assert_eq!(results[2].as_ref().unwrap(), &vec![false, true]);
        for (id, n) in [("a1", 1), ("a2", 1), ("b1", 0), ("b2", 0), ("c1", 1)] {
            assert_eq!(stored(&conn, id), n, "{id}");
        }
    }

    /// Another writer on the file (the rejected thread) holds the write
    /// lock while a group starts with a dedupe lookup: the group waits for
    /// the lock (busy timeout) instead of failing on the upgrade.
    #[test]
    fn a_group_waits_for_another_writer_instead_of_failing() {
        let dir = TestDir::new();
        let mut conn = open(&dir, None);
        let other = Connection::open(dir.path().join("events.sqlite3")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE; INSERT INTO forgotten_keys VALUES ('/x', 'y', 0);").unwrap();
        let (started, wait) = mpsc::channel();
        let writer = std::thread::spawn(move || {
            started.send(()).unwrap();
            let a = [row("a1", "t", 10)];
            let result = write_group(&mut conn, &[(&a, None)], true);
            (result.into_iter().next().unwrap().map_err(|e| e.chain().to_string()), stored(&conn, "a1"))
        });
        wait.recv().unwrap();
        // The group runs while the lock is held (a generous head start).
        std::thread::sleep(std::time::Duration::from_millis(500));
        other.execute_batch("COMMIT").unwrap();
        let (result, n) = writer.join().unwrap();
        assert_eq!(result, Ok(vec![false]));
        assert_eq!(n, 1);
    }

    #[test]
    fn nothing_is_acknowledged_before_its_commit() {
        let dir = TestDir::new();
        let mut conn = open(&dir, None);
        // A row of type "late" breaks a deferred foreign key: every statement
        // succeeds and the COMMIT fails.
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (y INTEGER PRIMARY KEY);
             CREATE TABLE child (x INTEGER REFERENCES parent (y) DEFERRABLE INITIALLY DEFERRED);
             CREATE TRIGGER late AFTER INSERT ON events WHEN NEW.type = 'late'
             BEGIN INSERT INTO child VALUES (1); END;",
        )
        .unwrap();
        let a = [row("a1", "t", 10)];
        let b = [row("b1", "late", 10)];
        let results = write_group(&mut conn, &[(&a, None), (&b, None)], false);
        assert!(results.iter().all(Result::is_err), "{:?}", results.iter().map(Result::is_ok).collect::<Vec<_>>());
        assert_eq!((stored(&conn, "a1"), stored(&conn, "b1")), (0, 0));
        assert!(conn.is_autocommit(), "the failed transaction is rolled back");
        // The connection is usable again for the next group.
        let c = [row("c1", "t", 10)];
        assert_eq!(write_group(&mut conn, &[(&c, None)], false)[0].as_ref().unwrap(), &vec![false]);
        assert_eq!(stored(&conn, "c1"), 1);
    }

    #[test]
    fn a_full_store_stores_nothing_it_refuses() {
        let dir = TestDir::new();
        let mut conn = open(&dir, Some(64 * 4096));
        let mut full = 0;
        let mut acknowledged = 0;
        for g in 0..200 {
            let jobs: Vec<Vec<Row>> =
                (0..4).map(|j| (0..8).map(|i| row(&format!("g{g}-j{j}-r{i}"), "t", 1500)).collect()).collect();
            let slices: Vec<JobRows<'_>> = jobs.iter().map(|j| (j.as_slice(), None)).collect();
            let results = write_group(&mut conn, &slices, false);
            assert!(conn.is_autocommit(), "no transaction is left open");
            for (job, result) in jobs.iter().zip(&results) {
                let expected = match result {
                    Ok(flags) => {
                        assert_eq!(flags, &vec![false; 8]);
                        acknowledged += 1;
                        1
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::Full, "{}", e.chain());
                        full += 1;
                        0
                    }
                };
                for r in job {
                    assert_eq!(stored(&conn, &r.id), expected, "{} ({:?})", r.id, result.as_ref().err());
                }
            }
            if full >= 8 {
                break;
            }
        }
        assert!(full >= 8, "the capped store never filled up");
        assert!(acknowledged > 0);
        let total: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap();
        assert_eq!(total, acknowledged * 8);
    }
}
