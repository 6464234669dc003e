//! A blocking Server-Sent Events reader for `GET /events/stream`: raw
//! request bytes out, the chunked body decoded as it arrives, and SSE
//! fields parsed into [`SseEvent`]s, comments included.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::PATIENCE;

/// One event of the stream, or one comment line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// A `: text` line.
    Comment(String),
    /// An event: its `id`, its `event` type (`None`: the default,
    /// `message`) and its `data` lines joined with `\n`.
    Event { id: Option<u64>, kind: Option<String>, data: String },
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEnd {
    /// With the last chunk: the server ended it.
    Clean,
    /// The connection closed (or failed) without the last chunk.
    Cut(String),
}

/// An open stream: the response's status and head, then its events.
pub struct SseStream {
    stream: TcpStream,
    pub status: u16,
    /// The response head, as text.
    pub head: String,
    /// Body bytes received and not yet decoded (raw, chunked).
    raw: Vec<u8>,
    /// Decoded body bytes not yet parsed into events.
    text: Vec<u8>,
    ended: Option<SseEnd>,
}

impl SseStream {
    /// Sends `GET <target>` with the extra header lines `headers` (each
    /// `Name: value`) and reads the response head.
    pub fn open(addr: SocketAddr, target: &str, headers: &[&str]) -> SseStream {
        let stream = TcpStream::connect(addr).expect("connect");
        SseStream::open_on(stream, target, headers)
    }

    /// [`SseStream::open`] on a connected socket.
    pub fn open_on(mut stream: TcpStream, target: &str, headers: &[&str]) -> SseStream {
        stream.set_read_timeout(Some(PATIENCE)).expect("read timeout");
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: inlet\r\nAccept: text/event-stream\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).expect("send the request");
        let mut s =
            SseStream { stream, status: 0, head: String::new(), raw: Vec::new(), text: Vec::new(), ended: None };
        let end = loop {
            if let Some(at) = s.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            assert!(s.fill(), "the connection closed before the response head: {:?}", s.raw);
        };
        s.head = String::from_utf8_lossy(&s.raw[..end]).into_owned();
        s.raw.drain(..end + 4);
        s.status = s.head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status code");
        s
    }

    /// A header's value (the first), by name in any case.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The whole body of a non-streamed answer (`Content-Length`).
    pub fn body(mut self) -> String {
        let len: usize = self.header("content-length").and_then(|l| l.parse().ok()).expect("Content-Length");
        while self.raw.len() < len {
            assert!(self.fill(), "the body was cut");
        }
        String::from_utf8_lossy(&self.raw[..len]).into_owned()
    }

    /// Reads more bytes; `false` at the end of the connection (or an error).
    fn fill(&mut self) -> bool {
        let mut buf = [0u8; 64 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
            Err(e) => {
                self.ended.get_or_insert(SseEnd::Cut(e.to_string()));
                false
            }
        }
    }

    /// Decodes the complete chunks in `raw` into `text`; `true` at the last chunk.
    fn decode(&mut self) -> bool {
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else { return false };
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("a chunk size, got {size_text:?}"));
            if size == 0 {
                return true;
            }
            if self.raw.len() < line_end + 2 + size + 2 {
                return false;
            }
            let data = self.raw[line_end + 2..line_end + 2 + size].to_vec();
            assert_eq!(&self.raw[line_end + 2 + size..line_end + 4 + size], b"\r\n", "a chunk ends with CRLF");
            self.raw.drain(..line_end + 4 + size);
            self.text.extend_from_slice(&data);
        }
    }

    /// The next event or comment; `Err` with how the stream ended once it has.
    pub fn read(&mut self) -> Result<SseEvent, SseEnd> {
        loop {
            if let Some(event) = self.parse_one() {
                return Ok(event);
            }
            if let Some(end) = &self.ended {
                return Err(end.clone());
            }
            let before = self.text.len();
            if self.decode() {
                self.ended = Some(SseEnd::Clean);
                continue;
            }
            if self.text.len() > before {
                continue;
            }
            if !self.fill() {
                if self.decode() {
                    self.ended = Some(SseEnd::Clean);
                } else {
                    self.ended.get_or_insert(SseEnd::Cut("the connection closed".into()));
                }
            }
        }
    }

    /// The next event that is not a comment.
    pub fn next_event(&mut self) -> Result<(Option<u64>, Option<String>, String), SseEnd> {
        loop {
            if let SseEvent::Event { id, kind, data } = self.read()? {
                return Ok((id, kind, data));
            }
        }
    }

    /// The next `n` events (comments skipped): their ids and data as JSON.
    pub fn take(&mut self, n: usize) -> Vec<(u64, serde_json::Value)> {
        (0..n)
            .map(|i| match self.next_event() {
                Ok((Some(id), None, data)) => (id, serde_json::from_str(&data).expect("data is JSON")),
                other => panic!("event {i} of {n}: expected a message with an id, got {other:?}"),
            })
            .collect()
    }

    /// A comment, or an event ended by a blank line, from the decoded text.
    fn parse_one(&mut self) -> Option<SseEvent> {
        loop {
            let nl = self.text.iter().position(|b| *b == b'\n')?;
            if let Some(comment) = self.text.strip_prefix(b":") {
                let text = String::from_utf8_lossy(&comment[..nl - 1]).trim().to_string();
                self.text.drain(..=nl);
                // A comment is followed by a blank line here (the server
                // sends `: text\n\n`): take it too.
                if self.text.first() == Some(&b'\n') {
                    self.text.remove(0);
                }
                return Some(SseEvent::Comment(text));
            }
            let end = self.text.windows(2).position(|w| w == b"\n\n")?;
            let block = String::from_utf8_lossy(&self.text[..end]).into_owned();
            self.text.drain(..end + 2);
            let (mut id, mut kind, mut data) = (None, None, Vec::new());
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => id = Some(value.parse().unwrap_or_else(|_| panic!("an integer id, got {value:?}"))),
                    "event" => kind = Some(value.to_string()),
                    "data" => data.push(value.to_string()),
                    other => panic!("an unexpected field {other:?} in {block:?}"),
                }
            }
            if data.is_empty() && id.is_none() && kind.is_none() {
                continue;
            }
            return Some(SseEvent::Event { id, kind, data: data.join("\n") });
        }
    }

    /// Waits at most `within` for the next byte (for tests that expect none).
    pub fn set_timeout(&mut self, within: Duration) {
        self.stream.set_read_timeout(Some(within)).expect("read timeout");
    }

    /// The socket, e.g. to shut it down.
    pub fn socket(&self) -> &TcpStream {
        &self.stream
    }
}
