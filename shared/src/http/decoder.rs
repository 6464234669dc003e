//! The server-side request decoder: frames HTTP/1.1 requests out of a
//! `BytesMut`.
//!
//! A request goes through two states. `Head` (`decode_head`): the
//! [`HeadScanner`] looks for the empty line, then httparse parses the head
//! (a head that came whole is read in one pass: `plain_head.rs` for the
//! plain form clients send, else httparse alone),
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
use super::message::{word8, BoxedInbound, Headers, Inbound, Method, Request, RequestHead, Version};
use super::plain_head::{self, PlainHead};
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

#[derive(Debug)]
enum State {
    Head,
    Body {
        /// The request, its body still empty.
        req: Box<Request>,
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
        if same_bytes(value, &self.bytes[..self.len as usize]) {
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

/// `a == b`, eight bytes at a time for 8 bytes or more, the last word
/// overlapping the one before (slice equality is a `memcmp` call).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a == b;
    }
    let mut at = 0;
    while at + 8 < n {
        if word8(&a[at..]) != word8(&b[at..]) {
            return false;
        }
        at += 8;
    }
    word8(&a[n - 8..]) == word8(&b[n - 8..])
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

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<BoxedInbound>, HttpError> {
        match self.state {
            State::Failed(err) => Err(err),
            State::Head => {
                // Handed on as it is (a request is large: no move through a
                // second `Result`).
                let head = self.decode_head(buf);
                if !matches!(head, Ok(None)) {
                    return head;
                }
                self.decode_data(buf)
            }
            State::Body { .. } => self.decode_data(buf),
        }
    }

    /// In the head state: frames the head once it is whole. Returns a
    /// request without body at once; for a request with a body, moves to
    /// the body state and returns `None`, as it does while the head is
    /// incomplete.
    #[inline(always)]
    fn decode_head(&mut self, buf: &mut BytesMut) -> Result<Option<BoxedInbound>, HttpError> {
        if buf.is_empty() {
            return Ok(None);
        }
        // A head that arrives whole in one read (the usual case) is walked
        // once: in the plain form clients send, by `plain_head`; else
        // httparse finds its end, and its result shows whether the
        // scanner's line rules hold (`whole_head`). Anything else, a head
        // cut across reads or one those rules may refuse, goes through the
        // scanner first, then httparse, as the rules are written.
        if self.scanner.is_fresh() {
            // The plain form clients send: read in one pass of our own,
            // the same verdict as httparse's and the scanner's on it.
            let mut plain = PlainHead::default();
            if plain_head::parse(buf, &mut plain) && plain.len <= self.limits.max_head {
                self.heads.push_back(starts_head(buf));
                self.unfinished_head = false;
                self.since = None;
                let mut boxed = empty_request();
                let head = &buf[..plain.len];
                let span = |(start, end): (u32, u32)| &head[start as usize..end as usize];
                let fields = plain.fields[..plain.count].iter().map(|f| (span(f.name), span(f.value)));
                let line = RequestLine {
                    method: &head[..plain.method_end],
                    target: &head[plain.target.0..plain.target.1],
                    minor: plain.minor,
                };
                let parsed = parse_head(head, line, fields, &mut self.hosts, &mut boxed.head.headers)?;
                return self.start_body(buf, plain.len, parsed, boxed);
            }
            // Uninitialised slots: httparse fills only what it uses.
            let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut []);
            if let Ok(httparse::Status::Complete(len)) = req.parse_with_uninit_headers(buf, &mut slots) {
                if len <= self.limits.max_head && whole_head(buf, &req) {
                    self.heads.push_back(starts_head(buf));
                    self.unfinished_head = false;
                    self.since = None;
                    let mut boxed = empty_request();
                    let parsed = parse_parsed_head(&buf[..len], &req, &mut self.hosts, &mut boxed.head.headers)?;
                    return self.start_body(buf, len, parsed, boxed);
                }
            }
        }
        self.decode_scanned_head(buf)
    }

    /// The head as the rules are written: the scanner finds its end and
    /// checks its lines, then httparse parses it (a head cut across reads,
    /// or one the one-pass route of `decode_head` gave no verdict on).
    #[inline(never)]
    fn decode_scanned_head(&mut self, buf: &mut BytesMut) -> Result<Option<BoxedInbound>, HttpError> {
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
        let head_bytes = &buf[..span.len];
        // Recorded before parsing, so that a refused head is answered as
        // what it was.
        self.heads.push_back(starts_head(head_bytes));
        self.unfinished_head = false;
        self.since = None;
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(head_bytes, &mut slots) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(HttpError::InvalidRequestLine),
            Err(e) => return Err(map_parse_error(e, head_bytes)),
        }
        let mut boxed = empty_request();
        let parsed = parse_parsed_head(head_bytes, &req, &mut self.hosts, &mut boxed.head.headers)?;
        self.start_body(buf, span.len, parsed, boxed)
    }

    /// With the head parsed (the first `head_len` bytes of `buf`): splits
    /// it off, and returns the request at once if it has no body or if its
    /// whole `Content-Length` body is in `buf` already (split off with the
    /// head in one piece, the usual case of a small request: no pass
    /// through the body state), else moves to the body state.
    #[inline(always)]
    fn start_body(
        &mut self,
        buf: &mut BytesMut,
        head_len: usize,
        parsed: Parsed,
        mut req: Box<Request>,
    ) -> Result<Option<BoxedInbound>, HttpError> {
        let Parsed { method, target, origin_start, version, keep_alive, framing, expect_continue } = parsed;
        let decoder = match framing {
            None | Some(Framing::Length(0)) => None,
            Some(framing) => Some(BodyDecoder::new(framing, self.limits.max_body, self.limits.max_head)?),
        };
        // `Ok`: the whole body, here already; `Err`: the decoder that waits for it.
        let (bytes, body) = match decoder {
            None => (buf.split_to(head_len).freeze(), Ok(Bytes::new())),
            Some(BodyDecoder::Length(n)) if buf.len() - head_len >= n => {
                let mut bytes = buf.split_to(head_len + n).freeze();
                let body = bytes.split_off(head_len);
                (bytes, Ok(body))
            }
            Some(decoder) => (buf.split_to(head_len).freeze(), Err(decoder)),
        };
        // Filled in place: the request is not moved once boxed.
        let head = &mut req.head;
        head.method = match method {
            Method::Other(_) => Method::Other(bytes.slice(..method_len(&bytes))),
            known => known,
        };
        head.target = bytes.slice(target.0..target.1);
        head.origin_start = origin_start;
        head.version = version;
        head.keep_alive = keep_alive;
        head.headers.attach(bytes);
        let body = match body {
            Ok(body) => {
                req.body = body;
                return Ok(Some(BoxedInbound::Request(req)));
            }
            Err(decoder) => decoder,
        };
        if let BodyDecoder::Length(n) = body {
            // Room for the rest of the body, bounded so that a large
            // declared length does not reserve before it arrives.
            if buf.len() < n {
                buf.reserve((n - buf.len()).min(64 * 1024));
            }
        }
        self.state = State::Body { req, body, continue_pending: expect_continue };
        Ok(None)
    }

    /// In the body state: the whole request once its body is complete.
    #[inline(always)]
    fn decode_data(&mut self, buf: &mut BytesMut) -> Result<Option<BoxedInbound>, HttpError> {
        let State::Body { req, body, continue_pending } = &mut self.state else {
            return Ok(None);
        };
        match body.decode(buf)? {
            Some(body) => {
                let State::Body { mut req, .. } = std::mem::replace(&mut self.state, State::Head) else {
                    unreachable!("state checked above")
                };
                self.since = None;
                req.body = body;
                Ok(Some(BoxedInbound::Request(req)))
            }
            None => {
                if self.since.is_none() {
                    self.since = Some(Instant::now());
                }
                if *continue_pending {
                    *continue_pending = false;
                    return Ok(Some(BoxedInbound::Continue(Box::new(req.head.clone()))));
                }
                Ok(None)
            }
        }
    }
}

impl ServerCodec {
    /// [`Decoder::decode`], with the request boxed where it is built (the
    /// server's connections take this: see [`BoxedInbound`]).
    pub fn decode_boxed(&mut self, buf: &mut BytesMut) -> Result<Option<BoxedInbound>, CodecError> {
        match self.decode_inner(buf) {
            Ok(item) => Ok(item),
            Err(e) => Err(self.fail(buf, e)),
        }
    }

    /// [`Decoder::decode_eof`], with the request boxed.
    pub fn decode_eof_boxed(&mut self, buf: &mut BytesMut) -> Result<Option<BoxedInbound>, CodecError> {
        match self.decode_boxed(buf)? {
            Some(item) => Ok(Some(item)),
            // A clean close between requests is the normal end of a connection.
            None if buf.is_empty() && matches!(self.state, State::Head) && self.scanner.is_fresh() => Ok(None),
            None => Err(self.fail(buf, HttpError::IncompleteMessage)),
        }
    }
}

impl Decoder for ServerCodec {
    type Item = Inbound;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, CodecError> {
        Ok(self.decode_boxed(buf)?.map(Inbound::from))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, CodecError> {
        Ok(self.decode_eof_boxed(buf)?.map(Inbound::from))
    }
}

/// A head parsed where it lies in the read buffer, before it is split off:
/// what is not `Bytes` yet is offsets into it.
struct Parsed {
    /// `Method::Other` holds no token yet: it is the head's first word.
    method: Method,
    /// The request-target's range in the head.
    target: (usize, usize),
    origin_start: u32,
    version: Version,
    keep_alive: bool,
    /// How the body is delimited (`None`: no body).
    framing: Option<Framing>,
    /// Whether the client expects `100 Continue`.
    expect_continue: bool,
}

/// A request to fill in place as its head is parsed: its fields are
/// offsets pushed into its headers (still detached from any buffer), the
/// rest is set once the head is split off.
fn empty_request() -> Box<Request> {
    // Written into the new allocation (`Box::new` built the request on the
    // stack and copied its 296 bytes over).
    Box::write(
        Box::new_uninit(),
        Request {
            head: RequestHead {
                method: Method::Get,
                target: Bytes::new(),
                origin_start: 0,
                version: Version::Http11,
                headers: Headers::default(),
                keep_alive: false,
            },
            body: Bytes::new(),
        },
    )
}

/// The length of the method token at the start of a head.
fn method_len(head: &[u8]) -> usize {
    memchr::memchr(b' ', head).unwrap_or(head.len())
}

/// Whether a head that httparse parsed whole, from the first byte of
/// `buf`, keeps the line rules the scanner enforces, so that the scanner
/// would find the same head: no empty line before it, every line ended by
/// CRLF (no bare LF), no line that folds onto the one before. httparse
/// refuses a folded line and any LF inside a line, and reports where
/// each line's content ends; the bytes from there to the next line must
/// be optional whitespace and CRLF, and the last line must be empty.
/// `false` is no verdict: the caller asks the scanner.
#[inline(always)]
fn whole_head(buf: &[u8], req: &httparse::Request<'_, '_>) -> bool {
    let (Some(method), Some(path)) = (req.method, req.path) else { return false };
    if method.as_ptr() != buf.as_ptr() {
        return false;
    }
    let base = buf.as_ptr() as usize;
    // `path SP HTTP/1.x` then the line end: httparse takes exactly one space
    // and eight bytes of version.
    let mut end = (path.as_ptr() as usize).wrapping_sub(base).wrapping_add(path.len() + 9);
    for field in req.headers.iter() {
        let Some(next) = line_end(buf, end) else { return false };
        if (field.name.as_ptr() as usize).wrapping_sub(base) != next {
            return false;
        }
        end = (field.value.as_ptr() as usize).wrapping_sub(base).wrapping_add(field.value.len());
    }
    line_end(buf, end).is_some_and(|next| buf.get(next..next + 2) == Some(b"\r\n"))
}

/// From `at`, where a line's content ends: optional whitespace and CRLF;
/// returns where the next line starts.
#[inline(always)]
fn line_end(buf: &[u8], mut at: usize) -> Option<usize> {
    while let Some(b' ' | b'\t') = buf.get(at) {
        at += 1;
    }
    (buf.get(at..at.checked_add(2)?)? == b"\r\n").then_some(at + 2)
}

/// The request line of a parsed head, as slices of the head.
struct RequestLine<'a> {
    method: &'a [u8],
    target: &'a [u8],
    /// `HTTP/1.<minor>`.
    minor: u8,
}

/// [`parse_head`] of a head that httparse parsed whole (`req`, from `head`).
#[inline(always)]
fn parse_parsed_head(
    head: &[u8],
    req: &httparse::Request<'_, '_>,
    valid_hosts: &mut HostCache,
    headers: &mut Headers,
) -> Result<Parsed, HttpError> {
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HttpError::InvalidRequestLine);
    };
    let line = RequestLine { method: method.as_bytes(), target: path.as_bytes(), minor };
    let fields = req.headers.iter().map(|field| (field.name.as_bytes(), field.value));
    parse_head(head, line, fields, valid_hosts, headers)
}

/// Applies the rules of the request line, `Host` and body framing to a
/// head parsed whole (`line` and `fields`, names and values, are slices of
/// `head`).
#[inline(always)]
fn parse_head<'a>(
    head: &[u8],
    line: RequestLine<'a>,
    fields: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
    valid_hosts: &mut HostCache,
    headers: &mut Headers,
) -> Result<Parsed, HttpError> {
    let RequestLine { method: method_token, target: path, minor } = line;
    let version = if minor == 0 { Version::Http10 } else { Version::Http11 };
    let method = Method::known(method_token);
    // CONNECT asks for a tunnel (RFC 9110 §9.3.6); this server is no proxy.
    if matches!(method, Method::Other(_)) && method_token == b"CONNECT" {
        return Err(HttpError::ConnectNotSupported);
    }
    let origin = origin_start(path, &method)?;
    let base = head.as_ptr() as usize;
    let target_start = (path.as_ptr() as usize).wrapping_sub(base);

    headers.reserve(fields.len());
    let mut framing = FramingFields::default();
    let mut hosts = 0usize;
    let mut close = false;
    let mut keep_alive = false;
    let mut expect_continue = false;

    for (name, value) in fields {
        let value = trim_ows(value);
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
        headers.push_in(head, name, value);
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
    Ok(Parsed {
        method,
        target: (target_start, target_start + path.len()),
        origin_start: origin as u32,
        version,
        keep_alive: match version {
            Version::Http11 => !close,
            Version::Http10 => keep_alive && !close,
        },
        framing,
        // RFC 9110 §10.1.1: 100-continue is only meaningful from HTTP/1.1 clients.
        expect_continue: expect_continue && has_body && version == Version::Http11,
    })
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

#[cfg(test)]
mod tests {
    use super::same_bytes;

    #[test]
    fn same_bytes_is_slice_equality_at_every_length_and_position() {
        for len in 0..=40usize {
            let a: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            assert!(same_bytes(&a, &a.clone()));
            if len > 0 {
                assert!(!same_bytes(&a, &a[..len - 1]), "len {len}: a shorter slice");
            }
            for i in 0..len {
                for flip in [1u8, 0x80, 0xFF] {
                    let mut b = a.clone();
                    b[i] ^= flip;
                    assert!(!same_bytes(&a, &b), "len {len} byte {i} ^ {flip:#x}");
                }
            }
        }
    }
}
