//! `GET /events`: batched direct gets (nats-server 2.11+). One request
//! `{"seq": n, "batch": k, "next_by_subj": subject}` to
//! `$JS.API.DIRECT.GET.<stream>` is answered with up to `k` messages, each
//! with its `Nats-Sequence` and `Nats-Time-Stamp`, then an end-of-batch
//! status (`204`, `Nats-Num-Pending`): one round trip for up to `k`
//! messages instead of one per message. Direct gets may be answered by any
//! replica.

use futures::StreamExt;

use std::sync::Arc;

use super::{unavailable, JetStreamStore, TOKEN_HEADER};
use crate::store::{ErrorKind, Page, Query, StoreError, StoredEvent};

/// Messages asked for in one batched direct get at most.
const BATCH: usize = 1000;

/// One message of a batched direct get.
pub(super) struct Got {
    pub seq: u64,
    time: String,
    pub payload: bytes::Bytes,
    /// The writing token's name (`Inlet-Token`), if any.
    token: Option<Arc<str>>,
}

/// What one batched direct get brought: the messages, and whether the
/// stream has more after them.
pub(super) struct Batch {
    pub messages: Vec<Got>,
    pub more: bool,
}

impl JetStreamStore {
    /// One page of `GET /events`, by sequence, filtered by type through the
    /// subject and by source and token here.
    pub(super) async fn read(&self, q: Query) -> Result<Page, StoreError> {
        self.check_connected()?;
        // The wait for the stream bounded like a write's (each direct get
        // below has the ack timeout of its own).
        self.stream(tokio::time::Instant::now() + self.options.ack_timeout).await?;
        let subject = match &q.ty {
            Some(ty) => super::subject_for(&self.options.subject_prefix, ty),
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
        loop {
            if budget == 0 {
                return Ok(Page { events, next_after: Some(next - 1) });
            }
            // Without a source filter every message matches (up to the one
            // that shows there is more); with it, ask for what the budget allows.
            let filtered_here = q.source.is_some() || q.token.is_some();
            let want = if filtered_here { budget } else { q.limit + 1 - events.len() };
            let want = want.clamp(1, BATCH).min(budget);
            let batch =
                direct_get_batch(&self.client, &self.options.stream, self.options.ack_timeout, &subject, next, want)
                    .await?;
            for got in batch.messages {
                budget = budget.saturating_sub(1);
                next = got.seq + 1;
                let Ok(event) = serde_json::from_slice::<serde_json::Value>(&got.payload) else { continue };
                if q.ty.as_deref().is_some_and(|t| event["type"] != t)
                    || q.source.as_deref().is_some_and(|s| event["source"] != s)
                    || q.token.as_deref().is_some_and(|t| got.token.as_deref() != Some(t))
                {
                    continue;
                }
                if events.len() == q.limit {
                    // One more match exists: the next page starts after the last one here.
                    let next_after = events.last().map(|e: &StoredEvent| e.seq);
                    return Ok(Page { events, next_after });
                }
                events.push(StoredEvent { seq: got.seq, received_at: got.time, json: got.payload, token: got.token });
                if budget == 0 {
                    break;
                }
            }
            if !batch.more {
                return Ok(Page { events, next_after: None });
            }
        }
    }
}

/// Up to `batch` messages of `subject` in `stream` from sequence `from` on,
/// each reply waited for at most `timeout`.
pub(super) async fn direct_get_batch(
    client: &async_nats::Client,
    stream: &str,
    timeout: std::time::Duration,
    subject: &str,
    from: u64,
    batch: usize,
) -> Result<Batch, StoreError> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.map_err(|e| unavailable("reading from JetStream", e))?;
    let request = serde_json::json!({"seq": from, "batch": batch, "next_by_subj": subject});
    client
        .publish_with_reply(format!("$JS.API.DIRECT.GET.{stream}"), inbox, request.to_string().into())
        .await
        .map_err(|e| unavailable("reading from JetStream", e))?;
    let mut messages = Vec::with_capacity(batch.min(BATCH));
    loop {
        let reply = tokio::time::timeout(timeout, replies.next())
            .await
            .map_err(|_| StoreError::plain(ErrorKind::Unavailable, "JetStream did not answer a read in time"))?
            .ok_or(StoreError::plain(ErrorKind::Unavailable, "NATS closed the read"))?;
        let header = |name: &str| reply.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str());
        match reply.status.map(|s| s.as_u16()) {
            Some(404) => return Ok(Batch { messages, more: false }),
            // End of batch: more to read if JetStream says some are pending.
            Some(204) => {
                let pending = header("Nats-Num-Pending").and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
                return Ok(Batch { messages, more: pending > 0 });
            }
            Some(status) if status != 200 => {
                tracing::warn!(%status, "JetStream refused a batched direct get");
                return Err(StoreError::plain(ErrorKind::Unavailable, "JetStream refused a read"));
            }
            _ => {}
        }
        let Some(seq) = header("Nats-Sequence").and_then(|s| s.parse().ok()) else {
            return Err(StoreError::plain(ErrorKind::Unavailable, "JetStream sent a message without its sequence"));
        };
        // RFC 3339 with nanoseconds, as `received_at` always was here.
        let time = header("Nats-Time-Stamp").unwrap_or_default().to_string();
        let token = header(TOKEN_HEADER).map(Arc::from);
        messages.push(Got { seq, time, payload: reply.payload, token });
    }
}
