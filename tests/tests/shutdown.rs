//! Graceful shutdown (SPEC §1): SIGTERM/SIGINT stop accepting, requests in
//! flight finish, idle connections close, exit code 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use inlet_tests::{event_json, Server};

#[test]
fn sigterm_during_a_slow_upload_lets_it_finish() {
    let mut s = Server::start(&[]);
    let idle = TcpStream::connect(s.addr).unwrap();
    let body = format!("[{},{}]", event_json("u1", "t"), event_json("u2", "t"));
    let (first, rest) = body.split_at(body.len() / 2);
    let mut conn = s.connect();
    conn.send_raw(
        format!(
            "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
            body.len()
        )
        .as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(300));
    s.signal("TERM");
    std::thread::sleep(Duration::from_millis(500));
    // New connections are refused once the listener is gone.
    assert!(TcpStream::connect(s.addr).is_err(), "still accepting after SIGTERM");
    conn.stream.write_all(rest.as_bytes()).unwrap();
    let res = conn.recv();
    assert_eq!(res.status, 202);
    assert_eq!(&res.body[..], br#"{"accepted":2,"duplicates":0}"#);
    assert!(res.closes(), "the last response of a draining server closes");
    let status = s.wait(Duration::from_secs(10)).expect("server exited");
    assert_eq!(status.code(), Some(0));
    drop(idle);
}

#[test]
fn sigint_with_idle_connections_exits_promptly() {
    let mut s = Server::start(&[]);
    let _idle: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(s.addr).unwrap()).collect();
    let mut keep_alive = s.connect();
    keep_alive.send_raw(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(keep_alive.recv().status, 200);
    s.signal("INT");
    let status = s.wait(Duration::from_secs(5)).expect("exited well before the shutdown timeout");
    assert_eq!(status.code(), Some(0));
    assert!(keep_alive.is_closed_within(Duration::from_secs(1)));
}

/// Connections that never sent a byte are ended at once by a shutdown,
/// however far their header deadline (closed without an answer: there is no
/// request to answer), and the server exits well before the deadline.
#[test]
fn sigterm_ends_connections_that_never_spoke_at_once_whatever_their_header_deadline() {
    // One worker: its accept queue is in order, so the `/health` answered
    // below means the idle ones were accepted before it.
    let mut s = Server::start(&["--header-timeout", "300s", "--shutdown-timeout", "60s", "--workers", "1"]);
    let mut idle: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(s.addr).unwrap()).collect();
    assert_eq!(s.get("/health").status, 200, "the idle ones are accepted before this");
    s.signal("TERM");
    let status = s.wait(Duration::from_secs(20)).expect("exited long before the deadlines");
    assert_eq!(status.code(), Some(0));
    for conn in &mut idle {
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        assert_eq!(conn.read_to_end(&mut got).unwrap(), 0, "closed, nothing written");
    }
}

/// Requests sent on connections that were idle, right before SIGTERM: each
/// one is in flight when the shutdown begins, whether or not the server has
/// looked at its socket yet, and is answered; the connections that sent
/// nothing are closed.
#[test]
fn requests_sent_just_before_sigterm_on_idle_connections_are_answered() {
    let mut s = Server::start(&["--header-timeout", "300s", "--shutdown-timeout", "60s"]);
    let mut conns: Vec<TcpStream> = (0..400).map(|_| TcpStream::connect(s.addr).unwrap()).collect();
    assert_eq!(s.get("/health").status, 200);
    std::thread::sleep(Duration::from_millis(500));
    for conn in conns.iter_mut().step_by(2) {
        conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    }
    s.signal("TERM");
    let (mut answered, mut closed) = (0, 0);
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        let read = conn.read_to_end(&mut got);
        if i % 2 == 0 {
            assert!(read.is_ok(), "connection {i}: {read:?} after {} bytes", got.len());
            assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "connection {i}: {:?}", String::from_utf8_lossy(&got));
            answered += 1;
        } else {
            assert_eq!((read.ok(), got.len()), (Some(0), 0), "connection {i} sent nothing and got nothing");
            closed += 1;
        }
    }
    assert_eq!((answered, closed), (200, 200));
    assert_eq!(s.wait(Duration::from_secs(20)).expect("exited").code(), Some(0));
}

/// A SIGTERM the moment `listening on` is printed is a graceful shutdown
/// (exit 0), in both modes: the handlers are installed before that line.
/// Before, the async server installed its SIGTERM handler only once the main
/// thread got to wait for it, and a signal in between ended the process
/// with the default action (seen under load, one start in many).
#[test]
fn sigterm_right_after_listening_on_is_a_graceful_shutdown() {
    for mode in ["async", "blocking"] {
        for _ in 0..10 {
            let mut s = Server::start(&["--mode", mode]);
            s.signal("TERM");
            let status = s.wait(Duration::from_secs(10)).expect("server exited");
            assert_eq!(status.code(), Some(0), "--mode {mode}");
        }
    }
}
