//! `--store jetstream`: events published to a NATS JetStream stream, so that
//! many `inlet-server`s behind a load balancer feed one replicated log.
//!
//! - Each event goes to `<prefix>.<type>` (the type made subject-safe), its
//!   body is the CloudEvent JSON, and its `Nats-Msg-Id` is a SHA-256 of
//!   (source, id): JetStream drops a message whose id it has seen within the
//!   stream's duplicate window, whichever server published it.
//! - A request is acknowledged only after JetStream acknowledged it: one
//!   event is one publish; more are one atomic batch, stored wholly or not
//!   at all (`publish.rs`, with how dedupe works inside a batch).
//! - The name of the token that wrote an event travels in the message's
//!   `Inlet-Token` header (absent when written anonymously).
//! - `GET /events` reads the stream by sequence with batched direct gets
//!   (the type filter through the subject, the source and token filters
//!   here; `read.rs`).
//! - While NATS is unreachable every write is refused at once (`503`); the
//!   client reconnects by itself and the store is ready again when it has.
//!   A write sent without an answer in time is the no-answer error (the
//!   events may be stored).
//! - One deadline per request: the ack timeout from when the request
//!   reaches the store. Every wait of the request ends there: for the
//!   stream to be set up (one attempt at a time, shared by all waiters:
//!   `setup.rs`), for a place for its batch (`--nats-batches-in-flight`) or
//!   its group (`--nats-group-in-flight`), handing messages to the
//!   connection, acks, retries of a busy batch, dedupe probes. At the deadline the request
//!   gets the no-answer error if a message of it went out, otherwise a
//!   `503` saying nothing was stored. (`GET /events` and readiness bound
//!   their wait for the stream the same way; the readiness probe by
//!   [`STREAM_PROBE`].)
//! - An event larger than the NATS server's `max_payload` (with the room
//!   kept for headers) is refused before anything is sent (`413`).
//!
//! - `--keep-rejected` keeps refused events in a second stream
//!   (`rejected.rs`).
//!
//! Dedupe guarantee: inside the duplicate window (`--duplicate-window`,
//! default 2 minutes) a repeat is reported as a duplicate and stored once.
//! Outside it, a repeat is stored again.

mod group;
mod names;
mod publish;
mod read;
mod rejected;
mod setup;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, stream};
use async_nats::Subject;
use futures::future::{BoxFuture, FutureExt};
use inlet_shared::event::Event;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use read::direct_get_batch;

use super::{Appended, ErrorKind, NotReady, OpenError, PageStream, Query, Store, StoreError};

pub use publish::MAX_ATOMIC_BATCH;

/// The message header that holds the writing token's name.
pub(super) const TOKEN_HEADER: &str = "Inlet-Token";

/// Settings of the JetStream store.
#[derive(Debug, Clone)]
pub struct Options {
    pub urls: Vec<String>,
    pub stream: String,
    pub subject_prefix: String,
    pub replicas: usize,
    pub max_age: Duration,
    pub max_bytes: i64,
    pub duplicate_window: Duration,
    /// `--nats-ack-timeout`: the one deadline of each request at the store
    /// (its wait for a place, its publish and the ack, or a read).
    pub ack_timeout: Duration,
    /// Atomic batches this server has in flight at most (nats-server takes
    /// 50 per stream, from all publishers together).
    pub batches_in_flight: usize,
    /// Groups of single events this server has in flight at most
    /// (`group.rs`); 0: no grouping, each single event is published alone.
    pub group_in_flight: usize,
    /// The largest batch a request may carry (`--max-batch`): at most
    /// [`MAX_ATOMIC_BATCH`], or the store refuses to start.
    pub max_batch: usize,
    /// `--keep-rejected`: refused events are kept in the stream
    /// `<stream>_REJECTED` (`rejected.rs`).
    pub keep_rejected: Option<super::RejectedOptions>,
}

pub struct JetStreamStore {
    client: async_nats::Client,
    context: jetstream::Context,
    /// The runtime the NATS client's connection task runs on (the one that
    /// opened the store: the main thread's). A request's atomic batch is
    /// handed to the connection from a task on it (`publish.rs`,
    /// `send_batch`), so the connection writes the batch in one piece.
    nats_runtime: tokio::runtime::Handle,
    options: Options,
    /// The stream, set up once (`stream()`).
    stream: setup::SetUp<stream::Stream>,
    ready: Arc<AtomicBool>,
    /// Bounds the atomic batches in flight.
    batch_slots: Semaphore,
    /// `Nats-Batch-Id`s are `<batch_prefix>-<n>`: random per process, so
    /// that no two servers share one.
    batch_prefix: String,
    batches: AtomicU64,
    /// The queue of single events to group (`group.rs`); `None` with
    /// `--nats-group-in-flight 0`.
    group: Option<group::Queue>,
    /// Subscribers hear of this server's appends at once; other servers
    /// writing the same stream are seen by looking again every
    /// [`LIVE_POLL`].
    live: Arc<crate::store::Live>,
    /// `--keep-rejected`.
    rejected: Option<Arc<rejected::JetStreamRejected>>,
    /// The subject of the last type a single event was published under.
    last_subject: LastSubject,
}

/// The subject of the last type published, kept: single events of one
/// type (the usual stream of them) share one subject, a `Bytes` whose clone
/// is a reference count, instead of converting the type and copying the
/// subject per event (about 450 instructions). Never waited for: when
/// another request holds it, the subject is made as without it.
#[derive(Default)]
struct LastSubject(std::sync::Mutex<Option<(Box<str>, Subject)>>);

impl LastSubject {
    /// [`subject_for`]`(prefix, ty)`; `prefix` is the store's, always the same.
    fn of(&self, prefix: &str, ty: &str) -> Subject {
        if let Ok(last) = self.0.try_lock() {
            if let Some((last_ty, subject)) = &*last {
                if **last_ty == *ty {
                    return subject.clone();
                }
            }
        }
        let subject = Subject::from(subject_for(prefix, ty));
        if let Ok(mut last) = self.0.try_lock() {
            *last = Some((ty.into(), subject.clone()));
        }
        subject
    }
}

/// Why a request was refused when its deadline passed while the stream was
/// being set up (nothing of it went out).
const STREAM_NOT_IN_TIME: &str = "the JetStream stream could not be set up in time";

/// How often a subscriber looks at the stream without a notification.
const LIVE_POLL: Duration = Duration::from_secs(1);

/// How long a readiness probe waits for NATS to find the stream.
const STREAM_PROBE: Duration = Duration::from_millis(500);

/// Why the stream cannot take atomic batches and inlet will not start.
const NOT_ATOMIC: &str = "the JetStream stream does not allow atomic batches and could not be updated to";

/// Why the stream cannot take direct gets (how `GET /events` reads) and
/// inlet will not start.
const NOT_DIRECT: &str = "the JetStream stream does not allow direct gets and could not be updated to";

/// Why an existing stream cannot take this server's events, and inlet will
/// not start (found later, when NATS was away at start: every write `503`).
const WRONG_SUBJECTS: &str = "the JetStream stream does not take this server's subjects";

/// Makes a CloudEvents type usable as subject tokens: `.` separates tokens,
/// other characters outside `[A-Za-z0-9_-]` become `_`, empty tokens `_`.
/// Once per event published: a type that is already a valid subject (the
/// usual case, `com.example.order`) is appended as it is, after one check.
///
/// A type whose tokens would be longer than [`MAX_TYPE_SUBJECT`] bytes
/// becomes the one token `long~<SHA-256 of the type, hex>`: a NATS
/// publish's control line (`HPUB <subject> <reply> <sizes>`) may be 4,096
/// bytes at most, and nats-server drops the whole connection, every
/// request in flight with it, on a longer one. The token is still one per
/// type, so `GET /events?type=` finds the type's events, and no short type
/// maps to it (`~` is never in a mapped token).
pub fn subject_for(prefix: &str, ty: &str) -> String {
    let mut subject = String::with_capacity(prefix.len() + ty.len().min(MAX_TYPE_SUBJECT) + 2);
    subject.push_str(prefix);
    if ty.len() <= MAX_TYPE_SUBJECT && is_subject_tokens(ty) {
        subject.push('.');
        subject.push_str(ty);
        return subject;
    }
    for token in ty.split('.') {
        subject.push('.');
        if token.is_empty() {
            subject.push('_');
        }
        subject.extend(token.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }));
        if subject.len() - prefix.len() > MAX_TYPE_SUBJECT + 1 {
            subject.truncate(prefix.len());
            subject.push_str(".long~");
            subject.push_str(&hex(&Sha256::digest(ty.as_bytes())));
            return subject;
        }
    }
    subject
}

/// The longest a type's part of a subject may be, in bytes: with the
/// longest `--subject-prefix` (`names::MAX_PREFIX`), the rejected events'
/// `_rejected.t` and the reply inbox it stays far under NATS's 4,096-byte
/// control line.
pub const MAX_TYPE_SUBJECT: usize = 2048;

/// Lowercase hex of `bytes` (a SHA-256 per event published: the message
/// id, and the subject of a very long type).
fn hex(bytes: &[u8]) -> String {
    // Two digits per byte from one table, written in place: a `push` per
    // digit checked the capacity 64 times (about 1,000 instructions per
    // event; now about 150).
    const PAIRS: [[u8; 2]; 256] = {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut pairs = [[0; 2]; 256];
        let mut b = 0;
        while b < 256 {
            pairs[b] = [HEX[b >> 4], HEX[b & 0xf]];
            b += 1;
        }
        pairs
    };
    let mut out = vec![0; bytes.len() * 2];
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&PAIRS[usize::from(b)]);
    }
    // Hex digits only: always UTF-8, and checked as such with the ASCII
    // fast path (`from_utf8_lossy` walked it in chunks: about 500
    // instructions per event more).
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Whether `ty` is tokens of `[A-Za-z0-9_-]` separated by single dots, with
/// no empty token: what [`subject_for`] would leave unchanged.
fn is_subject_tokens(ty: &str) -> bool {
    let mut after_dot = true;
    for &b in ty.as_bytes() {
        match b {
            b'.' if after_dot => return false,
            b'.' => after_dot = true,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => after_dot = false,
            _ => return false,
        }
    }
    !after_dot
}

/// `Nats-Msg-Id` for an event: SHA-256 over the length-prefixed source and
/// the id, so that no two (source, id) pairs can share one; lowercase hex.
/// The ids must never change between versions (JetStream dedupes on them
/// across servers and restarts), hence the test that pins them.
pub fn message_id(source: &str, id: &str) -> String {
    let mut hash = Sha256::new();
    hash.update((source.len() as u64).to_be_bytes());
    hash.update(source.as_bytes());
    hash.update(id.as_bytes());
    hex(&hash.finalize())
}

/// The reason of a write NATS gave no answer to (no ack in time, the
/// connection lost after the message went out): the events may have been
/// stored. The handler tells the client so (`503`, resend with the same ids).
/// The reason given for a write sent without an answer.
pub(super) const NO_ANSWER: &str = "the store did not answer";

/// A write without an answer within its deadline.
fn no_answer() -> StoreError {
    StoreError::plain(ErrorKind::Unanswered, NO_ANSWER)
}

/// How long closing waits for NATS to take what is still buffered.
const CLOSE_FLUSH: Duration = Duration::from_secs(3);

/// A failed JetStream call: the store is unavailable; `what` (a short
/// reason) is shown to the client, the NATS error kept as the cause.
fn unavailable(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::caused(ErrorKind::Unavailable, what, e)
}

impl JetStreamStore {
    pub async fn open(options: Options) -> Result<JetStreamStore, OpenError> {
        names::check(&options.stream, &options.subject_prefix, options.keep_rejected.is_some())
            .map_err(OpenError::Jetstream)?;
        if options.max_batch > MAX_ATOMIC_BATCH {
            return Err(OpenError::Jetstream(format!(
                "--max-batch {} is more than the {MAX_ATOMIC_BATCH} events NATS takes in one atomic batch",
                options.max_batch
            )));
        }
        let servers = options
            .urls
            .iter()
            .map(|u| {
                u.parse::<async_nats::ServerAddr>().map_err(|source| OpenError::NatsUrl { url: u.clone(), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .max_reconnects(None)
            .event_callback(move |event| {
                let flag = flag.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            flag.store(true, Ordering::SeqCst);
                            tracing::info!("NATS connected");
                        }
                        async_nats::Event::Disconnected => {
                            flag.store(false, Ordering::SeqCst);
                            tracing::warn!("NATS disconnected; writes answer 503 until it is back");
                        }
                        other => tracing::info!("NATS: {other}"),
                    }
                }
            })
            .connect(servers.as_slice())
            .await
            .map_err(OpenError::Nats)?;
        let mut context = jetstream::new(client.clone());
        context.set_timeout(options.ack_timeout);
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| OpenError::Jetstream(format!("no randomness for batch ids: {e}")))?;
        let batch_prefix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let group = (options.group_in_flight > 0).then(|| {
            let grouper = group::Grouper {
                client: client.clone(),
                context: context.clone(),
                ack_timeout: options.ack_timeout,
                batch_prefix: batch_prefix.clone(),
                batches: AtomicU64::new(0),
            };
            group::start(grouper, options.group_in_flight)
        });
        let rejected = match options.keep_rejected {
            Some(kept) => {
                let names = rejected::Names::new(&options.stream, &options.subject_prefix, options.replicas, kept);
                let log = rejected::JetStreamRejected::open(
                    client.clone(),
                    context.clone(),
                    names,
                    options.ack_timeout,
                    Duration::from_secs(2),
                )
                .await;
                Some(Arc::new(log))
            }
            None => None,
        };
        let store = JetStreamStore {
            rejected,
            client,
            context,
            nats_runtime: tokio::runtime::Handle::current(),
            batch_slots: Semaphore::new(options.batches_in_flight.max(1)),
            options,
            stream: setup::SetUp::new(),
            ready,
            batch_prefix,
            batches: AtomicU64::new(0),
            group,
            live: crate::store::Live::with_poll(LIVE_POLL),
            last_subject: LastSubject::default(),
        };
        // Create or check the stream now if NATS is there; otherwise on first use.
        // (An attempt not done in 2 s goes on; requests wait for it.)
        match store.stream(Instant::now() + Duration::from_secs(2)).await {
            Ok(_) => tracing::info!(stream = %store.options.stream, "JetStream stream ready"),
            Err(e) if [NOT_ATOMIC, NOT_DIRECT, WRONG_SUBJECTS].contains(&e.reason()) => {
                return Err(OpenError::Jetstream(e.chain()))
            }
            Err(e) if e.reason() == STREAM_NOT_IN_TIME => {
                tracing::warn!("NATS not reachable yet; writes answer 503 until it is")
            }
            Err(e) => tracing::warn!("JetStream stream not ready yet: {e}"),
        }
        Ok(store)
    }

    fn stream_config(&self) -> stream::Config {
        let o = &self.options;
        stream::Config {
            name: o.stream.clone(),
            subjects: vec![format!("{}.>", o.subject_prefix)],
            storage: stream::StorageType::File,
            num_replicas: o.replicas,
            max_age: o.max_age,
            max_bytes: o.max_bytes,
            duplicate_window: o.duplicate_window,
            allow_direct: true,
            allow_atomic_publish: true,
            description: Some("CloudEvents accepted by inlet".into()),
            ..Default::default()
        }
    }

    /// The stream, created (or found) on first success. An existing stream
    /// without `allow_atomic` is updated to allow atomic batches (nothing
    /// else of its config changes); if NATS refuses that, so does inlet.
    ///
    /// Waits until `deadline` at most (the request's one deadline), for
    /// one attempt at a time shared by all waiters (`setup.rs`).
    async fn stream(&self, deadline: Instant) -> Result<&stream::Stream, StoreError> {
        self.stream
            .get_or_set_up(deadline, STREAM_NOT_IN_TIME, || {
                let prefix = self.options.subject_prefix.clone();
                let keep_rejected = self.options.keep_rejected.is_some();
                set_up_stream(self.context.clone(), self.stream_config(), prefix, keep_rejected).boxed()
            })
            .await
    }

    fn check_connected(&self) -> Result<(), StoreError> {
        if self.client.connection_state() == State::Connected {
            Ok(())
        } else {
            Err(StoreError::plain(ErrorKind::Unavailable, "NATS is unreachable"))
        }
    }
}

/// Creates (or finds) the stream; see [`JetStreamStore::stream`].
///
/// A stream found is checked against this server's subjects (its filters
/// must take `<prefix>.>`, and with `--keep-rejected` none may take
/// `<prefix>_rejected.>`) and refused otherwise: publishes to it would find
/// no stream, or the rejected events' stream could not be made. inlet does
/// not change which subjects a stream takes (that could take them from
/// another stream). It does update a stream that lacks `allow_atomic`
/// (atomic batches) or `allow_direct` (the direct gets `GET /events` reads
/// with), in one update that changes nothing else.
async fn set_up_stream(
    context: jetstream::Context,
    config: stream::Config,
    prefix: String,
    keep_rejected: bool,
) -> Result<stream::Stream, StoreError> {
    let name = config.name.clone();
    let mut stream =
        context.get_or_create_stream(config).await.map_err(|e| unavailable("creating the JetStream stream", e))?;
    let found = &stream.cached_info().config;
    let subjects = &found.subjects;
    if !subjects.iter().any(|f| names::filter_covers(f, &prefix)) {
        let wrong = names::WrongSubjects::NotCovered { stream: name, subjects: subjects.clone(), prefix };
        return Err(StoreError::caused(ErrorKind::Unavailable, WRONG_SUBJECTS, wrong));
    }
    if keep_rejected {
        let rejected_prefix = format!("{prefix}{}", rejected::PREFIX_SUFFIX);
        if subjects.iter().any(|f| names::filter_touches(f, &rejected_prefix)) {
            let wrong =
                names::WrongSubjects::TakesRejected { stream: name, subjects: subjects.clone(), rejected_prefix };
            return Err(StoreError::caused(ErrorKind::Unavailable, WRONG_SUBJECTS, wrong));
        }
    }
    if !found.allow_atomic_publish || !found.allow_direct {
        let reason = if found.allow_atomic_publish { NOT_DIRECT } else { NOT_ATOMIC };
        let mut config = found.clone();
        config.allow_atomic_publish = true;
        config.allow_direct = true;
        context.update_stream(config).await.map_err(|e| StoreError::caused(ErrorKind::Unavailable, reason, e))?;
        tracing::info!(stream = %name, "allowed atomic batches and direct gets on the existing stream");
        stream = context.get_stream(&name).await.map_err(|e| unavailable("creating the JetStream stream", e))?;
    }
    Ok(stream)
}

impl Store for JetStreamStore {
    fn append<'a>(
        &'a self,
        events: &'a [Event],
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, StoreError>> {
        Box::pin(async move {
            let appended = self.publish_all(events, token).await?;
            self.live.committed(appended.accepted());
            Ok(appended)
        })
    }

    /// The page is read whole (as `read` does), then cut at `max_bytes`
    /// and handed on in slices.
    fn query(&self, query: Query, max_bytes: usize) -> BoxFuture<'_, PageStream> {
        let limit = query.limit;
        Box::pin(async move { PageStream::of_page(self.read(query).await, limit, max_bytes) })
    }

    fn last_seq(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let deadline = Instant::now() + self.options.ack_timeout;
            self.check_connected()?;
            self.stream(deadline).await?;
            let stream = tokio::time::timeout_at(deadline, self.context.get_stream(&self.options.stream))
                .await
                .map_err(|_| StoreError::plain(ErrorKind::Unavailable, NO_ANSWER))?
                .map_err(|e| unavailable("reading the JetStream stream's state", e))?;
            Ok(stream.cached_info().state.last_sequence)
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        // Every acknowledged event was acknowledged by JetStream already;
        // flushing sends anything still buffered (a refused event kept for
        // `--keep-rejected`, say). With NATS away (stopped, or gone and the
        // client reconnecting) the flush would wait forever: it waits
        // [`CLOSE_FLUSH`] at most, and the process exits all the same.
        Box::pin(async move {
            if let Some(rejected) = &self.rejected {
                rejected.close(self.options.ack_timeout).await;
            }
            match tokio::time::timeout(CLOSE_FLUSH, self.client.flush()).await {
                Ok(flushed) => flushed.map_err(|e| unavailable("flushing NATS", e)),
                Err(_) => {
                    tracing::warn!(
                        "NATS did not take the last buffered messages within {CLOSE_FLUSH:?}; closing without them \
                         (no acknowledged event is among them)"
                    );
                    Ok(())
                }
            }
        })
    }

    fn name(&self) -> &'static str {
        "jetstream"
    }

    fn live(&self) -> &Arc<crate::store::Live> {
        &self.live
    }

    fn rejected(&self) -> Option<Arc<dyn super::RejectedLog>> {
        self.rejected.clone().map(|r| r as Arc<dyn super::RejectedLog>)
    }

    /// Ready when connected to NATS and the stream was found (or made).
    /// Found once; until then a probe looks for it (bounded by
    /// [`STREAM_PROBE`]), so that a server started while NATS was away
    /// becomes ready without a write first.
    fn readiness(&self) -> BoxFuture<'_, Result<(), NotReady>> {
        Box::pin(async move {
            if !(self.ready.load(Ordering::SeqCst) && self.client.connection_state() == State::Connected) {
                return Err(NotReady::unavailable("NATS is unreachable"));
            }
            if self.stream.get().is_some() {
                return Ok(());
            }
            match self.stream(Instant::now() + STREAM_PROBE).await {
                Ok(_) => Ok(()),
                Err(_) => Err(NotReady::unavailable("the JetStream stream is not available")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_safe() {
        assert_eq!(subject_for("inlet.events", "com.example.order"), "inlet.events.com.example.order");
        assert_eq!(subject_for("p", "a b*c>.d..e"), "p.a_b_c_.d._.e");
        assert_eq!(subject_for("p", ".x."), "p._.x._");
        assert_eq!(subject_for("p", ""), "p._");
        assert_eq!(subject_for("p", "a.é.b-c_d.9"), "p.a._.b-c_d.9");
        assert_eq!(subject_for("p", "a.b."), "p.a.b._");
    }

    /// A type at the bound keeps its tokens; one past it (or whose mapped
    /// tokens grow past it: empty tokens become `_`) becomes one hashed
    /// token, the same for the same type, different for another.
    #[test]
    fn a_type_past_the_subject_bound_becomes_one_hashed_token() {
        let at = "a".repeat(MAX_TYPE_SUBJECT);
        assert_eq!(subject_for("p", &at), format!("p.{at}"));
        let at_mapped = "é".repeat(MAX_TYPE_SUBJECT / 2);
        assert_eq!(subject_for("p", &at_mapped), format!("p.{}", "_".repeat(MAX_TYPE_SUBJECT / 2)));
        let past = "a".repeat(MAX_TYPE_SUBJECT + 1);
        let hashed = format!("p.long~{}", hex(&Sha256::digest(past.as_bytes())));
        assert_eq!(subject_for("p", &past), hashed);
        assert_eq!(hashed.len(), "p.long~".len() + 64);
        assert_ne!(subject_for("p", &format!("{past}b")), hashed);
        // 1,024 dots are 1,025 empty tokens: 2,049 bytes once mapped.
        let dots = ".".repeat(1024);
        assert_eq!(subject_for("p", &dots), format!("p.long~{}", hex(&Sha256::digest(dots.as_bytes()))));
        let fewer = ".".repeat(1023);
        assert_eq!(subject_for("p", &fewer).len(), 2 + 2047);
    }

    /// The conversion before the fast path, kept to check it against.
    fn subject_by_tokens(prefix: &str, ty: &str) -> String {
        let mut subject = prefix.to_string();
        for token in ty.split('.') {
            subject.push('.');
            if token.is_empty() {
                subject.push('_');
            }
            subject
                .extend(token.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }));
        }
        subject
    }

    #[test]
    fn subjects_of_valid_and_invalid_types_match_the_token_conversion() {
        for ty in [
            "", ".", "..", "a", "a.", ".a", "a..b", "a.b", "A-z_0.9", "a b", "a*", "a>", "é", "a.é", "a\u{0}b", "-",
            "_._",
        ] {
            assert_eq!(subject_for("p", ty), subject_by_tokens("p", ty), "{ty:?}");
        }
        assert!(is_subject_tokens("com.example.order"));
        assert!(!is_subject_tokens("com.example."));
        assert!(!is_subject_tokens(""));
    }

    proptest::proptest! {
        #[test]
        fn subject_for_any_type_is_the_token_conversion(ty in "[a-zA-Z0-9._* >é-]{0,12}") {
            proptest::prop_assert_eq!(subject_for("inlet.events", &ty), subject_by_tokens("inlet.events", &ty));
        }
    }

    #[test]
    fn message_ids_separate_source_and_id() {
        assert_ne!(message_id("ab", "c"), message_id("a", "bc"));
        assert_eq!(message_id("s", "1"), message_id("s", "1"));
        assert_eq!(message_id("s", "1").len(), 64);
    }

    #[test]
    fn the_last_subject_is_each_type_s_subject_in_runs_and_when_types_alternate() {
        let last = LastSubject::default();
        for ty in ["a.b", "a.b", "a b", "a.b", "", "", "x.y.z", "a.b", "a.b"] {
            assert_eq!(last.of("inlet.events", ty).as_str(), subject_for("inlet.events", ty), "{ty:?}");
        }
        // Held by another request: made as without it.
        let held = last.0.lock();
        assert_eq!(last.of("p", "q.r").as_str(), "p.q.r");
        drop(held);
    }

    #[test]
    fn hex_is_two_lowercase_digits_per_byte_for_every_byte() {
        let every: Vec<u8> = (0..=255).collect();
        let expected: String = every.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&every), expected);
        assert_eq!(hex(&[]), "");
    }

    /// The ids of earlier versions, exactly (SHA-256 of the 8-byte
    /// big-endian source length, the source and the id, in lowercase hex):
    /// a changed id would store a resent event twice.
    #[test]
    fn message_ids_are_stable() {
        assert_eq!(message_id("s", "1"), "c3e3100579466bf16a007c657f988a76e1bed834fb8359009472a0823de2f33c");
        assert_eq!(
            message_id("https://example.com/orders", "A-1"),
            "a5f6d5b3afe11bb8cc8b463635714a4f568cbeebfbf48638e9450751a5f7c780"
        );
    }
}
