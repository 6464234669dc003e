//! The server-side request decoder: frames HTTP/1.1 requests out of a
//! `BytesMut`.
//!
//! A request goes through two states. `Head`: the [`HeadScanner`] looks for
//! the empty line, then httparse parses the head and the framing rules of
//! RFC 9112 §6 decide how the body is delimited. `Body`: bytes are collected
//! by `Content-Length` or by the [`ChunkedDecoder`] until the body is whole.
//! Header names and values are zero-copy slices of the frozen head.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use super::chunked::ChunkedDecoder;
use super::head::HeadScanner;
use super::message::{Headers, Inbound, Method, Request, RequestHead, Version};
use super::{CodecError, HttpError};

/// Header fields accepted in one request (SPEC §3.3: more is `431`).
pub const MAX_HEADERS: usize = 100;

/// Size limits the decoder enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus header section, in bytes (`--max-head`).
    pub max_head: usize,
    /// Decoded body, in bytes (`--max-body`).
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_head: 16 * 1024, max_body: 4 * 1024 * 1024 }
    }
}

/// Where the decoder is in the current request, for the caller's deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between requests: nothing of the next one has arrived.
    Idle,
    /// Part of a head has arrived; `since` is when its first byte was decoded.
    Head { since: Instant },
    /// The head is complete and the body is being read since `since`.
    Body { since: Instant },
}

// One codec per connection, in place: boxing the large variant would cost
// an allocation per request instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum State {
    Head,
    Body {
        head: RequestHead,
        body: BodyState,
        continue_pending: bool,
    },
    /// A protocol error was returned; the framing is lost for good.
    Failed(HttpError),
}

#[derive(Debug)]
enum BodyState {
    Length(usize),
    Chunked(ChunkedDecoder),
}

/// How the body of a request is delimited (RFC 9112 §6.3).
enum Framing {
    Empty,
    Length(usize),
    Chunked,
}

/// Server side of the HTTP/1.1 codec: decodes [`Inbound`] requests, encodes
/// responses (see `encoder.rs`).
#[derive(Debug)]
pub struct ServerCodec {
    limits: Limits,
    scanner: HeadScanner,
    state: State,
    /// When the current phase began (first byte of the head, or end of head).
    since: Option<Instant>,
}

impl ServerCodec {
    pub fn new(limits: Limits) -> ServerCodec {
        ServerCodec { limits, scanner: HeadScanner::default(), state: State::Head, since: None }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn phase(&self) -> Phase {
        match (&self.state, self.since) {
            (State::Body { .. }, Some(since)) => Phase::Body { since },
            (State::Head, Some(since)) => Phase::Head { since },
            _ => Phase::Idle,
        }
    }

    fn fail(&mut self, buf: &mut BytesMut, err: HttpError) -> CodecError {
        // Drop what is buffered: nothing after a framing error can be trusted,
        // and the decoder must not be handed the same bytes again.
        buf.clear();
        self.state = State::Failed(err);
        CodecError::Http(err)
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, HttpError> {
        if let State::Failed(err) = self.state {
            return Err(err);
        }
        if let State::Head = self.state {
            if buf.is_empty() {
                return Ok(None);
            }
            let Some(span) = self.scanner.scan(buf, self.limits.max_head, MAX_HEADERS)? else {
                // Timestamps are taken only for requests that span reads, so
                // a request that arrives whole never reads the clock.
                if self.since.is_none() {
                    self.since = Some(Instant::now());
                }
                return Ok(None);
            };
            buf.advance(span.skip);
            let head_bytes = buf.split_to(span.len).freeze();
            let (head, framing, expect_continue) = parse_head(head_bytes, &self.limits)?;
            let body = match framing {
                Framing::Empty | Framing::Length(0) => {
                    self.since = None;
                    return Ok(Some(Inbound::Request(Request { head, body: Bytes::new() })));
                }
                Framing::Length(n) => {
                    // Room for the rest of the body, bounded so that a large
                    // declared length does not reserve before it arrives.
                    if buf.len() < n {
                        buf.reserve((n - buf.len()).min(64 * 1024));
                    }
                    BodyState::Length(n)
                }
                Framing::Chunked => BodyState::Chunked(ChunkedDecoder::new(self.limits.max_body, self.limits.max_head)),
            };
            self.since = None;
            self.state = State::Body { head, body, continue_pending: expect_continue };
        }
        let State::Body { head, body, continue_pending } = &mut self.state else {
            return Ok(None);
        };
        let complete = match body {
            BodyState::Length(n) if buf.len() >= *n => Some(buf.split_to(*n).freeze()),
            BodyState::Length(_) => None,
            BodyState::Chunked(chunked) => chunked.decode(buf)?,
        };
        match complete {
            Some(body) => {
                let State::Body { head, .. } = std::mem::replace(&mut self.state, State::Head) else {
                    unreachable!("state checked above")
                };
                self.since = None;
                Ok(Some(Inbound::Request(Request { head, body })))
            }
            None => {
                if self.since.is_none() {
                    self.since = Some(Instant::now());
                }
                if *continue_pending {
                    *continue_pending = false;
                    return Ok(Some(Inbound::Continue(head.clone())));
                }
                Ok(None)
            }
        }
    }
}

impl Decoder for ServerCodec {
    type Item = Inbound;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, CodecError> {
        self.decode_inner(buf).map_err(|e| self.fail(buf, e))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, CodecError> {
        match self.decode(buf)? {
            Some(item) => Ok(Some(item)),
            // A clean close between requests is the normal end of a connection.
            None if buf.is_empty() && matches!(self.state, State::Head) && self.scanner.is_fresh() => Ok(None),
            None => Err(self.fail(buf, HttpError::IncompleteMessage)),
        }
    }
}

/// Parses a complete head with httparse and applies the framing rules.
/// Returns the head, how its body is delimited, and whether the client
/// expects `100 Continue`.
fn parse_head(bytes: Bytes, limits: &Limits) -> Result<(RequestHead, Framing, bool), HttpError> {
    // Uninitialised slots: httparse fills only what it uses.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(&bytes, &mut slots) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HttpError::InvalidRequestLine),
        Err(e) => return Err(map_parse_error(e, &bytes)),
    }
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HttpError::InvalidRequestLine);
    };
    let version = if minor == 0 { Version::Http10 } else { Version::Http11 };
    let method = Method::from_token(method.as_bytes(), &bytes);

    let mut headers = Headers::with_buffer(bytes.clone(), req.headers.len());
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = 0usize;
    let mut unknown_coding = false;
    let mut hosts = 0usize;
    let mut close = false;
    let mut keep_alive = false;
    let mut expect_continue = false;

    for field in req.headers.iter() {
        let name = field.name.as_bytes();
        let value = trim_ows(field.value);
        // Compare lengths first: most names match none of these.
        match name.len() {
            14 if is_token(name, b"content-length") => {
                // RFC 9110 §8.6: a list of identical values may be accepted as one.
                for part in value.split(|&b| b == b',') {
                    let n = parse_decimal(trim_ows(part))?;
                    if content_length.is_some_and(|m| m != n) {
                        return Err(HttpError::ConflictingContentLength);
                    }
                    content_length = Some(n);
                }
            }
            17 if is_token(name, b"transfer-encoding") => {
                transfer_encoding = true;
                for coding in value.split(|&b| b == b',').map(trim_ows).filter(|c| !c.is_empty()) {
                    if is_token(coding, b"chunked") {
                        chunked += 1;
                    } else {
                        unknown_coding = true;
                    }
                }
            }
            4 if is_token(name, b"host") => hosts += 1,
            10 if is_token(name, b"connection") => {
                for token in value.split(|&b| b == b',').map(trim_ows) {
                    close |= is_token(token, b"close");
                    keep_alive |= is_token(token, b"keep-alive");
                }
            }
            6 if is_token(name, b"expect") => {
                expect_continue |= is_token(value, b"100-continue");
            }
            _ => {}
        }
        headers.push_slices(name, value);
    }

    // RFC 9112 §6.1: Transfer-Encoding is not defined for HTTP/1.0.
    if transfer_encoding && version == Version::Http10 {
        return Err(HttpError::TransferEncodingOnHttp10);
    }
    // RFC 9112 §6.1: both present is a smuggling attempt; reject and close.
    if transfer_encoding && content_length.is_some() {
        return Err(HttpError::ContentLengthWithTransferEncoding);
    }
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1; never more than one.
    if hosts > 1 {
        return Err(HttpError::MultipleHost);
    }
    if hosts == 0 && version == Version::Http11 {
        return Err(HttpError::MissingHost);
    }

    let framing = if transfer_encoding {
        // RFC 9112 §6.1 / §7: 501 for a coding we do not implement; chunked
        // must be the final coding and applied once.
        if unknown_coding {
            return Err(HttpError::UnsupportedTransferCoding);
        }
        match chunked {
            0 => return Err(HttpError::UnsupportedTransferCoding),
            1 => Framing::Chunked,
            _ => return Err(HttpError::ChunkedTwice),
        }
    } else if let Some(n) = content_length {
        // Checked against the limit before anything is reserved for it.
        if n > limits.max_body as u64 {
            return Err(HttpError::BodyTooLarge);
        }
        Framing::Length(n as usize)
    } else if method.expects_body() {
        return Err(HttpError::LengthRequired);
    } else {
        Framing::Empty
    };

    let has_body = !matches!(framing, Framing::Empty | Framing::Length(0));
    let head = RequestHead {
        method,
        target: bytes.slice_ref(path.as_bytes()),
        version,
        headers,
        keep_alive: match version {
            Version::Http11 => !close,
            Version::Http10 => keep_alive && !close,
        },
    };
    // RFC 9110 §10.1.1: 100-continue is only meaningful from HTTP/1.1 clients.
    let expect = expect_continue && has_body && version == Version::Http11;
    Ok((head, framing, expect))
}

fn map_parse_error(e: httparse::Error, head: &[u8]) -> HttpError {
    match e {
        httparse::Error::HeaderName => HttpError::InvalidHeaderName,
        httparse::Error::HeaderValue => HttpError::InvalidHeaderValue,
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        httparse::Error::Version if is_other_http_version(head) => HttpError::UnsupportedVersion,
        _ => HttpError::InvalidRequestLine,
    }
}

/// Whether the request line ends in a well-formed `HTTP/x.y` that is not 1.0/1.1
/// (RFC 9110 §15.6.6: answered with 505).
fn is_other_http_version(head: &[u8]) -> bool {
    let line_end = memchr::memchr(b'\r', head).unwrap_or(head.len());
    let line = &head[..line_end];
    match line.len().checked_sub(8).map(|i| &line[i..]) {
        Some([b'H', b'T', b'T', b'P', b'/', major, b'.', minor]) => {
            major.is_ascii_digit() && minor.is_ascii_digit() && line.len() > 8 && line[line.len() - 9] == b' '
        }
        _ => false,
    }
}

/// RFC 9110 §8.6: `Content-Length = 1*DIGIT`. No sign, no spaces, no hex.
fn parse_decimal(digits: &[u8]) -> Result<u64, HttpError> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::InvalidContentLength);
    }
    digits.iter().try_fold(0u64, |n, &d| {
        // A length that does not even fit in u64 is over any body limit.
        n.checked_mul(10).and_then(|n| n.checked_add(u64::from(d - b'0'))).ok_or(HttpError::BodyTooLarge)
    })
}

/// Case-insensitive match against a lowercase token made of letters, digits
/// and `-`. Setting bit 5 lowercases a letter and leaves digits and `-`
/// alone; the only other bytes it maps onto a digit or `-` are control
/// characters, which httparse has already refused in names and values.
#[inline]
fn is_token(s: &[u8], lower: &[u8]) -> bool {
    s.len() == lower.len() && s.iter().zip(lower).all(|(a, b)| a | 0x20 == *b)
}

/// Strips optional whitespace (SP / HTAB, RFC 9110 §5.6.3) at both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}
