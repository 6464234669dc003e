//! The request-target (RFC 9112 §3.2) and the `Host` field (RFC 9112 §3.2,
//! RFC 3986 §3.2.2): which form a target has, where its path starts, and
//! whether it and a `Host` value are made only of the bytes the grammar
//! allows.

use super::message::Method;
use super::HttpError;

/// Byte classes of RFC 3986, one bit each, in a table indexed by byte.
const UNRESERVED: u8 = 1; // ALPHA DIGIT - . _ ~
const SUB_DELIM: u8 = 2; // ! $ & ' ( ) * + , ; =
const PATH: u8 = 4; // : @ / ? (beyond unreserved and sub-delims, in path and query)
const HEX: u8 = 8;

const fn class_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut class = 0;
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            class |= UNRESERVED;
        }
        if matches!(c, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=') {
            class |= SUB_DELIM;
        }
        if matches!(c, b':' | b'@' | b'/' | b'?') {
            class |= PATH;
        }
        if c.is_ascii_hexdigit() {
            class |= HEX;
        }
        t[b] = class;
        b += 1;
    }
    t
}

static CLASS: [u8; 256] = class_table();

/// 1 for the bytes of `class`, else 0.
const fn member_table(class: u8) -> [u8; 256] {
    let classes = class_table();
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (classes[b] & class != 0) as u8;
        b += 1;
    }
    t
}

/// Bytes of a path and query, `%` aside (RFC 3986 §3.3-3.4).
static TARGET_BYTES: [u8; 256] = member_table(UNRESERVED | SUB_DELIM | PATH);
/// Bytes of a reg-name or IPv4address, `%` aside (RFC 3986 §3.2.2).
static HOST_BYTES: [u8; 256] = member_table(UNRESERVED | SUB_DELIM);

#[inline]
fn is(b: u8, class: u8) -> bool {
    CLASS[b as usize] & class != 0
}

/// The length of the longest prefix of `s` made of the bytes `members`
/// marks and well-formed `%XX` escapes.
#[inline]
fn span(s: &[u8], members: &[u8; 256]) -> usize {
    // The common case, all members and no escape: one pass, no branch per byte.
    if s.iter().fold(1, |all, &b| all & members[b as usize]) == 1 {
        return s.len();
    }
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if members[b as usize] != 0 {
            i += 1;
        } else if b == b'%' && s.get(i + 1..i + 3).is_some_and(|h| is(h[0], HEX) && is(h[1], HEX)) {
            i += 3;
        } else {
            break;
        }
    }
    i
}

/// Whether `s` is made of the bytes `members` marks and well-formed `%XX`
/// escapes.
#[inline]
fn all_of(s: &[u8], members: &[u8; 256]) -> bool {
    span(s, members) == s.len()
}

/// Checks a request-target and returns where its origin part (path and
/// query) starts in it: 0 for origin-form (`/path?query`) and
/// asterisk-form (`*`, `OPTIONS` only), the end of the authority for
/// absolute-form (`http://authority/path?query`, RFC 9112 §3.2.2).
/// Authority-form (`host:port`) is only for `CONNECT`, which the caller
/// refuses before this.
pub(crate) fn origin_start(target: &[u8], method: &Method) -> Result<usize, HttpError> {
    match target.first() {
        Some(b'/') => {
            if all_of(target, &TARGET_BYTES) {
                Ok(0)
            } else {
                Err(HttpError::InvalidRequestTarget)
            }
        }
        Some(b'*') if target.len() == 1 && *method == Method::Options => Ok(0),
        _ => absolute_form(target),
    }
}

/// `scheme "://" authority path-abempty [ "?" query ]`, scheme `http` or
/// `https` (any case), the authority a non-empty host with an optional port
/// and no userinfo (RFC 9110 §4.2.1, §4.2.4).
fn absolute_form(target: &[u8]) -> Result<usize, HttpError> {
    let rest = if target.len() > 7 && target[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else if target.len() > 8 && target[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else {
        return Err(HttpError::InvalidRequestTarget);
    };
    let end = target[rest..].iter().position(|&b| b == b'/' || b == b'?').map_or(target.len(), |i| rest + i);
    let authority = &target[rest..end];
    if authority.is_empty() || authority[0] == b':' || !is_host_port(authority) {
        return Err(HttpError::InvalidRequestTarget);
    }
    if !all_of(&target[end..], &TARGET_BYTES) {
        return Err(HttpError::InvalidRequestTarget);
    }
    Ok(end)
}

/// `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986 §3.2.2-3): an
/// IP-literal in brackets, or a reg-name / IPv4 address; the port digits
/// only. An empty value is valid (the empty reg-name).
pub(crate) fn is_host_port(value: &[u8]) -> bool {
    let host_end = if value.first() == Some(&b'[') {
        let Some(close) = value.iter().position(|&b| b == b']') else { return false };
        let inner = &value[1..close];
        // IPv6address or IPvFuture: checked by their alphabet, not their shape.
        if inner.is_empty() || !inner.iter().all(|&b| is(b, UNRESERVED | SUB_DELIM) || b == b':') {
            return false;
        }
        close + 1
    } else {
        // reg-name or IPv4address: up to the port's colon, if any.
        span(value, &HOST_BYTES)
    };
    match &value[host_end..] {
        [] => true,
        [b':', port @ ..] => port.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// Whether the bytes of a request received so far are of a `HEAD` request:
/// after any empty lines, the method token `HEAD` followed by a space or by
/// nothing yet. Methods are case-sensitive (RFC 9110 §9.1).
pub(crate) fn starts_head(mut bytes: &[u8]) -> bool {
    while let [b'\r', b'\n', rest @ ..] = bytes {
        bytes = rest;
    }
    matches!(bytes, [b'H', b'E', b'A', b'D'] | [b'H', b'E', b'A', b'D', b' ', ..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_head_reads_the_method_of_a_partial_request_line() {
        for yes in [&b"HEAD"[..], b"HEAD ", b"HEAD /x HTTP/1.1\r\n", b"\r\n\r\nHEAD /"] {
            assert!(starts_head(yes), "{yes:?}");
        }
        for no in [&b""[..], b"H", b"HEA", b"HEADX", b"head /", b"GET /", b" HEAD /", b"\nHEAD /"] {
            assert!(!starts_head(no), "{no:?}");
        }
    }

    #[test]
    fn origin_start_of_each_form() {
        assert_eq!(origin_start(b"/a?b", &Method::Get), Ok(0));
        assert_eq!(origin_start(b"http://h:1/a?b", &Method::Get), Ok(10));
        assert_eq!(origin_start(b"https://h?b", &Method::Get), Ok(9));
        assert_eq!(origin_start(b"*", &Method::Options), Ok(0));
        assert_eq!(origin_start(b"*", &Method::Get), Err(HttpError::InvalidRequestTarget));
        assert_eq!(origin_start(b"/a%2", &Method::Get), Err(HttpError::InvalidRequestTarget));
        assert_eq!(origin_start(b"/a%2g", &Method::Get), Err(HttpError::InvalidRequestTarget));
        assert_eq!(origin_start(b"/a%2F%20", &Method::Get), Ok(0));
    }

    #[test]
    fn span_stops_at_the_first_byte_not_allowed() {
        assert_eq!(span(b"abc:80", &HOST_BYTES), 3);
        assert_eq!(span(b"a%41b c", &HOST_BYTES), 5);
        assert_eq!(span(b"a%4", &HOST_BYTES), 1);
        assert_eq!(span(b"", &HOST_BYTES), 0);
    }
}
