//! `GET /events/stream`: stored events, then new ones as they are stored,
//! as Server-Sent Events (see docs/live.md).
//!
//! Each subscriber is a task that reads the store from its cursor (the
//! `seq` of the last event it sent) in pages, writes them into its body,
//! and waits for the store's notification ([`crate::store::Live`]) when it
//! has caught up (published at most every [`crate::store::live::COALESCE`],
//! so under load one read and one write carry every event of an interval).
//! Events always come from the store, so a subscriber sees every event in
//! `seq` order with no gap and no repeat, and ingest does nothing per
//! subscriber. Subscribers with the same filters at the same place share
//! one read and one encoding of a page ([`crate::store::Live::page`]).
//!
//! Its buffer is the body's few chunks in flight plus the connection's
//! write buffer. A subscriber whose writes wait while more than the
//! buffer's worth of events is committed is sent `event: lagged` and
//! closed; the client reconnects with `Last-Event-ID` and the replay from
//! the store fills the gap.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use inlet_shared::http::{BodySender, BodyStream, Method, Request, Response, Version};
use inlet_shared::problem::Problem;
use tokio::time::{sleep_until, Instant};

use super::App;
use crate::connection::EVENT_STREAM;
use crate::stats::Stats;
use crate::store::live::{EncodedPage, PageKey, Subscription};
use crate::store::{Query, Store, StoreError, StoredEvent};

/// Events read from the store per page.
const PAGE_EVENTS: usize = 1000;
/// Bytes of event JSON a subscriber reads from the store per page (at least
/// one event), when `--max-page-bytes` is not smaller. A subscriber holds
/// about three pages (one being read or encoded, [`CHUNKS_IN_FLIGHT`]
/// queued): with 4 MiB pages, 256 subscribers could hold gigabytes.
const STREAM_PAGE_BYTES: usize = 256 * 1024;
/// Chunks (each one page, or a keep-alive) waiting between a subscriber
/// and its connection at most.
const CHUNKS_IN_FLIGHT: usize = 2;
/// `Retry-After` of a `503` at `--max-subscribers`.
const FULL_RETRY_AFTER: u32 = 5;
const KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// Where a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// After this `seq`.
    After(u64),
    /// After the last event stored now (`after=latest`).
    Latest,
}

/// Parses `type`, `source`, `token`, `after` (a sequence number or
/// `latest`); a `Last-Event-ID` that is a sequence number wins over `after`.
fn parse(query: &[u8], last_event_id: Option<&[u8]>) -> Result<(Query, Start), String> {
    let mut q = Query { ty: None, source: None, token: None, after: 0, limit: PAGE_EVENTS };
    let mut start = Start::After(0);
    for (key, value) in form_urlencoded::parse(query) {
        match &*key {
            "type" => q.ty = Some(value.into_owned()),
            "source" => q.source = Some(value.into_owned()),
            "token" => q.token = Some(value.into_owned()),
            "after" if value == "latest" => start = Start::Latest,
            "after" => {
                let after = value.parse().map_err(|_| format!("after must be a sequence number, got {value:?}"))?;
                start = Start::After(after);
            }
            _ => {}
        }
    }
    let resumed = last_event_id.and_then(|id| std::str::from_utf8(id).ok()).and_then(|id| id.trim().parse().ok());
    if let Some(seq) = resumed {
        start = Start::After(seq);
    }
    Ok((q, start))
}

fn event_stream() -> Option<Bytes> {
    Some(Bytes::from_static(EVENT_STREAM))
}

pub async fn stream(app: &App, req: &Request) -> Response {
    let live = app.store.live().clone();
    if !live.settings().enabled {
        let detail = "--mode blocking serves one connection at a time and cannot hold a stream open; \
                      use --mode async, or poll GET /events";
        return app.reject(Problem::new(501, "stream-unavailable", detail));
    }
    if req.version == Version::Http10 {
        // HTTP/1.0 has no chunked coding: an endless body cannot be framed.
        let detail = "GET /events/stream needs HTTP/1.1 (an endless body is sent chunked)";
        return app.reject(Problem::new(505, "stream-needs-http11", detail));
    }
    let (query, start) = match parse(req.query(), req.headers.get("last-event-id")) {
        Ok(parsed) => parsed,
        Err(detail) => return app.reject(Problem::new(400, "invalid-query", detail)),
    };
    if req.method == Method::Head {
        let (tx, body) = BodyStream::channel(1);
        let _ = tx.finish().await;
        return headers(Response::streamed(200, event_stream(), body));
    }
    let Ok(sub) = live.subscribe() else {
        let detail = format!(
            "{} subscribers are open, the most --max-subscribers allows; retry later",
            live.settings().max_subscribers
        );
        let mut res = app.reject(Problem::new(503, "too-many-subscribers", detail));
        res.retry_after = Some(FULL_RETRY_AFTER);
        return res;
    };
    let gauge = Gauge::open(app.stats.clone());
    let (tx, body) = BodyStream::channel(CHUNKS_IN_FLIGHT);
    let max_bytes = app.max_page_bytes.min(STREAM_PAGE_BYTES);
    let key =
        Arc::new(PageKey { ty: query.ty.clone(), source: query.source.clone(), token: query.token.clone(), max_bytes });
    let subscriber = Subscriber { store: app.store.clone(), query, key, max_bytes, last_sent: None, tx };
    tokio::spawn(subscriber.run(sub, gauge, start, app.stats.clone()));
    headers(Response::streamed(200, event_stream(), body))
}

fn headers(res: Response) -> Response {
    // `no-store`: a stream is never a cached answer; `X-Accel-Buffering`:
    // nginx must not hold events back.
    res.with_header("Cache-Control", "no-store").with_header("X-Accel-Buffering", "no")
}

/// Counts an open subscriber in `/stats` and `/metrics` while it lives.
struct Gauge(Arc<Stats>);

impl Gauge {
    fn open(stats: Arc<Stats>) -> Gauge {
        stats.subscriber_opened();
        Gauge(stats)
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.subscriber_closed();
    }
}

/// Why a subscriber stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The client left (or was dropped for not reading in time).
    Gone,
    /// It fell behind: more than its buffer was committed while its writes waited.
    Lagged,
    /// The store failed; the body is cut.
    Failed,
}

struct Subscriber {
    store: Arc<dyn Store>,
    /// The filters, and `after` as the cursor.
    query: Query,
    /// The filters and page size, for sharing pages with other subscribers.
    key: Arc<PageKey>,
    max_bytes: usize,
    /// The `seq` of the last event handed to the connection.
    last_sent: Option<u64>,
    tx: BodySender,
}

impl Subscriber {
    /// Serves the stream while it holds its place `sub` (and `gauge`): both
    /// are held until the task ends, the wait to deliver `event: lagged`
    /// included, so stalled clients never hold more than
    /// `--max-subscribers` streams. A lagged client that reconnects at once
    /// may get `503` until its old stream is gone.
    async fn run(mut self, mut sub: Subscription, gauge: Gauge, start: Start, stats: Arc<Stats>) {
        let stop = self.serve(&mut sub, start).await;
        match stop {
            Stop::Lagged => {
                stats.record_lagged();
                let last = self.last_sent.unwrap_or(self.query.after);
                let detail = "this subscriber fell behind and was closed; reconnect with Last-Event-ID to resume";
                let data = serde_json::json!({ "last_seq": last, "detail": detail });
                let event = format!("event: lagged\ndata: {data}\n\n");
                // Waits for the client to take what was queued before it, or
                // for the connection to drop it (its write deadline).
                if self.tx.send(Bytes::from(event)).await.is_ok() {
                    let _ = self.tx.finish().await;
                }
            }
            // Dropping the sender without its end cuts the body: the client
            // sees the stream fail rather than end.
            Stop::Failed | Stop::Gone => {}
        }
        drop(sub);
        drop(gauge);
    }

    async fn serve(&mut self, sub: &mut Subscription, start: Start) -> Stop {
        self.query.after = match start {
            Start::After(0) => 0,
            Start::After(seq) => match self.store.last_seq().await {
                Ok(last) if seq <= last => seq,
                // Past the last stored event: the cursor is from another
                // generation of the store (a memory store restarted, seqs
                // from 1 again), so every stored event is new to the client.
                // Waiting for `seq` could take forever: replay from the start.
                Ok(_) => match self.send(sub, Bytes::from_static(b": after 0\n\n")).await {
                    Ok(()) => 0,
                    Err(stop) => return stop,
                },
                Err(e) => {
                    tracing::warn!(kind = ?e.kind(), "a stream could not start: {}", e.chain());
                    return Stop::Failed;
                }
            },
            Start::Latest => match self.store.last_seq().await {
                Ok(seq) => {
                    // Says where the stream starts, so that a client that
                    // reconnects before the first event resumes there.
                    if let Err(stop) = self.send(sub, Bytes::from(format!(": after {seq}\n\n"))).await {
                        return stop;
                    }
                    seq
                }
                Err(e) => {
                    tracing::warn!(kind = ?e.kind(), "a stream could not start: {}", e.chain());
                    return Stop::Failed;
                }
            },
        };
        let settings = sub.live().settings().clone();
        let poll = sub.live().poll();
        // When a keep-alive is due: 15 s after the last write. The timer is
        // armed once and moved on only when it fires early (something was
        // written since), not at every write: a timer per round per
        // subscriber was a good part of what subscribers cost.
        let mut keepalive_at = Instant::now() + settings.keepalive;
        let keepalive = sleep_until(keepalive_at);
        tokio::pin!(keepalive);
        loop {
            // Caught up with the store: from here on, a commit wakes it.
            loop {
                sub.mark_seen();
                let (store, query, max_bytes) = (&self.store, &self.query, self.max_bytes);
                let page = sub.live().page(&self.key, query.after, || read(store, query.clone(), max_bytes)).await;
                let page = match page {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::warn!(kind = ?e.kind(), "a stream was cut: {}", e.chain());
                        return Stop::Failed;
                    }
                };
                // A page another subscriber read earlier may miss what was
                // committed since: such a commit must still wake this one.
                sub.seen_at_most(page.seen);
                if let Some(last) = page.last {
                    if let Err(stop) = self.send(sub, page.chunk).await {
                        return stop;
                    }
                    self.last_sent = Some(last);
                    self.query.after = last;
                    keepalive_at = Instant::now() + settings.keepalive;
                }
                match page.next_after {
                    // A scan may stop past its last match: go on from there.
                    Some(next) => self.query.after = self.query.after.max(next),
                    None => break,
                }
            }
            let poll_at = poll.map(|p| Instant::now() + p);
            let woken = async {
                match poll_at {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // Published at most once per `live::COALESCE`: under load,
                // one wake-up per interval with every commit of it.
                () = sub.changed() => {}
                () = woken => {}
                () = &mut keepalive => {
                    if keepalive_at <= Instant::now() {
                        if let Err(stop) = self.send(sub, Bytes::from_static(KEEPALIVE)).await {
                            return stop;
                        }
                        keepalive_at = Instant::now() + settings.keepalive;
                    }
                    keepalive.as_mut().reset(keepalive_at);
                }
            }
        }
    }

    /// Hands a chunk to the connection, unless more than the buffer's worth
    /// of events is committed while it waits (`Lagged`).
    async fn send(&self, sub: &mut Subscription, chunk: Bytes) -> Result<(), Stop> {
        let since = sub.committed();
        tokio::select! {
            biased;
            sent = self.tx.send(chunk) => sent.map_err(|_| Stop::Gone),
            () = sub.passed(since) => Err(Stop::Lagged),
        }
    }
}

/// Reads the page after `query.after` from the store and encodes it.
async fn read(store: &Arc<dyn Store>, query: Query, max_bytes: usize) -> Result<EncodedPage, StoreError> {
    let page = store.query(query, max_bytes).await.collect().await?;
    let (chunk, starts) = encode(&page.events);
    Ok(EncodedPage { chunk, starts, next_after: page.next_after })
}

/// The SSE events of a page: `id: <seq>` and `data: <item of GET /events>`;
/// and per event, its `seq` and where it starts.
fn encode(events: &[StoredEvent]) -> (Bytes, Vec<(u64, usize)>) {
    let size: usize = events.iter().map(|e| e.json.len() + e.received_at.len() + 80).sum();
    let mut out = BytesMut::with_capacity(size);
    let mut starts = Vec::with_capacity(events.len());
    for e in events {
        starts.push((e.seq, out.len()));
        out.put_slice(b"id: ");
        out.put_slice(itoa::Buffer::new().format(e.seq).as_bytes());
        out.put_slice(b"\ndata: ");
        let item = out.len();
        super::events::put_event(&mut out, e, false);
        // JSON holds a raw CR or LF only as whitespace between tokens (a
        // string cannot): each becomes a space, so the event is one `data:`
        // line. SSE readers end a line at a bare CR too: left in, it would
        // cut the JSON for every reader. Only the stored JSON and
        // `received_at` can hold one (the token is escaped): the item is
        // scanned only when they do, which they almost never do.
        let breaks = |b: &[u8]| b.contains(&b'\n') || b.contains(&b'\r');
        if breaks(&e.json) || breaks(e.received_at.as_bytes()) {
            for b in out[item..].iter_mut() {
                if matches!(*b, b'\r' | b'\n') {
                    *b = b' ';
                }
            }
        }
        out.put_slice(b"\n\n");
    }
    (out.freeze(), starts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_comes_from_last_event_id_then_after() {
        let (q, start) = parse(b"type=a.b&source=%2Fs&token=shop&after=5&limit=3", None).unwrap();
        assert_eq!((q.ty.as_deref(), q.source.as_deref(), q.token.as_deref()), (Some("a.b"), Some("/s"), Some("shop")));
        assert_eq!(start, Start::After(5));
        assert_eq!(parse(b"after=5", Some(b"9")).unwrap().1, Start::After(9), "Last-Event-ID wins");
        assert_eq!(parse(b"after=5", Some(b"x")).unwrap().1, Start::After(5), "an invalid one is ignored");
        assert_eq!(parse(b"after=latest", None).unwrap().1, Start::Latest);
        assert_eq!(parse(b"", None).unwrap().1, Start::After(0));
        assert!(parse(b"after=-1", None).is_err());
        assert!(parse(b"after=1x", Some(b"3")).is_err(), "a bad after is refused even when Last-Event-ID is set");
    }

    #[test]
    fn events_are_encoded_one_data_line_each_and_line_breaks_become_spaces() {
        let event = |seq, json: &'static str, token: Option<&str>| StoredEvent {
            seq,
            received_at: "2026-12-02T10:00:00Z".into(),
            json: Bytes::from_static(json.as_bytes()),
            token: token.map(Arc::from),
        };
        let (out, starts) =
            encode(&[event(7, r#"{"id":"1"}"#, None), event(8, "{\"id\":\r\n\"2\",\r\"a\":\n1}", Some("shop"))]);
        let expected = "id: 7\ndata: {\"seq\":7,\"received_at\":\"2026-12-02T10:00:00Z\",\"token\":null,\"event\":{\"id\":\"1\"}}\n\n\
                        id: 8\ndata: {\"seq\":8,\"received_at\":\"2026-12-02T10:00:00Z\",\"token\":\"shop\",\"event\":{\"id\":  \"2\", \"a\": 1}}\n\n";
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
        let second = expected.find("id: 8").unwrap();
        assert_eq!(starts, vec![(7, 0), (8, second)], "where each event starts, for a page's tail");
    }

    #[test]
    fn a_line_break_outside_the_stored_json_never_splits_the_data_line() {
        // `received_at` and the token come from the store: a message of
        // another program on a JetStream stream could hold anything.
        let e = StoredEvent {
            seq: 3,
            received_at: "2026-12-02\r\nT10".into(),
            json: Bytes::from_static(b"{}"),
            token: Some(Arc::from("a\nb")),
        };
        let (out, _) = encode(&[e]);
        let expected =
            "id: 3\ndata: {\"seq\":3,\"received_at\":\"2026-12-02  T10\",\"token\":\"a\\nb\",\"event\":{}}\n\n";
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
    }
}
