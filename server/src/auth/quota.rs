//! Per-token quotas: GCRA (the `governor` crate), one limiter per token, so
//! a token over its quota never slows another. A batch of `n` events costs
//! `n`: it is let through whole or not at all.
//!
//! # Answers
//! - fits: `Ok`, the capacity is taken.
//! - does not fit yet: `429` with `Retry-After` = the whole seconds until
//!   the batch fits (at least 1), nothing taken.
//! - can never fit (more events than the burst): `413`, because waiting
//!   cannot help and a sender that honours `Retry-After` would otherwise
//!   retry forever; the detail says to split the batch.
//!
//! # `RateLimit-Policy` and `RateLimit`
//! Written after draft-ietf-httpapi-ratelimit-headers-11 (May 2026; its
//! §3 and §4): both fields are Structured Field lists of items named by a
//! string, with parameters.
//! - `RateLimit-Policy: "token";q=<rate>;w=1;inlet-burst=<burst>`: `rate`
//!   quota units per 1-second window; the burst, which GCRA adds on top, in a
//!   vendor-prefixed parameter as §3.1 asks for implementation-specific ones.
//!   The unit is events, not the draft's default `requests`; the draft's
//!   registry has no unit for it, so docs/security.md says so instead.
//! - `RateLimit: "token";r=<available>;t=<seconds>`: `available` is how many
//!   events would be accepted now; `t` equals `Retry-After` (§6: the
//!   `Retry-After` must not point earlier than the end of the window).
//!
//! The fields go on refusals only: the draft does not require them on every
//! response (§6.2), and the success path stays free of formatting.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, FakeRelativeClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::RateLimiter;

use super::tokens::Rate;

/// The clock of every limiter of one [`super::Auth`]. Real time is
/// nanoseconds since the `Auth` was made; tests drive a manual clock.
#[derive(Clone, Debug)]
pub struct QuotaClock(ClockKind);

#[derive(Clone, Debug)]
enum ClockKind {
    Real(Instant),
    Manual(FakeRelativeClock),
}

impl QuotaClock {
    pub fn real() -> QuotaClock {
        QuotaClock(ClockKind::Real(Instant::now()))
    }

    /// A clock that moves only when the returned handle is advanced.
    pub fn manual() -> (QuotaClock, FakeRelativeClock) {
        let fake = FakeRelativeClock::default();
        (QuotaClock(ClockKind::Manual(fake.clone())), fake)
    }
}

impl Clock for QuotaClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        match &self.0 {
            ClockKind::Real(origin) => Nanos::new(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)),
            ClockKind::Manual(fake) => fake.now(),
        }
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, QuotaClock, StateInformationMiddleware>;

/// One token's limiter.
pub struct Quota {
    limiter: Limiter,
    rate: Rate,
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota").field("rate", &self.rate.per_second).field("burst", &self.rate.burst).finish()
    }
}

/// Why a batch was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverQuota {
    /// `429`: the batch fits after `retry_after`; `available` events would
    /// fit now.
    Wait { retry_after: RetryAfter, available: u32, rate: Rate },
    /// `413`: `events` is more than the burst; it never fits.
    TooBig { events: u64, rate: Rate },
}

/// Whole seconds until a refused batch fits: the `Retry-After` value, at
/// least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetryAfter(NonZeroU32);

impl RetryAfter {
    /// Rounds up, so a sender that waits this long finds the capacity.
    pub fn from_wait(wait: Duration) -> RetryAfter {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let secs = u32::try_from(secs).unwrap_or(u32::MAX).max(1);
        RetryAfter(NonZeroU32::new(secs).unwrap_or(NonZeroU32::MIN))
    }

    pub fn seconds(self) -> u32 {
        self.0.get()
    }
}

impl Quota {
    pub fn new(rate: Rate, clock: QuotaClock) -> Quota {
        let quota = governor::Quota::per_second(rate.per_second).allow_burst(rate.burst);
        let limiter = RateLimiter::direct_with_clock(quota, clock).with_middleware::<StateInformationMiddleware>();
        Quota { limiter, rate }
    }

    /// Takes `events` units, or none.
    pub fn try_take(&self, events: usize) -> Result<(), OverQuota> {
        let Some(n) = NonZeroU32::new(u32::try_from(events).unwrap_or(u32::MAX)) else {
            return Ok(());
        };
        match self.limiter.check_n(n) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Err(OverQuota::Wait {
                    retry_after: RetryAfter::from_wait(wait),
                    available: self.available_given(n.get(), wait),
                    rate: self.rate,
                })
            }
            Err(_) => Err(OverQuota::TooBig { events: events as u64, rate: self.rate }),
        }
    }

    /// In GCRA terms, a batch of `n` that must wait `wait` means
    /// `n - ceil(wait / emission interval)` events would fit now.
    fn available_given(&self, n: u32, wait: Duration) -> u32 {
        let interval = u128::from(1_000_000_000u32 / self.rate.per_second.get()).max(1);
        let missing = wait.as_nanos().div_ceil(interval);
        let missing = u32::try_from(missing).unwrap_or(u32::MAX);
        n.saturating_sub(missing).min(self.rate.burst.get())
    }
}

impl OverQuota {
    pub fn status(&self) -> u16 {
        match self {
            OverQuota::Wait { .. } => 429,
            OverQuota::TooBig { .. } => 413,
        }
    }

    fn rate(&self) -> Rate {
        match self {
            OverQuota::Wait { rate, .. } | OverQuota::TooBig { rate, .. } => *rate,
        }
    }

    /// The `RateLimit-Policy` field value.
    pub fn policy_header(&self) -> String {
        let r = self.rate();
        format!("\"token\";q={};w=1;inlet-burst={}", r.per_second, r.burst)
    }

    /// The `RateLimit` field value, `429` only (a `413` has no wait).
    pub fn ratelimit_header(&self) -> Option<String> {
        match self {
            OverQuota::Wait { retry_after, available, .. } => {
                Some(format!("\"token\";r={available};t={}", retry_after.seconds()))
            }
            OverQuota::TooBig { .. } => None,
        }
    }
}

/// Limiters outlive a reload when their token keeps its name and rate, so
/// `SIGHUP` does not refill anyone's burst.
pub(crate) fn carry_over(old: Option<&Arc<Quota>>, rate: Rate, clock: &QuotaClock) -> Arc<Quota> {
    match old {
        Some(q) if q.rate == rate => q.clone(),
        _ => Arc::new(Quota::new(rate, clock.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: u32, burst: u32) -> Rate {
        Rate { per_second: NonZeroU32::new(per_second).unwrap(), burst: NonZeroU32::new(burst).unwrap() }
    }

    #[test]
    fn a_batch_costs_its_events_and_the_burst_refills_at_the_rate() {
        let (clock, time) = QuotaClock::manual();
        let q = Quota::new(rate(10, 20), clock);
        assert_eq!(q.try_take(15), Ok(()));
        assert_eq!(q.try_take(5), Ok(()));
        // Empty now: one event is due in 100 ms.
        assert_eq!(
            q.try_take(1),
            Err(OverQuota::Wait {
                retry_after: RetryAfter::from_wait(Duration::from_millis(100)),
                available: 0,
                rate: rate(10, 20)
            })
        );
        time.advance(Duration::from_millis(500));
        // 5 events back; 8 must wait 300 ms more.
        match q.try_take(8) {
            Err(OverQuota::Wait { retry_after, available, .. }) => {
                assert_eq!(retry_after.seconds(), 1);
                assert_eq!(available, 5);
            }
            other => panic!("{other:?}"),
        }
        // The refused batch took nothing: 5 still fit.
        assert_eq!(q.try_take(5), Ok(()));
        assert!(q.try_take(1).is_err());
    }

    #[test]
    fn retry_after_is_the_whole_seconds_until_the_batch_fits() {
        let (clock, time) = QuotaClock::manual();
        let q = Quota::new(rate(2, 10), clock);
        assert_eq!(q.try_take(10), Ok(()));
        // 10 events at 2/s: 5 s until all fit.
        match q.try_take(10) {
            Err(e @ OverQuota::Wait { retry_after, available: 0, .. }) => {
                assert_eq!(retry_after.seconds(), 5);
                assert_eq!(e.status(), 429);
                assert_eq!(e.policy_header(), "\"token\";q=2;w=1;inlet-burst=10");
                assert_eq!(e.ratelimit_header().as_deref(), Some("\"token\";r=0;t=5"));
            }
            other => panic!("{other:?}"),
        }
        time.advance(Duration::from_millis(4_999));
        assert!(q.try_take(10).is_err());
        time.advance(Duration::from_millis(1));
        assert_eq!(q.try_take(10), Ok(()));
    }

    #[test]
    fn a_batch_at_the_burst_fits_and_one_past_it_never_does() {
        let (clock, time) = QuotaClock::manual();
        let q = Quota::new(rate(100, 50), clock);
        let e = q.try_take(51).unwrap_err();
        assert_eq!(e, OverQuota::TooBig { events: 51, rate: rate(100, 50) });
        assert_eq!(e.status(), 413);
        assert_eq!(e.ratelimit_header(), None);
        time.advance(Duration::from_secs(3600));
        assert!(matches!(q.try_take(51), Err(OverQuota::TooBig { .. })));
        assert_eq!(q.try_take(50), Ok(()));
        let huge = usize::MAX;
        assert!(matches!(q.try_take(huge), Err(OverQuota::TooBig { events, .. }) if events == huge as u64));
    }

    #[test]
    fn an_empty_batch_is_free() {
        let (clock, _time) = QuotaClock::manual();
        let q = Quota::new(rate(1, 1), clock);
        assert_eq!(q.try_take(1), Ok(()));
        assert_eq!(q.try_take(0), Ok(()));
        assert!(q.try_take(1).is_err());
    }

    #[test]
    fn limiters_are_independent() {
        let (clock, _time) = QuotaClock::manual();
        let a = Quota::new(rate(1, 3), clock.clone());
        let b = Quota::new(rate(1, 3), clock);
        assert_eq!(a.try_take(3), Ok(()));
        assert!(a.try_take(1).is_err());
        assert_eq!(b.try_take(3), Ok(()));
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(RetryAfter::from_wait(Duration::ZERO).seconds(), 1);
        assert_eq!(RetryAfter::from_wait(Duration::from_nanos(1)).seconds(), 1);
        assert_eq!(RetryAfter::from_wait(Duration::from_secs(1)).seconds(), 1);
        assert_eq!(RetryAfter::from_wait(Duration::from_millis(1001)).seconds(), 2);
        assert_eq!(RetryAfter::from_wait(Duration::from_secs(u64::MAX)).seconds(), u32::MAX);
    }

    #[test]
    fn carry_over_keeps_state_only_for_an_unchanged_rate() {
        let (clock, _time) = QuotaClock::manual();
        let old = Arc::new(Quota::new(rate(1, 2), clock.clone()));
        assert_eq!(old.try_take(2), Ok(()));
        let same = carry_over(Some(&old), rate(1, 2), &clock);
        assert!(Arc::ptr_eq(&same, &old));
        assert!(same.try_take(1).is_err());
        let changed = carry_over(Some(&old), rate(1, 3), &clock);
        assert_eq!(changed.try_take(3), Ok(()));
        let fresh = carry_over(None, rate(1, 2), &clock);
        assert_eq!(fresh.try_take(2), Ok(()));
    }
}
