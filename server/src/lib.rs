//! `inlet-server`: the HTTP/1.1 event-intake server.
//!
//! # Layout
//! - `config`: every flag (each also an `INLET_*` environment variable).
//! - `server`: the async listener: connection limit, accept back-off,
//!   graceful shutdown. `connection`: one task per connection over
//!   `Framed<TcpStream, ServerCodec>`, with the head/body/idle deadlines and
//!   pipelined responses flushed once per batch.
//! - `router`: maps method and path to a handler (`404`, `405` + `Allow`,
//!   `HEAD`). `handlers/`: one file per endpoint family.
//! - `respond`: builds responses (JSON, RFC 9457 problems).
//! - `store/`: the [`store::Store`] trait and its implementations.
//! - `stats`: the counters behind `/stats`; `metrics`: lock-free request
//!   counters and latency histograms, and the `/metrics` registry.
//! - `blocking`: the stage-1 single-threaded server, kept to show the freeze.
//! - `shutdown`: SIGINT/SIGTERM as a future.

pub mod blocking;
pub mod config;
mod connection;
mod handlers;
pub mod logging;
mod metrics;
mod respond;
mod router;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod store;

use std::sync::Arc;

pub use handlers::App;
pub use server::run;

/// Runs the async server until SIGINT/SIGTERM: binds, prints `listening on`,
/// serves, drains, and makes the store durable.
pub fn run_async(config: config::Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let store = store::open(&config).await?;
        let app = Arc::new(App::new(store, &config));
        let listener = server::bind(config.listen)?;
        let addr = listener.local_addr()?;
        server::announce(addr);
        run(listener, app, config.server_settings(), shutdown::signal()).await;
        Ok(())
    })
}
