//! Issue 18 item 5: refused events kept for inspection (`--keep-rejected`,
//! `GET /rejected`), against the real server on the memory, SQLite and
//! JetStream stores: exactly the failing events of a mixed run with the
//! errors of their `422`, filters and paging, nothing kept without the
//! flag, the cap (oldest dropped), retention, a version-2 store migrated,
//! token scopes.
//!
//! The JetStream tests need `INLET_NATS_SERVER` (as tests/tests/jetstream.rs);
//! ignored otherwise, run with `--include-ignored`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use inlet_shared::http::ClientRequest;
use inlet_tests::{json, stored_ids, Nats, NatsConn, Server, PATIENCE};
use serde_json::{json, Value};

const ORDER: &str = r#"{
  "type": "object",
  "required": ["qty"],
  "properties": {"qty": {"type": "integer", "minimum": 1}}
}"#;

fn schema_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("com.example.order.json"), ORDER).unwrap();
    dir
}

fn order(id: &str, qty: i64) -> String {
    format!(r#"{{"specversion":"1.0","id":"{id}","source":"/shop","type":"com.example.order","data":{{"qty":{qty}}}}}"#)
}

fn start(store: &str, schemas: &tempfile::TempDir, extra: &[&str]) -> Server {
    let mut args = vec!["--store", store, "--sync", "normal", "--schemas", schemas.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// `GET /rejected` with `query`, as JSON (status 200 asserted).
fn rejected(s: &Server, query: &str) -> Value {
    let res = s.get(&format!("/rejected{query}"));
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    json(&res)
}

/// The rows of `/rejected` once there are `n` (the SQLite log writes them
/// off the answer's path, so they may come a moment after the `422`).
fn wait_rows(s: &Server, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let page = rejected(s, "?limit=10000");
        let rows = page["rejected"].as_array().unwrap().clone();
        if rows.len() >= n || Instant::now() > deadline {
            assert_eq!(rows.len(), n, "{page}");
            return rows;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn binary_order(qty: i64) -> ClientRequest {
    ClientRequest::post("/events", "application/json", format!(r#"{{"qty":{qty}}}"#))
        .header("ce-specversion", "1.0")
        .header("ce-id", "bin1")
        .header("ce-source", "/shop")
        .header("ce-type", "com.example.order")
}

/// An inlet server on JetStream (stream `stream`, subjects `<stream lowercased>.>`)
/// with `schemas`, once it answers ready.
fn start_jetstream(nats: &Nats, stream: &str, schemas: &tempfile::TempDir, extra: &[&str]) -> Server {
    let url = nats.url();
    let prefix = stream.to_lowercase();
    let mut args = vec!["--nats-url", &url, "--stream", stream, "--subject-prefix", &prefix];
    args.extend_from_slice(extra);
    let s = start("jetstream", schemas, &args);
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.get("/readyz").status != 200 {
        assert!(Instant::now() < deadline, "JetStream never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    s
}

/// `$JS.API.STREAM.INFO.<stream>`.
fn stream_info(nats: &Nats, stream: &str) -> Value {
    NatsConn::open(nats).api(&format!("STREAM.INFO.{stream}"), json!({}))
}

/// Waits until the configuration of `stream` has `key` = `expected`: the
/// rejected-events stream is made (or updated) at start only if NATS is
/// connected by then, otherwise at its first use (a read of `/rejected` is
/// one), and `/readyz` answers for the events stream only.
fn wait_stream_config(nats: &Nats, stream: &str, key: &str, expected: Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = stream_info(nats, stream);
        if info["config"][key] == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{stream}: {key} never {expected}: {info}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mixed_run(store: &str) {
    let schemas = schema_dir();
    let s = start(store, &schemas, &["--keep-rejected"]);
    mixed_run_on(&s);
    let stats = s.stats();
    assert_eq!(stats["rejected_events"]["kept"], 5, "{stats}");
    assert_eq!(stats["rejected_events"]["dropped"], json!({"cap":0,"queue":0,"retention":0}));
    let metrics = String::from_utf8(s.get("/metrics").body.to_vec()).unwrap();
    assert!(metrics.contains("inlet_rejected_events_kept 5\n"), "{metrics}");
    assert!(metrics.contains("inlet_rejected_events_dropped_total{reason=\"cap\"} 0\n"), "{metrics}");
}

/// The mixed run through `s` (started with `--keep-rejected` and
/// [`schema_dir`]): the rows, their errors, filters and paging.
fn mixed_run_on(s: &Server) {
    // Good events: stored, never in /rejected.
    assert_eq!(s.post("/events", "application/cloudevents+json", order("g1", 1)).status, 202);
    // A batch with one schema failure: only that event is kept.
    let batch = format!("[{},\n  {} ,{}]", order("g2", 2), order("s1", 0), order("g3", 3));
    let res = s.post("/events", "application/cloudevents-batch+json", batch);
    assert_eq!(res.status, 422);
    let schema_errors = json(&res)["errors"].clone();
    // An envelope failure in a batch: only the event without an `id`.
    let no_id = r#"{"specversion":"1.0","source":"/shop","type":"com.example.order","data":{"qty":1}}"#;
    let res = s.post("/events", "application/json", format!("[{},{no_id}]", order("g4", 1)));
    assert_eq!(res.status, 422);
    let envelope_errors = json(&res)["errors"].clone();
    // NDJSON with a bad line (line 3; line 2 is blank), and an element that is not an object.
    let no_source = r#"{"specversion":"1.0","id":"n2","type":"com.example.order","data":{"qty":1}}"#;
    let res = s.post("/events", "application/x-ndjson", format!("{}\n\n{no_source}\r\n", order("g5", 1)));
    assert_eq!(res.status, 422);
    let ndjson_errors = json(&res)["errors"].clone();
    let res = s.post("/events", "application/json", format!("[{},42]", order("g6", 1)));
    assert_eq!(res.status, 422);
    let not_object_errors = json(&res)["errors"].clone();
    // Binary mode: the event is its headers as attributes plus its data.
    let res = s.request(binary_order(0));
    assert_eq!(res.status, 422);
    let binary_errors = json(&res)["errors"].clone();
    // Not kept: a body that is not JSON (400).
    assert_eq!(s.post("/events", "application/json", "[{").status, 400);

    let rows = wait_rows(s, 5);
    let seqs: Vec<u64> = rows.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    let view = |r: &Value| (r["reason"].clone(), r["mode"].clone(), r["errors"].clone(), r["event"].clone());
    assert_eq!(
        view(&rows[0]),
        (
            json!("schema-violation"),
            json!("batch"),
            schema_errors.clone(),
            serde_json::from_str(&order("s1", 0)).unwrap()
        )
    );
    assert_eq!(
        schema_errors,
        json!([{"pointer":"#/1/data/qty","keyword":"minimum","detail":"0 is less than the minimum of 1"}])
    );
    assert_eq!(
        view(&rows[1]),
        (json!("invalid-event"), json!("json"), envelope_errors.clone(), serde_json::from_str(no_id).unwrap())
    );
    assert_eq!(envelope_errors[0]["pointer"], "#/1/id");
    assert_eq!(
        view(&rows[2]),
        (json!("invalid-event"), json!("ndjson"), ndjson_errors.clone(), serde_json::from_str(no_source).unwrap())
    );
    assert_eq!((ndjson_errors[0]["pointer"].clone(), ndjson_errors[0]["line"].clone()), (json!("#/source"), json!(3)));
    assert_eq!(view(&rows[3]), (json!("invalid-event"), json!("json"), not_object_errors.clone(), json!("42")));
    assert_eq!(not_object_errors[0]["pointer"], "#/1");
    let binary_event = json!({"specversion":"1.0","id":"bin1","source":"/shop","type":"com.example.order",
        "datacontenttype":"application/json","data":{"qty":0}});
    assert_eq!(view(&rows[4]), (json!("schema-violation"), json!("binary"), binary_errors.clone(), binary_event));
    assert_eq!(binary_errors[0]["pointer"], "#/qty");
    assert_eq!(rows[0]["content_type"], "application/cloudevents-batch+json");
    assert_eq!(rows[0]["token"], Value::Null);
    assert!(rows[0]["received_at"].as_str().unwrap().ends_with('Z'), "{}", rows[0]);

    // The good events are stored, and only they.
    let mut stored: Vec<String> = stored_ids(s).into_keys().collect();
    stored.sort();
    assert_eq!(stored, vec!["g1"]);

    // Filters and paging, as /events has them.
    let page = rejected(s, "?limit=2");
    let page_seqs: Vec<u64> = page["rejected"].as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!((page_seqs, page["next_after"].clone(), page["enabled"].clone()), (vec![1, 2], json!(2), json!(true)));
    let page = rejected(s, "?limit=2&after=4");
    assert_eq!((page["rejected"].as_array().unwrap().len(), page["next_after"].clone()), (1, Value::Null));
    let page = rejected(s, "?type=com.example.order&source=%2Fshop");
    let page_seqs: Vec<u64> = page["rejected"].as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(page_seqs, vec![1, 2, 5], "the NDJSON event has no source, `42` has neither");
    assert_eq!(rejected(s, "?type=nope")["rejected"], json!([]));
    assert_eq!(s.get("/rejected?limit=0").status, 400);
    let head = s.request(ClientRequest { method: inlet_shared::http::Method::Head, ..ClientRequest::get("/rejected") });
    assert_eq!((head.status, head.body.len()), (200, 0));
}

#[test]
fn a_mixed_run_keeps_exactly_the_failing_events_memory() {
    mixed_run("memory");
}

#[test]
fn a_mixed_run_keeps_exactly_the_failing_events_sqlite() {
    mixed_run("sqlite");
}

#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn a_mixed_run_keeps_exactly_the_failing_events_jetstream() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let schemas = schema_dir();
    // Two types whose subjects are the same (`x_y`).
    for ty in ["x y", "x_y"] {
        std::fs::write(schemas.path().join(format!("{ty}.json")), ORDER).unwrap();
    }
    let s = start_jetstream(&nats, "MIXED", &schemas, &["--keep-rejected", "--retention", "1h"]);
    mixed_run_on(&s);
    // The rows are in their own stream, made as documented; the events stream holds only `g1`.
    let info = stream_info(&nats, "MIXED_REJECTED");
    let config = &info["config"];
    assert_eq!(config["subjects"], json!(["mixed_rejected.>"]), "{info}");
    assert_eq!(
        (config["max_age"].clone(), config["max_bytes"].clone(), config["discard"].clone()),
        (json!(3_600_000_000_000u64), json!(64 * 1024 * 1024), json!("old")),
        "{info}"
    );
    assert_eq!((config["storage"].clone(), config["num_replicas"].clone()), (json!("file"), json!(1)));
    assert_eq!(info["state"]["messages"], 5, "{info}");
    assert_eq!(stream_info(&nats, "MIXED")["state"]["messages"], 1);
    // /stats and /metrics show the rejected stream's counts (read from its
    // state every 500 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.stats()["rejected_events"]["kept"] != 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats = s.stats();
    assert_eq!(stats["rejected_events"]["kept"], 5, "{stats}");
    assert_eq!(stats["rejected_events"]["dropped"], json!({"cap":0,"queue":0,"retention":0}));
    let metrics = String::from_utf8(s.get("/metrics").body.to_vec()).unwrap();
    assert!(metrics.contains("inlet_rejected_events_kept 5\n"), "{metrics}");
    // The type filter goes through the subject: a type that differs only
    // where the subject has `_` is not mixed in.
    assert_eq!(s.post("/events", "application/json", order("s9", 0).replace("com.example.order", "x y")).status, 422);
    assert_eq!(s.post("/events", "application/json", order("s10", 0).replace("com.example.order", "x_y")).status, 422);
    wait_rows(&s, 7);
    let page = rejected(&s, "?type=x%20y");
    let ids: Vec<&str> =
        page["rejected"].as_array().unwrap().iter().map(|r| r["event"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["s9"]);
    // Kept across a restart of the server; the sequence is the stream's.
    drop(s);
    let s = start_jetstream(&nats, "MIXED", &schemas, &["--keep-rejected", "--retention", "1h"]);
    assert_eq!(s.post("/events", "application/json", order("s11", 0)).status, 422);
    let rows = wait_rows(&s, 8);
    assert_eq!((rows[7]["seq"].clone(), rows[7]["event"]["id"].clone()), (json!(8), json!("s11")));
}

#[test]
fn without_the_flag_nothing_is_kept() {
    let schemas = schema_dir();
    for store in ["memory", "sqlite"] {
        let s = start(store, &schemas, &[]);
        assert_eq!(s.post("/events", "application/json", order("s1", 0)).status, 422);
        let res = s.get("/rejected");
        assert_eq!(res.status, 200);
        assert_eq!(res.body, &br#"{"enabled":false,"rejected":[],"next_after":null}"#[..]);
        assert_eq!(s.stats()["rejected_events"], Value::Null);
    }
}

/// The size one refused `order(id, 0)` counts against the cap (ids of the
/// same length give the same size), read from `/stats`.
fn row_size(store: &str, schemas: &tempfile::TempDir) -> u64 {
    let s = start(store, schemas, &["--keep-rejected"]);
    assert_eq!(s.post("/events", "application/json", order("s0", 0)).status, 422);
    wait_rows(&s, 1);
    s.stats()["rejected_events"]["bytes"].as_u64().unwrap()
}

fn cap(store: &str) {
    let schemas = schema_dir();
    let size = row_size(store, &schemas);
    let max = (3 * size).to_string();
    let s = start(store, &schemas, &["--keep-rejected", "--max-rejected-bytes", &max]);
    for id in ["s1", "s2", "s3"] {
        assert_eq!(s.post("/events", "application/json", order(id, 0)).status, 422);
    }
    let rows = wait_rows(&s, 3);
    let ids: Vec<&str> = rows.iter().map(|r| r["event"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["s1", "s2", "s3"], "at the cap: all kept");
    assert_eq!(s.stats()["rejected_events"]["bytes"].as_u64(), Some(3 * size));
    assert_eq!(s.post("/events", "application/json", order("s4", 0)).status, 422);
    let deadline = Instant::now() + PATIENCE;
    while s.stats()["rejected_events"]["dropped"]["cap"] != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let rows = wait_rows(&s, 3);
    let ids: Vec<&str> = rows.iter().map(|r| r["event"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["s2", "s3", "s4"], "one past the cap: the oldest was dropped");
    let stats = s.stats();
    assert_eq!(
        (stats["rejected_events"]["dropped"]["cap"].clone(), stats["rejected_events"]["kept"].clone()),
        (json!(1), json!(3))
    );
    // Good ingest goes on.
    assert_eq!(s.post("/events", "application/json", order("g1", 1)).status, 202);
}

#[test]
fn the_cap_drops_the_oldest_memory() {
    cap("memory");
}

#[test]
fn the_cap_drops_the_oldest_sqlite() {
    cap("sqlite");
}

/// Every row's `(seq, id)` of `/rejected{query}`, following `next_after`.
fn all_rows(s: &Server, query: &str) -> Vec<(u64, String)> {
    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        let page = rejected(s, &format!("{query}&after={after}"));
        for r in page["rejected"].as_array().unwrap() {
            rows.push((r["seq"].as_u64().unwrap(), r["event"]["id"].as_str().unwrap().to_string()));
        }
        match page["next_after"].as_u64() {
            Some(n) => after = n,
            None => return rows,
        }
    }
}

/// Pages larger than one batched direct get (1,000 messages), with and
/// without a filter applied by inlet.
#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn pages_span_direct_get_batches_jetstream() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let schemas = schema_dir();
    let s = start_jetstream(&nats, "MANY", &schemas, &["--keep-rejected"]);
    for part in 0..2 {
        let batch: Vec<String> = (0..750).map(|i| order(&format!("b{}", part * 750 + i), 0)).collect();
        assert_eq!(s.post("/events", "application/json", format!("[{}]", batch.join(","))).status, 422);
    }
    let deadline = Instant::now() + PATIENCE;
    while stream_info(&nats, "MANY_REJECTED")["state"]["messages"] != 1500 {
        assert!(Instant::now() < deadline, "1,500 rows never came");
        std::thread::sleep(Duration::from_millis(50));
    }
    let want: Vec<(u64, String)> = (0..1500).map(|i| (i as u64 + 1, format!("b{i}"))).collect();
    assert_eq!(all_rows(&s, "?limit=1200"), want);
    assert_eq!(all_rows(&s, "?limit=1200&source=%2Fshop"), want);
    let page = rejected(&s, "?limit=1200&source=%2Fshop");
    assert_eq!(page["rejected"].as_array().unwrap().len(), 1200);
    assert_eq!(page["next_after"], 1200);
    assert_eq!(all_rows(&s, "?limit=1200&source=%2Fother"), vec![]);
}

/// NATS away: a refused event is still answered `422` at once (keeping it
/// is off the answer's path), good events `503`, and `GET /rejected` `503`.
#[test]
fn jetstream_without_nats_still_answers_refusals_at_once() {
    let schemas = schema_dir();
    let url = format!("nats://127.0.0.1:{}", inlet_tests::free_port());
    let s = start("jetstream", &schemas, &["--keep-rejected", "--nats-url", &url]);
    for id in ["s1", "s2", "s3"] {
        assert_eq!(s.post("/events", "application/json", order(id, 0)).status, 422);
    }
    assert_eq!(s.post("/events", "application/json", order("g1", 1)).status, 503);
    assert_eq!(s.get("/rejected").status, 503);
}

/// On JetStream the cap is the stream's `max_bytes`, in NATS's bytes (read
/// from the stream's state); the stream drops the oldest rows itself.
#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn the_cap_drops_the_oldest_jetstream() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let schemas = schema_dir();
    let size = {
        let s = start_jetstream(&nats, "SIZE", &schemas, &["--keep-rejected"]);
        assert_eq!(s.post("/events", "application/json", order("s0", 0)).status, 422);
        wait_rows(&s, 1);
        stream_info(&nats, "SIZE_REJECTED")["state"]["bytes"].as_u64().unwrap()
    };
    // A stream made with the default cap is updated to the cap of the next start.
    let first = start_jetstream(&nats, "CAPS", &schemas, &["--keep-rejected"]);
    assert_eq!(first.get("/rejected").status, 200);
    drop(first);
    wait_stream_config(&nats, "CAPS_REJECTED", "max_bytes", json!(64 * 1024 * 1024));
    let max = (3 * size).to_string();
    let s = start_jetstream(&nats, "CAPS", &schemas, &["--keep-rejected", "--max-rejected-bytes", &max]);
    assert_eq!(s.get("/rejected").status, 200);
    wait_stream_config(&nats, "CAPS_REJECTED", "max_bytes", json!(3 * size));
    for id in ["s1", "s2", "s3"] {
        assert_eq!(s.post("/events", "application/json", order(id, 0)).status, 422);
    }
    let rows = wait_rows(&s, 3);
    let ids: Vec<&str> = rows.iter().map(|r| r["event"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["s1", "s2", "s3"], "at the cap: all kept");
    assert_eq!(stream_info(&nats, "CAPS_REJECTED")["state"]["bytes"], 3 * size);
    assert_eq!(s.post("/events", "application/json", order("s4", 0)).status, 422);
    let deadline = Instant::now() + PATIENCE;
    while stream_info(&nats, "CAPS_REJECTED")["state"]["last_seq"] != 4 {
        assert!(Instant::now() < deadline, "the fourth row never came");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rows = wait_rows(&s, 3);
    let view: Vec<(u64, &str)> =
        rows.iter().map(|r| (r["seq"].as_u64().unwrap(), r["event"]["id"].as_str().unwrap())).collect();
    assert_eq!(view, vec![(2, "s2"), (3, "s3"), (4, "s4")], "one past the cap: the oldest was dropped");
    let state = stream_info(&nats, "CAPS_REJECTED")["state"].clone();
    assert_eq!((state["messages"].clone(), state["bytes"].clone()), (json!(3), json!(3 * size)));
    // Good ingest goes on.
    assert_eq!(s.post("/events", "application/json", order("g1", 1)).status, 202);
}

fn retention(store: &str) {
    let schemas = schema_dir();
    let s = start(store, &schemas, &["--keep-rejected", "--retention", "2s"]);
    retention_on(&s);
    let stats = s.stats();
    assert_eq!(stats["rejected_events"]["dropped"]["retention"], 1, "{stats}");
    assert_eq!(stats["rejected_events"]["kept"], 0, "{stats}");
}

/// A row kept through `s` (started with `--retention 2s`) is gone in time.
fn retention_on(s: &Server) {
    assert_eq!(s.post("/events", "application/json", order("s1", 0)).status, 422);
    wait_rows(s, 1);
    let deadline = Instant::now() + PATIENCE;
    while !rejected(s, "")["rejected"].as_array().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the rejected event outlived --retention 2s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn retention_applies_memory() {
    retention("memory");
}

#[test]
fn retention_applies_sqlite() {
    retention("sqlite");
}

#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn retention_applies_jetstream() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let schemas = schema_dir();
    // The events stream takes the retention as its max age too, which its
    // duplicate window may not exceed.
    let args = ["--keep-rejected", "--retention", "2s", "--duplicate-window", "1s"];
    let s = start_jetstream(&nats, "AGED", &schemas, &args);
    assert_eq!(s.get("/rejected").status, 200);
    wait_stream_config(&nats, "AGED_REJECTED", "max_age", json!(2_000_000_000u64));
    retention_on(&s);
    assert_eq!(stream_info(&nats, "AGED_REJECTED")["state"]["messages"], 0);
}

#[test]
fn a_version_2_store_gets_the_rejected_table_and_keeps_its_events() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = rusqlite::Connection::open(dir.path().join("events.sqlite3")).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE events (seq INTEGER PRIMARY KEY, source TEXT NOT NULL, id TEXT NOT NULL,
                 type TEXT NOT NULL, received_at TEXT NOT NULL, event TEXT NOT NULL, token TEXT, UNIQUE (source, id));
             CREATE INDEX events_by_type ON events (type, seq);
             CREATE INDEX events_by_source ON events (source, seq);
             CREATE INDEX events_by_token ON events (token, seq) WHERE token IS NOT NULL;
             CREATE TABLE forgotten_keys (source TEXT NOT NULL, id TEXT NOT NULL, deleted_at INTEGER NOT NULL,
                 PRIMARY KEY (source, id)) WITHOUT ROWID;
             CREATE INDEX forgotten_keys_by_time ON forgotten_keys (deleted_at);
             PRAGMA application_id = 1768844404;
             PRAGMA user_version = 2;",
        )
        .unwrap();
        c.execute(
            "INSERT INTO events (source, id, type, received_at, event) VALUES ('/shop', 'old', 'com.example.order', \
             '2026-01-01T00:00:00Z', ?1)",
            [order("old", 1)],
        )
        .unwrap();
    }
    let schemas = schema_dir();
    let args = ["--store", "sqlite", "--keep-rejected", "--schemas", schemas.path().to_str().unwrap()];
    let mut s = Server::start_in(dir, &args);
    assert_eq!(s.post("/events", "application/json", order("old", 1)).body, &br#"{"accepted":0,"duplicates":1}"#[..]);
    assert_eq!(s.post("/events", "application/json", order("s1", 0)).status, 422);
    let rows = wait_rows(&s, 1);
    assert_eq!(rows[0]["event"]["id"], "s1");
    s.signal("TERM");
    assert_eq!(s.wait(PATIENCE).expect("exited").code(), Some(0));
    let dir = s.kill9();
    let c = rusqlite::Connection::open(dir.path().join("events.sqlite3")).unwrap();
    let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    let kept: i64 = c.query_row("SELECT COUNT(*) FROM rejected", [], |r| r.get(0)).unwrap();
    let events: i64 = c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap();
    assert_eq!((version, kept, events), (3, 1, 1));
    drop(c);
    // Kept across a restart, and the sequence goes on.
    let s = Server::start_in(dir, &args);
    assert_eq!(s.post("/events", "application/json", order("s2", 0)).status, 422);
    let rows = wait_rows(&s, 2);
    assert_eq!((rows[0]["seq"].clone(), rows[1]["seq"].clone()), (json!(1), json!(2)));
}

fn authorized(req: ClientRequest, secret: &str) -> ClientRequest {
    req.header(Bytes::from_static(b"Authorization"), Bytes::from(format!("Bearer {secret}")))
}

#[test]
fn reading_needs_the_read_scope_and_rows_name_their_token() {
    tokens_run(|schemas, extra| start("memory", schemas, extra));
}

#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn reading_needs_the_read_scope_and_rows_name_their_token_jetstream() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    tokens_run(|schemas, extra| start_jetstream(&nats, "TOKENS", schemas, extra));
}

/// Token scopes and the `token` filter, on a server `start`ed with the
/// schemas and the extra arguments it is given.
fn tokens_run(start: impl Fn(&tempfile::TempDir, &[&str]) -> Server) {
    let (writer, writer_entry) = inlet_tests::new_token("writer", "write");
    let (reader, reader_entry) = inlet_tests::new_token("reader", "read");
    let tokens = tempfile::tempdir().unwrap();
    let path = tokens.path().join("tokens.toml");
    std::fs::write(&path, format!("{writer_entry}\n{reader_entry}\n")).unwrap();
    let schemas = schema_dir();
    let s = start(&schemas, &["--keep-rejected", "--tokens", path.to_str().unwrap()]);
    let post = ClientRequest::post("/events", "application/json", order("s1", 0));
    assert_eq!(s.request(authorized(post, &writer)).status, 422);
    let post = ClientRequest::post("/events", "application/json", order("s2", 0));
    assert_eq!(s.request(authorized(post, &reader)).status, 403, "a read token cannot post");
    let post = ClientRequest::post("/events", "application/json", order("s3", 0));
    assert_eq!(s.request(authorized(post, &writer)).status, 422);
    // Wait until both rows are there (JetStream keeps them off the answer's path).
    let deadline = Instant::now() + PATIENCE;
    loop {
        let res = s.request(authorized(ClientRequest::get("/rejected".to_string()), &reader));
        if json(&res)["rejected"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", String::from_utf8_lossy(&res.body));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.get("/rejected").status, 401);
    assert_eq!(s.request(authorized(ClientRequest::get("/rejected".to_string()), &writer)).status, 403);
    let res = s.request(authorized(ClientRequest::get("/rejected?token=writer".to_string()), &reader));
    assert_eq!(res.status, 200);
    let page = json(&res);
    assert_eq!(page["rejected"][0]["token"], "writer", "{page}");
    let ids: Vec<&str> =
        page["rejected"].as_array().unwrap().iter().map(|r| r["event"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["s1", "s3"]);
    let res = s.request(authorized(ClientRequest::get("/rejected?token=reader".to_string()), &reader));
    assert_eq!(json(&res)["rejected"], json!([]));
}

#[test]
fn the_client_prints_one_line_per_rejected_event() {
    let schemas = schema_dir();
    let s = start("memory", &schemas, &["--keep-rejected"]);
    for id in ["s1", "s2", "s3"] {
        assert_eq!(s.post("/events", "application/json", order(id, 0)).status, 422);
    }
    assert_eq!(s.post("/events", "application/json", r#"{"specversion":"1.0","id":"x","type":"other"}"#).status, 422);
    let ids = |stdout: &str| -> Vec<String> {
        stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"]["id"].as_str().unwrap().into())
            .collect()
    };
    let (code, stdout, stderr) = inlet_tests::client(s.addr, &["rejected", "--limit", "2"], None);
    assert_eq!((code, ids(&stdout)), (0, vec!["s1".to_string(), "s2".into()]), "{stderr}");
    assert!(stderr.contains("--after 2"), "{stderr}");
    let (code, stdout, _) = inlet_tests::client(s.addr, &["rejected", "--limit", "1", "--all"], None);
    assert_eq!((code, stdout.lines().count()), (0, 4));
    let args = ["rejected", "--all", "--type", "com.example.order", "--source", "/shop", "--after", "1"];
    let (code, stdout, _) = inlet_tests::client(s.addr, &args, None);
    assert_eq!((code, ids(&stdout)), (0, vec!["s2".to_string(), "s3".into()]));
    let (code, _, stderr) = inlet_tests::client(s.addr, &["rejected", "--limit", "0"], None);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn a_binary_mode_envelope_failure_keeps_its_headers_and_body() {
    let schemas = schema_dir();
    let s = start("memory", &schemas, &["--keep-rejected"]);
    // No ce-id; a percent-encoded subject; a text body.
    let req = ClientRequest::post("/events", "text/plain", "hello")
        .header("ce-specversion", "1.0")
        .header("ce-source", "/shop")
        .header("ce-type", "t.text")
        .header("ce-subject", "a%20b");
    let res = s.request(req);
    assert_eq!(res.status, 422);
    let errors = json(&res)["errors"].clone();
    assert_eq!(errors[0]["header"], "ce-id");
    let rows = wait_rows(&s, 1);
    assert_eq!(rows[0]["errors"], errors);
    assert_eq!(
        rows[0]["event"],
        json!({"specversion":"1.0","source":"/shop","type":"t.text","subject":"a b",
               "datacontenttype":"text/plain","data":"hello"})
    );
    assert_eq!((rows[0]["mode"].clone(), rows[0]["reason"].clone()), (json!("binary"), json!("invalid-event")));
}

/// The rejected log writes on the SQLite file beside the event writer
/// while valid posts run the dedupe lookup (a key was remembered after a
/// deletion): the two writers wait for each other, every valid post is
/// answered 202 with its event accepted.
#[test]
fn valid_posts_are_stored_while_the_rejected_log_writes() {
    let schemas = schema_dir();
    let s = start("sqlite", &schemas, &["--keep-rejected", "--retention", "1s", "--dedupe-window", "1h"]);
    assert_eq!(s.post("/events", "application/json", order("old", 1)).status, 202);
    assert_eq!(s.post("/events", "application/json", order("newer", 1)).status, 202);
    // `old` is deleted by the retention and its key remembered: from now on
    // every write group starts with a lookup.
    let deadline = Instant::now() + PATIENCE;
    while stored_ids(&s).contains_key("old") {
        assert!(Instant::now() < deadline, "the retention never deleted the event");
        std::thread::sleep(Duration::from_millis(50));
    }
    let invalid: Vec<String> = (0..50).map(|i| order(&format!("bad{i}"), 0)).collect();
    let invalid = format!("[{}]", invalid.join(","));
    let done = std::sync::atomic::AtomicBool::new(false);
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let res = s.post("/events", "application/cloudevents-batch+json", invalid.clone());
                    assert_eq!(res.status, 422);
                }
            });
        }
        let answers = (0..300)
            .map(|i| {
                let res = s.post("/events", "application/json", order(&format!("v{i}"), 1));
                (res.status, if res.status == 202 { json(&res)["accepted"].clone() } else { Value::Null })
            })
            .collect();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        answers
    });
    // Each valid event accepted (stored; the 1s retention deletes it later).
    let refused: Vec<(usize, &(u16, Value))> =
        answers.iter().enumerate().filter(|(_, a)| **a != (202, json!(1))).collect();
    assert_eq!(refused, vec![], "valid posts not accepted (index, answer)");
}
