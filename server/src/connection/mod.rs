//! The connection driver: one connection's life, from its first byte to its
//! close, as an explicit state machine over `Framed<S, Codec>` (the
//! `ServerCodec`, its requests boxed).
//!
//! It is generic over the stream (`AsyncRead + AsyncWrite + Unpin + Send`):
//! a TCP socket, a TLS stream or an in-memory `tokio::io::duplex` run the
//! same code. What is specific to TCP (`set_nodelay`, waiting for the first
//! byte with `peek` so that an idle connection owns no buffers) happens where
//! connections are accepted, in `server.rs`.
//!
//! # States
//!
//! ```text
//! | State     | Waits for           | Deadline (total: bytes never extend it) | Passed       | Shutdown begins      |
//! |-----------|---------------------|-----------------------------------------|--------------|----------------------|
//! | Head      | the rest of a head  | header_timeout from the accept (first   | 408, Closing | nothing read yet:    |
//! |           |                     | request), from its first byte (later)   |              | Closing; else finish |
//! | Body      | the rest of a body  | body_timeout from the end of the head   | 408, Closing | finish the request   |
//! | Answering | the handler         | none                                    | -            | answer and close     |
//! | Flushing  | the queued answers  | none                                    | -            | -                    |
//! |           | to be written       |                                         |              |                      |
//! | Streaming | the next chunk of a | body_timeout for each write of what is  | dropped      | finish the body; a   |
//! |           | streamed body; its  | buffered (about 64 KiB, or one event)   | (silently)   | live stream ends at  |
//! |           | writes              | and of each chunk of 4 KiB or more;     |              | its next chunk       |
//! |           |                     | none for the producer                   |              |                      |
//! | Idle      | the first byte of   | idle_timeout from the last flush        | Closing      | Closing              |
//! |           | the next request    |                                         |              |                      |
//! | Closing   | the final answer    | 60 s to write it, 2 s of lingering      | dropped      | -                    |
//! |           | (if any) written    |                                         |              |                      |
//! ```
//!
//! `Closing` after a deadline or shutdown in `Idle` (or before the first
//! byte) is silent; after a `408`, a protocol error or a response with
//! `Connection: close` it writes that answer and lingers (`closing.rs`).
//!
//! Transitions:
//! - `Head`, `Body`, `Idle` are the reading states; the codec's `Phase` says
//!   how far a request has come, and the driver follows it: `Idle` becomes
//!   `Head` at the first byte, `Head` becomes `Body` at the end of the head.
//!   A whole request read becomes `Answering`; a protocol error becomes
//!   `Closing` with its problem; the peer's close becomes `Closing` silently.
//! - `Answering` queues its answer and goes to `Flushing`, or to `Closing`
//!   when the answer closes (`Connection: close`, HTTP/1.0, shutdown). An
//!   `Expect: 100-continue` head is answered `100` (back to `Body`) or
//!   refused (`Closing`).
//! - `Flushing` first answers every request already complete in the read
//!   buffer, so a burst of pipelined requests is answered with one write;
//!   then it flushes and returns to `Idle` (or `Head`/`Body` if part of the
//!   next request is already buffered), giving back buffers that grew.
//!
//! - `Answering` with a streamed body (a `GET /events` page) queues the
//!   head and goes to `Streaming`: each chunk is framed into the write
//!   buffer as the producer hands it on, and written once about 64 KiB is
//!   buffered or the producer has nothing ready, so the producer runs at
//!   most a few chunks ahead of the client (backpressure). A chunk of 4 KiB
//!   or more (a page of a live stream, the same `Bytes` for every
//!   subscriber) is not copied: what is buffered, its size line, its bytes
//!   and CRLF are written at once, vectored where the stream takes it (a
//!   socket; a TLS stream gets them one after the other). Each write must
//!   finish within `body_timeout`: a client that stops reading is dropped
//!   then, and with it the stream, which stops the store's read. A client
//!   that leaves mid-body does the same at once. The end of the body goes
//!   to `Flushing`, or, if the answer closes, to `Closing` (flushed, then
//!   lingering). A producer that fails cuts the body: the connection closes
//!   without the last chunk, so the client sees an incomplete body, never a
//!   short one that looks whole. HTTP/1.0 has no chunked coding (RFC 9112
//!   §7.1): its answer's body is collected (a page is bounded by
//!   `--max-page-bytes`) and sent whole with `Content-Length`.
//! - A live stream (`GET /events/stream`, `text/event-stream`) is a streamed
//!   body without an end of its own: it is `Streaming` for as long as the
//!   client stays. Its producer sends keep-alive comments, so its writes (and
//!   their `body_timeout`) go on while no event arrives. Shutdown ends it
//!   between two chunks with the last chunk, then the connection closes.

/// The media type of a live stream (`GET /events/stream`): a body with no
/// end of its own.
pub(crate) const EVENT_STREAM: &[u8] = b"text/event-stream";

mod closing;
#[cfg(test)]
mod tests;

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};

use futures::{FutureExt, Sink, SinkExt, StreamExt};
use inlet_shared::http::{
    put_chunk, put_chunk_size, Body, BodyStream, BoxedInbound, Chunk, CodecError, Connection, Continue, Phase, Request,
    RequestHead, Response, ServerCodec, Version, LAST_CHUNK,
};
use inlet_shared::problem::Problem;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep_until, Instant, Sleep};
use tokio_util::codec::{Decoder, Encoder, Framed};

pub(crate) use closing::{close_flushed, close_with};

use crate::auth::CredentialCache;
use crate::config::ServerSettings;
use crate::handlers::App;
use crate::respond;
use crate::router::{self, Route};
use crate::shutdown::Shutdown;
use crate::tls::PeerIdentity;

/// Read buffer capacity a connection starts with; it grows only for larger
/// requests.
const INITIAL_READ_BUFFER: usize = 4 * 1024;

/// A buffer larger than this is given back when the connection goes idle.
const MAX_IDLE_BUFFER: usize = 64 * 1024;

/// An empty read buffer with less room than this is given a whole block
/// before the next read (`shrink_buffers`).
const MIN_READ_ROOM: usize = 1024;

/// A streamed body is written once this much of it is buffered.
const STREAM_WRITE_BYTES: usize = 64 * 1024;

/// A chunk of a streamed body at least this large is written from its own
/// bytes (shared: a live stream's page is the same `Bytes` for every
/// subscriber) after what is buffered, rather than copied into the write
/// buffer. Smaller chunks are copied and written together.
const SHARED_CHUNK_BYTES: usize = 4 * 1024;

/// Where a connection is in its life (see the table in the module doc).
enum State {
    /// `Head`, `Body` or `Idle`: waiting for bytes of a request.
    Reading(Reading),
    /// A request (or an `Expect: 100-continue` head) to answer.
    Answering(Frame),
    /// Answers are queued in the write buffer.
    Flushing,
    /// A streamed body is being written; `closes`: the connection closes
    /// after it.
    /// `endless`: a live stream (`text/event-stream`), which shutdown ends.
    Streaming { body: BodyStream, closes: bool, endless: bool },
    /// Ending: with a final answer (written, then lingering), or silently.
    /// Boxed: an answer is some 130 bytes, and every state is moved on
    /// each step of a request (`state = match state`), so the usual states
    /// are not made that large by this rare one.
    Closing(Option<Box<Response>>),
    /// Ending after an answer already queued (the end of a streamed body):
    /// written, then lingering.
    ClosingQueued,
}

/// The reading states, each with the start of its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Reading a request head; its header deadline counts from `since`.
    Head { since: Instant },
    /// Reading a body; its deadline counts from `since`, the end of the head.
    Body { since: Instant },
    /// Keep-alive between requests since `since`, the last flush.
    Idle { since: Instant },
}

impl Reading {
    /// Where the codec says a request is, `Idle` since `idle_since` if
    /// nothing of one has arrived.
    fn of(phase: Phase, idle_since: Instant) -> Reading {
        match phase {
            Phase::Head { since } => Reading::Head { since },
            Phase::Body { since } => Reading::Body { since },
            Phase::Idle => Reading::Idle { since: idle_since },
        }
    }

    /// After the codec reported `phase`: the first byte of a request ends
    /// `Idle`, the end of a head begins `Body`. A head keeps its `since`
    /// (for the first request, the accept).
    fn follow(self, phase: Phase) -> Reading {
        match (self, phase) {
            (Reading::Idle { .. }, Phase::Head { since }) => Reading::Head { since },
            (Reading::Idle { .. } | Reading::Head { .. }, Phase::Body { since }) => Reading::Body { since },
            (reading, _) => reading,
        }
    }

    fn deadline(self, s: &ServerSettings) -> Instant {
        match self {
            Reading::Head { since } => since + s.header_timeout,
            Reading::Body { since } => since + s.body_timeout,
            Reading::Idle { since } => since + s.idle_timeout,
        }
    }
}

/// What ended a wait in a reading state.
enum Wake {
    Read(Option<Result<Frame, CodecError>>),
    Deadline,
    Shutdown,
}

/// Drives one connection through its states until it closes.
pub(crate) struct Driver<S> {
    framed: Framed<S, Codec>,
    app: Arc<App>,
    settings: ServerSettings,
    shutdown: Shutdown,
    /// Whether this task's waker is registered with `shutdown`'s wait (its
    /// first poll, kept for the connection's life: the task and so its waker
    /// stay the same). From then on a reading state checks `is_shutdown`, an
    /// atomic load, instead of polling the wait on every wake.
    shutdown_armed: bool,
    /// One timer for the connection's life rather than one per request:
    /// moved at once to an earlier deadline; a later one (the next
    /// request's idle deadline) is taken up only when the timer fires
    /// before it (see `read`).
    timer: Pin<Box<Sleep>>,
    /// Whether this task's waker is registered with `timer` for its current
    /// deadline (a reading state polled it since it was last moved). A
    /// reading state then asks `is_elapsed`, an atomic load, instead of
    /// polling it again on every wake (a poll registers the waker anew and
    /// takes coop budget: about 120 instructions a request).
    timer_armed: bool,
    /// Start of the first request's header deadline.
    accepted_at: Instant,
    /// The client's verified certificate identity (TLS with
    /// `--tls-client-ca`): a request without `Authorization` is the token
    /// whose `subject` is its CN.
    peer: Option<PeerIdentity>,
    /// The last credential this connection presented, so that its later
    /// requests skip hashing it again (one per connection: it holds a
    /// secret and is zeroed when the connection ends).
    credentials: CredentialCache,
}

impl<S> Driver<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// `accepted_at` starts the first request's header deadline; bytes the
    /// client sent before are still in `io`.
    pub(crate) fn new(
        io: S,
        app: Arc<App>,
        settings: ServerSettings,
        shutdown: Shutdown,
        accepted_at: Instant,
    ) -> Self {
        let framed = Framed::with_capacity(io, Codec(ServerCodec::new(settings.limits)), INITIAL_READ_BUFFER);
        let timer = Box::pin(sleep_until(accepted_at + settings.header_timeout));
        Driver {
            framed,
            app,
            settings,
            shutdown,
            shutdown_armed: false,
            timer,
            timer_armed: false,
            accepted_at,
            peer: None,
            credentials: CredentialCache::default(),
        }
    }

    /// The identity the client proved with its TLS certificate.
    pub(crate) fn with_peer(mut self, peer: Option<PeerIdentity>) -> Self {
        self.peer = peer;
        self
    }

    /// Serves the connection to its end.
    pub(crate) async fn drive(mut self) {
        let mut state = State::Reading(Reading::Head { since: self.accepted_at });
        loop {
            state = match state {
                State::Reading(reading) => self.read(reading).await,
                State::Answering(Frame::Request(req)) => {
                    // The handler is awaited here, not in a helper: each
                    // async layer around it costs a copy of its future.
                    let exchange = Exchange::begin(&req, !self.shutdown.is_shutdown());
                    let mut res =
                        router::handle(&self.app, exchange.route, &req, &mut self.credentials, self.peer.as_ref())
                            .await;
                    drop(req);
                    let http10 = exchange.version == Version::Http10;
                    // In place: an answer is 128 bytes, not moved through `end`.
                    exchange.end(&self.app, &mut res);
                    self.queue(res, http10).await
                }
                State::Answering(Frame::Continue(head)) => self.answer_continue(&head).await,
                State::Flushing => self.flush().await,
                State::Streaming { body, closes, endless } => self.stream(body, closes, endless).await,
                State::Closing(Some(res)) => return close_with(self.framed, *res).await,
                State::ClosingQueued => return close_flushed(self.framed).await,
                State::Closing(None) => {
                    // Answers already queued (before the peer closed) still go out.
                    let _ = SinkExt::<Response>::close(&mut self.framed).await;
                    return;
                }
            };
        }
    }

    /// A reading state: waits for a whole request, its deadline, or (while
    /// nothing of a request has arrived) shutdown.
    async fn read(&mut self, mut reading: Reading) -> State {
        let wake = poll_fn(|cx| {
            if let Poll::Ready(next) = self.framed.poll_next_unpin(cx) {
                return Poll::Ready(Wake::Read(next));
            }
            // What was read may have moved the request on: follow the codec,
            // and move the timer to the deadline of where it is now.
            reading = reading.follow(self.framed.codec().phase());
            // Moving the timer is a trip through the timer wheel, and each
            // keep-alive request moves the idle deadline a little later: a
            // later deadline leaves the timer where it is, and the timer is
            // moved on only when it fires before the deadline it stands for.
            let deadline = reading.deadline(&self.settings);
            if deadline < self.timer.deadline() {
                self.reset_timer(deadline);
            }
            if self.timer_fired(cx) {
                if self.timer.deadline() >= deadline {
                    return Poll::Ready(Wake::Deadline);
                }
                self.reset_timer(deadline);
                if self.timer_fired(cx) {
                    return Poll::Ready(Wake::Deadline);
                }
            }
            if self.nothing_read() && self.shutdown_begun(cx) {
                return Poll::Ready(Wake::Shutdown);
            }
            Poll::Pending
        })
        .await;
        match wake {
            Wake::Read(next) => self.on_read(next),
            Wake::Shutdown => State::Closing(None),
            Wake::Deadline => match reading {
                Reading::Idle { .. } => State::Closing(None),
                // The first request's head is due even if nothing of it came.
                Reading::Head { .. } | Reading::Body { .. } => {
                    State::Closing(Some(Box::new(self.closing_problem(timed_out()))))
                }
            },
        }
    }

    /// Moves the timer to `deadline`; the next reading state polls it again.
    fn reset_timer(&mut self, deadline: Instant) {
        self.timer.as_mut().reset(deadline);
        self.timer_armed = false;
    }

    /// Whether the timer has fired, for a reading state's poll. The first
    /// call after the timer was moved polls it, which registers this task
    /// to be woken when it fires; from then on, until it is moved again,
    /// the task's wakes ask `is_elapsed`, which is what a poll would answer
    /// (the same task polls every state of the connection, so the waker
    /// registered stays right). A poll refused for want of coop budget
    /// registers nothing, so it arms nothing either.
    fn timer_fired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.timer_armed {
            return self.timer.is_elapsed();
        }
        let registers = tokio::task::coop::has_budget_remaining();
        if self.timer.as_mut().poll(cx).is_ready() {
            return true;
        }
        self.timer_armed = registers;
        false
    }

    fn on_read(&mut self, next: Option<Result<Frame, CodecError>>) -> State {
        match next {
            Some(Ok(inbound)) => State::Answering(inbound),
            Some(Err(CodecError::Http(e))) => {
                let problem = respond::http_error(e);
                tracing::debug!(status = problem.status, "protocol error: {}", problem.detail);
                State::Closing(Some(Box::new(self.closing_problem(problem))))
            }
            Some(Err(CodecError::Io(_))) | None => State::Closing(None),
        }
    }

    /// Whether shutdown has begun, for a reading state's poll: the first
    /// call polls the wait, which registers this task to be woken when it
    /// begins; a wake then finds it begun with the atomic load. The same
    /// task polls every reading state, so the registration holds (a wait
    /// that fired stays fired: `is_shutdown` reports it from then on).
    fn shutdown_begun(&mut self, cx: &mut Context<'_>) -> bool {
        if self.shutdown_armed {
            return self.shutdown.is_shutdown();
        }
        if self.shutdown.poll_recv(cx).is_ready() {
            return true;
        }
        self.shutdown_armed = true;
        false
    }

    /// Nothing of the next request has arrived: a frame boundary, where
    /// shutdown may close the connection.
    fn nothing_read(&self) -> bool {
        self.framed.codec().phase() == Phase::Idle && self.framed.read_buffer().is_empty()
    }

    /// Queues an answer, or ends with it if it closes. A streamed body
    /// goes on in `Streaming` after its head; for an HTTP/1.0 client
    /// (`http10`) it is collected and sent whole, `HEAD` included: RFC 9112
    /// §6.1 allows no `Transfer-Encoding` to it, and its `Content-Length`
    /// must be the one a `GET` would get.
    async fn queue(&mut self, mut res: Response, http10: bool) -> State {
        if http10 {
            res.body = match std::mem::replace(&mut res.body, Body::Taken) {
                Body::Stream(stream) => match stream.collect().await {
                    Ok(whole) => Body::Full(whole),
                    Err(_) => return State::Closing(None),
                },
                whole => whole,
            };
        }
        let Some(body) = res.take_stream() else {
            if res.closes() {
                return State::Closing(Some(Box::new(res)));
            }
            return match self.framed.feed(res).await {
                Ok(()) => State::Flushing,
                Err(_) => State::Closing(None),
            };
        };
        let closes = res.closes();
        let endless = res.content_type.as_deref() == Some(EVENT_STREAM);
        match self.framed.feed(res).await {
            Ok(()) => State::Streaming { body, closes, endless },
            Err(_) => State::Closing(None),
        }
    }

    /// `Streaming`: frames each chunk into the write buffer, and writes
    /// when enough is buffered or the producer has nothing ready (see the
    /// module doc).
    ///
    /// An `endless` body (a live stream) has no end of its own: shutdown
    /// ends it between two chunks (each a whole number of stream events)
    /// with the last chunk, and the connection closes.
    async fn stream(&mut self, mut body: BodyStream, closes: bool, endless: bool) -> State {
        loop {
            if endless && self.shutdown.is_shutdown() {
                return self.end_stream_at_shutdown().await;
            }
            let chunk = match body.try_recv() {
                Some(chunk) => chunk,
                None => {
                    if !self.write_buffered().await {
                        return State::Closing(None);
                    }
                    if endless {
                        let recv = body.recv();
                        tokio::pin!(recv);
                        let shutdown = &mut self.shutdown;
                        let next = poll_fn(|cx| {
                            if let Poll::Ready(chunk) = recv.as_mut().poll(cx) {
                                return Poll::Ready(Some(chunk));
                            }
                            shutdown.poll_recv(cx).map(|()| None)
                        })
                        .await;
                        match next {
                            Some(chunk) => chunk,
                            None => return self.end_stream_at_shutdown().await,
                        }
                    } else {
                        body.recv().await
                    }
                }
            };
            match chunk {
                Chunk::Data(data) if data.len() >= SHARED_CHUNK_BYTES => {
                    let large = self.framed.write_buffer().len() + data.len() >= STREAM_WRITE_BYTES;
                    if !self.write_chunk(&data).await {
                        return State::Closing(None);
                    }
                    if large {
                        // As after a write of a full buffer, below.
                        tokio::task::yield_now().await;
                    }
                }
                Chunk::Data(data) => {
                    put_chunk(self.framed.write_buffer_mut(), &data);
                    if self.framed.write_buffer().len() >= STREAM_WRITE_BYTES {
                        if !self.write_buffered().await {
                            return State::Closing(None);
                        }
                        // A fast client and a fast producer would keep this
                        // task busy for many writes in a row: let the other
                        // connections of this worker in after each one.
                        tokio::task::yield_now().await;
                    }
                }
                Chunk::End => {
                    self.framed.write_buffer_mut().extend_from_slice(LAST_CHUNK);
                    if closes {
                        return State::ClosingQueued;
                    }
                    if !self.write_buffered().await {
                        return State::Closing(None);
                    }
                    return State::Flushing;
                }
                Chunk::Aborted => {
                    // Without the last chunk the client knows the body is cut.
                    tracing::debug!("a streamed body was cut; closing the connection");
                    let _ = self.write_buffered().await;
                    return State::Closing(None);
                }
            }
        }
    }

    /// Ends a live stream at shutdown: the last chunk, then close.
    async fn end_stream_at_shutdown(&mut self) -> State {
        tracing::debug!("shutdown: ending a live stream");
        self.framed.write_buffer_mut().extend_from_slice(LAST_CHUNK);
        State::ClosingQueued
    }

    /// Writes what is buffered within the write deadline (`body_timeout`).
    /// `false`: the client left, or did not read in time; what was buffered
    /// is dropped, so that closing does not wait for that client again.
    async fn write_buffered(&mut self) -> bool {
        if self.framed.write_buffer().is_empty() {
            return true;
        }
        self.reset_timer(Instant::now() + self.settings.body_timeout);
        let written = poll_fn(|cx| {
            if let Poll::Ready(r) = Sink::<Response>::poll_flush(Pin::new(&mut self.framed), cx) {
                return Poll::Ready(r.is_ok());
            }
            if self.timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(false);
            }
            Poll::Pending
        })
        .await;
        if !written {
            tracing::debug!("a streamed answer was not written in time, or the client left");
            self.framed.write_buffer_mut().clear();
        }
        written
    }

    /// Writes what is buffered, then the chunk `data` (its size line, its
    /// bytes, CRLF) without copying `data`: with vectored writes where the
    /// stream takes them, else part after part, resuming partial writes. The
    /// same deadline as [`Self::write_buffered`] applies to the whole, and
    /// `false` means the same.
    async fn write_chunk(&mut self, data: &Bytes) -> bool {
        // The buffer is taken out for the write (the stream is borrowed for
        // it) and put back empty, keeping its allocation.
        let mut head = std::mem::take(self.framed.write_buffer_mut());
        put_chunk_size(&mut head, data.len());
        self.reset_timer(Instant::now() + self.settings.body_timeout);
        let written = {
            let parts: [&[u8]; 3] = [&head, data, b"\r\n"];
            let mut done = 0;
            let io = self.framed.get_mut();
            let timer = &mut self.timer;
            poll_fn(|cx| {
                if let Poll::Ready(r) = poll_write_parts(Pin::new(&mut *io), cx, &parts, &mut done) {
                    return Poll::Ready(r.is_ok());
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(false);
                }
                Poll::Pending
            })
            .await
        };
        head.clear();
        *self.framed.write_buffer_mut() = head;
        if !written {
            tracing::debug!("a streamed answer was not written in time, or the client left");
        }
        written
    }

    async fn answer_continue(&mut self, head: &RequestHead) -> State {
        if let Some(refusal) = refuse_continue_from(&self.app, head, self.peer.as_ref()) {
            return State::Closing(Some(Box::new(refusal)));
        }
        if self.framed.send(Continue).await.is_err() {
            return State::Closing(None);
        }
        State::Reading(Reading::of(self.framed.codec().phase(), Instant::now()))
    }

    async fn flush(&mut self) -> State {
        if !self.framed.read_buffer().is_empty() {
            // Answer every request already buffered before writing.
            if let Some(next) = self.framed.next().now_or_never() {
                return self.on_read(next);
            }
        }
        if poll_fn(|cx| self.poll_write_buffer(cx)).await.is_err() {
            return State::Closing(None);
        }
        self.shrink_buffers();
        State::Reading(Reading::of(self.framed.codec().phase(), Instant::now()))
    }

    /// Writes the write buffer whole, then flushes the stream: what
    /// `Framed`'s flush does, with the buffer written as the one slice it
    /// is. `Framed` gathers it into an array of 64 `IoSlice`s for a
    /// vectored write (`poll_write_buf`), whose setting up cost some 180
    /// instructions an answer. The buffer is taken out for the write (the
    /// stream is borrowed for it) and put back with what is left of it.
    fn poll_write_buffer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut buf = std::mem::take(self.framed.write_buffer_mut());
        let written = poll_write_all(self.framed.get_mut(), cx, &mut buf);
        *self.framed.write_buffer_mut() = buf;
        written
    }

    /// Gives back buffers that grew for a large request or answer once the
    /// connection is idle, so that a keep-alive connection does not hold the
    /// largest message it ever carried.
    ///
    /// An empty read buffer with little room left is also given its block
    /// back whole (in place when no request still holds part of it, else a
    /// fresh block): `Framed` reads only into the room left, so a nearly
    /// full block would cut the next request's head in two and have it
    /// read and scanned twice.
    fn shrink_buffers(&mut self) {
        let read = self.framed.read_buffer();
        if read.is_empty() && read.capacity() > MAX_IDLE_BUFFER {
            *self.framed.read_buffer_mut() = bytes::BytesMut::with_capacity(INITIAL_READ_BUFFER);
        } else if read.is_empty() && read.capacity() < MIN_READ_ROOM {
            self.framed.read_buffer_mut().reserve(INITIAL_READ_BUFFER);
        }
        if self.framed.write_buffer().is_empty() && self.framed.write_buffer().capacity() > MAX_IDLE_BUFFER {
            *self.framed.write_buffer_mut() = bytes::BytesMut::new();
        }
    }

    fn closing_problem(&self, problem: Problem) -> Response {
        closing_problem(&self.app, problem)
    }
}

/// Writes `buf` whole, advancing it past what is written (so a write that
/// returns `Pending` resumes where it stopped), then flushes the stream.
fn poll_write_all<W: AsyncWrite + Unpin + ?Sized>(
    io: &mut W,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<()>> {
    while !buf.is_empty() {
        let n = ready!(Pin::new(&mut *io).poll_write(cx, buf))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        bytes::Buf::advance(buf, n);
    }
    Pin::new(io).poll_flush(cx)
}

/// Writes `parts` in order, `done` bytes of them being written already (it
/// counts on across calls, so a write that returns `Pending` or writes part
/// of them resumes where it stopped), then flushes the stream. One vectored
/// write per poll where the stream supports it (a socket); else the parts
/// one after the other (a TLS stream).
fn poll_write_parts<W: AsyncWrite + ?Sized>(
    mut io: Pin<&mut W>,
    cx: &mut Context<'_>,
    parts: &[&[u8]; 3],
    done: &mut usize,
) -> Poll<io::Result<()>> {
    loop {
        let mut rest = [IoSlice::new(&[]); 3];
        let mut count = 0;
        let mut skip = *done;
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            rest[count] = IoSlice::new(&part[skip..]);
            skip = 0;
            count += 1;
        }
        if count == 0 {
            return io.poll_flush(cx);
        }
        let n = if io.is_write_vectored() {
            ready!(io.as_mut().poll_write_vectored(cx, &rest[..count]))?
        } else {
            ready!(io.as_mut().poll_write(cx, &rest[0]))?
        };
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        *done += n;
    }
}

fn timed_out() -> Problem {
    Problem::new(408, "request-timeout", "the request did not arrive in time")
}

/// A problem that ends the connection, counted by its reason.
pub(crate) fn closing_problem(app: &App, problem: Problem) -> Response {
    let mut res = app.reject(problem);
    res.connection = Connection::Close;
    res
}

/// Answers one whole request: routes it, records its metrics, and says
/// whether the connection stays open (`keep_open`: the server is not
/// shutting down). For the blocking mode (plain HTTP, so no client
/// certificate); the driver does the same steps inline.
pub(crate) async fn answer(app: &App, req: Request, keep_open: bool, credentials: &mut CredentialCache) -> Response {
    let exchange = Exchange::begin(&req, keep_open);
    let mut res = router::handle(app, exchange.route, &req, credentials, None).await;
    exchange.end(app, &mut res);
    res
}

/// What the driver's codec yields: the request (or head) boxed by the
/// decoder where it is built, so that moving it out of the decoder, out of
/// `Framed`, through the driver's states and to the handler moves a
/// pointer, not the request (some 180 bytes, copied about fifteen times on
/// its way unboxed).
pub(crate) type Frame = BoxedInbound;

/// The [`ServerCodec`], yielding [`Frame`]s; it encodes the same.
pub(crate) struct Codec(ServerCodec);

impl Codec {
    /// How far the request being read has come.
    fn phase(&self) -> Phase {
        self.0.phase()
    }
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = CodecError;

    #[inline]
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        self.0.decode_boxed(buf)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        self.0.decode_eof_boxed(buf)
    }
}

impl<T> Encoder<T> for Codec
where
    ServerCodec: Encoder<T, Error = CodecError>,
{
    type Error = CodecError;

    #[inline]
    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.0.encode(item, dst)
    }
}

/// What is kept of a request while its handler runs, to record its
/// metrics and set its answer's `Connection`.
struct Exchange {
    /// Worked out here, not returned with the answer by `router::handle`:
    /// a `Response` alone (128 bytes) is moved out of the handler's future
    /// in registers, with the route beside it (136) by a call to `memcpy`,
    /// twice.
    route: Route,
    /// The standard library's clock, not tokio's: a latency is real time
    /// even where tests pause tokio's clock, and tokio's reading checks
    /// for a paused clock first (its `test-util` feature is on in every
    /// build, through a dependency of async-nats).
    started: std::time::Instant,
    method: &'static str,
    /// The request's: an HTTP/1.0 client cannot take a chunked body.
    version: Version,
    keep_alive: bool,
}

impl Exchange {
    fn begin(req: &Request, keep_open: bool) -> Exchange {
        Exchange {
            route: Route::of(req.path()),
            started: std::time::Instant::now(),
            method: req.method.label(),
            version: req.version,
            keep_alive: req.keep_alive && keep_open,
        }
    }

    /// Records the request's metrics and sets its answer's `Connection`.
    fn end(self, app: &App, res: &mut Response) {
        app.metrics.observe(self.route, self.method, res.status, self.started.elapsed());
        if !self.keep_alive || res.closes() {
            res.connection = Connection::Close;
        } else if self.version == Version::Http10 {
            res.connection = Connection::KeepAlive;
        }
    }
}

/// The refusal of a head that sent `Expect: 100-continue`, if it is refused
/// whatever its body: then the body is not read and the connection closes
/// (RFC 9110 §10.1.1). `None`: send `100 Continue`. For a connection
/// without a client certificate (the blocking mode).
pub(crate) fn refuse_continue(app: &App, head: &RequestHead) -> Option<Response> {
    refuse_continue_from(app, head, None)
}

/// As [`refuse_continue`], for a connection whose client may have shown a
/// verified certificate (`peer`).
fn refuse_continue_from(app: &App, head: &RequestHead, peer: Option<&PeerIdentity>) -> Option<Response> {
    let mut refusal = router::refusal(app, head, peer)?;
    refusal.connection = Connection::Close;
    Some(refusal)
}
