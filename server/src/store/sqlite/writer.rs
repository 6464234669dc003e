//! The writer thread and its group commit.
//!
//! One thread owns the only write connection. Connection tasks hand it a
//! job (the rows of one request) through a bounded queue and wait for the
//! answer. The writer takes the first job, then everything else that queued
//! up while it was busy, and writes them all in one transaction: one commit
//! (one fsync with `--sync full`) serves every request in the group. Each
//! job sits in its own savepoint, so one job's failure does not spoil the
//! others; a job is answered only after the commit that holds it succeeded.

use inlet_shared::event::Text;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc};

use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use super::checkpointer;
use crate::store::{now_rfc3339, StoreError};

/// Upper bound of rows in one transaction, so a commit stays short.
const MAX_GROUP_ROWS: usize = 20_000;

/// One event to insert.
pub struct Row {
    pub source: Text,
    pub id: Text,
    pub ty: Text,
    pub json: bytes::Bytes,
}

/// The rows of one request and where to send its answer: per row, whether
/// it was a duplicate.
pub struct Job {
    pub rows: Vec<Row>,
    pub reply: oneshot::Sender<Result<Vec<bool>, StoreError>>,
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

/// Inserts one job's rows; `Ok(duplicate flags)`.
fn insert(tx: &Connection, rows: &[Row], received_at: &str) -> rusqlite::Result<Vec<bool>> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO events (source, id, type, received_at, event) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (source, id) DO NOTHING",
    )?;
    let mut duplicate = Vec::with_capacity(rows.len());
    for row in rows {
        // The JSON was produced by `Event::to_json`, so it is UTF-8.
        let json = std::str::from_utf8(&row.json).unwrap_or_default();
        let changed = stmt.execute(params![&*row.source, &*row.id, &*row.ty, received_at, json])?;
        duplicate.push(changed == 0);
    }
    Ok(duplicate)
}

/// Writes one group in one transaction. Returns each job's result.
fn write_group(conn: &mut Connection, jobs: &[Job]) -> Vec<Result<Vec<bool>, StoreError>> {
    let received_at = now_rfc3339();
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return jobs.iter().map(|_| Err(unavailable_ref(&e))).collect(),
    };
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let result = match tx.savepoint() {
            Ok(mut sp) => match insert(&sp, &job.rows, &received_at) {
                Ok(flags) => sp.commit().map(|_| flags).map_err(unavailable),
                Err(e) => {
                    let _ = sp.rollback();
                    Err(unavailable(e))
                }
            },
            Err(e) => Err(unavailable(e)),
        };
        results.push(result);
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => {
            // Nothing of the group is durable: nobody may be acknowledged.
            let err = unavailable_ref(&e);
            results.into_iter().map(|_| Err(err.clone())).collect()
        }
    }
}

fn unavailable_ref(e: &rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

/// The writer loop: runs until every sender is gone, then checkpoints the
/// WAL into the database file and returns.
pub fn run(mut conn: Connection, jobs: mpsc::Receiver<Job>, wal_pages: Arc<AtomicI64>) {
    while let Ok(first) = jobs.recv() {
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
        let results = write_group(&mut conn, &group);
        for (job, result) in group.into_iter().zip(results) {
            if let Err(e) = &result {
                tracing::error!("write failed: {e}");
            }
            let _ = job.reply.send(result);
        }
        // The WAL is large: copy its tail (the checkpointer copied the rest)
        // and start it over, between two groups, where no lock is held.
        if wal_pages.load(Ordering::Relaxed) > checkpointer::RESTART_PAGES {
            match checkpointer::checkpoint(&conn, "RESTART") {
                Ok(_) => wal_pages.store(0, Ordering::Relaxed),
                Err(e) => tracing::warn!("WAL restart failed: {e}"),
            }
        }
    }
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!("final WAL checkpoint failed: {e}");
    }
    match conn.close() {
        Ok(()) => tracing::info!("sqlite writer closed"),
        Err((_, e)) => tracing::error!("closing sqlite failed: {e}"),
    }
}
