//! Live subscriptions: how `GET /events/stream` learns that events were
//! committed.
//!
//! Every store owns one [`Live`]. After a successful append that stored
//! something, the store calls [`Live::committed`]: with no subscriber that
//! is one atomic load (the ingest path pays nothing else); with
//! subscribers it adds to an atomic counter of events committed, and the
//! first commit after a publication wakes the hub's ticker task. The ticker
//! publishes the counter to the subscribers at most once per [`COALESCE`],
//! so under load a subscriber is woken, reads and writes once per interval
//! with everything committed in it, whatever the number of commits. It
//! publishes lane by lane ([`LANES`], [`LANE_GAP`]): subscribers are spread
//! over the lanes as they arrive, and one lane's writes are done before the
//! next lane wakes, so fifty subscribers never write at the same moment and
//! an ingest request never waits behind all of their writes. Subscribers never receive events
//! through this hub: they read them from the store (from their cursor), so
//! a subscriber sees every event in `seq` order, with no gap and no repeat,
//! whatever it missed while it was writing.
//!
//! The counter also measures how far a subscriber falls behind: a
//! subscriber whose connection has not taken what it was sent while more
//! than `buffer_events` events were committed is cut off (`lagged`).
//!
//! Subscribers with the same filters read the same pages: the hub keeps the
//! last few pages read, encoded ([`Live::page`]), and a subscriber whose
//! cursor is the start of one, or falls inside one, takes it (or the part
//! after its cursor) instead of reading the store and encoding again. A
//! page read once serves every subscriber at that place: 50 subscribers
//! following live ingest cost about one read and one encoding per page, not
//! fifty.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify, OnceCell};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::StoreError;

/// Pages the hub keeps for other subscribers at most...
const SHARED_PAGES: usize = 8;
/// ...and bytes of them (a larger page is read by each subscriber itself).
const SHARED_BYTES: usize = 4 * 1024 * 1024;

/// Live subscribers learn of commits at most once per this interval: the
/// first commit after a quiet interval is published at once, later ones at
/// the end of the interval that follows the last publication. Under load
/// each subscriber then wakes, reads (a page shared with the others) and
/// writes once per interval, with every event committed in it, instead of
/// once per commit; a live event reaches a subscriber within this delay
/// plus the read and the write. A replay (a subscriber behind the store)
/// reads page after page without waiting.
pub const COALESCE: Duration = Duration::from_millis(100);

/// Subscribers are spread over this many lanes (each joins the one with the
/// fewest), and a publication wakes one lane after the other...
pub const LANES: usize = 8;
/// ...this long apart (lanes nobody is in are skipped). Fifty subscribers
/// woken at once make a burst of writes (about a millisecond here) that
/// every ingest request arriving meanwhile waits behind, which is what sets
/// ingest's p99 with subscribers; in lanes the burst is an eighth of that,
/// and a live event reaches the last lane at most `(LANES - 1) * LANE_GAP`
/// later than the first. The whole spread stays well inside [`COALESCE`].
pub const LANE_GAP: Duration = Duration::from_millis(5);

/// The default of `--max-subscribers`.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 256;
/// A comment is sent on an idle stream this often.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
/// Events committed while a subscriber's writes wait, before it is cut off.
pub const DEFAULT_BUFFER_EVENTS: u64 = 8192;

/// How streams behave; built from the command line.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// `false` in blocking mode: that server cannot hold a stream open.
    pub enabled: bool,
    pub max_subscribers: usize,
    pub keepalive: Duration,
    pub buffer_events: u64,
}

impl Default for LiveSettings {
    fn default() -> LiveSettings {
        LiveSettings {
            enabled: true,
            max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
            keepalive: DEFAULT_KEEPALIVE,
            buffer_events: DEFAULT_BUFFER_EVENTS,
        }
    }
}

/// The hub of a store's subscribers.
#[derive(Debug)]
pub struct Live {
    /// Set once when the store is opened (`store::open`); the defaults
    /// until then.
    settings: OnceLock<LiveSettings>,
    subscribers: AtomicUsize,
    /// The commit counter, and how subscribers learn of it.
    notes: Arc<Notes>,
    /// Publishes [`Notes::pending`] to the subscribers; started by a
    /// subscriber when it is not running.
    ticker: Mutex<Option<JoinHandle<()>>>,
    /// Whether new events may also come from elsewhere (another server
    /// writing the same JetStream stream): subscribers then look again
    /// at this interval even without a notification.
    poll: Option<Duration>,
    /// The last pages read by subscribers, oldest first (at most
    /// [`SHARED_PAGES`] and [`SHARED_BYTES`]).
    shared: Mutex<VecDeque<Arc<Slot>>>,
}

/// What ingest touches ([`Live::committed`]) and the ticker publishes.
#[derive(Debug)]
struct Notes {
    /// Events committed while someone subscribed (never decreases).
    pending: AtomicU64,
    /// Set by the commit that asks the ticker for a publication; cleared by
    /// the ticker just before it reads `pending` to publish it. While it
    /// is set, commits only add to `pending`.
    armed: AtomicBool,
    /// Wakes the ticker (a permit is kept when it is not waiting).
    wake: Notify,
    /// `pending` as last published (never decreases), per lane: each
    /// subscriber waits on its lane's.
    published: [watch::Sender<u64>; LANES],
}

impl Default for Live {
    fn default() -> Live {
        let notes = Notes {
            pending: AtomicU64::new(0),
            armed: AtomicBool::new(false),
            wake: Notify::new(),
            published: std::array::from_fn(|_| watch::channel(0).0),
        };
        Live {
            settings: OnceLock::new(),
            subscribers: AtomicUsize::new(0),
            notes: Arc::new(notes),
            ticker: Mutex::default(),
            poll: None,
            shared: Mutex::default(),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            ticker.abort();
        }
    }
}

/// The ticker: publishes the commit counter when a commit asks for it, at
/// most once per `every` (counted from the first lane's publication), lane
/// after lane `gap` apart.
///
/// No commit is left unpublished: a commit adds to `pending`, then sets
/// `armed`. If it found `armed` clear, it wakes the ticker, which reads
/// `pending` after clearing `armed`. If it found it set, the ticker has
/// not cleared it yet (all `SeqCst`): its next read of `pending` comes
/// after this commit's addition.
async fn tick(notes: Arc<Notes>, every: Duration, gap: Duration) {
    let mut last: Option<Instant> = None;
    loop {
        notes.wake.notified().await;
        if let Some(at) = last.map(|last| last + every) {
            if at > Instant::now() {
                tokio::time::sleep_until(at).await;
            }
        }
        notes.armed.store(false, Ordering::SeqCst);
        let pending = notes.pending.load(Ordering::SeqCst);
        last = Some(Instant::now());
        let mut woke = false;
        for lane in &notes.published {
            let listened = lane.receiver_count() > 0;
            if listened && woke {
                tokio::time::sleep(gap).await;
            }
            let sent = lane.send_if_modified(|published| {
                let newer = pending > *published;
                if newer {
                    *published = pending;
                }
                newer
            });
            woke |= sent && listened;
        }
    }
}

/// What a subscriber's pages depend on besides its cursor: its filters and
/// its page size. Subscribers with equal keys read equal pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageKey {
    pub ty: Option<String>,
    pub source: Option<String>,
    pub token: Option<String>,
    pub max_bytes: usize,
}

/// A page of a stream, encoded once for every subscriber that takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPage {
    /// What is written to the subscribers.
    pub chunk: Bytes,
    /// Per event, in order: its `seq` and where it starts in `chunk`.
    pub starts: Vec<(u64, usize)>,
    /// The store page's `next_after`: where the next page starts, `None`
    /// when nothing more matched.
    pub next_after: Option<u64>,
}

/// One shared page: empty while its first reader reads it.
#[derive(Debug)]
struct Slot {
    key: Arc<PageKey>,
    /// The cursor it was read from.
    after: u64,
    /// The page, and [`Live`]'s commit counter when its read started.
    page: OnceCell<(EncodedPage, u64)>,
}

impl Slot {
    /// Whether a subscriber at `cursor` with `key` can take (part of) it:
    /// a page being read, at its start; a page read, at its start or inside
    /// it, where events after the cursor are left. Never a read page with
    /// nothing after the cursor: it is what the subscriber has already, and
    /// taking it again would never move it on.
    fn serves(&self, key: &Arc<PageKey>, cursor: u64) -> bool {
        if !Arc::ptr_eq(&self.key, key) && *self.key != **key {
            return false;
        }
        match self.page.get() {
            None => cursor == self.after,
            Some((page, _)) => match page.starts.last() {
                Some(&(last, _)) => self.after <= cursor && cursor < last,
                None => false,
            },
        }
    }

    fn bytes(&self) -> usize {
        self.page.get().map_or(0, |(page, _)| page.chunk.len())
    }
}

/// A page as a subscriber at some cursor takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageView {
    /// The SSE events after the cursor (empty if none matched).
    pub chunk: Bytes,
    /// The `seq` of its last event.
    pub last: Option<u64>,
    pub next_after: Option<u64>,
    /// The commit counter when the page was read: commits after it may be
    /// missing from the page (see [`Subscription::seen_at_most`]).
    pub seen: u64,
}

/// `--max-subscribers` subscribers are open already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl Live {
    /// A hub whose subscribers also look at the store every `poll`.
    pub fn with_poll(poll: Duration) -> Arc<Live> {
        let mut live = Live::default();
        live.poll = Some(poll);
        Arc::new(live)
    }

    /// Sets the settings; only the first call counts.
    pub fn configure(&self, settings: LiveSettings) {
        let _ = self.settings.set(settings);
    }

    pub fn settings(&self) -> &LiveSettings {
        static DEFAULT: OnceLock<LiveSettings> = OnceLock::new();
        self.settings.get().unwrap_or_else(|| DEFAULT.get_or_init(LiveSettings::default))
    }

    pub fn poll(&self) -> Option<Duration> {
        self.poll
    }

    /// Called by the store after `accepted` events were committed: with
    /// subscribers, an atomic addition, and for the first commit after a
    /// publication a wake-up of the ticker. No subscriber is woken here.
    #[inline]
    pub(crate) fn committed(&self, accepted: usize) {
        if accepted == 0 || self.subscribers.load(Ordering::SeqCst) == 0 {
            return;
        }
        let notes = &*self.notes;
        notes.pending.fetch_add(accepted as u64, Ordering::SeqCst);
        if !notes.armed.load(Ordering::SeqCst) && !notes.armed.swap(true, Ordering::SeqCst) {
            notes.wake.notify_one();
        }
    }

    /// Subscribers open now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::SeqCst)
    }

    /// The page after `cursor` for subscribers with `key`: taken from the
    /// pages other subscribers read when one starts at `cursor` or holds
    /// it, else read with `read` (and kept for others). Subscribers that
    /// ask for the same page at once wait for one read.
    pub async fn page<F, Fut>(&self, key: &Arc<PageKey>, cursor: u64, read: F) -> Result<PageView, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<EncodedPage, StoreError>>,
    {
        let slot = {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            match shared.iter().rev().find(|slot| slot.serves(key, cursor)) {
                Some(slot) => slot.clone(),
                None => {
                    let slot = Arc::new(Slot { key: key.clone(), after: cursor, page: OnceCell::new() });
                    shared.push_back(slot.clone());
                    trim(&mut shared);
                    slot
                }
            }
        };
        let mut filled = false;
        let (page, seen) = slot
            .page
            .get_or_try_init(|| {
                filled = true;
                // Before the read: whatever it misses is committed after this.
                let seen = self.notes.pending.load(Ordering::SeqCst);
                async move { read().await.map(|page| (page, seen)) }
            })
            .await?;
        if filled {
            trim(&mut self.shared.lock().unwrap_or_else(|e| e.into_inner()));
        }
        let from = if cursor == slot.after { 0 } else { page.starts.partition_point(|&(seq, _)| seq <= cursor) };
        let chunk = match page.starts.get(from) {
            Some(&(_, start)) => page.chunk.slice(start..),
            None => Bytes::new(),
        };
        Ok(PageView { chunk, last: page.starts.last().map(|&(seq, _)| seq), next_after: page.next_after, seen: *seen })
    }

    /// Shared pages kept now, and their bytes (for tests).
    #[cfg(test)]
    fn shared(&self) -> (usize, usize) {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        (shared.len(), shared.iter().map(|slot| slot.bytes()).sum())
    }

    /// A new subscriber, unless `max_subscribers` are open.
    pub fn subscribe(self: &Arc<Live>) -> Result<Subscription, Full> {
        let max = self.settings().max_subscribers;
        self.subscribers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1))
            .map_err(|_| Full)?;
        self.start_ticker();
        // The lane with the fewest subscribers (the first of those): lanes
        // stay even as subscribers come and go.
        let lanes = &self.notes.published;
        let lane = (0..LANES).min_by_key(|&lane| lanes[lane].receiver_count()).unwrap_or(0);
        let rx = lanes[lane].subscribe();
        let seen = self.notes.pending.load(Ordering::SeqCst);
        Ok(Subscription { live: self.clone(), rx, seen })
    }

    /// Starts the ticker unless it runs (on the current runtime: a hub
    /// outside one has no ticker, and its subscribers are never woken).
    fn start_ticker(&self) {
        let mut ticker = self.ticker.lock().unwrap_or_else(|e| e.into_inner());
        if ticker.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            *ticker = Some(runtime.spawn(tick(self.notes.clone(), COALESCE, LANE_GAP)));
        }
    }
}

/// Drops the oldest shared pages past [`SHARED_PAGES`] or [`SHARED_BYTES`]
/// (their subscribers keep what they hold).
fn trim(shared: &mut VecDeque<Arc<Slot>>) {
    let mut bytes: usize = shared.iter().map(|slot| slot.bytes()).sum();
    while shared.len() > SHARED_PAGES || bytes > SHARED_BYTES {
        match shared.pop_front() {
            Some(slot) => bytes -= slot.bytes(),
            None => break,
        }
    }
}

/// One subscriber's place; dropping it frees the place.
#[derive(Debug)]
pub struct Subscription {
    live: Arc<Live>,
    /// The published commit counter.
    rx: watch::Receiver<u64>,
    /// The commit counter up to which the subscriber has everything: a
    /// commit past it, once published, wakes [`Subscription::changed`].
    seen: u64,
}

impl Subscription {
    /// Marks what was committed so far as seen: call before reading the
    /// store, so a commit after it wakes [`Subscription::changed`].
    pub fn mark_seen(&mut self) -> u64 {
        self.seen = self.live.notes.pending.load(Ordering::SeqCst);
        self.seen
    }

    /// Lowers what counts as seen to `seen` (a shared page read before
    /// [`Subscription::mark_seen`] may miss commits up to it): a commit
    /// past it wakes [`Subscription::changed`] at once.
    pub fn seen_at_most(&mut self, seen: u64) {
        self.seen = self.seen.min(seen);
    }

    /// Events committed so far (while anyone subscribed), published or not.
    pub fn committed(&self) -> u64 {
        self.live.notes.pending.load(Ordering::SeqCst)
    }

    /// Resolves once something committed past what was seen
    /// ([`Subscription::mark_seen`], [`Subscription::seen_at_most`]) is
    /// published to its lane (within [`COALESCE`] and the lanes before it);
    /// never, if the store is gone.
    pub async fn changed(&mut self) {
        let seen = self.seen;
        if self.rx.wait_for(|n| *n > seen).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once more than `buffer_events` events committed after
    /// `since` (a value of [`Subscription::committed`]) are published.
    pub async fn passed(&mut self, since: u64) {
        let limit = since.saturating_add(self.live.settings().buffer_events);
        if self.rx.wait_for(|n| *n > limit).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub fn live(&self) -> &Live {
        &self.live
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.live.subscribers.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last one: nobody is left to share pages with.
            self.live.shared.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(max: usize, buffer: u64) -> Arc<Live> {
        let live = Arc::new(Live::default());
        live.configure(LiveSettings { max_subscribers: max, buffer_events: buffer, ..LiveSettings::default() });
        live
    }

    #[test]
    fn subscribers_are_bounded_and_freed_when_dropped() {
        let live = live(2, 10);
        let a = live.subscribe().unwrap();
        let _b = live.subscribe().unwrap();
        assert_eq!(live.subscribe().unwrap_err(), Full, "a third is past the limit");
        assert_eq!(live.subscribers(), 2);
        drop(a);
        assert_eq!(live.subscribers(), 1);
        assert!(live.subscribe().is_ok(), "a freed place is taken again");
    }

    #[test]
    fn commits_count_only_while_someone_subscribes() {
        let live = live(4, 10);
        live.committed(5);
        let mut sub = live.subscribe().unwrap();
        assert_eq!(sub.mark_seen(), 0, "nothing counted without subscribers");
        live.committed(3);
        live.committed(0);
        assert_eq!(sub.committed(), 3);
    }

    /// Lets the ticker publish what was committed (time is paused: the
    /// runtime moves the clock on to the ticker's deadline).
    async fn published() {
        tokio::time::sleep(COALESCE * 2).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_commit_wakes_a_subscriber_and_lag_is_past_the_buffer() {
        let live = live(4, 10);
        let mut sub = live.subscribe().unwrap();
        sub.mark_seen();
        live.committed(1);
        tokio::time::timeout(Duration::from_secs(10), sub.changed()).await.expect("woken");
        let since = sub.committed();
        live.committed(10);
        published().await;
        use futures::FutureExt;
        assert!(sub.passed(since).now_or_never().is_none(), "10 events behind: at the buffer, not past it");
        live.committed(1);
        assert_eq!(sub.committed(), since + 11, "counted at once");
        published().await;
        assert!(sub.passed(since).now_or_never().is_some(), "11 behind: past it");
    }

    #[tokio::test(start_paused = true)]
    async fn commits_wake_subscribers_at_most_once_per_interval_and_within_it() {
        use futures::FutureExt;
        let live = live(4, 1000);
        let mut a = live.subscribe().unwrap();
        let mut b = live.subscribe().unwrap();
        let start = Instant::now();
        a.mark_seen();
        b.mark_seen();
        // After a quiet interval the first commit is published at once (to
        // the first lane; `b`, in the second, one gap later).
        live.committed(1);
        a.changed().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        b.changed().await;
        assert_eq!(start.elapsed(), LANE_GAP);
        assert_eq!(*a.rx.borrow(), 1);
        assert_eq!((a.mark_seen(), b.mark_seen()), (1, 1));
        // Commits during the interval that follows: published together at
        // its end (counted from the first lane), one wake-up for all of them.
        for _ in 0..5 {
            tokio::time::sleep(COALESCE / 10).await;
            live.committed(2);
        }
        assert_eq!(start.elapsed(), LANE_GAP + COALESCE / 2);
        assert!(a.changed().now_or_never().is_none(), "not before the interval's end");
        a.changed().await;
        assert_eq!(start.elapsed(), COALESCE, "at the interval's end, not later");
        assert_eq!(*a.rx.borrow(), 11, "every commit of the interval in one publication");
        assert!(b.changed().now_or_never().is_none(), "the second lane one gap later");
        b.changed().await;
        assert_eq!(start.elapsed(), COALESCE + LANE_GAP);
        assert_eq!(*b.rx.borrow(), 11, "the same publication in every lane");
        // Quiet for longer than the interval: the next commit is at once.
        assert_eq!((a.mark_seen(), b.mark_seen()), (11, 11));
        tokio::time::sleep(COALESCE * 3).await;
        let quiet = Instant::now();
        live.committed(1);
        a.changed().await;
        assert_eq!(quiet.elapsed(), Duration::ZERO);
        assert_eq!(*a.rx.borrow(), 12);
        // A commit right after that publication waits for the interval.
        assert_eq!(a.mark_seen(), 12);
        live.committed(1);
        a.changed().await;
        assert_eq!(quiet.elapsed(), COALESCE);
        assert_eq!(*a.rx.borrow(), 13);
    }

    /// When each of `subs` is woken by one commit, after `start`.
    async fn wake_times(subs: Vec<Subscription>, start: Instant) -> Vec<Duration> {
        let waits: Vec<_> = subs
            .into_iter()
            .map(|mut sub| {
                sub.mark_seen();
                tokio::spawn(async move {
                    sub.changed().await;
                    start.elapsed()
                })
            })
            .collect();
        let mut times = Vec::new();
        for wait in waits {
            times.push(wait.await.unwrap());
        }
        times
    }

    #[tokio::test(start_paused = true)]
    async fn a_publication_wakes_the_lanes_one_gap_apart_and_skips_empty_ones() {
        // 20 subscribers: each in the emptiest lane (3, 3, 3, 3, 2, 2, 2, 2),
        // lane k woken k gaps after the first.
        let hub = live(64, 1000);
        let subs: Vec<_> = (0..20).map(|_| hub.subscribe().unwrap()).collect();
        let start = Instant::now();
        let times = tokio::spawn(wake_times(subs, start));
        tokio::task::yield_now().await;
        hub.committed(1);
        let times = tokio::time::timeout(COALESCE * 10, times).await.expect("every lane woken").unwrap();
        let expected: Vec<_> = (0..20).map(|i| LANE_GAP * (i % LANES) as u32).collect();
        assert_eq!(times, expected);
        let mut per_gap = [0; LANES];
        for t in &times {
            per_gap[(t.as_millis() / LANE_GAP.as_millis()) as usize] += 1;
        }
        assert_eq!(per_gap, [3, 3, 3, 3, 2, 2, 2, 2], "never more than a lane's share at once");

        // Three subscribers on a fresh hub: lanes 0, 1 and 2; the one in
        // lane 1 leaves, and the lanes nobody is in cost no gap: the last
        // is woken one gap after the first, not seven.
        let hub = live(64, 1000);
        let first = hub.subscribe().unwrap();
        let gone = hub.subscribe().unwrap();
        let third = hub.subscribe().unwrap();
        drop(gone);
        tokio::time::sleep(COALESCE * 2).await;
        let start = Instant::now();
        let times = tokio::spawn(wake_times(vec![first, third], start));
        tokio::task::yield_now().await;
        hub.committed(1);
        let times = tokio::time::timeout(COALESCE * 10, times).await.expect("every lane woken").unwrap();
        assert_eq!(times, vec![Duration::ZERO, LANE_GAP]);
    }

    #[tokio::test(start_paused = true)]
    async fn lanes_stay_even_while_short_subscribers_come_and_go() {
        // Eight subscribers that stay, each followed by one that leaves: each
        // that stays takes the emptiest lane, so they wake one gap apart
        // (lanes given round robin by arrival put them in every other lane).
        let hub = live(64, 1000);
        let mut stay = Vec::new();
        for _ in 0..8 {
            stay.push(hub.subscribe().unwrap());
            drop(hub.subscribe().unwrap());
        }
        let start = Instant::now();
        let times = tokio::spawn(wake_times(stay, start));
        tokio::task::yield_now().await;
        hub.committed(1);
        let times = tokio::time::timeout(COALESCE * 10, times).await.expect("every lane woken").unwrap();
        assert_eq!(times, (0..8).map(|lane| LANE_GAP * lane).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_commit_is_left_unpublished_while_commits_race_the_ticker() {
        let live = live(4, u64::MAX);
        // Two lanes: commits also land while the ticker waits between them.
        let _first = live.subscribe().unwrap();
        let mut sub = live.subscribe().unwrap();
        assert_eq!(live.notes.published[1].receiver_count(), 1, "`sub` in the second lane");
        let mut total = 0;
        // Two threads commit until they see a publication, then once more:
        // that last commit lands while the ticker is publishing, and must be
        // published all the same, to the last lane too.
        for round in 0..20 {
            let before = *live.notes.published[0].borrow();
            let committed: u64 = std::thread::scope(|s| {
                let threads: Vec<_> = (0..2)
                    .map(|_| {
                        s.spawn(|| {
                            let mut n = 0;
                            while *live.notes.published[0].borrow() == before {
                                live.committed(1);
                                n += 1;
                                std::thread::yield_now();
                            }
                            live.committed(1);
                            n + 1
                        })
                    })
                    .collect();
                threads.into_iter().map(|t| t.join().unwrap()).sum()
            });
            total += committed;
            assert_eq!(sub.committed(), total);
            let published =
                tokio::time::timeout(Duration::from_secs(10), sub.rx.wait_for(|n| *n == total)).await.is_ok();
            assert!(published, "round {round}: {total} committed, {} published", *sub.rx.borrow());
        }
    }

    fn key(ty: Option<&str>) -> Arc<PageKey> {
        Arc::new(PageKey { ty: ty.map(String::from), source: None, token: None, max_bytes: 1000 })
    }

    /// A page of events `seqs`, each encoded as `<seq>;`.
    fn encoded(seqs: &[u64], next_after: Option<u64>) -> EncodedPage {
        let mut chunk = String::new();
        let mut starts = Vec::new();
        for seq in seqs {
            starts.push((*seq, chunk.len()));
            chunk.push_str(&format!("{seq};"));
        }
        EncodedPage { chunk: Bytes::from(chunk), starts, next_after }
    }

    /// Reads `page` and counts the reads in `reads`.
    fn reader(
        reads: &AtomicUsize,
        page: EncodedPage,
    ) -> impl FnOnce() -> std::future::Ready<Result<EncodedPage, StoreError>> + '_ {
        move || {
            reads.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(page))
        }
    }

    #[tokio::test]
    async fn a_page_is_read_once_for_subscribers_at_its_start_or_inside_it() {
        let live = live(4, 10);
        let reads = AtomicUsize::new(0);
        let all = key(None);
        let first = live.page(&all, 10, reader(&reads, encoded(&[11, 13, 14, 17], None))).await.unwrap();
        assert_eq!(first.chunk, "11;13;14;17;");
        assert_eq!((first.last, first.next_after), (Some(17), None));
        let same = live.page(&all, 10, reader(&reads, encoded(&[99], None))).await.unwrap();
        assert_eq!(same, first, "the same place: the page kept, not a read");
        let inside = live.page(&all, 13, reader(&reads, encoded(&[99], None))).await.unwrap();
        assert_eq!(inside.chunk, "14;17;", "the events after the cursor, none before, none twice");
        assert_eq!(inside.last, Some(17));
        let between = live.page(&all, 15, reader(&reads, encoded(&[99], None))).await.unwrap();
        assert_eq!(between.chunk, "17;", "a cursor between two events of the page");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        let at_end = live.page(&all, 17, reader(&reads, encoded(&[18], None))).await.unwrap();
        assert_eq!(at_end.chunk, "18;", "at the page's last event: a read of its own");
        let before = live.page(&all, 9, reader(&reads, encoded(&[10, 11], None))).await.unwrap();
        assert_eq!(before.chunk, "10;11;", "before the page's start: a read of its own");
        let filtered = live.page(&key(Some("t.a")), 13, reader(&reads, encoded(&[14], None))).await.unwrap();
        assert_eq!(filtered.chunk, "14;", "other filters: a read of its own");
        assert_eq!(reads.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_cut_page_keeps_its_next_after_and_an_empty_one_is_not_taken_again() {
        let live = live(4, 10);
        let reads = AtomicUsize::new(0);
        let all = key(None);
        let cut = live.page(&all, 0, reader(&reads, encoded(&[1, 2, 3], Some(3)))).await.unwrap();
        let tail = live.page(&all, 1, reader(&reads, encoded(&[99], None))).await.unwrap();
        assert_eq!((&tail.chunk[..], tail.last, tail.next_after), (&b"2;3;"[..], Some(3), Some(3)));
        assert_eq!(cut.next_after, Some(3));
        let empty = live.page(&all, 50, reader(&reads, encoded(&[], Some(60)))).await.unwrap();
        assert_eq!((empty.chunk.len(), empty.last, empty.next_after), (0, None, Some(60)));
        let again = live.page(&all, 50, reader(&reads, encoded(&[51], None))).await.unwrap();
        assert_eq!(again.chunk, "51;", "an empty page is not taken again: it would never move a subscriber on");
        let again = live.page(&all, 50, reader(&reads, encoded(&[99], None))).await.unwrap();
        assert_eq!(again.chunk, "51;");
        assert_eq!(reads.load(Ordering::SeqCst), 3);
        let empty = live.page(&all, 51, reader(&reads, encoded(&[], None))).await.unwrap();
        assert_eq!((empty.chunk.len(), empty.last), (0, None));
        let live_again = live.page(&all, 51, reader(&reads, encoded(&[52], None))).await.unwrap();
        assert_eq!(live_again.chunk, "52;", "caught up: the next look reads the store");
        assert_eq!(reads.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn subscribers_asking_at_once_wait_for_one_read() {
        let live = live(4, 10);
        let reads = AtomicUsize::new(0);
        let all = key(None);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let slow = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            let _ = rx.await;
            Ok(encoded(&[5, 6], None))
        };
        let first = live.page(&all, 4, slow);
        let second = live.page(&all, 4, reader(&reads, encoded(&[99], None)));
        let release = async {
            tokio::task::yield_now().await;
            let _ = tx.send(());
        };
        let (a, b, ()) = tokio::join!(first, second, release);
        assert_eq!(a.unwrap().chunk, "5;6;");
        assert_eq!(b.unwrap().chunk, "5;6;", "the second waited for the first's read");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_read_is_not_kept() {
        let live = live(4, 10);
        let all = key(None);
        let failed =
            live.page(&all, 0, || async { Err(StoreError::plain(super::super::ErrorKind::Unavailable, "test")) }).await;
        assert!(failed.is_err());
        let reads = AtomicUsize::new(0);
        let ok = live.page(&all, 0, reader(&reads, encoded(&[1], None))).await.unwrap();
        assert_eq!((ok.chunk, reads.load(Ordering::SeqCst)), (Bytes::from_static(b"1;"), 1));
    }

    #[tokio::test]
    async fn the_shared_pages_are_bounded() {
        let live = live(4, 10);
        let reads = AtomicUsize::new(0);
        let all = key(None);
        for after in 0..SHARED_PAGES as u64 + 5 {
            live.page(&all, after * 10, reader(&reads, encoded(&[after * 10 + 1], None))).await.unwrap();
        }
        assert_eq!(live.shared().0, SHARED_PAGES, "at most {SHARED_PAGES} pages");
        let oldest = live.page(&all, 0, reader(&reads, encoded(&[1], None))).await.unwrap();
        assert_eq!((oldest.chunk, reads.load(Ordering::SeqCst)), (Bytes::from_static(b"1;"), SHARED_PAGES + 6));
        // One page over the byte bound: handed to its readers, not kept.
        let big =
            EncodedPage { chunk: Bytes::from(vec![b'x'; SHARED_BYTES + 1]), starts: vec![(500, 0)], next_after: None };
        let view = live.page(&all, 499, reader(&reads, big)).await.unwrap();
        assert_eq!(view.chunk.len(), SHARED_BYTES + 1);
        let (pages, bytes) = live.shared();
        assert!(bytes <= SHARED_BYTES, "{bytes} bytes kept");
        assert!(pages < SHARED_PAGES, "{pages} pages kept");
        // At the byte bound exactly: kept.
        let live = self::live(4, 10);
        let fits = EncodedPage { chunk: Bytes::from(vec![b'x'; SHARED_BYTES]), starts: vec![(1, 0)], next_after: None };
        live.page(&all, 0, reader(&reads, fits)).await.unwrap();
        assert_eq!(live.shared(), (1, SHARED_BYTES));
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_read_before_a_commit_wakes_the_subscriber_that_takes_it_later() {
        let live = live(4, 100);
        let mut reader_sub = live.subscribe().unwrap();
        let mut late = live.subscribe().unwrap();
        let reads = AtomicUsize::new(0);
        let all = key(None);
        reader_sub.mark_seen();
        let page = live.page(&all, 0, reader(&reads, encoded(&[1], None))).await.unwrap();
        assert_eq!(page.seen, 0);
        // Event 2 is committed after the read: the page does not hold it.
        live.committed(1);
        published().await;
        assert_eq!(late.mark_seen(), 1);
        let shared = live.page(&all, 0, reader(&reads, encoded(&[99], None))).await.unwrap();
        assert_eq!((shared.chunk.clone(), shared.seen), (Bytes::from_static(b"1;"), 0));
        use futures::FutureExt;
        assert!(late.changed().now_or_never().is_none(), "marked seen: no wake-up yet");
        late.seen_at_most(shared.seen);
        assert!(late.changed().now_or_never().is_some(), "the page misses a commit: woken at once");
        reader_sub.seen_at_most(page.seen);
        assert!(reader_sub.changed().now_or_never().is_some());
        drop(reader_sub);
        assert_eq!(live.shared().0, 1);
        drop(late);
        assert_eq!(live.shared(), (0, 0), "the last subscriber gone: no page kept");
    }
}
