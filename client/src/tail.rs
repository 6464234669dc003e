//! `tail`: follows `GET /events/stream` and prints each event's item (the
//! JSON object of an item of `GET /events`) as one line on stdout.
//!
//! The engine ([`follow`]) is apart from the printing: it connects, reads
//! the chunked body, parses Server-Sent Events, and hands each item to a
//! sink. It reconnects on its own, with backoff, resuming with
//! `Last-Event-ID` from the last event it handed on (or from where the
//! server said a live-only stream starts: `: after N`), so nothing is
//! missed or repeated across a reconnection. Refusals that retrying cannot
//! fix (`400`, `401`, `403`, `404`, `501`) end it with their exit code.
//! Ctrl-C stops it with exit code 0.

use std::io::Write;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use inlet_shared::http::{ClientCodec, ClientRequest};
use inlet_shared::problem::Problem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Encoder;

use crate::conn::{self, Endpoint};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only events of this type.
    #[arg(long = "type")]
    ty: Option<String>,
    /// Only events from this source.
    #[arg(long)]
    source: Option<String>,
    /// Only events written with the token of this name.
    #[arg(long, value_name = "NAME")]
    written_by: Option<String>,
    /// Start with every stored event (default: only events stored from now on).
    #[arg(long)]
    from_start: bool,
}

/// The first wait before reconnecting, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A response head larger than this is refused.
const MAX_HEAD: usize = 64 * 1024;
/// An SSE event (or a chunk-size line) larger than this is refused.
const MAX_EVENT: usize = 64 * 1024 * 1024;

/// What the stream starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Only events stored from now on.
    Latest,
    /// Events after this sequence number.
    After(u64),
}

/// The target of a (re)connection.
fn target(args: &Args, cursor: Cursor) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(t) = &args.ty {
        q.append_pair("type", t);
    }
    if let Some(s) = &args.source {
        q.append_pair("source", s);
    }
    if let Some(t) = &args.written_by {
        q.append_pair("token", t);
    }
    match cursor {
        Cursor::Latest => q.append_pair("after", "latest"),
        Cursor::After(n) => q.append_pair("after", &n.to_string()),
    };
    format!("/events/stream?{}", q.finish())
}

pub async fn run(ep: &Endpoint, args: Args) -> u8 {
    let start = if args.from_start { Cursor::After(0) } else { Cursor::Latest };
    let mut stdout = std::io::stdout();
    let mut print = |item: &str| {
        // A closed stdout (`| head`) ends the tail like Ctrl-C.
        writeln!(stdout, "{item}").and_then(|()| stdout.flush()).is_ok()
    };
    tokio::select! {
        code = follow(ep, &args, start, &mut print) => code,
        _ = tokio::signal::ctrl_c() => exit::OK,
    }
}

/// Why one connection of the stream ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Retry (after the backoff, or at once when `now`).
    Retry { why: String, now: bool },
    /// Stop with this exit code.
    Stop(u8),
}

/// Follows the stream from `cursor`, handing each item to `sink` (which
/// says `false` to stop); returns an exit code only when it cannot go on.
pub async fn follow(ep: &Endpoint, args: &Args, mut cursor: Cursor, sink: &mut dyn FnMut(&str) -> bool) -> u8 {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match connection(ep, args, &mut cursor, sink, &mut backoff).await {
            Ended::Stop(code) => return code,
            Ended::Retry { why, now } => {
                eprintln!("inlet-client: tail: {why}; reconnecting");
                if !now {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// One connection: request, head, then events until it ends.
async fn connection(
    ep: &Endpoint,
    args: &Args,
    cursor: &mut Cursor,
    sink: &mut dyn FnMut(&str) -> bool,
    backoff: &mut Duration,
) -> Ended {
    let mut stream = match conn::connect_stream(ep).await {
        Ok(s) => s,
        Err(e) if e.exit_code() == exit::TLS => {
            eprintln!("inlet-client: {e}");
            return Ended::Stop(exit::TLS);
        }
        Err(e) => return Ended::Retry { why: e.to_string(), now: false },
    };
    let mut req = ClientRequest::get(target(args, *cursor)).header("Accept", "text/event-stream");
    if let Cursor::After(n) = *cursor {
        req = req.header("Last-Event-ID", n.to_string());
    }
    let mut out = BytesMut::new();
    if ClientCodec::new(ep.addr.clone()).encode(ep.authorize(req), &mut out).is_err() {
        return Ended::Stop(exit::USAGE);
    }
    if let Err(e) = stream.write_all(&out).await {
        return Ended::Retry { why: format!("sending the request failed: {e}"), now: false };
    }
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let head = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.advance(end + 4);
            break head;
        }
        if buf.len() > MAX_HEAD {
            return Ended::Retry { why: "the response head is too large".into(), now: false };
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) => return Ended::Retry { why: "the server closed the connection".into(), now: false },
            Ok(_) => {}
            Err(e) => return Ended::Retry { why: format!("reading failed: {e}"), now: false },
        }
    };
    let head = Head::parse(&head);
    if head.status != 200 {
        return refused(&head, &mut stream, buf).await;
    }
    if !head.chunked {
        return Ended::Retry { why: "the stream is not chunked".into(), now: false };
    }
    let mut body = Dechunk::default();
    let mut parser = SseParser::default();
    loop {
        let ended = match body.feed(&mut buf) {
            Ok(ended) => ended,
            Err(e) => return Ended::Retry { why: e.into(), now: false },
        };
        for frame in parser.feed(&body.take()) {
            match frame {
                Frame::Event { id: Some(id), kind: None, data } => {
                    *cursor = Cursor::After(id);
                    *backoff = FIRST_BACKOFF;
                    if !sink(&data) {
                        return Ended::Stop(exit::OK);
                    }
                }
                Frame::Event { kind: Some(kind), data, .. } if kind == "lagged" => {
                    let detail = serde_json::from_str::<serde_json::Value>(&data)
                        .ok()
                        .and_then(|v| v["detail"].as_str().map(str::to_string))
                        .unwrap_or(data);
                    return Ended::Retry { why: format!("the server dropped this subscriber: {detail}"), now: true };
                }
                Frame::Event { .. } => {}
                Frame::Comment(text) => {
                    if let (Cursor::Latest, Some(n)) = (*cursor, text.strip_prefix("after ")) {
                        if let Ok(n) = n.trim().parse() {
                            *cursor = Cursor::After(n);
                        }
                    }
                }
            }
        }
        if parser.pending() > MAX_EVENT {
            return Ended::Retry { why: "an event is too large".into(), now: false };
        }
        if ended {
            return Ended::Retry { why: "the server ended the stream".into(), now: false };
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) => return Ended::Retry { why: "the server closed the connection".into(), now: false },
            Ok(_) => {}
            Err(e) => return Ended::Retry { why: format!("reading failed: {e}"), now: false },
        }
    }
}

/// A refusal: retried if it is temporary (`503`, `5xx`, `429`), else the end.
async fn refused(head: &Head, stream: &mut conn::Stream, mut buf: BytesMut) -> Ended {
    // The problem body, if it comes with a length (bounded).
    if let Some(len) = head.content_length.filter(|l| *l <= MAX_HEAD) {
        while buf.len() < len {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
    let detail = serde_json::from_slice::<Problem>(&buf).ok().map(|p| p.detail).filter(|d| !d.is_empty());
    let text = match detail {
        Some(d) => format!("HTTP {}: {d}", head.status),
        None => format!("HTTP {}", head.status),
    };
    match head.status {
        429 | 500..=599 if head.status != 501 && head.status != 505 => Ended::Retry { why: text, now: false },
        status => {
            eprintln!("inlet-client: {text}");
            Ended::Stop(exit::for_status(status))
        }
    }
}

/// The parts of a response head the tail needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct Head {
    status: u16,
    chunked: bool,
    content_length: Option<usize>,
}

impl Head {
    fn parse(text: &str) -> Head {
        let mut lines = text.split("\r\n");
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut head = Head { status, ..Head::default() };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("transfer-encoding") {
                head.chunked = value.to_ascii_lowercase().split(',').any(|c| c.trim() == "chunked");
            } else if name.eq_ignore_ascii_case("content-length") {
                head.content_length = value.parse().ok();
            }
        }
        head
    }
}

/// Undoes the chunked coding, as bytes arrive.
#[derive(Debug, Default)]
struct Dechunk {
    /// Bytes of the current chunk still to come.
    left: usize,
    /// The CRLF after a chunk's data is still to come.
    crlf: bool,
    out: Vec<u8>,
}

impl Dechunk {
    /// Decodes what `buf` holds (leaving an incomplete line in it); `true`
    /// once the last chunk came.
    fn feed(&mut self, buf: &mut BytesMut) -> Result<bool, &'static str> {
        loop {
            if self.left > 0 {
                let n = self.left.min(buf.len());
                self.out.extend_from_slice(&buf[..n]);
                buf.advance(n);
                self.left -= n;
                if self.left > 0 {
                    return Ok(false);
                }
                self.crlf = true;
            }
            if self.crlf {
                if buf.len() < 2 {
                    return Ok(false);
                }
                if &buf[..2] != b"\r\n" {
                    return Err("a chunk does not end with CRLF");
                }
                buf.advance(2);
                self.crlf = false;
            }
            let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                return if buf.len() > 1024 { Err("a chunk size line is too long") } else { Ok(false) };
            };
            let line = std::str::from_utf8(&buf[..end]).map_err(|_| "a chunk size is not text")?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| "a chunk size is not hexadecimal")?;
            buf.advance(end + 2);
            if size == 0 {
                return Ok(true);
            }
            if size > MAX_EVENT {
                return Err("a chunk is too large");
            }
            self.left = size;
        }
    }

    /// The bytes decoded so far.
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
}

/// One thing of an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    Comment(String),
    Event { id: Option<u64>, kind: Option<String>, data: String },
}

/// Parses Server-Sent Events (lines ended by LF, CRLF or CR; an event ends
/// at a blank line) as text arrives.
#[derive(Debug, Default)]
struct SseParser {
    line: Vec<u8>,
    /// A CR ended the last line: an LF right after it is part of it.
    after_cr: bool,
    id: Option<u64>,
    kind: Option<String>,
    data: Vec<String>,
    has_data: bool,
}

impl SseParser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        for &b in bytes {
            if self.after_cr && b == b'\n' {
                self.after_cr = false;
                continue;
            }
            self.after_cr = b == b'\r';
            if b == b'\n' || b == b'\r' {
                let line = std::mem::take(&mut self.line);
                if let Some(frame) = self.line_done(&String::from_utf8_lossy(&line)) {
                    frames.push(frame);
                }
            } else {
                self.line.push(b);
            }
        }
        frames
    }

    /// Bytes of the event being read (to bound it).
    fn pending(&self) -> usize {
        self.line.len() + self.data.iter().map(String::len).sum::<usize>()
    }

    fn line_done(&mut self, line: &str) -> Option<Frame> {
        if line.is_empty() {
            if !self.has_data && self.kind.is_none() {
                self.id = None;
                return None;
            }
            let frame = Frame::Event { id: self.id.take(), kind: self.kind.take(), data: self.data.join("\n") };
            self.data.clear();
            self.has_data = false;
            return Some(frame);
        }
        if let Some(comment) = line.strip_prefix(':') {
            return Some(Frame::Comment(comment.trim().to_string()));
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.id = value.parse().ok(),
            "event" => self.kind = Some(value.to_string()),
            "data" => {
                self.data.push(value.to_string());
                self.has_data = true;
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_decoded_across_reads() {
        let mut d = Dechunk::default();
        let mut buf = BytesMut::from(&b"5\r\nhel"[..]);
        assert_eq!(d.feed(&mut buf), Ok(false));
        buf.extend_from_slice(b"lo\r\n3;x=y\r\n wo\r");
        assert_eq!(d.feed(&mut buf), Ok(false));
        buf.extend_from_slice(b"\n0\r\n\r\n");
        assert_eq!(d.feed(&mut buf), Ok(true));
        assert_eq!(d.take(), b"hello wo");
        assert!(Dechunk::default().feed(&mut BytesMut::from(&b"zz\r\n"[..])).is_err());
        let mut bad_end = BytesMut::from(&b"1\r\naXY"[..]);
        assert_eq!(Dechunk::default().feed(&mut bad_end), Err("a chunk does not end with CRLF"));
    }

    #[test]
    fn events_comments_and_line_endings() {
        let mut p = SseParser::default();
        let mut frames = p.feed(b": after 7\n\nid: 8\ndata: {\"a\":\n");
        frames.extend(p.feed(b"data: 1}\n\nid: 9\r\ndata: x\r\rdata\n\nevent: lagged\ndata: {}\n\n"));
        assert_eq!(
            frames,
            vec![
                Frame::Comment("after 7".into()),
                Frame::Event { id: Some(8), kind: None, data: "{\"a\":\n1}".into() },
                Frame::Event { id: Some(9), kind: None, data: "x".into() },
                Frame::Event { id: None, kind: None, data: String::new() },
                Frame::Event { id: None, kind: Some("lagged".into()), data: "{}".into() },
            ]
        );
    }

    #[test]
    fn the_target_carries_filters_and_the_cursor() {
        let args = Args { ty: Some("a b".into()), source: Some("/s".into()), written_by: None, from_start: false };
        assert_eq!(target(&args, Cursor::Latest), "/events/stream?type=a+b&source=%2Fs&after=latest");
        assert_eq!(target(&args, Cursor::After(42)), "/events/stream?type=a+b&source=%2Fs&after=42");
    }

    #[test]
    fn heads_are_read() {
        let head = Head::parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream");
        assert_eq!(head, Head { status: 200, chunked: true, content_length: None });
        let head = Head::parse("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 12");
        assert_eq!(head, Head { status: 503, chunked: false, content_length: Some(12) });
    }
}
