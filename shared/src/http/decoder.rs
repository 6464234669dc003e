//! The server-side request decoder: frames HTTP/1.1 requests out of a
//! `BytesMut`.
//!
//! A request goes through two states. `Head` (`decode_head`): the
//! [`HeadScanner`] looks for the empty line, then httparse parses the head,
//! the request-target and `Host` are checked (`target.rs`) and the framing
//! rules of RFC 9112 §6, shared with the client side (`framing.rs`), decide
//! how the body is delimited. `Body` (`decode_data`): bytes are collected by
//! `Content-Length` or by the chunked decoder until the body is whole.
//! Header names and values are zero-copy slices of the frozen head.
//!
//! The codec also remembers, in order, which of the requests it framed were
//! `HEAD`, so that the encoder leaves the content out of their answers
//! whoever builds them (RFC 9110 §9.3.2).

use std::collections::VecDeque;
use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use super::framing::{trim_ows, BodyDecoder, Framing, FramingFields};
use super::head::HeadScanner;
use super::message::{Headers, Inbound, Method, Request, RequestHead, Version};
use super::target::{is_host_port, origin_start, starts_head};
use super::{CodecError, HttpError};

/// Header fields accepted in one request (SPEC §3.3: more is `431`).
pub const MAX_HEADERS: usize = 100;

/// Size limits the decoder enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus header section, in bytes; also bounds a chunked
    /// body's trailer section.
    pub max_head: usize,
    /// Decoded body, in bytes.
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
        body: BodyDecoder,
        continue_pending: bool,
    },
    /// A protocol error was returned; the framing is lost for good.
    Failed(HttpError),
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
    /// For each request head framed and not yet answered, in order: was it
    /// `HEAD`? The encoder of a final response takes the first, so that an
    /// answer to `HEAD` never carries content (RFC 9110 §9.3.2).
    heads: VecDeque<bool>,
    /// Whether the head being received (not yet complete) is of a `HEAD`
    /// request, as far as its bytes so far tell: the flag of a final answer
    /// when no framed request is waiting for one (an error or timeout in the
    /// middle of a head).
    unfinished_head: bool,
    /// The last `Host` value found valid.
    hosts: HostCache,
}

/// The last valid `Host` value of a connection, up to 48 bytes: a
/// keep-alive client repeats the same one on every request, so it is
/// checked once per connection, then compared.
#[derive(Debug, Clone, Copy)]
struct HostCache {
    len: u8,
    bytes: [u8; 48],
}

impl Default for HostCache {
    fn default() -> HostCache {
        // `len` 0 means empty: the empty value is valid, so the cache is
        // never wrong.
        HostCache { len: 0, bytes: [0; 48] }
    }
}

impl HostCache {
    /// Whether `value` is a valid `uri-host [ ":" port ]`.
    #[inline]
    fn is_valid(&mut self, value: &[u8]) -> bool {
        if value == &self.bytes[..self.len as usize] {
            return true;
        }
        if !is_host_port(value) {
            return false;
        }
        if value.len() <= self.bytes.len() {
            self.bytes[..value.len()].copy_from_slice(value);
            self.len = value.len() as u8;
        }
        true
    }
}

impl ServerCodec {
    pub fn new(limits: Limits) -> ServerCodec {
        ServerCodec {
            limits,
            scanner: HeadScanner::default(),
            state: State::Head,
            since: None,
            heads: VecDeque::new(),
            unfinished_head: false,
            hosts: HostCache::default(),
        }
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

    /// Whether the final response encoded next answers a `HEAD` request,
    /// taking that request's flag: the oldest request framed and not yet
    /// answered, else the head still being received.
    pub(crate) fn take_head_flag(&mut self) -> bool {
        self.heads.pop_front().unwrap_or(self.unfinished_head)
    }

    fn fail(&mut self, buf: &mut BytesMut, err: HttpError) -> CodecError {
        // Drop what is buffered: nothing after a framing error can be trusted,
        // and the decoder must not be handed the same bytes again.
        buf.clear();
        self.state = State::Failed(err);
        CodecError::Http(err)
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, HttpError> {
        match self.state {
            State::Failed(err) => Err(err),
            State::Head => match self.decode_head(buf)? {
                Some(request) => Ok(Some(request)),
                None => self.decode_data(buf),
            },
            State::Body { .. } => self.decode_data(buf),
        }
    }

    /// In the head state: frames the head once it is whole. Returns a
    /// request without body at once; for a request with a body, moves to
    /// the body state and returns `None`, as it does while the head is
    /// incomplete.
    #[inline(always)]
    fn decode_head(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, HttpError> {
        if buf.is_empty() {
            return Ok(None);
        }
        let span = match self.scanner.scan(buf, self.limits.max_head, MAX_HEADERS) {
            Ok(Some(span)) => span,
            Ok(None) => {
                // Timestamps are taken only for requests that span reads, so
                // a request that arrives whole never reads the clock.
                if self.since.is_none() {
                    self.since = Some(Instant::now());
                }
                self.unfinished_head = starts_head(buf);
                return Ok(None);
            }
            Err(e) => {
                self.unfinished_head = starts_head(buf);
                return Err(e);
            }
        };
        buf.advance(span.skip);
        let head_bytes = buf.split_to(span.len).freeze();
        // Recorded before parsing, so that a refused head is answered as
        // what it was.
        self.heads.push_back(starts_head(&head_bytes));
        self.unfinished_head = false;
        self.since = None;
        let (head, framing, expect_continue) = parse_head(head_bytes, &mut self.hosts)?;
        let body = match framing {
            None | Some(Framing::Length(0)) => {
                return Ok(Some(Inbound::Request(Request { head, body: Bytes::new() })));
            }
            Some(framing) => BodyDecoder::new(framing, self.limits.max_body, self.limits.max_head)?,
        };
        if let BodyDecoder::Length(n) = body {
            // Room for the rest of the body, bounded so that a large
            // declared length does not reserve before it arrives.
            if buf.len() < n {
                buf.reserve((n - buf.len()).min(64 * 1024));
            }
        }
        self.state = State::Body { head, body, continue_pending: expect_continue };
        Ok(None)
    }

    /// In the body state: the whole request once its body is complete.
    #[inline(always)]
    fn decode_data(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, HttpError> {
        let State::Body { head, body, continue_pending } = &mut self.state else {
            return Ok(None);
        };
        match body.decode(buf)? {
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

/// Parses a complete head with httparse and applies the rules of the
/// request line, `Host` and body framing. Returns the head, how its body is
/// delimited (`None`: no body), and whether the client expects
/// `100 Continue`.
fn parse_head(bytes: Bytes, valid_hosts: &mut HostCache) -> Result<(RequestHead, Option<Framing>, bool), HttpError> {
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
    // CONNECT asks for a tunnel (RFC 9110 §9.3.6); this server is no proxy.
    if matches!(&method, Method::Other(token) if &token[..] == b"CONNECT") {
        return Err(HttpError::ConnectNotSupported);
    }
    let origin = origin_start(path.as_bytes(), &method)?;

    let mut headers = Headers::with_buffer(bytes.clone(), req.headers.len());
    let mut framing = FramingFields::default();
    let mut hosts = 0usize;
    let mut close = false;
    let mut keep_alive = false;
    let mut expect_continue = false;

    for field in req.headers.iter() {
        let name = field.name.as_bytes();
        let value = trim_ows(field.value);
        // Compare lengths first: most names match none of these.
        match name.len() {
            14 if is_token(name, b"content-length") => framing.content_length(value)?,
            17 if is_token(name, b"transfer-encoding") => framing.transfer_encoding(value),
            4 if is_token(name, b"host") => {
                // RFC 9112 §3.2: an invalid Host is 400, also where the
                // target's authority overrides it.
                if !valid_hosts.is_valid(value) {
                    return Err(HttpError::InvalidHost);
                }
                hosts += 1;
            }
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

    let framing = framing.framing(version)?;
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1; never more than one.
    if hosts > 1 {
        return Err(HttpError::MultipleHost);
    }
    if hosts == 0 && version == Version::Http11 {
        return Err(HttpError::MissingHost);
    }
    if framing.is_none() && method.expects_body() {
        return Err(HttpError::LengthRequired);
    }

    let has_body = !matches!(framing, None | Some(Framing::Length(0)));
    let head = RequestHead {
        method,
        target: bytes.slice_ref(path.as_bytes()),
        origin_start: origin as u32,
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
    // `method SP target SP version`: any other space makes it malformed.
    if memchr::memchr_iter(b' ', line).count() != 2 {
        return false;
    }
    match line.len().checked_sub(8).map(|i| &line[i..]) {
        Some([b'H', b'T', b'T', b'P', b'/', major, b'.', minor]) => {
            major.is_ascii_digit() && minor.is_ascii_digit() && line.len() > 8 && line[line.len() - 9] == b' '
        }
        _ => false,
    }
}

/// Case-insensitive match against a lowercase token made of letters, digits
/// and `-`. Setting bit 5 lowercases a letter and leaves digits and `-`
/// alone; the only other bytes it maps onto a digit or `-` are control
/// characters, which httparse has already refused in names and values.
#[inline]
fn is_token(s: &[u8], lower: &[u8]) -> bool {
    s.len() == lower.len() && s.iter().zip(lower).all(|(a, b)| a | 0x20 == *b)
}
