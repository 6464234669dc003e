//! The stage-1 proof, automated (SPEC §2). Async mode: hundreds of idle and
//! byte-trickling connections do not delay a new client. Blocking mode: one
//! idle connection freezes everybody until it goes away.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inlet_tests::Server;

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
fn async_mode_is_not_frozen_by_the_same_idle_client() {
    let s = Server::start(&[]);
    let _idle = TcpStream::connect(s.addr).expect("idle connection");
    std::thread::sleep(Duration::from_millis(200));
    let answer = probe(&s, Duration::from_secs(1)).expect("answered within 1 s");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
}
