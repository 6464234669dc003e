//! `--store jetstream`: events published to a NATS JetStream stream, so that
//! many `inlet-server`s behind a load balancer feed one replicated log.
//!
//! - Each event goes to `<prefix>.<type>` (the type made subject-safe), its
//!   body is the CloudEvent JSON, and its `Nats-Msg-Id` is a SHA-256 of
//!   (source, id): JetStream drops a message whose id it has seen within the
//!   stream's duplicate window, whichever server published it.
//! - A request is acknowledged only after JetStream acknowledged every one of
//!   its events. All publishes of a request are sent first and their acks
//!   awaited together, and concurrent requests publish concurrently.
//! - The name of the token that wrote an event travels in the message's
//!   `Inlet-Token` header (absent when written anonymously).
//! - `GET /events` reads the stream by sequence with direct gets (the type
//!   filter through the subject, the source and token filters here).
//! - While NATS is unreachable every write is refused at once (`503`); the
//!   client reconnects by itself and the store is ready again when it has.
//!
//! Dedupe guarantee: inside the duplicate window (`--duplicate-window`,
//! default 2 minutes) a repeat is reported as a duplicate and stored once.
//! Outside it, a repeat is stored again. JetStream has no multi-message
//! transactions: when a request fails part-way (503), some of its events may
//! be stored; the client's retry is deduplicated, so nothing doubles within
//! the window.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage, stream};
use futures::future::BoxFuture;
use inlet_shared::event::Event;
use sha2::{Digest, Sha256};
use smallvec::SmallVec;
use tokio::sync::OnceCell;

use super::{Appended, ErrorKind, OpenError, Page, Query, Store, StoreError, StoredEvent};

/// The message header that holds the writing token's name.
const TOKEN_HEADER: &str = "Inlet-Token";

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
    /// How long a publish waits for JetStream's ack.
    pub ack_timeout: Duration,
}

pub struct JetStreamStore {
    client: async_nats::Client,
    context: jetstream::Context,
    options: Options,
    stream: OnceCell<stream::Stream>,
    ready: Arc<AtomicBool>,
}

/// Makes a CloudEvents type usable as subject tokens: `.` separates tokens,
/// other characters outside `[A-Za-z0-9_-]` become `_`, empty tokens `_`.
pub fn subject_for(prefix: &str, ty: &str) -> String {
    let mut subject = String::with_capacity(prefix.len() + ty.len() + 1);
    subject.push_str(prefix);
    for token in ty.split('.') {
        subject.push('.');
        if token.is_empty() {
            subject.push('_');
        }
        subject.extend(token.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }));
    }
    subject
}

/// `Nats-Msg-Id` for an event: SHA-256 over the length-prefixed source and
/// the id, so that no two (source, id) pairs can share one.
pub fn message_id(source: &str, id: &str) -> String {
    let mut hash = Sha256::new();
    hash.update((source.len() as u64).to_be_bytes());
    hash.update(source.as_bytes());
    hash.update(id.as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A failed JetStream call: the store is unavailable; `what` (a short
/// reason) is shown to the client, the NATS error kept as the cause.
fn unavailable(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::caused(ErrorKind::Unavailable, what, e)
}

impl JetStreamStore {
    pub async fn open(options: Options) -> Result<JetStreamStore, OpenError> {
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
        let store = JetStreamStore { client, context, options, stream: OnceCell::new(), ready };
        // Create or check the stream now if NATS is there; otherwise on first use.
        match tokio::time::timeout(Duration::from_secs(2), store.stream()).await {
            Ok(Ok(_)) => tracing::info!(stream = %store.options.stream, "JetStream stream ready"),
            Ok(Err(e)) => tracing::warn!("JetStream stream not ready yet: {e}"),
            Err(_) => tracing::warn!("NATS not reachable yet; writes answer 503 until it is"),
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
            description: Some("CloudEvents accepted by inlet".into()),
            ..Default::default()
        }
    }

    /// The stream, created (or found) on first success.
    async fn stream(&self) -> Result<&stream::Stream, StoreError> {
        self.stream
            .get_or_try_init(|| async {
                let stream = self
                    .context
                    .get_or_create_stream(self.stream_config())
                    .await
                    .map_err(|e| unavailable("creating the JetStream stream", e))?;
                Ok::<_, StoreError>(stream)
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

    async fn publish_all(&self, events: &[Event], token: Option<&str>) -> Result<Appended, StoreError> {
        self.check_connected()?;
        self.stream().await?;
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(events.len());
        for e in events {
            let mut message = PublishMessage::build().payload(e.json_bytes()).message_id(message_id(&e.source, &e.id));
            if let Some(token) = token {
                message = message.header(TOKEN_HEADER, token);
            }
            let ack = self
                .context
                .send_publish(subject_for(&self.options.subject_prefix, &e.ty), message)
                .await
                .map_err(|e| unavailable("publishing to JetStream", e))?;
            acks.push(ack);
        }
        let mut duplicate = SmallVec::with_capacity(acks.len());
        for result in futures::future::join_all(acks.into_iter().map(std::future::IntoFuture::into_future)).await {
            let ack = result.map_err(|e| unavailable("JetStream did not acknowledge", e))?;
            duplicate.push(ack.duplicate);
        }
        Ok(Appended { duplicate })
    }

    async fn read(&self, q: Query) -> Result<Page, StoreError> {
        self.check_connected()?;
        let stream = self.stream().await?;
        let subject = match &q.ty {
            Some(ty) => subject_for(&self.options.subject_prefix, ty),
            None => format!("{}.>", self.options.subject_prefix),
        };
        let mut events = Vec::with_capacity(q.limit.min(1024));
        let mut next = q.after.saturating_add(1);
        // Bound the scan when the source filter (applied here) rarely
        // matches. When the budget runs out, the page ends where the scan
        // stopped: `next_after` is the last sequence looked at, so that the
        // client's next page goes on from there (the page may even be
        // empty); `None` only when the stream has nothing more.
        let mut budget = q.limit.saturating_mul(100).max(10_000);
        let next_after = loop {
            if budget == 0 {
                break Some(next - 1);
            }
            budget -= 1;
            let message = match stream.direct_get_next_for_subject(subject.clone(), Some(next)).await {
                Ok(m) => m,
                Err(e) if matches!(e.kind(), stream::DirectGetErrorKind::NotFound) => break None,
                Err(e) => return Err(unavailable("reading from JetStream", e)),
            };
            next = message.sequence + 1;
            let Ok(event) = serde_json::from_slice::<serde_json::Value>(&message.payload) else { continue };
            if q.ty.as_deref().is_some_and(|t| event["type"] != t)
                || q.source.as_deref().is_some_and(|s| event["source"] != s)
            {
                continue;
            }
            if events.len() == q.limit {
                // One more match exists: the next page starts after the last one here.
                break events.last().map(|e: &StoredEvent| e.seq);
            }
            let received_at = message.time.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            let token = message.headers.get(TOKEN_HEADER).map(|v| Arc::from(v.as_str()));
            if q.token.as_deref().is_some_and(|t| token.as_deref() != Some(t)) {
                continue;
            }
            events.push(StoredEvent { seq: message.sequence, received_at, json: message.payload.clone(), token });
        };
        Ok(Page { events, next_after })
    }
}

impl Store for JetStreamStore {
    fn append<'a>(
        &'a self,
        events: &'a [Event],
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, StoreError>> {
        Box::pin(self.publish_all(events, token))
    }

    fn query(&self, query: Query) -> BoxFuture<'_, Result<Page, StoreError>> {
        Box::pin(self.read(query))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        // Every acknowledged event was acknowledged by JetStream already;
        // flushing sends anything still buffered.
        Box::pin(async move { self.client.flush().await.map_err(|e| unavailable("flushing NATS", e)) })
    }

    fn name(&self) -> &'static str {
        "jetstream"
    }

    fn readiness(&self) -> Result<(), String> {
        if self.ready.load(Ordering::SeqCst) && self.client.connection_state() == State::Connected {
            Ok(())
        } else {
            Err("NATS is unreachable".into())
        }
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
    }

    #[test]
    fn message_ids_separate_source_and_id() {
        assert_ne!(message_id("ab", "c"), message_id("a", "bc"));
        assert_eq!(message_id("s", "1"), message_id("s", "1"));
        assert_eq!(message_id("s", "1").len(), 64);
    }
}
