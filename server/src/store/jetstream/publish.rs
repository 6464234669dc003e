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

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::message::PublishMessage;
use async_nats::HeaderMap;
use futures::{StreamExt, TryStreamExt};
use inlet_shared::event::Event;
use smallvec::SmallVec;

use super::group::{self, Single};
use super::{message_id, subject_for, unavailable, JetStreamStore, TOKEN_HEADER};
use crate::store::{Appended, ErrorKind, StoreError};

/// Messages in one atomic batch at most: nats-server's limit (ADR-50, and
/// error 10199 past it on 2.15.1).
pub const MAX_ATOMIC_BATCH: usize = 1000;

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

/// How one attempt at an atomic batch ended.
enum Outcome {
    Committed,
    /// Refused as a whole: some id was seen before.
    Duplicates,
}

/// For each id, whether an earlier one of the slice has it.
pub fn repeats_within(ids: &[String]) -> SmallVec<[bool; 8]> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.iter().map(|id| !seen.insert(id.as_str())).collect()
}

impl JetStreamStore {
    /// Publishes a request's events, each with the writing token's name in
    /// its `Inlet-Token` header (none when anonymous).
    pub(super) async fn publish_all(&self, events: &[Event], token: Option<&str>) -> Result<Appended, StoreError> {
        self.check_connected()?;
        self.stream().await?;
        if let [event] = events {
            let id = message_id(&event.source, &event.id);
            return match &self.group {
                Some(queue) => self.publish_grouped(queue, event, id, token).await,
                None => self.publish_one(event, &id, token).await,
            };
        }
        let ids: Vec<String> = events.iter().map(|e| message_id(&e.source, &e.id)).collect();
        let mut duplicate = repeats_within(&ids);
        let mut pending: Vec<usize> = (0..events.len()).filter(|i| !duplicate[*i]).collect();
        for _ in 0..ROUNDS {
            match self.commit_batch(events, &ids, &pending, token).await? {
                Outcome::Committed => return Ok(Appended { duplicate }),
                Outcome::Duplicates => {
                    let known = self.probe(events, &ids, &pending, token).await?;
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

    /// One event through the group publish (`group.rs`): it waits for its
    /// own answer.
    async fn publish_grouped(
        &self,
        queue: &tokio::sync::mpsc::UnboundedSender<Single>,
        event: &Event,
        id: String,
        token: Option<&str>,
    ) -> Result<Appended, StoreError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let single = Single {
            subject: subject_for(&self.options.subject_prefix, &event.ty),
            id,
            payload: event.json_bytes(),
            token: token.map(str::to_owned),
            answer,
        };
        queue.send(single).map_err(|_| group::closing())?;
        let duplicate = answered.await.map_err(|_| group::closing())??;
        Ok(Appended { duplicate: SmallVec::from_elem(duplicate, 1) })
    }

    /// One event: a request to the stream's subject, the reply being
    /// JetStream's ack (read here with [`read_ack`]: cheaper than the
    /// JetStream context's publish, which reads the ack through an untagged
    /// enum and passes each through a semaphore and a channel).
    async fn publish_one(&self, event: &Event, id: &str, token: Option<&str>) -> Result<Appended, StoreError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        if let Some(token) = token {
            headers.insert(TOKEN_HEADER, token);
        }
        let request = async_nats::Request::new()
            .payload(event.json_bytes())
            .headers(headers)
            .timeout(Some(self.options.ack_timeout));
        let reply = self
            .client
            .send_request(subject_for(&self.options.subject_prefix, &event.ty), request)
            .await
            .map_err(|e| unavailable("publishing to JetStream", e))?;
        let duplicate = read_ack(&reply.payload).map_err(|e| unavailable("JetStream did not acknowledge", e))?;
        Ok(Appended { duplicate: SmallVec::from_elem(duplicate, 1) })
    }

    /// Publishes `events[i]` for `i` in `which` as one atomic batch. A batch
    /// refused because the stream is busy (too many batches in flight) is
    /// sent again, with a new id, until the ack timeout has passed.
    async fn commit_batch(
        &self,
        events: &[Event],
        ids: &[String],
        which: &[usize],
        token: Option<&str>,
    ) -> Result<Outcome, StoreError> {
        let _slot = self.batch_slot().await?;
        let deadline = tokio::time::Instant::now() + self.options.ack_timeout;
        let mut backoff = Duration::from_millis(5);
        loop {
            let batch_id = self.next_batch_id();
            let (last, rest) = which.split_last().ok_or(StoreError::plain(ErrorKind::Unavailable, "empty batch"))?;
            for (n, i) in rest.iter().enumerate() {
                let mut headers = HeaderMap::new();
                headers.insert("Nats-Msg-Id", ids[*i].as_str());
                headers.insert("Nats-Batch-Id", batch_id.as_str());
                headers.insert("Nats-Batch-Sequence", (n + 1).to_string().as_str());
                if let Some(token) = token {
                    headers.insert(TOKEN_HEADER, token);
                }
                let subject = subject_for(&self.options.subject_prefix, &events[*i].ty);
                self.client
                    .publish_with_headers(subject, headers, events[*i].json_bytes())
                    .await
                    .map_err(|e| unavailable("publishing to JetStream", e))?;
            }
            let commit = last_of_batch(&events[*last], &ids[*last], &batch_id, which.len(), token);
            let ack = self
                .context
                .send_publish(subject_for(&self.options.subject_prefix, &events[*last].ty), commit)
                .await
                .map_err(|e| unavailable("publishing to JetStream", e))?
                .await;
            let e = match ack {
                Ok(_) => return Ok(Outcome::Committed),
                Err(e) => e,
            };
            match error_code(&e) {
                Some(code::DUPLICATE) => return Ok(Outcome::Duplicates),
                Some(code::TOO_MANY_INFLIGHT | code::INCOMPLETE)
                    if tokio::time::Instant::now() + backoff < deadline =>
                {
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
                _ => return Err(unavailable("JetStream did not acknowledge", e)),
            }
        }
    }

    /// One of the `--nats-batches-in-flight` places for a batch (or probe).
    async fn batch_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
        self.batch_slots
            .acquire()
            .await
            .map_err(|_| StoreError::plain(ErrorKind::Closing, "the JetStream store is closing"))
    }

    /// A batch id no other batch of this process uses.
    fn next_batch_id(&self) -> String {
        format!("{}-{}", self.batch_prefix, self.batches.fetch_add(1, Ordering::Relaxed))
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
    ) -> Result<Vec<bool>, StoreError> {
        let slots = self.options.batches_in_flight.max(1);
        let probes: Vec<_> = which.iter().map(|&i| self.probe_one(&events[i], &ids[i], token)).collect();
        futures::stream::iter(probes).buffered(slots).try_collect().await
    }

    /// Whether JetStream knows `id`: a one-message atomic batch with the id
    /// and an expected last sequence no stream reaches. JetStream checks
    /// the id first: 10201 if it knows it, else 10071 (wrong last
    /// sequence), and stores nothing either way.
    async fn probe_one(&self, event: &Event, id: &str, token: Option<&str>) -> Result<bool, StoreError> {
        let _slot = self.batch_slot().await?;
        let deadline = tokio::time::Instant::now() + self.options.ack_timeout;
        let mut backoff = Duration::from_millis(5);
        loop {
            let batch_id = self.next_batch_id();
            // The event itself, with its token, so that a server that ignored
            // the expectation would have stored the right message.
            let message =
                last_of_batch(event, id, &batch_id, 1, token).header("Nats-Expected-Last-Sequence", PROBE_EXPECTATION);
            let ack = self
                .context
                .send_publish(subject_for(&self.options.subject_prefix, &event.ty), message)
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
                Some(code::TOO_MANY_INFLIGHT) if tokio::time::Instant::now() + backoff < deadline => {
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
    let not_an_ack = || AckError { err_code: 0, description: "not a JetStream publish ack".into() };
    match serde_json::from_slice::<Ack>(payload) {
        Ok(Ack { error: Some(error), .. }) => Err(error),
        Ok(Ack { seq: Some(_), duplicate, .. }) => Ok(duplicate),
        _ => Err(not_an_ack()),
    }
}

/// The message that ends (commits) an atomic batch of `len` messages:
/// `event` with its id, the batch headers and the token's name.
fn last_of_batch(event: &Event, id: &str, batch_id: &str, len: usize, token: Option<&str>) -> PublishMessage {
    let mut message = PublishMessage::build()
        .payload(event.json_bytes())
        .message_id(id)
        .header("Nats-Batch-Id", batch_id)
        .header("Nats-Batch-Sequence", len.to_string().as_str())
        .header("Nats-Batch-Commit", "1");
    if let Some(token) = token {
        message = message.header(TOKEN_HEADER, token);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_a_request_are_marked_after_their_first() {
        let ids: Vec<String> = ["a", "b", "a", "c", "b", "a"].iter().map(|s| s.to_string()).collect();
        assert_eq!(repeats_within(&ids).as_slice(), [false, false, true, false, true, true]);
        assert!(repeats_within(&[]).is_empty());
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
