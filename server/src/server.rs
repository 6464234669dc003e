//! The async listeners: accept connections, enforce `--max-connections`,
//! back off on accept errors, and shut down gracefully. What is specific to
//! TCP happens here (`set_nodelay`, waiting for the first byte with `peek`);
//! the connection's life is the driver's (`connection/`).
//!
//! The server runs one single-threaded tokio runtime per worker thread
//! (`--workers`, default: one per CPU), each with its own listening socket
//! on the same address (`SO_REUSEPORT`), as nginx runs its workers: a
//! connection lives on one thread for its whole life, so no request pays
//! for a cross-thread wake-up.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use inlet_shared::http::{Response, ServerCodec};
use inlet_shared::problem::Problem;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep_until, Instant};
use tokio_util::codec::{Framed, FramedParts};
use tokio_util::task::TaskTracker;

use crate::config::ServerSettings;
use crate::connection::{close_with, closing_problem, Driver};
use crate::handlers::App;
use crate::shutdown::Shutdown;

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
pub async fn serve_listener(
    listener: TcpListener,
    app: Arc<App>,
    settings: ServerSettings,
    permits: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
) {
    let (notify, watch_rx) = watch::channel(false);
    let tracker = TaskTracker::new();
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
                        let app = app.clone();
                        let shutdown = Shutdown::new(watch_rx.clone());
                        tracker.spawn(async move {
                            app.stats.connection_opened();
                            serve_tcp(stream, app.clone(), settings, shutdown).await;
                            app.stats.connection_closed();
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        let app = app.clone();
                        tracker.spawn(async move { refuse(stream, &app, settings).await });
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
    tracker.close();
    if tokio::time::timeout(settings.shutdown_timeout, tracker.wait()).await.is_err() {
        tracing::warn!("shutdown timeout passed with {} connection(s) still open", tracker.len());
    }
}

/// Serves one accepted TCP connection to its end.
///
/// Until the client sends its first byte the connection owns no buffers: it
/// waits for readiness only, so thousands of idle connections cost a task
/// and a socket each. Then the [`Driver`] takes over, with the header
/// deadline still counted from the accept (past it, the driver answers
/// `408` at once).
async fn serve_tcp(stream: TcpStream, app: Arc<App>, settings: ServerSettings, mut shutdown: Shutdown) {
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
        _ = sleep_until(accepted_at + settings.header_timeout) => {}
        _ = shutdown.recv() => return,
    }
    // Boxed: the state of a busy connection (buffers, codec, handler
    // futures: several KiB) is allocated only once the client has spoken,
    // so the future of an idle one stays small.
    Box::pin(Driver::new(stream, app, settings, shutdown, accepted_at).drive()).await;
}

/// How long `refuse` waits for the start of the request line.
const REFUSE_PEEK_TIME: Duration = Duration::from_secs(1);

/// Over `--max-connections`: `503` and close, without reading the request.
/// The start of the request line is peeked at (for up to a second) only to
/// tell a `HEAD`, whose answer carries no body (RFC 9110 §9.3.2).
async fn refuse(stream: TcpStream, app: &App, settings: ServerSettings) {
    let head = is_head_request(&stream).await;
    let problem = Problem::new(503, "too-many-connections", "the server is at its connection limit; retry later");
    let mut res = closing_problem(app, problem);
    res.retry_after = Some(1);
    res.omit_body = head;
    let framed = Framed::from_parts(FramedParts::new::<Response>(stream, ServerCodec::new(settings.limits)));
    close_with(framed, res).await;
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
            let f = serve_tcp(s, app, settings, Shutdown::new(rx));
            let size = std::mem::size_of_val(&f);
            assert!(size <= 1024, "the connection future is {size} bytes");
        });
    }
}
