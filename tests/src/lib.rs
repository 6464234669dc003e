//! Helpers for the end-to-end tests: start the real `inlet-server` (and
//! `inlet-client`, `nats-server`) binaries on free ports, and talk to them
//! over plain blocking sockets with the shared client codec or raw bytes.
//!
//! The binaries are expected in the same target directory as the test
//! executable; `scripts/test.sh` builds them first (`cargo build --bins`).
//!
//! # Layout
//! - `server`: [`Server`], a running `inlet-server`; [`binary`] finds a built binary.
//! - `conn`: [`Conn`], a blocking connection through the client codec;
//!   [`raw_exchange`], [`json`], [`free_port`].
//! - `nats`: [`Nats`], a `nats-server` node; [`NatsConn`], a minimal NATS client.
//! - `events`: [`event_json`] to send, [`stored_ids`] to read back what is stored.
//! - `client`: [`client`] runs `inlet-client`.
//! - `sse`: [`SseStream`], a blocking reader of `GET /events/stream`.
//! - `error`: [`HarnessError`].
//!
//! Each step that can fail has a `try_` method returning [`HarnessError`]
//! (`Server::try_start`, `Conn::try_open`, `Conn::try_send`,
//! `Conn::try_response`, `Server::try_request`, `NatsConn::try_open`, ...);
//! the method without `try_` calls it and panics with the error's text. A
//! test that expects a connection to be lost uses the `try_` form.

use std::time::Duration;

mod client;
mod conn;
mod error;
mod events;
mod nats;
mod server;
mod sse;

pub use client::client;
pub use conn::{free_port, json, raw_exchange, Conn};
pub use error::HarnessError;
pub use events::{event_json, stored_ids};
pub use nats::{wait_jetstream_ready, Nats, NatsConn, NatsReply};
pub use server::{binary, new_token, refused_start, try_binary, Server};
pub use sse::{SseEnd, SseEvent, SseStream};

/// A generous bound for anything that should happen "at once".
pub const PATIENCE: Duration = Duration::from_secs(10);
