//! HTTP/1.1 message framing for tokio-util's `Framed` (RFC 9110, RFC 9112).
//!
//! The server side is [`ServerCodec`]: a [`Decoder`](tokio_util::codec::Decoder)
//! yielding [`Inbound`] items (whole requests, or the head of a request that
//! sent `Expect: 100-continue`) and an [`Encoder`](tokio_util::codec::Encoder)
//! for [`Response`] and [`Continue`]. The client side is [`ClientCodec`], the
//! mirror pair.

mod chunked;
mod client;
pub mod coding;
mod date;
mod decoder;
mod encoder;
mod error;
mod framing;
mod head;
mod message;
mod plain_head;
pub mod status;
mod target;

pub use chunked::ChunkedDecoder;
pub use client::{ClientCodec, ClientRequest, ClientResponse};
pub use date::write_date;
pub use decoder::{Limits, Phase, ServerCodec};
pub use encoder::{
    put_chunk, put_chunk_size, Body, BodySender, BodyStream, Chunk, Connection, Continue, Cut, Response, LAST_CHUNK,
};
pub use error::{CodecError, HttpError};
pub use message::{BoxedInbound, Headers, Inbound, Method, Request, RequestHead, Version};
