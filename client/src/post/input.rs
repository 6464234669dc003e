//! The input side of `post`: lines read from the file into chunks, and the
//! inbox the workers take chunks from.
//!
//! The inbox is a bounded queue many workers can wait on at once: a worker
//! waiting for input holds no lock, so it never stops another worker from
//! taking a chunk or from going on with its own requests (issue 11 §3 c).
//! Two semaphores count the chunks queued and the free places; the chunks
//! themselves sit in a `VecDeque` behind a lock that is never held across an
//! `.await`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use inlet_shared::http::ClientRequest;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{Semaphore, TryAcquireError};

/// One non-blank input line and where it was in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based, counting every line of the input, blank ones too.
    pub number: u64,
    pub text: Bytes,
}

/// The lines of one request and how often they were tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub lines: Vec<Line>,
    /// Tries that ended without an answer about the lines (connection lost,
    /// `408`, `5xx`, `429`/`503` without `Retry-After`); bounded by `--retries`.
    pub attempts: u32,
    /// Tries answered `429`/`503` with `Retry-After`: the server is pacing
    /// us, so these do not use up `--retries`; bounded by `MAX_PACED`.
    pub paced: u32,
}

impl Chunk {
    pub fn new(lines: Vec<Line>) -> Chunk {
        Chunk { lines, attempts: 0, paced: 0 }
    }

    /// The chunk as one NDJSON `POST /events`.
    pub fn request(&self) -> ClientRequest {
        let size = self.lines.iter().map(|l| l.text.len() + 1).sum();
        let mut body = BytesMut::with_capacity(size);
        for line in &self.lines {
            body.extend_from_slice(&line.text);
            body.extend_from_slice(b"\n");
        }
        ClientRequest::post("/events", "application/x-ndjson", body.freeze())
    }

    /// The line numbers, for the lines that fail.
    pub fn numbers(&self) -> impl Iterator<Item = u64> + '_ {
        self.lines.iter().map(|l| l.number)
    }
}

/// A bounded queue of chunks with one producer and many consumers.
#[derive(Debug)]
pub struct Inbox {
    chunks: Mutex<VecDeque<Chunk>>,
    /// One permit per queued chunk; closed when the input ends.
    queued: Semaphore,
    /// One permit per free place.
    free: Semaphore,
    /// Lines read from the input and handed to the queue so far (blank
    /// ones are skipped, not counted): the progress bar's "read".
    read: AtomicU64,
}

impl Inbox {
    pub fn new(capacity: usize) -> Inbox {
        Inbox {
            chunks: Mutex::new(VecDeque::new()),
            queued: Semaphore::new(0),
            free: Semaphore::new(capacity.max(1)),
            read: AtomicU64::new(0),
        }
    }

    /// Lines read so far.
    pub fn lines_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Queues a chunk, waiting for a free place.
    pub async fn push(&self, chunk: Chunk) {
        self.read.fetch_add(chunk.lines.len() as u64, Ordering::Relaxed);
        if let Ok(permit) = self.free.acquire().await {
            permit.forget();
        }
        if let Ok(mut chunks) = self.chunks.lock() {
            chunks.push_back(chunk);
        }
        self.queued.add_permits(1);
    }

    /// No more chunks will come; waiting consumers get what is left, then
    /// `None`.
    pub fn close(&self) {
        self.queued.close();
    }

    /// The next chunk, waiting for one; `None` once the input ended and
    /// everything was taken. Cancel-safe: a cancelled wait takes nothing.
    pub async fn recv(&self) -> Option<Chunk> {
        match self.queued.acquire().await {
            Ok(permit) => permit.forget(),
            // Closed: no more pushes; take what is left, if anything.
            Err(_) => return self.pop(),
        }
        self.pop()
    }

    /// The next chunk if one is queued now. `Ok(None)`: none yet;
    /// `Err(Ended)`: the input ended and everything was taken.
    pub fn try_recv(&self) -> Result<Option<Chunk>, Ended> {
        match self.queued.try_acquire() {
            Ok(permit) => {
                permit.forget();
                Ok(self.pop())
            }
            Err(TryAcquireError::NoPermits) => Ok(None),
            Err(TryAcquireError::Closed) => self.pop().map(Some).ok_or(Ended),
        }
    }

    fn pop(&self) -> Option<Chunk> {
        let chunk = self.chunks.lock().ok()?.pop_front();
        if chunk.is_some() {
            self.free.add_permits(1);
        }
        chunk
    }
}

/// The input ended and every chunk was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended;

/// Reads `input`, groups its non-blank lines into chunks of `batch` lines and
/// queues them; closes the inbox at the end, on error too.
pub async fn read_lines(input: impl AsyncRead + Unpin, batch: usize, inbox: &Inbox) -> std::io::Result<()> {
    let result = read_into(input, batch, inbox).await;
    inbox.close();
    result
}

async fn read_into(input: impl AsyncRead + Unpin, batch: usize, inbox: &Inbox) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut number = 0u64;
    let mut lines = Vec::with_capacity(batch);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).await? == 0 {
            break;
        }
        number += 1;
        let mut text = &buf[..];
        if let Some(t) = text.strip_suffix(b"\n") {
            text = t;
        }
        if let Some(t) = text.strip_suffix(b"\r") {
            text = t;
        }
        if inlet_shared::event::is_blank_line(text) {
            continue;
        }
        lines.push(Line { number, text: Bytes::copy_from_slice(text) });
        if lines.len() == batch {
            inbox.push(Chunk::new(std::mem::replace(&mut lines, Vec::with_capacity(batch)))).await;
        }
    }
    if !lines.is_empty() {
        inbox.push(Chunk::new(lines)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(chunk: &Chunk) -> Vec<u64> {
        chunk.numbers().collect()
    }

    #[tokio::test]
    async fn lines_are_numbered_blank_ones_skipped_and_grouped() {
        let inbox = Inbox::new(8);
        let input: &[u8] = b"a\n\n  \nb\r\nc\nd";
        read_lines(input, 2, &inbox).await.unwrap();
        let first = inbox.recv().await.unwrap();
        assert_eq!(numbers(&first), [1, 4]);
        assert_eq!(first.lines[1].text, Bytes::from_static(b"b"));
        assert_eq!(numbers(&inbox.recv().await.unwrap()), [5, 6]);
        assert_eq!(inbox.recv().await, None);
        assert_eq!(inbox.try_recv(), Err(Ended));
        assert_eq!(first.request().body, Bytes::from_static(b"a\nb\n"));
    }

    #[tokio::test]
    async fn only_json_whitespace_makes_a_line_blank() {
        // A form feed (or NBSP) line is sent, as the server refuses it at
        // its line; skipping it here would hide the error.
        let inbox = Inbox::new(8);
        let input: &[u8] = "a\n \t\n\x0c\n\u{a0}\nb".as_bytes();
        read_lines(input, 8, &inbox).await.unwrap();
        let chunk = inbox.recv().await.unwrap();
        assert_eq!(numbers(&chunk), [1, 3, 4, 5]);
        assert_eq!(chunk.lines[1].text, Bytes::from_static(b"\x0c"));
    }

    #[tokio::test]
    async fn chunks_left_at_close_are_still_taken() {
        let inbox = Inbox::new(4);
        inbox.push(Chunk::new(Vec::new())).await;
        inbox.push(Chunk::new(Vec::new())).await;
        assert_eq!(inbox.try_recv().map(|c| c.is_some()), Ok(true));
        inbox.close();
        assert!(inbox.recv().await.is_some());
        assert_eq!(inbox.try_recv(), Err(Ended));
        assert_eq!(inbox.recv().await, None);
    }

    #[tokio::test]
    async fn an_empty_open_inbox_says_not_yet() {
        let inbox = Inbox::new(1);
        assert_eq!(inbox.try_recv(), Ok(None));
    }

    #[tokio::test(start_paused = true)]
    async fn many_consumers_wait_at_once_and_each_gets_one_chunk() {
        let inbox = std::sync::Arc::new(Inbox::new(4));
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let inbox = inbox.clone();
                tokio::spawn(async move { inbox.recv().await })
            })
            .collect();
        tokio::task::yield_now().await;
        // A wait that is given up takes nothing.
        assert!(tokio::time::timeout(Duration::from_millis(1), inbox.recv()).await.is_err());
        for n in 1..=3 {
            inbox.push(Chunk::new(vec![Line { number: n, text: Bytes::new() }])).await;
        }
        let mut got = Vec::new();
        for w in waiting {
            got.extend(numbers(&w.await.unwrap().unwrap()));
        }
        got.sort_unstable();
        assert_eq!(got, [1, 2, 3]);
        inbox.close();
        assert_eq!(inbox.recv().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn push_waits_for_a_free_place() {
        let inbox = Inbox::new(1);
        inbox.push(Chunk::new(Vec::new())).await;
        assert!(tokio::time::timeout(Duration::from_millis(10), inbox.push(Chunk::new(Vec::new()))).await.is_err());
        assert!(inbox.recv().await.is_some());
        assert!(tokio::time::timeout(Duration::from_millis(10), inbox.push(Chunk::new(Vec::new()))).await.is_ok());
    }

    use std::time::Duration;
}
