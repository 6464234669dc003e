//! The stage-1 proof, automated (SPEC §2). Async mode: hundreds of idle and
//! byte-trickling connections do not delay a new client, and the connection
//! limit refuses the rest. Blocking mode: one idle connection freezes
//! everybody until it goes away. (Each deadline's rules are tested in
//! process, with paused time, in `server/src/connection/tests.rs`; the
//! real-time cases are in `errors.rs`.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inlet_tests::{raw_exchange, Server};

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// Sends a valid request on a new connection; returns the response if it
/// came within `within`.
fn probe(s: &Server, within: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(s.addr).ok()?;
    stream.set_read_timeout(Some(within)).ok()?;
    stream.write_all(HEALTH).ok()?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn async_mode_serves_new_clients_while_hundreds_misbehave() {
    let s = Server::start(&["--header-timeout", "60s"]);
    let idle: Vec<TcpStream> = (0..200).map(|_| TcpStream::connect(s.addr).expect("idle connection")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let tricklers: Vec<_> = (0..20)
        .map(|_| {
            let addr = s.addr;
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).expect("trickle connection");
                for byte in b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n".iter().cycle() {
                    if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let started = Instant::now();
        let answer = probe(&s, Duration::from_secs(2)).expect("answered within 2 s");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    let stats = inlet_tests::json(&s.get("/stats"));
    assert!(stats["connections"]["open"].as_u64().unwrap() >= 220, "{stats}");
    stop.store(true, Ordering::Relaxed);
    for t in tricklers {
        let _ = t.join();
    }
    drop(idle);
}

#[test]
fn blocking_mode_freezes_while_one_client_idles() {
    let s = Server::start(&["--mode", "blocking"]);
    // Sanity: it does serve when nobody misbehaves.
    assert!(probe(&s, Duration::from_secs(5)).is_some_and(|a| a.starts_with("HTTP/1.1 200")));

    let idle = TcpStream::connect(s.addr).expect("idle connection");
    std::thread::sleep(Duration::from_millis(200));
    // While the idle connection is open, a valid request gets no answer.
    let mut victim = TcpStream::connect(s.addr).expect("the kernel still accepts");
    victim.write_all(HEALTH).unwrap();
    victim.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut chunk = [0u8; 1024];
    let frozen = match victim.read(&mut chunk) {
        Err(e) => matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        Ok(_) => false,
    };
    assert!(frozen, "blocking mode answered while another client held the only slot");

    // Once the idle client goes away, the waiting request is answered.
    drop(idle);
    victim.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = victim.read_to_end(&mut out);
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
}

#[test]
fn blocking_mode_records_request_metrics() {
    let s = Server::start(&["--mode", "blocking"]);
    for _ in 0..2 {
        assert!(probe(&s, Duration::from_secs(5)).is_some_and(|a| a.starts_with("HTTP/1.1 200")));
    }
    let metrics = String::from_utf8_lossy(&s.get("/metrics").body).into_owned();
    assert!(metrics.contains(r#"inlet_http_requests_total{route="/health",method="GET",status="200"} 2"#), "{metrics}");
}

/// Over `--max-connections`, a `HEAD` is refused like any request, but its
/// `503` carries no body (RFC 9110 §9.3.2).
#[test]
fn over_the_connection_limit_a_head_request_gets_a_503_without_a_body() {
    let s = Server::start(&["--max-connections", "1"]);
    let mut held = s.connect();
    held.send_raw(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(held.recv().status, 200);
    let answer = raw_exchange(s.addr, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole head");
    assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
    assert!(head.contains("\r\nConnection: close"), "{answer}");
    assert!(head.contains("\r\nRetry-After: 1"), "{answer}");
    assert_eq!(body, "", "{answer}");
    // A GET over the limit gets the problem; the HEAD's length was its length.
    let get = raw_exchange(s.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let (get_head, get_body) = get.split_once("\r\n\r\n").expect("a whole head");
    assert!(get_head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{get}");
    assert!(get_body.contains("too-many-connections"), "{get}");
    let length = format!("\r\nContent-Length: {}\r\n", get_body.len());
    assert!(get_head.contains(&length) && head.contains(&length), "{answer}\n{get}");
}
