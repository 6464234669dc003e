//! The async listener: accepts connections, enforces `--max-connections`,
//! backs off on accept errors, and shuts down gracefully.

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
use crate::connection::{linger_close, ConnectionTask};
use crate::handlers::App;

/// Listen backlog: bursts of connects queue in the kernel instead of being
/// refused.
const BACKLOG: u32 = 4096;

/// Binds with `SO_REUSEADDR` and a large backlog.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Prints the one line scripts wait for (SPEC §1).
pub fn announce(addr: SocketAddr) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
    tracing::info!("listening on {addr}");
}

/// Serves until `shutdown` completes; then stops accepting, lets requests in
/// flight finish (bounded by `--shutdown-timeout`), and closes the store so
/// that every acknowledged event is durable.
pub async fn run(listener: TcpListener, app: Arc<App>, settings: ServerSettings, shutdown: impl Future<Output = ()>) {
    let (notify, watch_rx) = watch::channel(false);
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(settings.max_connections));
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
                        let task = ConnectionTask::new(stream, app.clone(), settings, watch_rx.clone());
                        tracker.spawn(async move {
                            app.stats.connection_opened();
                            task.run().await;
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
    match app.store.close().await {
        Ok(()) => tracing::info!("store closed"),
        Err(e) => tracing::error!("closing the store failed: {e}"),
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
