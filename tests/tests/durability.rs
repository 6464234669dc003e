//! The default SQLite store (SPEC §5): acknowledged events survive `kill -9`
//! and a restart, exactly once; dedupe across restarts; all-or-nothing
//! batches; paging a large log; a full store answers 503 and acknowledges
//! nothing; a data dir that cannot be opened is a clear error.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use inlet_shared::http::ClientRequest;
use inlet_tests::{binary, client, event_json, json, stored_ids, Conn, Server};

const SQLITE: [&str; 2] = ["--store", "sqlite"];

/// A cheap pseudo-random number from the clock (no seed to manage: each
/// run kills at a different moment, which is the point).
fn jitter(max_ms: u64) -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    (nanos / 1000) % max_ms
}

/// Keeps posting single events on one keep-alive connection until the
/// connection breaks; records what was sent and what was acknowledged.
fn writer(
    addr: std::net::SocketAddr,
    name: String,
    sent: Arc<Mutex<HashSet<String>>>,
    acked: Arc<Mutex<HashSet<String>>>,
    stop: Arc<AtomicBool>,
) {
    let Ok(mut conn) = Conn::try_open(addr) else { return };
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let id = format!("{name}-{n}");
        // Every other request is a batch of two, to cover multi-row jobs.
        let body = if n % 2 == 0 {
            event_json(&id, "t.crash")
        } else {
            format!("[{},{}]", event_json(&id, "t.crash"), event_json(&format!("{id}-b"), "t.crash"))
        };
        let ids: Vec<String> = if n % 2 == 0 { vec![id.clone()] } else { vec![id.clone(), format!("{id}-b")] };
        sent.lock().unwrap().extend(ids.iter().cloned());
        // The server is killed mid-load: a lost connection ends this writer.
        let Ok(res) = conn.try_exchange(ClientRequest::post("/events", "application/json", body)) else { return };
        if res.status == 202 {
            acked.lock().unwrap().extend(ids);
        }
    }
}

#[test]
fn acknowledged_events_survive_kill_9_exactly_once() {
    let mut data_dir = tempfile::tempdir().unwrap();
    let sent = Arc::new(Mutex::new(HashSet::new()));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    for cycle in 0..4 {
        let s = Server::start_in(data_dir, &SQLITE);
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..6)
            .map(|w| {
                let (addr, sent, acked, stop) = (s.addr, sent.clone(), acked.clone(), stop.clone());
                std::thread::spawn(move || writer(addr, format!("c{cycle}w{w}"), sent, acked, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150 + jitter(500)));
        data_dir = s.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        // Restart on the same data dir and check the log.
        let s = Server::start_in(data_dir, &SQLITE);
        let stored = stored_ids(&s);
        let acked_now = acked.lock().unwrap().clone();
        let sent_now = sent.lock().unwrap().clone();
        assert!(!acked_now.is_empty(), "cycle {cycle}: nothing was acknowledged before the kill");
        for id in &acked_now {
            assert_eq!(stored.get(id), Some(&1), "cycle {cycle}: acknowledged {id} must be stored exactly once");
        }
        for (id, n) in &stored {
            assert!(sent_now.contains(id), "cycle {cycle}: {id} was never sent");
            assert_eq!(*n, 1, "cycle {cycle}: {id} stored {n} times");
        }
        // Batches are atomic: both events of a batch or neither.
        for id in stored.keys().filter(|id| id.ends_with("-b")) {
            assert!(stored.contains_key(id.trim_end_matches("-b")), "half a batch stored: {id}");
        }
        data_dir = s.kill9();
    }
}

#[test]
fn dedupe_holds_across_a_restart() {
    let s = Server::start(&SQLITE);
    let body = format!("[{},{}]", event_json("r1", "t"), event_json("r2", "t"));
    assert_eq!(
        json(&s.post("/events", "application/json", body.clone())),
        serde_json::json!({"accepted": 2, "duplicates": 0})
    );
    let dir = s.kill9();
    let s = Server::start_in(dir, &SQLITE);
    let again = format!("[{},{},{}]", event_json("r1", "t"), event_json("r3", "t"), event_json("r3", "t"));
    assert_eq!(
        json(&s.post("/events", "application/json", again)),
        serde_json::json!({"accepted": 1, "duplicates": 2})
    );
    let page = json(&s.get("/events"));
    let seqs: Vec<u64> = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3], "sequence numbers resume after the restart");
}

#[test]
fn graceful_shutdown_keeps_everything_and_exits_0() {
    let mut s = Server::start(&SQLITE);
    assert_eq!(s.post("/events", "application/json", event_json("g1", "t")).status, 202);
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(10)).and_then(|st| st.code()), Some(0));
    let dir = s.kill9();
    let s = Server::start_in(dir, &SQLITE);
    assert_eq!(stored_ids(&s).len(), 1);
}

#[test]
fn invalid_batch_stores_nothing() {
    let s = Server::start(&SQLITE);
    let body = format!(r#"[{},{{"specversion":"1.0","id":"x","source":"/s","type":""}}]"#, event_json("ok", "t"));
    assert_eq!(s.post("/events", "application/json", body).status, 422);
    assert!(stored_ids(&s).is_empty());
}

#[test]
fn paging_through_ten_thousand_events_with_filters() {
    let s = Server::start(&SQLITE);
    for chunk in 0..10 {
        let body: Vec<String> = (0..1000)
            .map(|i| {
                let n = chunk * 1000 + i;
                let ty = ["t.a", "t.b", "t.c", "t.d"][n % 4];
                format!(r#"{{"specversion":"1.0","id":"p{n}","source":"/src/{}","type":"{ty}","data":{n}}}"#, n % 10)
            })
            .collect();
        let res = s.post("/events", "application/x-ndjson", body.join("\n"));
        assert_eq!(json(&res), serde_json::json!({"accepted": 1000, "duplicates": 0}));
    }
    // All of type t.c (2,500), 300 at a time, ascending, no gaps, no repeats.
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = json(&s.get(&format!("/events?type=t.c&limit=300&after={after}")));
        for e in page["events"].as_array().unwrap() {
            assert_eq!(e["event"]["type"], "t.c");
            seen.push(e["event"]["data"].as_u64().unwrap());
        }
        match page["next_after"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    let expected: Vec<u64> = (0..10_000).filter(|n| n % 4 == 2).collect();
    assert_eq!(seen, expected);
    // Both filters at once.
    let page = json(&s.get("/events?type=t.a&source=%2Fsrc%2F4&limit=10000"));
    let data: Vec<u64> =
        page["events"].as_array().unwrap().iter().map(|e| e["event"]["data"].as_u64().unwrap()).collect();
    assert_eq!(data, (0..10_000).filter(|n| n % 4 == 0 && n % 10 == 4).collect::<Vec<_>>());
    assert_eq!(page["next_after"], serde_json::Value::Null);
}

#[test]
fn a_full_store_answers_503_and_acknowledges_nothing() {
    let s = Server::start(&["--store", "sqlite", "--max-store-bytes", "65536"]);
    let mut stored_acks = 0;
    let mut refused = None;
    for n in 0..200 {
        let body: Vec<String> =
            (0..20).map(|i| event_json(&format!("full-{n}-{i}-{}", "x".repeat(100)), "t")).collect();
        let res = s.post("/events", "application/json", format!("[{}]", body.join(",")));
        match res.status {
            202 => stored_acks += 20,
            503 => {
                refused = Some(res);
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let res = refused.expect("the capped store filled up");
    assert_eq!(res.headers.get_str("retry-after"), Some("1"));
    assert_eq!(json(&res)["type"], "urn:inlet:problem:store-unavailable");
    // The server keeps running, and what it acknowledged is there.
    assert_eq!(s.get("/health").status, 200);
    assert_eq!(stored_ids(&s).len(), stored_acks);
    assert_eq!(s.stats()["accepted"], stored_acks as u64);
}

#[test]
fn a_data_dir_that_cannot_be_opened_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"not a directory").unwrap();
    let out = std::process::Command::new(binary("inlet-server"))
        .args(["--listen", "127.0.0.1:0", "--store", "sqlite", "--data-dir"])
        .arg(&not_a_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot create the data directory"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // A corrupt database file is refused the same way.
    let corrupt = tempfile::tempdir().unwrap();
    std::fs::write(corrupt.path().join("events.sqlite3"), vec![7u8; 8192]).unwrap();
    let out = std::process::Command::new(binary("inlet-server"))
        .args(["--listen", "127.0.0.1:0", "--store", "sqlite", "--data-dir"])
        .arg(corrupt.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open the event store"), "{stderr}");
}

#[test]
fn post_survives_a_server_restart_and_resends_only_what_was_lost() {
    let s = Server::start(&SQLITE);
    let port = s.addr.port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.ndjson");
    let lines: Vec<String> = (0..20_000).map(|i| event_json(&format!("restart-{i}"), "t.restart")).collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    let mut post = std::process::Command::new(binary("inlet-client"))
        .args([
            "post",
            path.to_str().unwrap(),
            "--server",
            &s.addr.to_string(),
            "--pipeline",
            "4",
            "--batch",
            "20",
            "--retries",
            "50",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(post.try_wait().unwrap().is_none(), "post finished before the kill: the test would prove nothing");
    let data_dir = s.kill9();
    std::thread::sleep(Duration::from_millis(300));
    let s = Server::start_in(data_dir, &["--store", "sqlite", "--listen", &listen]);
    let out = post.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("failed: 0\n") && stdout.contains("rejected: 0\n"), "{stdout}");
    let stored = stored_ids(&s);
    assert_eq!(stored.len(), 20_000);
    assert!(stored.values().all(|n| *n == 1));
    // What the client counts as accepted + duplicates covers every line.
    let count = |key: &str| -> u64 {
        stdout.lines().find_map(|l| l.strip_prefix(key)).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    };
    assert_eq!(count("accepted:") + count("duplicates:"), 20_000, "{stdout}");
    let (_, stats, _) = client(s.addr, &["stats"], None);
    assert!(stats.contains("\"accepted\""));
}
