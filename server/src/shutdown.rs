//! Shutdown, seen from both ends: [`signal`] turns SIGINT / SIGTERM into a
//! future (so the server takes its trigger as an argument and tests pass
//! their own), and [`Shutdown`] is how one connection learns that the
//! server is draining.
//!
//! A connection asks two questions of it: "has shutdown begun?" when it
//! decides whether to keep a connection open after an answer
//! ([`Shutdown::is_shutdown`], an atomic load), and "wake me when it
//! begins" while it waits idle for the next request ([`Shutdown::poll_recv`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::sync::watch;

/// One connection's view of the server's shutdown. The listener holds the
/// `watch::Sender<bool>` and sends `true` once; dropping the sender counts
/// as shutdown too (the server is gone).
pub struct Shutdown {
    /// Never marked seen, so `has_changed` says whether shutdown began
    /// (an atomic load, no lock).
    rx: watch::Receiver<bool>,
    /// Resolves when shutdown begins. Made on the first wait and kept, so a
    /// connection registers with the channel once rather than once per
    /// request; boxed so that a connection that never waits pays nothing.
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Shutdown {
    pub fn new(mut rx: watch::Receiver<bool>) -> Shutdown {
        if *rx.borrow() {
            // Created after the signal: make `has_changed` report it.
            rx.mark_changed();
        }
        Shutdown { rx, wait: None }
    }

    /// Whether shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        // Only `true` is ever sent; a dropped sender means the server is gone.
        self.rx.has_changed().unwrap_or(true)
    }

    /// Ready once shutdown has begun (and ready again on every later poll).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_shutdown() {
            return Poll::Ready(());
        }
        let rx = &self.rx;
        let wait = self.wait.get_or_insert_with(|| {
            let mut rx = rx.clone();
            Box::pin(async move {
                let _ = rx.wait_for(|stop| *stop).await;
            })
        });
        wait.as_mut().poll(cx)
    }

    /// Completes once shutdown has begun. For a single wait (such as the
    /// TLS handshake's): nothing is allocated, and the registration ends
    /// with the future. It waits on `rx` itself rather than a clone and
    /// marks the value unseen again once it has seen it, so that
    /// `is_shutdown` keeps reporting it. (A connection waiting for its first
    /// byte holds no such wait: its listener wakes it, `server::Waiting`.)
    pub async fn recv(&mut self) {
        if self.is_shutdown() {
            return;
        }
        // Only `true` is ever sent; an error is the sender gone, which is
        // shutdown too.
        let _ = self.rx.changed().await;
        self.rx.mark_changed();
    }
}

/// Set once this process received SIGINT or SIGTERM: a signal is the
/// process's, so this is too. `/readyz` answers `503` from then on, while
/// requests in flight finish.
static BEGUN: AtomicBool = AtomicBool::new(false);

/// Whether shutdown has begun for this process (a signal was received).
pub fn has_begun() -> bool {
    BEGUN.load(Ordering::Acquire)
}

/// Marks shutdown as begun (what [`signal`] does on a signal).
pub fn begin() {
    BEGUN.store(true, Ordering::Release);
}

/// Completes on the first SIGINT or SIGTERM, after marking shutdown as
/// begun ([`has_begun`]). The handlers are installed when this is called
/// (inside a runtime), not when the future is first polled: a SIGTERM right
/// after `listening on` must shut down gracefully, not end the process
/// (its default action) with events in flight.
pub fn signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |installed: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
                match installed {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(e) => {
                        tracing::error!("cannot listen for {name}: {e}");
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                _ = wait(interrupt, "SIGINT") => tracing::info!("SIGINT received, shutting down"),
                _ = wait(terminate, "SIGTERM") => tracing::info!("SIGTERM received, shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!("cannot listen for SIGINT: {e}");
                std::future::pending::<()>().await;
            }
            tracing::info!("SIGINT received, shutting down");
        }
        begin();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_shutdown_is_seen_by_check_and_by_wait() {
        let (tx, rx) = watch::channel(false);
        let mut shutdown = Shutdown::new(rx);
        assert!(!shutdown.is_shutdown());
        assert!(futures::FutureExt::now_or_never(shutdown.recv()).is_none());
        let waiting = std::future::poll_fn(|cx| shutdown.poll_recv(cx));
        assert!(futures::FutureExt::now_or_never(waiting).is_none());
        tx.send(true).unwrap();
        assert!(shutdown.is_shutdown());
        assert_eq!(futures::FutureExt::now_or_never(shutdown.recv()), Some(()));
        // And stays seen, by both ways of waiting.
        for _ in 0..2 {
            let waiting = std::future::poll_fn(|cx| shutdown.poll_recv(cx));
            assert_eq!(futures::FutureExt::now_or_never(waiting), Some(()));
            assert_eq!(futures::FutureExt::now_or_never(shutdown.recv()), Some(()));
        }
    }

    #[tokio::test]
    async fn a_view_made_after_the_signal_sees_it() {
        let (tx, rx) = watch::channel(false);
        tx.send(true).unwrap();
        let shutdown = Shutdown::new(rx.clone());
        assert!(shutdown.is_shutdown());
    }

    #[tokio::test]
    async fn a_dropped_sender_counts_as_shutdown() {
        let (tx, rx) = watch::channel(false);
        let mut shutdown = Shutdown::new(rx);
        drop(tx);
        assert!(shutdown.is_shutdown());
        assert_eq!(futures::FutureExt::now_or_never(shutdown.recv()), Some(()));
    }
}
