//! Writes. One event is one plain publish. More than one event is one
//! atomic batch (NATS ADR-50, nats-server 2.12+): the messages carry
//! `Nats-Batch-Id` and `Nats-Batch-Sequence`, the last one also
//! `Nats-Batch-Commit: 1`, and the stream stores all of them or none.
//!
//! Dedupe inside an atomic batch, as nats-server 2.15.1 does it
//! (tests/tests/jetstream.rs `atomic_batch_dedupe_as_nats_does_it`): a batch
//! in which any `Nats-Msg-Id` was seen within the duplicate window (or that
//! repeats an id of its own) is refused as a whole with error 10201, and
//! nothing of it is stored; the error does not say which ids. So inlet:
//! 1. drops repeats within the request (they count as duplicates);
//! 2. publishes the rest as one batch; if it commits, done;
//! 3. on 10201 asks JetStream, for each event, whether it knows the id,
//!    without storing anything: a one-message atomic batch with the id and
//!    a `Nats-Expected-Last-Sequence` no stream reaches; JetStream answers
//!    10201 when it knows the id, 10071 (wrong last sequence) otherwise.
//!    (A plain publish with an `Nats-Expected-Last-Msg-Id` that cannot
//!    match answers the same on one server, but on a cluster it is
//!    replicated and fails when applied, logged as a critical write error
//!    on every node: not that.)
//! 4. publishes the events it does not know as a new batch (again from 2,
//!    at most [`ROUNDS`] times, for a race with another inlet server).
//!
//! The `202`'s `accepted` is the size of the committed batch, `duplicates`
//! the rest: exact.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::header::{NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use inlet_shared::event::Event;
use smallvec::SmallVec;
use tokio::time::Instant;

use super::group::{self, Single};
use super::{message_id, no_answer, subject_for, unavailable, JetStreamStore, NO_ANSWER, TOKEN_HEADER};
use crate::store::{Appended, ErrorKind, StoreError};

/// Messages in one atomic batch at most: nats-server's limit (ADR-50, and
/// error 10199 past it on 2.15.1).
pub const MAX_ATOMIC_BATCH: usize = 1000;

/// The bytes kept for a message's headers when inlet checks an event
/// against the server's `max_payload`: the most it sends with one event
/// (`Nats-Msg-Id`, the batch headers with a 38-character batch id and a
/// 4-digit sequence, the commit, a probe's expected last sequence), each as
/// `Name: value\r\n`, and the header block's framing. The token's
/// `Inlet-Token: <name>\r\n` comes on top.
pub const HEADER_ROOM: usize = 10 + 2 // "NATS/1.0\r\n", the closing "\r\n"
    + 13 + 64 + 2 // Nats-Msg-Id
    + 15 + 38 + 2 // Nats-Batch-Id: <16 hex>-g<up to 20 digits>
    + 21 + 4 + 2 // Nats-Batch-Sequence
    + 22 // Nats-Batch-Commit: 1
    + 29 + 20 + 2; // Nats-Expected-Last-Sequence

/// Why a request is refused when its deadline passed before anything of it
/// went out (waiting for a place for its batch, probe or group).
pub(super) const BUSY: &str = "the store was busy until the deadline";

/// A request whose deadline passed before anything of it went out.
pub(super) fn busy() -> StoreError {
    StoreError::plain(ErrorKind::Unavailable, BUSY)
}

/// Why an event over the server's `max_payload` is refused.
const TOO_LARGE_FOR_NATS: &str =
    "an event is larger than the NATS server takes in one message (its max_payload): it cannot be stored as it is";

/// Publish-then-probe rounds of one request before it is answered `503`.
const ROUNDS: usize = 3;

/// `Nats-Expected-Last-Sequence` of a probe: a sequence no stream reaches,
/// so the expectation always fails.
const PROBE_EXPECTATION: &str = "18446744073709551615";

/// JetStream API error codes of atomic batches (ADR-50; checked against
/// nats-server 2.15.1).
pub(super) mod code {
    /// Atomic publish not enabled on the stream.
    pub const DISABLED: u64 = 10174;
    /// Batch incomplete (a message missing, or its start refused).
    pub const INCOMPLETE: u64 = 10176;
    /// More messages than the server takes in one batch.
    pub const TOO_LARGE: u64 = 10199;
    /// A `Nats-Msg-Id` of the batch was seen before.
    pub const DUPLICATE: u64 = 10201;
    /// 50 batches already in flight on the stream.
    pub const TOO_MANY_INFLIGHT: u64 = 10210;
    /// `Nats-Expected-Last-Sequence` not met.
    pub const WRONG_LAST_SEQUENCE: u64 = 10071;
}

/// The JetStream API error code behind a publish error, if any.
pub(super) fn error_code(e: &PublishError) -> Option<u64> {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .map(|e| e.error_code().0)
}

/// Whether a publish's ack failed for want of an answer (no ack in time,
/// the connection gone after the message went out): it may be stored.
pub(super) fn unanswered(e: &PublishError) -> bool {
    error_code(e).is_none() && matches!(e.kind(), PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe)
}

/// A message the client did not send (too large for the server's
/// `max_payload`, a bad subject, the connection's queue closed): nothing of
/// it reached NATS.
pub(super) fn publish_failed(e: async_nats::PublishError) -> StoreError {
    match e.kind() {
        async_nats::PublishErrorKind::MaxPayloadExceeded => too_large(e),
        _ => unavailable("publishing to JetStream", e),
    }
}

/// The same for a message sent through the JetStream context (before its
/// ack is awaited).
pub(super) fn jetstream_publish_failed(e: PublishError) -> StoreError {
    match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => too_large(e),
        _ => unavailable("publishing to JetStream", e),
    }
}

/// An event larger than NATS takes in one message: `413`, a retry cannot help.
pub(super) fn too_large(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::caused(ErrorKind::TooLarge, TOO_LARGE_FOR_NATS, e)
}

/// How one attempt at an atomic batch ended.
enum Outcome {
    Committed,
    /// Refused as a whole: some id was seen before.
    Duplicates,
}

/// For each id, whether an earlier one of them is the same.
pub fn repeats_within<'a>(ids: impl ExactSizeIterator<Item = &'a str>) -> SmallVec<[bool; 8]> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.map(|id| !seen.insert(id)).collect()
}

impl JetStreamStore {
    /// Publishes a request's events, each with the writing token's name in
    /// its `Inlet-Token` header (none when anonymous). One deadline, the ack
    /// timeout from now, bounds every wait of it (the module doc of
    /// `mod.rs`).
    pub(super) async fn publish_all(&self, events: &[Event], token: Option<&str>) -> Result<Appended, StoreError> {
        let deadline = Instant::now() + self.options.ack_timeout;
        self.check_connected()?;
        self.stream(deadline).await?;
        let max = self.max_event_bytes(token);
        if let [event] = events {
            let payload = event.json_bytes();
            if payload.len() > max {
                return Err(StoreError::plain(ErrorKind::TooLarge, TOO_LARGE_FOR_NATS));
            }
            let id = message_id(event.source(), event.id());
            return match &self.group {
                Some(queue) => match queue.idle_place() {
                    Some(_place) => self.publish_one(event, payload, id, token, deadline).await,
                    None => self.publish_grouped(&queue.queue, event, payload, id, token, deadline).await,
                },
                None => self.publish_one(event, payload, id, token, deadline).await,
            };
        }
        if events.iter().any(|e| e.json_bytes().len() > max) {
            return Err(StoreError::plain(ErrorKind::TooLarge, TOO_LARGE_FOR_NATS));
        }
        let ids: Vec<String> = events.iter().map(|e| message_id(e.source(), e.id())).collect();
        let mut duplicate = repeats_within(ids.iter().map(String::as_str));
        let mut pending: Vec<usize> = (0..events.len()).filter(|i| !duplicate[*i]).collect();
        for _ in 0..ROUNDS {
            match self.commit_batch(events, &ids, &pending, token, deadline).await? {
                Outcome::Committed => return Ok(Appended { duplicate }),
                Outcome::Duplicates => {
                    let known = self.probe(events, &ids, &pending, token, deadline).await?;
                    for (i, known) in pending.iter().zip(known) {
                        duplicate[*i] = known;
                    }
                    pending.retain(|i| !duplicate[*i]);
                    if pending.is_empty() {
                        return Ok(Appended { duplicate });
                    }
                }
            }
        }
        Err(StoreError::plain(ErrorKind::Unavailable, "JetStream kept refusing the batch as a duplicate"))
    }

    /// The largest event (its JSON) that fits in one NATS message with the
    /// room kept for its headers ([`HEADER_ROOM`] and the token's): a larger
    /// one the client would refuse to send. Checked before anything is
    /// sent, so that a request with such an event is refused alone (`413`),
    /// a batch wholly, and never fails a group.
    fn max_event_bytes(&self, token: Option<&str>) -> usize {
        let room = HEADER_ROOM + token.map_or(0, |t| TOKEN_HEADER.len() + 4 + t.len());
        self.client.max_payload().saturating_sub(room)
    }

    /// One event through the group publish (`group.rs`): it waits for its
    /// own answer until `deadline`. Still queued then (every group place
    /// taken), it is taken out of the queue: nothing was stored. Taken into
    /// a group, it may have gone out: the no-answer error.
    async fn publish_grouped(
        &self,
        queue: &tokio::sync::mpsc::UnboundedSender<Single>,
        event: &Event,
        payload: Bytes,
        id: String,
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<Appended, StoreError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let claimed = Arc::new(AtomicBool::new(false));
        let single = Single {
            subject: self.last_subject.of(&self.options.subject_prefix, event.ty()),
            id,
            payload,
            token: token.map(str::to_owned),
            deadline,
            claimed: claimed.clone(),
            answer,
        };
        queue.send(single).map_err(|_| group::closing())?;
        let duplicate = match tokio::time::timeout_at(deadline, answered).await {
            Ok(answer) => answer.map_err(|_| group::closing())??,
            // Whoever claims it first: the group (it goes out) or this request (it never will).
            Err(_) if claimed.swap(true, Ordering::AcqRel) => return Err(no_answer()),
            Err(_) => return Err(busy()),
        };
        Ok(Appended { duplicate: SmallVec::from_elem(duplicate, 1) })
    }

    /// One event: a request to the stream's subject, the reply being
    /// JetStream's ack (read here with [`read_ack`]: cheaper than the
    /// JetStream context's publish, which reads the ack through an untagged
    /// enum and passes each through a semaphore and a channel).
    async fn publish_one(
        &self,
        event: &Event,
        payload: Bytes,
        id: String,
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<Appended, StoreError> {
        let mut headers = HeaderMap::new();
        // The id moves into the header's value (a `&str` would be copied).
        headers.insert(NATS_MESSAGE_ID, id);
        if let Some(token) = token {
            headers.insert(TOKEN_HEADER, token);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let request = async_nats::Request::new().payload(payload).headers(headers).timeout(Some(left));
        // Bounded as a whole: handing the message to a connection whose
        // queue is full waits too, outside the request's own timeout.
        let sent = self.client.send_request(self.last_subject.of(&self.options.subject_prefix, event.ty()), request);
        let reply = match tokio::time::timeout_at(deadline, sent).await {
            Err(_) => return Err(no_answer()),
            Ok(Err(e)) => {
                use async_nats::RequestErrorKind as Kind;
                return Err(match e.kind() {
                    Kind::MaxPayloadExceeded => too_large(e),
                    Kind::InvalidSubject | Kind::NoResponders => unavailable("publishing to JetStream", e),
                    Kind::TimedOut | Kind::Other => StoreError::caused(ErrorKind::Unanswered, NO_ANSWER, e),
                });
            }
            Ok(Ok(reply)) => reply,
        };
        let duplicate = read_ack(&reply.payload).map_err(|e| unavailable("JetStream did not acknowledge", e))?;
        Ok(Appended { duplicate: SmallVec::from_elem(duplicate, 1) })
    }

    /// Publishes `events[i]` for `i` in `which` as one atomic batch. A batch
    /// refused because the stream is busy (too many batches in flight) is
    /// sent again, with a new id, until `deadline`.
    async fn commit_batch(
        &self,
        events: &[Event],
        ids: &[String],
        which: &[usize],
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<Outcome, StoreError> {
        // Nothing of this batch went out while it waits for a place (and
        // an earlier round's batch was refused: nothing stored).
        let _slot = self.batch_slot(deadline).await?;
        // The request's deadline for the attempts, the messages handed to
        // the connection (which wait while its queue is full) and the acks.
        tokio::time::timeout_at(deadline, self.commit_batch_until(events, ids, which, token, deadline))
            .await
            .unwrap_or_else(|_| Err(no_answer()))
    }

    async fn commit_batch_until(
        &self,
        events: &[Event],
        ids: &[String],
        which: &[usize],
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<Outcome, StoreError> {
        let mut backoff = Duration::from_millis(5);
        loop {
            let batch_id = self.next_batch_id();
            let (last, rest) = which.split_last().ok_or(StoreError::plain(ErrorKind::Unavailable, "empty batch"))?;
            let mut subjects = Subjects::new(&self.options.subject_prefix);
            let messages = rest
                .iter()
                .enumerate()
                .map(|(n, i)| {
                    let mut headers = HeaderMap::new();
                    headers.insert(NATS_MESSAGE_ID, ids[*i].as_str());
                    headers.insert(NATS_BATCH_ID, batch_id.as_str());
                    headers.insert(NATS_BATCH_SEQUENCE, decimal(n + 1));
                    if let Some(token) = token {
                        headers.insert(TOKEN_HEADER, token);
                    }
                    (subjects.of(events[*i].ty()), headers, events[*i].json_bytes())
                })
                .collect();
            let commit = (
                subjects.of(events[*last].ty()),
                last_of_batch(&events[*last], &ids[*last], &batch_id, which.len(), token),
            );
            let ack = self.send_batch(messages, commit).await?.await;
            let e = match ack {
                Ok(_) => return Ok(Outcome::Committed),
                Err(e) => e,
            };
            match error_code(&e) {
                Some(code::DUPLICATE) => return Ok(Outcome::Duplicates),
                Some(code::TOO_MANY_INFLIGHT | code::INCOMPLETE) if Instant::now() + backoff < deadline => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                Some(code::TOO_MANY_INFLIGHT | code::INCOMPLETE) => {
                    return Err(StoreError::caused(
                        ErrorKind::Overloaded,
                        "JetStream has too many batches in flight",
                        e,
                    ))
                }
                Some(code::TOO_LARGE) => {
                    return Err(StoreError::caused(
                        ErrorKind::Unavailable,
                        "the batch is larger than NATS takes in one atomic batch",
                        e,
                    ))
                }
                Some(code::DISABLED) => {
                    return Err(StoreError::caused(
                        ErrorKind::Unavailable,
                        "the JetStream stream does not allow atomic batches",
                        e,
                    ))
                }
                _ if unanswered(&e) => return Err(StoreError::caused(ErrorKind::Unanswered, NO_ANSWER, e)),
                _ => return Err(unavailable("JetStream did not acknowledge", e)),
            }
        }
    }

    /// Hands a batch's messages and its commit to the NATS connection, and
    /// returns the commit's ack to await.
    ///
    /// From a task on the runtime the connection's task runs on: there the
    /// connection is woken by the first message but runs only once this
    /// task has queued the whole batch, and writes it in one piece. Queued
    /// from a worker's thread, each message woke the connection's thread at
    /// once and a batch of 100 went out in about three writes, which NATS
    /// paid for in reads and in work per read (bench/nats-vs-inlet.py:
    /// 11 KB per write against the raw publisher's 33 KB).
    ///
    /// The task lives only as long as the request: a request that gives up
    /// (its deadline) aborts it, so whatever of the batch was not yet
    /// handed to the connection never is, the commit included (the batch
    /// then stays uncommitted and NATS stores none of it), and no more
    /// batches are ever being handed over than requests wait at the store
    /// (`--nats-batches-in-flight`), also while NATS stalls and the
    /// connection's queue is full.
    async fn send_batch(
        &self,
        messages: Vec<(Subject, HeaderMap, Bytes)>,
        (subject, commit): (Subject, PublishMessage),
    ) -> Result<PublishAckFuture, StoreError> {
        let (client, context) = (self.client.clone(), self.context.clone());
        let mut task = AbortOnDrop(self.nats_runtime.spawn(async move {
            for (subject, headers, payload) in messages {
                client.publish_with_headers(subject, headers, payload).await.map_err(publish_failed)?;
            }
            context.send_publish(subject, commit).await.map_err(jetstream_publish_failed)
        }));
        (&mut task.0).await.map_err(|e| unavailable("publishing to JetStream", e))?
    }

    /// One of the `--nats-batches-in-flight` places for a batch (or probe),
    /// waited for until `deadline` at most.
    async fn batch_slot(&self, deadline: Instant) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
        tokio::time::timeout_at(deadline, self.batch_slots.acquire())
            .await
            .map_err(|_| busy())?
            .map_err(|_| StoreError::plain(ErrorKind::Closing, "the JetStream store is closing"))
    }

    /// A batch id no other batch of this process uses.
    fn next_batch_id(&self) -> String {
        batch_id(&self.batch_prefix, "-", self.batches.fetch_add(1, Ordering::Relaxed))
    }

    /// For each `ids[i]`, `i` in `which`: whether JetStream saw it within
    /// the duplicate window. Stores nothing (see the module comment); as
    /// many probes in flight as batches may be.
    async fn probe(
        &self,
        events: &[Event],
        ids: &[String],
        which: &[usize],
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<Vec<bool>, StoreError> {
        let slots = self.options.batches_in_flight.max(1);
        let probes: Vec<_> = which.iter().map(|&i| self.probe_one(&events[i], &ids[i], token, deadline)).collect();
        futures::stream::iter(probes).buffered(slots).try_collect().await
    }

    /// Whether JetStream knows `id`: a one-message atomic batch with the id
    /// and an expected last sequence no stream reaches. JetStream checks
    /// the id first: 10201 if it knows it, else 10071 (wrong last
    /// sequence), and stores nothing either way.
    async fn probe_one(
        &self,
        event: &Event,
        id: &str,
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<bool, StoreError> {
        let _slot = self.batch_slot(deadline).await?;
        // A probe stores nothing: no answer in time is a plain failure.
        tokio::time::timeout_at(deadline, self.probe_one_until(event, id, token, deadline))
            .await
            .unwrap_or_else(|_| Err(StoreError::plain(ErrorKind::Unavailable, "asking JetStream about duplicates")))
    }

    async fn probe_one_until(
        &self,
        event: &Event,
        id: &str,
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<bool, StoreError> {
        let mut backoff = Duration::from_millis(5);
        loop {
            let batch_id = self.next_batch_id();
            // The event itself, with its token, so that a server that ignored
            // the expectation would have stored the right message.
            let message =
                last_of_batch(event, id, &batch_id, 1, token).header("Nats-Expected-Last-Sequence", PROBE_EXPECTATION);
            let ack = self
                .context
                .send_publish(subject_for(&self.options.subject_prefix, event.ty()), message)
                .await
                .map_err(|e| unavailable("asking JetStream about duplicates", e))?
                .await;
            let e = match ack {
                Ok(_) => {
                    return Err(StoreError::plain(
                        ErrorKind::Unavailable,
                        "JetStream stored an event outside its batch: this server does not check expectations",
                    ))
                }
                Err(e) => e,
            };
            match error_code(&e) {
                Some(code::DUPLICATE) => return Ok(true),
                Some(code::WRONG_LAST_SEQUENCE) => return Ok(false),
                Some(code::TOO_MANY_INFLIGHT) if Instant::now() + backoff < deadline => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                _ => return Err(unavailable("asking JetStream about duplicates", e)),
            }
        }
    }
}

/// JetStream's answer to a publish: `{"stream": .., "seq": .., "duplicate":
/// true?}`, or `{"error": {"code": .., "err_code": .., "description": ..}}`.
#[derive(serde::Deserialize)]
struct Ack {
    seq: Option<u64>,
    #[serde(default)]
    duplicate: bool,
    error: Option<AckError>,
}

/// A publish JetStream refused, or an answer that is not an ack.
#[derive(Debug, serde::Deserialize)]
pub(super) struct AckError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (error {})", self.description, self.err_code)
    }
}

impl std::error::Error for AckError {}

/// Whether JetStream stored the message (`false`) or had its id already
/// (`true`); an error when it refused it or the answer is not an ack.
pub(super) fn read_ack(payload: &[u8]) -> Result<bool, AckError> {
    if let Some(duplicate) = plain_ack(payload) {
        return Ok(duplicate);
    }
    let not_an_ack = || AckError { err_code: 0, description: "not a JetStream publish ack".into() };
    match serde_json::from_slice::<Ack>(payload) {
        Ok(Ack { error: Some(error), .. }) => Err(error),
        Ok(Ack { seq: Some(_), duplicate, .. }) => Ok(duplicate),
        _ => Err(not_an_ack()),
    }
}

/// `n` in decimal, without the formatting machinery (a batch sequence per
/// message).
pub(super) fn decimal(n: usize) -> String {
    itoa::Buffer::new().format(n).to_owned()
}

/// `<prefix><separator><n>`: a batch id, without the formatting machinery.
pub(super) fn batch_id(prefix: &str, separator: &str, n: u64) -> String {
    let mut digits = itoa::Buffer::new();
    let n = digits.format(n);
    let mut id = String::with_capacity(prefix.len() + separator.len() + n.len());
    id.push_str(prefix);
    id.push_str(separator);
    id.push_str(n);
    id
}

/// The usual ack, read without serde (about 900 instructions less per
/// single event): an object of only `stream` and `domain` (strings of
/// printable ASCII without escapes), `seq` (a decimal `u64`) and
/// `duplicate` (`true` or `false`), each at most once, `seq` present. What
/// it answers serde would answer too; anything else (an error, another
/// field, escapes) is `None`, left to serde.
fn plain_ack(payload: &[u8]) -> Option<bool> {
    fn ws(b: &[u8]) -> &[u8] {
        let n = b.iter().take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')).count();
        &b[n..]
    }
    fn string(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let b = b.strip_prefix(b"\"")?;
        let n = b.iter().take_while(|&&c| c != b'"' && c != b'\\' && (0x20..0x7f).contains(&c)).count();
        Some((&b[..n], b[n..].strip_prefix(b"\"")?))
    }
    let mut rest = payload.strip_prefix(b"{")?;
    let (mut seen, mut duplicate) = (0u8, false);
    loop {
        let (key, after) = string(ws(rest))?;
        rest = ws(ws(after).strip_prefix(b":")?);
        let bit = match key {
            b"stream" | b"domain" => {
                rest = string(rest)?.1;
                if key == b"stream" {
                    1
                } else {
                    2
                }
            }
            b"seq" => {
                let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
                // No leading zero, and short enough for a u64.
                if digits == 0 || digits > 19 || (digits > 1 && rest[0] == b'0') {
                    return None;
                }
                rest = &rest[digits..];
                4
            }
            b"duplicate" => {
                (duplicate, rest) = match rest.strip_prefix(b"true") {
                    Some(after) => (true, after),
                    None => (false, rest.strip_prefix(b"false")?),
                };
                8
            }
            _ => return None,
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        rest = ws(rest);
        match rest.strip_prefix(b",") {
            Some(after) => rest = after,
            None => break,
        }
    }
    (ws(rest.strip_prefix(b"}")?).is_empty() && seen & 4 != 0).then_some(duplicate)
}

/// A task aborted when this is dropped: [`JetStreamStore::send_batch`]'s
/// hand-over of a batch ends with the request that waits for it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The message that ends (commits) an atomic batch of `len` messages:
/// `event` with its id, the batch headers and the token's name.
/// The subjects of a batch's events: a run of events of one type (the
/// usual batch) shares one subject, made once (a `Subject` is a `Bytes`:
/// each event of the run costs a reference count, not the type's
/// conversion and a copy).
struct Subjects<'a> {
    prefix: &'a str,
    last: Option<(&'a str, Subject)>,
}

impl<'a> Subjects<'a> {
    fn new(prefix: &'a str) -> Subjects<'a> {
        Subjects { prefix, last: None }
    }

    /// The subject of an event of type `ty`: [`subject_for`].
    fn of(&mut self, ty: &'a str) -> Subject {
        match &self.last {
            Some((last, subject)) if *last == ty => subject.clone(),
            _ => {
                let subject = Subject::from(subject_for(self.prefix, ty));
                self.last = Some((ty, subject.clone()));
                subject
            }
        }
    }
}

fn last_of_batch(event: &Event, id: &str, batch_id: &str, len: usize, token: Option<&str>) -> PublishMessage {
    let mut message = PublishMessage::build()
        .payload(event.json_bytes())
        .message_id(id)
        .header(NATS_BATCH_ID, batch_id)
        .header(NATS_BATCH_SEQUENCE, decimal(len))
        .header(NATS_BATCH_COMMIT, "1");
    if let Some(token) = token {
        message = message.header(TOKEN_HEADER, token);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_s_subjects_are_each_type_s_subject_in_runs_and_when_types_alternate() {
        let types = ["a.b", "a.b", "a b", "a.b", "", "", "x.y.z", "a.b", "a.b"];
        let mut subjects = Subjects::new("inlet.events");
        for ty in types {
            assert_eq!(subjects.of(ty).as_str(), subject_for("inlet.events", ty), "{ty:?}");
        }
    }

    #[test]
    fn repeats_within_a_request_are_marked_after_their_first() {
        let ids: Vec<String> = ["a", "b", "a", "c", "b", "a"].iter().map(|s| s.to_string()).collect();
        assert_eq!(repeats_within(ids.iter().map(String::as_str)).as_slice(), [false, false, true, false, true, true]);
        assert!(repeats_within(std::iter::empty()).is_empty());
    }

    /// The room kept for headers is the wire size of the largest header
    /// block inlet sends with one event (without a token).
    #[test]
    fn header_room_fits_the_largest_header_block() {
        let batch_id = format!("{}-g{}", "f".repeat(16), u64::MAX);
        let largest = [
            ("Nats-Msg-Id", "a".repeat(64)),
            ("Nats-Batch-Id", batch_id),
            ("Nats-Batch-Sequence", MAX_ATOMIC_BATCH.to_string()),
            ("Nats-Batch-Commit", "1".to_string()),
            ("Nats-Expected-Last-Sequence", PROBE_EXPECTATION.to_string()),
        ];
        let wire: usize =
            "NATS/1.0\r\n\r\n".len() + largest.iter().map(|(k, v)| k.len() + 2 + v.len() + 2).sum::<usize>();
        assert_eq!(HEADER_ROOM, wire);
        assert_eq!(HEADER_ROOM, 246, "docs/scale-out.md says 246");
    }

    #[test]
    fn a_message_the_client_would_not_send_is_told_apart() {
        let too_large = publish_failed(async_nats::PublishError::new(async_nats::PublishErrorKind::MaxPayloadExceeded));
        assert_eq!((too_large.kind(), too_large.reason()), (ErrorKind::TooLarge, TOO_LARGE_FOR_NATS));
        let closed = publish_failed(async_nats::PublishError::new(async_nats::PublishErrorKind::Send));
        assert_eq!(closed.kind(), ErrorKind::Unavailable);
        let too_large = jetstream_publish_failed(PublishError::new(PublishErrorKind::MaxPayloadExceeded));
        assert_eq!(too_large.kind(), ErrorKind::TooLarge);
    }

    /// The ack read without serde answers what serde answers, or leaves it
    /// to serde: nats-server 2.15.1's own acks (the first two, as read off
    /// its socket: `"duplicate": true` with a space), and shapes around them.
    #[test]
    fn the_plain_ack_reading_agrees_with_serde() {
        let read_by_serde = |p: &[u8]| match serde_json::from_slice::<Ack>(p) {
            Ok(Ack { error: None, seq: Some(_), duplicate }) => Some(duplicate),
            _ => None,
        };
        let plain: [(&[u8], bool); 7] = [
            (br#"{"stream":"INLET_EVENTS","seq":82001}"#, false),
            (br#"{"stream":"INLET_EVENTS","seq":82001,"duplicate": true}"#, true),
            (br#"{"stream":"S", "domain":"hub", "seq":3}"#, false),
            (br#"{"stream":"S","seq":0,"duplicate":false}"#, false),
            (br#"{"seq":1844674407370955161,"stream":"S"} "#, false),
            (b"{\"stream\" :\t\"S\"\r\n,\"seq\": 1 }", false),
            (br#"{"duplicate":true,"seq":9}"#, true),
        ];
        for (payload, duplicate) in plain {
            let shown = String::from_utf8_lossy(payload);
            assert_eq!(read_by_serde(payload), Some(duplicate), "{shown}");
            assert_eq!(read_ack(payload).unwrap(), duplicate, "{shown}");
        }
        assert_eq!(plain_ack(br#"{"stream":"S", "seq":12}"#), Some(false));
        assert_eq!(plain_ack(br#"{"stream":"S", "seq":12,"duplicate": true}"#), Some(true));
        // Left to serde, which then decides (an ack for some, not for others).
        let left: [&[u8]; 16] = [
            br#"{"stream":"S"}"#,
            br#"{"stream":"S","seq":007}"#,
            br#"{"stream":"S","seq":18446744073709551615}"#,
            br#"{"stream":"S","seq":184467440737095516150}"#,
            br#"{"stream":"S","seq":-1}"#,
            br#"{"stream":"S","seq":1.5}"#,
            br#"{"stream":"S","seq":1,"seq":2}"#,
            br#"{"stream":"S","seq":1,"duplicate":true,"duplicate":false}"#,
            br#"{"stream":"S\"x","seq":1}"#,
            br#"{"stream":"S","seq":1,"batch":"b","count":2}"#,
            br#"{"stream":"S","seq":1,"val":"3"}"#,
            br#"{"error":{"code":503,"err_code":10077,"description":"x"},"seq":1}"#,
            br#"{"stream":"S","seq":1,}"#,
            br#"{"stream":"S","seq":1} x"#,
            br#"{"stream":"S","seq":1,"duplicate":null}"#,
            b"{\"stream\":\"\xc3\xa9\",\"seq\":1}",
        ];
        for payload in left {
            assert_eq!(plain_ack(payload), None, "{}", String::from_utf8_lossy(payload));
            assert_eq!(read_ack(payload).ok(), read_by_serde(payload), "{}", String::from_utf8_lossy(payload));
        }
    }

    #[test]
    fn numbers_and_batch_ids_are_written_as_format_would() {
        for n in [0, 1, 9, 10, 999, 1000, usize::MAX] {
            assert_eq!(decimal(n), n.to_string());
        }
        assert_eq!(batch_id("0123abcd", "-g", u64::MAX), format!("0123abcd-g{}", u64::MAX));
        assert_eq!(batch_id("0123abcd", "-", 7), "0123abcd-7");
    }

    #[test]
    fn acks_are_read_exactly() {
        assert!(!read_ack(br#"{"stream":"EVENTS","seq":7}"#).unwrap());
        assert!(read_ack(br#"{"stream":"EVENTS","domain":"d","seq":7,"duplicate":true}"#).unwrap());
        assert!(!read_ack(br#"{"stream":"EVENTS","seq":8,"duplicate":false}"#).unwrap());
        let refused = read_ack(br#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}"#);
        let refused = refused.unwrap_err();
        assert_eq!(refused.err_code, 10077);
        assert_eq!(refused.to_string(), "maximum messages exceeded (error 10077)");
        for not_an_ack in [&b""[..], b"{}", b"null", b"{\"stream\":\"EVENTS\"}", b"+OK"] {
            assert_eq!(read_ack(not_an_ack).unwrap_err().err_code, 0, "{:?}", not_an_ack);
        }
    }
}
