//! The server-side response encoder. A response is written straight into
//! the connection's write buffer: status line from a table of pre-built
//! bytes, cached `Date`, lengths rendered with `itoa`; nothing is allocated
//! per response beyond that buffer.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::Encoder;

use super::date::write_date;
use super::{CodecError, ServerCodec};

/// What the response says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Connection {
    /// Nothing: HTTP/1.1 persistence applies.
    #[default]
    Default,
    /// `Connection: close`: the server closes after this response.
    Close,
    /// `Connection: keep-alive`: for HTTP/1.0 clients that asked for it.
    KeepAlive,
}

/// A response. The body is sent with a `Content-Length`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<Bytes>,
    /// `Allow` header, for `405` answers.
    pub allow: Option<&'static str>,
    /// `Retry-After` in seconds, for `503` answers.
    pub retry_after: Option<u32>,
    pub connection: Connection,
    pub body: Bytes,
    /// Answer to `HEAD`: the headers of the full response, no body.
    pub omit_body: bool,
}

impl Response {
    pub fn new(status: u16, content_type: Option<Bytes>, body: Bytes) -> Response {
        Response {
            status,
            content_type,
            allow: None,
            retry_after: None,
            connection: Connection::Default,
            body,
            omit_body: false,
        }
    }

    /// A response with an `application/json` body.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Response {
        Response::new(status, Some(Bytes::from_static(b"application/json")), body.into())
    }

    pub fn closes(&self) -> bool {
        self.connection == Connection::Close
    }
}

/// The interim `100 Continue` response (RFC 9110 §15.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Continue;

/// The status line for a status code; known codes are pre-built bytes.
fn status_line(status: u16) -> Option<&'static [u8]> {
    Some(match status {
        200 => b"HTTP/1.1 200 OK\r\n",
        202 => b"HTTP/1.1 202 Accepted\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        400 => b"HTTP/1.1 400 Bad Request\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        405 => b"HTTP/1.1 405 Method Not Allowed\r\n",
        408 => b"HTTP/1.1 408 Request Timeout\r\n",
        411 => b"HTTP/1.1 411 Length Required\r\n",
        413 => b"HTTP/1.1 413 Content Too Large\r\n",
        414 => b"HTTP/1.1 414 URI Too Long\r\n",
        415 => b"HTTP/1.1 415 Unsupported Media Type\r\n",
        422 => b"HTTP/1.1 422 Unprocessable Content\r\n",
        431 => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        500 => b"HTTP/1.1 500 Internal Server Error\r\n",
        501 => b"HTTP/1.1 501 Not Implemented\r\n",
        503 => b"HTTP/1.1 503 Service Unavailable\r\n",
        505 => b"HTTP/1.1 505 HTTP Version Not Supported\r\n",
        _ => return None,
    })
}

/// Writes `name: <decimal>\r\n`.
fn put_number(dst: &mut BytesMut, name: &[u8], n: u64) {
    dst.extend_from_slice(name);
    dst.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    dst.extend_from_slice(b"\r\n");
}

/// Writes a response head and body; used by both `Encoder` impls and by the
/// blocking mode, which writes to a plain `Vec`-backed buffer.
pub(crate) fn encode_response(res: &Response, dst: &mut BytesMut) {
    let body_len = if res.omit_body { 0 } else { res.body.len() };
    dst.reserve(160 + body_len);
    match status_line(res.status) {
        Some(line) => dst.extend_from_slice(line),
        None => {
            // RFC 9112 §4: the reason phrase may be empty.
            dst.extend_from_slice(b"HTTP/1.1 ");
            dst.extend_from_slice(itoa::Buffer::new().format(res.status).as_bytes());
            dst.extend_from_slice(b" \r\n");
        }
    }
    write_date(dst);
    if let Some(ct) = &res.content_type {
        dst.extend_from_slice(b"Content-Type: ");
        dst.extend_from_slice(ct);
        dst.extend_from_slice(b"\r\n");
    }
    put_number(dst, b"Content-Length: ", res.body.len() as u64);
    if let Some(allow) = res.allow {
        dst.extend_from_slice(b"Allow: ");
        dst.extend_from_slice(allow.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    if let Some(secs) = res.retry_after {
        put_number(dst, b"Retry-After: ", u64::from(secs));
    }
    match res.connection {
        Connection::Default => {}
        Connection::Close => dst.extend_from_slice(b"Connection: close\r\n"),
        Connection::KeepAlive => dst.extend_from_slice(b"Connection: keep-alive\r\n"),
    }
    dst.extend_from_slice(b"\r\n");
    if !res.omit_body {
        dst.put_slice(&res.body);
    }
}

impl Encoder<Response> for ServerCodec {
    type Error = CodecError;

    fn encode(&mut self, res: Response, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_response(&res, dst);
        Ok(())
    }
}

impl Encoder<Continue> for ServerCodec {
    type Error = CodecError;

    fn encode(&mut self, _: Continue, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        Ok(())
    }
}
