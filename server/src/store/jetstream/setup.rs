//! Something set up once over NATS (a stream), waited for by requests each
//! within its own deadline.
//!
//! - Once set up, it is there for good.
//! - Until then one attempt at a time: the first request that needs it
//!   starts one, every request that comes while it runs waits for that same
//!   attempt, each until its own deadline.
//! - A failed attempt is the answer of every request that waited on it (no
//!   attempts one after another, each with a fresh wait); the next request
//!   starts a new one.
//! - An attempt runs as a task of its own: it ends (its NATS requests are
//!   bounded by the ack timeout each) when all its waiters gave up, and its
//!   result serves the next request.

use std::sync::{Mutex, OnceLock, PoisonError};

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::time::Instant;

use crate::store::{ErrorKind, StoreError};

type Attempt<T> = Shared<BoxFuture<'static, Result<T, StoreError>>>;

pub(super) struct SetUp<T: Clone + Send + Sync + 'static> {
    done: OnceLock<T>,
    attempt: Mutex<Option<Attempt<T>>>,
}

impl<T: Clone + Send + Sync + 'static> SetUp<T> {
    pub fn new() -> SetUp<T> {
        SetUp { done: OnceLock::new(), attempt: Mutex::new(None) }
    }

    /// What was set up, if it is.
    pub fn get(&self) -> Option<&T> {
        self.done.get()
    }

    /// What was set up, waiting for the attempt in flight (or starting one
    /// with `start`) until `deadline` at most; past it, `Unavailable` with
    /// the reason `late`.
    pub async fn get_or_set_up(
        &self,
        deadline: Instant,
        late: &'static str,
        start: impl FnOnce() -> BoxFuture<'static, Result<T, StoreError>>,
    ) -> Result<&T, StoreError> {
        if let Some(done) = self.done.get() {
            return Ok(done);
        }
        match tokio::time::timeout_at(deadline, self.attempt(start)).await {
            Ok(Ok(done)) => Ok(self.done.get_or_init(|| done)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::plain(ErrorKind::Unavailable, late)),
        }
    }

    /// The attempt in flight (or done with success), or a new one when there
    /// is none or the last one failed.
    fn attempt(&self, start: impl FnOnce() -> BoxFuture<'static, Result<T, StoreError>>) -> Attempt<T> {
        let mut current = self.attempt.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(attempt) = current.as_ref() {
            if !matches!(attempt.peek(), Some(Err(_))) {
                return attempt.clone();
            }
        }
        let attempt = start().shared();
        // Driven to its end by a task of its own, whoever waits for it.
        tokio::spawn(attempt.clone());
        *current = Some(attempt.clone());
        attempt
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    const LATE: &str = "not set up in time";

    /// 5 waiters at once, an attempt that fails after 3 s: one attempt, and
    /// every waiter answered with its failure at 3 s.
    #[tokio::test(start_paused = true)]
    async fn a_failed_attempt_answers_every_waiter() {
        let setup = SetUp::<u32>::new();
        let started = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let waiters = (0..5).map(|_| {
            let started = started.clone();
            let setup = &setup;
            async move {
                let answer = setup
                    .get_or_set_up(t0 + Duration::from_secs(5), LATE, || {
                        started.fetch_add(1, Ordering::SeqCst);
                        async {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            Err(StoreError::plain(ErrorKind::Unavailable, "refused"))
                        }
                        .boxed()
                    })
                    .await
                    .copied();
                (answer.map_err(|e| e.reason()), t0.elapsed())
            }
        });
        let answers = futures::future::join_all(waiters).await;
        assert_eq!(started.load(Ordering::SeqCst), 1);
        for answer in answers {
            assert_eq!(answer, (Err("refused"), Duration::from_secs(3)));
        }
        // The next request starts a new attempt.
        let again = setup.get_or_set_up(Instant::now() + Duration::from_secs(5), LATE, || async { Ok(7) }.boxed());
        assert_eq!(again.await.copied().ok(), Some(7));
        assert_eq!(setup.get(), Some(&7));
    }

    /// An attempt that never ends: each waiter answered at its own deadline,
    /// still with one attempt; one that ends after all gave up serves the
    /// next request without a new attempt.
    #[tokio::test(start_paused = true)]
    async fn each_waiter_stops_at_its_own_deadline() {
        let setup = SetUp::<u32>::new();
        let started = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let start = |started: Arc<AtomicUsize>| {
            move || {
                started.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(9)
                }
                .boxed()
            }
        };
        let waiters = (1..=5u64).map(|n| {
            let setup = &setup;
            let start = start(started.clone());
            async move {
                tokio::time::sleep(Duration::from_secs(n)).await;
                let answer = setup.get_or_set_up(Instant::now() + Duration::from_secs(5), LATE, start).await;
                (answer.copied().map_err(|e| e.reason()), t0.elapsed())
            }
        });
        let answers = futures::future::join_all(waiters).await;
        assert_eq!(started.load(Ordering::SeqCst), 1);
        for (n, answer) in (1..=5u64).zip(answers) {
            assert_eq!(answer, (Err(LATE), Duration::from_secs(n + 5)));
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        let later = setup.get_or_set_up(Instant::now(), LATE, start(started.clone())).await;
        assert_eq!(later.copied().ok(), Some(9));
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }
}
