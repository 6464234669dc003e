//! The driver's deadlines and shutdown, in process: the driver runs over
//! `tokio::io::duplex` with the clock paused, so every rule and its edge is
//! checked at the exact (virtual) instant it applies, in microseconds of
//! wall time. The end-to-end tests keep one real-time case per deadline.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use super::*;
use crate::store::{ErrorKind, MemoryStore, PageItem, PageSender, PageStream, Query, Store, StoreError, StoredEvent};

const SECOND: Duration = Duration::from_secs(1);
const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

fn settings(header: u64, body: u64, idle: u64) -> ServerSettings {
    ServerSettings {
        limits: Default::default(),
        max_connections: 1,
        header_timeout: SECOND * header as u32,
        body_timeout: SECOND * body as u32,
        idle_timeout: SECOND * idle as u32,
        shutdown_timeout: SECOND * 30,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One response as the client read it.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
    /// When it arrived, from the accept.
    at: Duration,
}

/// The client end of a connection served by a [`Driver`].
struct Client {
    io: DuplexStream,
    buf: Vec<u8>,
    accepted: Instant,
    stop: watch::Sender<bool>,
    app: Arc<App>,
    driver: JoinHandle<()>,
}

impl Client {
    /// Accepts a connection now and starts its driver.
    fn connect(settings: ServerSettings) -> Client {
        let (io, server) = tokio::io::duplex(1 << 16);
        Client::over(io, server, settings)
    }

    fn over<S>(io: DuplexStream, server: S, settings: ServerSettings) -> Client
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Client::with_store(io, server, settings, Arc::new(MemoryStore::default()))
    }

    fn with_store<S>(io: DuplexStream, server: S, settings: ServerSettings, store: Arc<dyn Store>) -> Client
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = Arc::new(App::with_limits(store, Default::default()));
        let (stop, rx) = watch::channel(false);
        let accepted = Instant::now();
        let driver = tokio::spawn(Driver::new(server, app.clone(), settings, Shutdown::new(rx), accepted).drive());
        Client { io, buf: Vec::new(), accepted, stop, app, driver }
    }

    /// Sends `bytes` at `at` after the accept.
    async fn send_at(&mut self, at: Duration, bytes: &[u8]) {
        sleep_until(self.accepted + at).await;
        self.io.write_all(bytes).await.unwrap();
    }

    fn now(&self) -> Duration {
        Instant::now() - self.accepted
    }

    /// Reads one response (`Content-Length` framed); `None` at EOF.
    async fn answer(&mut self) -> Option<Answer> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill().await {
                assert!(self.buf.is_empty(), "EOF inside a response head: {:?}", self.buf);
                return None;
            }
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        let status = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map(|n| n.trim().parse().unwrap())
            .unwrap_or(0);
        while self.buf.len() < end + length {
            assert!(self.fill().await, "EOF inside a response body");
        }
        let body = self.buf[end..end + length].to_vec();
        self.buf.drain(..end + length);
        Some(Answer { status, head, body, at: self.now() })
    }

    /// Reads a response head and its chunked body; the body is `None` if
    /// the connection closed before the last chunk.
    async fn chunked(&mut self) -> (String, Option<Vec<u8>>) {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(self.fill().await, "EOF inside a response head: {:?}", self.buf);
        };
        let head = String::from_utf8(self.buf.drain(..end).collect()).unwrap();
        let mut body = Vec::new();
        loop {
            let line = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if !self.fill().await {
                    return (head, None);
                }
            };
            let size = usize::from_str_radix(std::str::from_utf8(&self.buf[..line]).unwrap(), 16).unwrap();
            while self.buf.len() < line + 2 + size + 2 {
                if !self.fill().await {
                    return (head, None);
                }
            }
            assert_eq!(&self.buf[line + 2 + size..line + 4 + size], b"\r\n");
            body.extend_from_slice(&self.buf[line + 2..line + 2 + size]);
            self.buf.drain(..line + 4 + size);
            if size == 0 {
                return (head, Some(body));
            }
        }
    }

    /// Reads until the server closes; returns what came and when it closed.
    async fn closed(&mut self) -> (Vec<u8>, Duration) {
        while self.fill().await {}
        (std::mem::take(&mut self.buf), self.now())
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = self.io.read(&mut chunk).await.unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    fn shut_down(&self) {
        self.stop.send(true).unwrap();
    }

    fn rejected(&self, reason: &str) -> u64 {
        let stats: serde_json::Value = serde_json::from_slice(&self.app.stats.to_json()).unwrap();
        stats["rejected"][reason].as_u64().unwrap_or(0)
    }
}

fn timed_out(answer: &Answer) {
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(answer.head.contains("Connection: close\r\n"), "{answer:?}");
}

// --- the first request's head: `header_timeout` from the accept ---

#[tokio::test(start_paused = true)]
async fn a_silent_connection_gets_408_at_the_header_deadline_from_accept() {
    let mut c = Client::connect(settings(10, 30, 60));
    let answer = c.answer().await.expect("a 408");
    timed_out(&answer);
    assert_eq!(answer.at, 10 * SECOND);
    assert_eq!(c.closed().await, (Vec::new(), 10 * SECOND));
    assert_eq!(c.rejected("request-timeout"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_byte_just_before_the_header_deadline_does_not_extend_it() {
    let mut c = Client::connect(settings(10, 30, 60));
    c.send_at(SECOND * 4, b"GET /health HTTP/1.1\r\n").await;
    c.send_at(ms(9_999), b"Host: x\r\n").await;
    let answer = c.answer().await.expect("a 408");
    timed_out(&answer);
    assert_eq!(answer.at, 10 * SECOND, "the first request's deadline counts from the accept, not its bytes");
}

#[tokio::test(start_paused = true)]
async fn a_head_completed_just_before_the_deadline_is_answered() {
    let mut c = Client::connect(settings(10, 30, 60));
    c.send_at(Duration::ZERO, b"GET /health HTTP/1.1\r\nHo").await;
    c.send_at(ms(9_999), b"st: x\r\n\r\n").await;
    let answer = c.answer().await.expect("an answer");
    assert_eq!((answer.status, answer.at), (200, ms(9_999)));
    assert_eq!(answer.body, br#"{"status":"ok"}"#);
}

// --- later heads: `header_timeout` from their own first byte ---

#[tokio::test(start_paused = true)]
async fn a_head_begun_while_idle_gets_its_header_deadline_from_its_first_byte() {
    let mut c = Client::connect(settings(10, 30, 60));
    c.send_at(Duration::ZERO, HEALTH).await;
    assert_eq!(c.answer().await.expect("an answer").status, 200);
    c.send_at(SECOND * 5, b"GET /health HT").await;
    let answer = c.answer().await.expect("a 408");
    timed_out(&answer);
    // Not at the idle deadline (60 s): the head's own deadline governs.
    assert_eq!(answer.at, SECOND * 15);
}

#[tokio::test(start_paused = true)]
async fn a_pipelined_second_head_gets_its_own_header_deadline() {
    let mut c = Client::connect(settings(10, 30, 60));
    let mut wire = HEALTH.to_vec();
    wire.extend_from_slice(b"GET /health HT");
    c.send_at(SECOND * 3, &wire).await;
    let first = c.answer().await.expect("the first answer");
    assert_eq!((first.status, first.at), (200, SECOND * 3));
    c.send_at(ms(12_999), b"TP/1.1\r\n").await;
    let second = c.answer().await.expect("a 408");
    timed_out(&second);
    assert_eq!(second.at, SECOND * 13);
}

// --- bodies: `body_timeout` from the end of the head ---

#[tokio::test(start_paused = true)]
async fn a_body_gets_its_deadline_from_the_end_of_its_head() {
    let mut c = Client::connect(settings(10, 3, 60));
    c.send_at(Duration::ZERO, b"POST /echo HTTP/1.1\r\nHost: x\r\n").await;
    c.send_at(SECOND * 2, b"Content-Length: 10\r\n\r\nabc").await;
    // A byte just before the deadline does not extend it.
    c.send_at(ms(4_999), b"d").await;
    let answer = c.answer().await.expect("a 408");
    timed_out(&answer);
    // The head ended at 2 s: 2 + 3, not the head's 10 s.
    assert_eq!(answer.at, SECOND * 5);
    assert_eq!(c.closed().await.0, b"");
}

#[tokio::test(start_paused = true)]
async fn a_body_completed_before_its_deadline_is_answered() {
    let mut c = Client::connect(settings(10, 3, 60));
    c.send_at(SECOND, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc").await;
    c.send_at(ms(3_999), b"defghij").await;
    let answer = c.answer().await.expect("an answer");
    assert_eq!((answer.status, answer.at), (200, ms(3_999)));
    assert_eq!(answer.body, b"abcdefghij");
}

// --- idle keep-alive: `idle_timeout` from the last answer, silently ---

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_closes_silently_at_the_idle_deadline() {
    let mut c = Client::connect(settings(10, 30, 60));
    c.send_at(SECOND * 2, HEALTH).await;
    assert_eq!(c.answer().await.expect("an answer").status, 200);
    assert_eq!(c.closed().await, (Vec::new(), SECOND * 62));
    assert_eq!(c.rejected("request-timeout"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_request_just_before_the_idle_deadline_is_answered() {
    let mut c = Client::connect(settings(10, 30, 60));
    c.send_at(Duration::ZERO, HEALTH).await;
    assert_eq!(c.answer().await.expect("an answer").status, 200);
    c.send_at(ms(59_999), HEALTH).await;
    let answer = c.answer().await.expect("an answer");
    assert_eq!((answer.status, answer.at), (200, ms(59_999)));
}

#[tokio::test(start_paused = true)]
async fn each_answer_moves_the_idle_deadline_on() {
    // The timer is left at the first idle deadline (60 s) when a later
    // request moves it on; passing that instant must not close the
    // connection, and each later deadline holds to the millisecond.
    let mut c = Client::connect(settings(10, 30, 60));
    c.send_at(Duration::ZERO, HEALTH).await;
    assert_eq!(c.answer().await.expect("an answer").status, 200);
    c.send_at(SECOND * 50, HEALTH).await;
    assert_eq!(c.answer().await.expect("an answer").status, 200);
    c.send_at(ms(109_999), HEALTH).await;
    let answer = c.answer().await.expect("an answer");
    assert_eq!((answer.status, answer.at), (200, ms(109_999)));
    assert_eq!(c.closed().await, (Vec::new(), ms(169_999)));
}

#[tokio::test(start_paused = true)]
async fn the_idle_deadline_counts_from_the_end_of_a_write_that_had_to_wait() {
    // A 16-byte pipe: the answer is written only as the client reads it,
    // 30 s after it was made. The idle deadline runs from then (90 s), not
    // from when the answer was made (60 s).
    let (io, server) = tokio::io::duplex(16);
    let mut c = Client::over(io, server, settings(10, 30, 60));
    c.send_at(Duration::ZERO, HEALTH).await;
    sleep_until(c.accepted + SECOND * 30).await;
    let answer = c.answer().await.expect("an answer");
    assert_eq!((answer.status, answer.at), (200, SECOND * 30));
    assert_eq!(c.closed().await, (Vec::new(), SECOND * 90));
}

// --- shutdown ---

#[tokio::test(start_paused = true)]
async fn shutdown_before_the_first_byte_closes_silently() {
    let mut c = Client::connect(settings(10, 30, 60));
    sleep_until(c.accepted + SECOND).await;
    c.shut_down();
    assert_eq!(c.closed().await, (Vec::new(), SECOND));
}

#[tokio::test(start_paused = true)]
async fn shutdown_while_idle_closes_silently() {
    let mut c = Client::connect(settings(10, 30, 60));
    c.send_at(Duration::ZERO, HEALTH).await;
    let answer = c.answer().await.expect("an answer");
    assert!(!answer.head.contains("Connection:"), "{answer:?}");
    sleep_until(c.accepted + SECOND * 5).await;
    c.shut_down();
    assert_eq!(c.closed().await, (Vec::new(), SECOND * 5));
}

#[tokio::test(start_paused = true)]
async fn shutdown_while_a_body_is_half_read_finishes_that_request_then_closes() {
    let mut c = Client::connect(settings(10, 30, 60));
    c.send_at(Duration::ZERO, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabcde").await;
    sleep_until(c.accepted + SECOND).await;
    c.shut_down();
    c.send_at(SECOND * 2, b"fghij").await;
    let answer = c.answer().await.expect("the request is finished");
    assert_eq!((answer.status, answer.at), (200, SECOND * 2));
    assert_eq!(answer.body, b"abcdefghij");
    assert!(answer.head.contains("Connection: close\r\n"), "{answer:?}");
    assert_eq!(c.closed().await.0, b"");
    c.driver.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_does_not_extend_a_deadline() {
    // A half-read head is finished, not cut off, but it is still due.
    let mut c = Client::connect(settings(10, 30, 60));
    c.send_at(Duration::ZERO, b"GET /health HTTP/1.1\r\n").await;
    sleep_until(c.accepted + SECOND).await;
    c.shut_down();
    let answer = c.answer().await.expect("a 408");
    timed_out(&answer);
    assert_eq!(answer.at, SECOND * 10);
}

// --- pipelining ---

/// A stream that counts the writes that reach it.
struct CountingWrites {
    io: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl AsyncRead for CountingWrites {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountingWrites {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[tokio::test(start_paused = true)]
async fn pipelined_requests_are_answered_with_one_write() {
    let (io, server) = tokio::io::duplex(1 << 16);
    let writes = Arc::new(AtomicUsize::new(0));
    let mut c = Client::over(io, CountingWrites { io: server, writes: writes.clone() }, settings(10, 30, 60));
    let mut wire = Vec::new();
    for _ in 0..3 {
        wire.extend_from_slice(HEALTH);
    }
    wire.extend_from_slice(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
    c.send_at(Duration::ZERO, &wire).await;
    for _ in 0..3 {
        assert_eq!(c.answer().await.expect("an answer").status, 200);
    }
    assert_eq!(c.answer().await.expect("the echo").body, b"hi");
    assert_eq!(writes.load(Ordering::Relaxed), 1, "four answers, one write");
    // One request at a time: one write each.
    c.send_at(SECOND, HEALTH).await;
    assert_eq!(c.answer().await.expect("an answer").status, 200);
    assert_eq!(writes.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn a_protocol_error_is_answered_after_the_answers_before_it_and_closes() {
    let mut c = Client::connect(settings(10, 30, 60));
    let mut wire = HEALTH.to_vec();
    wire.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    c.send_at(Duration::ZERO, &wire).await;
    assert_eq!(c.answer().await.expect("an answer").status, 200);
    let refused = c.answer().await.expect("a refusal");
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(refused.head.contains("Connection: close\r\n"), "{refused:?}");
    assert_eq!(c.closed().await.0, b"");
}

#[tokio::test(start_paused = true)]
async fn the_driver_records_metrics_for_every_answered_request() {
    let mut c = Client::connect(settings(10, 30, 60));
    c.send_at(Duration::ZERO, HEALTH).await;
    assert_eq!(c.answer().await.expect("an answer").status, 200);
    let metrics = c.app.metrics.render();
    assert!(metrics.contains(r#"inlet_http_requests_total{route="/health",method="GET",status="200"} 1"#), "{metrics}");
}

// --- streamed answers (`GET /events` pages) ---

/// A store whose pages are made up: `slices` slices of one event of
/// `event_bytes` each, then the end, or a failure instead of the end if
/// `fail`. Counts the slices the reader took.
struct MadeUpPages {
    slices: u64,
    event_bytes: usize,
    fail: bool,
    sent: Arc<AtomicUsize>,
    live: Arc<crate::store::Live>,
}

impl MadeUpPages {
    fn new(slices: u64, event_bytes: usize, fail: bool) -> (Arc<MadeUpPages>, Arc<AtomicUsize>) {
        let sent = Arc::new(AtomicUsize::new(0));
        (Arc::new(MadeUpPages { slices, event_bytes, fail, sent: sent.clone(), live: Arc::default() }), sent)
    }
}

impl Store for MadeUpPages {
    fn append<'a>(
        &'a self,
        _: &'a [inlet_shared::event::Event],
        _: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Result<crate::store::Appended, StoreError>> {
        Box::pin(async { Err(StoreError::plain(ErrorKind::Unavailable, "read only")) })
    }

    fn query(&self, _: Query, _: usize) -> futures::future::BoxFuture<'_, PageStream> {
        let (tx, stream) = PageSender::channel();
        let (slices, size, fail, sent) = (self.slices, self.event_bytes, self.fail, self.sent.clone());
        tokio::spawn(async move {
            for seq in 1..=slices {
                let json = bytes::Bytes::from(vec![b'7'; size]);
                let event = StoredEvent { seq, received_at: "2026-12-01T00:00:00Z".into(), json, token: None };
                if !tx.send(PageItem::Events(vec![event])).await {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            let last = if fail {
                PageItem::Failed(StoreError::plain(ErrorKind::Unavailable, "the disk went away"))
            } else {
                PageItem::End { next_after: None }
            };
            tx.send(last).await;
        });
        Box::pin(std::future::ready(stream))
    }

    fn last_seq(&self) -> futures::future::BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async { Ok(0) })
    }

    fn close(&self) -> futures::future::BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    fn name(&self) -> &'static str {
        "made-up"
    }

    fn live(&self) -> &Arc<crate::store::Live> {
        &self.live
    }
}

fn made_up(slices: u64, event_bytes: usize, fail: bool, settings: ServerSettings) -> (Client, Arc<AtomicUsize>) {
    let (store, sent) = MadeUpPages::new(slices, event_bytes, fail);
    let (io, server) = tokio::io::duplex(1 << 16);
    (Client::with_store(io, server, settings, store), sent)
}

const PAGE: &[u8] = b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test(start_paused = true)]
async fn a_streamed_page_is_chunked_whole_and_the_connection_goes_on() {
    // Three events of 400 bytes: past the 1 KiB under which a page is sent whole.
    let (mut c, _) = made_up(3, 400, false, settings(10, 30, 60));
    let mut wire = PAGE.to_vec();
    wire.extend_from_slice(HEALTH);
    c.send_at(Duration::ZERO, &wire).await;
    let (head, body) = c.chunked().await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    let at = "\"received_at\":\"2026-12-01T00:00:00Z\",\"token\":null";
    let e = "7".repeat(400);
    let expected = format!(
        "{{\"events\":[{{\"seq\":1,{at},\"event\":{e}}},{{\"seq\":2,{at},\"event\":{e}}},{{\"seq\":3,{at},\"event\":{e}}}],\"next_after\":null}}"
    );
    assert_eq!(String::from_utf8(body.expect("a whole body")).unwrap(), expected);
    let health = c.answer().await.expect("the next answer");
    assert_eq!((health.status, &health.body[..]), (200, &br#"{"status":"ok"}"#[..]));
}

#[tokio::test(start_paused = true)]
async fn a_page_its_store_cuts_ends_without_the_last_chunk_and_closes() {
    // Two events of 800 bytes: streaming has begun when the read fails.
    let (mut c, sent) = made_up(2, 800, true, settings(10, 30, 60));
    let mut wire = PAGE.to_vec();
    wire.extend_from_slice(HEALTH);
    c.send_at(Duration::ZERO, &wire).await;
    let (head, body) = c.chunked().await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, None, "a cut page must not look whole");
    assert_eq!(c.closed().await.0, b"", "the pipelined /health is not answered after a cut body");
    assert_eq!(sent.load(Ordering::Relaxed), 2);
    c.driver.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_dropped_at_the_write_deadline_and_the_read_stops() {
    // 1,000 slices of 64 KiB; the duplex holds 64 KiB; the client reads nothing.
    let (mut c, sent) = made_up(1000, 64 * 1024, false, settings(10, 3, 60));
    c.send_at(Duration::ZERO, PAGE).await;
    let driver = std::mem::replace(&mut c.driver, tokio::spawn(async {}));
    driver.await.unwrap();
    assert_eq!(c.now(), SECOND * 3, "dropped when a write waited body_timeout");
    // The producer learns on its next send that nobody reads any more.
    tokio::task::yield_now().await;
    let taken = sent.load(Ordering::Relaxed);
    assert!(taken < 10, "{taken} slices were read for a client that read nothing");
    let (got, _) = c.closed().await;
    assert!(got.len() < 2 * 64 * 1024 + 1024, "{} bytes", got.len());
}

#[tokio::test(start_paused = true)]
async fn a_client_that_reads_slowly_is_served_whole() {
    // Each write finishes well within the deadline: the page is not cut,
    // however long the whole takes.
    let (mut c, sent) = made_up(50, 64 * 1024, false, settings(10, 3, 60));
    c.send_at(Duration::ZERO, PAGE).await;
    let mut got = 0usize;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        sleep_until(Instant::now() + SECOND).await;
        let n = c.io.read(&mut chunk).await.unwrap();
        if n == 0 || chunk[..n].ends_with(b"\r\n0\r\n\r\n") {
            got += n;
            break;
        }
        got += n;
    }
    assert!(got > 50 * 64 * 1024, "{got} bytes");
    assert!(c.now() > SECOND * 40, "the page took longer than one deadline");
    assert_eq!(sent.load(Ordering::Relaxed), 50);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_mid_page_stops_the_read() {
    let (c, sent) = made_up(1000, 64 * 1024, false, settings(10, 30, 60));
    let Client { mut io, driver, .. } = c;
    io.write_all(PAGE).await.unwrap();
    let mut head = vec![0u8; 1024];
    assert!(io.read(&mut head).await.unwrap() > 0);
    drop(io);
    driver.await.unwrap();
    tokio::task::yield_now().await;
    let taken = sent.load(Ordering::Relaxed);
    assert!(taken < 10, "{taken} slices were read after the client left");
}

#[tokio::test(start_paused = true)]
async fn head_of_a_page_gets_the_head_and_reads_no_more_than_its_first_slice() {
    let (mut c, sent) = made_up(1000, 64 * 1024, false, settings(10, 30, 60));
    let mut wire = b"HEAD /events HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    wire.extend_from_slice(HEALTH);
    c.send_at(Duration::ZERO, &wire).await;
    let head = c.answer().await.expect("the head");
    assert_eq!(head.status, 200);
    assert!(head.head.contains("Transfer-Encoding: chunked\r\n"), "{head:?}");
    assert!(head.body.is_empty());
    let health = c.answer().await.expect("the next answer");
    assert_eq!(health.body, br#"{"status":"ok"}"#);
    let taken = sent.load(Ordering::Relaxed);
    assert!(taken < 10, "{taken} slices were read for a HEAD");
}

#[tokio::test(start_paused = true)]
async fn an_http10_client_gets_a_streamed_page_whole_with_its_length() {
    let (mut c, _) = made_up(3, 4, false, settings(10, 30, 60));
    c.send_at(Duration::ZERO, b"GET /events HTTP/1.0\r\n\r\n").await;
    let answer = c.answer().await.expect("an answer");
    assert!(!answer.head.contains("Transfer-Encoding"), "{answer:?}");
    assert!(answer.head.contains("Connection: close\r\n"), "{answer:?}");
    assert!(answer.body.ends_with(b"\"event\":7777}],\"next_after\":null}"), "{answer:?}");
    assert_eq!(c.closed().await.0, b"");
}

#[tokio::test(start_paused = true)]
async fn an_http10_head_of_a_page_gets_its_length_and_no_transfer_encoding() {
    // RFC 9112 §6.1: no Transfer-Encoding to a client that did not say HTTP/1.1.
    let (mut c, _) = made_up(3, 4, false, settings(10, 30, 60));
    c.send_at(Duration::ZERO, b"HEAD /events HTTP/1.0\r\n\r\n").await;
    let (head, _) = c.closed().await;
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(!head.contains("Transfer-Encoding"), "{head}");
    let whole = "{\"events\":[".len()
        + 3 * "{\"seq\":1,\"received_at\":\"2026-12-01T00:00:00Z\",\"token\":null,\"event\":7777}".len()
        + 2
        + "],\"next_after\":null}".len();
    assert!(head.contains(&format!("Content-Length: {whole}\r\n")), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "no body: {head}");
}

// --- large chunks written from their own bytes (not copied into the buffer) ---

/// The server end of a connection that takes at most `max` bytes per write,
/// and takes vectored writes only if `vectored` (a TLS stream does not).
/// Counts the vectored writes it was given.
struct Trickle {
    inner: DuplexStream,
    max: usize,
    vectored: bool,
    vectored_writes: Arc<AtomicUsize>,
}

impl Trickle {
    fn new(inner: DuplexStream, max: usize, vectored: bool) -> (Trickle, Arc<AtomicUsize>) {
        let vectored_writes = Arc::new(AtomicUsize::new(0));
        (Trickle { inner, max, vectored, vectored_writes: vectored_writes.clone() }, vectored_writes)
    }
}

impl AsyncRead for Trickle {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.max);
        Pin::new(&mut self.inner).poll_write(cx, &buf[..n])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        assert!(self.vectored, "a vectored write to a stream that does not take them");
        self.vectored_writes.fetch_add(1, Ordering::Relaxed);
        // What a socket would take of the slices: their bytes in order, up
        // to `max`, as one write.
        let mut joined = Vec::new();
        for b in bufs {
            joined.extend_from_slice(&b[..b.len().min(self.max - joined.len())]);
        }
        Pin::new(&mut self.inner).poll_write(cx, &joined)
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A made-up page served over a [`Trickle`].
fn made_up_trickle(
    slices: u64,
    event_bytes: usize,
    max: usize,
    vectored: bool,
    s: ServerSettings,
) -> (Client, Arc<AtomicUsize>) {
    let (store, _) = MadeUpPages::new(slices, event_bytes, false);
    let (io, server) = tokio::io::duplex(1 << 16);
    let (server, vectored_writes) = Trickle::new(server, max, vectored);
    (Client::with_store(io, server, s, store), vectored_writes)
}

/// The exact body of a made-up page of `n` events of `size` bytes.
fn made_up_page(n: u64, size: usize) -> Vec<u8> {
    let e = "7".repeat(size);
    let events: Vec<String> = (1..=n)
        .map(|seq| format!("{{\"seq\":{seq},\"received_at\":\"2026-12-01T00:00:00Z\",\"token\":null,\"event\":{e}}}"))
        .collect();
    format!("{{\"events\":[{}],\"next_after\":null}}", events.join(",")).into_bytes()
}

/// Splits a chunked body into its chunks, checking its framing byte by
/// byte: each size line in lowercase hex without leading zeros, each chunk
/// followed by CRLF, the last chunk, nothing after.
fn chunks_of(mut wire: &[u8]) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    loop {
        let line = wire.windows(2).position(|w| w == b"\r\n").expect("a size line");
        let digits = std::str::from_utf8(&wire[..line]).unwrap();
        let size = usize::from_str_radix(digits, 16).unwrap();
        assert_eq!(digits, format!("{size:x}"), "size line");
        if size == 0 {
            assert_eq!(&wire[line..], b"\r\n\r\n", "the last chunk ends the body");
            return chunks;
        }
        assert_eq!(&wire[line + 2 + size..line + 4 + size], b"\r\n", "CRLF after a chunk");
        chunks.push(wire[line + 2..line + 2 + size].to_vec());
        wire = &wire[line + 4 + size..];
    }
}

/// Reads a page's head and its whole chunked body as sent, then the
/// pipelined `/health` answer after it.
async fn page_then_health(c: &mut Client) -> Vec<u8> {
    let end = loop {
        if let Some(i) = c.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert!(c.fill().await, "EOF inside the head");
    };
    let head = String::from_utf8(c.buf.drain(..end).collect()).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    let health = b"{\"status\":\"ok\"}";
    while !c.buf.ends_with(health) {
        assert!(c.fill().await, "EOF before the /health answer");
    }
    let at = c.buf.windows(9).position(|w| w == b"HTTP/1.1 ").expect("the /health answer");
    let body = c.buf[..at].to_vec();
    c.buf.drain(..at);
    let answer = c.answer().await.expect("the /health answer");
    assert_eq!((answer.status, &answer.body[..]), (200, &health[..]));
    body
}

#[tokio::test(start_paused = true)]
async fn large_chunks_are_framed_byte_exact_and_the_connection_goes_on() {
    // 40 events of 5,000 bytes: chunks of about 64 KiB, taken whole by the duplex.
    let (mut c, _) = made_up(40, 5_000, false, settings(10, 30, 60));
    let mut wire = PAGE.to_vec();
    wire.extend_from_slice(HEALTH);
    c.send_at(Duration::ZERO, &wire).await;
    let body = page_then_health(&mut c).await;
    let chunks = chunks_of(&body);
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert!(chunks.iter().filter(|c| c.len() >= SHARED_CHUNK_BYTES).count() >= 3);
    assert_eq!(chunks.concat(), made_up_page(40, 5_000));
}

#[tokio::test(start_paused = true)]
async fn a_large_chunk_written_a_few_bytes_per_write_is_resumed_exactly() {
    for vectored in [true, false] {
        let (mut c, vectored_writes) = made_up_trickle(20, 5_000, 7, vectored, settings(10, 30, 60));
        let mut wire = PAGE.to_vec();
        wire.extend_from_slice(HEALTH);
        c.send_at(Duration::ZERO, &wire).await;
        let body = page_then_health(&mut c).await;
        assert_eq!(chunks_of(&body).concat(), made_up_page(20, 5_000), "vectored: {vectored}");
        let writes = vectored_writes.load(Ordering::Relaxed);
        if vectored {
            // Each write of 7 bytes of the 100 KiB is one vectored write.
            assert!(writes > 100_000 / 7, "{writes} vectored writes");
        } else {
            assert_eq!(writes, 0, "a stream that takes no vectored writes gets its parts in order");
        }
    }
}

#[tokio::test]
async fn the_parts_of_a_chunk_are_written_in_order_across_partial_writes() {
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    for (max, vectored) in [(1, false), (7, true), (4096, true), (70_000, false), (100_000, true)] {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let (mut server, _) = Trickle::new(server, max, vectored);
        let parts: [&[u8]; 3] = [b"head 11170\r\n", &data, b"\r\n"];
        let mut done = 0;
        poll_fn(|cx| poll_write_parts(Pin::new(&mut server), cx, &parts, &mut done)).await.unwrap();
        assert_eq!(done, parts.iter().map(|p| p.len()).sum::<usize>());
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, parts.concat(), "max {max}, vectored {vectored}");
    }
}

#[tokio::test]
async fn the_write_buffer_is_written_whole_across_partial_and_waiting_writes() {
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    // A duplex of 1 KiB makes the writes wait for the reader, too.
    for (max, pipe) in [(1, 1 << 20), (7, 1 << 10), (4096, 1 << 10), (100_000, 1 << 20)] {
        let (mut client, server) = tokio::io::duplex(pipe);
        let (mut server, _) = Trickle::new(server, max, false);
        let mut buf = BytesMut::from(&data[..]);
        let write = async {
            poll_fn(|cx| poll_write_all(&mut server, cx, &mut buf)).await.unwrap();
            drop(server);
        };
        let mut got = Vec::new();
        let (_, read) = tokio::join!(write, client.read_to_end(&mut got));
        read.unwrap();
        assert_eq!(got, data, "max {max}, pipe {pipe}");
        assert!(buf.is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_mid_chunk_is_dropped_at_the_write_deadline() {
    // Chunks of about 64 KiB; the client reads 10 KiB of the first, then
    // nothing: the write of that chunk cannot finish.
    for vectored in [true, false] {
        let (mut c, _) = made_up_trickle(1000, 64 * 1024, 1000, vectored, settings(10, 3, 60));
        c.send_at(Duration::ZERO, PAGE).await;
        while c.buf.len() < 10 * 1024 {
            assert!(c.fill().await);
        }
        let driver = std::mem::replace(&mut c.driver, tokio::spawn(async {}));
        driver.await.unwrap();
        assert_eq!(c.now(), SECOND * 3, "dropped when the write of the chunk waited body_timeout");
        let (rest, _) = c.closed().await;
        let got = c.buf.len() + rest.len();
        assert!(got < 2 * 64 * 1024 + 1024, "{got} bytes, vectored: {vectored}");
    }
}

#[test]
fn a_chunk_size_line_is_lowercase_hex() {
    for (len, line) in [(1, "1\r\n"), (4096, "1000\r\n"), (81_920, "14000\r\n"), (0xabcdef, "abcdef\r\n")] {
        let mut dst = bytes::BytesMut::new();
        put_chunk_size(&mut dst, len);
        assert_eq!(&dst[..], line.as_bytes());
    }
}
