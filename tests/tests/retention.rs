//! The SQLite store over time (issue 16): `--retention` deletes old events
//! and the file stops growing, `--when-full drop-oldest` keeps answering
//! `202` under a small cap and keeps the newest events, `refuse` still
//! answers `503`, and a deleted event's (source, id) is a duplicate for the
//! `--dedupe-window`, then accepted again.
//!
//! Waits poll for the state they expect within generous bounds; nothing
//! here measures time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use inlet_shared::http::ClientRequest;
use inlet_tests::{json, stored_ids, Conn, Server, PATIENCE};

/// An event of about `size` bytes with the given id.
fn event(id: &str, size: usize) -> String {
    format!(r#"{{"specversion":"1.0","id":"{id}","source":"/retention","type":"t","data":"{}"}}"#, "p".repeat(size))
}

/// Posts `ids` as one NDJSON batch of events of about `size` bytes; the answer.
fn post(conn: &mut Conn, ids: &[String], size: usize) -> (u16, serde_json::Value) {
    let body: Vec<String> = ids.iter().map(|id| event(id, size)).collect();
    conn.send(ClientRequest::post("/events", "application/x-ndjson", body.join("\n")));
    let res = conn.recv();
    (res.status, json(&res))
}

/// Polls `check` every 50 ms until it holds; panics after `within`.
fn wait_until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn file_size(s: &Server) -> u64 {
    std::fs::metadata(s.data_dir.path().join("events.sqlite3")).expect("the store file").len()
}

fn round_ids(round: usize, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("r{round}-{i}")).collect()
}

/// Rounds of the ingest loop, each a batch of `PER_ROUND` events of ~1 KiB
/// and a pause of about a second.
const ROUNDS: usize = 10;
const PER_ROUND: usize = 400;

#[test]
fn retention_deletes_old_events_and_the_file_stops_growing() {
    let s = Server::start(&["--store", "sqlite", "--sync", "normal", "--retention", "2s", "--dedupe-window", "0"]);
    let mut conn = s.connect();
    let mut sizes = Vec::new();
    for round in 0..ROUNDS {
        let ids = round_ids(round, PER_ROUND);
        assert_eq!(post(&mut conn, &ids, 1000), (202, serde_json::json!({"accepted": PER_ROUND, "duplicates": 0})));
        // This round is stored whole, at once.
        let stored = stored_ids(&s);
        assert!(ids.iter().all(|id| stored.get(id) == Some(&1)), "round {round} is stored");
        if round >= 3 {
            // Events of three rounds ago (3 s or more, past the 2 s
            // retention) disappear.
            let old: Vec<String> = (0..=round - 3).flat_map(|r| round_ids(r, PER_ROUND)).collect();
            wait_until(PATIENCE, "rounds 3 back are deleted", || {
                let stored = stored_ids(&s);
                old.iter().all(|id| !stored.contains_key(id))
            });
            sizes.push(file_size(&s));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // Each round adds ~400 KiB of events: without retention the file would
    // grow by that every round. With it, the space of deleted events is
    // reused: past the first rounds it grows by less than one round in all.
    eprintln!("file sizes after each deletion round: {sizes:?}");
    let round_bytes = (PER_ROUND * 1000) as u64;
    let (first, last) = (sizes[1], *sizes.last().unwrap());
    assert!(last < first + round_bytes, "the file kept growing: {sizes:?}");

    // Once ingest stops every event goes but the newest, which keeps the
    // sequence numbers going (see docs/storage.md).
    let newest = format!("r{}-{}", ROUNDS - 1, PER_ROUND - 1);
    wait_until(PATIENCE, "all but the newest event are deleted", || {
        stored_ids(&s) == HashMap::from([(newest.clone(), 1)])
    });
    // New events continue the numbering after it.
    let page = json(&s.get("/events?limit=10"));
    let newest_seq = page["events"][0]["seq"].as_u64().expect("a seq");
    assert_eq!(newest_seq, (ROUNDS * PER_ROUND) as u64);
    assert_eq!(post(&mut conn, &["after".to_string()], 10).0, 202);
    let page = json(&s.get(&format!("/events?after={newest_seq}")));
    assert_eq!(page["events"][0]["seq"].as_u64(), Some(newest_seq + 1));
    assert_eq!(page["events"][0]["event"]["id"], "after");
}

#[test]
fn drop_oldest_keeps_accepting_under_a_small_cap_and_keeps_the_newest() {
    let s = Server::start(&[
        "--store",
        "sqlite",
        "--sync",
        "normal",
        "--max-store-bytes",
        "524288",
        "--when-full",
        "drop-oldest",
    ]);
    let mut conn = s.connect();
    // 2,000 events of ~1.5 KiB (3 MB) into a 512 KiB store, one a request.
    const N: usize = 2000;
    for i in 0..N {
        let answer = post(&mut conn, &[format!("e{i}")], 1500);
        assert_eq!(answer, (202, serde_json::json!({"accepted": 1, "duplicates": 0})), "event {i}");
    }
    let stored = stored_ids(&s);
    // What is kept is the newest events, each once, without a gap: e{k}
    // to e{N-1} for some k.
    let k = N - stored.len();
    let expected: HashMap<String, usize> = (k..N).map(|i| (format!("e{i}"), 1)).collect();
    assert_eq!(stored, expected);
    assert!(stored.len() >= 100 && k > 0, "{} kept", stored.len());
    assert!(file_size(&s) <= 524_288, "{} bytes", file_size(&s));

    // A request over half the cap (300 events of ~1 KiB) is refused as one
    // that can never fit (413, no Retry-After), and nothing is deleted for it.
    let big: Vec<String> = (0..300).map(|i| format!("big{i}")).collect();
    let body: Vec<String> = big.iter().map(|id| event(id, 1000)).collect();
    conn.send(ClientRequest::post("/events", "application/x-ndjson", body.join("\n")));
    let res = conn.recv();
    let problem = json(&res);
    assert_eq!(res.status, 413);
    assert_eq!(res.headers.get("retry-after"), None);
    assert_eq!(problem["type"], "urn:inlet:problem:request-over-store-cap");
    assert_eq!(
        problem["detail"],
        "the request is larger than half the store's cap: send it in smaller requests; nothing was stored"
    );
    assert_eq!(stored_ids(&s), expected);
}

#[test]
fn refuse_mode_still_answers_503_when_full() {
    let s = Server::start(&[
        "--store",
        "sqlite",
        "--sync",
        "normal",
        "--max-store-bytes",
        "524288",
        "--when-full",
        "refuse",
    ]);
    let mut conn = s.connect();
    let mut accepted = Vec::new();
    let mut refused = None;
    for i in 0..2000 {
        let id = format!("e{i}");
        match post(&mut conn, std::slice::from_ref(&id), 1500) {
            (202, _) => accepted.push(id),
            (status, problem) => {
                refused = Some((status, problem));
                break;
            }
        }
    }
    let (status, problem) = refused.expect("the capped store filled up");
    assert_eq!(status, 503);
    assert_eq!(problem["detail"], "the store is full; nothing was stored, retry later");
    // Nothing was deleted to make room.
    let expected: HashMap<String, usize> = accepted.into_iter().map(|id| (id, 1)).collect();
    assert_eq!(stored_ids(&s), expected);
}

/// Sends `id` until it is no longer stored (deleted by the retention).
fn wait_deleted(s: &Server, id: &str) {
    wait_until(PATIENCE, "the event is deleted", || !stored_ids(s).contains_key(id));
}

#[test]
fn a_deleted_event_is_a_duplicate_within_the_dedupe_window_then_accepted_again() {
    let s = Server::start(&["--store", "sqlite", "--sync", "normal", "--retention", "1s", "--dedupe-window", "3s"]);
    let mut conn = s.connect();
    let a = vec!["a".to_string()];
    assert_eq!(post(&mut conn, &a, 10).0, 202);
    // A newer event, so that `a` is not the newest (which is kept).
    assert_eq!(post(&mut conn, &["b".to_string()], 10).0, 202);
    wait_deleted(&s, "a");
    // Within the window: a duplicate, not stored.
    assert_eq!(post(&mut conn, &a, 10), (202, serde_json::json!({"accepted": 0, "duplicates": 1})));
    assert!(!stored_ids(&s).contains_key("a"));
    // Once the window has passed: accepted again, stored once.
    let mut answers = Vec::new();
    wait_until(PATIENCE, "the key is forgotten", || {
        let (status, body) = post(&mut conn, &a, 10);
        answers.push((status, body["accepted"].as_u64()));
        body["accepted"] == 1
    });
    assert!(answers[..answers.len() - 1].iter().all(|a| *a == (202, Some(0))), "{answers:?}");
    assert_eq!(stored_ids(&s).get("a"), Some(&1));
}

#[test]
fn with_a_dedupe_window_of_zero_a_deleted_event_is_accepted_again_at_once() {
    let s = Server::start(&["--store", "sqlite", "--sync", "normal", "--retention", "1s", "--dedupe-window", "0"]);
    let mut conn = s.connect();
    let a = vec!["a".to_string()];
    assert_eq!(post(&mut conn, &a, 10).0, 202);
    assert_eq!(post(&mut conn, &["b".to_string()], 10).0, 202);
    wait_deleted(&s, "a");
    assert_eq!(post(&mut conn, &a, 10), (202, serde_json::json!({"accepted": 1, "duplicates": 0})));
    assert_eq!(stored_ids(&s).get("a"), Some(&1));
}

#[test]
fn the_memory_store_keeps_a_retention_too() {
    let s = Server::start(&["--store", "memory", "--retention", "1s", "--dedupe-window", "0"]);
    let mut conn = s.connect();
    let ids = round_ids(0, 50);
    assert_eq!(post(&mut conn, &ids, 100).0, 202);
    assert_eq!(stored_ids(&s).len(), 50);
    wait_until(PATIENCE, "every event is deleted", || stored_ids(&s).is_empty());
    // Numbering goes on after the deleted events.
    assert_eq!(post(&mut conn, &["later".to_string()], 10).0, 202);
    let page = json(&s.get("/events"));
    assert_eq!(page["events"][0]["seq"].as_u64(), Some(51));
}
