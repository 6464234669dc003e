//! `post FILE|-`: streams NDJSON events to `POST /events`.
//!
//! - Constant memory: a reader task groups non-blank lines into chunks of
//!   `--batch` lines and hands them to the workers through a bounded queue.
//! - `--connections N` workers, each keeping `--pipeline K` requests in flight
//!   on its connection: requests are fed, flushed once, and responses matched
//!   to chunks in order.
//! - Nothing acknowledged is resent and nothing unacknowledged is dropped:
//!   when a connection fails or the server answers `503`, the chunks in
//!   flight go back to the worker's retry queue and are sent again after a
//!   back-off (the server dedupes by (source, id), so a retry never doubles).
//! - A batch is all-or-nothing on the server, so when some of its lines are
//!   refused the client records those lines (number and reason) and resends
//!   the others.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use inlet_shared::http::{ClientRequest, ClientResponse};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, Mutex};
use tokio::time::{sleep, Instant};

use crate::conn::{self, Transport};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// NDJSON file to send, or `-` for standard input.
    input: String,
    /// Connections to spread the lines over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// Requests in flight on each connection.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pipeline: u32,
    /// Events per request (sent as one NDJSON body).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
    /// Attempts per request before its lines count as failed.
    #[arg(long, default_value_t = 10)]
    retries: u32,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone)]
struct Line {
    number: u64,
    text: Bytes,
}

#[derive(Debug)]
struct Chunk {
    lines: Vec<Line>,
    attempts: u32,
}

impl Chunk {
    fn request(&self) -> ClientRequest {
        let size = self.lines.iter().map(|l| l.text.len() + 1).sum();
        let mut body = BytesMut::with_capacity(size);
        for line in &self.lines {
            body.extend_from_slice(&line.text);
            body.extend_from_slice(b"\n");
        }
        ClientRequest::post("/events", "application/x-ndjson", body.freeze())
    }
}

#[derive(Debug, Default)]
struct Summary {
    accepted: u64,
    duplicates: u64,
    /// line number -> reason
    rejected: BTreeMap<u64, String>,
    /// lines never acknowledged after every retry
    failed: Vec<u64>,
    /// last transport or server error seen, for the report
    last_error: Option<String>,
}

type Shared = Arc<std::sync::Mutex<Summary>>;
type Queue = Arc<Mutex<mpsc::Receiver<Chunk>>>;

async fn read_lines(
    input: Box<dyn AsyncRead + Unpin + Send>,
    batch: usize,
    tx: mpsc::Sender<Chunk>,
) -> std::io::Result<()> {
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
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines.push(Line { number, text: Bytes::copy_from_slice(text) });
        if lines.len() == batch {
            let chunk = Chunk { lines: std::mem::replace(&mut lines, Vec::with_capacity(batch)), attempts: 0 };
            if tx.send(chunk).await.is_err() {
                return Ok(());
            }
        }
    }
    if !lines.is_empty() {
        let _ = tx.send(Chunk { lines, attempts: 0 }).await;
    }
    Ok(())
}

/// What to do with a chunk after its response.
enum Verdict {
    Done,
    Retry { after: Duration },
}

fn reason_of(e: &serde_json::Value) -> String {
    let detail = e["detail"].as_str().unwrap_or("rejected");
    match e["pointer"].as_str().or(e["header"].as_str()) {
        Some(p) => format!("{p}: {detail}"),
        None => detail.to_string(),
    }
}

/// Applies a response to its chunk; may push chunks back for another try.
fn judge(res: &ClientResponse, chunk: Chunk, retry: &mut VecDeque<Chunk>, summary: &Shared, retries: u32) -> Verdict {
    let body: serde_json::Value = serde_json::from_slice(&res.body).unwrap_or(serde_json::Value::Null);
    let Ok(mut s) = summary.lock() else { return Verdict::Done };
    match res.status {
        200..=299 => {
            s.accepted += body["accepted"].as_u64().unwrap_or(0);
            s.duplicates += body["duplicates"].as_u64().unwrap_or(0);
            Verdict::Done
        }
        400..=499 => {
            let mut by_line: BTreeMap<u64, Vec<String>> = BTreeMap::new();
            for e in body["errors"].as_array().into_iter().flatten() {
                if let Some(line) = e["line"].as_u64() {
                    by_line.entry(line).or_default().push(reason_of(e));
                }
            }
            let detail = body["detail"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {}", res.status));
            if by_line.is_empty() {
                if res.status == 413 && chunk.lines.len() > 1 {
                    // Too much in one request: split it and try the halves.
                    let mut lines = chunk.lines;
                    let second = lines.split_off(lines.len() / 2);
                    retry.push_front(Chunk { lines: second, attempts: chunk.attempts });
                    retry.push_front(Chunk { lines, attempts: chunk.attempts });
                    return Verdict::Done;
                }
                for line in &chunk.lines {
                    s.rejected.insert(line.number, detail.clone());
                }
                return Verdict::Done;
            }
            // Body line k is chunk.lines[k - 1]: blank lines were never sent.
            let mut keep = Vec::new();
            for (i, line) in chunk.lines.into_iter().enumerate() {
                match by_line.remove(&(i as u64 + 1)) {
                    Some(reasons) => {
                        s.rejected.insert(line.number, reasons.join("; "));
                    }
                    None => keep.push(line),
                }
            }
            if !keep.is_empty() {
                retry.push_front(Chunk { lines: keep, attempts: chunk.attempts });
            }
            Verdict::Done
        }
        _ => {
            let wait = res
                .headers
                .get_str("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(Duration::from_millis(500));
            s.last_error = Some(format!("HTTP {}: {}", res.status, body["detail"].as_str().unwrap_or("")));
            drop(s);
            requeue(chunk, retry, summary, retries);
            Verdict::Retry { after: wait }
        }
    }
}

/// Puts a chunk back for another attempt, or records its lines as failed.
fn requeue(mut chunk: Chunk, retry: &mut VecDeque<Chunk>, summary: &Shared, retries: u32) {
    chunk.attempts += 1;
    if chunk.attempts > retries {
        if let Ok(mut s) = summary.lock() {
            s.failed.extend(chunk.lines.iter().map(|l| l.number));
        }
    } else {
        retry.push_back(chunk);
    }
}

struct Worker {
    server: String,
    queue: Queue,
    summary: Shared,
    pipeline: usize,
    retries: u32,
}

impl Worker {
    async fn next_chunk(&self, retry: &mut VecDeque<Chunk>, input_done: &mut bool, wait: bool) -> Option<Chunk> {
        if let Some(c) = retry.pop_front() {
            return Some(c);
        }
        if *input_done {
            return None;
        }
        let mut queue = self.queue.lock().await;
        let next = if wait {
            queue.recv().await
        } else {
            match queue.try_recv() {
                Ok(c) => Some(c),
                Err(mpsc::error::TryRecvError::Empty) => return None,
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            }
        };
        if next.is_none() {
            *input_done = true;
        }
        next
    }

    fn fail(&self, chunks: impl IntoIterator<Item = Chunk>) {
        if let Ok(mut s) = self.summary.lock() {
            for c in chunks {
                s.failed.extend(c.lines.iter().map(|l| l.number));
            }
        }
    }

    fn note_error(&self, e: impl std::fmt::Display) {
        if let Ok(mut s) = self.summary.lock() {
            s.last_error = Some(e.to_string());
        }
    }

    async fn run(self) {
        let mut retry: VecDeque<Chunk> = VecDeque::new();
        let mut inflight: VecDeque<Chunk> = VecDeque::new();
        let mut conn: Option<Transport> = None;
        let mut input_done = false;
        let mut backoff = Duration::from_millis(100);
        let mut failed_connects = 0u32;
        let mut pause_until: Option<Instant> = None;

        loop {
            // Connection dropped: everything in flight goes back to be resent.
            if conn.is_none() {
                while let Some(c) = inflight.pop_back() {
                    requeue_front(c, &mut retry, &self.summary, self.retries);
                }
                if retry.is_empty() && input_done {
                    break;
                }
                if let Some(until) = pause_until.take() {
                    tokio::time::sleep_until(until).await;
                }
                match conn::connect(&self.server).await {
                    Ok(t) => {
                        conn = Some(t);
                        failed_connects = 0;
                    }
                    Err(e) => {
                        failed_connects += 1;
                        self.note_error(format!("cannot connect to {}: {e}", self.server));
                        if failed_connects > self.retries {
                            // Give up: everything this worker holds or would take fails.
                            self.fail(retry.drain(..));
                            while let Some(c) = self.next_chunk(&mut retry, &mut input_done, true).await {
                                self.fail([c]);
                            }
                            return;
                        }
                        sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            let Some(t) = conn.as_mut() else { continue };

            // Fill the window, unless a 503 asked us to pause.
            let paused = pause_until.is_some_and(|u| Instant::now() < u);
            let mut broken = false;
            while !paused && inflight.len() < self.pipeline {
                let wait = inflight.is_empty();
                let Some(chunk) = self.next_chunk(&mut retry, &mut input_done, wait).await else { break };
                if t.feed(chunk.request()).await.is_err() {
                    retry.push_front(chunk);
                    broken = true;
                    break;
                }
                inflight.push_back(chunk);
            }
            if broken || SinkExt::<ClientRequest>::flush(t).await.is_err() {
                conn = None;
                continue;
            }
            if inflight.is_empty() {
                if input_done && retry.is_empty() {
                    break;
                }
                if let Some(until) = pause_until.take() {
                    tokio::time::sleep_until(until).await;
                }
                continue;
            }

            let res = match t.next().await {
                Some(Ok(res)) => res,
                Some(Err(e)) => {
                    self.note_error(format!("connection failed: {e}"));
                    conn = None;
                    continue;
                }
                None => {
                    self.note_error("the server closed the connection");
                    conn = None;
                    continue;
                }
            };
            let Some(chunk) = inflight.pop_front() else { continue };
            backoff = Duration::from_millis(100);
            if let Verdict::Retry { after } = judge(&res, chunk, &mut retry, &self.summary, self.retries) {
                pause_until = Some(Instant::now() + after);
            }
            if res.closes() {
                conn = None;
            }
        }
    }
}

/// Like `requeue`, keeping the chunk ahead of newer work.
fn requeue_front(mut chunk: Chunk, retry: &mut VecDeque<Chunk>, summary: &Shared, retries: u32) {
    chunk.attempts += 1;
    if chunk.attempts > retries {
        if let Ok(mut s) = summary.lock() {
            s.failed.extend(chunk.lines.iter().map(|l| l.number));
        }
    } else {
        retry.push_front(chunk);
    }
}

pub async fn run(server: &str, args: Args) -> u8 {
    let input: Box<dyn AsyncRead + Unpin + Send> = if args.input == "-" {
        Box::new(tokio::io::stdin())
    } else {
        match tokio::fs::File::open(&args.input).await {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("inlet-client: cannot open {}: {e}", args.input);
                return exit::USAGE;
            }
        }
    };
    let connections = args.connections as usize;
    let pipeline = args.pipeline as usize;
    let (tx, rx) = mpsc::channel(connections * pipeline * 2);
    let queue: Queue = Arc::new(Mutex::new(rx));
    let summary: Shared = Arc::default();
    let reader = tokio::spawn(read_lines(input, args.batch as usize, tx));
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(
                Worker {
                    server: server.to_string(),
                    queue: queue.clone(),
                    summary: summary.clone(),
                    pipeline,
                    retries: args.retries,
                }
                .run(),
            )
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let read_error = match reader.await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(e.to_string()),
    };

    let s = match summary.lock() {
        Ok(mut s) => std::mem::take(&mut *s),
        Err(_) => return exit::SERVER_ERROR,
    };
    let mut failed = s.failed.clone();
    failed.sort_unstable();
    if args.json {
        let rejected: Vec<_> = s.rejected.iter().map(|(l, r)| serde_json::json!({"line": l, "reason": r})).collect();
        let out = serde_json::json!({
            "accepted": s.accepted,
            "duplicates": s.duplicates,
            "rejected": rejected,
            "failed": failed,
            "error": s.last_error.clone().or(read_error.clone()),
        });
        println!("{out}");
    } else {
        println!("accepted: {}", s.accepted);
        println!("duplicates: {}", s.duplicates);
        println!("rejected: {}", s.rejected.len());
        for (line, reason) in &s.rejected {
            println!("  line {line}: {reason}");
        }
        println!("failed: {}", failed.len());
        if !failed.is_empty() {
            let shown: Vec<String> = failed.iter().take(20).map(u64::to_string).collect();
            println!("  lines not acknowledged: {}{}", shown.join(", "), if failed.len() > 20 { ", ..." } else { "" });
        }
    }
    if let Some(e) = &read_error {
        eprintln!("inlet-client: reading {} failed: {e}", args.input);
    }
    if !failed.is_empty() || read_error.is_some() {
        if let Some(e) = &s.last_error {
            eprintln!("inlet-client: {e}");
        }
        exit::UNREACHABLE
    } else if !s.rejected.is_empty() {
        exit::REJECTED
    } else {
        exit::OK
    }
}
