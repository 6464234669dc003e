//! `inlet-server`: the HTTP/1.1 event-intake server.
//!
//! # Layout
//! - `config`: every flag (each also an `INLET_*` environment variable).
//! - `error`: [`StartError`], why the server could not start; the library
//!   returns typed errors, `anyhow` is nowhere in it.
//! - `server`: the async listeners: one runtime per worker thread, the
//!   connection limit (and its `503`), accept back-off, graceful shutdown,
//!   and what is specific to TCP (`set_nodelay`, waiting for the first byte).
//! - `connection/`: **the connection driver**, the one module that owns a
//!   connection's life: a state machine (its table is in the module doc)
//!   over `Framed<S, Codec>` (the `ServerCodec`, its requests boxed) for any `AsyncRead + AsyncWrite` stream,
//!   with the head/body/idle deadlines, pipelined answers flushed once per
//!   batch, and the closing answer with its lingering close (`closing.rs`).
//! - `router`: maps method and path to a handler (`404`, `405` + `Allow`,
//!   `HEAD`). `handlers/`: one file per endpoint family.
//! - `respond`: builds responses (JSON, RFC 9457 problems).
//! - `store/`: the [`store::Store`] trait and its implementations.
//! - `stats`: the counters behind `/stats`; `metrics`: lock-free request
//!   counters and latency histograms, and the `/metrics` registry.
//! - `blocking`: the stage-1 single-threaded server, kept to show the
//!   freeze; it answers through the same request handling as the driver.
//! - `tls`: HTTPS (`--tls-cert`): the rustls configuration, the
//!   certificate `SIGHUP` reloads, and the client certificate's identity.
//! - `shutdown`: SIGINT/SIGTERM as a future, and [`shutdown::Shutdown`],
//!   a connection's view of the server's shutdown.
//! - `auth/`: access control (tokens, scopes, quotas); the router checks
//!   each request's scope, `handlers/events.rs` its sources and quota.
//!   `SIGHUP` runs [`reload`].
//! - `schemas`: `--schemas DIR`, the JSON Schemas of events' `data`
//!   (validation itself is `inlet_shared::schema`), reloaded on `SIGHUP`.

pub mod auth;
pub mod blocking;
pub mod config;
mod connection;
mod dashboard;
mod error;
mod handlers;
pub mod logging;
mod metrics;
mod respond;
mod router;
pub mod schemas;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod store;
pub mod tls;

use std::sync::Arc;

pub use error::StartError;
pub use handlers::App;

/// `--mode async`: runs the server until SIGINT/SIGTERM: opens the store, binds one
/// listener per worker, prints `listening on`, serves, drains, and closes the
/// store so that every acknowledged event is durable.
pub fn serve_async(config: config::Config) -> Result<(), StartError> {
    // The main thread's runtime owns the store (and its background tasks,
    // such as the NATS client) and waits for the signal.
    let auth = config.auth()?;
    let schemas = config.schemas()?;
    let main = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let tls = config.tls_files().map(tls::Tls::load).transpose()?.map(Arc::new);
    let store = main.block_on(store::open(&config))?;
    let app = Arc::new(App::new(store, &config).with_auth(auth).with_schemas(schemas));
    log_access(&app);
    {
        let _context = main.enter();
        main.spawn(reload_on_sighup(app.clone(), tls.clone()));
    }
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    let listeners = {
        // tokio's socket API registers the listener with a reactor; it is
        // handed to its worker's runtime right after.
        let _context = main.enter();
        server::bind_workers(config.listen, workers)?
    };
    let addr = listeners[0].local_addr()?;
    let settings = config.server_settings();
    let permits = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    let (stop, stopped) = tokio::sync::watch::channel(false);

    let mut threads = Vec::with_capacity(workers);
    for (i, listener) in listeners.into_iter().enumerate() {
        let (app, permits, mut stopped, tls) = (app.clone(), permits.clone(), stopped.clone(), tls.clone());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = std::thread::Builder::new().name(format!("inlet-worker-{i}")).spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("worker {i}: {e}");
                        return;
                    }
                };
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                server::serve_listener(listener, app, settings, tls, permits, shutdown).await;
            });
        })?;
        threads.push(thread);
    }
    // Installed before `listening on`: a signal right after it is handled.
    let signalled = {
        let _context = main.enter();
        shutdown::signal()
    };
    server::announce(addr);
    tracing::info!(workers, "serving");

    main.block_on(async move {
        signalled.await;
        let _ = stop.send(true);
        // Workers stop accepting, finish what is in flight, and return.
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        let _ = joined.await;
        match app.store.close().await {
            Ok(()) => tracing::info!("store closed"),
            Err(e) => tracing::error!("closing the store failed: {e}"),
        }
    });
    Ok(())
}

/// Says at start who may do what.
pub(crate) fn log_access(app: &App) {
    if app.auth.is_anonymous() {
        tracing::info!("no --tokens: serving anonymously (anyone who reaches the port may write and read)");
    } else {
        let names: Vec<String> = app.auth.token_names().iter().map(|n| n.to_string()).collect();
        tracing::info!(tokens = app.auth.token_count(), "access control on: tokens {}", names.join(", "));
    }
}

/// Re-reads what `SIGHUP` reloads: the tokens file, the TLS certificate
/// and key, and the schemas of `--schemas`. Each is used whole or not at all: one that does not load is
/// refused with a log line and the one in use stays (the other may still
/// be reloaded).
pub fn reload(app: &App, tls: Option<&tls::Tls>) {
    if let Some(tls) = tls {
        // Logs its own outcome (file names only, never key material).
        let _ = tls::reload(tls);
    }
    match app.auth.reload() {
        Ok(None) => tracing::info!("SIGHUP: no --tokens, nothing to reload"),
        Ok(Some(report)) => tracing::info!(
            tokens = report.tokens,
            "SIGHUP: tokens reloaded; added: [{}], removed: [{}]",
            report.added.join(", "),
            report.removed.join(", ")
        ),
        Err(e) => tracing::error!("SIGHUP: {e}; keeping the tokens in use"),
    }
    // Logs its own outcome (file and reason when a schema does not compile).
    app.schemas.reload();
}

/// Runs [`reload`] on every `SIGHUP` for the life of the process. The
/// handler is installed when this is called (inside a runtime), not when
/// the future is first polled: a `SIGHUP` right after `listening on` must
/// reload, not end the process (its default action).
pub(crate) fn reload_on_sighup(app: Arc<App>, tls: Option<Arc<tls::Tls>>) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP ({e}): reloading is off");
            None
        }
    };
    async move {
        #[cfg(unix)]
        if let Some(mut hangups) = hangups {
            while hangups.recv().await.is_some() {
                reload(&app, tls.as_deref());
            }
        }
        #[cfg(not(unix))]
        let _ = (app, tls);
    }
}
