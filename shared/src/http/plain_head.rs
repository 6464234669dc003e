//! A request head in the plain form clients send, read in one pass: the
//! decoder's first try for a head that arrived whole.
//!
//! The form is a strict subset of what httparse accepts and of the
//! scanner's line rules: an uppercase method, a target of visible ASCII,
//! `HTTP/1.0` or `HTTP/1.1`, and up to [`FIELDS`] fields whose names are
//! letters, digits and `-`, each followed by `:`, optional spaces and a
//! value of visible ASCII and inner spaces, every line ended by CRLF, and
//! the empty line. On such a head httparse finds the same method, target,
//! version, names and values (trimmed), and the scanner the same end.
//! Anything else, a head cut short included, is `None`: no verdict, and
//! the decoder asks httparse (and the scanner) as before. A field value is
//! read eight bytes at a time; httparse's own read costs about twice this
//! one on a usual head.

/// Fields a plain head may have; a head with more goes to httparse.
pub(crate) const FIELDS: usize = 16;

/// Where a field's name and value lie in the head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FieldSpan {
    pub name: (u32, u32),
    pub value: (u32, u32),
}

/// A plain head, as offsets into the bytes it was read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PlainHead {
    /// The method is `head[..method_end]`.
    pub method_end: usize,
    /// The request-target's range.
    pub target: (usize, usize),
    /// `HTTP/1.<minor>`.
    pub minor: u8,
    pub fields: [FieldSpan; FIELDS],
    pub count: usize,
    /// The head's length, its empty line included.
    pub len: usize,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// From `at`, the first byte below `low` or above `~` (0x7E); `buf.len()`
/// if there is none. Eight bytes at a time while eight are left: a byte
/// below `low` borrows in `x - low`, one at 0x7F carries in `x + 1`, one
/// at 0x80 or above has its high bit set; the lowest byte flagged is the
/// first such byte (a borrow or carry only flags bytes above it).
#[inline(always)]
fn visible_run(buf: &[u8], mut at: usize, low: u8) -> usize {
    while let Some(word) = buf.get(at..at + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let x = u64::from_le_bytes(w);
        let stop = (x.wrapping_sub(ONES * u64::from(low)) | x.wrapping_add(ONES) | x) & HIGH;
        if stop != 0 {
            return at + (stop.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&b) = buf.get(at) {
        if b < low || b > b'~' {
            return at;
        }
        at += 1;
    }
    at
}

/// The bytes of a field name in the plain form: letters, digits, `-`.
static NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric() || b == b'-' as usize;
        b += 1;
    }
    table
};

/// From `at`, where the first `byte` is; `None` if there is none. Eight
/// bytes at a time while eight are left (the lowest zero byte of
/// `x ^ byte` is found exactly; a borrow only flags bytes above it).
#[inline(always)]
fn find(buf: &[u8], mut at: usize, byte: u8) -> Option<usize> {
    while let Some(word) = buf.get(at..at + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let t = u64::from_le_bytes(w) ^ (ONES * u64::from(byte));
        let zero = t.wrapping_sub(ONES) & !t & HIGH;
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    buf.get(at..)?.iter().position(|&b| b == byte).map(|i| at + i)
}

/// Reads a plain head from the start of `buf` into `head` (see the module
/// doc); `false` (no verdict) if it is not one, `head` then in no useful
/// state. Written in place: the head is some 300 bytes, too many to return.
#[inline(always)]
pub(crate) fn parse(buf: &[u8], head: &mut PlainHead) -> bool {
    let Some(method_end) = buf.iter().position(|b| !b.is_ascii_uppercase()) else { return false };
    if method_end == 0 || buf[method_end] != b' ' {
        return false;
    }
    let target_start = method_end + 1;
    let target_end = visible_run(buf, target_start, b'!');
    if target_end == target_start || buf.get(target_end) != Some(&b' ') {
        return false;
    }
    let Some(version) = buf.get(target_end + 1..target_end + 11) else { return false };
    head.minor = match version {
        b"HTTP/1.1\r\n" => 1,
        b"HTTP/1.0\r\n" => 0,
        _ => return false,
    };
    head.method_end = method_end;
    head.target = (target_start, target_end);
    head.count = 0;
    let mut at = target_end + 11;
    loop {
        // A line: the empty one, or a field.
        match buf.get(at..at + 2) {
            Some(b"\r\n") => {
                head.len = at + 2;
                return true;
            }
            Some(&[b, _]) if NAME_BYTES[usize::from(b)] => {}
            _ => return false,
        }
        if head.count == FIELDS {
            return false;
        }
        let name_start = at;
        let Some(name_end) = find(buf, at, b':') else { return false };
        if !buf[name_start..name_end].iter().all(|&b| NAME_BYTES[usize::from(b)]) {
            return false;
        }
        at = name_end + 1;
        while buf.get(at) == Some(&b' ') {
            at += 1;
        }
        // The value: visible ASCII first and last, spaces only inside.
        let value_start = at;
        let value_end = visible_run(buf, value_start, b' ');
        if value_end == value_start || buf[value_end - 1] == b' ' || buf.get(value_end..value_end + 2) != Some(b"\r\n")
        {
            return false;
        }
        head.fields[head.count] =
            FieldSpan { name: (name_start as u32, name_end as u32), value: (value_start as u32, value_end as u32) };
        head.count += 1;
        at = value_end + 2;
    }
}

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;

    use super::super::head::{HeadScanner, HeadSpan};
    use super::*;

    /// A small deterministic generator (xorshift), so that a failure
    /// repeats.
    struct Gen(u64);

    impl Gen {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
            items[self.below(items.len())]
        }

        /// Up to `max` bytes from `common`; one text in eight has some
        /// bytes from `odd` too.
        fn text(&mut self, max: usize, common: &[u8], odd: &[u8]) -> Vec<u8> {
            let odd_text = self.below(8) == 0;
            (0..self.below(max + 1))
                .map(|_| {
                    if odd_text && self.below(3) == 0 {
                        odd[self.below(odd.len())]
                    } else {
                        common[self.below(common.len())]
                    }
                })
                .collect()
        }

        /// Mostly `usual`, sometimes one of `others`.
        fn mostly<'a>(&mut self, usual: &'a [u8], others: &[&'a [u8]]) -> &'a [u8] {
            if self.below(12) == 0 {
                self.pick(others)
            } else {
                usual
            }
        }
    }

    /// A head near the plain form: each part mostly plain, sometimes not
    /// (other bytes, other line ends, other spacing, too many fields, cut).
    fn near_plain(g: &mut Gen) -> Vec<u8> {
        const VISIBLE: &[u8] = b"abcXYZ019-_/?=&%.:;~!*'()+,@$";
        const ODD: &[u8] = b" \t\r\n\0\x7f\x80\xff:\"";
        let mut h = Vec::new();
        let crlf = |g: &mut Gen| g.mostly(b"\r\n", &[b"\n", b"\r", b" \r\n", b"\r\n ", b"\t\r\n"]);
        if g.below(20) == 0 {
            h.extend_from_slice(b"\r\n");
        }
        h.extend_from_slice(g.pick(&[b"GET", b"POST", b"PUT", b"OPTIONS", b"CONNECT", b"get", b"P-T", b"", b"G\xc0T"]));
        h.extend_from_slice(g.mostly(b" ", &[b"  ", b"\t", b""]));
        let target = g.text(10, VISIBLE, ODD);
        h.extend_from_slice(&target);
        h.extend_from_slice(g.mostly(b" ", &[b"  ", b"\t", b""]));
        h.extend_from_slice(g.pick(&[
            b"HTTP/1.1",
            b"HTTP/1.1",
            b"HTTP/1.0",
            b"HTTP/1.2",
            b"HTTP/2.0",
            b"http/1.1",
            b"HTTP/1.",
        ]));
        let line_end = crlf(g);
        h.extend_from_slice(line_end);
        let fields = if g.below(10) == 0 { g.below(24) } else { g.below(5) };
        for _ in 0..fields {
            if g.below(30) == 0 {
                h.extend_from_slice(g.pick(&[b" ", b"\t"]));
            }
            h.extend_from_slice(&g.text(8, b"abcHXYZ09-", b"_! \t:\x80\r"));
            h.extend_from_slice(g.mostly(b":", &[b" :", b"", b"\t:"]));
            h.extend_from_slice(g.pick(&[b" ", b" ", b"", b"  ", b"\t", b" \t"]));
            h.extend_from_slice(&g.text(10, VISIBLE, ODD));
            h.extend_from_slice(g.mostly(b"", &[b" ", b"\t", b"  "]));
            h.extend_from_slice(crlf(g));
        }
        h.extend_from_slice(crlf(g));
        h.extend_from_slice(g.pick(&[b"", b"body", b"\r\n"]));
        if g.below(10) == 0 {
            h.truncate(g.below(h.len() + 1));
        }
        h
    }

    /// Every head the plain read takes, httparse reads the same (method,
    /// target, version, each name and value, its length) and the scanner
    /// finds the same end; and enough of the generated heads are taken for
    /// that to mean something.
    #[test]
    fn the_plain_read_agrees_with_httparse_and_the_scanner() {
        let mut g = Gen(0x9E37_79B9_7F4A_7C15);
        let mut taken = 0;
        for _ in 0..100_000 {
            let buf = near_plain(&mut g);
            let mut plain = PlainHead::default();
            if !parse(&buf, &mut plain) {
                continue;
            }
            taken += 1;
            let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 100];
            let mut req = httparse::Request::new(&mut []);
            let parsed = req.parse_with_uninit_headers(&buf, &mut slots);
            let shown = String::from_utf8_lossy(&buf);
            assert_eq!(parsed, Ok(httparse::Status::Complete(plain.len)), "{shown:?}");
            assert_eq!(req.method.map(str::as_bytes), Some(&buf[..plain.method_end]), "{shown:?}");
            assert_eq!(req.path.map(str::as_bytes), Some(&buf[plain.target.0..plain.target.1]), "{shown:?}");
            assert_eq!(req.version, Some(plain.minor), "{shown:?}");
            let text = |(a, b): (u32, u32)| &buf[a as usize..b as usize];
            let ours: Vec<_> = plain.fields[..plain.count].iter().map(|f| (text(f.name), text(f.value))).collect();
            let theirs: Vec<_> = req.headers.iter().map(|h| (h.name.as_bytes(), h.value)).collect();
            assert_eq!(ours, theirs, "{shown:?}");
            let span = HeadScanner::default().scan(&buf, 1 << 16, 100);
            assert_eq!(span, Ok(Some(HeadSpan { skip: 0, len: plain.len })), "{shown:?}");
        }
        assert!(taken > 2_000, "only {taken} plain heads");
    }

    #[test]
    fn a_usual_head_is_read_whole() {
        let buf = b"POST /events HTTP/1.1\r\nHost: h:80\r\nContent-Length:  12\r\nX-A: b c\r\n\r\nbody";
        let mut head = PlainHead::default();
        assert!(parse(buf, &mut head));
        let text = |(a, b): (u32, u32)| &buf[a as usize..b as usize];
        assert_eq!(&buf[..head.method_end], b"POST");
        assert_eq!(&buf[head.target.0..head.target.1], b"/events");
        assert_eq!((head.minor, head.count, head.len), (1, 3, buf.len() - 4));
        let fields: Vec<_> = head.fields[..head.count].iter().map(|f| (text(f.name), text(f.value))).collect();
        assert_eq!(fields, [(&b"Host"[..], &b"h:80"[..]), (b"Content-Length", b"12"), (b"X-A", b"b c")]);
    }

    #[test]
    fn visible_run_stops_at_the_first_byte_outside_the_range_at_every_position() {
        for len in 0..20 {
            for at in 0..=len {
                for stop in [0u8, b'\t', b'\r', b' ', 0x7F, 0x80, 0xFF] {
                    for low in [b' ', b'!'] {
                        let mut buf = vec![b'a'; len];
                        if at < len {
                            buf[at] = stop;
                        }
                        // Bytes after the stop that would be stops too.
                        buf.extend_from_slice(&[0x7F, 0, 0xFF]);
                        let first = buf.iter().position(|&b| b < low || b > b'~').unwrap_or(buf.len());
                        assert_eq!(visible_run(&buf, 0, low), first, "len {len} at {at} stop {stop:#x} low {low:#x}");
                    }
                }
            }
        }
    }
}
