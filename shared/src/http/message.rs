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
    /// Maps a method token; `token` is a zero-copy slice kept for unknown methods.
    pub(crate) fn from_token(token: Bytes) -> Method {
        match &token[..] {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"PATCH" => Method::Patch,
            b"OPTIONS" => Method::Options,
            _ => Method::Other(token),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            // The decoder only builds `Other` from an httparse-validated token.
            Method::Other(token) => std::str::from_utf8(token).unwrap_or("?"),
        }
    }

    /// Methods whose requests are expected to carry a body: without a
    /// `Content-Length` or chunked coding they get `411 Length Required`.
    pub fn expects_body(&self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}

/// Header fields in arrival order. Names and values are zero-copy slices of
/// the request head; names compare case-insensitively (RFC 9110 §5.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(Bytes, Bytes)>,
}

impl Headers {
    pub fn with_capacity(n: usize) -> Headers {
        Headers { entries: Vec::with_capacity(n) }
    }

    pub fn push(&mut self, name: Bytes, value: Bytes) {
        self.entries.push((name, value));
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.entries.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    /// The first value of `name` if it is valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.entries.iter().map(|(n, v)| (n, v))
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
    /// The request-target exactly as sent (origin-form: path and query).
    pub target: Bytes,
    pub version: Version,
    pub headers: Headers,
    /// Whether the connection stays open after this exchange (RFC 9112 §9.3):
    /// 1.1 unless `Connection: close`, 1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
}

impl RequestHead {
    /// The path part of the target, without the query.
    pub fn path(&self) -> &[u8] {
        match self.target.iter().position(|&b| b == b'?') {
            Some(i) => &self.target[..i],
            None => &self.target[..],
        }
    }

    /// The query part of the target, without the `?`.
    pub fn query(&self) -> &[u8] {
        match self.target.iter().position(|&b| b == b'?') {
            Some(i) => &self.target[i + 1..],
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
