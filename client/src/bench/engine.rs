//! `bench`'s engine: one task per connection drives requests and measures
//! them into a [`Tally`]; it prints nothing.
//!
//! Closed loop (no interval): each connection keeps `pipeline` requests in
//! flight and sends the next as soon as a response arrives. Open loop (an
//! interval per connection): requests are scheduled at fixed intervals and
//! each one's latency is measured from the moment it was *meant* to be sent,
//! so a server that stalls cannot hide the stall by slowing the generator
//! down (coordinated omission, as wrk2 corrects it).
//!
//! A request whose connection fails (or is closed by the server) before it
//! is answered is not forgotten: it counts as dropped, an error, and its
//! latency up to the drop goes into the histogram. Those are the stalls an
//! open-loop measurement exists to show (issue 11 §3 g).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use inlet_shared::http::ClientRequest;
use tokio::time::Instant;

use crate::conn;

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct Plan {
    pub connections: u32,
    pub pipeline: u32,
    pub batch: u32,
    /// Open loop: one request per connection every this long.
    pub interval: Option<Duration>,
}

/// What one or more connections measured.
#[derive(Debug)]
pub struct Tally {
    /// Latencies in µs of answered and dropped requests.
    pub hist: Histogram<u64>,
    /// Answered requests by status.
    pub status: BTreeMap<u16, u64>,
    /// Connections that failed: connect, write or read errors, and closes
    /// with requests in flight.
    pub io_errors: u64,
    /// Requests in flight when their connection failed or was closed.
    pub dropped: u64,
    /// Events in requests answered `2xx`.
    pub events: u64,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            // 1 µs .. 100 s, 3 significant digits: constant, valid bounds.
            hist: Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds"),
            status: BTreeMap::new(),
            io_errors: 0,
            dropped: 0,
            events: 0,
        }
    }

    /// Adds what another tally measured.
    pub fn merge(&mut self, other: Tally) {
        let _ = self.hist.add(&other.hist);
        for (s, n) in other.status {
            *self.status.entry(s).or_default() += n;
        }
        self.io_errors += other.io_errors;
        self.dropped += other.dropped;
        self.events += other.events;
    }

    fn record(&mut self, intended: Instant) {
        let micros = intended.elapsed().as_micros().clamp(1, 100_000_000) as u64;
        let _ = self.hist.record(micros);
    }
}

/// Shared between the connections and the progress bar.
pub struct Control {
    /// Requests that may still be started (closed budget with --requests).
    pub budget: Option<AtomicU64>,
    pub deadline: Instant,
    pub stop: AtomicBool,
    /// Requests finished, answered or dropped.
    pub completed: AtomicU64,
}

impl Control {
    fn take_one(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline {
            return false;
        }
        match &self.budget {
            None => true,
            Some(b) => b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok(),
        }
    }
}

/// Builds request bodies with fresh ids, cheaply.
struct Bodies {
    prefix: String,
    counter: u64,
    batch: u32,
}

impl Bodies {
    fn event(&mut self, out: &mut String) {
        self.counter += 1;
        out.push_str(r#"{"specversion":"1.0","id":""#);
        out.push_str(&self.prefix);
        out.push_str(itoa::Buffer::new().format(self.counter));
        out.push_str(r#"","source":"/inlet-client/bench","type":"inlet.bench.reading","time":"2026-11-29T06:00:00Z","datacontenttype":"application/json","data":{"sensor":"s-17","celsius":21.5,"seq":"#);
        out.push_str(itoa::Buffer::new().format(self.counter));
        out.push_str("}}");
    }

    fn next(&mut self) -> ClientRequest {
        let mut body = String::with_capacity(300 * self.batch as usize);
        if self.batch == 1 {
            self.event(&mut body);
            ClientRequest::post("/events", "application/cloudevents+json", Bytes::from(body))
        } else {
            body.push('[');
            for i in 0..self.batch {
                if i > 0 {
                    body.push(',');
                }
                self.event(&mut body);
            }
            body.push(']');
            ClientRequest::post("/events", "application/cloudevents-batch+json", Bytes::from(body))
        }
    }
}

/// Drives connection `index` until the budget or the deadline runs out.
pub async fn drive(server: String, plan: Plan, index: u32, run_id: String, control: Arc<Control>) -> Tally {
    let mut tally = Tally::new();
    let mut bodies = Bodies { prefix: format!("{run_id}-{index}-"), counter: 0, batch: plan.batch };
    let pipeline = plan.pipeline as usize;
    let interval = plan.interval;
    // When each request in flight was meant to be sent, oldest first.
    let mut inflight: VecDeque<Instant> = VecDeque::with_capacity(pipeline);
    // Open loop: this connection's schedule, offset so connections interleave.
    let mut next_slot = interval.map(|i| Instant::now() + i.mul_f64(f64::from(index) / f64::from(plan.connections)));
    let mut sending = true;
    'reconnect: loop {
        // Whatever was in flight will never be answered: dropped, an error,
        // with its latency up to now.
        for intended in inflight.drain(..) {
            tally.record(intended);
            tally.dropped += 1;
            control.completed.fetch_add(1, Ordering::Relaxed);
        }
        if !sending {
            break;
        }
        let mut t = match conn::connect(&server).await {
            Ok(t) => t,
            Err(_) => {
                tally.io_errors += 1;
                if Instant::now() >= control.deadline || control.stop.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            // Fill the window.
            while sending && inflight.len() < pipeline {
                let intended = match (next_slot, interval) {
                    (Some(slot), Some(step)) => {
                        if slot > Instant::now() {
                            break;
                        }
                        next_slot = Some(slot + step);
                        slot
                    }
                    _ => Instant::now(),
                };
                if !control.take_one() {
                    sending = false;
                    break;
                }
                // Counted as in flight before the write: a failed write drops it.
                inflight.push_back(intended);
                if t.feed(bodies.next()).await.is_err() {
                    tally.io_errors += 1;
                    continue 'reconnect;
                }
            }
            if SinkExt::<ClientRequest>::flush(&mut t).await.is_err() {
                tally.io_errors += 1;
                continue 'reconnect;
            }
            if inflight.is_empty() {
                if !sending {
                    break 'reconnect;
                }
                if let Some(slot) = next_slot {
                    tokio::time::sleep_until(slot).await;
                }
                continue;
            }
            let wake = next_slot.filter(|_| sending && inflight.len() < pipeline);
            let res = tokio::select! {
                res = t.next() => res,
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => continue,
            };
            match res {
                Some(Ok(res)) => {
                    let Some(intended) = inflight.pop_front() else { continue };
                    tally.record(intended);
                    *tally.status.entry(res.status).or_default() += 1;
                    if (200..300).contains(&res.status) {
                        tally.events += u64::from(plan.batch);
                    }
                    control.completed.fetch_add(1, Ordering::Relaxed);
                    if res.closes() {
                        if !inflight.is_empty() {
                            tally.io_errors += 1;
                        }
                        continue 'reconnect;
                    }
                }
                _ => {
                    tally.io_errors += 1;
                    continue 'reconnect;
                }
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testserver::{self, Answer};

    fn control(requests: u64) -> Arc<Control> {
        Arc::new(Control {
            budget: Some(AtomicU64::new(requests)),
            deadline: Instant::now() + Duration::from_secs(3600),
            stop: AtomicBool::new(false),
            completed: AtomicU64::new(0),
        })
    }

    #[tokio::test]
    async fn requests_dropped_in_flight_are_counted_with_their_latency() {
        // Two answered per connection, the third read and dropped.
        let addr = testserver::start(|n, _| if n < 2 { testserver::accepted(1) } else { Answer::Close }).await;
        let plan = Plan { connections: 1, pipeline: 1, batch: 1, interval: None };
        let control = control(9);
        let tally = drive(addr.to_string(), plan, 0, "run".into(), control.clone()).await;
        assert_eq!(tally.status, BTreeMap::from([(202, 6)]));
        assert_eq!((tally.dropped, tally.io_errors, tally.events), (3, 3, 6));
        assert_eq!(tally.hist.len(), 9);
        assert_eq!(control.completed.load(Ordering::Relaxed), 9);
    }

    #[tokio::test]
    async fn pipelined_requests_behind_a_closing_answer_are_dropped() {
        // The first answer of each connection says `Connection: close`.
        let closing = "HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 29\r\n\r\n\
                       {\"accepted\":1,\"duplicates\":0}";
        let addr =
            testserver::start(move |n, _| if n == 0 { Answer::Reply(closing.into()) } else { Answer::Close }).await;
        let plan = Plan { connections: 1, pipeline: 4, batch: 1, interval: None };
        let control = control(8);
        let tally = drive(addr.to_string(), plan, 0, "run".into(), control).await;
        let answered = tally.status.get(&202).copied().unwrap_or(0);
        assert_eq!(answered + tally.dropped, 8);
        // Each connection answers one request at most.
        assert!(tally.dropped >= 4, "{tally:?}");
        assert_eq!(tally.hist.len(), 8);
    }

    #[test]
    fn tallies_merge() {
        let mut a = Tally::new();
        a.status.insert(202, 2);
        a.dropped = 1;
        let _ = a.hist.record(5);
        let mut b = Tally::new();
        b.status.insert(202, 3);
        b.status.insert(503, 1);
        b.io_errors = 2;
        b.events = 3;
        let _ = b.hist.record(7);
        a.merge(b);
        assert_eq!(a.status, BTreeMap::from([(202, 5), (503, 1)]));
        assert_eq!((a.dropped, a.io_errors, a.events, a.hist.len()), (1, 2, 3, 2));
    }
}
