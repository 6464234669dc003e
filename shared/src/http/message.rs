//! The request types the server decoder yields.

use bytes::Bytes;

/// HTTP version of a message. Only 1.0 and 1.1 are spoken (RFC 9112 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// Request method (RFC 9110 §9). Unknown methods keep their token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Other(Bytes),
}

impl Method {
    /// Maps a method token found in `head`; unknown methods keep a
    /// zero-copy slice of it.
    pub(crate) fn from_token(token: &[u8], head: &Bytes) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"PATCH" => Method::Patch,
            b"OPTIONS" => Method::Options,
            _ => Method::Other(head.slice_ref(token)),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // The decoder only builds `Other` from an httparse-validated token.
            Method::Other(token) => std::str::from_utf8(token).unwrap_or("?"),
            known => known.label(),
        }
    }

    /// A label from a closed set, for metrics: known methods by name, any
    /// other as `OTHER` (so clients cannot create label values).
    pub fn label(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other(_) => "OTHER",
        }
    }

    /// Methods whose requests are expected to carry a body: without a
    /// `Content-Length` or chunked coding they get `411 Length Required`.
    pub fn expects_body(&self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}

/// Header fields in arrival order, kept as offsets into the one buffer that
/// holds the message head: looking a field up borrows from that buffer,
/// and the whole set costs one reference count, not one per field.
/// Names compare case-insensitively (RFC 9110 §5.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    buf: Bytes,
    entries: Vec<Field>,
}

/// Where one field's name and value lie in `Headers::buf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

impl Headers {
    /// An empty set over `buf`, which the fields pushed next must lie in.
    pub(crate) fn with_buffer(buf: Bytes, capacity: usize) -> Headers {
        Headers { buf, entries: Vec::with_capacity(capacity) }
    }

    /// Adds a field whose name and value are sub-slices of the buffer.
    pub(crate) fn push_slices(&mut self, name: &[u8], value: &[u8]) {
        let base = self.buf.as_ptr() as usize;
        let range = |s: &[u8]| {
            let start = (s.as_ptr() as usize).wrapping_sub(base);
            if s.is_empty() {
                (0, 0)
            } else {
                (start as u32, (start + s.len()) as u32)
            }
        };
        self.entries.push(Field { name: range(name), value: range(value) });
    }

    /// Builds headers from pairs (for requests made in code, and tests).
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Headers {
        let mut buf = Vec::new();
        let mut ranges = Vec::with_capacity(pairs.len());
        for (n, v) in pairs {
            let (n, v) = (n.as_ref(), v.as_ref());
            let ns = buf.len();
            buf.extend_from_slice(n);
            let vs = buf.len();
            buf.extend_from_slice(v);
            ranges.push(Field { name: (ns as u32, vs as u32), value: (vs as u32, buf.len() as u32) });
        }
        Headers { buf: Bytes::from(buf), entries: ranges }
    }

    fn slice(&self, (start, end): (u32, u32)) -> &[u8] {
        &self.buf[start as usize..end as usize]
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    /// The first value of `name` as a zero-copy `Bytes`.
    pub fn get_bytes(&self, name: &str) -> Option<Bytes> {
        self.get(name).map(|v| self.buf.slice_ref(v))
    }

    /// The first value of `name` if it is valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().map(|f| (self.slice(f.name), self.slice(f.value)))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Everything of a request but its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The request-target exactly as sent: origin-form (`/path?query`),
    /// absolute-form (`http://authority/path?query`, RFC 9112 §3.2.2) or
    /// asterisk-form (`*`, `OPTIONS` only).
    pub target: Bytes,
    /// Where the path and query start in `target`: after the authority of
    /// an absolute-form target, else 0.
    pub(crate) origin_start: u32,
    pub version: Version,
    pub headers: Headers,
    /// Whether the connection stays open after this exchange (RFC 9112 §9.3):
    /// 1.1 unless `Connection: close`, 1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
}

impl RequestHead {
    /// The path and query of the target: all of an origin-form target,
    /// what follows the authority of an absolute-form one.
    fn origin(&self) -> &[u8] {
        self.target.get(self.origin_start as usize..).unwrap_or_default()
    }

    /// The path part of the target, without the query: `/` for an
    /// absolute-form target with an empty path (RFC 9110 §4.2.3), `*` for
    /// asterisk-form.
    pub fn path(&self) -> &[u8] {
        let origin = self.origin();
        let path = match memchr::memchr(b'?', origin) {
            Some(i) => &origin[..i],
            None => origin,
        };
        if path.is_empty() {
            b"/"
        } else {
            path
        }
    }

    /// The query part of the target, without the `?`.
    pub fn query(&self) -> &[u8] {
        let origin = self.origin();
        match memchr::memchr(b'?', origin) {
            Some(i) => &origin[i + 1..],
            None => b"",
        }
    }
}

/// A complete request: head and the whole body (de-chunked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub head: RequestHead,
    pub body: Bytes,
}

impl std::ops::Deref for Request {
    type Target = RequestHead;
    fn deref(&self) -> &RequestHead {
        &self.head
    }
}

/// What the server decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A request with `Expect: 100-continue` whose body has not arrived yet.
    /// The caller answers `100 Continue` (or a final status and closes);
    /// the same request then arrives whole as [`Inbound::Request`].
    Continue(RequestHead),
    Request(Request),
}
