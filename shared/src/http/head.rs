//! Finds the end of a message head (request or status line plus header
//! section) in a growing buffer, keeping its place between calls so a head
//! that arrives one byte at a time is scanned once, not once per byte.
//!
//! It also enforces the limits that can be decided line by line: CRLF line
//! endings, no obsolete line folding, head size and header count.

use super::HttpError;

/// Where the head lies in the buffer once it is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadSpan {
    /// Empty lines received before the start line (RFC 9112 §2.2 says to
    /// ignore at least one); the caller discards them.
    pub skip: usize,
    /// Length of the head after `skip`, including the final empty line.
    pub len: usize,
}

#[derive(Debug, Default)]
pub(crate) struct HeadScanner {
    /// Bytes of the buffer already looked at.
    scanned: usize,
    /// Offset of the first byte of the start line (after leading CRLFs).
    start: usize,
    /// Offset of the line being read.
    line_start: usize,
    /// Complete lines so far, the start line included.
    lines: usize,
}

impl HeadScanner {
    /// Whether any byte of a head has been seen.
    pub fn is_fresh(&self) -> bool {
        self.scanned == 0
    }

    /// Looks at the bytes not yet scanned. `Ok(None)`: the head is not
    /// complete yet. `max_bytes` bounds the head, leading empty lines
    /// included; `max_fields` bounds the header field lines.
    pub fn scan(&mut self, buf: &[u8], max_bytes: usize, max_fields: usize) -> Result<Option<HeadSpan>, HttpError> {
        while let Some(pos) = memchr::memchr(b'\n', &buf[self.scanned..]) {
            let lf = self.scanned + pos;
            self.scanned = lf + 1;
            // The limit first: a head that arrives in pieces has passed it
            // before a line beyond it can be judged, and the verdict must
            // not depend on how the bytes arrived.
            if lf + 1 > max_bytes {
                return Err(self.over_limit());
            }
            // RFC 9112 §2.2 allows a recipient to accept a bare LF; we do not,
            // so that no two parsers on the path can disagree on line ends.
            if lf == self.line_start || buf[lf - 1] != b'\r' {
                return Err(HttpError::BareLf);
            }
            let line = &buf[self.line_start..lf - 1];
            if self.lines == 0 {
                if line.is_empty() {
                    self.start = lf + 1;
                } else {
                    self.lines = 1;
                }
            } else if line.is_empty() {
                let span = HeadSpan { skip: self.start, len: lf + 1 - self.start };
                *self = HeadScanner::default();
                return Ok(Some(span));
            } else {
                // RFC 9112 §5.2: obs-fold in a request is rejected with 400.
                if line[0] == b' ' || line[0] == b'\t' {
                    return Err(HttpError::ObsoleteLineFolding);
                }
                self.lines += 1;
                if self.lines - 1 > max_fields {
                    return Err(HttpError::TooManyHeaders);
                }
            }
            self.line_start = lf + 1;
        }
        self.scanned = buf.len();
        if buf.len() > max_bytes {
            return Err(self.over_limit());
        }
        Ok(None)
    }

    /// RFC 9112 §3: a request-target longer than the server accepts is 414,
    /// any other oversized head is 431 (RFC 6585 §5).
    fn over_limit(&self) -> HttpError {
        if self.lines == 0 {
            HttpError::UriTooLong
        } else {
            HttpError::HeadTooLarge
        }
    }
}
