//! `inlet-shared`: what the inlet server and client have in common.
//!
//! # Layout
//! - [`http`]: the hand-written HTTP/1.1 codec for tokio-util's `Framed`.
//!   - `http::decoder`: server side, frames requests out of a `BytesMut`
//!     (head scanning, RFC 9112 body-length rules, limits, smuggling rules).
//!   - `http::chunked`: the chunked transfer-coding state machine (both sides).
//!   - `http::coding`: content codings (gzip, deflate, zstd): the bounded,
//!     sliced body decoder, `Accept-Encoding` negotiation, the encoders.
//!   - `http::head`: the incremental end-of-head scanner (both sides).
//!   - `http::encoder`: server side, writes responses (cached `Date`).
//!   - `http::client`: the mirror pair: request encoder, response decoder.
//!   - `http::error`: the typed protocol errors, each with its status.
//! - [`event`]: the CloudEvents 1.0 `Event`, its parsing from every HTTP
//!   binding mode (structured, batch, NDJSON, binary) and its validation
//!   (`event::validate` holds the per-attribute rules, `time` included).
//! - [`duration`]: durations on the command line (`250ms`, `10s`, `2m`).
//! - [`problem`]: RFC 9457 problem details, the body of every error response.
//! - [`schema`]: JSON Schemas for events' `data`, one per type: loading a
//!   directory, validating a request's events, errors with pointers.
//!
//! Nothing here does I/O beyond the codec traits.

pub mod duration;
pub mod event;
pub mod http;
pub mod problem;
pub mod schema;
