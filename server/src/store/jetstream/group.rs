//! Group publish: single-event requests that arrive while earlier ones are
//! at NATS are sent together, as one atomic batch, so that NATS stores
//! several messages per raft append and fsync (the SQLite store's group
//! commit, for JetStream).
//!
//! - A request hands its event to a queue and waits for its own answer.
//! - One task takes the queue: it waits for one of
//!   `--nats-group-in-flight` places, then takes whatever queued (up to
//!   [`MAX_GROUP`] events) and publishes it, without waiting for more. So a
//!   request waits to be grouped only while all places are taken, that is
//!   until the oldest group in flight is acknowledged (one NATS round
//!   trip), and never past its own deadline; with a place free it goes at
//!   once, alone if nothing else is queued.
//! - With nothing in flight (every place free but the one the task holds
//!   while it waits), a request publishes its event itself, as a plain
//!   publish with its own deadline, without the hand-over to the task
//!   ([`Queue::idle_place`]): what the task would have done at once. With
//!   `--nats-group-in-flight 1` the task holds the only place, so every
//!   event goes through it.
//! - A group of one is a plain publish. A larger one is an atomic batch of
//!   its distinct ids; a repeat of an id within the group is answered as a
//!   duplicate once the batch committed. Each message keeps its own
//!   `Inlet-Token` header.
//! - JetStream refuses an atomic batch as a whole (nothing stored) when one
//!   of its ids was seen before (10201) or one message is refused (too
//!   large, say). Then every event of the group is published on its own,
//!   as without grouping, and each request gets its own answer: one
//!   request's duplicate or refusal never changes another's. Repeats within
//!   the group go after their first occurrence was answered.
//! - A message the NATS client would not send (over the server's
//!   `max_payload`: checked before queueing, so only if the limit changed)
//!   leaves its batch uncommitted: as for a refusal, each event is then
//!   published alone, and only that one fails.
//! - Each request waits until its own deadline (the ack timeout from when
//!   it reached the store), the wait for a group place included. Still
//!   queued at its deadline (all places taken), it is taken out of the
//!   queue and answered that nothing was stored; taken into a group, it may
//!   have gone out, and gets the no-answer error.
//! - A group has one deadline, the latest of its requests' deadlines:
//!   every wait on NATS (handing messages to the connection, the ack, the
//!   pause before resending a batch refused as busy, the one-by-one
//!   fallback) ends there. A batch that got no answer (NATS unreachable, no
//!   ack by the deadline) may or may not be stored: each of its requests,
//!   and each still waiting at its deadline, gets the no-answer error
//!   (`503` saying the events may have been stored).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::header::{NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, message::PublishMessage};
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Semaphore};

use tokio::time::Instant;

use super::publish::{
    batch_id, code, decimal, error_code, jetstream_publish_failed, publish_failed, read_ack, repeats_within, too_large,
    unanswered,
};
use super::{no_answer, unavailable, NO_ANSWER, TOKEN_HEADER};
use crate::store::{ErrorKind, StoreError};

/// Events in one group at most.
pub const MAX_GROUP: usize = 100;

/// One single-event request waiting for its answer: whether JetStream had
/// its id already.
pub(super) struct Single {
    pub subject: Subject,
    pub id: String,
    pub payload: Bytes,
    pub token: Option<String>,
    /// The request's deadline: it waits for its answer until then.
    pub deadline: Instant,
    /// Set by whoever claims the event first: the group that takes it (it
    /// goes out), or the request when its deadline passed while it was
    /// still queued (it never goes out).
    pub claimed: Arc<AtomicBool>,
    pub answer: oneshot::Sender<Result<bool, StoreError>>,
}

impl Single {
    /// Takes the event for a group, unless its request gave up on it.
    fn claim(&self) -> bool {
        !self.claimed.swap(true, Ordering::AcqRel)
    }
}

/// What publishing a group needs.
pub(super) struct Grouper {
    pub client: async_nats::Client,
    pub context: jetstream::Context,
    pub ack_timeout: Duration,
    /// Batch ids are `<prefix>-g<n>`, apart from the request batches' ids.
    pub batch_prefix: String,
    pub batches: AtomicU64,
}

/// Where a single event goes: straight out when nothing is in flight, else
/// into the queue of the task that groups.
pub(super) struct Queue {
    pub queue: mpsc::UnboundedSender<Single>,
    /// The `--nats-group-in-flight` places, shared by the task that groups
    /// and the requests that publish themselves ([`Queue::idle_place`]).
    places: Arc<Semaphore>,
    in_flight: usize,
}

impl Queue {
    /// A place for a request to publish its event itself, alone, without
    /// going through the task that groups (a hand-over between threads and
    /// a task fewer: about 7,900 instructions per request at one request at
    /// a time), when nothing is in flight: every place free but the one the
    /// task that groups holds while it waits for events. Then the task
    /// would have sent the event at once and alone too. With anything in
    /// flight the event goes to the queue as before, so grouping under load
    /// is unchanged (letting requests take any free place made most of
    /// them go alone under load: NATS then spent more per event). Two
    /// requests may both find nothing in flight and go together; both are
    /// within the places. A request that goes alone is the publish of
    /// `--nats-group-in-flight 0`, with its own deadline, and holds its
    /// place until answered (or until the request is dropped).
    pub fn idle_place(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        if self.places.available_permits() + 1 < self.in_flight {
            return None;
        }
        self.places.try_acquire().ok()
    }
}

/// Starts the task that groups; single events are sent to the returned queue.
pub(super) fn start(grouper: Grouper, in_flight: usize) -> Queue {
    let (queue, mut waiting) = mpsc::unbounded_channel::<Single>();
    let grouper = Arc::new(grouper);
    let in_flight = in_flight.max(1);
    let places = Arc::new(Semaphore::new(in_flight));
    let shared = places.clone();
    tokio::spawn(async move {
        loop {
            let Ok(place) = places.clone().acquire_owned().await else { break };
            let mut group = Vec::with_capacity(8);
            while group.is_empty() {
                let Some(single) = waiting.recv().await else { return };
                if single.claim() {
                    group.push(single);
                }
            }
            while group.len() < MAX_GROUP {
                match waiting.try_recv() {
                    Ok(single) if single.claim() => group.push(single),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let grouper = grouper.clone();
            tokio::spawn(async move {
                grouper.publish(group).await;
                drop(place);
            });
        }
    });
    Queue { queue, places: shared, in_flight }
}

impl Grouper {
    /// Publishes a group and answers each of its requests, all within one
    /// deadline: the latest of its requests' deadlines (no later than the
    /// ack timeout from now; each request stops waiting at its own). Every
    /// wait on NATS (handing a message to the connection, the ack, the
    /// pause before a retry, the one-by-one fallback) ends at it; a request
    /// not answered by then gets the no-answer error.
    async fn publish(&self, mut group: Vec<Single>) {
        let latest = group.iter().map(|s| s.deadline).max();
        let deadline = latest.map_or(Instant::now() + self.ack_timeout, |d| d.min(Instant::now() + self.ack_timeout));
        if group.len() == 1 {
            if let Some(Single { subject, id, payload, token, answer, .. }) = group.pop() {
                // Its subject and id move into the message, not copied.
                let published = self.publish_one(subject, id, payload, token.as_deref(), deadline).await;
                let _ = answer.send(published.map_err(Failed::into_error));
            }
            return;
        }
        let repeat = repeats_within(group.iter().map(|s| s.id.as_str()));
        let (mut firsts, mut repeats) = (Vec::with_capacity(group.len()), Vec::new());
        for (single, repeat) in group.into_iter().zip(repeat) {
            if repeat {
                repeats.push(single);
            } else {
                firsts.push(single);
            }
        }
        let committed = if let [one] = firsts.as_slice() {
            self.publish_one_of(one, deadline).await
        } else {
            self.commit(&firsts, deadline).await
        };
        match committed {
            // Stored (or, for a group of one distinct id, known already):
            // a repeat is a duplicate either way.
            Ok(duplicate) => {
                answer_all(firsts, Ok(duplicate));
                answer_all(repeats, Ok(true));
            }
            Err(Failed::Unanswered(e)) => {
                answer_all(firsts, Err(e.clone()));
                answer_all(repeats, Err(e));
            }
            Err(Failed::NotStored(e)) if firsts.len() == 1 => {
                answer_all(firsts, Err(e.clone()));
                self.each_alone(repeats, deadline).await;
            }
            Err(Failed::NotStored(e)) => {
                tracing::debug!(
                    events = firsts.len(),
                    "group not stored ({}); publishing its events one by one",
                    e.chain()
                );
                self.each_alone(firsts, deadline).await;
                self.each_alone(repeats, deadline).await;
            }
        }
    }

    /// Publishes each event on its own, all at once, and answers each.
    async fn each_alone(&self, singles: Vec<Single>, deadline: Instant) {
        let answers = futures::future::join_all(singles.iter().map(|s| self.publish_one_of(s, deadline))).await;
        for (single, answer) in singles.into_iter().zip(answers) {
            let _ = single.answer.send(answer.map_err(Failed::into_error));
        }
    }

    /// [`Self::publish_one`] of an event its request still waits for.
    async fn publish_one_of(&self, single: &Single, deadline: Instant) -> Result<bool, Failed> {
        let (subject, id, payload) = (single.subject.clone(), single.id.clone(), single.payload.clone());
        self.publish_one(subject, id, payload, single.token.as_deref(), deadline).await
    }

    /// One event: a core NATS request whose reply is JetStream's ack.
    async fn publish_one(
        &self,
        subject: Subject,
        id: String,
        payload: Bytes,
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<bool, Failed> {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, id);
        if let Some(token) = token {
            headers.insert(TOKEN_HEADER, token);
        }
        let request = async_nats::Request::new().payload(payload).headers(headers).timeout(Some(self.ack_timeout));
        let reply = match tokio::time::timeout_at(deadline, self.client.send_request(subject, request)).await {
            Err(_) => return Err(Failed::Unanswered(no_answer())),
            Ok(Err(e)) => return Err(request_failed(e)),
            Ok(Ok(reply)) => reply,
        };
        read_ack(&reply.payload).map_err(|e| Failed::NotStored(unavailable("JetStream did not acknowledge", e)))
    }

    /// The events as one atomic batch, within `deadline`. A batch refused
    /// because the stream is busy (too many batches in flight) is sent
    /// again, with a new id, while the deadline allows; any other refusal,
    /// and a message the client could not send (too large, say: the batch
    /// is then never committed), is the caller's to answer (each event
    /// alone), without retrying.
    async fn commit(&self, singles: &[Single], deadline: Instant) -> Result<bool, Failed> {
        let mut backoff = Duration::from_millis(5);
        let Some((last, rest)) = singles.split_last() else { return Ok(false) };
        loop {
            let batch_id = batch_id(&self.batch_prefix, "-g", self.batches.fetch_add(1, Ordering::Relaxed));
            for (n, single) in rest.iter().enumerate() {
                let mut headers = HeaderMap::new();
                headers.insert(NATS_MESSAGE_ID, single.id.as_str());
                headers.insert(NATS_BATCH_ID, batch_id.as_str());
                headers.insert(NATS_BATCH_SEQUENCE, decimal(n + 1));
                if let Some(token) = &single.token {
                    headers.insert(TOKEN_HEADER, token.as_str());
                }
                let sent = self.client.publish_with_headers(single.subject.clone(), headers, single.payload.clone());
                match tokio::time::timeout_at(deadline, sent).await {
                    // Nothing committed; the messages sent are dropped with
                    // the incomplete batch.
                    Err(_) => return Err(Failed::Unanswered(no_answer())),
                    Ok(Err(e)) => return Err(Failed::NotStored(publish_failed(e))),
                    Ok(Ok(())) => {}
                }
            }
            let mut commit = PublishMessage::build()
                .payload(last.payload.clone())
                .message_id(last.id.as_str())
                .header(NATS_BATCH_ID, batch_id.as_str())
                .header(NATS_BATCH_SEQUENCE, decimal(singles.len()))
                .header(NATS_BATCH_COMMIT, "1");
            if let Some(token) = &last.token {
                commit = commit.header(TOKEN_HEADER, token.as_str());
            }
            let ack = match tokio::time::timeout_at(deadline, self.context.send_publish(last.subject.clone(), commit))
                .await
            {
                Err(_) => return Err(Failed::Unanswered(no_answer())),
                Ok(Err(e)) => return Err(Failed::NotStored(jetstream_publish_failed(e))),
                Ok(Ok(ack)) => ack,
            };
            let e = match tokio::time::timeout_at(deadline, ack).await {
                Err(_) => return Err(Failed::Unanswered(no_answer())),
                Ok(Ok(_)) => return Ok(false),
                Ok(Err(e)) => e,
            };
            match error_code(&e) {
                Some(code::TOO_MANY_INFLIGHT) if Instant::now() + backoff < deadline => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                // Busy until the deadline: nothing stored, no time left to
                // try each event alone.
                Some(code::TOO_MANY_INFLIGHT) => {
                    return Err(Failed::Unanswered(StoreError::caused(
                        ErrorKind::Overloaded,
                        "JetStream has too many batches in flight",
                        e,
                    )))
                }
                // JetStream answered: the batch was refused as a whole (a
                // message of it refused, say too large for the stream,
                // makes it incomplete: 10176 on nats-server 2.15.1).
                Some(c) => {
                    tracing::debug!(code = c, "JetStream refused a group");
                    return Err(Failed::NotStored(unavailable("JetStream refused the batch", e)));
                }
                None if unanswered(&e) => {
                    return Err(Failed::Unanswered(StoreError::caused(ErrorKind::Unanswered, NO_ANSWER, e)))
                }
                // No stream answered (no responders): nothing stored.
                None => return Err(Failed::NotStored(unavailable("JetStream did not acknowledge", e))),
            }
        }
    }
}

/// How publishing failed.
enum Failed {
    /// Nothing was stored: JetStream answered with a refusal, or the client
    /// could not send a message (too large, say) and a batch was never
    /// committed. Each event may be tried alone.
    NotStored(StoreError),
    /// No answer (NATS unreachable, no ack within the deadline): maybe
    /// stored.
    Unanswered(StoreError),
}

impl Failed {
    fn into_error(self) -> StoreError {
        match self {
            Failed::NotStored(e) | Failed::Unanswered(e) => e,
        }
    }
}

/// A request to NATS that failed: refused by the client before it was
/// sent (too large, a bad subject), without a JetStream stream to take it
/// (no responders: nothing stored), or without an answer (maybe stored).
fn request_failed(e: async_nats::RequestError) -> Failed {
    use async_nats::RequestErrorKind as Kind;
    match e.kind() {
        Kind::MaxPayloadExceeded => Failed::NotStored(too_large(e)),
        Kind::InvalidSubject | Kind::NoResponders => Failed::NotStored(unavailable("publishing to JetStream", e)),
        Kind::TimedOut | Kind::Other => Failed::Unanswered(StoreError::caused(ErrorKind::Unanswered, NO_ANSWER, e)),
    }
}

fn answer_all(singles: Vec<Single>, answer: Result<bool, StoreError>) {
    for single in singles {
        let _ = single.answer.send(answer.clone());
    }
}

/// A group's single answered `Err` when the queue's task is gone.
pub(super) fn closing() -> StoreError {
    StoreError::plain(ErrorKind::Closing, "the JetStream store is closing")
}

#[cfg(test)]
mod tests {
    use async_nats::{RequestError, RequestErrorKind as Kind};

    use super::*;

    /// A request goes alone only when nothing is in flight: every place
    /// free but the one the task that groups holds while it waits.
    #[test]
    fn a_request_goes_alone_only_when_nothing_is_in_flight() {
        let (queue, _waiting) = mpsc::unbounded_channel();
        let places = Arc::new(Semaphore::new(4));
        let q = Queue { queue, places: places.clone(), in_flight: 4 };
        let task = places.try_acquire().unwrap();
        let alone = q.idle_place().expect("nothing in flight");
        assert_eq!(places.available_permits(), 2);
        assert!(q.idle_place().is_none(), "one request in flight: the next is queued");
        drop(alone);
        let group = places.try_acquire().unwrap();
        assert!(q.idle_place().is_none(), "a group in flight: queued");
        drop((group, task));
        // The task that groups not holding its place (a group just sent):
        // all four free, one taken alone.
        assert!(q.idle_place().is_some());

        // One place (`--nats-group-in-flight 1`), held by the task: never alone.
        let (queue, _waiting) = mpsc::unbounded_channel();
        let places = Arc::new(Semaphore::new(1));
        let q = Queue { queue, places: places.clone(), in_flight: 1 };
        let _task = places.try_acquire().unwrap();
        assert!(q.idle_place().is_none());
    }

    /// What a failed request means for its group: refused by the client or
    /// without a stream (nothing stored: each event may go alone), or
    /// without an answer (maybe stored: the no-answer error).
    #[test]
    fn request_failures_are_told_apart() {
        let not_stored = |kind| match request_failed(RequestError::new(kind)) {
            Failed::NotStored(e) => (e.kind(), e.reason()),
            Failed::Unanswered(e) => panic!("{kind:?} counted as unanswered: {}", e.chain()),
        };
        assert_eq!(not_stored(Kind::MaxPayloadExceeded).0, ErrorKind::TooLarge);
        assert_eq!(not_stored(Kind::NoResponders), (ErrorKind::Unavailable, "publishing to JetStream"));
        assert_eq!(not_stored(Kind::InvalidSubject), (ErrorKind::Unavailable, "publishing to JetStream"));
        for kind in [Kind::TimedOut, Kind::Other] {
            match request_failed(RequestError::new(kind)) {
                Failed::Unanswered(e) => assert_eq!((e.kind(), e.reason()), (ErrorKind::Unanswered, NO_ANSWER)),
                Failed::NotStored(e) => panic!("{kind:?} counted as not stored: {}", e.chain()),
            }
        }
    }
}
