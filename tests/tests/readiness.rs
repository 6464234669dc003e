//! `GET /readyz` (issue 16 §4) with the real binary: `200` while the store
//! can take a write, `503` with a body per component when the capped SQLite
//! store is full, once shutdown begins (for requests already on their way),
//! and while NATS is away; `/health` stays `200` throughout.

use std::io::Write;
use std::time::{Duration, Instant};

use inlet_shared::http::{ClientRequest, Method};
use inlet_tests::{event_json, json, new_token, Nats, Server, PATIENCE};

fn readyz(s: &Server) -> (u16, serde_json::Value) {
    let res = s.get("/readyz");
    (res.status, json(&res))
}

fn ready_body(kind: &str) -> serde_json::Value {
    serde_json::json!({"status": "ready", "components": {
        "store": {"status": "ready", "kind": kind}, "shutdown": {"status": "running"}}})
}

#[test]
fn readyz_is_200_for_each_store_and_open_without_a_token() {
    for (kind, args) in [("memory", &["--store", "memory"][..]), ("sqlite", &["--store", "sqlite"][..])] {
        let s = Server::start(args);
        let res = s.get("/readyz");
        assert_eq!(res.status, 200, "{kind}");
        assert_eq!(res.headers.get_str("content-type"), Some("application/json"));
        assert_eq!(json(&res), ready_body(kind));
        let head = s.request(ClientRequest { method: Method::Head, ..ClientRequest::get("/readyz") });
        assert_eq!((head.status, head.body.len()), (200, 0));
        assert_eq!(head.headers.get_str("content-length"), res.headers.get_str("content-length"));
        let post = s.post("/readyz", "application/json", "{}");
        assert_eq!((post.status, post.headers.get_str("allow")), (405, Some("GET, HEAD")));
    }
    // With access control on, /readyz is open like /health; /stats is not.
    let (_secret, entry) = new_token("shop", "write");
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, entry).unwrap();
    let s = Server::start(&["--tokens", tokens.to_str().unwrap()]);
    assert_eq!(readyz(&s), (200, ready_body("memory")));
    assert_eq!(s.get("/stats").status, 401);
}

/// Posts 4 KiB events until the capped store answers 503.
fn fill(s: &Server) -> usize {
    for n in 0..2000 {
        let body = format!(
            r#"{{"specversion":"1.0","id":"fill-{n}","source":"/tests","type":"t","data":"{}"}}"#,
            "x".repeat(4096)
        );
        match s.post("/events", "application/json", body).status {
            202 => {}
            503 => return n,
            other => panic!("unexpected {other}"),
        }
    }
    panic!("the capped store never filled");
}

#[test]
fn readyz_is_503_once_the_capped_store_is_full_and_health_stays_200() {
    let s = Server::start(&["--store", "sqlite", "--max-store-bytes", "262144", "--sync", "normal"]);
    assert_eq!(readyz(&s), (200, ready_body("sqlite")));
    let accepted = fill(&s);
    assert!(accepted > 10, "some events fit first: {accepted}");
    let res = s.get("/readyz");
    assert_eq!(res.status, 503);
    assert_eq!(res.headers.get_str("retry-after"), Some("1"));
    assert_eq!(
        json(&res),
        serde_json::json!({"status": "not-ready", "components": {
            "store": {"status": "full", "kind": "sqlite",
                      "detail": "the store is at its size cap (--max-store-bytes) or the disk is full"},
            "shutdown": {"status": "running"}}})
    );
    // Probing does not change the answer, nor the liveness check's.
    assert_eq!(readyz(&s).0, 503);
    assert_eq!(s.get("/health").status, 200);
    // The body names no path.
    let dir = s.data_dir.path().to_str().unwrap().to_string();
    assert!(!String::from_utf8_lossy(&res.body).contains(&dir));
}

#[test]
fn readyz_is_503_as_soon_as_shutdown_begins_while_a_slow_request_finishes() {
    let mut s = Server::start(&["--store", "sqlite", "--sync", "normal"]);
    assert_eq!(readyz(&s).0, 200);
    // A slow upload in flight, and a probe whose head is on its way.
    let body = event_json("slow", "t");
    let (first, rest) = body.split_at(body.len() / 2);
    let mut upload = s.connect();
    upload.send_raw(
        format!(
            "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
            body.len()
        )
        .as_bytes(),
    );
    let mut probe = s.connect();
    probe.send_raw(b"GET /readyz HTTP/1.1\r\nHost: x\r\n");
    std::thread::sleep(Duration::from_millis(200));
    s.signal("TERM");
    let deadline = Instant::now() + PATIENCE;
    while !s.stderr().contains("stopped accepting") {
        assert!(Instant::now() < deadline, "no drain in the log: {}", s.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    probe.send_raw(b"\r\n");
    let res = probe.recv();
    assert_eq!(res.status, 503);
    assert_eq!(
        json(&res),
        serde_json::json!({"status": "not-ready", "components": {
            "store": {"status": "ready", "kind": "sqlite"},
            "shutdown": {"status": "draining", "detail": "shutdown has begun; requests in flight finish"}}})
    );
    // The upload in flight still finishes, and is acknowledged.
    upload.stream.write_all(rest.as_bytes()).unwrap();
    let done = upload.recv();
    assert_eq!((done.status, &done.body[..]), (202, &br#"{"accepted":1,"duplicates":0}"#[..]));
    assert_eq!(s.wait(PATIENCE).expect("exited").code(), Some(0));
}

#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn readyz_follows_nats_going_away_and_coming_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::single(dir.path());
    let url = nats.url();
    let s = Server::start(&["--store", "jetstream", "--nats-url", &url]);
    let wait_for = |status: u16| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (got, body) = readyz(&s);
            if got == status {
                return body;
            }
            assert!(Instant::now() < deadline, "/readyz stayed {got}: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(wait_for(200), ready_body("jetstream"));
    nats.kill();
    let body = wait_for(503);
    assert_eq!(
        body["components"]["store"],
        serde_json::json!({"status": "unavailable", "kind": "jetstream", "detail": "NATS is unreachable"})
    );
    assert_eq!(s.get("/health").status, 200);
    nats.start();
    assert_eq!(wait_for(200), ready_body("jetstream"));
    assert_eq!(s.post("/events", "application/json", event_json("after", "t")).status, 202);
}
