//! One owner per data directory and what a data directory may hold (issue
//! 16 §5), with the real binary: a second server on the same `--data-dir`
//! exits at start naming the directory and the holder while the first goes
//! on; a file that is not SQLite, another program's SQLite database, and a
//! newer schema version are refused and left byte for byte; a store made
//! before schema versions is migrated.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use inlet_tests::{binary, event_json, stored_ids, Server, PATIENCE};
use rusqlite::Connection;

const DB: &str = "events.sqlite3";

/// Runs `inlet-server --store sqlite --data-dir dir` expecting it to exit
/// at start; its exit code and stderr.
fn refused_on(dir: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(binary("inlet-server"))
        .args(["--listen", "127.0.0.1:0", "--store", "sqlite", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started on {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.stdout.is_empty(), "no `listening on`: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code(), stderr)
}

/// Stops `s` with SIGTERM and hands back its data directory.
fn stop(mut s: Server) -> tempfile::TempDir {
    s.signal("TERM");
    assert_eq!(s.wait(PATIENCE).expect("exited").code(), Some(0));
    s.kill9()
}

#[test]
fn a_second_server_on_the_same_data_dir_exits_naming_it_and_the_first_goes_on() {
    let first = Server::start(&["--store", "sqlite", "--sync", "normal"]);
    assert_eq!(first.post("/events", "application/json", event_json("one", "t")).status, 202);
    let (code, stderr) = refused_on(first.data_dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    let expected = format!(
        "the data directory {} is in use by another inlet-server (pid {})",
        first.data_dir.path().display(),
        first.pid()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    // The first is still serving, and what it stored is whole.
    assert_eq!(first.post("/events", "application/json", event_json("two", "t")).status, 202);
    let stored = stored_ids(&first);
    assert_eq!((stored.get("one"), stored.get("two"), stored.len()), (Some(&1), Some(&1), 2));
    // Once the first has stopped, the directory can be used again.
    let dir = stop(first);
    let again = Server::start_in(dir, &["--store", "sqlite"]);
    assert_eq!(stored_ids(&again).len(), 2);
}

/// Writes `bytes` as the database of a fresh directory, expects the server
/// to refuse it with `message`, and checks it was left byte for byte.
fn refused_and_untouched(make: impl FnOnce(&Path), message: &str) {
    let dir = tempfile::tempdir().unwrap();
    make(&dir.path().join(DB));
    let before = std::fs::read(dir.path().join(DB)).unwrap();
    let (code, stderr) = refused_on(dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(message), "expected {message:?} in: {stderr}");
    assert!(stderr.contains(&dir.path().join(DB).display().to_string()), "names the file: {stderr}");
    assert!(std::fs::read(dir.path().join(DB)).unwrap() == before, "the refused file was changed");
    for extra in ["-wal", "-shm", "-journal"] {
        assert!(!dir.path().join(format!("{DB}{extra}")).exists(), "{extra} left beside it");
    }
}

#[test]
fn a_file_that_is_not_sqlite_or_is_corrupt_is_refused_and_left_byte_for_byte() {
    refused_and_untouched(
        |path| std::fs::write(path, b"id,source\n1,/a\n".repeat(500)).unwrap(),
        "is not an inlet event store (not an SQLite database); it was left untouched",
    );
    // A real SQLite header, the rest of its pages garbage.
    refused_and_untouched(
        |path| {
            let c = Connection::open(path).unwrap();
            c.execute_batch(
                "CREATE TABLE events (seq INTEGER PRIMARY KEY, x TEXT); INSERT INTO events VALUES (1, 'a');",
            )
            .unwrap();
            drop(c);
            let mut bytes = std::fs::read(path).unwrap();
            bytes[100..].fill(0x5a);
            std::fs::write(path, bytes).unwrap();
        },
        "is not an inlet event store (corrupt or not an SQLite database",
    );
}

#[test]
fn another_programs_sqlite_database_is_refused_and_left_byte_for_byte() {
    refused_and_untouched(
        |path| {
            let c = Connection::open(path).unwrap();
            c.execute_batch(
                "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'a');",
            )
            .unwrap();
        },
        "is not an inlet event store (it has no `events` table; its tables: users)",
    );
}

#[test]
fn a_newer_schema_version_is_refused_naming_it() {
    let s = Server::start(&["--store", "sqlite", "--sync", "normal"]);
    assert_eq!(s.post("/events", "application/json", event_json("kept", "t")).status, 202);
    let dir = stop(s);
    let path = dir.path().join(DB);
    let c = Connection::open(&path).unwrap();
    let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, 3, "a store made by this binary has the current version");
    c.pragma_update(None, "user_version", 7).unwrap();
    drop(c);
    let before = std::fs::read(&path).unwrap();
    let (code, stderr) = refused_on(dir.path());
    assert_eq!(code, Some(1));
    assert!(stderr.contains("it has schema version 7, newer than the 3 this inlet-server knows"), "{stderr}");
    assert!(std::fs::read(&path).unwrap() == before, "the refused file was changed");
}

#[test]
fn a_store_made_before_schema_versions_is_migrated_and_keeps_its_events() {
    let dir = tempfile::tempdir().unwrap();
    {
        let old = Connection::open(dir.path().join(DB)).unwrap();
        old.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE events (seq INTEGER PRIMARY KEY, source TEXT NOT NULL, id TEXT NOT NULL,
                 type TEXT NOT NULL, received_at TEXT NOT NULL, event TEXT NOT NULL, UNIQUE (source, id));
             CREATE INDEX events_by_type ON events (type, seq);
             CREATE INDEX events_by_source ON events (source, seq);",
        )
        .unwrap();
        let json = event_json("old", "t");
        old.execute(
            "INSERT INTO events (source, id, type, received_at, event) VALUES ('/tests', 'old', 't', '2026-01-01T00:00:00Z', ?1)",
            [&json],
        )
        .unwrap();
    }
    let s = Server::start_in(dir, &["--store", "sqlite"]);
    // The old event is there; a repeat of it is still a duplicate.
    let res = s.post("/events", "application/json", format!("[{},{}]", event_json("old", "t"), event_json("new", "t")));
    assert_eq!((res.status, &res.body[..]), (202, &br#"{"accepted":1,"duplicates":1}"#[..]));
    let stored = stored_ids(&s);
    assert_eq!((stored.get("old"), stored.get("new"), stored.len()), (Some(&1), Some(&1), 2));
    let dir = stop(s);
    let c = Connection::open(dir.path().join(DB)).unwrap();
    let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    let app: i64 = c.pragma_query_value(None, "application_id", |r| r.get(0)).unwrap();
    assert_eq!((version, app), (3, 0x696e_6c74));
    let token_column: i64 =
        c.query_row("SELECT COUNT(*) FROM pragma_table_info('events') WHERE name = 'token'", [], |r| r.get(0)).unwrap();
    assert_eq!(token_column, 1);
}
