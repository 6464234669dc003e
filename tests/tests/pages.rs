//! `GET /events` pages bounded by bytes (`--max-page-bytes`) and written
//! out chunked while they are read (issue 11 §2): the same JSON as before,
//! exact bytes, paging that loses and repeats nothing, `HEAD`, HTTP/1.0,
//! pipelining after a streamed page, and a client that stops reading.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use inlet_shared::http::{ClientRequest, Method};
use inlet_tests::{event_json, json, raw_exchange, Server, PATIENCE};

/// Posts events `e000`..: all of one JSON size, returned.
fn post_events(s: &Server, n: usize) -> usize {
    let mut size = 0;
    for i in 0..n {
        let event = event_json(&format!("e{i:03}"), "t.paged");
        size = event.len();
        let res = s.post("/events", "application/cloudevents+json", event);
        assert_eq!(res.status, 202, "event {i}");
    }
    size
}

/// The seqs of a page and its `next_after`.
fn page(s: &Server, target: &str) -> (Vec<u64>, Option<u64>) {
    let res = s.get(target);
    assert_eq!(res.status, 200, "{target}");
    let body = json(&res);
    let seqs = body["events"].as_array().expect("events").iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    (seqs, body["next_after"].as_u64())
}

/// Every page from the start, `limit` events at most each.
fn all_pages(s: &Server, limit: usize) -> Vec<Vec<u64>> {
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let (seqs, next) = page(s, &format!("/events?limit={limit}&after={after}"));
        pages.push(seqs);
        match next {
            Some(n) => after = n,
            None => return pages,
        }
        assert!(pages.len() < 100, "paging does not end");
    }
}

#[test]
fn a_page_is_chunked_and_its_json_is_exactly_as_before() {
    let s = Server::start(&[]);
    // Past the 1 KiB under which a page is sent whole (the next test).
    post_events(&s, 20);
    let mut stream = TcpStream::connect(s.addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, chunked) = raw.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nTransfer-Encoding: chunked\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: application/json\r\n"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("content-length"), "{head}");
    assert!(chunked.ends_with("\r\n0\r\n\r\n"), "the body ends with the last chunk: {chunked:?}");

    // Decoded, it is the page of SPEC §3.2, byte for byte.
    let res = s.get("/events");
    let body = json(&res);
    let mut expected = String::from("{\"events\":[");
    for (i, e) in body["events"].as_array().unwrap().iter().enumerate() {
        if i > 0 {
            expected.push(',');
        }
        let at = e["received_at"].as_str().unwrap();
        let event = event_json(&format!("e{i:03}"), "t.paged");
        expected.push_str(&format!("{{\"seq\":{},\"received_at\":\"{at}\",\"token\":null,\"event\":{event}}}", i + 1));
    }
    expected.push_str("],\"next_after\":null}");
    assert_eq!(String::from_utf8_lossy(&res.body), expected);
    assert_eq!(body["events"].as_array().unwrap().len(), 20);
}

#[test]
fn a_small_page_read_whole_is_sent_with_its_length() {
    let s = Server::start(&[]);
    post_events(&s, 2);
    let res = s.get("/events");
    assert_eq!(res.status, 200);
    assert_eq!(res.headers.get_str("transfer-encoding"), None);
    assert_eq!(res.headers.get_str("content-length"), Some(res.body.len().to_string().as_str()));
    assert_eq!(res.headers.get_str("vary"), Some("Accept-Encoding"));
    assert_eq!(json(&res)["events"].as_array().unwrap().len(), 2);
}

#[test]
fn a_page_stops_at_max_page_bytes_exactly_at_the_limit_and_one_byte_under() {
    let size = event_json("e000", "t.paged").len();
    // At the limit: three events fit exactly.
    let s = Server::start(&["--max-page-bytes", &(3 * size).to_string()]);
    post_events(&s, 10);
    assert_eq!(page(&s, "/events"), (vec![1, 2, 3], Some(3)));
    assert_eq!(page(&s, "/events?after=3"), (vec![4, 5, 6], Some(6)));
    assert_eq!(page(&s, "/events?after=9"), (vec![10], None));
    // The count limit still cuts first when it is smaller.
    assert_eq!(page(&s, "/events?limit=2"), (vec![1, 2], Some(2)));
    let pages = all_pages(&s, 100);
    assert_eq!(pages, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9], vec![10]]);

    // One byte under: the third event no longer fits.
    let s = Server::start(&["--max-page-bytes", &(3 * size - 1).to_string()]);
    post_events(&s, 5);
    assert_eq!(page(&s, "/events"), (vec![1, 2], Some(2)));
    let pages = all_pages(&s, 100);
    assert_eq!(pages, vec![vec![1, 2], vec![3, 4], vec![5]]);
}

#[test]
fn an_event_larger_than_the_bound_is_a_page_of_its_own() {
    let s = Server::start(&["--max-page-bytes", "10"]);
    post_events(&s, 3);
    assert_eq!(page(&s, "/events"), (vec![1], Some(1)));
    assert_eq!(all_pages(&s, 100), vec![vec![1], vec![2], vec![3]]);
    // With a filter: the page still ends where it stopped.
    assert_eq!(page(&s, "/events?type=t.paged&after=1"), (vec![2], Some(2)));
}

#[test]
fn the_sqlite_store_bounds_and_streams_its_pages_too() {
    let size = event_json("e000", "t.paged").len();
    let s = Server::start(&["--store", "sqlite", "--sync", "normal", "--max-page-bytes", &(2 * size).to_string()]);
    post_events(&s, 5);
    assert_eq!(page(&s, "/events"), (vec![1, 2], Some(2)));
    assert_eq!(all_pages(&s, 100), vec![vec![1, 2], vec![3, 4], vec![5]]);
    assert_eq!(all_pages(&s, 1), vec![vec![1], vec![2], vec![3], vec![4], vec![5]]);
    // A page past 1 KiB is streamed from the reader pool.
    let s = Server::start(&["--store", "sqlite", "--sync", "normal"]);
    post_events(&s, 20);
    let res = s.get("/events");
    assert_eq!(res.headers.get_str("transfer-encoding"), Some("chunked"));
    assert_eq!(json(&res)["events"].as_array().unwrap().len(), 20);
}

#[test]
fn head_gets_the_head_only_and_the_connection_goes_on() {
    let s = Server::start(&[]);
    post_events(&s, 20);
    let mut conn = s.connect();
    conn.send(ClientRequest { method: Method::Head, ..ClientRequest::get("/events") });
    conn.send(ClientRequest::get("/health"));
    let head = conn.recv();
    assert_eq!(head.status, 200);
    assert_eq!(head.headers.get_str("transfer-encoding"), Some("chunked"));
    assert_eq!(head.headers.get_str("content-type"), Some("application/json"));
    assert_eq!(head.body.len(), 0);
    let health = conn.recv();
    assert_eq!((health.status, &health.body[..]), (200, &br#"{"status":"ok"}"#[..]));
}

#[test]
fn pipelined_requests_after_a_streamed_page_are_answered_in_order() {
    let s = Server::start(&[]);
    post_events(&s, 3);
    let mut conn = s.connect();
    conn.send_raw(b"GET /events?limit=2 HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /events?after=2 HTTP/1.1\r\nHost: x\r\n\r\n");
    let first = json(&conn.recv());
    assert_eq!(first["next_after"], 2);
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    assert_eq!(&conn.recv().body[..], br#"{"status":"ok"}"#);
    let last = json(&conn.recv());
    assert_eq!(last["events"][0]["seq"], 3);
    assert_eq!(last["next_after"], serde_json::Value::Null);
}

/// HTTP/1.0 has no chunked coding: the page is sent whole, with its length.
#[test]
fn an_http10_client_gets_the_page_whole_with_a_length() {
    let s = Server::start(&[]);
    post_events(&s, 2);
    let out = raw_exchange(s.addr, b"GET /events HTTP/1.0\r\n\r\n");
    let (head, body) = out.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(!head.contains("Transfer-Encoding"), "{head}");
    assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())), "{head}");
    assert!(head.ends_with("\r\nConnection: close"), "{head}");
    let page: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_after"], serde_json::Value::Null);
}

/// The blocking mode answers a page too (whole, with its length).
#[test]
fn the_blocking_mode_sends_pages_whole() {
    let s = Server::start(&["--mode", "blocking", "--max-page-bytes", "10"]);
    post_events(&s, 2);
    let res = s.get("/events");
    assert_eq!(res.headers.get_str("transfer-encoding"), None);
    assert_eq!(res.headers.get_str("content-length"), Some(res.body.len().to_string().as_str()));
    let body = json(&res);
    assert_eq!((body["events"].as_array().unwrap().len(), &body["next_after"]), (1, &serde_json::json!(1)));
    // HEAD: the length the GET had, no body.
    let head = s.request(ClientRequest { method: Method::Head, ..ClientRequest::get("/events") });
    assert_eq!(head.headers.get_str("content-length"), Some(res.body.len().to_string().as_str()));
    assert_eq!(head.headers.get_str("transfer-encoding"), None);
    assert!(head.body.is_empty());
}

/// A client that asks for a large page and does not read it is dropped
/// once a write has waited `--body-timeout`, and the server goes on.
#[test]
fn a_client_that_stops_reading_a_page_is_dropped_after_the_write_deadline() {
    const EVENTS: usize = 128;
    let s = Server::start(&["--body-timeout", "1s", "--max-event-bytes", "1000000", "--max-page-bytes", "100000000"]);
    let data = "x".repeat(256 * 1024);
    for i in 0..EVENTS {
        let event = format!(r#"{{"specversion":"1.0","id":"big{i}","source":"/t","type":"t.big","data":"{data}"}}"#);
        assert_eq!(s.post("/events", "application/cloudevents+json", event).status, 202);
    }
    let page_bytes = EVENTS * data.len();
    let mut stream = TcpStream::connect(s.addr).unwrap();
    stream.write_all(b"GET /events?limit=10000 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // Not reading: the socket buffers fill, the server's write waits.
    std::thread::sleep(Duration::from_secs(6));
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut got = Vec::new();
    let closed = stream.read_to_end(&mut got);
    assert!(closed.is_ok(), "the server did not close the connection: {closed:?} after {} bytes", got.len());
    assert!(got.len() < page_bytes, "the whole page ({} bytes) was written to a client that did not read", got.len());
    assert!(!got.ends_with(b"\r\n0\r\n\r\n"), "a cut page must not end like a whole one");
    assert_eq!(s.get("/health").status, 200);
    // The store's read stopped with it: a reader that reads gets the page.
    let res = s.get("/events?limit=3");
    assert_eq!(json(&res)["next_after"], 3);
}
