//! `--store memory`: nothing survives a restart; for tests and benchmarks.
//!
//! Laid out to cost little per event, since every event is kept:
//! - the event's JSON and its id are copied side by side into large shared
//!   arena blocks (no allocation per event; a record holds one `Bytes`
//!   handle of both and where the id starts);
//! - `type` and `source` are interned to numbers;
//! - the dedupe index holds record numbers only, sharded so that no single
//!   growth step rehashes the whole index;
//! - records are kept in fixed-size chunks, so the log never copies itself.
//!
//! With `--retention`, a thread deletes expired events from the front (the
//! log is in `seq` order, so they are a prefix), at most `DELETE_STEP` under
//! one hold of the lock: a deleted record drops its JSON at once and keeps
//! its key in the dedupe index for `--dedupe-window`, after which the key
//! leaves the index and whole chunks of records are freed.
//!
//! All of it sits behind one mutex, held for the inserts, and by a read
//! for one short step at a time (`READ_STEP` records, or one slice of a
//! page): a read runs on a blocking thread, copies no event (a record's
//! JSON is a shared `Bytes`), and hands its page on in slices.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ahash::RandomState;
use bytes::{Bytes, BytesMut};
use futures::future::{self, BoxFuture};
use hashbrown::HashTable;
use inlet_shared::event::Event;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{
    Appended, DeleteReason, ErrorKind, PageItem, PageSender, PageStream, Pager, Query, Store, StoreError, StoreGauges,
    StoredEvent, WhenFull,
};

#[derive(Debug)]
struct Record {
    /// The event's JSON and then its id, a slice of an arena block; only
    /// the id once the event is deleted (its key may still be remembered).
    data: Bytes,
    /// Where the id starts in `data`: the JSON's length (0 once deleted).
    json_len: usize,
    /// When it was stored, in nanoseconds since the Unix epoch.
    received_at: i64,
    ty: u32,
    source: u32,
    /// The writing token's number in `Inner::tokens`, or `NO_TOKEN`.
    token: u32,
    /// The low half of the dedupe key's hash (see [`table_hash`]), in what
    /// would be the record's padding: a shard's growth reads it instead of
    /// hashing every key again.
    key_low: u32,
}

/// `Record::token` of an event written anonymously.
const NO_TOKEN: u32 = u32::MAX;

impl Record {
    /// The event's JSON (empty once deleted).
    #[cfg(test)]
    fn json(&self) -> &[u8] {
        &self.data[..self.json_len]
    }

    /// The event's id.
    fn id(&self) -> &[u8] {
        &self.data[self.json_len..]
    }

    /// What a deleted record keeps: its id, for the dedupe index. A slice
    /// of a shared block keeps that block alive, as the block's other
    /// records do; a large event's own allocation ([`Arena::copy_pair`])
    /// is let go, its id copied out, so that retention frees its JSON.
    fn forget_json(&mut self) -> Bytes {
        let id = if self.data.len() > BLOCK / 8 {
            Bytes::copy_from_slice(self.id())
        } else {
            self.data.split_off(self.json_len)
        };
        self.json_len = 0;
        id
    }
}

/// Records per chunk of the log.
const CHUNK: usize = 1 << 16;
/// Dedupe index shards: a shard of a million-event index doubles in well
/// under a millisecond; the whole index at once would stall every request.
const SHARDS: usize = 64;
/// Arena block size; larger items get their own allocation.
const BLOCK: usize = 1 << 20;
/// Records a read looks at under one hold of the lock at most.
const READ_STEP: usize = 4096;
/// Records deleted (or keys forgotten) under one hold of the lock at most.
const DELETE_STEP: usize = 1000;

/// Copies small byte strings into shared 1 MiB blocks.
#[derive(Debug, Default)]
struct Arena {
    block: BytesMut,
}

impl Arena {
    /// Copies `json` and then `id` side by side into one slice of the
    /// block (a pair larger than an eighth of a block gets its own
    /// allocation).
    fn copy_pair(&mut self, json: &[u8], id: &[u8]) -> Bytes {
        let len = json.len() + id.len();
        if len > BLOCK / 8 {
            let mut own = Vec::with_capacity(len);
            own.extend_from_slice(json);
            own.extend_from_slice(id);
            return Bytes::from(own);
        }
        if self.block.capacity() - self.block.len() < len {
            self.block = BytesMut::with_capacity(BLOCK);
        }
        self.block.extend_from_slice(json);
        self.block.extend_from_slice(id);
        // The block's first `split` makes it shared; later ones only bump
        // its reference count.
        self.block.split().freeze()
    }
}

/// Strings that repeat across events (types, sources) stored once each.
/// The name interned last is compared first: events of one type from one
/// source come in runs, and a run costs no hash.
#[derive(Debug, Default)]
struct Names {
    numbers: HashMap<Arc<str>, u32, RandomState>,
    /// The name interned last and its number.
    last: Option<(Arc<str>, u32)>,
}

impl Names {
    #[inline(always)]
    fn intern(&mut self, name: &str) -> u32 {
        if let Some((last, n)) = &self.last {
            if **last == *name {
                return *n;
            }
        }
        self.intern_slow(name)
    }

    fn intern_slow(&mut self, name: &str) -> u32 {
        let (key, n) = match self.numbers.get_key_value(name) {
            Some((key, &n)) => (key.clone(), n),
            None => {
                let key: Arc<str> = Arc::from(name);
                let n = self.numbers.len() as u32;
                self.numbers.insert(key.clone(), n);
                (key, n)
            }
        };
        self.last = Some((key, n));
        n
    }

    fn number(&self, name: &str) -> Option<u32> {
        self.numbers.get(name).copied()
    }
}

#[derive(Debug)]
struct Inner {
    /// Records in ascending `seq` (from 1), `CHUNK` per vector.
    chunks: Vec<Vec<Record>>,
    len: usize,
    /// (source, id) -> record index, sharded by the hash.
    shards: Vec<HashTable<usize>>,
    /// Keyed randomly: ids are client-chosen and must not be crafted to collide.
    hasher: RandomState,
    arena: Arena,
    types: Names,
    sources: Names,
    /// Token names by number (names come from the tokens file: few).
    tokens: Vec<Arc<str>>,
    /// Records below this index are deleted (their JSON is gone)...
    first: usize,
    /// ...and below this one their keys left the dedupe index too (and
    /// chunks wholly below it are freed).
    forgotten: usize,
    /// Deletions whose keys are still remembered: (end index, when, ns).
    deletions: VecDeque<(usize, i64)>,
    /// JSON bytes of the records not deleted.
    bytes: u64,
}

impl Default for Inner {
    fn default() -> Inner {
        Inner {
            chunks: Vec::new(),
            len: 0,
            shards: (0..SHARDS).map(|_| HashTable::new()).collect(),
            hasher: RandomState::new(),
            arena: Arena::default(),
            types: Names::default(),
            sources: Names::default(),
            tokens: Vec::new(),
            first: 0,
            forgotten: 0,
            deletions: VecDeque::new(),
            bytes: 0,
        }
    }
}

/// The record with index `i` (seq `i + 1`).
fn record_at(chunks: &[Vec<Record>], i: usize) -> &Record {
    &chunks[i / CHUNK][i % CHUNK]
}

fn record_json_len(chunks: &[Vec<Record>], i: usize) -> u64 {
    record_at(chunks, i).json_len as u64
}

/// The dedupe key's hash: (interned source, id).
fn key_hash(hasher: &RandomState, source: u32, id: &[u8]) -> u64 {
    hasher.hash_one((source, id))
}

/// The dedupe shard of a key hash: bits 32 to 37. hashbrown takes a key's
/// first bucket from the low bits (as many as the table has buckets, far
/// fewer than 32) and its tag from the top 7: a shard taken from either
/// would crowd a shard's keys into 1/64 of its buckets, or make its tags
/// alike, and lengthen every probe.
fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

/// The hash a shard's table is given for a key: the low half of the key's
/// hash in both halves, so that it can be rebuilt from the 32 bits a record
/// keeps. hashbrown takes the first bucket from the low bits and the tag
/// from the top 7 (bits 25 to 31 of the low half): apart while a shard has
/// fewer than 2^25 buckets, and none of them the shard's bits 32 to 37.
fn table_hash(key_low: u32) -> u64 {
    u64::from(key_low) * 0x1_0000_0001
}

impl Inner {
    /// Stores the event unless its (source, id) is there already; returns
    /// whether it was stored.
    fn insert(&mut self, event: &Event, received_at: i64, token: u32) -> bool {
        let source = self.sources.intern(event.source());
        let id = event.id().as_bytes();
        let hash = key_hash(&self.hasher, source, id);
        let shard = shard_of(hash);
        let key_low = hash as u32;
        let chunks = &self.chunks;
        let same = |&i: &usize| {
            let r = record_at(chunks, i);
            r.source == source && r.id() == id
        };
        if self.shards[shard].find(table_hash(key_low), same).is_some() {
            return false;
        }
        let (data, json_len) = match event.raw() {
            Some(raw) => (self.arena.copy_pair(raw, id), raw.len()),
            None => {
                let json = event.to_json();
                (self.arena.copy_pair(&json, id), json.len())
            }
        };
        let record = Record { data, json_len, received_at, ty: self.types.intern(event.ty()), source, token, key_low };
        let index = self.len;
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(record);
        }
        self.len += 1;
        self.bytes += record_json_len(&self.chunks, index);
        let chunks = &self.chunks;
        self.shards[shard].insert_unique(table_hash(key_low), index, |&i| table_hash(record_at(chunks, i).key_low));
        true
    }

    /// Deletes up to `DELETE_STEP` records received before `cutoff` (ns),
    /// from the front, at `now` (ns). Returns how many.
    fn delete_expired(&mut self, cutoff: i64, now: i64, remember: bool) -> usize {
        let start = self.first;
        let end = self.len.min(start + DELETE_STEP);
        let mut i = start;
        while i < end {
            let r = &mut self.chunks[i / CHUNK][i % CHUNK];
            if r.received_at >= cutoff {
                break;
            }
            self.bytes = self.bytes.saturating_sub(r.json_len as u64);
            r.data = r.forget_json();
            i += 1;
        }
        self.first = i;
        if i > start {
            self.deletions.push_back((i, now));
            if !remember {
                self.forget_until(now);
            }
        }
        i - start
    }

    /// Takes out of the dedupe index, up to `DELETE_STEP` at a time, the
    /// keys of records deleted at or before `until` (ns); frees the chunks
    /// left with nothing in use. Returns how many keys.
    fn forget_until(&mut self, until: i64) -> usize {
        let Some(&(end, at)) = self.deletions.front() else { return 0 };
        if at > until {
            return 0;
        }
        let start = self.forgotten;
        let stop = end.min(start + DELETE_STEP);
        for i in start..stop {
            let r = record_at(&self.chunks, i);
            let hash = key_hash(&self.hasher, r.source, r.id());
            if let Ok(entry) = self.shards[shard_of(hash)].find_entry(table_hash(r.key_low), |&j| j == i) {
                entry.remove();
            }
        }
        self.forgotten = stop;
        if stop == end {
            self.deletions.pop_front();
        }
        // Chunks wholly below `forgotten` are not looked at again.
        for chunk in &mut self.chunks[..stop / CHUNK] {
            if chunk.capacity() > 0 {
                *chunk = Vec::new();
            }
        }
        stop - start
    }

    /// Keys of deleted records still in the dedupe index.
    fn remembered(&self) -> u64 {
        (self.first - self.forgotten) as u64
    }

    /// The number of a token name, added if new.
    fn token_number(&mut self, name: Option<&str>) -> u32 {
        let Some(name) = name else { return NO_TOKEN };
        // The same `Arc` as the token's name, usually: a pointer compare.
        let same = |t: &Arc<str>| std::ptr::eq(t.as_ptr(), name.as_ptr()) || **t == *name;
        if let Some(n) = self.tokens.iter().position(same) {
            return n as u32;
        }
        self.tokens.push(Arc::from(name));
        (self.tokens.len() - 1) as u32
    }

    fn token_name(&self, n: u32) -> Option<Arc<str>> {
        self.tokens.get(n as usize).cloned()
    }
}

#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Shared with the reads, which run on blocking threads.
    inner: Arc<Mutex<Inner>>,
    live: Arc<super::Live>,
    gauges: Arc<StoreGauges>,
    /// `--keep-rejected`.
    rejected: Option<Arc<super::rejected::MemoryRejected>>,
}

/// Settings of the memory store.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Events older than this are deleted (`None`: kept forever).
    pub retention: Option<Duration>,
    /// How long the key of a deleted event still counts as a duplicate.
    pub dedupe_window: Duration,
    /// `--keep-rejected`: refused events are kept in a bounded deque.
    pub keep_rejected: Option<super::RejectedOptions>,
}

/// How far a read has come, between two holds of the lock.
enum Step {
    /// More records to look at from this index.
    From(usize),
    /// The page is complete (full, or nothing more matches).
    Done,
}

fn poisoned() -> StoreError {
    StoreError::plain(ErrorKind::Unavailable, "the memory store is poisoned")
}

/// One step of a read: looks at records from index `from` until a slice
/// is ready, the page is full, `READ_STEP` records were seen, or none are
/// left. `None` filters match everything; `Some(None)` was never stored.
/// The filters of a query as numbers of this store: `Some(None)` for a
/// name never stored (which matches nothing).
#[derive(Debug, Clone, Copy)]
struct Filters {
    ty: Option<Option<u32>>,
    source: Option<Option<u32>>,
    token: Option<Option<u32>>,
}

impl Filters {
    fn of(inner: &Inner, q: &Query) -> Filters {
        Filters {
            ty: q.ty.as_deref().map(|t| inner.types.number(t)),
            source: q.source.as_deref().map(|s| inner.sources.number(s)),
            token: q.token.as_deref().map(|t| inner.tokens.iter().position(|n| **n == *t).map(|n| n as u32)),
        }
    }

    fn match_nothing(&self) -> bool {
        matches!(self.ty, Some(None)) || matches!(self.source, Some(None)) || matches!(self.token, Some(None))
    }

    fn matches(&self, r: &Record) -> bool {
        self.ty.is_none_or(|t| t == Some(r.ty))
            && self.source.is_none_or(|s| s == Some(r.source))
            && self.token.is_none_or(|t| t == Some(r.token))
    }
}

fn read_step(inner: &Inner, from: usize, filters: Filters, pager: &mut Pager) -> Step {
    if filters.match_nothing() {
        return Step::Done;
    }
    // Deleted records are not read.
    let from = from.max(inner.first);
    let end = inner.len.min(from.saturating_add(READ_STEP));
    for i in from..end {
        let r = record_at(&inner.chunks, i);
        if !filters.matches(r) {
            continue;
        }
        // seq n is at index n - 1.
        let event = StoredEvent {
            seq: i as u64 + 1,
            received_at: rfc3339(r.received_at),
            json: r.data.slice(..r.json_len),
            token: inner.token_name(r.token),
        };
        if !pager.offer(event) {
            return Step::Done;
        }
        if pager.ready_slice_pending() {
            return Step::From(i + 1);
        }
    }
    if end == inner.len {
        Step::Done
    } else {
        Step::From(end)
    }
}

/// Reads a page into `tx`, holding the lock one step at a time and never
/// while it waits for the reader. Returns how many events it handed on
/// (fewer than the page if the reader left).
fn read(inner: &Mutex<Inner>, q: &Query, max_bytes: usize, tx: &PageSender) -> usize {
    let mut pager = Pager::new(q.limit, max_bytes);
    let mut filters = None;
    let mut next = usize::try_from(q.after).unwrap_or(usize::MAX);
    let mut sent = 0;
    loop {
        let step = {
            let Ok(inner) = inner.lock() else {
                tx.blocking_send(PageItem::Failed(poisoned()));
                return sent;
            };
            let filters = *filters.get_or_insert_with(|| Filters::of(&inner, q));
            read_step(&inner, next, filters, &mut pager)
        };
        let slice = match step {
            Step::From(i) => {
                next = i;
                pager.ready_slice()
            }
            Step::Done => pager.last_slice(),
        };
        if let Some(slice) = slice {
            let n = slice.len();
            if !tx.blocking_send(PageItem::Events(slice)) {
                return sent;
            }
            sent += n;
        }
        if let Step::Done = step {
            tx.blocking_send(pager.end());
            return sent;
        }
    }
}

/// Nanoseconds since the Unix epoch, read straight from the system clock
/// (`OffsetDateTime::now_utc` would also work out the calendar date, which
/// nothing here needs).
fn now_nanos() -> i64 {
    let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => nanos(since),
        Err(before) => -nanos(before.duration()),
    }
}

fn publish(gauges: &StoreGauges, inner: &Inner) {
    gauges.events.store((inner.len - inner.first) as u64, Relaxed);
    gauges.bytes.store(inner.bytes, Relaxed);
    gauges.remembered_keys.store(inner.remembered(), Relaxed);
    let oldest =
        if inner.first < inner.len { record_at(&inner.chunks, inner.first).received_at / 1_000_000 } else { 0 };
    gauges.oldest_ms.store(oldest, Relaxed);
}

/// One round of the retention thread at `now` (ns): deletes what expired
/// and forgets the keys past the window, one step per hold of the lock.
/// `false` once the store is gone.
fn delete_round(inner: &Weak<Mutex<Inner>>, gauges: &StoreGauges, now: i64) -> bool {
    let Some(inner) = inner.upgrade() else { return false };
    let nanos = |d: Option<Duration>| d.map_or(i64::MAX, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let cutoff = now.saturating_sub(nanos(gauges.retention));
    let window = nanos(Some(gauges.dedupe_window));
    let remember = window > 0;
    loop {
        let Ok(mut guard) = inner.lock() else { return false };
        let deleted = guard.delete_expired(cutoff, now, remember);
        let forgotten = guard.forget_until(now.saturating_sub(window));
        gauges.record_deleted(DeleteReason::Retention, deleted as u64);
        publish(gauges, &guard);
        drop(guard);
        if deleted < DELETE_STEP && forgotten < DELETE_STEP {
            return true;
        }
    }
}

fn rfc3339(nanos: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(nanos.into())
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

impl MemoryStore {
    /// A store with these settings; with a retention, its deletion thread
    /// runs until the store is dropped.
    pub fn open(options: &Options) -> Result<MemoryStore, super::OpenError> {
        let rejected = options.keep_rejected.map(|o| Arc::new(super::rejected::MemoryRejected::new(o)));
        let gauges = Arc::new(StoreGauges {
            rejected: rejected.as_ref().map(|r| super::RejectedLog::gauges(&**r)),
            ..StoreGauges::new(options.retention, None, WhenFull::Refuse, options.dedupe_window)
        });
        let store = MemoryStore { inner: Arc::default(), live: Arc::default(), gauges, rejected };
        if let Some(retention) = options.retention {
            let (inner, gauges) = (Arc::downgrade(&store.inner), store.gauges.clone());
            let interval = (retention / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
            std::thread::Builder::new()
                .name("inlet-memory-retention".into())
                .spawn(move || {
                    while delete_round(&inner, &gauges, now_nanos()) {
                        std::thread::sleep(interval);
                    }
                })
                .map_err(|source| super::OpenError::Thread { what: "retention", source })?;
        }
        Ok(store)
    }

    fn append_now(&self, events: &[Event], token: Option<&str>) -> Result<Appended, StoreError> {
        let received_at = now_nanos();
        let mut inner =
            self.inner.lock().map_err(|_| StoreError::plain(ErrorKind::Unavailable, "the memory store is poisoned"))?;
        let token = inner.token_number(token);
        // Pushed one by one: `collect` into a `SmallVec` (its size hint and
        // reserve) cost more than the single event's insert around it.
        let mut duplicate = smallvec::SmallVec::<[bool; 8]>::new();
        for event in events {
            duplicate.push(!inner.insert(event, received_at, token));
        }
        self.publish(&inner);
        drop(inner);
        let appended = Appended { duplicate };
        self.live.committed(appended.accepted());
        Ok(appended)
    }

    /// Updates the gauges from `inner` (under its lock: a few stores).
    fn publish(&self, inner: &Inner) {
        publish(&self.gauges, inner);
    }

    /// A page, read whole on this thread (for tests).
    #[cfg(test)]
    fn query_now(&self, q: &Query) -> Result<super::Page, StoreError> {
        self.query_bytes(q, usize::MAX)
    }

    /// A page cut at `max_bytes`, read whole on this thread (for tests).
    #[cfg(test)]
    fn query_bytes(&self, q: &Query, max_bytes: usize) -> Result<super::Page, StoreError> {
        let (tx, stream) = PageSender::channel();
        let inner = self.inner.clone();
        let q = q.clone();
        let reader = std::thread::spawn(move || read(&inner, &q, max_bytes, &tx));
        let page = futures::executor::block_on(stream.collect());
        let _ = reader.join();
        page
    }
}

impl Store for MemoryStore {
    fn append<'a>(
        &'a self,
        events: &'a [Event],
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, StoreError>> {
        Box::pin(future::ready(MemoryStore::append_now(self, events, token)))
    }

    /// Ready at once: the handler takes this path, with no boxed future.
    fn append_now(&self, events: &[Event], token: Option<&str>) -> Option<Result<Appended, StoreError>> {
        Some(MemoryStore::append_now(self, events, token))
    }

    fn query(&self, query: Query, max_bytes: usize) -> BoxFuture<'_, PageStream> {
        let (tx, stream) = PageSender::channel();
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || read(&inner, &query, max_bytes, &tx));
        Box::pin(future::ready(stream))
    }

    fn last_seq(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        let len = self.inner.lock().map(|inner| inner.len as u64);
        Box::pin(future::ready(
            len.map_err(|_| StoreError::plain(ErrorKind::Unavailable, "the memory store is poisoned")),
        ))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(future::ready(Ok(())))
    }

    fn name(&self) -> &'static str {
        "memory"
    }

    fn gauges(&self) -> Option<Arc<StoreGauges>> {
        Some(self.gauges.clone())
    }

    fn live(&self) -> &Arc<super::Live> {
        &self.live
    }

    fn rejected(&self) -> Option<Arc<dyn super::RejectedLog>> {
        self.rejected.clone().map(|r| r as Arc<dyn super::RejectedLog>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(source: &str, id: &str, ty: &str) -> Event {
        Event::new(id, source, ty)
    }

    #[test]
    fn arena_pairs_are_the_two_slices_also_across_blocks_and_when_large() {
        let record = |data: Bytes, json_len: usize| Record {
            data,
            json_len,
            received_at: 0,
            ty: 0,
            source: 0,
            token: 0,
            key_low: 0,
        };
        let mut arena = Arena::default();
        let r = record(arena.copy_pair(b"{\"id\":\"a\"}", b"a"), 10);
        assert_eq!((r.json(), r.id()), (&b"{\"id\":\"a\"}"[..], &b"a"[..]));
        // Fill the block to one byte short of the next pair: it goes whole
        // into a fresh block.
        let filler = vec![b'x'; BLOCK / 8];
        while arena.block.capacity() - arena.block.len() >= filler.len() + 4 {
            assert_eq!(&arena.copy_pair(&filler, b"")[..], &filler[..]);
        }
        let left = arena.block.capacity() - arena.block.len();
        let json_part = vec![b'j'; left - 1];
        let r = record(arena.copy_pair(&json_part, b"id"), json_part.len());
        assert_eq!((r.json(), r.id()), (&json_part[..], &b"id"[..]));
        assert_eq!(arena.block.capacity() - arena.block.len(), BLOCK - json_part.len() - 2);
        // Larger than an eighth of a block: copied on their own.
        let big = vec![b'b'; BLOCK / 8 + 1];
        let r = record(arena.copy_pair(&big, b"z"), big.len());
        assert_eq!((r.json(), r.id()), (&big[..], &b"z"[..]));
    }

    #[test]
    fn now_nanos_is_the_clock_of_offset_date_time() {
        let before = OffsetDateTime::now_utc().unix_timestamp_nanos();
        let now = i128::from(now_nanos());
        let after = OffsetDateTime::now_utc().unix_timestamp_nanos();
        assert!(before <= now && now <= after, "{before} {now} {after}");
    }

    #[test]
    fn names_keep_their_numbers_in_runs_and_when_they_alternate() {
        let mut names = Names::default();
        let seen: Vec<u32> = ["a", "a", "b", "a", "b", "b", "c", "a", "c"].iter().map(|n| names.intern(n)).collect();
        assert_eq!(seen, [0, 0, 1, 0, 1, 1, 2, 0, 2]);
        assert_eq!(
            (names.number("a"), names.number("b"), names.number("c"), names.number("d")),
            (Some(0), Some(1), Some(2), None)
        );
        // A name that only shares a prefix with the last one is another name.
        assert_eq!(names.intern("ab"), 3);
        assert_eq!(names.intern("a"), 0);
    }

    #[test]
    fn duplicates_within_and_across_appends() {
        let store = MemoryStore::default();
        let a = store.append_now(&[ev("s", "1", "t"), ev("s", "2", "t"), ev("s", "1", "t")], None).unwrap();
        assert_eq!(a.duplicate[..], [false, false, true]);
        let b = store.append_now(&[ev("s", "2", "t"), ev("other", "2", "t")], None).unwrap();
        assert_eq!(b.duplicate[..], [true, false]);
        assert_eq!((b.accepted(), b.duplicates()), (1, 1));
    }

    fn stored_seqs(store: &MemoryStore) -> Vec<u64> {
        let page = store.query_now(&Query { limit: usize::MAX, ..Query::default() }).unwrap();
        page.events.iter().map(|e| e.seq).collect()
    }

    fn with_retention(window: Duration) -> MemoryStore {
        // The thread is not started: rounds are run by hand at chosen times.
        let gauges = StoreGauges::new(Some(Duration::from_secs(1)), None, WhenFull::Refuse, window);
        MemoryStore { inner: Arc::default(), live: Arc::default(), gauges: Arc::new(gauges), rejected: None }
    }

    fn round(store: &MemoryStore, after: Duration) -> bool {
        delete_round(&Arc::downgrade(&store.inner), &store.gauges, now_nanos() + after.as_nanos() as i64)
    }

    #[test]
    fn retention_deletes_from_the_front_and_remembers_keys_for_the_window() {
        let store = with_retention(Duration::from_secs(10));
        let events: Vec<Event> = (0..3).map(|i| ev("s", &i.to_string(), "t")).collect();
        store.append_now(&events, None).unwrap();
        let g = store.gauges.clone();
        assert_eq!((g.events.load(Relaxed), g.bytes.load(Relaxed)), (3, 3 * events[0].to_json().len() as u64));
        assert!(g.oldest_ms.load(Relaxed) > 0);
        assert!(round(&store, Duration::ZERO));
        assert_eq!(stored_seqs(&store), [1, 2, 3], "nothing is a second old yet");
        assert!(round(&store, Duration::from_secs(2)));
        assert_eq!(stored_seqs(&store), Vec::<u64>::new());
        assert_eq!((g.events.load(Relaxed), g.bytes.load(Relaxed), g.oldest_ms.load(Relaxed)), (0, 0, 0));
        assert_eq!((g.deleted_retention.load(Relaxed), g.remembered_keys.load(Relaxed)), (3, 3));
        // Within the window: duplicates. A new key is stored, numbered on.
        let again = store.append_now(&[ev("s", "0", "t"), ev("s", "9", "t")], None).unwrap();
        assert_eq!(again.duplicate[..], [true, false]);
        assert_eq!(stored_seqs(&store), [4]);
        // Past the window: forgotten, stored again.
        assert!(round(&store, Duration::from_secs(2) + Duration::from_secs(10)));
        assert_eq!(g.remembered_keys.load(Relaxed), 1, "4 was deleted in this round, and is remembered");
        assert_eq!(store.append_now(&[ev("s", "0", "t")], None).unwrap().duplicate[..], [false]);
        assert_eq!(stored_seqs(&store), [5]);
        // The thread stops once the store is gone.
        let inner = Arc::downgrade(&store.inner);
        let gauges = store.gauges.clone();
        drop(store);
        assert!(!delete_round(&inner, &gauges, now_nanos()));
    }

    #[test]
    fn retention_frees_whole_chunks_and_reads_skip_deleted_records() {
        let store = with_retention(Duration::ZERO);
        let events: Vec<Event> = (0..CHUNK + 10).map(|i| ev("s", &i.to_string(), "t")).collect();
        store.append_now(&events, None).unwrap();
        assert!(round(&store, Duration::from_secs(2)));
        let inner = store.inner.lock().unwrap();
        assert_eq!((inner.first, inner.forgotten), (CHUNK + 10, CHUNK + 10));
        assert_eq!(inner.chunks[0].capacity(), 0, "the first chunk is freed");
        assert_eq!(inner.shards.iter().map(|s| s.len()).sum::<usize>(), 0);
        drop(inner);
        assert_eq!(store.gauges.deleted_retention.load(Relaxed), (CHUNK + 10) as u64);
        // Without a window a deleted key is accepted again at once.
        assert_eq!(store.append_now(&[ev("s", "5", "t")], None).unwrap().duplicate[..], [false]);
        let page = store.query_now(&Query { after: 3, limit: 10, ..Query::default() }).unwrap();
        assert_eq!(page.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [CHUNK as u64 + 11]);
    }

    #[test]
    fn retention_lets_a_large_events_own_allocation_go() {
        let store = with_retention(Duration::ZERO);
        let mut big = ev("s", "big", "t");
        big.set_subject(Some("x".repeat(BLOCK / 8).into()));
        store.append_now(&[ev("s", "small", "t"), big], None).unwrap();
        let kept = |i: usize| store.inner.lock().unwrap().chunks[0][i].data.clone();
        let (small, large) = (kept(0), kept(1));
        assert!(large.len() > BLOCK / 8, "the large event has an allocation of its own");
        assert!(round(&store, Duration::from_secs(2)));
        assert_eq!(stored_seqs(&store), Vec::<u64>::new());
        let (small_id, large_id) = (kept(0), kept(1));
        assert_eq!((&small_id[..], &large_id[..]), (&b"small"[..], &b"big"[..]));
        let within = |part: &Bytes, whole: &Bytes| whole.as_ptr_range().contains(&part.as_ptr());
        assert!(within(&small_id, &small), "a block's record keeps its id in the block");
        assert!(!within(&large_id, &large), "the large event's id is copied out of its allocation");
    }

    #[test]
    fn records_cross_chunk_boundaries() {
        let store = MemoryStore::default();
        let events: Vec<Event> = (0..CHUNK + 10).map(|i| ev("s", &i.to_string(), "t")).collect();
        store.append_now(&events, None).unwrap();
        let q = Query { after: CHUNK as u64 - 2, limit: 5, ty: None, source: None, token: None };
        let page = store.query_now(&q).unwrap();
        let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
        let first = CHUNK as u64 - 1;
        assert_eq!(seqs, (first..first + 5).collect::<Vec<_>>());
        assert_eq!(page.next_after, Some(first + 4));
        // Every event is its own JSON, though they share arena blocks.
        let json = String::from_utf8(page.events[0].json.to_vec()).unwrap();
        assert!(json.contains(&format!("\"id\":\"{}\"", first - 1)), "{json}");
    }

    #[test]
    fn query_filters_and_pages() {
        let store = MemoryStore::default();
        let events: Vec<Event> =
            (0..10).map(|i| ev(if i % 2 == 0 { "even" } else { "odd" }, &i.to_string(), "t")).collect();
        store.append_now(&events, None).unwrap();
        let page =
            store.query_now(&Query { source: Some("odd".into()), after: 0, limit: 2, ty: None, token: None }).unwrap();
        assert_eq!(page.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 4]);
        assert_eq!(page.next_after, Some(4));
        let last =
            store.query_now(&Query { source: Some("odd".into()), after: 8, limit: 2, ty: None, token: None }).unwrap();
        assert_eq!(last.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![10]);
        assert_eq!(last.next_after, None);
        let none = store
            .query_now(&Query { ty: Some("never".into()), after: 0, limit: 2, source: None, token: None })
            .unwrap();
        assert_eq!(none, super::super::Page { events: Vec::new(), next_after: None });
    }

    #[test]
    fn events_carry_their_token_and_filter_by_it() {
        let store = MemoryStore::default();
        store.append_now(&[ev("s", "1", "t"), ev("s", "2", "t")], Some("shop")).unwrap();
        store.append_now(&[ev("s", "3", "t")], None).unwrap();
        store.append_now(&[ev("s", "4", "t")], Some("ci")).unwrap();
        let all = store.query_now(&Query { limit: 10, ..Query::default() }).unwrap();
        let tokens: Vec<Option<&str>> = all.events.iter().map(|e| e.token.as_deref()).collect();
        assert_eq!(tokens, [Some("shop"), Some("shop"), None, Some("ci")]);
        let shop = store.query_now(&Query { limit: 10, token: Some("shop".into()), ..Query::default() }).unwrap();
        assert_eq!(shop.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        let never = store.query_now(&Query { limit: 10, token: Some("never".into()), ..Query::default() }).unwrap();
        assert!(never.events.is_empty());
    }

    #[test]
    fn same_id_from_another_source_is_another_event() {
        let store = MemoryStore::default();
        let ids: Vec<Event> = (0..1000).map(|i| ev("a", &i.to_string(), "t")).collect();
        store.append_now(&ids, None).unwrap();
        let again: Vec<Event> =
            (0..1000).map(|i| ev(if i % 2 == 0 { "a" } else { "b" }, &i.to_string(), "t")).collect();
        let appended = store.append_now(&again, None).unwrap();
        assert_eq!((appended.accepted(), appended.duplicates()), (500, 500));
    }

    #[test]
    fn received_at_is_rfc3339() {
        let store = MemoryStore::default();
        store.append_now(&[ev("s", "1", "t")], None).unwrap();
        let page = store.query_now(&Query { limit: 1, ..Query::default() }).unwrap();
        let at = &page.events[0].received_at;
        assert!(OffsetDateTime::parse(at, &Rfc3339).is_ok(), "{at}");
    }

    /// hashbrown finds a key's first bucket from the low bits of its hash
    /// (as many as the table has buckets) and keeps the top 7 bits as its
    /// tag. The shard must come from other bits: if it took the low ones,
    /// every key of a shard would start in 1/SHARDS of its buckets; if the
    /// top ones, its keys would share most of their tag bits.
    #[test]
    fn shards_take_bits_hashbrown_does_not_use() {
        // Fixed keys: the test is about which bits are used, not about luck.
        let hasher = RandomState::with_seeds(0x5eed, 1, 2, 3);
        let hashes: Vec<u64> = (0..64_000u32).map(|i| key_hash(&hasher, 0, &i.to_be_bytes())).collect();
        let in_shard: Vec<u64> = hashes.iter().copied().filter(|h| shard_of(*h) == 5).collect();
        // About 1,000 keys; a shard table of 2,048 buckets.
        assert!((800..1200).contains(&in_shard.len()), "{}", in_shard.len());
        // What a shard's table is given: `table_hash` of the low half.
        let in_table: Vec<u64> = in_shard.iter().map(|h| table_hash(*h as u32)).collect();
        let first_buckets: std::collections::HashSet<u64> = in_table.iter().map(|h| h & 2047).collect();
        let tags: std::collections::HashSet<u64> = in_table.iter().map(|h| h >> 57).collect();
        // Spread over the buckets as evenly as chance allows (about 40% of
        // 2,048 distinct for 1,000 keys), and over the 128 tags (with 1,000
        // keys, about one tag in 2,500 stays unused by chance).
        assert!(first_buckets.len() > 600, "{} distinct first buckets", first_buckets.len());
        assert!(tags.len() >= 120, "{} distinct tags", tags.len());
        // And the shards are even.
        let mut sizes = [0usize; SHARDS];
        hashes.iter().for_each(|h| sizes[shard_of(*h)] += 1);
        assert!(sizes.iter().all(|n| (800..1200).contains(n)), "{sizes:?}");
    }

    /// Every shard grows many times over 20,000 keys, each growth placing
    /// its keys by the hash their records keep: a key placed by another
    /// hash than the one it is looked up by would be stored again.
    #[test]
    fn keys_are_found_after_the_shards_grow_and_once_forgotten_not() {
        let mut inner = Inner::default();
        let events: Vec<Event> = (0..20_000).map(|i| ev(&format!("s{}", i % 3), &format!("id-{i}"), "t")).collect();
        assert!(events.iter().all(|e| inner.insert(e, 0, NO_TOKEN)));
        assert!(events.iter().all(|e| !inner.insert(e, 0, NO_TOKEN)), "a key was stored twice");
        assert!(inner.insert(&ev("s3", "id-0", "t"), 0, NO_TOKEN), "another source, another key");
        // Forgetting takes each key out of the shard it was placed in.
        let len = inner.len;
        while inner.delete_expired(1, 0, false) > 0 {}
        while inner.forget_until(0) > 0 {}
        assert_eq!((inner.first, inner.forgotten), (len, len));
        assert_eq!(inner.shards.iter().map(|s| s.len()).sum::<usize>(), 0);
        assert!(events.iter().all(|e| inner.insert(e, 0, NO_TOKEN)), "a forgotten key was still there");
    }

    /// The key's hash half lives in what was the record's padding.
    #[test]
    fn a_record_is_64_bytes() {
        assert_eq!(std::mem::size_of::<Record>(), 64);
    }

    #[test]
    fn large_events_are_kept_whole() {
        let store = MemoryStore::default();
        let mut big = ev("s", "big", "t");
        big.set_subject(Some("x".repeat(BLOCK).into()));
        store.append_now(&[ev("s", "small", "t"), big.clone()], None).unwrap();
        let page = store.query_now(&Query { limit: 10, ..Query::default() }).unwrap();
        assert_eq!(page.events[1].json, Bytes::from(big.to_json()));
    }

    fn seqs(page: &super::super::Page) -> Vec<u64> {
        page.events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_page_stops_at_its_byte_bound_and_says_where() {
        let store = MemoryStore::default();
        let events: Vec<Event> = (0..10).map(|i| ev("s", &format!("{i:02}"), "t")).collect();
        let size = events[0].to_json().len();
        store.append_now(&events, None).unwrap();
        let q = Query { limit: 100, ..Query::default() };
        // At the bound: three fit exactly; one byte under: two.
        let page = store.query_bytes(&q, 3 * size).unwrap();
        assert_eq!((seqs(&page), page.next_after), (vec![1, 2, 3], Some(3)));
        let page = store.query_bytes(&q, 3 * size - 1).unwrap();
        assert_eq!((seqs(&page), page.next_after), (vec![1, 2], Some(2)));
        // One event larger than the bound is a page of its own.
        let page = store.query_bytes(&Query { after: 9, ..q.clone() }, 1).unwrap();
        assert_eq!((seqs(&page), page.next_after), (vec![10], None));
        let page = store.query_bytes(&q, 1).unwrap();
        assert_eq!((seqs(&page), page.next_after), (vec![1], Some(1)));
        // The whole log in one page: nothing more.
        let page = store.query_bytes(&q, 10 * size).unwrap();
        assert_eq!((page.events.len(), page.next_after), (10, None));
    }

    #[test]
    fn a_read_hands_its_page_on_in_slices_and_stops_when_its_reader_leaves() {
        let store = MemoryStore::default();
        let mut big = ev("s", "0", "t");
        big.set_subject(Some("x".repeat(32 * 1024).into()));
        let events: Vec<Event> = (0..64)
            .map(|i| {
                let mut e = big.clone();
                e.set_id(i.to_string());
                e
            })
            .collect();
        store.append_now(&events, None).unwrap();
        let (tx, mut stream) = PageSender::channel();
        let inner = store.inner.clone();
        let q = Query { limit: 1000, ..Query::default() };
        let reader = std::thread::spawn(move || read(&inner, &q, usize::MAX, &tx));
        // The first slice is about 64 KiB of events: two of 32 KiB, not the page.
        match futures::executor::block_on(stream.recv()) {
            PageItem::Events(slice) => assert_eq!(slice.len(), 2),
            other => panic!("expected a slice, got {other:?}"),
        }
        drop(stream);
        let sent = reader.join().unwrap();
        // Sent before the drop: what the channel holds (2 slices) plus the
        // one received and the one waiting to be sent; never all 64.
        assert!(sent <= 8, "{sent} events were handed on after the reader left");
    }
}
