//! The async listeners: accept connections, enforce `--max-connections`,
//! back off on accept errors, and shut down gracefully. What is specific to
//! TCP happens here (`set_nodelay`, waiting for the first byte with `peek`),
//! and so does the TLS handshake (`--tls-cert`); the connection's life is
//! the driver's (`connection/`), over the TCP or the TLS stream.
//!
//! The server runs one single-threaded tokio runtime per worker thread
//! (`--workers`, default: one per CPU), each with its own listening socket
//! on the same address (`SO_REUSEPORT`), as nginx runs its workers: a
//! connection lives on one thread for its whole life, so no request pays
//! for a cross-thread wake-up.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use inlet_shared::http::{Response, ServerCodec};
use inlet_shared::problem::Problem;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::Id;
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_util::codec::{Framed, FramedParts};
use tokio_util::task::TaskTracker;

use crate::config::ServerSettings;
use crate::connection::{close_with, closing_problem, Driver};
use crate::handlers::App;
use crate::shutdown::Shutdown;
use crate::tls::{PeerIdentity, Tls, HANDSHAKE_RECORD};

/// Listen backlog: bursts of connects queue in the kernel instead of being
/// refused.
const BACKLOG: u32 = 4096;

/// Prints the one line scripts wait for (SPEC §1).
pub fn announce(addr: SocketAddr) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
    tracing::info!("listening on {addr}");
}

/// Binds `workers` listening sockets to one address with `SO_REUSEPORT`
/// (the kernel spreads new connections over them); with port 0 the first
/// picks the port and the others join it.
pub fn bind_workers(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let first = bind_reuseport(addr)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(bind_reuseport(addr)?);
    }
    Ok(listeners)
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(BACKLOG)?;
    listener.into_std()
}

/// Serves one listener until `shutdown` completes; then stops accepting and
/// lets requests in flight finish (bounded by `--shutdown-timeout`). The
/// connection limit `permits` is shared by every listener of the process.
/// Closing the store is the caller's job, once every listener is done.
/// With `tls`, every connection speaks TLS.
pub async fn serve_listener(
    listener: TcpListener,
    app: Arc<App>,
    settings: ServerSettings,
    tls: Option<Arc<Tls>>,
    permits: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
) {
    let (notify, watch_rx) = watch::channel(false);
    let tracker = TaskTracker::new();
    // Shared by the connections: a copy in each would be 88 bytes of every
    // idle connection's task.
    let shared = Arc::new(Listening { settings, tls: tls.clone(), waiting: Waiting::default() });
    tokio::pin!(shutdown);

    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            res = listener.accept() => res,
            _ = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, _peer)) => {
                backoff = Duration::from_millis(5);
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let open = Open::new(app.clone(), permit);
                        let shutdown = Shutdown::new(watch_rx.clone());
                        // Spawned as it is, with no wrapper around it: each
                        // async layer keeps its own copy of what it moves
                        // into the next (see `serve_tcp`).
                        tracker.spawn(serve_tcp(stream, open, shared.clone(), shutdown));
                    }
                    Err(_) => {
                        let (app, tls) = (app.clone(), tls.clone());
                        tracker.spawn(async move {
                            match tls {
                                None => refuse(stream, &app, settings).await,
                                Some(tls) => refuse_tls(stream, &app, settings, &tls).await,
                            }
                        });
                    }
                }
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS and friends: wait for resources, do not spin.
                tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }

    drop(listener);
    tracing::info!(open = tracker.len(), "stopped accepting; finishing requests in flight");
    let _ = notify.send(true);
    // Connections whose task has not seen a byte yet look once more: a
    // request that has arrived is served (to its end, as any request in
    // flight); the others end now, not at their header deadline.
    shared.waiting.stop();
    tracker.close();
    if tokio::time::timeout(settings.shutdown_timeout, tracker.wait()).await.is_err() {
        tracing::warn!("shutdown timeout passed with {} connection(s) still open", tracker.len());
    }
}

/// What the connections of one listener share: one `Arc` in each idle
/// connection's task.
struct Listening {
    settings: ServerSettings,
    tls: Option<Arc<Tls>>,
    waiting: Waiting,
}

/// The connections of a listener still waiting for their first byte, by
/// task, with the waker of each, and whether the listener is stopping. At
/// shutdown every one is woken to look at its socket once more
/// ([`first_byte`]): a byte there is served, none ends the connection. So an
/// idle connection's task holds no wait for shutdown of its own (a `watch`
/// wait is 144 bytes of the future, which put the task in tokio's next
/// allocation size). A listener's tasks all run on its thread, so the lock
/// is never contended; an entry is 24 bytes (about 30 with the table's
/// spare room).
#[derive(Default)]
struct Waiting(Mutex<WaitingList>);

#[derive(Default)]
struct WaitingList {
    stopping: bool,
    tasks: HashMap<Id, Waker>,
}

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, WaitingList> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The calling task waits on (`waker`): it is woken at shutdown. `false`
    /// if the listener is stopping already (checked under the same lock
    /// [`Waiting::stop`] takes, so no task is left waiting after it).
    fn wait(&self, waker: &Waker) -> bool {
        let Some(id) = tokio::task::try_id() else { return true };
        let mut list = self.lock();
        if list.stopping {
            return false;
        }
        match list.tasks.get_mut(&id) {
            Some(known) if known.will_wake(waker) => {}
            Some(known) => known.clone_from(waker),
            None => {
                list.tasks.insert(id, waker.clone());
            }
        }
        true
    }

    /// The calling task stops waiting (its first byte came, its deadline
    /// passed or its client left).
    fn done(&self) {
        let Some(id) = tokio::task::try_id() else { return };
        let tasks = &mut self.lock().tasks;
        let left = tasks.len().saturating_sub(1);
        if tasks.remove(&id).is_some() && tasks.capacity() > 64 && left < tasks.capacity() / 4 {
            // A burst of idle connections mostly gone: give its table back.
            tasks.shrink_to(left * 2);
        }
    }

    /// The listener stops: every task still waiting is woken, and one that
    /// finds no byte in its socket ends.
    fn stop(&self) {
        let mut list = self.lock();
        list.stopping = true;
        for (_, waker) in list.tasks.drain() {
            waker.wake();
        }
    }
}

/// An open connection: counted in `/stats` from its accept to its end, and
/// holding its place under `--max-connections` until then.
struct Open {
    app: Arc<App>,
    _permit: OwnedSemaphorePermit,
}

impl Open {
    fn new(app: Arc<App>, permit: OwnedSemaphorePermit) -> Open {
        app.stats.connection_opened();
        Open { app, _permit: permit }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.app.stats.connection_closed();
    }
}

/// Serves one accepted TCP connection to its end.
///
/// Until the client sends its first byte the connection owns no buffers: it
/// waits for readiness only ([`first_byte`]), so thousands of idle
/// connections cost a small task and a socket each. Then the [`Driver`]
/// takes over, with the header deadline still counted from the accept (past
/// it, the driver answers `408` at once). With `tls`, the handshake comes
/// first (`serve_tls`).
///
/// A plain function returning an `async` block rather than an `async fn`:
/// an `async fn` keeps each argument twice in its future (as passed and as
/// bound), and this future is what every idle connection holds. Measured with
/// 10,000 idle connections in docs/performance.md; its size is checked by
/// `an_idle_connection_future_stays_small` (600 bytes as an `async fn`,
/// 328 as this, in a debug build).
#[allow(clippy::manual_async_fn)]
fn serve_tcp(
    stream: TcpStream,
    open: Open,
    listening: Arc<Listening>,
    shutdown: Shutdown,
) -> impl Future<Output = ()> + Send {
    async move {
        let accepted_at = Instant::now();
        let _ = stream.set_nodelay(true);
        let first = first_byte(&stream, accepted_at + listening.settings.header_timeout, &listening.waiting).await;
        listening.waiting.done();
        let first = match first {
            FirstByte::Byte(b) => Some(b),
            FirstByte::Deadline => None,
            FirstByte::Closed => return,
        };
        let (app, settings, tls) = (open.app.clone(), listening.settings, listening.tls.clone());
        drop(listening);
        // Boxed: the state of a busy connection (buffers, codec, handler
        // futures, TLS session: several KiB) is allocated only once the
        // client has spoken, so the future of an idle one stays small.
        match (tls, first) {
            (None, _) => Box::pin(Driver::new(stream, app, settings, shutdown, accepted_at).drive()).await,
            // Silent until the header deadline: no TLS, so no `408` to send.
            (Some(_), None) => tracing::debug!("no TLS handshake by the header deadline; closed"),
            (Some(tls), Some(first)) => {
                Box::pin(serve_tls(stream, first, tls, app, settings, shutdown, accepted_at)).await
            }
        }
        drop(open);
    }
}

/// What ended the wait for a connection's first byte.
enum FirstByte {
    /// The client sent this byte; it is still in the socket, for the codec.
    Byte(u8),
    /// Nothing came by the header deadline.
    Deadline,
    /// The client closed (or the socket failed) before sending anything.
    Closed,
}

/// Waits for a connection's first byte, its header deadline or its
/// listener's stop, whichever comes first (the byte when several are
/// ready: a request that has arrived is served, also at shutdown). One poll
/// function over the socket's `poll_peek` (a real byte: readiness alone can
/// be spurious; peeked, so it stays in the socket), with the deadline's
/// timer inline and the task's waker left with the listener
/// ([`Waiting`]): this is all an idle connection's task holds, so it is
/// kept small (`peek`'s own future is about 230 bytes; docs/performance.md
/// has the measurement).
async fn first_byte(stream: &TcpStream, deadline: Instant, waiting: &Waiting) -> FirstByte {
    let timer = sleep_until(deadline);
    tokio::pin!(timer);
    std::future::poll_fn(|cx| {
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        match stream.poll_peek(cx, &mut buf) {
            Poll::Ready(Ok(n)) if n > 0 => return Poll::Ready(FirstByte::Byte(probe[0])),
            Poll::Ready(_) => return Poll::Ready(FirstByte::Closed),
            Poll::Pending => {}
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(FirstByte::Deadline);
        }
        if !waiting.wait(cx.waker()) {
            // Stopping: what the socket holds now decides (a byte that has
            // arrived may not have reached the reactor yet).
            return Poll::Ready(peek_now(stream));
        }
        Poll::Pending
    })
    .await
}

/// The socket's first byte if one is there now, without waiting; otherwise
/// (nothing yet, the client gone, an error) `Closed`.
fn peek_now(stream: &TcpStream) -> FirstByte {
    use rustix::net::{recv, RecvFlags};
    let mut probe = [0u8; 1];
    match recv(stream, &mut probe[..], RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok((1.., _)) => FirstByte::Byte(probe[0]),
        _ => FirstByte::Closed,
    }
}

/// The TLS side of a connection whose first byte was `first`: the handshake,
/// then the same [`Driver`] over the TLS stream.
///
/// The handshake runs here, in the connection's own task, and counts against
/// the first request's header deadline (from the accept): a client that
/// never finishes it is dropped at that deadline like any slow client, and
/// never holds up `accept` or another connection. Whatever time the
/// handshake took is gone from the head's deadline. A connection that does
/// not start with a TLS handshake record (plain HTTP sent to the HTTPS
/// port) is closed without an answer (logged at debug): no plain-text
/// byte is ever written on the TLS port.
async fn serve_tls(
    stream: TcpStream,
    first: u8,
    tls: Arc<Tls>,
    app: Arc<App>,
    settings: ServerSettings,
    mut shutdown: Shutdown,
    accepted_at: Instant,
) {
    let deadline = accepted_at + settings.header_timeout;
    let Some(mut stream) = handshake(stream, first, &tls, deadline, &mut shutdown).await else {
        return;
    };
    // As on plain TCP, the driver's buffers wait for the client's first
    // request bytes: until then an idle connection holds its TLS session only.
    if !has_plaintext(stream.get_mut().1) {
        tokio::select! {
            biased;
            ready = stream.get_ref().0.readable() => if ready.is_err() { return },
            _ = sleep_until(deadline) => {}
            _ = shutdown.recv() => return,
        }
    }
    let peer = PeerIdentity::of(stream.get_ref().1);
    if let Some(peer) = &peer {
        tracing::debug!(client_cn = ?peer.common_name, "TLS client certificate verified");
    }
    Driver::new(stream, app, settings, shutdown, accepted_at).with_peer(peer).drive().await;
}

/// Whether rustls already holds decrypted bytes (a request that came with
/// the end of the handshake). On an error, `true`: the driver's first read
/// reports it.
fn has_plaintext(conn: &mut rustls::ServerConnection) -> bool {
    conn.process_new_packets().map(|state| state.plaintext_bytes_to_read() > 0).unwrap_or(true)
}

/// The server side of a TLS handshake, by `deadline`; `None` (and the
/// connection dropped) if the client is not speaking TLS, fails the
/// handshake, is too slow, or shutdown begins first.
async fn handshake(
    stream: TcpStream,
    first: u8,
    tls: &Tls,
    deadline: Instant,
    shutdown: &mut Shutdown,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let peer = stream.peer_addr().ok();
    if first != HANDSHAKE_RECORD {
        tracing::debug!(?peer, "not TLS on the TLS port (plain HTTP?); closed");
        discard_and_close(stream).await;
        return None;
    }
    let accepted = tokio::select! {
        accepted = timeout_at(deadline, tls.acceptor().accept(stream)) => accepted,
        _ = shutdown.recv() => return None,
    };
    match accepted {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(?peer, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(?peer, "TLS handshake not finished by the header deadline; closed");
            None
        }
    }
}

/// How long, and how much, `discard_and_close` reads.
const DISCARD_TIME: Duration = Duration::from_secs(1);
const DISCARD_BYTES: usize = 64 * 1024;

/// Closes a connection cleanly without answering: half-closes, then reads
/// and discards what the client sent (bounded), so that the close is a FIN
/// rather than a reset for unread data.
async fn discard_and_close<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
    let drain = async {
        if io.shutdown().await.is_err() {
            return;
        }
        let mut sink = vec![0u8; 4096];
        let mut drained = 0;
        while drained < DISCARD_BYTES {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = timeout(DISCARD_TIME, drain).await;
}

/// How long `refuse` waits for the start of the request line.
const REFUSE_PEEK_TIME: Duration = Duration::from_secs(1);

/// Over `--max-connections`: `503` and close, without reading the request.
/// The start of the request line is peeked at (for up to a second) only to
/// tell a `HEAD`, whose answer carries no body (RFC 9110 §9.3.2).
async fn refuse(stream: TcpStream, app: &App, settings: ServerSettings) {
    let head = is_head_request(&stream).await;
    answer_full(stream, app, settings, head).await;
}

/// The `503` of a server at its connection limit, with `Retry-After: 1`,
/// then a lingering close; no body for a `HEAD`. Plain or TLS alike.
async fn answer_full<S>(stream: S, app: &App, settings: ServerSettings, head: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let problem = Problem::new(503, "too-many-connections", "the server is at its connection limit; retry later");
    let mut res = closing_problem(app, problem);
    res.retry_after = Some(1);
    res.omit_body = head;
    let framed = Framed::from_parts(FramedParts::new::<Response>(stream, ServerCodec::new(settings.limits)));
    close_with(framed, res).await;
}

/// How long `refuse_tls` gives the handshake: a refused connection does not
/// get the full header deadline.
const REFUSE_HANDSHAKE_TIME: Duration = Duration::from_secs(2);

/// Over `--max-connections` on the TLS port: the handshake (bounded by
/// `REFUSE_HANDSHAKE_TIME`), then the same `503` with `Retry-After` as on
/// plain HTTP, over TLS. A handshake costs CPU just when the server is
/// full, but a client that gets a reset retries at once, where one that
/// reads `503` and `Retry-After: 1` backs off; the handshake's time is
/// bounded and the permit is not taken.
async fn refuse_tls(stream: TcpStream, app: &App, settings: ServerSettings, tls: &Tls) {
    let mut probe = [0u8; 1];
    match timeout(REFUSE_PEEK_TIME, stream.peek(&mut probe)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let deadline = Instant::now() + REFUSE_HANDSHAKE_TIME;
    let Some(mut stream) = handshake(stream, probe[0], tls, deadline, &mut Shutdown::new(rx)).await else {
        return;
    };
    // The start of the request line, read (not peeked: TLS has no peek) to
    // tell a `HEAD`; the rest is drained by the lingering close.
    let mut start = Vec::with_capacity(5);
    let head = timeout(REFUSE_PEEK_TIME, read_head_prefix(&mut stream, &mut start)).await.unwrap_or(false);
    answer_full(stream, app, settings, head).await;
}

/// Reads until the bytes in `start` are `HEAD ` or cannot become it.
async fn read_head_prefix<S: AsyncRead + Unpin>(io: &mut S, start: &mut Vec<u8>) -> bool {
    const HEAD: &[u8] = b"HEAD ";
    let mut byte = [0u8; 1];
    while start.len() < HEAD.len() && HEAD.starts_with(start) {
        match io.read(&mut byte).await {
            Ok(1) => start.push(byte[0]),
            _ => return false,
        }
    }
    start[..] == *HEAD
}

/// Whether the request line starts with `HEAD `, from bytes peeked (left in
/// the socket). Waits, for at most `REFUSE_PEEK_TIME`, while what has
/// arrived could still be `HEAD `.
async fn is_head_request(stream: &TcpStream) -> bool {
    tokio::time::timeout(REFUSE_PEEK_TIME, starts_with_head(stream)).await.unwrap_or(false)
}

async fn starts_with_head(stream: &TcpStream) -> bool {
    const HEAD: &[u8] = b"HEAD ";
    let mut start = [0u8; HEAD.len()];
    loop {
        let n = match stream.peek(&mut start).await {
            Ok(n) if n > 0 => n,
            _ => return false,
        };
        if n == HEAD.len() || !HEAD.starts_with(&start[..n]) {
            return start[..n] == *HEAD;
        }
        // A prefix of `HEAD `: `peek` would answer at once again, so wait
        // a little for the rest.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// `refuse` tells a `HEAD` by the bytes peeked, also when the request
    /// line arrives in pieces, and leaves those bytes in the socket.
    #[tokio::test]
    async fn a_head_request_is_told_from_peeked_bytes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cases: [(Vec<&'static [u8]>, bool); 6] = [
            (vec![b"HEAD /health HTTP/1.1\r\n"], true),
            (vec![b"HE", b"AD / HTTP/1.1\r\n"], true),
            (vec![b"GET /health HTTP/1.1\r\n"], false),
            (vec![b"HEA", b"DER"], false),
            (vec![b"HEAD", b"/ HTTP/1.1\r\n"], false),
            (vec![b"H"], false),
        ];
        for (pieces, head) in cases {
            let mut client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (mut server, _) = l.accept().await.unwrap();
            let sent: Vec<u8> = pieces.concat();
            let writer = tokio::spawn(async move {
                for piece in pieces {
                    client.write_all(piece).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                // Close: a lone `H` must not be waited for forever.
                drop(client);
            });
            assert_eq!(is_head_request(&server).await, head, "{:?}", String::from_utf8_lossy(&sent));
            writer.await.unwrap();
            let mut left = Vec::new();
            server.read_to_end(&mut left).await.unwrap();
            assert_eq!(left, sent, "peeked bytes stay in the socket");
        }
    }

    /// Every way out of the wait for the first byte takes the connection off
    /// the waiting list (a byte, the client leaving, the header deadline),
    /// so the list holds only connections still waiting. A stop ends those
    /// at once, however long their deadline, but serves a request that has
    /// arrived, also one the connection's task has not seen yet (its task
    /// never polled since the bytes came, or never polled at all).
    #[test]
    fn the_waiting_list_holds_only_connections_still_waiting_and_a_stop_serves_what_arrived() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let store = Arc::new(crate::store::MemoryStore::default());
            let app = Arc::new(App::with_limits(store, Default::default()));
            let (_tx, rx) = watch::channel(false);
            let listening = |header_timeout| {
                let forever = Duration::from_secs(600);
                let settings = ServerSettings {
                    limits: Default::default(),
                    max_connections: 100,
                    header_timeout,
                    body_timeout: forever,
                    idle_timeout: forever,
                    shutdown_timeout: forever,
                };
                Arc::new(Listening { settings, tls: None, waiting: Waiting::default() })
            };
            let tracker = TaskTracker::new();
            // A client and its connection's task (spawned, not yet polled).
            let connect = |listening: Arc<Listening>| {
                let (l, app, rx, tracker) = (&l, app.clone(), rx.clone(), tracker.clone());
                async move {
                    let client = TcpStream::connect(addr).await.unwrap();
                    let (stream, _) = l.accept().await.unwrap();
                    let open = Open::new(app, Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap());
                    tracker.spawn(serve_tcp(stream, open, listening, Shutdown::new(rx)));
                    client
                }
            };
            // Waits (on this runtime, so the connections run) until the
            // list holds `n`.
            let holds = |listening: Arc<Listening>, n: usize| async move {
                for _ in 0..1000 {
                    if listening.waiting.lock().tasks.len() == n {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!("the waiting list holds {}, not {n}", listening.waiting.lock().tasks.len());
            };
            let patience = Duration::from_secs(10);
            let answer = |mut client: TcpStream| async move {
                let mut got = Vec::new();
                timeout(patience, client.read_to_end(&mut got)).await.expect("closed in time").unwrap();
                String::from_utf8_lossy(&got).into_owned()
            };
            const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

            // A long deadline: a client that speaks, one that leaves, two
            // that wait.
            let long = listening(Duration::from_secs(600));
            let mut speaks = connect(long.clone()).await;
            let leaves = connect(long.clone()).await;
            let waits = [connect(long.clone()).await, connect(long.clone()).await];
            holds(long.clone(), 4).await;
            speaks.write_all(HEALTH).await.unwrap();
            drop(leaves);
            holds(long.clone(), 2).await;
            assert!(answer(speaks).await.starts_with("HTTP/1.1 200 "));
            // Two more: one whose request arrives just before the stop (its
            // task not polled since), one accepted just before it and never
            // polled, with its request in the socket.
            let mut late = connect(long.clone()).await;
            holds(long.clone(), 3).await;
            late.write_all(HEALTH).await.unwrap();
            let mut unpolled = connect(long.clone()).await;
            unpolled.write_all(HEALTH).await.unwrap();
            long.waiting.stop();
            assert_eq!(long.waiting.lock().tasks.len(), 0);
            assert!(answer(late).await.starts_with("HTTP/1.1 200 "), "a request that arrived is served");
            assert!(answer(unpolled).await.starts_with("HTTP/1.1 200 "), "also by a task not polled yet");
            for client in waits {
                assert_eq!(answer(client).await, "", "the idle ones closed without a byte");
            }
            // A connection that comes after the stop finds it at its first
            // poll: it ends (nothing sent) and is not left on the list.
            let after = connect(long.clone()).await;
            assert_eq!(answer(after).await, "");
            assert_eq!(long.waiting.lock().tasks.len(), 0);

            // A short deadline: answered `408`, and off the list.
            let short = listening(Duration::from_millis(100));
            let slow = connect(short.clone()).await;
            holds(short.clone(), 1).await;
            holds(short, 0).await;
            assert!(answer(slow).await.starts_with("HTTP/1.1 408 "));
        });
    }

    /// An idle connection costs its task's future (plus a socket), so that
    /// future must stay small: buffers and handler state are boxed and
    /// allocated only once the client has sent a byte.
    #[test]
    fn an_idle_connection_future_stays_small() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let s = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let store = Arc::new(crate::store::MemoryStore::default());
            let app = Arc::new(App::with_limits(store, Default::default()));
            let (_tx, rx) = watch::channel(false);
            let second = Duration::from_secs(1);
            let settings = ServerSettings {
                limits: Default::default(),
                max_connections: 1,
                header_timeout: second,
                body_timeout: second,
                idle_timeout: second,
                shutdown_timeout: second,
            };
            let open = Open::new(app, Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap());
            let listening = Arc::new(Listening { settings, tls: None, waiting: Waiting::default() });
            let f = serve_tcp(s, open, listening, Shutdown::new(rx));
            let size = std::mem::size_of_val(&f);
            eprintln!("the connection future is {size} bytes");
            // Tokio allocates a task as its future plus about 112 bytes, in
            // a multiple of 128: up to 400 bytes of future, 512 in all.
            // 328 bytes in a debug build when
            // this was written; 488 and 480 with the shutdown wait inline
            // (a 640-byte task), 1,096 with `peek`'s own future, an `async
            // fn` and a copy of the settings.
            assert!(size <= 400, "the connection future is {size} bytes");
        });
    }
}
