//! `inlet-server backup --data-dir DIR OUT`: a consistent copy of the store
//! while a server keeps writing to it, with SQLite's online backup API.
//!
//! The copy is taken from one read transaction on the source: in WAL mode
//! that is a snapshot (every commit before it, none after) which the
//! server's writer does not wait for, so writes go on and the backup never
//! restarts because of them. It is copied in steps of [`STEP_PAGES`] pages
//! into `OUT.partial`, checked (`PRAGMA quick_check`, and that it is an
//! inlet store), synced, and renamed to `OUT`: `OUT` is a whole copy or
//! absent, never half of one. The data directory's lock is not taken; the
//! backup only reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::{schema, FILE_NAME};

/// Pages copied per step (4 MiB at the default page size).
const STEP_PAGES: std::ffi::c_int = 1024;

/// What a finished backup copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub events: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{} exists; give --force to replace it", .0.display())]
    Exists(PathBuf),
    #[error("{} is the store itself (or its WAL); the copy must go elsewhere", .0.display())]
    OntoTheStore(PathBuf),
    #[error("there is no event store in {}", .0.display())]
    NoStore(PathBuf),
    #[error("{} is not an inlet event store: {why}", path.display())]
    NotAStore { path: PathBuf, why: String },
    #[error("the backup of {} failed", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the copy failed its check: {0}")]
    Check(String),
    #[error("cannot write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Copies the store of `data_dir` to `out` (see the module's comment).
pub fn backup(data_dir: &Path, out: &Path, force: bool) -> Result<Copied, BackupError> {
    let source_path = data_dir.join(FILE_NAME);
    if !source_path.is_file() {
        return Err(BackupError::NoStore(data_dir.to_path_buf()));
    }
    if is_the_store(&source_path, out) {
        return Err(BackupError::OntoTheStore(out.to_path_buf()));
    }
    if out.exists() && !force {
        return Err(BackupError::Exists(out.to_path_buf()));
    }
    let not_a_store = |why: String| BackupError::NotAStore { path: source_path.clone(), why };
    schema::check_header(&source_path).map_err(|r| not_a_store(format!("{r:?}")))?;
    let sqlite = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Sqlite { path, source }
    };
    // Read-write flags without CREATE: never makes a database where there
    // was none; nothing is written through it.
    let source =
        Connection::open_with_flags(&source_path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(sqlite(&source_path))?;
    source.busy_timeout(Duration::from_secs(5)).map_err(sqlite(&source_path))?;
    match schema::inspect(&source).map_err(sqlite(&source_path))? {
        Ok(schema::Found::Store { .. }) => {}
        Ok(schema::Found::Empty) => return Err(not_a_store("it has no tables".into())),
        Err(refusal) => return Err(not_a_store(format!("{refusal:?}"))),
    }
    // The snapshot: every step reads from it.
    source.execute_batch("BEGIN").map_err(sqlite(&source_path))?;
    let events: i64 =
        source.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).map_err(sqlite(&source_path))?;

    let partial = partial_path(out);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Io { path, source }
    };
    match std::fs::remove_file(&partial) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&partial)(e)),
    }
    let copied = copy(&source, &partial).and_then(|()| check(&partial));
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let _ = source.execute_batch("COMMIT");
    let bytes = std::fs::metadata(&partial).map_err(io(&partial))?.len();
    std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(io(&partial))?;
    std::fs::rename(&partial, out).map_err(io(out))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable once the directory is.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(Copied { events: events as u64, bytes })
}

/// Whether `out` names the store's database file or one of its companions
/// (`-wal`, `-shm`, `-journal`), or their `.partial`: even with `--force`,
/// renaming a copy over the live file would pair it with the server's WAL.
fn is_the_store(source: &Path, out: &Path) -> bool {
    let (Some(dir), Some(name)) = (out.parent(), out.file_name()) else { return false };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let (Ok(out_dir), Some(source_dir)) = (dir.canonicalize(), source.parent().and_then(|d| d.canonicalize().ok()))
    else {
        return false;
    };
    let name = name.to_string_lossy();
    out_dir == source_dir
        && ["", "-wal", "-shm", "-journal"].iter().any(|suffix| {
            let file = format!("{FILE_NAME}{suffix}");
            *name == *file || *name == format!("{file}.partial")
        })
}

/// `OUT.partial`, beside `OUT`.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

/// The online backup, step by step, into a new file at `to`.
fn copy(source: &Connection, to: &Path) -> Result<(), BackupError> {
    let failed = |source| BackupError::Sqlite { path: to.to_path_buf(), source };
    let mut dest = Connection::open(to).map_err(failed)?;
    let backup = Backup::new(source, &mut dest).map_err(failed)?;
    loop {
        match backup.step(STEP_PAGES).map_err(failed)? {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            // Busy or locked: a lock could not be had for this step;
            // wait a little and retry.
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The copy is sound SQLite and an inlet store.
fn check(path: &Path) -> Result<(), BackupError> {
    let failed = |source| BackupError::Sqlite { path: path.to_path_buf(), source };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(failed)?;
    let verdict: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(failed)?;
    if verdict != "ok" {
        return Err(BackupError::Check(verdict));
    }
    match schema::inspect(&conn).map_err(failed)? {
        Ok(schema::Found::Store { .. }) => Ok(()),
        other => Err(BackupError::Check(format!("not an inlet store: {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{Options, SqliteStore, Sync};
    use crate::store::{Store, TestDir};
    use inlet_shared::event::Event;

    #[tokio::test]
    async fn a_backup_holds_what_was_stored_and_is_not_overwritten_without_force() {
        let dir = TestDir::new();
        let options = Options { sync: Sync::Normal, queue: 16, readers: 1, ..Options::new(dir.path().join("data")) };
        let store = SqliteStore::open(&options).unwrap();
        let events: Vec<Event> = (0..50).map(|i| Event::new(format!("e{i}"), "/s", "t")).collect();
        assert_eq!(store.append(&events, None).await.unwrap().accepted(), 50);
        let out = dir.path().join("copy.sqlite3");
        // While the store is open (its lock held, its WAL not checkpointed).
        let copied = backup(&options.dir, &out, false).unwrap();
        assert_eq!(copied.events, 50);
        assert_eq!(copied.bytes, std::fs::metadata(&out).unwrap().len());
        assert!(!partial_path(&out).exists());
        let copy = Connection::open(&out).unwrap();
        let n: i64 = copy.query_row("SELECT COUNT(DISTINCT id) FROM events", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 50);
        let version: i64 = copy.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, schema::VERSION);
        drop(copy);

        let before = std::fs::read(&out).unwrap();
        assert!(matches!(backup(&options.dir, &out, false), Err(BackupError::Exists(_))));
        assert!(std::fs::read(&out).unwrap() == before, "left as it was");
        assert_eq!(store.append(&[Event::new("late", "/s", "t")], None).await.unwrap().accepted(), 1);
        assert_eq!(backup(&options.dir, &out, true).unwrap().events, 51);
        store.close().await.unwrap();

        // Never onto the live file, even with --force.
        for name in [FILE_NAME, "events.sqlite3-wal", "events.sqlite3.partial"] {
            let onto = options.dir.join(name);
            assert!(matches!(backup(&options.dir, &onto, true), Err(BackupError::OntoTheStore(_))), "{name}");
        }
        let sideways = options.dir.join("..").join("data").join(FILE_NAME);
        assert!(matches!(backup(&options.dir, &sideways, true), Err(BackupError::OntoTheStore(_))));

        let missing = dir.path().join("nothing-here");
        assert!(matches!(backup(&missing, &dir.path().join("x"), false), Err(BackupError::NoStore(_))));
    }
}
