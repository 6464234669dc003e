//! Live subscriptions: how `GET /events/stream` learns that events were
//! committed.
//!
//! Every store owns one [`Live`]. After a successful append that stored
//! something, the store calls [`Live::committed`]: with no subscriber that
//! is one atomic load (the ingest path pays nothing else); with
//! subscribers it bumps a `watch` counter of events committed. Subscribers
//! never receive events through this hub: they read them from the store
//! (from their cursor), so a subscriber sees every event in `seq` order,
//! with no gap and no repeat, whatever it missed while it was writing.
//!
//! The counter also measures how far a subscriber falls behind: a
//! subscriber whose connection has not taken what it was sent while more
//! than `buffer_events` events were committed is cut off (`lagged`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

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
    /// Events committed while someone subscribed (never decreases).
    committed: watch::Sender<u64>,
    /// Whether new events may also come from elsewhere (another server
    /// writing the same JetStream stream): subscribers then look again
    /// at this interval even without a notification.
    poll: Option<Duration>,
}

impl Default for Live {
    fn default() -> Live {
        let (committed, _) = watch::channel(0);
        Live { settings: OnceLock::new(), subscribers: AtomicUsize::new(0), committed, poll: None }
    }
}

/// `--max-subscribers` subscribers are open already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl Live {
    /// A hub whose subscribers also look at the store every `poll`.
    pub fn with_poll(poll: Duration) -> Arc<Live> {
        Arc::new(Live { poll: Some(poll), ..Live::default() })
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

    /// Called by the store after `accepted` events were committed.
    #[inline]
    pub(crate) fn committed(&self, accepted: usize) {
        if accepted == 0 || self.subscribers.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.committed.send_modify(|n| *n += accepted as u64);
    }

    /// Subscribers open now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::SeqCst)
    }

    /// A new subscriber, unless `max_subscribers` are open.
    pub fn subscribe(self: &Arc<Live>) -> Result<Subscription, Full> {
        let max = self.settings().max_subscribers;
        self.subscribers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1))
            .map_err(|_| Full)?;
        let rx = self.committed.subscribe();
        Ok(Subscription { live: self.clone(), rx })
    }
}

/// One subscriber's place; dropping it frees the place.
#[derive(Debug)]
pub struct Subscription {
    live: Arc<Live>,
    rx: watch::Receiver<u64>,
}

impl Subscription {
    /// Marks what was committed so far as seen: call before reading the
    /// store, so a commit after it wakes [`Subscription::changed`].
    pub fn mark_seen(&mut self) -> u64 {
        *self.rx.borrow_and_update()
    }

    /// Events committed so far (while anyone subscribed).
    pub fn committed(&self) -> u64 {
        *self.rx.borrow()
    }

    /// Resolves once something was committed since the last
    /// [`Subscription::mark_seen`] (never, if the store is gone).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once more than `buffer_events` events were committed after
    /// `since` (a value of [`Subscription::committed`]).
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
        self.live.subscribers.fetch_sub(1, Ordering::SeqCst);
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

    #[tokio::test]
    async fn a_commit_wakes_a_subscriber_and_lag_is_past_the_buffer() {
        let live = live(4, 10);
        let mut sub = live.subscribe().unwrap();
        sub.mark_seen();
        live.committed(1);
        tokio::time::timeout(Duration::from_secs(10), sub.changed()).await.expect("woken");
        let since = sub.committed();
        live.committed(10);
        use futures::FutureExt;
        assert!(sub.passed(since).now_or_never().is_none(), "10 events behind: at the buffer, not past it");
        live.committed(1);
        assert!(sub.passed(since).now_or_never().is_some(), "11 behind: past it");
    }
}
