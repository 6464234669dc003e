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
use crate::store::MemoryStore;

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
        let app = Arc::new(App::with_limits(Arc::new(MemoryStore::default()), Default::default()));
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
