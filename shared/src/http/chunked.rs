//! The chunked transfer coding (RFC 9112 §7.1) as a small explicit state
//! machine. It consumes what it has parsed from the buffer, so no byte is
//! looked at twice, and checks every size with checked arithmetic against the
//! body limit before any data of the chunk is buffered.
//!
//! Chunk extensions and trailer fields are accepted and ignored; a trailer
//! line must be a header field (`token ":" OWS value OWS`, RFC 9112 §7.1.2,
//! §5.1), so that nothing else (a pipelined request line, say) is swallowed
//! as one. Lines must end in CRLF: a bare LF anywhere is an error, because lenient chunk parsing
//! is a classic request-smuggling vector.

use bytes::{Buf, Bytes, BytesMut};

use super::HttpError;

/// Longest chunk-size line (size, extensions) accepted.
const MAX_SIZE_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of the chunk size.
    Size {
        size: u64,
        digits: u32,
    },
    /// Whitespace after the size: only `;` may follow (BWS before an extension).
    SizeWs {
        size: u64,
    },
    /// Inside chunk extensions, up to the CR.
    Ext {
        size: u64,
    },
    /// CR of the size line seen, LF expected.
    SizeLf {
        size: u64,
    },
    /// Chunk data, `remaining` bytes still to come.
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// In a trailer field's name, up to the colon.
    TrailerName,
    /// In a trailer field's value, up to the CR.
    TrailerValue,
    TrailerLf,
    /// The final CR seen, LF expected.
    EndLf,
    Done,
}

/// Decodes one chunked body, across as many calls as the bytes need.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    body: BytesMut,
    max_body: usize,
    max_trailers: usize,
    /// Bytes of the current size line, or of the whole trailer section.
    meta_len: usize,
}

impl ChunkedDecoder {
    /// `max_body` bounds the decoded body, `max_trailers` the trailer section.
    pub fn new(max_body: usize, max_trailers: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
            body: BytesMut::new(),
            max_body,
            max_trailers,
            meta_len: 0,
        }
    }

    /// Decoded body bytes so far.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// Consumes chunked bytes from `buf`. `Ok(Some(body))` once the last chunk
    /// and the trailer section are complete; bytes after it stay in `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, HttpError> {
        loop {
            match self.state {
                State::Done => return Ok(Some(std::mem::take(&mut self.body).freeze())),
                State::Data { remaining } => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    // `remaining` was checked against max_body, so it fits usize.
                    let n = buf.len().min(remaining as usize);
                    self.body.extend_from_slice(&buf[..n]);
                    buf.advance(n);
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 { State::DataCr } else { State::Data { remaining } };
                }
                _ => {
                    let Some(&byte) = buf.first() else { return Ok(None) };
                    buf.advance(1);
                    self.step(byte)?;
                }
            }
        }
    }

    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        use State::*;
        self.state = match self.state {
            Size { size, digits } => {
                self.count_size_line()?;
                match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let size = size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(hex_value(b)))
                            .ok_or(HttpError::ChunkSizeOverflow)?;
                        self.check_room(size)?;
                        Size { size, digits: digits + 1 }
                    }
                    b' ' | b'\t' if digits > 0 => SizeWs { size },
                    b';' if digits > 0 => Ext { size },
                    b'\r' if digits > 0 => SizeLf { size },
                    _ => return Err(HttpError::InvalidChunkSize),
                }
            }
            SizeWs { size } => {
                self.count_size_line()?;
                match b {
                    b' ' | b'\t' => SizeWs { size },
                    b';' => Ext { size },
                    _ => return Err(HttpError::InvalidChunkSize),
                }
            }
            Ext { size } => {
                self.count_size_line()?;
                match b {
                    b'\r' => SizeLf { size },
                    b'\t' => Ext { size },
                    c if c < 0x20 || c == 0x7f => return Err(HttpError::InvalidChunkExtension),
                    _ => Ext { size },
                }
            }
            SizeLf { size } => {
                if b != b'\n' {
                    return Err(HttpError::InvalidChunkSize);
                }
                self.meta_len = 0;
                if size == 0 {
                    TrailerStart
                } else {
                    // Grow the body buffer for this chunk, bounded so that a
                    // large declared chunk does not reserve before it arrives.
                    self.body.reserve((size as usize).min(64 * 1024));
                    Data { remaining: size }
                }
            }
            DataCr if b == b'\r' => DataLf,
            DataLf if b == b'\n' => Size { size: 0, digits: 0 },
            DataCr | DataLf => return Err(HttpError::InvalidChunkTerminator),
            TrailerStart if b == b'\r' => EndLf,
            // A name is one token or more, then the colon: no whitespace
            // (that would be obs-fold, or a space before the colon).
            TrailerStart | TrailerName if is_tchar(b) => self.trailer_byte(TrailerName)?,
            TrailerName if b == b':' => self.trailer_byte(TrailerValue)?,
            TrailerStart | TrailerName => return Err(HttpError::InvalidTrailer),
            TrailerValue => match b {
                b'\r' => TrailerLf,
                // field-vchar, SP, HTAB, obs-text: anything but other controls.
                b'\t' | b' '..=b'~' | 0x80..=0xff => self.trailer_byte(TrailerValue)?,
                _ => return Err(HttpError::InvalidTrailer),
            },
            TrailerLf if b == b'\n' => TrailerStart,
            EndLf if b == b'\n' => Done,
            TrailerLf | EndLf => return Err(HttpError::InvalidTrailer),
            Data { .. } | Done => unreachable!("handled in decode"),
        };
        Ok(())
    }

    fn count_size_line(&mut self) -> Result<(), HttpError> {
        self.meta_len += 1;
        if self.meta_len > MAX_SIZE_LINE {
            return Err(HttpError::InvalidChunkExtension);
        }
        Ok(())
    }

    fn check_room(&self, size: u64) -> Result<(), HttpError> {
        let room = (self.max_body - self.body.len()) as u64;
        if size > room {
            return Err(HttpError::BodyTooLarge);
        }
        Ok(())
    }

    /// Counts one byte of the trailer section against its limit.
    fn trailer_byte(&mut self, next: State) -> Result<State, HttpError> {
        self.meta_len += 1;
        if self.meta_len > self.max_trailers {
            return Err(HttpError::TrailersTooLarge);
        }
        Ok(next)
    }
}

/// `tchar` (RFC 9110 §5.6.2): the bytes of a token, such as a field name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn hex_value(b: u8) -> u64 {
    match b {
        b'0'..=b'9' => u64::from(b - b'0'),
        b'a'..=b'f' => u64::from(b - b'a' + 10),
        _ => u64::from(b - b'A' + 10),
    }
}
