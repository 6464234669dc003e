//! `post`'s engine: a worker owns one connection at a time and keeps up to
//! `pipeline` requests in flight on it.
//!
//! A worker's life, one round of [`Worker::run`]'s loop:
//!
//! | step | what happens |
//! |---|---|
//! | take work | with nothing in flight: wait out a pause, then take a chunk to resend, or wait for input. An idle connection the server closes meanwhile (idle timeout) is dropped, not used. Input ended and nothing to resend: the worker is done. |
//! | connect | only now, with a chunk in hand, so the server's header timeout never runs out on a connection that has nothing to send (issue 11 §3 b). Connect failures back off; after `retries` of them everything the worker holds or would take fails. |
//! | send | feed the chunk, top the window up with chunks that are ready (never waiting), flush once. |
//! | receive | one response, matched to the oldest request in flight; [`judge`] says what it means; the worker applies it. |
//!
//! Nothing acknowledged is sent again and nothing unacknowledged is dropped:
//! when the connection fails, or a response closes it, the requests still in
//! flight are requeued; so are those answered `408`, `429` or `5xx`. Each
//! requeue is one attempt; after `retries` attempts a chunk's lines fail. A
//! `429`/`503` with `Retry-After` pauses the worker that long (plus up to
//! 20% jitter) and is not an attempt: the server is pacing, not failing; a
//! chunk paced more than [`MAX_PACED`] times fails all the same. The
//! server dedupes by (source, id), so a retry never stores twice.
//!
//! A `401`/`403`, or a TLS handshake that fails, stops every worker at once
//! (a shared [`CancellationToken`]): retrying cannot help, and the input is
//! not read further.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use inlet_shared::http::ClientRequest;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::input::{Chunk, Ended, Inbox};
use super::judge::{judge, Verdict};
use crate::compress::{self, Coding};
use crate::conn::{self, Endpoint, Transport};
use crate::exit;
use crate::retry::Jitter;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Paced retries (`429`/`503` with `Retry-After`) of one chunk before its
/// lines fail: at 1 s or more each, a server that refused a chunk this
/// often is not going to take it.
pub const MAX_PACED: u32 = 100;

/// What `post` found, over every worker.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub accepted: u64,
    pub duplicates: u64,
    /// Line number -> reason.
    pub rejected: BTreeMap<u64, String>,
    /// Lines never acknowledged after every retry.
    pub failed: Vec<u64>,
    /// Lines sent again after a request got no answer about them (a
    /// timeout, a `5xx`, a `429`/`503`, a lost connection), each time.
    pub retried: u64,
    /// The last transport or server error seen, for the report.
    pub last_error: Option<String>,
    /// Why everything stopped (`401`, `403`, TLS), if it did.
    pub stopped: Option<Stopped>,
}

/// What stopped every worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// The exit code it means.
    pub code: u8,
    pub error: String,
}

pub type Shared = Arc<Mutex<Summary>>;

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    pub endpoint: Arc<Endpoint>,
    /// Requests in flight on the connection.
    pub pipeline: usize,
    /// Attempts per chunk (and connect failures in a row) before giving up.
    pub retries: u32,
    /// Compress each request body.
    pub compress: Option<Coding>,
}

impl Settings {
    /// The chunk's request as sent: compressed, with the token.
    fn request(&self, chunk: &Chunk) -> ClientRequest {
        let plain = chunk.request();
        // Compressing into memory cannot fail short of running out of it;
        // should it, the body goes as it is (the server takes identity).
        let req = compress::apply(self.compress, plain.clone()).unwrap_or(plain);
        self.endpoint.authorize(req)
    }
}

/// One worker's state.
pub struct Worker {
    settings: Settings,
    inbox: Arc<Inbox>,
    summary: Shared,
    /// Cancelled when any worker meets a `401`, `403` or TLS failure.
    stop: CancellationToken,
    jitter: Jitter,
    conn: Option<Transport>,
    /// Sent on `conn`, not yet answered, oldest first.
    inflight: VecDeque<Chunk>,
    /// To send before new input: requeued chunks and the parts of refused ones.
    retry: VecDeque<Chunk>,
    /// The inbox said the input ended and is empty.
    input_done: bool,
    /// No new request before this (a `503`/`429` asked to wait).
    pause_until: Option<Instant>,
    backoff: Duration,
    failed_connects: u32,
}

/// What woke a worker waiting for input.
enum Woke {
    Input(Option<Chunk>),
    /// The idle connection said something (a close, a `408`): drop it.
    Connection,
}

impl Worker {
    pub fn new(settings: Settings, inbox: Arc<Inbox>, summary: Shared, stop: CancellationToken) -> Worker {
        Worker {
            settings,
            inbox,
            summary,
            stop,
            jitter: Jitter::new(),
            conn: None,
            inflight: VecDeque::new(),
            retry: VecDeque::new(),
            input_done: false,
            pause_until: None,
            backoff: FIRST_BACKOFF,
            failed_connects: 0,
        }
    }

    /// Works until the input is sent, or until any worker stops them all.
    pub async fn run(self) {
        let stop = self.stop.clone();
        tokio::select! {
            biased;
            _ = stop.cancelled() => {}
            _ = self.work() => {}
        }
    }

    async fn work(mut self) {
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            if self.inflight.is_empty() {
                let Some(chunk) = self.take_work().await else { return };
                if !self.connect().await {
                    if !self.stop.is_cancelled() {
                        self.give_up(chunk).await;
                    }
                    return;
                }
                if !self.send(chunk).await {
                    continue;
                }
            }
            self.receive().await;
        }
    }

    /// The next chunk when nothing is in flight; `None` when all is done.
    async fn take_work(&mut self) -> Option<Chunk> {
        if let Some(until) = self.pause_until.take() {
            sleep_until(until).await;
        }
        if let Some(chunk) = self.retry.pop_front() {
            return Some(chunk);
        }
        while !self.input_done {
            let woke = match self.conn.as_mut() {
                None => Woke::Input(self.inbox.recv().await),
                Some(t) => tokio::select! {
                    chunk = self.inbox.recv() => Woke::Input(chunk),
                    _ = t.next() => Woke::Connection,
                },
            };
            match woke {
                Woke::Input(Some(chunk)) => return Some(chunk),
                Woke::Input(None) => self.input_done = true,
                Woke::Connection => self.conn = None,
            }
        }
        None
    }

    /// The next chunk ready now, without waiting.
    fn ready_chunk(&mut self) -> Option<Chunk> {
        if let Some(chunk) = self.retry.pop_front() {
            return Some(chunk);
        }
        if self.input_done {
            return None;
        }
        match self.inbox.try_recv() {
            Ok(chunk) => chunk,
            Err(Ended) => {
                self.input_done = true;
                None
            }
        }
    }

    /// Makes sure there is a connection; `false` after `retries` failures in
    /// a row.
    async fn connect(&mut self) -> bool {
        while self.conn.is_none() {
            match conn::connect(&self.settings.endpoint).await {
                Ok(t) => {
                    self.conn = Some(t);
                    self.failed_connects = 0;
                }
                Err(e) if e.is_tls() => {
                    // Retrying cannot make a certificate trusted.
                    self.stop_all(e.exit_code(), e.to_string());
                    return false;
                }
                Err(e) => {
                    self.failed_connects += 1;
                    self.note_error(e.to_string());
                    if self.failed_connects > self.settings.retries {
                        return false;
                    }
                    sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        true
    }

    /// Sends `first` and whatever else is ready, up to the window; `false`
    /// when the connection failed (the chunks went back to be resent).
    async fn send(&mut self, first: Chunk) -> bool {
        let mut next = Some(first);
        while let Some(chunk) = next.take() {
            let Some(t) = self.conn.as_mut() else {
                self.retry.push_front(chunk);
                return false;
            };
            if t.feed(self.settings.request(&chunk)).await.is_err() {
                // Never sent: no attempt used.
                self.retry.push_front(chunk);
                self.connection_failed("connection failed while sending");
                return false;
            }
            self.inflight.push_back(chunk);
            if !self.paused() && self.inflight.len() < self.settings.pipeline {
                next = self.ready_chunk();
            }
        }
        let Some(t) = self.conn.as_mut() else { return false };
        if SinkExt::<ClientRequest>::flush(t).await.is_err() {
            self.connection_failed("connection failed while sending");
            return false;
        }
        true
    }

    /// Reads one response and applies it to the oldest request in flight.
    async fn receive(&mut self) {
        let Some(t) = self.conn.as_mut() else {
            self.drop_connection("no connection");
            return;
        };
        let res = match t.next().await {
            Some(Ok(res)) => res,
            Some(Err(e)) => {
                let e = conn::ExchangeError::from(e);
                if e.exit_code() == exit::TLS {
                    // The server refused the handshake (a client certificate
                    // it wants, or does not trust): not retried.
                    return self.stop_all(exit::TLS, e.to_string());
                }
                return self.connection_failed(e.to_string());
            }
            None => return self.connection_failed("the server closed the connection"),
        };
        let Some(chunk) = self.inflight.pop_front() else { return };
        self.backoff = FIRST_BACKOFF;
        let verdict = judge(&res, chunk.lines.len());
        self.apply(verdict, chunk);
        if self.stop.is_cancelled() {
            return;
        }
        if res.closes() {
            // The server said so: reconnect at once.
            self.drop_connection("the server closed the connection");
        } else if !self.inflight.is_empty() && !self.paused() {
            // Keep the window full while answers come in; with nothing in
            // flight, `take_work` decides.
            if let Some(chunk) = self.ready_chunk() {
                self.send(chunk).await;
            }
        }
    }

    fn apply(&mut self, verdict: Verdict, chunk: Chunk) {
        match verdict {
            Verdict::Stored { accepted, duplicates } => self.with_summary(|s| {
                s.accepted += accepted;
                s.duplicates += duplicates;
            }),
            Verdict::Refused { reason } => self.with_summary(|s| {
                for number in chunk.numbers() {
                    s.rejected.insert(number, reason.clone());
                }
            }),
            Verdict::RefusedLines { mut reasons } => {
                let mut keep = Vec::new();
                let mut refused = Vec::new();
                for (index, line) in chunk.lines.into_iter().enumerate() {
                    match reasons.remove(&index) {
                        Some(reason) => refused.push((line.number, reason)),
                        None => keep.push(line),
                    }
                }
                self.with_summary(|s| s.rejected.extend(refused));
                if !keep.is_empty() {
                    // Refusals are answers, not failures: no attempt used.
                    self.retry.push_front(Chunk { lines: keep, ..chunk });
                }
            }
            Verdict::Split => {
                let mut first = chunk.lines;
                let second = first.split_off(first.len() / 2);
                self.retry.push_front(Chunk { lines: second, ..chunk });
                self.retry.push_front(Chunk { lines: first, ..chunk });
            }
            Verdict::Retry { after, error, paced } => {
                self.note_error(error);
                if !after.is_zero() {
                    let until = Instant::now() + self.jitter.apply(after);
                    self.pause_until = Some(self.pause_until.map_or(until, |u| u.max(until)));
                }
                if paced {
                    self.requeue_paced(chunk);
                } else {
                    self.requeue(chunk);
                }
            }
            Verdict::Stop { status, error } => self.stop_all(exit::for_status(status), error),
        }
    }

    /// Puts a chunk the server paced (`Retry-After`) back, without using an
    /// attempt; its lines fail after [`MAX_PACED`] of these.
    fn requeue_paced(&mut self, mut chunk: Chunk) {
        chunk.paced += 1;
        if chunk.paced > MAX_PACED {
            self.with_summary(|s| s.failed.extend(chunk.numbers()));
        } else {
            self.with_summary(|s| s.retried += chunk.lines.len() as u64);
            self.retry.push_back(chunk);
        }
    }

    /// Records why and stops every worker (the first reason wins).
    fn stop_all(&mut self, code: u8, error: String) {
        self.with_summary(|s| {
            s.stopped.get_or_insert(Stopped { code, error });
        });
        self.stop.cancel();
    }

    /// Puts a chunk that got no answer about its lines back for another
    /// attempt, or records its lines as failed after the last one.
    fn requeue(&mut self, mut chunk: Chunk) {
        chunk.attempts += 1;
        if chunk.attempts > self.settings.retries {
            self.with_summary(|s| s.failed.extend(chunk.numbers()));
        } else {
            self.with_summary(|s| s.retried += chunk.lines.len() as u64);
            self.retry.push_back(chunk);
        }
    }

    fn paused(&self) -> bool {
        self.pause_until.is_some_and(|u| Instant::now() < u)
    }

    /// The connection failed under us: drop it and back off before the next.
    fn connection_failed(&mut self, why: impl Into<String>) {
        self.drop_connection(why);
        let until = Instant::now() + self.backoff;
        self.pause_until = Some(self.pause_until.map_or(until, |u| u.max(until)));
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// The connection is gone: what was in flight is requeued, oldest first.
    fn drop_connection(&mut self, why: impl Into<String>) {
        self.conn = None;
        if !self.inflight.is_empty() {
            self.note_error(why.into());
        }
        while let Some(chunk) = self.inflight.pop_front() {
            self.requeue(chunk);
        }
    }

    /// Cannot connect: everything this worker holds or would take fails.
    async fn give_up(mut self, chunk: Chunk) {
        let mut lost: Vec<u64> = chunk.numbers().collect();
        for c in self.retry.drain(..).chain(self.inflight.drain(..)) {
            lost.extend(c.numbers());
        }
        while let Some(c) = self.inbox.recv().await {
            lost.extend(c.numbers());
        }
        self.with_summary(|s| s.failed.extend(lost));
    }

    fn note_error(&self, error: impl Into<String>) {
        let error = error.into();
        self.with_summary(|s| s.last_error = Some(error));
    }

    fn with_summary(&self, f: impl FnOnce(&mut Summary)) {
        // A worker that panicked holding the lock left counts that are
        // still right: take them.
        let mut s = self.summary.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
    }
}
