//! `GET /events/stream` (issue 19) end to end, on the real binary: replay
//! then live, resume by `Last-Event-ID` across a dropped connection, a
//! stalled subscriber cut off while ingest and a normal subscriber go on,
//! `--max-subscribers`, filters, tokens, keep-alives, shutdown, and
//! `inlet-client tail`. The JetStream cases need `INLET_NATS_SERVER`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use inlet_tests::{binary, event_json, json, Nats, Server, SseEnd, SseEvent, SseStream, PATIENCE};

fn post_one(s: &Server, id: &str, ty: &str) {
    let res = s.post("/events", "application/json", event_json(id, ty));
    assert_eq!(res.status, 202, "{}", String::from_utf8_lossy(&res.body));
}

/// Posts events `ids` as one batch.
fn post_batch(s: &Server, ids: impl Iterator<Item = u64>, ty: &str) {
    let items: Vec<String> = ids.map(|i| event_json(&format!("e{i}"), ty)).collect();
    let res = s.post("/events", "application/json", format!("[{}]", items.join(",")));
    assert_eq!(res.status, 202, "{}", String::from_utf8_lossy(&res.body));
}

/// The items of `GET /events?after=<after>` (one page), as JSON.
fn items(s: &Server, query: &str) -> Vec<serde_json::Value> {
    json(&s.get(&format!("/events?limit=10000&{query}")))["events"].as_array().expect("events").clone()
}

fn replay_then_live(s: &Server) {
    post_batch(s, 1..=5, "t.a");
    let mut sse = SseStream::open(s.addr, "/events/stream?after=0", &[]);
    assert_eq!(sse.status, 200);
    assert_eq!(sse.header("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(sse.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(sse.header("transfer-encoding").as_deref(), Some("chunked"));
    let replayed = sse.take(5);
    post_batch(s, 6..=8, "t.a");
    let live = sse.take(3);
    let seqs: Vec<u64> = replayed.iter().chain(&live).map(|(id, _)| *id).collect();
    let stored = items(s, "after=0");
    let stored_seqs: Vec<u64> = stored.iter().map(|i| i["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, stored_seqs, "every stored event, in seq order");
    let data: Vec<serde_json::Value> = replayed.into_iter().chain(live).map(|(_, d)| d).collect();
    assert_eq!(data, stored, "each data is exactly the item of GET /events");
    for (id, item) in seqs.iter().zip(&data) {
        assert_eq!(item["seq"].as_u64(), Some(*id), "the id is the seq");
    }
}

#[test]
fn replay_then_live_on_memory() {
    replay_then_live(&Server::start(&[]));
}

#[test]
fn replay_then_live_on_sqlite() {
    replay_then_live(&Server::start(&["--store", "sqlite"]));
}

fn jetstream_server(nats: &Nats) -> Server {
    let s = Server::start(&["--store", "jetstream", "--nats-url", &nats.url()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.get("/health").status != 200 {
        assert!(Instant::now() < deadline, "JetStream never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    s
}

#[test]
#[ignore = "needs INLET_NATS_SERVER; scripts/test.sh runs it"]
fn replay_then_live_and_resume_on_jetstream() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(dir.path());
    let s = jetstream_server(&nats);
    replay_then_live(&s);
    resume_across_a_dropped_connection(&s, 9);
    let mut latest = SseStream::open(s.addr, "/events/stream?after=latest", &[]);
    assert_eq!(latest.read(), Ok(SseEvent::Comment("after 208".into())), "the stream's last sequence");
    post_one(&s, "after-latest", "t.a");
    assert_eq!(latest.take(1)[0].0, 209);
}

/// Posts 200 events one by one from a thread while a subscriber reads some,
/// drops its connection, and reconnects with `Last-Event-ID`: it sees each
/// event exactly once, in seq order. `first`: the first seq to expect.
fn resume_across_a_dropped_connection(s: &Server, first: u64) {
    const N: u64 = 200;
    let addr = s.addr;
    let poster = std::thread::spawn(move || {
        let mut conn = inlet_tests::Conn::open(addr);
        for i in 0..N {
            let body = event_json(&format!("r{i}"), "t.r");
            let req = inlet_shared::http::ClientRequest::post("/events", "application/json", body);
            assert_eq!(conn.try_exchange(req).expect("posted").status, 202);
        }
    });
    let target = format!("/events/stream?type=t.r&after={}", first - 1);
    let mut sse = SseStream::open(s.addr, &target, &[]);
    let mut seen: Vec<u64> = Vec::new();
    let mut ids = Vec::new();
    for (id, data) in sse.take(40) {
        seen.push(id);
        ids.push(data["event"]["id"].as_str().expect("id").to_string());
    }
    // Dropped mid-stream, while the poster goes on.
    let _ = sse.socket().shutdown(std::net::Shutdown::Both);
    drop(sse);
    let last = *seen.last().expect("events");
    let mut sse = SseStream::open(s.addr, &target, &[&format!("Last-Event-ID: {last}")]);
    assert_eq!(sse.status, 200);
    for (id, data) in sse.take((N - 40) as usize) {
        seen.push(id);
        ids.push(data["event"]["id"].as_str().expect("id").to_string());
    }
    poster.join().expect("poster");
    let expected: Vec<u64> = (first..first + N).collect();
    assert_eq!(seen, expected, "no gap, no repeat");
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), N as usize);
    let expected_ids: Vec<String> = (0..N).map(|i| format!("r{i}")).collect();
    assert_eq!(ids, expected_ids);
}

#[test]
fn resume_by_last_event_id_on_memory() {
    resume_across_a_dropped_connection(&Server::start(&[]), 1);
}

#[test]
fn resume_by_last_event_id_on_sqlite() {
    resume_across_a_dropped_connection(&Server::start(&["--store", "sqlite", "--sync", "normal"]), 1);
}

#[test]
fn last_event_id_wins_over_after_and_after_latest_starts_at_the_end() {
    let s = Server::start(&[]);
    post_batch(&s, 1..=4, "t.a");
    let mut sse = SseStream::open(s.addr, "/events/stream?after=1", &["Last-Event-ID: 3"]);
    assert_eq!(sse.take(1)[0].0, 4);
    let mut latest = SseStream::open(s.addr, "/events/stream?after=latest", &[]);
    assert_eq!(latest.read(), Ok(SseEvent::Comment("after 4".into())), "it says where it starts");
    post_one(&s, "e5", "t.a");
    assert_eq!(latest.take(1)[0].0, 5, "only what is stored after it opened");
}

/// A cursor above the last stored seq (e.g. a memory store restarted: seqs
/// begin at 1 again) cannot name an event of this store: the stream says
/// `: after 0` and replays every stored event, then goes on live, rather
/// than waiting for a seq the store may reach much later.
#[test]
fn a_cursor_past_the_last_event_replays_from_the_start() {
    let s = Server::start(&[]);
    post_batch(&s, 1..=2, "t.a");
    let mut resumed = SseStream::open(s.addr, "/events/stream", &["Last-Event-ID: 50"]);
    assert_eq!(resumed.read(), Ok(SseEvent::Comment("after 0".into())), "it says where it starts");
    let got: Vec<u64> = resumed.take(2).into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, vec![1, 2]);
    let mut by_after = SseStream::open(s.addr, "/events/stream?after=3", &[]);
    assert_eq!(by_after.read(), Ok(SseEvent::Comment("after 0".into())));
    assert_eq!(by_after.take(1)[0].0, 1);
    post_one(&s, "e3", "t.a");
    assert_eq!(resumed.take(1)[0].0, 3, "then live");
    // At the head exactly, nothing is replayed and nothing announced.
    let mut at_head = SseStream::open(s.addr, "/events/stream", &["Last-Event-ID: 3"]);
    post_one(&s, "e4", "t.a");
    assert_eq!(at_head.read().map(|e| matches!(e, SseEvent::Event { id: Some(4), .. })), Ok(true));
}

#[test]
fn filters_by_type_source_and_token() {
    let s = Server::start(&[]);
    post_batch(&s, 1..=3, "t.a");
    post_batch(&s, 4..=6, "t.b");
    let mut by_type = SseStream::open(s.addr, "/events/stream?type=t.b", &[]);
    let got: Vec<u64> = by_type.take(3).into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, vec![4, 5, 6]);
    let other = r#"{"specversion":"1.0","id":"o1","source":"/other","type":"t.a"}"#;
    assert_eq!(s.post("/events", "application/json", other).status, 202);
    let mut by_source = SseStream::open(s.addr, "/events/stream?source=%2Fother", &[]);
    let (id, data) = by_source.take(1).remove(0);
    assert_eq!((id, data["event"]["id"].as_str()), (7, Some("o1")));
    post_one(&s, "e8", "t.b");
    post_one(&s, "e9", "t.a");
    let live: Vec<u64> = by_type.take(1).into_iter().map(|(id, _)| id).collect();
    assert_eq!(live, vec![8], "t.a events are not sent to a t.b subscriber");
    let bad = SseStream::open(s.addr, "/events/stream?after=x", &[]);
    assert_eq!(bad.status, 400);
    assert!(bad.body().contains("urn:inlet:problem:invalid-query"));
}

/// Raw CR and LF between JSON tokens are stored verbatim; the stream turns
/// each into a space, so every event is exactly one `data:` line that any
/// SSE reader (which ends a line at a bare CR too) gets whole.
#[test]
fn raw_line_breaks_in_stored_json_become_spaces_in_one_data_line() {
    let s = Server::start(&[]);
    let event =
        "{\"specversion\":\"1.0\",\r\"id\":\"cr\",\n\"source\":\"/t\",\r\n\"type\":\"t.a\",\"data\":{\"a\":\r1}}";
    let res = s.post("/events", "application/json", event);
    assert_eq!(res.status, 202, "{}", String::from_utf8_lossy(&res.body));
    let stored = items(&s, "after=0");
    assert_eq!(stored[0]["event"]["data"]["a"], 1);
    let mut sse = SseStream::open(s.addr, "/events/stream", &[]);
    let (id, kind, data) = sse.next_event().expect("the event");
    assert_eq!((id, kind), (Some(1), None));
    assert!(!data.contains(['\r', '\n']), "one data line, no line break left: {data:?}");
    let item: serde_json::Value = serde_json::from_str(&data).expect("data is JSON");
    assert_eq!(item, stored[0], "the same item as GET /events");
    assert!(data.ends_with(r#""data":{"a": 1}}}"#), "the break is one space: {data:?}");
}

/// A subscriber reads the store in pages of at most 256 KiB of event JSON
/// (not `--max-page-bytes`, 4 MiB): each page is one chunk on the wire, so
/// a 1.2 MiB replay arrives in chunks each under 256 KiB plus the SSE
/// framing of its events.
#[test]
fn a_replay_is_read_in_small_pages() {
    use std::io::Write;
    const N: usize = 300;
    let s = Server::start(&["--max-body", "8388608"]);
    let pad = "x".repeat(4000);
    for batch in 0..N / 50 {
        let items: Vec<String> = (0..50)
            .map(|i| {
                format!(
                    r#"{{"specversion":"1.0","id":"p{}","source":"/t","type":"t.p","data":{{"pad":"{pad}"}}}}"#,
                    batch * 50 + i
                )
            })
            .collect();
        let res = s.post("/events", "application/json", format!("[{}]", items.join(",")));
        assert_eq!(res.status, 202);
    }
    let mut conn = std::net::TcpStream::connect(s.addr).expect("connect");
    conn.set_read_timeout(Some(PATIENCE)).expect("timeout");
    conn.write_all(b"GET /events/stream HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = conn.read(&mut buf).expect("the head");
        assert!(n > 0, "closed before the head");
        raw.extend_from_slice(&buf[..n]);
    };
    raw.drain(..head_end);
    let (mut sizes, mut events) = (Vec::new(), 0);
    while events < N {
        // One complete chunk at the front of `raw`, or read more.
        let chunk = raw.windows(2).position(|w| w == b"\r\n").and_then(|line| {
            let size = usize::from_str_radix(std::str::from_utf8(&raw[..line]).ok()?, 16).ok()?;
            (raw.len() >= line + 2 + size + 2).then_some((line, size))
        });
        match chunk {
            Some((line, size)) => {
                let text = String::from_utf8_lossy(&raw[line + 2..line + 2 + size]).into_owned();
                events += text.matches("\nid: ").count() + usize::from(text.starts_with("id: "));
                sizes.push(size);
                raw.drain(..line + 4 + size);
            }
            None => {
                let n = conn.read(&mut buf).expect("more of the stream");
                assert!(n > 0, "closed after {events} events");
                raw.extend_from_slice(&buf[..n]);
            }
        }
    }
    assert_eq!(events, N);
    // 64 events of 4,100-odd bytes fit 256 KiB: each chunk is one page of them.
    assert!(sizes.len() >= 5, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n <= 256 * 1024 + 64 * 200), "{sizes:?}");
}

/// Subscribers with the same filters share the pages they read (docs/live.md,
/// "How it works"): eight subscribers, some at the same cursor, some at
/// cursors inside another's page, with three different filters, on pages
/// cut small by `--max-page-bytes`, follow the same replay and live ingest
/// (batches of 1 to 7 events). Each gets exactly its events: in `seq` order,
/// none missed, none twice, each with its own data.
#[test]
fn subscribers_sharing_pages_each_get_exactly_their_events() {
    const STORED: u64 = 20;
    const LIVE: u64 = 600;
    let ty = |seq: u64| if seq % 2 == 1 { "t.a" } else { "t.b" };
    let post = |s: &Server, seqs: std::ops::RangeInclusive<u64>| {
        let items: Vec<String> = seqs.map(|i| event_json(&format!("e{i}"), ty(i))).collect();
        let res = s.post("/events", "application/json", format!("[{}]", items.join(",")));
        assert_eq!(res.status, 202, "{}", String::from_utf8_lossy(&res.body));
    };
    // About ten events per page.
    let s = Server::start(&["--max-page-bytes", "1500"]);
    post(&s, 1..=STORED);
    let subscribers: [(Option<&str>, u64); 8] = [
        (None, 0),
        (None, 0),
        (None, 7),
        (None, STORED - 1),
        (Some("t.a"), 0),
        (Some("t.a"), 4),
        (Some("t.b"), 0),
        (Some("t.b"), 11),
    ];
    let readers: Vec<_> = subscribers
        .iter()
        .map(|&(filter, after)| {
            let target = match filter {
                Some(t) => format!("/events/stream?type={t}&after={after}"),
                None => format!("/events/stream?after={after}"),
            };
            let mut sse = SseStream::open(s.addr, &target, &[]);
            assert_eq!(sse.status, 200);
            let expected: Vec<u64> =
                (after + 1..=STORED + LIVE).filter(|seq| filter.is_none_or(|t| ty(*seq) == t)).collect();
            let n = expected.len();
            let reader = std::thread::spawn(move || {
                sse.take(n)
                    .into_iter()
                    .map(|(id, data)| {
                        assert_eq!(data["seq"].as_u64(), Some(id), "the id is the item's seq");
                        assert_eq!(data["event"]["id"].as_str(), Some(format!("e{id}").as_str()), "its own data");
                        id
                    })
                    .collect::<Vec<u64>>()
            });
            (filter, after, expected, reader)
        })
        .collect();
    let mut next = STORED + 1;
    for size in (1..=7).cycle() {
        if next > STORED + LIVE {
            break;
        }
        let last = (next + size - 1).min(STORED + LIVE);
        post(&s, next..=last);
        next = last + 1;
    }
    for (filter, after, expected, reader) in readers {
        let got = reader.join().expect("a reader");
        assert_eq!(got, expected, "type={filter:?} after={after}: every event once, in order");
    }
}

#[test]
fn a_comment_keeps_an_idle_stream_alive() {
    let s = Server::start(&["--stream-keepalive", "100ms"]);
    let mut sse = SseStream::open(s.addr, "/events/stream", &[]);
    assert_eq!(sse.read(), Ok(SseEvent::Comment("keep-alive".into())));
    assert_eq!(sse.read(), Ok(SseEvent::Comment("keep-alive".into())));
}

#[test]
fn no_keep_alive_while_events_flow_and_one_once_they_stop() {
    // Events every 100 ms for 3 s, keep-alive after 2 s without a write:
    // the keep-alive timer fires while events flow (it is not re-armed at
    // each write) and must find that the stream was written to meanwhile.
    let s = Server::start(&["--stream-keepalive", "2s"]);
    let mut sse = SseStream::open(s.addr, "/events/stream?after=latest", &[]);
    assert_eq!(sse.read(), Ok(SseEvent::Comment("after 0".into())));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..30 {
                post_one(&s, &format!("k{i}"), "t.k");
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        for seq in 1..=30 {
            match sse.read() {
                Ok(SseEvent::Event { id, .. }) => assert_eq!(id, Some(seq)),
                other => panic!("event {seq}: {other:?}"),
            }
        }
    });
    assert_eq!(sse.read(), Ok(SseEvent::Comment("keep-alive".into())), "once nothing is written for 2 s");
}

#[test]
fn max_subscribers_at_and_past_the_limit() {
    let s = Server::start(&["--max-subscribers", "2", "--stream-keepalive", "100ms"]);
    let first = SseStream::open(s.addr, "/events/stream", &[]);
    let _second = SseStream::open(s.addr, "/events/stream", &[]);
    assert_eq!((first.status, _second.status), (200, 200), "two: at the limit");
    assert_eq!(s.stats()["stream"]["subscribers"], 2);
    let third = SseStream::open(s.addr, "/events/stream", &[]);
    assert_eq!(third.status, 503, "three: past it");
    assert_eq!(third.header("retry-after").as_deref(), Some("5"));
    assert!(third.body().contains("urn:inlet:problem:too-many-subscribers"));
    // A subscriber that leaves frees its place (noticed at its next write).
    drop(first);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let again = SseStream::open(s.addr, "/events/stream", &[]);
        if again.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the place was never freed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tokens_need_the_read_scope() {
    let (read_secret, read_entry) = inlet_tests::new_token("reader", "read");
    let (write_secret, write_entry) = inlet_tests::new_token("writer", "write");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    std::fs::write(&path, format!("{read_entry}\n{write_entry}\n")).unwrap();
    let s = Server::start(&["--tokens", path.to_str().unwrap()]);
    let none = SseStream::open(s.addr, "/events/stream", &[]);
    assert_eq!(none.status, 401);
    let write_only = SseStream::open(s.addr, "/events/stream", &[&format!("Authorization: Bearer {write_secret}")]);
    assert_eq!(write_only.status, 403);
    let mut reader = SseStream::open(s.addr, "/events/stream", &[&format!("Authorization: Bearer {read_secret}")]);
    assert_eq!(reader.status, 200);
    let req = inlet_shared::http::ClientRequest::post("/events", "application/json", event_json("t1", "t.a"))
        .header(bytes::Bytes::from_static(b"Authorization"), format!("Bearer {write_secret}"));
    assert_eq!(s.request(req).status, 202);
    let (id, data) = reader.take(1).remove(0);
    assert_eq!((id, data["token"].as_str()), (1, Some("writer")));
}

#[test]
fn shutdown_ends_streams_cleanly() {
    let mut s = Server::start(&[]);
    let mut sse = SseStream::open(s.addr, "/events/stream", &[]);
    post_one(&s, "e1", "t.a");
    assert_eq!(sse.take(1)[0].0, 1);
    s.signal("TERM");
    assert_eq!(sse.read(), Err(SseEnd::Clean), "the last chunk, then the end");
    let status = s.wait(PATIENCE).expect("the server exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn head_answers_the_head_only() {
    let s = Server::start(&[]);
    let raw =
        inlet_tests::raw_exchange(s.addr, b"HEAD /events/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(raw.contains("Content-Type: text/event-stream\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\n"), "no body: {raw}");
    assert_eq!(s.stats()["stream"]["subscribers"], 0, "a HEAD does not subscribe");
}

#[test]
fn blocking_mode_and_http10_are_refused() {
    let blocking = Server::start(&["--mode", "blocking"]);
    let res = blocking.get("/events/stream");
    assert_eq!(res.status, 501);
    assert_eq!(json(&res)["type"], "urn:inlet:problem:stream-unavailable");
    let s = Server::start(&[]);
    let raw = inlet_tests::raw_exchange(s.addr, b"GET /events/stream HTTP/1.0\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 505 "), "{raw}");
    assert!(raw.contains("stream-needs-http11"), "{raw}");
}

/// A subscriber that reads nothing is cut off with `lagged` once its
/// buffer is passed, while ingest and a normal subscriber go on: the
/// normal one gets every event.
#[test]
fn a_stalled_subscriber_is_dropped_and_the_others_go_on() {
    let s = Server::start(&["--stream-buffer-events", "200", "--stream-keepalive", "200ms", "--max-body", "8388608"]);
    let stalled = SseStream::open(s.addr, "/events/stream", &[]);
    assert_eq!(stalled.status, 200);
    let (tx, rx) = mpsc::channel();
    let (total_tx, total_rx) = mpsc::channel::<u64>();
    let addr = s.addr;
    let reader = std::thread::spawn(move || {
        let mut normal = SseStream::open(addr, "/events/stream", &[]);
        let _ = tx.send(());
        let mut seqs = Vec::new();
        let mut total = None;
        loop {
            match normal.read() {
                Ok(SseEvent::Event { id: Some(id), kind: None, .. }) => seqs.push(id),
                Ok(SseEvent::Comment(_)) => {}
                other => panic!("the normal subscriber got {other:?} after {:?}", seqs.last()),
            }
            total = total.or_else(|| total_rx.try_recv().ok());
            if total.is_some() && seqs.last().copied() == total {
                // Handed back open: closed here, it would be gone by the
                // next keep-alive and the count below would race to 0.
                return (seqs, normal);
            }
        }
    });
    rx.recv_timeout(PATIENCE).expect("the normal subscriber is open");
    // Large events fill the stalled connection's socket buffers quickly.
    let mut posted = post_until_lagged(&s, 1);
    // Ingest goes on after it, too.
    post_batch(&s, 1_000_000..1_000_010, "t.after");
    posted += 10;
    assert_eq!(s.stats()["stream"]["subscribers"], 2, "the stalled one holds its place until it is gone");
    let total = s.stats()["accepted"].as_u64().expect("accepted");
    assert_eq!(total, posted);
    total_tx.send(total).expect("the reader is there");
    let (seqs, _normal) = reader.join().expect("the normal subscriber");
    assert_eq!(seqs, (1..=total).collect::<Vec<u64>>(), "the normal subscriber got every event");
    // The stalled one, read now: events from 1 on, then `lagged` naming the
    // last one sent, then the end.
    let mut stalled = stalled;
    let mut last = 0;
    loop {
        match stalled.read() {
            Ok(SseEvent::Event { id: Some(id), kind: None, .. }) => {
                assert_eq!(id, last + 1);
                last = id;
            }
            Ok(SseEvent::Event { id: None, kind: Some(kind), data }) => {
                assert_eq!(kind, "lagged");
                let data: serde_json::Value = serde_json::from_str(&data).expect("JSON");
                assert_eq!(data["last_seq"].as_u64(), Some(last), "{data}");
                assert!(last < total, "it was behind");
                break;
            }
            Ok(SseEvent::Comment(_)) => {}
            other => panic!("the stalled subscriber got {other:?} after {last}"),
        }
    }
    assert_eq!(stalled.read(), Err(SseEnd::Clean));
    let deadline = Instant::now() + PATIENCE;
    while s.stats()["stream"]["subscribers"] != 1 {
        assert!(Instant::now() < deadline, "the stalled one's place was never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = String::from_utf8_lossy(&s.get("/metrics").body).into_owned();
    assert!(metrics.contains("inlet_stream_lagged_total 1"), "{metrics}");
    assert!(metrics.contains("# TYPE inlet_stream_subscribers gauge"), "{metrics}");
}

/// Posts batches of 40 large events until `/stats` counts `lagged` lagged
/// subscribers; returns how many were posted.
fn post_until_lagged(s: &Server, lagged: u64) -> u64 {
    let pad = "x".repeat(16 * 1024);
    let mut posted = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while s.stats()["stream"]["lagged"] != lagged {
        assert!(Instant::now() < deadline, "the stalled subscriber was never cut off");
        let batch: Vec<String> = (0..40)
            .map(|i| {
                format!(
                    r#"{{"specversion":"1.0","id":"s{}","source":"/t","type":"t.s","data":{{"pad":"{pad}"}}}}"#,
                    posted + i
                )
            })
            .collect();
        let res = s.post("/events", "application/json", format!("[{}]", batch.join(",")));
        assert_eq!(res.status, 202, "ingest goes on");
        posted += 40;
    }
    posted
}

/// A lagged subscriber keeps its place while `event: lagged` waits for its
/// client: at `--max-subscribers`, a new one is refused until it is gone.
#[test]
fn a_lagged_subscriber_holds_its_place_until_it_is_gone() {
    let s = Server::start(&["--max-subscribers", "1", "--stream-buffer-events", "50", "--max-body", "8388608"]);
    let mut stalled = SseStream::open(s.addr, "/events/stream", &[]);
    assert_eq!(stalled.status, 200);
    post_until_lagged(&s, 1);
    assert_eq!(s.stats()["stream"]["subscribers"], 1, "still held: its lagged event waits");
    let refused = SseStream::open(s.addr, "/events/stream", &[]);
    assert_eq!(refused.status, 503, "its place is not free yet");
    // Read to its end: then the place is freed.
    loop {
        match stalled.read() {
            Ok(SseEvent::Event { kind: Some(kind), .. }) => assert_eq!(kind, "lagged"),
            Ok(_) => {}
            Err(end) => {
                assert_eq!(end, SseEnd::Clean);
                break;
            }
        }
    }
    let deadline = Instant::now() + PATIENCE;
    loop {
        let again = SseStream::open(s.addr, "/events/stream", &[]);
        if again.status == 200 {
            break;
        }
        assert_eq!(again.status, 503);
        assert!(Instant::now() < deadline, "the place was never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `inlet-client tail` against a live server: prints each new event's item
/// as one JSON line, and exits 0 on SIGINT.
#[test]
fn tail_prints_events_as_json_lines_and_stops_on_sigint() {
    let s = Server::start(&[]);
    post_one(&s, "old", "t.a");
    let mut child = Command::new(binary("inlet-client"))
        .args(["tail", "--server", &s.addr.to_string(), "--type", "t.a"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn inlet-client tail");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Live only: "old" is not printed. Posted until the tail is connected.
    let deadline = Instant::now() + PATIENCE;
    let mut n = 0;
    let first = loop {
        post_one(&s, &format!("new{n}"), "t.a");
        post_one(&s, &format!("other{n}"), "t.b");
        n += 1;
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            break line;
        }
        assert!(Instant::now() < deadline, "tail printed nothing");
    };
    let item: serde_json::Value = serde_json::from_str(&first).expect("a JSON line");
    let id = item["event"]["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("new"), "only new t.a events: {first}");
    let stored = items(&s, "type=t.a");
    let expected = stored.iter().find(|i| i["event"]["id"] == id.as_str()).expect("stored");
    assert_eq!(&item, expected, "the line is the item of GET /events");
    post_one(&s, "last", "t.a");
    let mut lines = Vec::new();
    loop {
        let line = rx.recv_timeout(PATIENCE).expect("tail prints the next events");
        let item: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        lines.push(item["event"]["id"].as_str().expect("id").to_string());
        if lines.last().map(String::as_str) == Some("last") {
            break;
        }
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + PATIENCE;
    let exit = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "tail did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
    assert_eq!(exit.code(), Some(0), "{stderr}");
}

/// `tail` reconnects on its own when the server drops it, and resumes with
/// no gap: events posted while it was away are printed once.
#[test]
fn tail_from_start_resumes_after_the_server_restarts() {
    let s = Server::start(&["--store", "sqlite"]);
    post_batch(&s, 1..=3, "t.a");
    let mut child = Command::new(binary("inlet-client"))
        .args(["tail", "--server", &s.addr.to_string(), "--from-start"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn inlet-client tail");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let seq_of = |line: String| serde_json::from_str::<serde_json::Value>(&line).expect("JSON")["seq"].as_u64();
    let got: Vec<Option<u64>> = (0..3).map(|_| seq_of(rx.recv_timeout(PATIENCE).expect("a line"))).collect();
    assert_eq!(got, vec![Some(1), Some(2), Some(3)]);
    // The server restarts on the same port and data; two events arrive meanwhile.
    let addr = s.addr;
    let dir = s.kill9();
    let s = Server::start_in(dir, &["--store", "sqlite", "--listen", &addr.to_string()]);
    post_batch(&s, 4..=5, "t.a");
    let got: Vec<Option<u64>> = (0..2).map(|_| seq_of(rx.recv_timeout(PATIENCE * 3).expect("a line"))).collect();
    assert_eq!(got, vec![Some(4), Some(5)], "resumed after 3, nothing repeated");
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let _ = child.wait();
}
