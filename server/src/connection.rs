//! One task per connection, over `Framed<TcpStream, ServerCodec>`.
//!
//! Deadlines (all total, none reset by a trickle of bytes):
//! - first request: its head must be complete `header_timeout` after accept;
//! - later requests: `idle_timeout` to start, then `header_timeout` from the
//!   head's first byte; a body gets `body_timeout` from the end of its head.
//!
//! A head that misses its deadline is answered `408` and the connection is
//! closed; an idle keep-alive connection is closed silently.
//!
//! Pipelining: responses are fed into the write buffer and flushed only when
//! no complete request is left in the read buffer, so a burst of pipelined
//! requests is answered with one write.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::Fuse;
use futures::{FutureExt, SinkExt, StreamExt};
use inlet_shared::http::{CodecError, Connection, Continue, Inbound, Phase, Response, ServerCodec, Version};
use inlet_shared::problem::Problem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, Instant, Sleep};
use tokio_util::codec::Framed;

use crate::config::ServerSettings;
use crate::handlers::App;
use crate::respond;
use crate::router;

/// Read buffer capacity a connection starts with (once it has sent its
/// first byte); it grows only for larger requests.
const INITIAL_READ_BUFFER: usize = 4 * 1024;

/// A buffer larger than this is given back when the connection goes idle.
const MAX_IDLE_READ_BUFFER: usize = 64 * 1024;

/// After answering with `Connection: close`, how long (and how much) unread
/// request data is drained so that the kernel does not reset the connection
/// before the client has read the answer (a "lingering close").
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

type Transport = Framed<TcpStream, ServerCodec>;

/// What ended the wait for the next request.
enum Next {
    Item(Inbound),
    /// The peer closed, or the transport failed: nothing more to answer.
    Closed,
    /// A protocol error: answer it and close.
    Error(Problem),
    /// A deadline passed while a request was partly read: `408`, close.
    TimedOut,
    /// Idle keep-alive, or shutdown while idle: close without a word.
    Idle,
}

pub struct ConnectionTask {
    framed: Transport,
    app: Arc<App>,
    settings: ServerSettings,
    /// Never marked seen, so `has_changed` says whether shutdown began
    /// (an atomic load, no lock).
    shutdown: watch::Receiver<bool>,
    /// One timer for the connection's life, moved to each new deadline
    /// (cheap when the deadline moves later) rather than one per request.
    deadline: Pin<Box<Sleep>>,
    /// Resolves when shutdown begins; registered once per connection, and
    /// pending for good once it has resolved.
    stop: Fuse<Pin<Box<dyn Future<Output = ()> + Send>>>,
    accepted_at: Instant,
    /// When the last response was flushed; `None` before the first request.
    idle_since: Option<Instant>,
}

/// Serves one accepted connection to its end.
///
/// Until the client sends its first byte the connection owns no buffers:
/// it waits for readiness only, so thousands of idle connections cost a
/// task and a socket each, not two buffers.
pub async fn serve(stream: TcpStream, app: Arc<App>, settings: ServerSettings, mut shutdown: watch::Receiver<bool>) {
    let accepted_at = Instant::now();
    let _ = stream.set_nodelay(true);
    let mut probe = [0u8; 1];
    tokio::select! {
        biased;
        // `peek` waits for a real byte (readiness alone can be spurious)
        // and leaves it in the socket for the codec.
        peeked = stream.peek(&mut probe) => {
            if !matches!(peeked, Ok(n) if n > 0) {
                return;
            }
        }
        _ = sleep_until(accepted_at + settings.header_timeout) => {
            let problem = Problem::new(408, "request-timeout", "the request did not arrive in time");
            let mut res = app.reject(problem);
            res.connection = Connection::Close;
            let mut buf = bytes::BytesMut::new();
            let _ = tokio_util::codec::Encoder::encode(&mut ServerCodec::new(settings.limits), res, &mut buf);
            let mut stream = stream;
            if timeout(LINGER_TIME, stream.write_all(&buf)).await.is_ok() {
                linger_close(stream).await;
            }
            return;
        }
        _ = async { shutdown.wait_for(|stop| *stop).await.is_ok() } => return,
    }
    // Boxed: the state of a busy connection (buffers, codec, handler
    // futures: several KiB) is allocated only once the client has spoken,
    // so the future of an idle one stays small.
    Box::pin(ConnectionTask::new(stream, app, settings, shutdown, accepted_at).run()).await;
}

impl ConnectionTask {
    fn new(
        stream: TcpStream,
        app: Arc<App>,
        settings: ServerSettings,
        shutdown: watch::Receiver<bool>,
        accepted_at: Instant,
    ) -> Self {
        let framed = Framed::with_capacity(stream, ServerCodec::new(settings.limits), INITIAL_READ_BUFFER);
        let deadline = Box::pin(sleep_until(accepted_at + settings.header_timeout));
        let mut stopping = shutdown.clone();
        let stop: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        });
        let stop = stop.fuse();
        ConnectionTask { framed, app, settings, shutdown, deadline, stop, accepted_at, idle_since: None }
    }

    /// Gives back a read buffer that grew for a large request once the
    /// connection is idle again, so a keep-alive connection does not hold
    /// the largest body it ever received.
    fn shrink_buffers(&mut self) {
        if self.framed.read_buffer().is_empty() && self.framed.read_buffer().capacity() > MAX_IDLE_READ_BUFFER {
            *self.framed.read_buffer_mut() = bytes::BytesMut::with_capacity(INITIAL_READ_BUFFER);
        }
        if self.framed.write_buffer().is_empty() && self.framed.write_buffer().capacity() > MAX_IDLE_READ_BUFFER {
            *self.framed.write_buffer_mut() = bytes::BytesMut::new();
        }
    }

    /// The deadline for what the codec is waiting for now.
    fn deadline(&self) -> Instant {
        let s = &self.settings;
        match (self.framed.codec().phase(), self.idle_since) {
            (Phase::Body { since }, _) => since + s.body_timeout,
            (Phase::Idle | Phase::Head { .. }, None) => self.accepted_at + s.header_timeout,
            (Phase::Head { since }, Some(_)) => since + s.header_timeout,
            (Phase::Idle, Some(idle)) => idle + s.idle_timeout,
        }
    }

    fn shutting_down(&self) -> bool {
        // Only `true` is ever sent; a dropped sender means the server is gone.
        self.shutdown.has_changed().unwrap_or(true)
    }

    async fn next(&mut self) -> Next {
        loop {
            if self.shutting_down()
                && self.framed.codec().phase() == Phase::Idle
                && self.framed.read_buffer().is_empty()
            {
                return Next::Idle;
            }
            let deadline = self.deadline();
            if self.deadline.deadline() != deadline {
                self.deadline.as_mut().reset(deadline);
            }
            let idle = self.framed.codec().phase() == Phase::Idle;
            tokio::select! {
                biased;
                item = self.framed.next() => {
                    return match item {
                        Some(Ok(item)) => Next::Item(item),
                        Some(Err(CodecError::Http(e))) => Next::Error(respond::http_error(e)),
                        Some(Err(CodecError::Io(_))) | None => Next::Closed,
                    };
                }
                _ = &mut self.deadline => {
                    // The phase may have moved on since the deadline was taken.
                    if self.deadline() > Instant::now() {
                        continue;
                    }
                    let waiting_for_first = self.idle_since.is_none();
                    let nothing_read = self.framed.codec().phase() == Phase::Idle && self.framed.read_buffer().is_empty();
                    return if nothing_read && !waiting_for_first { Next::Idle } else { Next::TimedOut };
                }
                _ = &mut self.stop, if idle => {
                    // Re-checked at the top of the loop: close only at a frame boundary.
                    continue;
                }
            }
        }
    }

    pub async fn run(mut self) {
        let mut unflushed = false;
        loop {
            let next = if unflushed {
                // Answer every request already buffered before flushing.
                match self.framed.next().now_or_never() {
                    Some(Some(Ok(item))) => Next::Item(item),
                    Some(Some(Err(CodecError::Http(e)))) => Next::Error(respond::http_error(e)),
                    Some(Some(Err(CodecError::Io(_)))) | Some(None) => Next::Closed,
                    None => {
                        if SinkExt::<Response>::flush(&mut self.framed).await.is_err() {
                            return;
                        }
                        unflushed = false;
                        self.idle_since = Some(Instant::now());
                        self.shrink_buffers();
                        continue;
                    }
                }
            } else {
                self.next().await
            };
            match next {
                Next::Item(Inbound::Continue(head)) => {
                    if let Some(mut refusal) = router::refusal(&self.app, &head) {
                        // The body was not read: answer and close (RFC 9110 §10.1.1).
                        refusal.connection = Connection::Close;
                        self.finish(refusal).await;
                        return;
                    }
                    if self.framed.send(Continue).await.is_err() {
                        return;
                    }
                }
                Next::Item(Inbound::Request(req)) => {
                    let started = Instant::now();
                    let method = req.method.label();
                    let version = req.version;
                    let keep_alive = req.keep_alive && !self.shutting_down();
                    let (route, mut res) = router::handle(&self.app, req).await;
                    self.app.metrics.observe(route, method, res.status, started.elapsed());
                    if !keep_alive || res.closes() {
                        res.connection = Connection::Close;
                    } else if version == Version::Http10 {
                        res.connection = Connection::KeepAlive;
                    }
                    if res.closes() {
                        self.finish(res).await;
                        return;
                    }
                    if self.framed.feed(res).await.is_err() {
                        return;
                    }
                    if self.framed.read_buffer().is_empty() {
                        if SinkExt::<Response>::flush(&mut self.framed).await.is_err() {
                            return;
                        }
                        self.idle_since = Some(Instant::now());
                        self.shrink_buffers();
                    } else {
                        unflushed = true;
                    }
                }
                Next::Error(problem) => {
                    tracing::debug!(status = problem.status, "protocol error: {}", problem.detail);
                    let mut res = self.app.reject(problem);
                    res.connection = Connection::Close;
                    self.finish(res).await;
                    return;
                }
                Next::TimedOut => {
                    let problem = Problem::new(408, "request-timeout", "the request did not arrive in time");
                    let mut res = self.app.reject(problem);
                    res.connection = Connection::Close;
                    self.finish(res).await;
                    return;
                }
                Next::Idle | Next::Closed => {
                    let _ = SinkExt::<Response>::flush(&mut self.framed).await;
                    return;
                }
            }
        }
    }

    /// Sends a final response (with everything queued before it) and closes
    /// gracefully.
    async fn finish(mut self, res: Response) {
        debug_assert!(res.closes());
        if self.framed.send(res).await.is_err() {
            return;
        }
        linger_close(self.framed.into_inner()).await;
    }
}

/// Half-closes, then drains what the client still sends for a short while,
/// so that the kernel does not answer unread data with a reset that could
/// destroy the response before the client read it.
pub(crate) async fn linger_close(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    // On the heap: a stack array here would sit in every connection's future.
    let mut sink = vec![0u8; 4096];
    let mut drained = 0usize;
    let linger = async {
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = timeout(LINGER_TIME, linger).await;
}

#[cfg(test)]
mod size_tests {
    /// An idle connection costs its task's future (plus a socket), so that
    /// future must stay small: buffers and handler state are boxed and
    /// allocated only once the client has sent a byte.
    #[test]
    fn an_idle_connection_future_stays_small() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let s = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let store = std::sync::Arc::new(crate::store::MemoryStore::default());
            let app = std::sync::Arc::new(crate::handlers::App::with_limits(store, Default::default()));
            let (_tx, rx) = tokio::sync::watch::channel(false);
            let second = std::time::Duration::from_secs(1);
            let settings = crate::config::ServerSettings {
                limits: Default::default(),
                max_connections: 1,
                header_timeout: second,
                body_timeout: second,
                idle_timeout: second,
                shutdown_timeout: second,
            };
            let f = super::serve(s, app, settings, rx);
            let size = std::mem::size_of_val(&f);
            assert!(size <= 1024, "the connection future is {size} bytes");
        });
    }
}
