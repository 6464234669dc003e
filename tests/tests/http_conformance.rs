//! HTTP/1.1 conformance against the real server, in raw bytes (issue 11 §1):
//! `HEAD` never carries content whatever the status, absolute-form targets,
//! trailer fields, `Host` syntax and request-target bytes. Every case checks
//! what follows the response on the wire: the next response on the same
//! keep-alive connection, or EOF when the server closes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use inlet_tests::{raw_exchange, Server};

const NEXT: &str = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// Replaces the value of each `Date` line, which changes every second.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("\r\nDate: ") {
        out.push_str(&rest[..i]);
        out.push_str("\r\nDate: *");
        let after = &rest[i + 8..];
        let end = after.find("\r\n").unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Everything the server writes for `bytes` until it closes, `Date` normalised.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    normalise(&raw_exchange(addr, bytes))
}

/// The head of the first response in `transcript` (through the empty line).
fn head_of(transcript: &str) -> &str {
    let end = transcript.find("\r\n\r\n").map(|i| i + 4).unwrap_or_else(|| panic!("no head in {transcript:?}"));
    &transcript[..end]
}

/// The `Content-Length` of the first response in `transcript`.
fn content_length(transcript: &str) -> usize {
    let head = head_of(transcript);
    let line = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).expect("Content-Length");
    line.trim().parse().expect("a number")
}

/// The `HEAD` version of a request that starts with `GET `.
fn as_head(get: &[u8]) -> Vec<u8> {
    assert!(get.starts_with(b"GET "));
    [&b"HEAD "[..], &get[4..]].concat()
}

/// A `HEAD` that the server answers and keeps the connection open for: the
/// answer is exactly the head of the `GET`'s (with `length_delta` added to
/// its `Content-Length`, for a body that names the method), and the very next
/// bytes are the answer to the next request.
fn assert_head_keeps_alive(addr: SocketAddr, get: &[u8], status_line: &str, length_delta: usize) {
    let get_answer = exchange(addr, &[get, NEXT.as_bytes()].concat());
    assert!(get_answer.starts_with(status_line), "GET: {get_answer}");
    let get_head = head_of(&get_answer);
    let get_length = content_length(&get_answer);
    assert!(get_length > 0, "the GET has a body: {get_answer}");
    let health = exchange(addr, NEXT.as_bytes());
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");

    let answer = exchange(addr, &[&as_head(get)[..], NEXT.as_bytes()].concat());
    let expected_head = get_head.replace(
        &format!("Content-Length: {get_length}\r\n"),
        &format!("Content-Length: {}\r\n", get_length + length_delta),
    );
    assert_eq!(answer, format!("{expected_head}{health}"), "HEAD for {}", String::from_utf8_lossy(get));
}

/// A `HEAD` the server refuses and closes on: exactly the head of the answer
/// to the same request made with `GET`, then EOF.
fn assert_head_closes(addr: SocketAddr, get: &[u8], status_line: &str) {
    let get_answer = exchange(addr, get);
    assert!(get_answer.starts_with(status_line), "GET {}: {get_answer}", String::from_utf8_lossy(get));
    assert!(get_answer.contains("Connection: close\r\n"), "{get_answer}");
    assert!(content_length(&get_answer) > 0, "{get_answer}");
    let answer = exchange(addr, &as_head(get));
    assert_eq!(answer, head_of(&get_answer), "HEAD for {}", String::from_utf8_lossy(get));
}

/// Every status a `HEAD` can get from a server with default flags.
fn head_gets_no_content_for_any_status(s: &Server) {
    let a = s.addr;
    assert_head_keeps_alive(a, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK\r\n", 0);
    assert_head_keeps_alive(a, b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK\r\n", 0);
    assert_head_keeps_alive(a, b"GET /no-such-path HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 404 Not Found\r\n", 0);
    // The 405 detail names the method: `HEAD` is one letter longer than `GET`.
    assert_head_keeps_alive(a, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 405 Method Not Allowed\r\n", 1);
    assert_head_keeps_alive(a, b"GET /events?limit=x HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n", 0);

    // Every closing codec error.
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(17 * 1024));
    let many_headers = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", "X-A: b\r\n".repeat(101));
    let closing: [(&[u8], &str); 17] = [
        (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: \x01\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        (b"GET ftp://a/health HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 4194305\r\n\r\n", "HTTP/1.1 413 Content Too Large\r\n"),
        (long_target.as_bytes(), "HTTP/1.1 414 URI Too Long\r\n"),
        (many_headers.as_bytes(), "HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "HTTP/1.1 501 Not Implemented\r\n"),
    ];
    for (get, status_line) in closing {
        assert_head_closes(a, get, status_line);
    }
    assert_head_closes(a, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported\r\n");
    // A head cut short by the end of the stream.
    assert_head_closes(a, b"GET / HTTP/1.1\r\nHost: x\r\n", "HTTP/1.1 400 Bad Request\r\n");

    // A refused `Expect: 100-continue`: the final answer, no body, then EOF.
    let expect = b"GET /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    let get_answer = exchange_without_half_close(a, expect);
    assert!(get_answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{get_answer}");
    let get_length = content_length(&get_answer);
    let answer = exchange_without_half_close(a, &as_head(expect));
    let expected = head_of(&get_answer)
        .replace(&format!("Content-Length: {get_length}\r\n"), &format!("Content-Length: {}\r\n", get_length + 1));
    assert_eq!(answer, expected);
}

/// Sends `bytes` without half-closing and reads until the server closes.
fn exchange_without_half_close(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    normalise(&String::from_utf8_lossy(&out))
}

#[test]
fn head_gets_no_content_for_any_status_async() {
    head_gets_no_content_for_any_status(&Server::start(&[]));
}

#[test]
fn head_gets_no_content_for_any_status_blocking() {
    head_gets_no_content_for_any_status(&Server::start(&["--mode", "blocking"]));
}

#[test]
fn head_gets_no_content_in_a_408() {
    let s = Server::start(&["--header-timeout", "1s", "--body-timeout", "1s"]);
    // The head and the body both time out; the method is known either way.
    for get in [
        &b"GET /health HTTP/1.1\r\nHost: x\r\n"[..],
        b"GET /heal",
        b"GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab",
    ] {
        let get_answer = exchange_without_half_close(s.addr, get);
        assert!(get_answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{get_answer}");
        assert!(content_length(&get_answer) > 0);
        let answer = exchange_without_half_close(s.addr, &as_head(get));
        assert_eq!(answer, head_of(&get_answer), "HEAD for {}", String::from_utf8_lossy(get));
    }
}

#[test]
fn absolute_form_targets_are_routed_by_their_path() {
    let s = Server::start(&[]);
    let health = exchange(s.addr, NEXT.as_bytes());
    let answer = exchange(
        s.addr,
        &[&b"GET http://127.0.0.1:8080/health HTTP/1.1\r\nHost: other.example\r\n\r\n"[..], NEXT.as_bytes()].concat(),
    );
    assert_eq!(answer, health.replace("Connection: close\r\n", "") + &health);
    let answer = exchange(
        s.addr,
        &[&b"GET HTTP://inlet.example/events?limit=1 HTTP/1.1\r\nHost:\r\n\r\n"[..], NEXT.as_bytes()].concat(),
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with(&health), "{answer}");
    // Malformed: 400, then EOF (the pipelined request is not answered).
    for bad in [&b"http:/x/health"[..], b"http:///health", b"ftp://x/health", b"http://u@x/health"] {
        let answer = exchange(s.addr, &[&b"GET "[..], bad, b" HTTP/1.1\r\nHost: x\r\n\r\n", NEXT.as_bytes()].concat());
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
        assert!(answer.contains("Connection: close\r\n"), "{answer}");
        assert!(!answer.contains("200 OK"), "{answer}");
    }
}

#[test]
fn trailer_lines_that_are_not_fields_are_400_and_close() {
    let s = Server::start(&[]);
    let chunked = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n";
    for bad in ["GET /stats HTTP/1.1", "bad trailer", "X-T : 1"] {
        let answer = exchange(s.addr, format!("{chunked}{bad}\r\n\r\n{NEXT}").as_bytes());
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{bad}: {answer}");
        assert!(answer.contains("Connection: close\r\n"), "{answer}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{bad}: {answer}");
    }
    // A real trailer field: the echo, then the next request.
    let answer = exchange(s.addr, format!("{chunked}X-T: 1\r\n\r\n{NEXT}").as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\r\n\r\nabcHTTP/1.1 200 OK\r\n"), "{answer}");
}

#[test]
fn invalid_host_bad_target_bytes_and_extra_spaces_are_400_and_close() {
    let s = Server::start(&[]);
    let cases: [&[u8]; 7] = [
        b"GET /health HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: a, b\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: u@a\r\n\r\n",
        b"GET /h\xc3\xa9alth HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /ec ho HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /echo  HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    ];
    for bad in cases {
        let answer = exchange(s.addr, &[bad, NEXT.as_bytes()].concat());
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{}: {answer}", String::from_utf8_lossy(bad));
        assert!(answer.contains("Connection: close\r\n"), "{answer}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    }
    // A valid host with a port, and an empty one, are served on one connection.
    let answer = exchange(
        s.addr,
        &[
            &b"GET /health HTTP/1.1\r\nHost: [::1]:8080\r\n\r\nGET /health HTTP/1.1\r\nHost:\r\n\r\n"[..],
            NEXT.as_bytes(),
        ]
        .concat(),
    );
    assert_eq!(answer.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{answer}");
}
