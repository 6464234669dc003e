//! Body framing for both sides of the codec (RFC 9112 §6): the
//! `Content-Length` and `Transfer-Encoding` fields of a message, collected
//! as its head is read, decide how its body is delimited; [`BodyDecoder`]
//! then reads a body so delimited. The server's request decoder and the
//! client's response decoder both go through here, so the two sides cannot
//! come to disagree about where a message ends.

use bytes::{Bytes, BytesMut};

use super::chunked::ChunkedDecoder;
use super::message::Version;
use super::HttpError;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The framing fields of one message head, collected field by field.
#[derive(Debug, Default)]
pub(crate) struct FramingFields {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked: usize,
    unknown_coding: bool,
}

impl FramingFields {
    /// A `Content-Length` field (its value without surrounding OWS).
    /// RFC 9110 §8.6: `1*DIGIT`, no sign, no spaces; a list of identical
    /// values, in one field or several, is one value; differing ones are an
    /// error.
    #[inline]
    pub fn content_length(&mut self, value: &[u8]) -> Result<(), HttpError> {
        // The usual value, one number short enough that it cannot overflow
        // (19 digits < u64::MAX): read at once, with the same outcome as the
        // list below.
        if !value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit) {
            let n = value.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
            return self.one_length(n);
        }
        for part in value.split(|&b| b == b',') {
            let n = parse_decimal(trim_ows(part))?;
            self.one_length(n)?;
        }
        Ok(())
    }

    /// One value of a `Content-Length` list: the same as any before it.
    #[inline]
    fn one_length(&mut self, n: u64) -> Result<(), HttpError> {
        if self.content_length.is_some_and(|m| m != n) {
            return Err(HttpError::ConflictingContentLength);
        }
        self.content_length = Some(n);
        Ok(())
    }

    /// A `Transfer-Encoding` field: a list of codings.
    pub fn transfer_encoding(&mut self, value: &[u8]) {
        self.transfer_encoding = true;
        for coding in value.split(|&b| b == b',').map(trim_ows).filter(|c| !c.is_empty()) {
            if coding.eq_ignore_ascii_case(b"chunked") {
                self.chunked += 1;
            } else {
                self.unknown_coding = true;
            }
        }
    }

    /// The framing the fields declare (RFC 9112 §6.1, §6.3), the same for a
    /// request and a response; `None` when neither field is present, where
    /// the side decides (a request has no body, a response runs to EOF).
    pub fn framing(&self, version: Version) -> Result<Option<Framing>, HttpError> {
        if !self.transfer_encoding {
            return Ok(self.content_length.map(Framing::Length));
        }
        // Transfer-Encoding is not defined for HTTP/1.0.
        if version == Version::Http10 {
            return Err(HttpError::TransferEncodingOnHttp10);
        }
        // Both present is how requests (and responses) are smuggled.
        if self.content_length.is_some() {
            return Err(HttpError::ContentLengthWithTransferEncoding);
        }
        // Only chunked is implemented; it must be applied once, last.
        if self.unknown_coding || self.chunked == 0 {
            return Err(HttpError::UnsupportedTransferCoding);
        }
        if self.chunked > 1 {
            return Err(HttpError::ChunkedTwice);
        }
        Ok(Some(Framing::Chunked))
    }
}

/// Reads one body, delimited one of the three ways of RFC 9112 §6.3.
#[derive(Debug)]
pub(crate) enum BodyDecoder {
    /// Bytes still to come.
    Length(usize),
    Chunked(ChunkedDecoder),
    /// A response without length: everything until the connection closes.
    UntilEof,
}

impl BodyDecoder {
    /// A decoder for `framing`, refusing a declared length over `max_body`
    /// before anything is reserved for it; `max_trailers` bounds a chunked
    /// body's trailer section.
    pub fn new(framing: Framing, max_body: usize, max_trailers: usize) -> Result<BodyDecoder, HttpError> {
        Ok(match framing {
            Framing::Length(n) if n > max_body as u64 => return Err(HttpError::BodyTooLarge),
            // Checked against max_body just above, so it fits usize.
            Framing::Length(n) => BodyDecoder::Length(n as usize),
            Framing::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new(max_body, max_trailers)),
        })
    }

    /// The whole body once it is in `buf` (consumed from it), else `None`.
    #[inline]
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, HttpError> {
        match self {
            BodyDecoder::Length(n) if buf.len() >= *n => Ok(Some(buf.split_to(*n).freeze())),
            BodyDecoder::Length(_) | BodyDecoder::UntilEof => Ok(None),
            BodyDecoder::Chunked(chunked) => chunked.decode(buf),
        }
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

/// Strips optional whitespace (SP / HTAB, RFC 9110 §5.6.3) at both ends.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn length_of(values: &[&str]) -> Result<Option<u64>, HttpError> {
        let mut fields = FramingFields::default();
        for v in values {
            fields.content_length(v.as_bytes())?;
        }
        Ok(fields.content_length)
    }

    #[test]
    fn content_length_values_at_the_edges_of_the_plain_number() {
        assert_eq!(length_of(&["0"]), Ok(Some(0)));
        assert_eq!(length_of(&["0000000000000000012"]), Ok(Some(12)));
        // 19 digits, the longest read at once; 20 go through the list parser.
        assert_eq!(length_of(&["9999999999999999999"]), Ok(Some(9_999_999_999_999_999_999)));
        assert_eq!(length_of(&["18446744073709551615"]), Ok(Some(u64::MAX)));
        assert_eq!(length_of(&["18446744073709551616"]), Err(HttpError::BodyTooLarge));
        assert_eq!(length_of(&["99999999999999999999"]), Err(HttpError::BodyTooLarge));
        assert_eq!(length_of(&[""]), Err(HttpError::InvalidContentLength));
        assert_eq!(length_of(&["+5"]), Err(HttpError::InvalidContentLength));
        assert_eq!(length_of(&["5", "5, 5"]), Ok(Some(5)));
        assert_eq!(length_of(&["5, 5", "5"]), Ok(Some(5)));
        assert_eq!(length_of(&["5", "6"]), Err(HttpError::ConflictingContentLength));
        assert_eq!(length_of(&["5, 6"]), Err(HttpError::ConflictingContentLength));
        assert_eq!(length_of(&["5", "5,6"]), Err(HttpError::ConflictingContentLength));
    }
}
