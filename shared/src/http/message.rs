//! The request types the server decoder yields.

use bytes::Bytes;
use smallvec::SmallVec;

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
    /// Maps a method token; an unknown method is `Other` with no token
    /// yet, which the decoder fills in with a zero-copy slice of the head.
    pub(crate) fn known(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"PATCH" => Method::Patch,
            b"OPTIONS" => Method::Options,
            _ => Method::Other(Bytes::new()),
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
/// and the whole set costs one reference count, not one per field. The
/// offsets of up to `INLINE_FIELDS` fields are kept inline (no allocation
/// for a usual request); more go to the heap.
/// Names compare case-insensitively (RFC 9110 §5.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    buf: Bytes,
    entries: SmallVec<[Field; INLINE_FIELDS]>,
    /// One bit per name length among the fields (bit 63 for 63 bytes or
    /// more): a lookup of a name whose length no field has (most requests
    /// have no `Content-Encoding`, say) is answered without a field looked at.
    lengths: u64,
}

/// The bit of [`Headers::lengths`] for a name of `len` bytes.
#[inline]
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// Fields whose offsets a [`Headers`] keeps without an allocation.
const INLINE_FIELDS: usize = 8;

/// Where one field's name and value lie in `Headers::buf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

impl Headers {
    /// An empty set over `buf`, which the fields pushed next must lie in.
    pub(crate) fn with_buffer(buf: Bytes, capacity: usize) -> Headers {
        Headers { buf, entries: SmallVec::with_capacity(capacity), lengths: 0 }
    }

    /// Room for `fields` more fields (an empty set whose buffer is attached
    /// later, [`Headers::attach`], takes the fields of the head they are
    /// parsed from as offsets, [`Headers::push_in`]).
    #[inline]
    pub(crate) fn reserve(&mut self, fields: usize) {
        self.entries.reserve(fields);
    }

    /// Adds a field whose name and value are sub-slices of `head`, the
    /// bytes that [`Headers::attach`] will hand over.
    #[inline]
    pub(crate) fn push_in(&mut self, head: &[u8], name: &[u8], value: &[u8]) {
        self.push_at(head.as_ptr() as usize, name, value);
    }

    /// Hands over the head the fields were pushed from (the same bytes,
    /// now frozen).
    pub(crate) fn attach(&mut self, head: Bytes) {
        self.buf = head;
    }

    /// Adds a field whose name and value are sub-slices of the buffer.
    pub(crate) fn push_slices(&mut self, name: &[u8], value: &[u8]) {
        self.push_at(self.buf.as_ptr() as usize, name, value);
    }

    /// Adds a field from slices of the bytes starting at address `base`.
    #[inline]
    fn push_at(&mut self, base: usize, name: &[u8], value: &[u8]) {
        let range = |s: &[u8]| {
            let start = (s.as_ptr() as usize).wrapping_sub(base);
            if s.is_empty() {
                (0, 0)
            } else {
                (start as u32, (start + s.len()) as u32)
            }
        };
        self.entries.push(Field { name: range(name), value: range(value) });
        self.lengths |= length_bit(name.len());
    }

    /// Builds headers from pairs (for requests made in code, and tests).
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Headers {
        let mut buf = Vec::new();
        let mut ranges = SmallVec::with_capacity(pairs.len());
        let mut lengths = 0;
        for (n, v) in pairs {
            let (n, v) = (n.as_ref(), v.as_ref());
            lengths |= length_bit(n.len());
            let ns = buf.len();
            buf.extend_from_slice(n);
            let vs = buf.len();
            buf.extend_from_slice(v);
            ranges.push(Field { name: (ns as u32, vs as u32), value: (vs as u32, buf.len() as u32) });
        }
        Headers { buf: Bytes::from(buf), entries: ranges, lengths }
    }

    fn slice(&self, (start, end): (u32, u32)) -> &[u8] {
        &self.buf[start as usize..end as usize]
    }

    /// The fields named `name`, in order. A field's name length is compared
    /// first, from its offsets, so most fields cost no byte comparison.
    fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Field> + 'a {
        let name = name.as_bytes();
        let entries = if self.lengths & length_bit(name.len()) == 0 { &[][..] } else { &self.entries[..] };
        entries
            .iter()
            .filter(move |f| (f.name.1 - f.name.0) as usize == name.len() && same_name(self.slice(f.name), name))
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.named(name).next().map(|f| self.slice(f.value))
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
        self.named(name).map(|f| self.slice(f.value))
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

/// Whether two names of the same length are equal ignoring ASCII case
/// (exactly `eq_ignore_ascii_case`, for any bytes), eight bytes at a time.
/// A name of 8 bytes or more ends with a word that overlaps the one before
/// (comparing bytes twice is harmless), so no word is padded: a padded
/// word is a copy of a length known only at run time, a `memcpy` call.
#[inline]
fn same_name(a: &[u8], b: &[u8]) -> bool {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len();
    if n < 8 {
        return lower8(word(a)) == lower8(word(b));
    }
    let mut at = 0;
    while at + 8 < n {
        if lower8(word8(&a[at..])) != lower8(word8(&b[at..])) {
            return false;
        }
        at += 8;
    }
    lower8(word8(&a[n - 8..])) == lower8(word8(&b[n - 8..]))
}

/// Up to 8 bytes as a word, zero-padded.
#[inline]
fn word(s: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..s.len()].copy_from_slice(s);
    u64::from_le_bytes(w)
}

/// The first 8 bytes of `s` (at least 8) as a word.
#[inline]
pub(crate) fn word8(s: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[..8]);
    u64::from_le_bytes(w)
}

/// Lowercases the ASCII letters `A`-`Z` among 8 bytes and leaves every
/// other byte alone. Each byte's low 7 bits plus a constant below 0x80
/// never carries into the next byte.
#[inline]
fn lower8(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = x & !HIGH;
    let at_least_a = low7 + ONES * (0x80 - u64::from(b'A'));
    let above_z = low7 + ONES * (0x7f - u64::from(b'Z'));
    let upper = at_least_a & !above_z & !x & HIGH;
    x | (upper >> 2)
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
        let path = match query_mark(origin) {
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
        match query_mark(origin) {
            Some(i) => &origin[i + 1..],
            None => b"",
        }
    }
}

/// Where the `?` that starts the query is in an origin-form target: a
/// byte loop for a short target (a call of `memchr` costs more there),
/// `memchr` for a longer one.
#[inline]
fn query_mark(origin: &[u8]) -> Option<usize> {
    if origin.len() <= 32 {
        origin.iter().position(|&b| b == b'?')
    } else {
        memchr::memchr(b'?', origin)
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

/// [`Inbound`] boxed, as [`ServerCodec::decode_boxed`](super::ServerCodec::decode_boxed)
/// yields it: the request is boxed where the decoder builds it, so that
/// handing it on (out of the decoder, out of `Framed`, to a handler) moves
/// a pointer, not the request (some 180 bytes, a copy at every step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoxedInbound {
    Continue(Box<RequestHead>),
    Request(Box<Request>),
}

impl From<BoxedInbound> for Inbound {
    fn from(inbound: BoxedInbound) -> Inbound {
        match inbound {
            BoxedInbound::Continue(head) => Inbound::Continue(*head),
            BoxedInbound::Request(req) => Inbound::Request(*req),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{same_name, Headers};

    #[test]
    fn names_compare_like_eq_ignore_ascii_case_for_every_byte() {
        // Every byte value at every position of a 13-byte name (both the
        // 8-byte word and the padded tail), against each case of the name.
        let base = *b"content-type1";
        for variant in [*b"content-type1", *b"CONTENT-TYPE1", *b"Content-Type1"] {
            let mut name = variant;
            for i in 0..name.len() {
                for b in 0..=255u8 {
                    name[i] = b;
                    assert_eq!(same_name(&name, &base), name.eq_ignore_ascii_case(&base), "byte {i} = {b:#x}");
                    assert_eq!(same_name(&base, &name), base.eq_ignore_ascii_case(&name), "byte {i} = {b:#x}");
                }
                name[i] = variant[i];
            }
        }
        // Names of every length up to 24 (no word, whole words, an
        // overlapping last word), a byte changed at every position.
        for len in 0..=24 {
            let base: Vec<u8> = b"Content-Type-And-More-Xy"[..len].to_vec();
            for i in 0..len {
                for b in [b'a', b'A', b'-', b'@', b'[', b'`', b'{', 0x80, 0xC1, 0xFF] {
                    let mut name = base.to_ascii_uppercase();
                    name[i] = b;
                    assert_eq!(
                        same_name(&name, &base),
                        name.eq_ignore_ascii_case(&base),
                        "len {len} byte {i} = {b:#x}"
                    );
                    assert_eq!(
                        same_name(&base, &name),
                        base.eq_ignore_ascii_case(&name),
                        "len {len} byte {i} = {b:#x}"
                    );
                }
            }
            assert!(same_name(&base.to_ascii_lowercase(), &base), "len {len}");
        }
        // Every pair of bytes, one position.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(same_name(&[a], &[b]), a.eq_ignore_ascii_case(&b), "{a:#x} {b:#x}");
            }
        }
        assert!(same_name(b"", b""));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// A lookup finds what a scan of every field finds, whatever the
        /// lengths of the names (over 63 bytes sharing one bit): built from
        /// pairs and pushed as slices of a buffer.
        #[test]
        fn lookups_agree_with_a_scan_of_every_field(
            names in proptest::collection::vec("[aB-]{0,3}(x{0,70}|X{60,70})", 0..12),
            asked in proptest::collection::vec("[aB-]{0,3}(x{0,70}|X{60,70})", 1..6),
        ) {
            let pairs: Vec<(String, String)> = names.iter().enumerate().map(|(i, n)| (n.clone(), i.to_string())).collect();
            let from_pairs = Headers::from_pairs(&pairs);
            let mut pushed = Headers::with_buffer(from_pairs.buf.clone(), 0);
            for (name, value) in from_pairs.iter() {
                pushed.push_slices(name, value);
            }
            for headers in [&from_pairs, &pushed] {
                for name in asked.iter().chain(&names) {
                    let scan: Vec<&[u8]> =
                        headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v).collect();
                    proptest::prop_assert_eq!(headers.get_all(name).collect::<Vec<_>>(), scan.clone(), "{:?} in {:?}", name, names);
                    proptest::prop_assert_eq!(headers.get(name), scan.first().copied());
                }
            }
        }
    }

    #[test]
    fn lookups_find_the_first_field_of_a_name_in_any_case() {
        let headers = Headers::from_pairs(&[
            ("Content-Type", "a"),
            ("content-length", "1"),
            ("CONTENT-TYPE", "b"),
            ("Content-Typf", "c"),
            ("X-Long-Header-Name-Over-Eight", "d"),
        ]);
        assert_eq!(headers.get("content-type"), Some(&b"a"[..]));
        assert_eq!(headers.get_all("Content-type").collect::<Vec<_>>(), [&b"a"[..], &b"b"[..]]);
        assert_eq!(headers.get("x-long-header-name-over-eight"), Some(&b"d"[..]));
        assert_eq!(headers.get("x-long-header-name-over-eighT"), Some(&b"d"[..]));
        assert_eq!(headers.get("x-long-header-name-over-eigh"), None);
        assert_eq!(headers.get("content-typ"), None);
        assert_eq!(headers.get_all("content-encoding").count(), 0);
    }

    #[test]
    fn fields_on_both_sides_of_the_inline_bound_are_all_kept_in_order() {
        use tokio_util::codec::Decoder;

        use super::{Inbound, INLINE_FIELDS};
        use crate::http::{Limits, ServerCodec};

        for n in [0, 1, INLINE_FIELDS - 2, INLINE_FIELDS - 1, INLINE_FIELDS, INLINE_FIELDS + 1, 40, 99] {
            // `Host` and `n` more fields: decoded as a head...
            let mut head = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
            for i in 0..n {
                head.push_str(&format!("X-F{i}: v{i}\r\n"));
            }
            head.push_str("\r\n");
            let mut buf = bytes::BytesMut::from(head.as_bytes());
            let Ok(Some(Inbound::Request(req))) = ServerCodec::new(Limits::default()).decode(&mut buf) else {
                panic!("{n} fields: no request");
            };
            // ...and built from pairs.
            let pairs: Vec<(String, String)> = (0..n).map(|i| (format!("X-F{i}"), format!("v{i}"))).collect();
            let built = Headers::from_pairs(&pairs);
            assert_eq!((req.headers.len(), built.len()), (n + 1, n), "{n} fields");
            let decoded: Vec<(&[u8], &[u8])> = req.headers.iter().skip(1).collect();
            let expected: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())).collect();
            assert_eq!(decoded, expected, "{n} fields");
            assert_eq!(built.iter().collect::<Vec<_>>(), expected, "{n} fields");
            for (k, v) in &pairs {
                assert_eq!(req.headers.get(k), Some(v.as_bytes()), "{n} fields");
                assert_eq!(built.get(k), Some(v.as_bytes()), "{n} fields");
            }
            assert_eq!(req.headers.get("host"), Some(&b"h"[..]));
        }
    }

    #[test]
    fn the_query_mark_is_where_memchr_finds_it_at_every_length_and_position() {
        for len in 0..80 {
            let mut target = vec![b'a'; len];
            assert_eq!(super::query_mark(&target), None, "{len}");
            for at in 0..len {
                target[at] = b'?';
                assert_eq!(super::query_mark(&target), memchr::memchr(b'?', &target), "{len} {at}");
                // A second mark later: the first one counts.
                if at + 2 < len {
                    target[at + 2] = b'?';
                    assert_eq!(super::query_mark(&target), Some(at), "{len} {at}");
                    target[at + 2] = b'a';
                }
                target[at] = b'a';
            }
        }
    }
}
