//! The server-side response encoder. A response is written straight into
//! the connection's write buffer: status line from a table of pre-built
//! bytes, cached `Date`, lengths rendered with `itoa`; nothing is allocated
//! per response beyond that buffer.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::Encoder;

use super::date::write_date;
use super::status::status_line;
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
    /// Further header fields, written in this order after the ones above
    /// (`WWW-Authenticate`, `Vary`, ...). Names are the handler's constants;
    /// values must be valid field values (no CR, LF or NUL). Empty for most
    /// responses, so it costs no allocation.
    pub headers: Vec<(&'static str, Bytes)>,
    pub body: Bytes,
    /// Send the headers of the full response and no body. The server codec
    /// also omits the body of any final response to a `HEAD` request by
    /// itself; this is for writers without a codec that saw the request.
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
            headers: Vec::new(),
            body,
            omit_body: false,
        }
    }

    /// Adds a header field (see [`Response::headers`]).
    pub fn with_header(mut self, name: &'static str, value: impl Into<Bytes>) -> Response {
        self.headers.push((name, value.into()));
        self
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

/// Writes `name: <decimal>\r\n`.
fn put_number(dst: &mut BytesMut, name: &[u8], n: u64) {
    dst.extend_from_slice(name);
    dst.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    dst.extend_from_slice(b"\r\n");
}

/// Writes a response head and, unless `omit_body`, its body. The
/// `Content-Length` is the body's either way (RFC 9110 §8.6: for `HEAD`, what
/// a `GET` would have had).
pub(crate) fn encode_response(res: &Response, omit_body: bool, dst: &mut BytesMut) {
    let body_len = if omit_body { 0 } else { res.body.len() };
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
    for (name, value) in &res.headers {
        dst.extend_from_slice(name.as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value);
        dst.extend_from_slice(b"\r\n");
    }
    match res.connection {
        Connection::Default => {}
        Connection::Close => dst.extend_from_slice(b"Connection: close\r\n"),
        Connection::KeepAlive => dst.extend_from_slice(b"Connection: keep-alive\r\n"),
    }
    dst.extend_from_slice(b"\r\n");
    if !omit_body {
        dst.put_slice(&res.body);
    }
}

impl Encoder<Response> for ServerCodec {
    type Error = CodecError;

    /// A final response: it answers the oldest request not yet answered
    /// (or the one whose head was cut short), and has no body if that was a
    /// `HEAD` (RFC 9110 §9.3.2), whatever its status.
    fn encode(&mut self, res: Response, dst: &mut BytesMut) -> Result<(), CodecError> {
        let to_head = self.take_head_flag();
        encode_response(&res, res.omit_body || to_head, dst);
        Ok(())
    }
}

impl Encoder<Continue> for ServerCodec {
    type Error = CodecError;

    /// An interim response: the request it belongs to still gets its final
    /// answer, so it takes no `HEAD` flag.
    fn encode(&mut self, _: Continue, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_headers_are_written_in_order_before_connection() {
        let res = Response::json(401, "{}")
            .with_header("WWW-Authenticate", "Bearer realm=\"inlet\"")
            .with_header("RateLimit", Bytes::from_static(b"\"token\";r=0;t=1"));
        let mut res = res;
        res.connection = Connection::Close;
        let mut out = BytesMut::new();
        encode_response(&res, false, &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        let tail = "Content-Length: 2\r\nWWW-Authenticate: Bearer realm=\"inlet\"\r\nRateLimit: \"token\";r=0;t=1\r\nConnection: close\r\n\r\n{}";
        assert!(text.ends_with(tail), "{text}");
    }

    #[test]
    fn statuses_of_access_control_have_their_phrases() {
        for (status, line) in [(401, "401 Unauthorized"), (403, "403 Forbidden"), (429, "429 Too Many Requests")] {
            let mut out = BytesMut::new();
            encode_response(&Response::json(status, "{}"), false, &mut out);
            assert!(out.starts_with(format!("HTTP/1.1 {line}\r\n").as_bytes()));
            assert_eq!(crate::problem::title(status), &line[4..]);
        }
    }
}
