//! `--keep-rejected` on `--store jetstream`: refused events kept in a second
//! stream beside the events stream.
//!
//! - The stream is `<stream>_REJECTED` on `<prefix>_rejected.>`, outside the
//!   events stream's `<prefix>.>`, so the events stream never holds a
//!   rejected row. It is created, or updated, at start with `max_age` =
//!   `--retention` (0: kept until the cap), `max_bytes` =
//!   `--max-rejected-bytes`, `discard: old` (the oldest rows go first) and
//!   the replicas and storage of the events stream. Every inlet server on
//!   the stream shares it: the rows, their sequence and the cap are the
//!   stream's.
//! - A row is one message on `<prefix>_rejected.t.<type>` (the type made
//!   subject-safe as events' are) or `<prefix>_rejected.none` (no type); its
//!   body is a JSON object with the row's fields, `errors` and `event` as
//!   the very bytes the other stores keep.
//! - [`RejectedLog::keep`] hands rows to a task through a bounded queue
//!   ([`QUEUE_ROWS`]) and returns: a row that does not fit is dropped and
//!   counted, never waited for. The task publishes what queued up, then
//!   waits for JetStream's acks (a row NATS refuses is counted as dropped).
//! - The gauges `kept` and `bytes` are the stream's own (`bytes` as NATS
//!   counts a message: subject, body and its overhead), read about every
//!   [`REFRESH`], not per request. Rows the stream dropped since this server
//!   started count as `retention` when `--retention` is set and the oldest
//!   row was older than it, else as `cap`.
//! - `GET /rejected` reads the stream with batched direct gets (`read.rs`),
//!   the type filter through the subject, the others here.

use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use futures::future::{BoxFuture, FutureExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::setup::SetUp;
use super::{direct_get_batch, subject_for, unavailable};
use crate::store::rejected::{
    matches, KeptRejected, Rejected, RejectedGauges, RejectedLog, RejectedOptions, RejectedPage, RejectedPager,
};
use crate::store::{ErrorKind, Query, StoreError};

/// What the rejected events' subjects add to `--subject-prefix`:
/// `<prefix>_rejected.t.<type>` and `<prefix>_rejected.none`.
pub const PREFIX_SUFFIX: &str = "_rejected";

/// Rows waiting for the task at most; more are dropped.
pub const QUEUE_ROWS: usize = 4096;
/// Rows published before their acks are awaited, at most.
const MAX_BATCH_ROWS: usize = 512;
/// How often the gauges are read from the stream.
const REFRESH: Duration = Duration::from_millis(500);
/// Messages one page looks at, at most (as `GET /events` on JetStream).
const SCAN_MIN: usize = 10_000;
/// Messages asked for in one batched direct get.
const BATCH: usize = 1000;

/// Why a request was refused when its deadline passed while the stream was
/// being set up.
const REJECTED_NOT_IN_TIME: &str = "the JetStream stream of rejected events could not be set up in time";

/// A row as the body of its message.
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    received_ms: i64,
    #[serde(borrow)]
    token: Option<Cow<'a, str>>,
    #[serde(borrow)]
    mode: Cow<'a, str>,
    #[serde(borrow)]
    content_type: Cow<'a, str>,
    #[serde(borrow)]
    reason: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    ty: Option<Cow<'a, str>>,
    #[serde(borrow)]
    source: Option<Cow<'a, str>>,
    errors: &'a RawValue,
    event: &'a RawValue,
}

/// The stream, subjects and settings of the rejected log.
#[derive(Debug, Clone)]
pub struct Names {
    /// `<stream>_REJECTED`.
    pub stream: String,
    /// `<prefix>_rejected`.
    pub prefix: String,
    pub replicas: usize,
    pub options: RejectedOptions,
}

impl Names {
    pub fn new(events_stream: &str, events_prefix: &str, replicas: usize, options: RejectedOptions) -> Names {
        Names {
            stream: format!("{events_stream}{}", super::names::REJECTED_STREAM_SUFFIX),
            prefix: format!("{events_prefix}{PREFIX_SUFFIX}"),
            replicas,
            options,
        }
    }

    fn subject(&self, ty: Option<&str>) -> String {
        match ty {
            Some(ty) => subject_for(&format!("{}.t", self.prefix), ty),
            None => format!("{}.none", self.prefix),
        }
    }

    fn config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.prefix)],
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            max_age: self.options.retention.unwrap_or(Duration::ZERO),
            max_bytes: i64::try_from(self.options.max_bytes).unwrap_or(i64::MAX),
            discard: stream::DiscardPolicy::Old,
            allow_direct: true,
            description: Some("CloudEvents refused by inlet (--keep-rejected)".into()),
            ..Default::default()
        }
    }
}

/// What the log shares with its task.
struct Shared {
    client: async_nats::Client,
    context: jetstream::Context,
    names: Names,
    /// The stream, set up once (`setup.rs`).
    ready: SetUp<()>,
    gauges: Arc<RejectedGauges>,
    read_timeout: Duration,
}

impl Shared {
    /// Creates the stream, or updates it to the settings of this start
    /// (retention, cap, replicas), once; waits until `deadline` at most,
    /// for one attempt at a time shared by all waiters.
    async fn ensure(&self, deadline: tokio::time::Instant) -> Result<(), StoreError> {
        let (context, config) = (self.context.clone(), self.names.config());
        let set_up = move || {
            async move {
                context
                    .create_or_update_stream(config)
                    .await
                    .map_err(|e| unavailable("creating the JetStream stream of rejected events", e))?;
                Ok(())
            }
            .boxed()
        };
        self.ready.get_or_set_up(deadline, REJECTED_NOT_IN_TIME, set_up).await.map(|_| ())
    }

    /// The deadline of a wait for the stream: the read timeout from now.
    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.read_timeout
    }

    /// Publishes `rows` and waits for their acks.
    async fn write(&self, rows: Vec<Rejected>) {
        if self.ensure(self.deadline()).await.is_err() {
            self.gauges.dropped_queue.fetch_add(rows.len() as u64, Relaxed);
            return;
        }
        let mut acks = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(body) = encode(&row) else {
                self.gauges.dropped_queue.fetch_add(1, Relaxed);
                continue;
            };
            let subject = self.names.subject(row.ty.as_deref());
            // A message larger than the whole cap would only push everything else out.
            if (subject.len() + body.len()) as u64 > self.names.options.max_bytes {
                self.gauges.dropped_cap.fetch_add(1, Relaxed);
                continue;
            }
            match self.context.publish(subject, body.into()).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    tracing::warn!("keeping a rejected event in JetStream failed: {e}");
                    self.gauges.dropped_queue.fetch_add(1, Relaxed);
                }
            }
        }
        for ack in acks {
            if let Err(e) = ack.await {
                tracing::warn!("JetStream did not keep a rejected event: {e}");
                self.gauges.dropped_queue.fetch_add(1, Relaxed);
            }
        }
    }

    /// Reads the stream's state into the gauges. `seen` is the first
    /// sequence at the last look (`None` before the first): rows before the
    /// new first sequence were dropped by the stream since.
    async fn refresh(&self, seen: &mut Option<(u64, i64)>) {
        if self.ensure(self.deadline()).await.is_err() {
            return;
        }
        let Ok(stream) = self.context.get_stream(&self.names.stream).await else { return };
        let state = &stream.cached_info().state;
        self.gauges.rows.store(state.messages, Relaxed);
        self.gauges.bytes.store(state.bytes, Relaxed);
        // An empty stream's first sequence is one past its last.
        let first = state.first_sequence.max(1);
        let first_ms = i64::try_from(state.first_timestamp.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        if let Some(old) = *seen {
            let (cap, retention) = dropped_since(old, first, self.names.options.retention, crate::store::now_ms());
            self.gauges.dropped_cap.fetch_add(cap, Relaxed);
            self.gauges.deleted_retention.fetch_add(retention, Relaxed);
        }
        *seen = Some((first, first_ms));
    }

    async fn page(&self, q: Query, max_bytes: usize) -> Result<RejectedPage, StoreError> {
        self.ensure(self.deadline()).await?;
        let subject = match &q.ty {
            Some(ty) => self.names.subject(Some(ty)),
            None => format!("{}.>", self.names.prefix),
        };
        let mut pager = RejectedPager::new(q.limit, max_bytes);
        let mut next = q.after.saturating_add(1);
        // As `GET /events`: a page looks at a bounded number of messages;
        // when they run out it ends where the scan stopped.
        let mut budget = q.limit.saturating_mul(100).max(SCAN_MIN);
        // Without a source or token filter nearly every message matches:
        // ask for what the page still needs (and one to show more), not more.
        let filtered_here = q.source.is_some() || q.token.is_some();
        let mut taken = 0usize;
        loop {
            if budget == 0 {
                let mut page = pager.finish();
                page.next_after = Some(next - 1);
                return Ok(page);
            }
            let want = if filtered_here { budget } else { q.limit.saturating_add(1).saturating_sub(taken) };
            let want = want.clamp(1, BATCH).min(budget);
            let batch =
                direct_get_batch(&self.client, &self.names.stream, self.read_timeout, &subject, next, want).await?;
            for got in batch.messages {
                budget = budget.saturating_sub(1);
                next = got.seq + 1;
                let Some(row) = decode(&got.payload) else { continue };
                if !matches(&q, &row) {
                    continue;
                }
                if !pager.offer(KeptRejected { seq: got.seq, row }) {
                    return Ok(pager.finish());
                }
                taken += 1;
                if budget == 0 {
                    break;
                }
            }
            if !batch.more {
                return Ok(pager.finish());
            }
        }
    }
}

/// The rows the stream dropped between two looks, as (cap, retention):
/// `old` is the first sequence and its time (ms) at the last look, `first`
/// the first sequence now. The stream drops from the front for both
/// reasons; they count as retention when `--retention` is set and the
/// oldest of them was older than it, else as the cap.
fn dropped_since(old: (u64, i64), first: u64, retention: Option<Duration>, now_ms: i64) -> (u64, u64) {
    let (old_first, old_first_ms) = old;
    let gone = first.saturating_sub(old_first);
    let cutoff = retention.map(|r| now_ms.saturating_sub(i64::try_from(r.as_millis()).unwrap_or(i64::MAX)));
    if cutoff.is_some_and(|c| old_first_ms < c) {
        (0, gone)
    } else {
        (gone, 0)
    }
}

/// Serves the queue: writes what queued up, reads the gauges now and then.
async fn serve(shared: Arc<Shared>, mut rx: mpsc::Receiver<Rejected>) {
    let mut seen = None;
    let mut refreshed = Instant::now();
    shared.refresh(&mut seen).await;
    loop {
        match tokio::time::timeout(REFRESH, rx.recv()).await {
            Ok(Some(row)) => {
                let mut rows = vec![row];
                while rows.len() < MAX_BATCH_ROWS {
                    match rx.try_recv() {
                        Ok(row) => rows.push(row),
                        Err(_) => break,
                    }
                }
                shared.write(rows).await;
            }
            Ok(None) => break,
            Err(_) => {}
        }
        if refreshed.elapsed() >= REFRESH {
            shared.refresh(&mut seen).await;
            refreshed = Instant::now();
        }
    }
}

/// The body of a row's message; `None` if its errors or event are not JSON
/// (they always are: the server made them).
fn encode(row: &Rejected) -> Option<Vec<u8>> {
    let errors: &RawValue = serde_json::from_str(&row.errors).ok()?;
    let event: &RawValue = serde_json::from_str(&row.event).ok()?;
    serde_json::to_vec(&Wire {
        received_ms: row.received_ms,
        token: row.token.as_deref().map(Cow::Borrowed),
        mode: Cow::Borrowed(&row.mode),
        content_type: Cow::Borrowed(&row.content_type),
        reason: Cow::Borrowed(&row.reason),
        ty: row.ty.as_deref().map(Cow::Borrowed),
        source: row.source.as_deref().map(Cow::Borrowed),
        errors,
        event,
    })
    .ok()
}

/// A row from its message; `None` for a message that is not one.
fn decode(body: &[u8]) -> Option<Rejected> {
    let wire: Wire<'_> = serde_json::from_slice(body).ok()?;
    Some(Rejected {
        received_ms: wire.received_ms,
        received_at: rfc3339_ms(wire.received_ms),
        token: wire.token.map(Cow::into_owned),
        mode: wire.mode.into_owned(),
        content_type: wire.content_type.into_owned(),
        reason: wire.reason.into_owned(),
        ty: wire.ty.map(Cow::into_owned),
        source: wire.source.map(Cow::into_owned),
        errors: wire.errors.get().to_string(),
        event: wire.event.get().to_string(),
    })
}

/// RFC 3339 in UTC with milliseconds, from milliseconds since the epoch.
fn rfc3339_ms(ms: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return String::new();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// `--keep-rejected` on JetStream.
pub struct JetStreamRejected {
    shared: Arc<Shared>,
    queue: Mutex<Option<mpsc::Sender<Rejected>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl JetStreamRejected {
    /// Starts the log's task; the stream is made now if NATS answers within
    /// `wait`, otherwise on first use.
    pub async fn open(
        client: async_nats::Client,
        context: jetstream::Context,
        names: Names,
        read_timeout: Duration,
        wait: Duration,
    ) -> JetStreamRejected {
        let gauges = Arc::new(RejectedGauges { max_bytes: names.options.max_bytes, ..RejectedGauges::default() });
        let shared = Arc::new(Shared { client, context, names, ready: SetUp::new(), gauges, read_timeout });
        let connected = shared.client.connection_state() == async_nats::connection::State::Connected;
        let wait = if connected { wait } else { Duration::ZERO };
        match shared.ensure(tokio::time::Instant::now() + wait).await {
            Ok(()) => tracing::info!(stream = %shared.names.stream, "JetStream stream of rejected events ready"),
            Err(e) if e.reason() == REJECTED_NOT_IN_TIME => {
                tracing::warn!("JetStream stream of rejected events not ready yet: NATS did not answer")
            }
            Err(e) => tracing::warn!("JetStream stream of rejected events not ready yet: {e}"),
        }
        let (tx, rx) = mpsc::channel(QUEUE_ROWS);
        let task = tokio::spawn(serve(shared.clone(), rx));
        JetStreamRejected { shared, queue: Mutex::new(Some(tx)), task: Mutex::new(Some(task)) }
    }

    /// Stops the task once it published what is queued (at shutdown),
    /// waiting at most `wait`.
    pub async fn close(&self, wait: Duration) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.take();
        }
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = tokio::time::timeout(wait, task).await;
        }
    }
}

impl RejectedLog for JetStreamRejected {
    fn keep(&self, rows: Vec<Rejected>) {
        let Ok(queue) = self.queue.lock() else {
            self.shared.gauges.dropped_queue.fetch_add(rows.len() as u64, Relaxed);
            return;
        };
        for row in rows {
            if queue.as_ref().is_none_or(|q| q.try_send(row).is_err()) {
                self.shared.gauges.dropped_queue.fetch_add(1, Relaxed);
            }
        }
    }

    fn page(&self, q: Query, max_bytes: usize) -> BoxFuture<'_, Result<RejectedPage, StoreError>> {
        Box::pin(async move {
            if self.shared.client.connection_state() != async_nats::connection::State::Connected {
                return Err(StoreError::plain(ErrorKind::Unavailable, "NATS is unreachable"));
            }
            self.shared.page(q, max_bytes).await
        })
    }

    fn gauges(&self) -> Arc<RejectedGauges> {
        self.shared.gauges.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ty: Option<&str>, event: &str) -> Rejected {
        Rejected {
            received_ms: 1_767_225_600_005,
            received_at: "2026-01-01T00:00:00.005Z".into(),
            token: Some("writer".into()),
            mode: "batch".into(),
            content_type: "application/json".into(),
            reason: "schema-violation".into(),
            ty: ty.map(str::to_string),
            source: Some("/shop \"quoted\" \u{e9}\n".into()),
            errors: r##"[{"pointer":"#/1/data/qty","keyword":"minimum"}]"##.into(),
            event: event.into(),
        }
    }

    #[test]
    fn a_row_comes_back_as_it_went_with_its_bytes_as_sent() {
        let event = r#"{ "z":1,"a" : [1, 2] ,"id":"x"}"#;
        let sent = row(Some("com.example.order"), event);
        let back = decode(&encode(&sent).unwrap()).unwrap();
        assert_eq!(back, sent);
        let not_object = row(None, r#""42""#);
        assert_eq!(decode(&encode(&not_object).unwrap()).unwrap(), not_object);
        assert_eq!(decode(b"not json"), None);
        assert_eq!(encode(&row(None, "{")), None, "an event that is not JSON is not sent");
    }

    #[test]
    fn rows_gone_from_the_front_count_by_their_age() {
        let hour = Some(Duration::from_secs(3600));
        let now = 10_000_000;
        // Nothing gone.
        assert_eq!(dropped_since((5, now - 1), 5, hour, now), (0, 0));
        // Without a retention everything the stream dropped is the cap's.
        assert_eq!(dropped_since((5, 0), 8, None, now), (3, 0));
        // The oldest was young: the cap; past the retention: the retention.
        assert_eq!(dropped_since((5, now - 3_599_999), 8, hour, now), (3, 0));
        assert_eq!(dropped_since((5, now - 3_600_001), 8, hour, now), (0, 3));
        // An emptied stream after a restart of NATS never counts backwards.
        assert_eq!(dropped_since((9, now), 1, hour, now), (0, 0));
    }

    /// `keep` never waits: past the queue's rows it drops and counts. (On a
    /// current-thread runtime the task does not run while `keep` does.)
    #[tokio::test]
    async fn a_full_queue_drops_and_counts_rows() {
        let client =
            async_nats::ConnectOptions::new().retry_on_initial_connect().connect("nats://127.0.0.1:1").await.unwrap();
        let context = jetstream::new(client.clone());
        let options = RejectedOptions { max_bytes: 1 << 20, retention: None };
        let names = Names::new("S", "p", 1, options);
        let log = JetStreamRejected::open(client, context, names, Duration::from_secs(1), Duration::from_secs(1)).await;
        log.keep((0..QUEUE_ROWS + 7).map(|_| row(Some("t"), "{}")).collect());
        let gauges = log.gauges();
        assert_eq!(gauges.dropped_queue.load(Relaxed), 7);
        log.close(Duration::ZERO).await;
        log.keep(vec![row(None, "{}")]);
        assert_eq!(gauges.dropped_queue.load(Relaxed), 8, "after close every row is dropped");
    }

    #[test]
    fn received_at_has_milliseconds_always() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_767_225_600_120), "2026-01-01T00:00:00.120Z");
    }

    #[test]
    fn rows_live_outside_the_events_subjects() {
        let o = RejectedOptions { max_bytes: 1000, retention: Some(Duration::from_secs(60)) };
        let names = Names::new("INLET_EVENTS", "inlet.events", 3, o);
        assert_eq!(names.stream, "INLET_EVENTS_REJECTED");
        assert_eq!(names.subject(Some("com.example order")), "inlet.events_rejected.t.com.example_order");
        assert_eq!(names.subject(None), "inlet.events_rejected.none");
        let config = names.config();
        assert_eq!(config.subjects, vec!["inlet.events_rejected.>".to_string()]);
        assert_eq!((config.max_bytes, config.max_age, config.num_replicas), (1000, Duration::from_secs(60), 3));
        assert_eq!(config.discard, stream::DiscardPolicy::Old);
    }
}
