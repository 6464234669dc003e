//! Every error class of SPEC §3.3 against the real server, over raw bytes:
//! the exact status, a problem body, and whether the connection stays open.

use std::time::Duration;

use inlet_tests::{event_json, json, raw_exchange, Conn, Server};

/// Sends `raw`, reads one response, and reports it with whether the server
/// then closed the connection.
fn answer(s: &Server, raw: &[u8]) -> (u16, serde_json::Value, bool) {
    let mut conn = s.connect();
    conn.send_raw(raw);
    let res = conn.recv();
    let closes_header = res.closes();
    let body = json(&res);
    assert_eq!(res.headers.get_str("content-type"), Some("application/problem+json"));
    assert_eq!(body["status"], res.status);
    let closed = conn.is_closed_within(Duration::from_secs(3));
    assert_eq!(closes_header, closed, "Connection: close header must match what the server did");
    (res.status, body, closed)
}

fn status_and_close(s: &Server, raw: &[u8]) -> (u16, bool) {
    let (status, _, closed) = answer(s, raw);
    (status, closed)
}

#[test]
fn malformed_request_line_is_400_and_closes() {
    let s = Server::start(&[]);
    assert_eq!(status_and_close(&s, b"GARBAGE\r\n\r\n"), (400, true));
    assert_eq!(status_and_close(&s, b"GET / HTTP/1.1\nHost: x\n\n"), (400, true));
}

#[test]
fn bad_chunk_encoding_is_400_and_closes() {
    let s = Server::start(&[]);
    let raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    assert_eq!(status_and_close(&s, raw), (400, true));
}

#[test]
fn bad_json_is_400_and_keeps_the_connection() {
    let s = Server::start(&[]);
    let raw = b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n{";
    let (status, body, closed) = answer(&s, raw);
    assert_eq!((status, closed), (400, false));
    assert_eq!(body["type"], "urn:inlet:problem:malformed-json");
}

#[test]
fn smuggling_shapes_are_400_and_close() {
    let s = Server::start(&[]);
    let cases: [&[u8]; 4] = [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
        b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for raw in cases {
        assert_eq!(status_and_close(&s, raw), (400, true), "{}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn host_rules_are_400_and_close() {
    let s = Server::start(&[]);
    assert_eq!(status_and_close(&s, b"GET /health HTTP/1.1\r\n\r\n"), (400, true));
    assert_eq!(status_and_close(&s, b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), (400, true));
}

#[test]
fn post_without_length_is_411_and_closes() {
    let s = Server::start(&[]);
    assert_eq!(status_and_close(&s, b"POST /events HTTP/1.1\r\nHost: x\r\n\r\n"), (411, true));
}

#[test]
fn body_over_max_body_is_413_and_closes_without_reading_it() {
    let s = Server::start(&["--max-body", "1000"]);
    let raw = b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1001\r\n\r\n";
    assert_eq!(status_and_close(&s, raw), (413, true));
}

#[test]
fn chunked_body_over_max_body_is_413_and_closes() {
    let s = Server::start(&["--max-body", "10"]);
    let raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n";
    assert_eq!(status_and_close(&s, raw), (413, true));
}

#[test]
fn event_over_max_event_bytes_is_413_and_keeps_the_connection() {
    let s = Server::start(&["--max-event-bytes", "200"]);
    let big = format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"{}"}}"#, "x".repeat(300));
    let raw = format!("POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: {}\r\n\r\n{big}", big.len());
    let (status, body, closed) = answer(&s, raw.as_bytes());
    assert_eq!((status, closed), (413, false));
    assert_eq!(body["type"], "urn:inlet:problem:event-too-large");
}

#[test]
fn batch_over_max_batch_is_413_and_keeps_the_connection() {
    let s = Server::start(&["--max-batch", "2"]);
    let batch = format!("[{},{},{}]", event_json("1", "t"), event_json("2", "t"), event_json("3", "t"));
    let raw = format!(
        "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{batch}",
        batch.len()
    );
    let (status, body, closed) = answer(&s, raw.as_bytes());
    assert_eq!((status, closed), (413, false));
    assert_eq!(body["type"], "urn:inlet:problem:batch-too-large");
    assert_eq!(s.stats()["accepted"], 0);
}

#[test]
fn unsupported_content_type_is_415_and_keeps_the_connection() {
    let s = Server::start(&[]);
    let raw = b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
    assert_eq!(status_and_close(&s, raw), (415, false));
    let raw = b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
    assert_eq!(status_and_close(&s, raw), (415, false));
}

#[test]
fn invalid_event_is_422_and_keeps_the_connection() {
    let s = Server::start(&[]);
    let body = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"noon"}"#;
    let raw = format!("POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let (status, problem, closed) = answer(&s, raw.as_bytes());
    assert_eq!((status, closed), (422, false));
    assert_eq!(problem["errors"][0]["pointer"], "#/time");
}

#[test]
fn ndjson_errors_carry_line_numbers() {
    let s = Server::start(&[]);
    let body = format!("{}\n\n{{\"specversion\":\"1.0\",\"id\":\"2\",\"source\":\"/s\"}}\n", event_json("1", "t"));
    let res = s.post("/events", "application/x-ndjson", body);
    assert_eq!(res.status, 422);
    let problem = json(&res);
    assert_eq!(problem["errors"][0]["line"], 3);
    assert_eq!(problem["errors"][0]["pointer"], "#/type");
}

#[test]
fn binary_mode_errors_name_the_header() {
    let s = Server::start(&[]);
    let raw = b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nce-specversion: 1.0\r\nce-id: 1\r\nce-source: /s\r\nContent-Length: 2\r\n\r\n{}";
    let (status, problem, _) = answer(&s, raw);
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["header"], "ce-type");
}

#[test]
fn head_over_max_head_is_431_and_closes() {
    let s = Server::start(&["--max-head", "1024"]);
    let raw = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(2000));
    assert_eq!(status_and_close(&s, raw.as_bytes()), (431, true));
}

#[test]
fn more_than_100_headers_is_431_and_closes() {
    let s = Server::start(&[]);
    let mut raw = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        raw.push_str(&format!("X-{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    assert_eq!(status_and_close(&s, raw.as_bytes()), (431, true));
}

#[test]
fn long_request_target_is_414_and_closes() {
    let s = Server::start(&["--max-head", "1024"]);
    let raw = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(2000));
    assert_eq!(status_and_close(&s, raw.as_bytes()), (414, true));
}

#[test]
fn other_transfer_coding_is_501_and_closes() {
    let s = Server::start(&[]);
    let raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(status_and_close(&s, raw), (501, true));
}

#[test]
fn header_timeout_is_408_and_closes() {
    let s = Server::start(&["--header-timeout", "300ms"]);
    // Half a head, then nothing.
    let mut conn = s.connect();
    conn.send_raw(b"GET /health HTTP/1.1\r\nHo");
    let res = conn.recv();
    assert_eq!(res.status, 408);
    assert!(res.closes());
    assert!(conn.is_closed_within(Duration::from_secs(3)));
    // A connection that never sends a byte is closed too.
    let mut silent = Conn::open(s.addr);
    let res = silent.try_recv();
    assert_eq!(res.map(|r| r.status), Some(408));
    assert_eq!(s.stats()["rejected"]["request-timeout"], 2);
}

#[test]
fn body_timeout_is_408_and_closes() {
    let s = Server::start(&["--body-timeout", "300ms"]);
    let mut conn = s.connect();
    conn.send_raw(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    let res = conn.recv();
    assert_eq!(res.status, 408);
    assert!(conn.is_closed_within(Duration::from_secs(3)));
}

#[test]
fn idle_keep_alive_connection_is_closed_silently() {
    let s = Server::start(&["--idle-timeout", "300ms"]);
    let mut conn = s.connect();
    conn.send_raw(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(conn.recv().status, 200);
    assert!(conn.is_closed_within(Duration::from_secs(5)));
}

#[test]
fn over_max_connections_is_503_and_closes() {
    let s = Server::start(&["--max-connections", "5"]);
    let mut held: Vec<Conn> = (0..5).map(|_| s.connect()).collect();
    // Make sure all five are accepted and counted before the sixth.
    for c in held.iter_mut() {
        c.send_raw(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.recv().status, 200);
    }
    let answer = raw_exchange(s.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    assert!(answer.contains("Retry-After: 1\r\n"), "{answer}");
    assert!(answer.contains("too-many-connections"), "{answer}");
    // Once one closes, a new connection is served again.
    drop(held.pop());
    let ok = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        raw_exchange(s.addr, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .starts_with("HTTP/1.1 200")
    });
    assert!(ok, "a slot freed by a closed connection is reused");
}

#[test]
fn expect_continue_gets_100_then_the_answer() {
    let s = Server::start(&[]);
    let body = event_json("c1", "t");
    let mut conn = s.connect();
    conn.send_raw(
        format!("POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len())
            .as_bytes(),
    );
    let mut interim = [0u8; 25];
    use std::io::Read;
    conn.stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.send_raw(body.as_bytes());
    assert_eq!(conn.recv().status, 202);
}

#[test]
fn expect_continue_refused_before_the_body() {
    let s = Server::start(&["--max-body", "100"]);
    let answer = raw_exchange(
        s.addr,
        b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    let answer = raw_exchange(
        s.addr,
        b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 415 "), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
}

#[test]
fn http10_closes_unless_keep_alive() {
    let s = Server::start(&[]);
    let answer = raw_exchange(s.addr, b"GET /health HTTP/1.0\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.contains("Connection: close\r\n"), "{answer}");
    let mut conn = s.connect();
    conn.send_raw(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let res = conn.recv();
    assert_eq!(res.headers.get_str("connection"), Some("keep-alive"));
    conn.send_raw(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(conn.recv().status, 200);
}

#[test]
fn connection_close_from_client_is_honoured() {
    let s = Server::start(&[]);
    let answer = raw_exchange(
        s.addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 1, "{answer}");
    assert!(answer.contains("Connection: close\r\n"));
}

#[test]
fn one_bad_client_does_not_disturb_others() {
    let s = Server::start(&[]);
    let mut good = s.connect();
    good.send_raw(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(good.recv().status, 200);
    let _ = raw_exchange(s.addr, b"\x00\x01\x02garbage\r\n\r\n");
    good.send_raw(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(good.recv().status, 200);
}

const MORE: &str = "more error(s) not listed: the first 1000 are, and the first of every invalid event";

/// A batch of `items` events, each with `bad` members `"X<n>":1` (an
/// upper-case letter is no extension name: one error each) and `extra`
/// more on the last item.
fn bad_batch(items: usize, bad: usize, extra: usize) -> String {
    let item = |i: usize| {
        let count = if i + 1 == items { bad + extra } else { bad };
        let members: String = (0..count).map(|n| format!(r#","X{n}":1"#)).collect();
        format!(r#"{{"specversion":"1.0","id":"{i}","source":"/s","type":"t"{members}}}"#)
    };
    format!("[{}]", (0..items).map(item).collect::<Vec<_>>().join(","))
}

#[test]
fn envelope_errors_up_to_the_cap_are_all_listed() {
    let s = Server::start(&[]);
    let res = s.post("/events", "application/cloudevents-batch+json", bad_batch(200, 5, 0));
    assert_eq!(res.status, 422);
    let problem = json(&res);
    assert_eq!(problem["detail"], "1000 invalid attribute(s); nothing of this request was stored");
    let errors = problem["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1000);
    assert_eq!(
        errors[999],
        serde_json::json!({"pointer": "#/199/X4", "detail": "extension attribute names must be lowercase ASCII letters and digits"})
    );
    assert_eq!(s.stats()["accepted"], 0);
}

#[test]
fn envelope_errors_past_the_cap_end_with_how_many_more() {
    let s = Server::start(&[]);
    let res = s.post("/events", "application/cloudevents-batch+json", bad_batch(200, 5, 1));
    assert_eq!(res.status, 422);
    let problem = json(&res);
    assert_eq!(problem["detail"], "1001 invalid attribute(s); nothing of this request was stored");
    let errors = problem["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1001);
    assert_eq!(errors[999]["pointer"], "#/199/X4");
    assert_eq!(errors[1000], serde_json::json!({"detail": format!("1 {MORE}")}));
}

#[test]
fn megabytes_of_bad_members_answer_a_small_422() {
    let s = Server::start(&[]);
    // 14 items of about 250 KB: some 300,000 bad members in 3.5 MB.
    let per_item = 22_000;
    let body = bad_batch(14, per_item, 0);
    assert!(body.len() > 3_000_000 && body.len() < 4 * 1024 * 1024, "{}", body.len());
    let res = s.post("/events", "application/cloudevents-batch+json", body);
    assert_eq!(res.status, 422);
    assert!(res.body.len() < 256 * 1024, "a {} byte answer", res.body.len());
    let problem = json(&res);
    let total = 14 * per_item;
    assert_eq!(problem["detail"], format!("{total} invalid attribute(s); nothing of this request was stored"));
    let errors = problem["errors"].as_array().expect("errors");
    // Item 0's first thousand, then the first of each of items 1-13.
    assert_eq!(errors.len(), 1014);
    assert_eq!((&errors[0]["pointer"], &errors[999]["pointer"]), (&"#/0/X0".into(), &"#/0/X999".into()));
    assert_eq!((&errors[1000]["pointer"], &errors[1012]["pointer"]), (&"#/1/X0".into(), &"#/13/X0".into()));
    let more = format!("{} {MORE}", total - 1013);
    assert_eq!(errors[1013], serde_json::json!({ "detail": more }));
    // The connection and the server are fine afterwards.
    let ok = s.post("/events", "application/cloudevents+json", event_json("ok", "t"));
    assert_eq!(ok.status, 202);
}

#[test]
fn events_past_the_cap_are_kept_as_rejected_with_their_first_error() {
    let s = Server::start(&["--keep-rejected"]);
    // 1,500 errors: the first 1,000 are items 0-199's five; items 200-299 keep their first.
    let res = s.post("/events", "application/cloudevents-batch+json", bad_batch(300, 5, 0));
    assert_eq!(res.status, 422);
    assert_eq!(json(&res)["errors"].as_array().map(Vec::len), Some(1101));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let page = json(&s.get("/rejected?limit=10000"));
        let rows = page["rejected"].as_array().cloned().unwrap_or_default();
        if rows.len() >= 300 || std::time::Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(rows.len(), 300);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["event"]["id"], i.to_string());
        let pointers: Vec<&str> =
            row["errors"].as_array().expect("errors").iter().filter_map(|e| e["pointer"].as_str()).collect();
        let kept = if i < 200 { 5 } else { 1 };
        let expected: Vec<String> = (0..kept).map(|n| format!("#/{i}/X{n}")).collect();
        assert_eq!(pointers, expected, "row {i}");
    }
}
