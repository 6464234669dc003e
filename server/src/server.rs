//! The async listeners: accept connections, enforce `--max-connections`,
//! back off on accept errors, and shut down gracefully.
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

use inlet_shared::http::{Connection, ServerCodec};
use inlet_shared::problem::Problem;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::codec::Encoder;
use tokio_util::task::TaskTracker;

use crate::config::ServerSettings;
use crate::connection::{self, linger_close};
use crate::handlers::App;

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
pub async fn run(
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
                        let shutdown = watch_rx.clone();
                        tracker.spawn(async move {
                            app.stats.connection_opened();
                            connection::serve(stream, app.clone(), settings, shutdown).await;
                            app.stats.connection_closed();
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        let app = app.clone();
                        tracker.spawn(async move { refuse(stream, &app).await });
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

/// Over `--max-connections`: `503` and close, without reading the request.
async fn refuse(mut stream: TcpStream, app: &App) {
    let problem = Problem::new(503, "too-many-connections", "the server is at its connection limit; retry later");
    let mut res = app.reject(problem);
    res.retry_after = Some(1);
    res.connection = Connection::Close;
    let mut buf = bytes::BytesMut::new();
    let _ = ServerCodec::new(Default::default()).encode(res, &mut buf);
    if tokio::time::timeout(Duration::from_secs(1), stream.write_all(&buf)).await.is_ok() {
        linger_close(stream).await;
    }
}
