//! The server-side response encoder. A response is written straight into
//! the connection's write buffer: status line from a table of pre-built
//! bytes, cached `Date`, lengths rendered with `itoa`; nothing is allocated
//! per response beyond that buffer.
//!
//! A body is either whole ([`Body::Full`], sent with `Content-Length`) or
//! produced while it is sent ([`Body::Stream`], sent with
//! `Transfer-Encoding: chunked`, RFC 9112 §7.1). For a streamed body the
//! writer takes the stream out of the response ([`Response::take_stream`]),
//! encodes the head, then writes each chunk with [`put_chunk`] and ends
//! with [`LAST_CHUNK`]. A producer that fails stops without the last chunk:
//! the writer then closes the connection, so the client sees a cut body and
//! never a short one that looks whole. HTTP/1.0 has no chunked coding: a
//! writer answering one collects the stream ([`BodyStream::collect`]) and
//! sends it whole.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;
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

/// One piece of a streamed body, as the producer sent it.
#[derive(Debug)]
enum Piece {
    Data(Bytes),
    End,
}

/// What a writer gets from a [`BodyStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// The next bytes of the body (never empty).
    Data(Bytes),
    /// The body is complete.
    End,
    /// The producer stopped before the end (it failed, or was dropped):
    /// the body must not be ended as if it were whole.
    Aborted,
}

/// The producer stopped before the end of the body, or the writer dropped
/// the stream (the client left): see [`Chunk::Aborted`], [`BodySender`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the streamed body was cut")]
pub struct Cut;

/// The receiving end of a streamed body: a bounded channel, so a producer
/// runs at most a few chunks ahead of the client (backpressure).
#[derive(Debug)]
pub struct BodyStream {
    rx: mpsc::Receiver<Piece>,
}

/// The producing end of a streamed body. [`BodySender::finish`] ends the
/// body; dropping the sender without it aborts the body.
#[derive(Debug)]
pub struct BodySender {
    tx: mpsc::Sender<Piece>,
}

impl BodyStream {
    /// A stream and its sender; at most `chunks` chunks wait in between.
    pub fn channel(chunks: usize) -> (BodySender, BodyStream) {
        let (tx, rx) = mpsc::channel(chunks.max(1));
        (BodySender { tx }, BodyStream { rx })
    }

    /// The next chunk, waiting for the producer.
    pub async fn recv(&mut self) -> Chunk {
        match self.rx.recv().await {
            Some(Piece::Data(data)) => Chunk::Data(data),
            Some(Piece::End) => Chunk::End,
            None => Chunk::Aborted,
        }
    }

    /// The next chunk if the producer has one ready now.
    pub fn try_recv(&mut self) -> Option<Chunk> {
        match self.rx.try_recv() {
            Ok(Piece::Data(data)) => Some(Chunk::Data(data)),
            Ok(Piece::End) => Some(Chunk::End),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => Some(Chunk::Aborted),
        }
    }

    /// The whole body, for writers that cannot stream it (HTTP/1.0).
    pub async fn collect(mut self) -> Result<Bytes, Cut> {
        let mut body = BytesMut::new();
        loop {
            match self.recv().await {
                Chunk::Data(data) => body.extend_from_slice(&data),
                Chunk::End => return Ok(body.freeze()),
                Chunk::Aborted => return Err(Cut),
            }
        }
    }
}

impl BodySender {
    /// Sends the next bytes of the body, waiting while the stream is full.
    /// `Err`: the writer is gone (the client left); stop producing.
    pub async fn send(&self, data: Bytes) -> Result<(), Cut> {
        if data.is_empty() {
            return Ok(());
        }
        self.tx.send(Piece::Data(data)).await.map_err(|_| Cut)
    }

    /// Ends the body.
    pub async fn finish(self) -> Result<(), Cut> {
        self.tx.send(Piece::End).await.map_err(|_| Cut)
    }

    /// Whether the writer dropped the stream.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A response body.
#[derive(Debug)]
pub enum Body {
    /// The whole body, sent with `Content-Length`.
    Full(Bytes),
    /// Produced while it is sent: `Transfer-Encoding: chunked`.
    Stream(BodyStream),
    /// A streamed body whose stream the writer took
    /// ([`Response::take_stream`]) to write its chunks itself: only the
    /// head is encoded.
    Taken,
}

impl Body {
    /// The whole body's bytes; empty for a streamed one.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Body::Full(bytes) => bytes,
            Body::Stream(_) | Body::Taken => &[],
        }
    }

    pub fn is_stream(&self) -> bool {
        !matches!(self, Body::Full(_))
    }
}

/// A response. A whole body is sent with a `Content-Length`, a streamed one
/// chunked.
#[derive(Debug)]
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
    pub body: Body,
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
            body: Body::Full(body),
            omit_body: false,
        }
    }

    /// A response whose body is written while `body` produces it.
    pub fn streamed(status: u16, content_type: Option<Bytes>, body: BodyStream) -> Response {
        let mut res = Response::new(status, content_type, Bytes::new());
        res.body = Body::Stream(body);
        res
    }

    /// Takes the stream of a streamed body out, leaving its head to encode
    /// (see the module doc). `None` for a whole body, and for a response
    /// that omits its body (`HEAD`): that stream is dropped here, so its
    /// producer stops.
    pub fn take_stream(&mut self) -> Option<BodyStream> {
        if !matches!(self.body, Body::Stream(_)) {
            return None;
        }
        match std::mem::replace(&mut self.body, Body::Taken) {
            Body::Stream(stream) if !self.omit_body => Some(stream),
            _ => None,
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
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n).as_bytes();
    // The line gathered on the stack and appended once (the names here are
    // short: `Content-Length: `, `Retry-After: `).
    let mut line = [0u8; 48];
    let len = name.len() + digits.len() + 2;
    if len > line.len() {
        dst.extend_from_slice(name);
        dst.extend_from_slice(digits);
        dst.extend_from_slice(b"\r\n");
        return;
    }
    line[..name.len()].copy_from_slice(name);
    line[name.len()..len - 2].copy_from_slice(digits);
    line[len - 2..len].copy_from_slice(b"\r\n");
    dst.extend_from_slice(&line[..len]);
}

/// The last chunk of a chunked body, with no trailer (RFC 9112 §7.1).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Writes one chunk of a chunked body: its size in hex, the data, CRLF
/// (RFC 9112 §7.1). An empty `data` writes nothing (a zero size would end
/// the body).
pub fn put_chunk(dst: &mut BytesMut, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    dst.reserve(data.len() + 20);
    put_chunk_size(dst, data.len());
    dst.extend_from_slice(data);
    dst.extend_from_slice(b"\r\n");
}

/// Appends a chunk's size line (RFC 9112 §7.1: lowercase hex digits, CRLF)
/// for a chunk of `len` bytes (not 0: that is the last chunk). For a writer
/// that sends the chunk's data from its own buffer.
pub fn put_chunk_size(dst: &mut BytesMut, len: usize) {
    // `{:x}` of a usize: at most 16 digits, no allocation beyond `dst`.
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut at = digits.len();
    while n > 0 {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
    }
    dst.extend_from_slice(&digits[at..]);
    dst.extend_from_slice(b"\r\n");
}

/// Writes a response head and, unless `omit_body`, its body. The
/// `Content-Length` is the body's either way (RFC 9110 §8.6: for `HEAD`, what
/// a `GET` would have had). A streamed body gets `Transfer-Encoding:
/// chunked` instead (for `HEAD` too: RFC 9112 §6.1 lets it say what a `GET`
/// would have had) and only its head is written here.
pub(crate) fn encode_response(res: &Response, omit_body: bool, dst: &mut BytesMut) {
    let body_len = if omit_body { 0 } else { res.body.bytes().len() };
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
    match &res.body {
        Body::Full(body) => put_number(dst, b"Content-Length: ", body.len() as u64),
        Body::Stream(_) | Body::Taken => dst.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
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
        dst.put_slice(res.body.bytes());
    }
}

impl Encoder<Response> for ServerCodec {
    type Error = CodecError;

    /// A final response: it answers the oldest request not yet answered
    /// (or the one whose head was cut short), and has no body if that was a
    /// `HEAD` (RFC 9110 §9.3.2), whatever its status. A streamed body must
    /// have been taken out first (its chunks follow from the writer), unless
    /// it is omitted.
    fn encode(&mut self, res: Response, dst: &mut BytesMut) -> Result<(), CodecError> {
        let to_head = self.take_head_flag();
        debug_assert!(
            !matches!(res.body, Body::Stream(_)) || res.omit_body || to_head,
            "a streamed body is written by its writer, not encoded whole"
        );
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

    /// The server's handler returns an answer through two futures: at 128
    /// bytes or less it is moved in registers, past that by a call to
    /// `memcpy` at each step (docs/performance.md, round three, tenth part).
    #[test]
    fn a_response_is_at_most_128_bytes() {
        assert!(std::mem::size_of::<Response>() <= 128, "{}", std::mem::size_of::<Response>());
    }

    fn text(out: &BytesMut) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn chunks_are_framed_with_their_hex_size() {
        let mut out = BytesMut::new();
        put_chunk(&mut out, b"abc");
        put_chunk(&mut out, b"");
        put_chunk(&mut out, &[b'x'; 0x1a2b]);
        out.extend_from_slice(LAST_CHUNK);
        let expected = format!("3\r\nabc\r\n1a2b\r\n{}\r\n0\r\n\r\n", "x".repeat(0x1a2b));
        assert_eq!(text(&out), expected);
    }

    #[test]
    fn a_streamed_body_has_a_chunked_head_and_no_length() {
        let (_tx, body) = BodyStream::channel(1);
        let mut res = Response::streamed(200, Some(Bytes::from_static(b"application/json")), body);
        assert!(res.take_stream().is_some());
        assert!(matches!(res.body, Body::Taken));
        let mut out = BytesMut::new();
        encode_response(&res, false, &mut out);
        let text = text(&out);
        assert!(text.ends_with("Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"), "{text}");
        assert!(!text.contains("Content-Length"), "{text}");
    }

    #[test]
    fn a_head_answer_drops_the_stream_and_keeps_the_head() {
        let (tx, body) = BodyStream::channel(1);
        let mut res = Response::streamed(200, None, body);
        res.omit_body = true;
        assert!(res.take_stream().is_none(), "no chunks follow a HEAD answer");
        assert!(tx.is_closed(), "the producer sees the stream is gone");
        let mut out = BytesMut::new();
        encode_response(&res, true, &mut out);
        assert!(text(&out).ends_with("Transfer-Encoding: chunked\r\n\r\n"), "{}", text(&out));
    }

    #[tokio::test]
    async fn a_stream_ends_only_when_finished() {
        let (tx, mut body) = BodyStream::channel(4);
        tx.send(Bytes::from_static(b"ab")).await.unwrap();
        tx.send(Bytes::new()).await.unwrap();
        tx.finish().await.unwrap();
        assert_eq!(body.recv().await, Chunk::Data(Bytes::from_static(b"ab")));
        assert_eq!(body.recv().await, Chunk::End);

        let (tx, body) = BodyStream::channel(4);
        tx.send(Bytes::from_static(b"ab")).await.unwrap();
        drop(tx);
        assert_eq!(body.collect().await, Err(Cut), "a dropped producer cuts the body");

        let (tx, body) = BodyStream::channel(4);
        drop(body);
        assert_eq!(tx.send(Bytes::from_static(b"ab")).await, Err(Cut), "the producer learns the client left");
    }

    #[test]
    fn a_number_line_is_the_name_the_digits_and_crlf_for_every_width() {
        let long = "X-A-Field-Name-Longer-Than-The-Line-Buffer-Itself: ";
        for name in ["Content-Length: ", "Retry-After: ", long] {
            let mut n = 0u64;
            let mut numbers = vec![0, u64::MAX];
            // 9, 99, ... up to 19 nines, and the next number of each width.
            for _ in 0..19 {
                n = n * 10 + 9;
                numbers.extend([n, n + 1]);
            }
            for n in numbers {
                let mut dst = BytesMut::from(&b"before"[..]);
                super::put_number(&mut dst, name.as_bytes(), n);
                assert_eq!(dst, format!("before{name}{n}\r\n").as_bytes(), "{name}{n}");
            }
        }
    }
}
