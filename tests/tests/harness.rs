//! The harness's own `try_` methods: each failure comes back as the
//! [`HarnessError`] that names it, where the panicking twin would panic.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use inlet_shared::http::ClientRequest;
use inlet_tests::{event_json, stored_ids, Conn, HarnessError, Server};

/// A loopback address nothing listens on (bound, then released).
fn closed_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port")
}

#[test]
fn try_start_reports_a_server_that_exits_with_its_log() {
    match Server::try_start(&["--no-such-flag"]) {
        Err(HarnessError::Exited { status, log }) => {
            assert!(status.is_some_and(|s| !s.success()), "exit status {status:?}");
            assert!(log.contains("--no-such-flag"), "the log names the flag: {log}");
        }
        Err(e) => panic!("expected Exited, got {e}"),
        Ok(s) => panic!("a server started on an unknown flag at {}", s.addr),
    }
}

#[test]
fn try_open_and_try_request_report_a_refused_connection() {
    let addr = closed_addr();
    assert!(matches!(Conn::try_open(addr), Err(HarnessError::Connect(_))));
    let s = Server::start(&[]);
    assert_eq!(s.try_get("/health").map(|r| r.status).ok(), Some(200));
    let addr = s.addr;
    let _ = s.kill9();
    assert!(matches!(Conn::try_open(addr), Err(HarnessError::Connect(_))));
}

#[test]
fn try_response_reports_a_close_and_a_malformed_response() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let peer = std::thread::spawn(move || {
        // The first connection is closed at once, the second answered with junk.
        drop(listener.accept().expect("accept"));
        let (mut second, _) = listener.accept().expect("accept");
        second.write_all(b"HTTP/1.1 abc nonsense\r\n\r\n").expect("write");
        second
    });
    let mut closed = Conn::try_open(addr).expect("connect");
    let got = closed.try_exchange(ClientRequest::get("/"));
    assert!(
        matches!(got, Err(HarnessError::Closed | HarnessError::Read(_) | HarnessError::Write(_))),
        "a closed connection: {got:?}"
    );
    let mut junk = Conn::try_open(addr).expect("connect");
    let got = junk.try_response();
    assert!(matches!(got, Err(HarnessError::BadResponse(_))), "a malformed status line: {got:?}");
    let _second = peer.join().expect("peer");
}

#[test]
fn try_send_and_try_response_report_a_server_gone() {
    let s = Server::start(&[]);
    let mut conn = s.connect();
    assert_eq!(conn.try_exchange(ClientRequest::get("/health")).map(|r| r.status).ok(), Some(200));
    let _ = s.kill9();
    let got = conn.try_response();
    assert!(matches!(got, Err(HarnessError::Closed | HarnessError::Read(_))), "{got:?}");
    // The first write after the close may still be taken by the kernel; the
    // peer's reset makes a later one fail.
    let failed = (0..100).find_map(|_| {
        let sent = conn.try_send(ClientRequest::get("/health"));
        std::thread::sleep(Duration::from_millis(10));
        sent.err()
    });
    assert!(matches!(failed, Some(HarnessError::Write(_))), "{failed:?}");
}

#[test]
fn stored_ids_counts_each_stored_id() {
    let s = Server::start(&["--store", "sqlite"]);
    let batch: Vec<String> = (0..3).map(|i| event_json(&format!("e{i}"), "t.harness")).collect();
    let res = s.try_post("/events", "application/x-ndjson", batch.join("\n")).expect("posted");
    assert_eq!(res.status, 202);
    let ids = stored_ids(&s);
    assert_eq!(ids.len(), 3);
    assert!((0..3).all(|i| ids.get(&format!("e{i}")) == Some(&1)), "{ids:?}");
}

#[test]
fn try_response_reports_a_timeout_and_try_recv_a_close() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut conn = Conn::try_open(addr).expect("connect");
    let (peer, _) = listener.accept().expect("accept");
    // A peer that never answers: the read times out after the stream's timeout.
    let within = Duration::from_millis(100);
    conn.stream.set_read_timeout(Some(within)).expect("timeout");
    conn.try_send(ClientRequest::get("/")).expect("sent");
    let got = conn.try_response();
    assert!(matches!(got, Err(HarnessError::Timeout(t)) if t == within), "{got:?}");
    // Then it closes: `try_recv` says so with `None`.
    drop(peer);
    assert!(conn.try_recv().is_none());
}
