//! The counters behind `GET /stats` (JSON), also exposed on `/metrics`:
//! accepted, duplicates, rejected by reason, per-type counts, connections,
//! uptime, request-body bytes on the wire and decoded by content coding. (Request counts and latency are in `metrics.rs`.)
//!
//! Hot-path counters are atomics. Per-type counts take a read lock on a map
//! of atomics (a write lock only the first time a type is seen), except
//! that each thread keeps the counter of the last type it counted, so a run
//! of events of one type takes no lock and no hash; the set of types is
//! capped so that clients cannot grow it without bound.
//!
//! Per token name: events accepted and duplicates, events refused (the
//! events of a batch refused for its sources, its quota, or the store) and
//! requests refused (any refusal that names the token: scope, sources,
//! quota, store). The names come only from the tokens file (a `401` has no
//! token and is not counted here), so the set is bounded by what the
//! operator wrote; a name removed by a reload keeps its counters.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use serde_json::json;

use inlet_shared::http::coding::Coding;

use crate::metrics::LabelValue;
use crate::store::{now_ms, RejectedGauges, StoreGauges, WhenFull};

/// The `coding` label of the body byte counters: a closed set (two stacked
/// codings count as `stacked`).
const BODY_CODINGS: [&str; 5] = ["identity", "gzip", "deflate", "zstd", "stacked"];

/// Which of [`BODY_CODINGS`] a body is coded with (see [`Stats::body_coding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyCoding(usize);

/// Distinct event types counted one by one; later ones count as `(other)`.
pub const MAX_TRACKED_TYPES: usize = 10_000;
const OTHER_TYPES: &str = "(other)";

/// Source of `Stats::id`.
static NEXT_STATS_ID: AtomicU64 = AtomicU64::new(0);

/// The counter of the type this thread counted last, and for which `Stats`.
/// Entries of `Stats::types` are never removed, so a kept counter stays the
/// one in the map.
struct LastType {
    stats: u64,
    ty: String,
    counter: Arc<AtomicU64>,
}

thread_local! {
    static LAST_TYPE: RefCell<Option<LastType>> = const { RefCell::new(None) };
}

#[derive(Debug)]
pub struct Stats {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: Mutex<BTreeMap<String, u64>>,
    /// ahash: the keys are client-chosen, and SipHash is slow for a lookup
    /// made per event.
    /// Each counter shared, so that a thread can keep the one of the last
    /// type it counted (`LAST_TYPE`) and skip the lookup for a run of
    /// events of one type.
    types: RwLock<HashMap<String, Arc<AtomicU64>, ahash::RandomState>>,
    /// Tells this `Stats` apart in the per-thread cache of `LAST_TYPE`.
    id: u64,
    open: AtomicI64,
    total: AtomicU64,
    started: Instant,
    /// `POST /events` body bytes as received, by [`BODY_CODINGS`].
    wire_bytes: [AtomicU64; BODY_CODINGS.len()],
    /// The same bodies' bytes once decoded (successful decodes only).
    decoded_bytes: [AtomicU64; BODY_CODINGS.len()],
    tokens: RwLock<BTreeMap<Arc<str>, Arc<TokenCounters>>>,
    /// `GET /events/stream` subscribers open now.
    subscribers: AtomicI64,
    /// Subscribers cut off for falling behind (`event: lagged`).
    lagged: AtomicU64,
    /// The store's gauges and retention settings, kept by the store.
    store: Option<Arc<StoreGauges>>,
    /// The rejected log's gauges (`--keep-rejected`), wherever the store
    /// keeps them.
    rejected_log: Option<Arc<RejectedGauges>>,
    /// `--schemas`: events per type whose `data` failed (`warned`: accepted
    /// in `warn` mode; `refused`: refused by a schema, a `dataschema`, or
    /// `--unknown-types reject`). Keyed by types that have a schema (the
    /// directory bounds them) and [`UNKNOWN_TYPES`] for all the others.
    schemas: Mutex<BTreeMap<String, SchemaCounts>>,
}

/// The key under which events of types with no schema are counted.
pub const UNKNOWN_TYPES: &str = "(no schema)";

/// Events of one type judged by its schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SchemaCounts {
    pub warned: u64,
    pub refused: u64,
}

/// The counters of one token name (shared with the token, see
/// `auth::Token::counters`).
#[derive(Debug, Default)]
pub struct TokenCounters {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    refused_events: AtomicU64,
    refused_requests: AtomicU64,
}

/// A snapshot of one token's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TokenCounts {
    pub accepted: u64,
    pub duplicates: u64,
    pub refused_events: u64,
    pub refused_requests: u64,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            accepted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejected: Mutex::new(BTreeMap::new()),
            types: RwLock::new(HashMap::default()),
            id: NEXT_STATS_ID.fetch_add(1, Relaxed),
            open: AtomicI64::new(0),
            total: AtomicU64::new(0),
            started: Instant::now(),
            wire_bytes: Default::default(),
            decoded_bytes: Default::default(),
            tokens: RwLock::new(BTreeMap::new()),
            schemas: Mutex::new(BTreeMap::new()),
            store: None,
            rejected_log: None,
            subscribers: AtomicI64::new(0),
            lagged: AtomicU64::new(0),
        }
    }
}

impl Stats {
    /// Counters that also show the store's gauges (`Store::gauges`).
    pub fn with_store(gauges: Option<Arc<StoreGauges>>) -> Stats {
        let rejected_log = gauges.as_ref().and_then(|g| g.rejected.clone());
        Stats { store: gauges, rejected_log, ..Stats::default() }
    }

    /// Also shows the rejected log's gauges (`--keep-rejected`), for a
    /// store that keeps them apart from its own (JetStream).
    pub fn with_rejected(mut self, rejected: Option<Arc<RejectedGauges>>) -> Stats {
        if rejected.is_some() {
            self.rejected_log = rejected;
        }
        self
    }

    /// The `rejected_events` object of `/stats` (`--keep-rejected`): rows
    /// kept now, their size and cap, and rows dropped or deleted by reason.
    fn rejected_json(g: &RejectedGauges) -> serde_json::Value {
        json!({
            "kept": g.rows.load(Relaxed),
            "bytes": g.bytes.load(Relaxed),
            "max_bytes": g.max_bytes,
            "dropped": {
                "cap": g.dropped_cap.load(Relaxed),
                "queue": g.dropped_queue.load(Relaxed),
                "retention": g.deleted_retention.load(Relaxed),
            },
        })
    }

    /// The `store` object of `/stats`: size, events, oldest event,
    /// deletions by reason, and the settings that cause them.
    fn store_json(g: &StoreGauges) -> serde_json::Value {
        let mut json = json!({
            "bytes": g.bytes.load(Relaxed),
            "events": g.events.load(Relaxed),
            "oldest_event_age_seconds": g.oldest_age_seconds(now_ms()),
            "deleted": {
                "retention": g.deleted_retention.load(Relaxed),
                "cap": g.deleted_cap.load(Relaxed),
            },
            "max_bytes": g.max_bytes,
            "when_full": g.when_full.name(),
            "retention_seconds": g.retention.map(|r| r.as_secs_f64()),
            "dedupe_window_seconds": g.dedupe_window.as_secs_f64(),
            "remembered_keys": g.remembered_keys.load(Relaxed),
        });
        if let (Some(c), Some(store)) = (&g.commits, json.as_object_mut()) {
            store.insert(
                "commits".into(),
                json!({
                    "count": c.commits.load(Relaxed),
                    "requests": c.requests.load(Relaxed),
                    "events": c.events.load(Relaxed),
                    "commit_seconds": c.commit_nanos.load(Relaxed) as f64 / 1e9,
                }),
            );
        }
        json
    }

    pub fn record_accepted<'a>(&self, types: impl Iterator<Item = &'a str>, duplicates: usize) {
        if duplicates > 0 {
            self.duplicates.fetch_add(duplicates as u64, Relaxed);
        }
        let mut accepted = 0u64;
        for ty in types {
            accepted += 1;
            self.count_type(ty);
        }
        self.accepted.fetch_add(accepted, Relaxed);
    }

    /// Adds one to the count of `ty` (or of `(other)` past the cap): the
    /// thread's last counter when it is `ty`'s, else a lookup under the read
    /// lock (the write lock for a type seen the first time).
    fn count_type(&self, ty: &str) {
        let hit = LAST_TYPE
            .try_with(|last| match &*last.borrow() {
                Some(last) if last.stats == self.id && last.ty == ty => {
                    last.counter.fetch_add(1, Relaxed);
                    true
                }
                _ => false,
            })
            .unwrap_or(false);
        if hit {
            return;
        }
        let counter = self.types.read().ok().and_then(|map| map.get(ty).cloned()).or_else(|| {
            let mut map = self.types.write().ok()?;
            let key = if map.len() < MAX_TRACKED_TYPES || map.contains_key(ty) { ty } else { OTHER_TYPES };
            Some(map.entry(key.to_string()).or_default().clone())
        });
        let Some(counter) = counter else { return };
        counter.fetch_add(1, Relaxed);
        let _ = LAST_TYPE.try_with(|last| {
            let mut last = last.borrow_mut();
            match &mut *last {
                // The string's buffer is reused: no allocation per change of type.
                Some(last) => {
                    last.stats = self.id;
                    last.ty.clear();
                    last.ty.push_str(ty);
                    last.counter = counter;
                }
                None => *last = Some(LastType { stats: self.id, ty: ty.to_string(), counter }),
            }
        });
    }

    /// Counts one refused request under its problem reason.
    pub fn record_rejected(&self, reason: &str) {
        if let Ok(mut map) = self.rejected.lock() {
            match map.get_mut(reason) {
                Some(n) => *n += 1,
                None => {
                    map.insert(reason.to_string(), 1);
                }
            }
        }
    }

    /// The label of a body coded with `codings` (in the order applied).
    pub fn body_coding(&self, codings: &[Coding]) -> BodyCoding {
        BodyCoding(match codings {
            [] => 0,
            [one] => 1 + Coding::ALL.iter().position(|c| c == one).unwrap_or(0),
            _ => BODY_CODINGS.len() - 1,
        })
    }

    pub fn record_wire_bytes(&self, coding: BodyCoding, n: usize) {
        self.wire_bytes[coding.0].fetch_add(n as u64, Relaxed);
    }

    pub fn record_decoded_bytes(&self, coding: BodyCoding, n: usize) {
        self.decoded_bytes[coding.0].fetch_add(n as u64, Relaxed);
    }

    /// Events of one accepted request of `principal`'s token (nothing when
    /// anonymous). After a token's first request this is two atomic adds:
    /// the token keeps its counters.
    pub fn record_token_accepted(&self, principal: &crate::auth::Principal, accepted: usize, duplicates: usize) {
        if let Some((name, slot)) = principal.counters_slot() {
            let c = slot.get_or_init(|| self.counters_of(name));
            c.accepted.fetch_add(accepted as u64, Relaxed);
            c.duplicates.fetch_add(duplicates as u64, Relaxed);
        }
    }

    /// The counters of `name`, made on first use.
    fn counters_of(&self, name: &Arc<str>) -> Arc<TokenCounters> {
        if let Ok(map) = self.tokens.read() {
            if let Some(c) = map.get(name) {
                return c.clone();
            }
        }
        match self.tokens.write() {
            Ok(mut map) => map.entry(name.clone()).or_default().clone(),
            // Poisoned: count into counters nobody reads rather than panic.
            Err(_) => Arc::default(),
        }
    }

    /// One refused request of the token `name`, with the events it carried
    /// (0 when it was refused before its events were read).
    pub fn record_token_refused(&self, name: &Arc<str>, events: usize) {
        self.with_token(name, |c| {
            c.refused_requests.fetch_add(1, Relaxed);
            c.refused_events.fetch_add(events as u64, Relaxed);
        });
    }

    fn with_token(&self, name: &Arc<str>, count: impl Fn(&TokenCounters)) {
        count(&self.counters_of(name));
    }

    /// Every token's counters, by name.
    pub fn token_counts(&self) -> BTreeMap<Arc<str>, TokenCounts> {
        let map = match self.tokens.read() {
            Ok(map) => map,
            Err(_) => return BTreeMap::new(),
        };
        map.iter()
            .map(|(name, c)| {
                let counts = TokenCounts {
                    accepted: c.accepted.load(Relaxed),
                    duplicates: c.duplicates.load(Relaxed),
                    refused_events: c.refused_events.load(Relaxed),
                    refused_requests: c.refused_requests.load(Relaxed),
                };
                (name.clone(), counts)
            })
            .collect()
    }

    /// Events accepted in `warn` mode although their `data` failed its
    /// schema, one type per event (only types that have a schema).
    pub fn record_schema_warned(&self, types: &[String]) {
        if let Ok(mut map) = self.schemas.lock() {
            for ty in types {
                map.entry(ty.clone()).or_default().warned += 1;
            }
        }
    }

    /// Events refused by the schemas; `known` says whether a type has a
    /// schema (the others count as [`UNKNOWN_TYPES`]).
    pub fn record_schema_refused<'a>(&self, types: impl Iterator<Item = &'a str>, known: impl Fn(&str) -> bool) {
        if let Ok(mut map) = self.schemas.lock() {
            for ty in types {
                let key = if known(ty) { ty } else { UNKNOWN_TYPES };
                match map.get_mut(key) {
                    Some(c) => c.refused += 1,
                    None => {
                        map.insert(key.to_string(), SchemaCounts { warned: 0, refused: 1 });
                    }
                }
            }
        }
    }

    /// The schema counters of one type.
    pub fn schema_counts(&self, ty: &str) -> SchemaCounts {
        self.schemas.lock().ok().and_then(|m| m.get(ty).copied()).unwrap_or_default()
    }

    fn snapshot_schemas(&self) -> BTreeMap<String, SchemaCounts> {
        self.schemas.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn connection_opened(&self) {
        self.open.fetch_add(1, Relaxed);
        self.total.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.open.fetch_sub(1, Relaxed);
    }

    pub fn subscriber_opened(&self) {
        self.subscribers.fetch_add(1, Relaxed);
    }

    pub fn subscriber_closed(&self) {
        self.subscribers.fetch_sub(1, Relaxed);
    }

    pub fn record_lagged(&self) {
        self.lagged.fetch_add(1, Relaxed);
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Relaxed)
    }

    fn snapshot_types(&self) -> BTreeMap<String, u64> {
        self.types.read().map(|m| m.iter().map(|(k, v)| (k.clone(), v.load(Relaxed))).collect()).unwrap_or_default()
    }

    fn snapshot_rejected(&self) -> BTreeMap<String, u64> {
        self.rejected.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The `/stats` body (SPEC §3).
    pub fn to_json(&self) -> Vec<u8> {
        let mut body = json!({
            "accepted": self.accepted.load(Relaxed),
            "duplicates": self.duplicates.load(Relaxed),
            "rejected": self.snapshot_rejected(),
            "types": self.snapshot_types(),
            "connections": {
                "open": self.open.load(Relaxed).max(0),
                "total": self.total.load(Relaxed),
            },
            "uptime_seconds": self.uptime().as_secs(),
            "stream": {
                "subscribers": self.subscribers.load(Relaxed).max(0),
                "lagged": self.lagged.load(Relaxed),
            },
            "tokens": self.token_counts().into_iter().map(|(k, v)| (k.to_string(), v)).collect::<BTreeMap<_, _>>(),
            "schemas": self.snapshot_schemas(),
        });
        if let (Some(g), Some(map)) = (&self.store, body.as_object_mut()) {
            map.insert("store".into(), Stats::store_json(g));
        }
        if let (Some(r), Some(map)) = (&self.rejected_log, body.as_object_mut()) {
            map.insert("rejected_events".into(), Stats::rejected_json(r));
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// Encodes the [`Stats`] counters at scrape time, so they are counted once
/// and read by both endpoints.
#[derive(Debug)]
struct StatsCollector(Arc<Stats>);

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let s = &self.0;
        let counters = [
            ("inlet_events_accepted", "Events stored (duplicates excluded)", s.accepted.load(Relaxed)),
            ("inlet_events_duplicate", "Events acknowledged as duplicates of stored ones", s.duplicates.load(Relaxed)),
            ("inlet_connections", "Connections accepted", s.total.load(Relaxed)),
            (
                "inlet_stream_lagged",
                "Stream subscribers cut off for falling behind (event: lagged)",
                s.lagged.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)?;
        }
        let metric =
            encoder.encode_descriptor("inlet_connections_open", "Connections open now", None, MetricType::Gauge)?;
        ConstGauge::new(s.open.load(Relaxed).max(0)).encode(metric)?;
        let metric = encoder.encode_descriptor(
            "inlet_stream_subscribers",
            "GET /events/stream subscribers open now",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(s.subscribers.load(Relaxed).max(0)).encode(metric)?;
        let metric =
            encoder.encode_descriptor("inlet_uptime_seconds", "Seconds since start", None, MetricType::Gauge)?;
        ConstGauge::new(s.uptime().as_secs() as i64).encode(metric)?;

        let mut metric = encoder.encode_descriptor(
            "inlet_requests_rejected",
            "Requests refused, by problem reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in s.snapshot_rejected() {
            let labels = [("reason", LabelValue(&reason))];
            ConstCounter::new(n).encode(metric.encode_family(&labels)?)?;
        }
        for (name, help, cells) in [
            ("inlet_request_body_wire_bytes", "POST /events body bytes as received, by content coding", &s.wire_bytes),
            (
                "inlet_request_body_decoded_bytes",
                "POST /events body bytes after undoing the content coding, by content coding",
                &s.decoded_bytes,
            ),
        ] {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (coding, n) in BODY_CODINGS.iter().zip(cells) {
                let labels = [("coding", LabelValue(coding))];
                ConstCounter::new(n.load(Relaxed)).encode(metric.encode_family(&labels)?)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "inlet_events_by_type",
            "Events stored, by CloudEvents type",
            None,
            MetricType::Counter,
        )?;
        for (ty, n) in s.snapshot_types() {
            let labels = [("type", LabelValue(&ty))];
            ConstCounter::new(n).encode(metric.encode_family(&labels)?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "inlet_schema_events",
            "Events whose data failed its type's JSON schema, by type and outcome (warned: accepted in warn mode; \
             refused)",
            None,
            MetricType::Counter,
        )?;
        for (ty, c) in s.snapshot_schemas() {
            for (outcome, n) in [("warned", c.warned), ("refused", c.refused)] {
                let labels = [("type", LabelValue(&ty)), ("outcome", LabelValue(outcome))];
                ConstCounter::new(n).encode(metric.encode_family(&labels)?)?;
            }
        }
        let tokens = s.token_counts();
        let mut metric = encoder.encode_descriptor(
            "inlet_token_events",
            "Events sent with each token, by outcome (accepted, duplicate, refused)",
            None,
            MetricType::Counter,
        )?;
        for (name, c) in &tokens {
            for (outcome, n) in [("accepted", c.accepted), ("duplicate", c.duplicates), ("refused", c.refused_events)] {
                let labels = [("token", LabelValue(name)), ("outcome", LabelValue(outcome))];
                ConstCounter::new(n).encode(metric.encode_family(&labels)?)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "inlet_token_requests_refused",
            "Requests refused that named a token (scope, sources, quota, store), by token",
            None,
            MetricType::Counter,
        )?;
        for (name, c) in &tokens {
            let labels = [("token", LabelValue(name))];
            ConstCounter::new(c.refused_requests).encode(metric.encode_family(&labels)?)?;
        }
        if let Some(g) = &s.store {
            encode_store(g, &mut encoder)?;
        }
        if let Some(r) = &s.rejected_log {
            encode_rejected(r, &mut encoder)?;
        }
        Ok(())
    }
}

/// The rejected log's gauges on `/metrics` (`--keep-rejected`).
fn encode_rejected(g: &RejectedGauges, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for (name, help, value) in [
        ("inlet_rejected_events_kept", "Rejected events kept now (--keep-rejected)", g.rows.load(Relaxed)),
        ("inlet_rejected_events_bytes", "Size of the rejected events kept, bytes", g.bytes.load(Relaxed)),
        ("inlet_rejected_events_max_bytes", "--max-rejected-bytes", g.max_bytes),
    ] {
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(gauge(value)).encode(metric)?;
    }
    let mut metric = encoder.encode_descriptor(
        "inlet_rejected_events_dropped",
        "Rejected events not kept or no longer kept, by reason (cap: oldest dropped under --max-rejected-bytes; \
         queue: the queue to the store was full or the write failed; retention: older than --retention)",
        None,
        MetricType::Counter,
    )?;
    for (reason, n) in [("cap", &g.dropped_cap), ("queue", &g.dropped_queue), ("retention", &g.deleted_retention)] {
        let labels = [("reason", LabelValue(reason))];
        ConstCounter::new(n.load(Relaxed)).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The store's gauges on `/metrics`.
fn encode_store(g: &StoreGauges, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let mut gauges = vec![
        ("inlet_store_bytes", "Size of the store, bytes", gauge(g.bytes.load(Relaxed))),
        ("inlet_store_events", "Events stored now", gauge(g.events.load(Relaxed))),
        (
            "inlet_store_remembered_keys",
            "Keys of deleted events still answered as duplicates (--dedupe-window)",
            gauge(g.remembered_keys.load(Relaxed)),
        ),
        ("inlet_store_dedupe_window_seconds", "--dedupe-window, seconds", gauge(g.dedupe_window.as_secs())),
    ];
    if let Some(age) = g.oldest_age_seconds(now_ms()) {
        gauges.push(("inlet_store_oldest_event_age_seconds", "Age of the oldest stored event, seconds", gauge(age)));
    }
    if let Some(cap) = g.max_bytes {
        gauges.push(("inlet_store_max_bytes", "--max-store-bytes", gauge(cap)));
    }
    if let Some(r) = g.retention {
        gauges.push(("inlet_store_retention_seconds", "--retention, seconds", gauge(r.as_secs())));
    }
    for (name, help, value) in gauges {
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(value).encode(metric)?;
    }
    let mut metric = encoder.encode_descriptor(
        "inlet_store_deleted_events",
        "Events deleted by the store, by reason (retention, cap)",
        None,
        MetricType::Counter,
    )?;
    for (reason, n) in [("retention", &g.deleted_retention), ("cap", &g.deleted_cap)] {
        let labels = [("reason", LabelValue(reason))];
        ConstCounter::new(n.load(Relaxed)).encode(metric.encode_family(&labels)?)?;
    }
    let mut metric = encoder.encode_descriptor(
        "inlet_store_when_full",
        "What a write past the cap does (--when-full): 1 for the mode in use",
        None,
        MetricType::Gauge,
    )?;
    for mode in [WhenFull::Refuse, WhenFull::DropOldest] {
        let labels = [("mode", LabelValue(mode.name()))];
        ConstGauge::new(i64::from(mode == g.when_full)).encode(metric.encode_family(&labels)?)?;
    }
    if let Some(c) = &g.commits {
        // Counts from the buckets themselves, so that +Inf equals the count
        // even while the writer records a commit during the scrape.
        let count = |buckets: &[(f64, u64)]| buckets.iter().map(|b| b.1).sum::<u64>();
        let mut metric = encoder.encode_descriptor(
            "inlet_store_commit_requests",
            "Requests written per commit of the SQLite writer (its group commit)",
            None,
            MetricType::Histogram,
        )?;
        let (sum, buckets) = c.size_histogram();
        metric.encode_histogram::<NoLabelSet>(sum, count(&buckets), &buckets, None)?;
        let mut metric = encoder.encode_descriptor(
            "inlet_store_commit_duration_seconds",
            "Time of each COMMIT of the SQLite writer (with --sync full, the fsync of the WAL)",
            None,
            MetricType::Histogram,
        )?;
        let (sum, buckets) = c.duration_histogram();
        metric.encode_histogram::<NoLabelSet>(sum, count(&buckets), &buckets, None)?;
        let metric = encoder.encode_descriptor(
            "inlet_store_commit_events",
            "Events written by the SQLite writer's commits",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(c.events.load(Relaxed)).encode(metric)?;
    }
    Ok(())
}

/// The collector that exposes [`Stats`] on `/metrics`.
pub fn collector(stats: Arc<Stats>) -> impl Collector {
    StatsCollector(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(stats: &Stats) -> serde_json::Value {
        serde_json::from_slice(&stats.to_json()).unwrap()
    }

    #[test]
    fn per_type_counts_stay_apart_across_types_and_stats() {
        // The thread's last counter must count only for its own type and
        // its own `Stats`.
        let (a, b) = (Stats::default(), Stats::default());
        a.record_accepted(["x", "x", "y", "x"].into_iter(), 0);
        b.record_accepted(["x"].into_iter(), 1);
        a.record_accepted(["y", "xx", "x"].into_iter(), 0);
        b.record_accepted(["x", "y"].into_iter(), 0);
        assert_eq!(a.snapshot_types(), BTreeMap::from([("x".into(), 4), ("y".into(), 2), ("xx".into(), 1)]));
        assert_eq!(b.snapshot_types(), BTreeMap::from([("x".into(), 2), ("y".into(), 1)]));
        let json = |s: &Stats| serde_json::from_slice::<serde_json::Value>(&s.to_json()).unwrap();
        assert_eq!((json(&a)["accepted"].as_u64(), json(&a)["duplicates"].as_u64()), (Some(7), Some(0)));
        assert_eq!((json(&b)["accepted"].as_u64(), json(&b)["duplicates"].as_u64()), (Some(3), Some(1)));
    }

    #[test]
    fn types_past_the_cap_count_as_other() {
        let stats = Stats::default();
        let names: Vec<String> = (0..MAX_TRACKED_TYPES).map(|i| format!("t{i}")).collect();
        stats.record_accepted(names.iter().map(String::as_str), 0);
        // The cap is reached: new types go to "(other)", known ones still count.
        stats.record_accepted(["new.a", "t0", "new.b", "new.a"].into_iter(), 3);
        let json = body(&stats);
        let types = json["types"].as_object().unwrap();
        assert_eq!(types.len(), MAX_TRACKED_TYPES + 1);
        assert_eq!(types["t0"], 2);
        assert_eq!(types["t1"], 1);
        assert_eq!(types[OTHER_TYPES], 3);
        assert!(!types.contains_key("new.a"));
        assert_eq!(json["accepted"], MAX_TRACKED_TYPES as u64 + 4);
        assert_eq!(json["duplicates"], 3);
    }

    #[test]
    fn body_bytes_by_coding() {
        let stats = Stats::default();
        let labels = [&[][..], &[Coding::Gzip], &[Coding::Deflate], &[Coding::Zstd], &[Coding::Gzip, Coding::Zstd]];
        for (i, codings) in labels.iter().enumerate() {
            let label = stats.body_coding(codings);
            assert_eq!(label, BodyCoding(i), "{codings:?}");
            stats.record_wire_bytes(label, 10 + i);
            stats.record_decoded_bytes(label, 100 + i);
        }
        for (i, name) in BODY_CODINGS.iter().enumerate() {
            assert_eq!(stats.wire_bytes[i].load(Relaxed), 10 + i as u64, "{name}");
            assert_eq!(stats.decoded_bytes[i].load(Relaxed), 100 + i as u64, "{name}");
        }
    }

    #[test]
    fn tokens_are_counted_by_name() {
        let stats = Stats::default();
        let (shop, ci): (Arc<str>, Arc<str>) = (Arc::from("shop"), Arc::from("ci"));
        // What a token keeps after its first request: the counters of its
        // name, the same ones for a token of that name made by a reload.
        let kept = stats.counters_of(&shop);
        assert!(Arc::ptr_eq(&kept, &stats.counters_of(&Arc::from("shop"))));
        kept.accepted.fetch_add(5, Relaxed);
        kept.duplicates.fetch_add(1, Relaxed);
        stats.record_token_refused(&shop, 10);
        stats.record_token_refused(&ci, 0);
        let json = body(&stats);
        assert_eq!(
            json["tokens"],
            serde_json::json!({
                "ci": {"accepted": 0, "duplicates": 0, "refused_events": 0, "refused_requests": 1},
                "shop": {"accepted": 5, "duplicates": 1, "refused_events": 10, "refused_requests": 1},
            })
        );
    }

    #[test]
    fn schema_outcomes_are_counted_by_type_and_unknown_types_together() {
        let stats = Stats::default();
        stats.record_schema_warned(&["a".into(), "a".into()]);
        stats.record_schema_refused(["a", "x", "y"].into_iter(), |ty| ty == "a");
        assert_eq!(stats.schema_counts("a"), SchemaCounts { warned: 2, refused: 1 });
        assert_eq!(
            body(&stats)["schemas"],
            serde_json::json!({"a": {"warned": 2, "refused": 1}, "(no schema)": {"warned": 0, "refused": 2}})
        );
    }

    #[test]
    fn store_gauges_show_in_stats_and_metrics() {
        use std::sync::atomic::Ordering::Relaxed;
        let g = Arc::new(StoreGauges::new(
            Some(Duration::from_secs(7200)),
            Some(1 << 20),
            WhenFull::DropOldest,
            Duration::from_secs(86_400),
        ));
        g.bytes.store(40_960, Relaxed);
        g.events.store(12, Relaxed);
        g.oldest_ms.store(now_ms() - 90_500, Relaxed);
        g.deleted_retention.store(3, Relaxed);
        g.deleted_cap.store(4, Relaxed);
        g.remembered_keys.store(7, Relaxed);
        let stats = Arc::new(Stats::with_store(Some(g.clone())));
        let json = body(&stats);
        let age = json["store"]["oldest_event_age_seconds"].as_u64();
        assert!(matches!(age, Some(90..=100)), "{age:?}");
        let mut store = json["store"].clone();
        store["oldest_event_age_seconds"] = serde_json::json!(90);
        assert_eq!(
            store,
            serde_json::json!({
                "bytes": 40_960, "events": 12, "oldest_event_age_seconds": 90,
                "deleted": {"retention": 3, "cap": 4},
                "max_bytes": 1_048_576, "when_full": "drop-oldest",
                "retention_seconds": 7200.0, "dedupe_window_seconds": 86_400.0, "remembered_keys": 7,
            })
        );
        let text = crate::metrics::Metrics::new(stats.clone()).render();
        for line in [
            "inlet_store_bytes 40960\n",
            "inlet_store_events 12\n",
            "inlet_store_remembered_keys 7\n",
            "inlet_store_dedupe_window_seconds 86400\n",
            "inlet_store_max_bytes 1048576\n",
            "inlet_store_retention_seconds 7200\n",
            "inlet_store_deleted_events_total{reason=\"retention\"} 3\n",
            "inlet_store_deleted_events_total{reason=\"cap\"} 4\n",
            "inlet_store_when_full{mode=\"refuse\"} 0\n",
            "inlet_store_when_full{mode=\"drop-oldest\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(text.contains("inlet_store_oldest_event_age_seconds 9"), "{text}");

        // An empty store has no oldest event; a store kept forever no retention.
        let empty = Arc::new(StoreGauges::new(None, None, WhenFull::Refuse, Duration::ZERO));
        let stats = Arc::new(Stats::with_store(Some(empty)));
        let json = body(&stats);
        assert_eq!(json["store"]["oldest_event_age_seconds"], serde_json::Value::Null);
        assert_eq!(json["store"]["retention_seconds"], serde_json::Value::Null);
        assert_eq!(json["store"]["max_bytes"], serde_json::Value::Null);
        assert_eq!(json["store"]["when_full"], "refuse");
        let text = crate::metrics::Metrics::new(stats).render();
        assert!(!text.contains("inlet_store_oldest_event_age_seconds"), "{text}");
        assert!(!text.contains("inlet_store_retention_seconds"), "{text}");
        // Without a store's gauges, /stats has no `store`.
        assert!(body(&Stats::default()).get("store").is_none());
    }

    #[test]
    fn counters_and_rejections() {
        let stats = Stats::default();
        stats.record_rejected("invalid-event");
        stats.record_rejected("invalid-event");
        stats.record_rejected("store-unavailable");
        stats.connection_opened();
        stats.connection_opened();
        stats.connection_closed();
        let json = body(&stats);
        assert_eq!(json["rejected"], serde_json::json!({"invalid-event": 2, "store-unavailable": 1}));
        assert_eq!(json["connections"], serde_json::json!({"open": 1, "total": 2}));
        assert_eq!((json["accepted"].as_u64(), json["types"].as_object().map(|t| t.len())), (Some(0), Some(0)));
    }
}
