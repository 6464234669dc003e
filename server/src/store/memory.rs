//! `--store memory`: events in chunked vectors, dedupe keys in sharded hash
//! sets, all behind one mutex. Nothing survives a restart; for tests and
//! benchmarks.

use std::collections::{HashMap, HashSet};

use ahash::RandomState;
use std::sync::Mutex;

use bytes::Bytes;
use futures::future::{self, BoxFuture};
use inlet_shared::event::Event;

use super::{now_rfc3339, Appended, Page, Query, Store, StoreError, StoredEvent};

#[derive(Debug)]
struct Record {
    ty: String,
    source: String,
    stored: StoredEvent,
}

/// Dedupe sets are split in shards and records kept in fixed-size chunks so
/// that no single growth step rehashes or copies the whole log: a hash table
/// of a million ids doubling at once stalls every request for tens of
/// milliseconds, a shard of it for well under one.
const SHARDS: usize = 64;
const CHUNK: usize = 1 << 16;

/// source -> ids stored from it. ahash with random keys: fast, and the
/// keys (client-chosen) cannot be crafted to collide.
type Shard = HashMap<String, HashSet<String, RandomState>, RandomState>;

#[derive(Debug)]
struct Inner {
    /// Records in ascending `seq` (from 1), `CHUNK` per vector.
    chunks: Vec<Vec<Record>>,
    len: usize,
    shards: Vec<Shard>,
    hasher: RandomState,
}

impl Default for Inner {
    fn default() -> Inner {
        let hasher = RandomState::new();
        let shards = (0..SHARDS).map(|_| HashMap::with_hasher(hasher.clone())).collect();
        Inner { chunks: Vec::new(), len: 0, shards, hasher }
    }
}

impl Inner {
    /// Records (source, id); false if it was there already.
    fn insert_key(&mut self, source: &str, id: &str) -> bool {
        let shard = &mut self.shards[(self.hasher.hash_one((source, id)) as usize) % SHARDS];
        match shard.get_mut(source) {
            Some(ids) => !ids.contains(id) && ids.insert(id.to_string()),
            None => {
                let mut ids = HashSet::with_hasher(self.hasher.clone());
                ids.insert(id.to_string());
                shard.insert(source.to_string(), ids);
                true
            }
        }
    }

    fn push(&mut self, record: Record) {
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(record);
            self.len += 1;
        }
    }

    /// Records with an index from `start` on.
    fn records_from(&self, start: usize) -> impl Iterator<Item = &Record> {
        let chunk = start / CHUNK;
        let skip = start % CHUNK;
        self.chunks.iter().skip(chunk).flatten().skip(skip)
    }
}

#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    fn append_now(&self, events: &[Event]) -> Result<Appended, StoreError> {
        // Serialise outside the lock.
        // Copied: a slice of the request would keep its whole read buffer
        // alive for as long as the event is stored.
        let json: Vec<Bytes> = events
            .iter()
            .map(|e| match &e.raw {
                Some(raw) => Bytes::copy_from_slice(raw),
                None => Bytes::from(e.to_json()),
            })
            .collect();
        let received_at = now_rfc3339();
        let mut inner = self.inner.lock().map_err(|_| StoreError::Unavailable("memory store poisoned".into()))?;
        let mut duplicate = Vec::with_capacity(events.len());
        for (event, json) in events.iter().zip(json) {
            if !inner.insert_key(&event.source, &event.id) {
                duplicate.push(true);
                continue;
            }
            duplicate.push(false);
            let seq = inner.len as u64 + 1;
            inner.push(Record {
                ty: event.ty.clone(),
                source: event.source.clone(),
                stored: StoredEvent { seq, received_at: received_at.clone(), json },
            });
        }
        Ok(Appended { duplicate })
    }

    fn query_now(&self, q: &Query) -> Result<Page, StoreError> {
        let inner = self.inner.lock().map_err(|_| StoreError::Unavailable("memory store poisoned".into()))?;
        // seq n is at index n - 1.
        let start = usize::try_from(q.after).unwrap_or(usize::MAX).min(inner.len);
        let mut matching = inner
            .records_from(start)
            .filter(|r| q.ty.as_deref().is_none_or(|t| r.ty == t) && q.source.as_deref().is_none_or(|s| r.source == s));
        let events: Vec<StoredEvent> = matching.by_ref().take(q.limit).map(|r| r.stored.clone()).collect();
        let more = matching.next().is_some();
        let next_after = if more { events.last().map(|e| e.seq) } else { None };
        Ok(Page { events, next_after })
    }
}

impl Store for MemoryStore {
    fn append<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, Result<Appended, StoreError>> {
        Box::pin(future::ready(self.append_now(events)))
    }

    fn query(&self, query: Query) -> BoxFuture<'_, Result<Page, StoreError>> {
        Box::pin(future::ready(self.query_now(&query)))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(future::ready(Ok(())))
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(source: &str, id: &str, ty: &str) -> Event {
        Event::new(id, source, ty)
    }

    #[test]
    fn duplicates_within_and_across_appends() {
        let store = MemoryStore::default();
        let a = store.append_now(&[ev("s", "1", "t"), ev("s", "2", "t"), ev("s", "1", "t")]).unwrap();
        assert_eq!(a.duplicate, vec![false, false, true]);
        let b = store.append_now(&[ev("s", "2", "t"), ev("other", "2", "t")]).unwrap();
        assert_eq!(b.duplicate, vec![true, false]);
        assert_eq!((b.accepted(), b.duplicates()), (1, 1));
    }

    #[test]
    fn records_cross_chunk_boundaries() {
        let store = MemoryStore::default();
        let events: Vec<Event> = (0..CHUNK + 10).map(|i| ev("s", &i.to_string(), "t")).collect();
        store.append_now(&events).unwrap();
        let q = Query { after: CHUNK as u64 - 2, limit: 5, ty: None, source: None };
        let page = store.query_now(&q).unwrap();
        let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
        let first = CHUNK as u64 - 1;
        assert_eq!(seqs, (first..first + 5).collect::<Vec<_>>());
        assert_eq!(page.next_after, Some(first + 4));
    }

    #[test]
    fn query_filters_and_pages() {
        let store = MemoryStore::default();
        let events: Vec<Event> =
            (0..10).map(|i| ev(if i % 2 == 0 { "even" } else { "odd" }, &i.to_string(), "t")).collect();
        store.append_now(&events).unwrap();
        let page = store.query_now(&Query { source: Some("odd".into()), after: 0, limit: 2, ty: None }).unwrap();
        assert_eq!(page.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 4]);
        assert_eq!(page.next_after, Some(4));
        let last = store.query_now(&Query { source: Some("odd".into()), after: 8, limit: 2, ty: None }).unwrap();
        assert_eq!(last.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![10]);
        assert_eq!(last.next_after, None);
    }
}
