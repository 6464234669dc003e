//! `inlet-server backup` (issue 16 §6) with the real binaries: a backup
//! taken while `inlet-client` and a second writer post holds every event
//! acknowledged before it started, each once; the copy opens with SQLite
//! and with `inlet-server --data-dir` (the restore the docs describe); an
//! existing OUT is kept unless `--force`.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use inlet_shared::http::ClientRequest;
use inlet_tests::{binary, event_json, stored_ids, Server};
use rusqlite::Connection;

fn backup(data_dir: &Path, out: &Path, force: bool) -> Output {
    let mut cmd = Command::new(binary("inlet-server"));
    cmd.arg("backup").arg("--data-dir").arg(data_dir).arg(out);
    if force {
        cmd.arg("--force");
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

/// Every id in the copy with how often it is there.
fn ids_in(copy: &Path) -> std::collections::HashMap<String, i64> {
    let c = Connection::open(copy).unwrap();
    let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let mut stmt = c.prepare("SELECT id, COUNT(*) FROM events GROUP BY source, id").unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

#[test]
fn a_backup_under_load_holds_every_event_acknowledged_before_it_started() {
    let s = Server::start(&["--store", "sqlite", "--sync", "normal"]);
    let work = tempfile::tempdir().unwrap();
    // Load: inlet-client posting 30,000 events in batches...
    let lines: Vec<String> = (0..30_000).map(|i| event_json(&format!("bulk-{i}"), "t.bulk")).collect();
    let file = work.path().join("bulk.ndjson");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let mut client = Command::new(binary("inlet-client"))
        .args(["post", file.to_str().unwrap(), "--server", &s.addr.to_string(), "--batch", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // ...and a writer of single events that records what was acknowledged.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, addr) = (acked.clone(), stop.clone(), s.addr);
        std::thread::spawn(move || {
            let mut conn = inlet_tests::Conn::open(addr);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("single-{n}");
                let req = ClientRequest::post("/events", "application/json", event_json(&id, "t"));
                let res = conn.try_exchange(req).unwrap();
                assert_eq!(res.status, 202);
                acked.lock().unwrap().push(id);
                n += 1;
            }
        })
    };
    while acked.lock().unwrap().len() < 200 {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Acknowledged before the backup starts: the writer's, and whatever a
    // read finds committed now (the client's batches so far).
    let mut before: HashSet<String> = stored_ids(&s).into_keys().collect();
    before.extend(acked.lock().unwrap().iter().cloned());
    let out = work.path().join("copy.sqlite3");
    let done = backup(s.data_dir.path(), &out, false);
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert_eq!(done.status.code(), Some(0), "{stdout} {}", String::from_utf8_lossy(&done.stderr));
    assert!(stdout.starts_with("backed up ") && stdout.contains(" events ("), "{stdout}");
    // Writes go on after the backup (the writer keeps being acknowledged).
    let at_end = acked.lock().unwrap().len();
    while acked.lock().unwrap().len() < at_end + 50 {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(client.wait().unwrap().success());

    let copied = ids_in(&out);
    let missing: Vec<&String> = before.iter().filter(|id| !copied.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged before the backup are missing: {:?}",
        missing.len(),
        &missing[..5.min(missing.len())]
    );
    assert!(copied.values().all(|n| *n == 1), "an event is in the copy twice");
    let reported: usize = stdout["backed up ".len()..].split(' ').next().unwrap().parse().unwrap();
    assert_eq!(reported, copied.len());
    // The server went on: everything is stored, once.
    let stored = stored_ids(&s);
    assert!(stored.len() >= 30_000 + 250 && stored.values().all(|n| *n == 1));
    assert!(copied.len() < stored.len(), "the copy is the snapshot it started from, not a live view");

    // Restore: the copy as the events.sqlite3 of a data directory.
    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&out, restored.path().join("events.sqlite3")).unwrap();
    let r = Server::start_in(restored, &["--store", "sqlite"]);
    let served = stored_ids(&r);
    assert_eq!(served.len(), copied.len());
    assert!(before.iter().all(|id| served.get(id) == Some(&1)));
    assert_eq!(r.post("/events", "application/json", event_json("after-restore", "t")).status, 202);
}

#[test]
fn an_existing_out_is_kept_unless_force() {
    let s = Server::start(&["--store", "sqlite", "--sync", "normal"]);
    assert_eq!(s.post("/events", "application/json", event_json("one", "t")).status, 202);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("copy.sqlite3");
    std::fs::write(&out, b"precious").unwrap();
    let refused = backup(s.data_dir.path(), &out, false);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains(&format!("{} exists; give --force to replace it", out.display())), "{stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    let forced = backup(s.data_dir.path(), &out, true);
    assert_eq!(forced.status.code(), Some(0), "{}", String::from_utf8_lossy(&forced.stderr));
    assert_eq!(ids_in(&out).into_keys().collect::<Vec<_>>(), ["one"]);
    assert!(!work.path().join("copy.sqlite3.partial").exists());
    // No store in the directory: a clear error, nothing written.
    let empty = tempfile::tempdir().unwrap();
    let none = backup(empty.path(), &work.path().join("none.sqlite3"), false);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("there is no event store in"));
    assert!(!work.path().join("none.sqlite3").exists());
}
