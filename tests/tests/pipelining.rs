//! Pipelining and partial reads against the real server.

use std::io::Write;
use std::time::Duration;

use inlet_tests::{event_json, Server};

#[test]
fn fifty_mixed_requests_in_one_write_are_answered_in_order() {
    let s = Server::start(&[]);
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for i in 0..50 {
        match i % 5 {
            0 => {
                wire.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
                expected.push((200, r#"{"status":"ok"}"#.to_string()));
            }
            1 => {
                let body = event_json(&format!("p{i}"), "t.pipe");
                wire.extend_from_slice(format!("POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
                expected.push((202, r#"{"accepted":1,"duplicates":0}"#.to_string()));
            }
            2 => {
                let body = format!("echo number {i}");
                wire.extend_from_slice(format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes());
                expected.push((200, body));
            }
            3 => {
                wire.extend_from_slice(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n");
                expected.push((404, String::new()));
            }
            _ => {
                let body = "{";
                wire.extend_from_slice(format!("POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
                expected.push((400, String::new()));
            }
        }
    }
    let mut conn = s.connect();
    conn.stream.write_all(&wire).unwrap();
    for (i, (status, body)) in expected.iter().enumerate() {
        let res = conn.recv();
        assert_eq!(res.status, *status, "response {i}");
        if !body.is_empty() {
            assert_eq!(String::from_utf8_lossy(&res.body), *body, "response {i}");
        }
    }
    assert_eq!(s.stats()["accepted"], 10);
}

#[test]
fn a_request_sent_one_byte_at_a_time_is_answered() {
    let s = Server::start(&[]);
    let body = event_json("slow-1", "t");
    let raw = format!("POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let mut conn = s.connect();
    conn.stream.set_nodelay(true).unwrap();
    for byte in raw.as_bytes() {
        conn.stream.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    let res = conn.recv();
    assert_eq!(res.status, 202);
    assert_eq!(&res.body[..], br#"{"accepted":1,"duplicates":0}"#);
}

#[test]
fn a_chunked_request_sent_one_byte_at_a_time_is_answered() {
    let s = Server::start(&[]);
    let raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: yes\r\n\r\n";
    let mut conn = s.connect();
    conn.stream.set_nodelay(true).unwrap();
    for byte in raw {
        conn.stream.write_all(&[*byte]).unwrap();
    }
    let res = conn.recv();
    assert_eq!(res.status, 200);
    assert_eq!(&res.body[..], b"hello world");
}
