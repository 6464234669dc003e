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

use crate::compress::{self, Coding};
use crate::conn::{self, Endpoint};
use crate::exit;
use crate::retry::{self, Jitter};

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct Plan {
    pub connections: u32,
    pub pipeline: u32,
    pub batch: u32,
    /// Open loop: one request per connection every this long.
    pub interval: Option<Duration>,
    /// Compress each request body.
    pub compress: Option<Coding>,
    /// The events' `type`.
    pub event_type: Arc<str>,
    /// The events' `data` (JSON text), if not the default reading.
    pub data: Option<Arc<str>>,
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
    /// Requests sent again after a `429`/`503`.
    pub retried: u64,
    /// Why the run stopped early (`401`, `403`, TLS): exit code and error.
    pub stopped: Option<(u8, String)>,
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
            retried: 0,
            stopped: None,
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
        self.retried += other.retried;
        if self.stopped.is_none() {
            self.stopped = other.stopped;
        }
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
    event_type: Arc<str>,
    data: Option<Arc<str>>,
}

impl Bodies {
    fn event(&mut self, out: &mut String) {
        self.counter += 1;
        out.push_str(r#"{"specversion":"1.0","id":""#);
        out.push_str(&self.prefix);
        out.push_str(itoa::Buffer::new().format(self.counter));
        out.push_str(r#"","source":"/inlet-client/bench","type":"#);
        // A type given on the command line is written as a JSON string.
        out.push_str(&serde_json::to_string(&*self.event_type).unwrap_or_default());
        out.push_str(r#","time":"2026-11-29T06:00:00Z","datacontenttype":"application/json","data":"#);
        match &self.data {
            Some(data) => out.push_str(data),
            None => {
                out.push_str(r#"{"sensor":"s-17","celsius":21.5,"seq":"#);
                out.push_str(itoa::Buffer::new().format(self.counter));
                out.push('}');
            }
        }
        out.push('}');
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

/// Whether no request may be started or resent any more.
fn halted(control: &Control) -> bool {
    control.stop.load(Ordering::Relaxed) || Instant::now() >= control.deadline
}

fn paused(until: Option<Instant>) -> bool {
    until.is_some_and(|u| Instant::now() < u)
}

/// A `401`, `403` or TLS failure: every connection stops sending.
fn stop_all(tally: &mut Tally, control: &Control, code: u8, error: String) {
    tally.stopped.get_or_insert((code, error));
    control.stop.store(true, Ordering::Relaxed);
}

/// Drives connection `index` until the budget or the deadline runs out.
///
/// A `429` or `503` pauses this connection for `Retry-After` (0.5 s when
/// absent; plus up to 20% jitter) and its request is sent again, as
/// it was, before any new one: the budget counts distinct requests, the
/// statuses every answer. A `401` or `403` stops every connection.
pub async fn drive(ep: Arc<Endpoint>, plan: Plan, index: u32, run_id: String, control: Arc<Control>) -> Tally {
    let mut tally = Tally::new();
    let mut bodies = Bodies {
        prefix: format!("{run_id}-{index}-"),
        counter: 0,
        batch: plan.batch,
        event_type: plan.event_type.clone(),
        data: plan.data.clone(),
    };
    let prepare = |req: ClientRequest| {
        // Compressing into memory cannot fail short of running out of it;
        // should it, the body goes as it is (the server takes identity).
        let req = match plan.compress {
            None => req,
            coding => compress::apply(coding, req.clone()).unwrap_or(req),
        };
        ep.authorize(req)
    };
    let mut jitter = Jitter::new();
    let pipeline = plan.pipeline as usize;
    let interval = plan.interval;
    // Each request in flight: when it was meant to be sent, and itself (to
    // send it again after a `429`/`503`), oldest first.
    let mut inflight: VecDeque<(Instant, ClientRequest)> = VecDeque::with_capacity(pipeline);
    // Answered `429`/`503`: to send again once the pause is over.
    let mut resend: VecDeque<ClientRequest> = VecDeque::new();
    let mut pause_until: Option<Instant> = None;
    // Open loop: this connection's schedule, offset so connections interleave.
    let mut next_slot = interval.map(|i| Instant::now() + i.mul_f64(f64::from(index) / f64::from(plan.connections)));
    let mut sending = true;
    'reconnect: loop {
        // Whatever was in flight will never be answered: dropped, an error,
        // with its latency up to now.
        for (intended, _) in inflight.drain(..) {
            tally.record(intended);
            tally.dropped += 1;
            control.completed.fetch_add(1, Ordering::Relaxed);
        }
        if halted(&control) {
            resend.clear();
        }
        if !sending && resend.is_empty() {
            break;
        }
        let mut t = match conn::connect(&ep).await {
            Ok(t) => t,
            Err(e) if e.is_tls() => {
                tally.io_errors += 1;
                stop_all(&mut tally, &control, e.exit_code(), e.to_string());
                break;
            }
            Err(_) => {
                tally.io_errors += 1;
                if halted(&control) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            // Fill the window: requests to resend first, then new ones.
            while inflight.len() < pipeline && !paused(pause_until) {
                let (intended, req) = if !resend.is_empty() && !halted(&control) {
                    let Some(req) = resend.pop_front() else { break };
                    tally.retried += 1;
                    (Instant::now(), req)
                } else if sending {
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
                    (intended, prepare(bodies.next()))
                } else {
                    break;
                };
                // Counted as in flight before the write: a failed write drops it.
                inflight.push_back((intended, req.clone()));
                if t.feed(req).await.is_err() {
                    tally.io_errors += 1;
                    continue 'reconnect;
                }
            }
            if SinkExt::<ClientRequest>::flush(&mut t).await.is_err() {
                tally.io_errors += 1;
                continue 'reconnect;
            }
            if inflight.is_empty() {
                if halted(&control) {
                    resend.clear();
                }
                if !sending && resend.is_empty() {
                    break 'reconnect;
                }
                match (pause_until.filter(|_| paused(pause_until)), next_slot) {
                    (Some(until), _) => tokio::time::sleep_until(until).await,
                    (None, Some(slot)) => tokio::time::sleep_until(slot).await,
                    (None, None) => {}
                }
                continue;
            }
            let has_work = sending || !resend.is_empty();
            let wake = if paused(pause_until) {
                pause_until.filter(|_| has_work)
            } else {
                next_slot.filter(|_| sending && inflight.len() < pipeline)
            };
            let res = tokio::select! {
                res = t.next() => res,
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => continue,
            };
            match res {
                Some(Ok(res)) => {
                    let Some((intended, req)) = inflight.pop_front() else { continue };
                    tally.record(intended);
                    *tally.status.entry(res.status).or_default() += 1;
                    control.completed.fetch_add(1, Ordering::Relaxed);
                    match res.status {
                        200..=299 => tally.events += u64::from(plan.batch),
                        401 | 403 => {
                            stop_all(&mut tally, &control, exit::for_status(res.status), conn::describe(&res));
                            sending = false;
                            resend.clear();
                        }
                        429 | 503 => {
                            let after = retry::retry_after(&res).unwrap_or(retry::DEFAULT_RETRY_AFTER);
                            let until = Instant::now() + jitter.apply(after);
                            pause_until = Some(pause_until.map_or(until, |u| u.max(until)));
                            resend.push_back(req);
                        }
                        _ => {}
                    }
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

    #[test]
    fn bodies_carry_the_type_and_data_asked_for() {
        let mut bodies = Bodies {
            prefix: "r-0-".into(),
            counter: 0,
            batch: 1,
            event_type: "inlet.bench.reading".into(),
            data: None,
        };
        let mut out = String::new();
        bodies.event(&mut out);
        assert_eq!(
            out,
            r#"{"specversion":"1.0","id":"r-0-1","source":"/inlet-client/bench","type":"inlet.bench.reading","time":"2026-11-29T06:00:00Z","datacontenttype":"application/json","data":{"sensor":"s-17","celsius":21.5,"seq":1}}"#
        );
        let mut bodies = Bodies { event_type: "a\"b".into(), data: Some(r#"{"k":[1]}"#.into()), ..bodies };
        out.clear();
        bodies.event(&mut out);
        let event: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!((event["type"].as_str(), event["data"].clone()), (Some("a\"b"), serde_json::json!({"k": [1]})));
        assert_eq!(event["id"], "r-0-2");
    }

    fn plan() -> Plan {
        Plan {
            connections: 1,
            pipeline: 1,
            batch: 1,
            interval: None,
            compress: None,
            event_type: "inlet.bench.reading".into(),
            data: None,
        }
    }

    fn endpoint(addr: std::net::SocketAddr) -> Arc<Endpoint> {
        Arc::new(Endpoint::plain(addr.to_string()))
    }

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
        let plan = plan();
        let control = control(9);
        let tally = drive(endpoint(addr), plan, 0, "run".into(), control.clone()).await;
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
        let plan = Plan { pipeline: 4, ..plan() };
        let control = control(8);
        let tally = drive(endpoint(addr), plan, 0, "run".into(), control).await;
        let answered = tally.status.get(&202).copied().unwrap_or(0);
        assert_eq!(answered + tally.dropped, 8);
        // Each connection answers one request at most.
        assert!(tally.dropped >= 4, "{tally:?}");
        assert_eq!(tally.hist.len(), 8);
    }

    /// Issue 13 §6: a `429` pauses the connection for `Retry-After` and the
    /// same request goes again: every event accepted once, the budget
    /// counting distinct requests; each request carries the token.
    #[tokio::test]
    async fn a_429_is_waited_out_and_the_same_request_sent_again() {
        use std::sync::Mutex;
        let bodies = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
        let seen = bodies.clone();
        let addr = testserver::start_with(None, move |_, req| {
            if req.header("authorization") != Some("Bearer t0ken") {
                return testserver::problem(401, "", "unknown token");
            }
            let mut seen = seen.lock().unwrap();
            seen.push(req.body.clone());
            if seen.len() == 2 {
                testserver::problem(429, "Retry-After: 1\r\n", "over quota")
            } else {
                testserver::accepted(1)
            }
        })
        .await;
        let token: conn::Token = "t0ken".parse().unwrap();
        let ep = Arc::new(Endpoint::plain(addr.to_string()).with_token(&token));
        let plan = plan();
        let control = control(4);
        let tally = drive(ep, plan, 0, "run".into(), control).await;
        assert_eq!(tally.status, BTreeMap::from([(202, 4), (429, 1)]));
        assert_eq!((tally.retried, tally.events, tally.dropped, tally.io_errors), (1, 4, 0, 0));
        assert_eq!(tally.stopped, None);
        let bodies = bodies.lock().unwrap();
        assert_eq!(bodies.len(), 5);
        assert_eq!(bodies[1], bodies[2], "the refused request is the one sent again");
        let mut distinct = bodies.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4);
    }

    /// Issue 13 §6: a `401` stops the run: no new request, no resend.
    #[tokio::test]
    async fn a_401_stops_the_run() {
        let requests = Arc::new(AtomicU64::new(0));
        let counted = requests.clone();
        let addr = testserver::start(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            testserver::problem(401, "", "unknown token")
        })
        .await;
        let plan = plan();
        let control = control(100);
        let tally = drive(endpoint(addr), plan, 0, "run".into(), control.clone()).await;
        assert_eq!(tally.status, BTreeMap::from([(401, 1)]));
        assert_eq!(tally.stopped, Some((crate::exit::UNAUTHORIZED, "HTTP 401: unknown token".to_string())));
        assert!(control.stop.load(Ordering::Relaxed));
        assert_eq!(requests.load(Ordering::SeqCst), 1);
    }

    /// Issue 14 §5: each bench request is compressed.
    #[tokio::test]
    async fn bench_compresses_each_request() {
        let decoded = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
        let seen = decoded.clone();
        let addr = testserver::start_with(None, move |_, req| {
            assert_eq!(req.header("content-encoding"), Some("zstd"));
            let body = zstd::decode_all(&req.body[..]).unwrap();
            seen.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
            testserver::accepted(3)
        })
        .await;
        let plan =
            Plan { connections: 1, pipeline: 2, batch: 3, interval: None, compress: Some(Coding::Zstd), ..plan() };
        let tally = drive(endpoint(addr), plan, 0, "run".into(), control(5)).await;
        assert_eq!((tally.status.get(&202), tally.events), (Some(&5), 15));
        let decoded = decoded.lock().unwrap();
        assert_eq!(decoded.len(), 5);
        assert!(decoded.iter().all(|batch| batch.as_array().is_some_and(|a| a.len() == 3)));
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
