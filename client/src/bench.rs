//! `bench`: a load generator for `POST /events`.
//!
//! Closed loop (default): each of `--connections` keeps `--pipeline`
//! requests in flight and sends the next as soon as a response arrives.
//! Open loop (`--rate R` events/s): requests are scheduled at fixed
//! intervals and each one's latency is measured from the moment it was
//! *meant* to be sent, so a server that stalls cannot hide the stall by
//! slowing the generator down (coordinated omission, as wrk2 corrects it).
//!
//! Every event has a fresh id, so every request is real work for the server.
//! Latencies go into one HdrHistogram per connection, merged at the end.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use inlet_shared::http::ClientRequest;
use tokio::time::Instant;

use crate::conn;
use crate::duration::parse_duration;
use crate::exit;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Concurrent connections.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pipeline: u32,
    /// Events per request (1: a structured event; more: a batch).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
    /// How long to run (ignored with --requests).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Stop after this many requests instead of after --duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Open loop: this many events per second in total.
    #[arg(long)]
    rate: Option<f64>,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

/// What one connection measured.
struct Tally {
    hist: Histogram<u64>,
    status: BTreeMap<u16, u64>,
    io_errors: u64,
    events: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            // 1 µs .. 100 s, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds"),
            status: BTreeMap::new(),
            io_errors: 0,
            events: 0,
        }
    }
}

/// Shared between the connections and the progress bar.
struct Control {
    /// Requests that may still be started (closed budget with --requests).
    budget: Option<AtomicU64>,
    deadline: Instant,
    stop: AtomicBool,
    completed: AtomicU64,
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

async fn drive(
    server: String,
    args: Args,
    index: u32,
    run_id: String,
    control: Arc<Control>,
    interval: Option<Duration>,
) -> Tally {
    let mut tally = Tally::new();
    let mut bodies = Bodies { prefix: format!("{run_id}-{index}-"), counter: 0, batch: args.batch };
    let pipeline = args.pipeline as usize;
    let mut inflight: std::collections::VecDeque<Instant> = std::collections::VecDeque::with_capacity(pipeline);
    // Open loop: this connection's schedule, offset so connections interleave.
    let mut next_slot = interval.map(|i| Instant::now() + i.mul_f64(f64::from(index) / f64::from(args.connections)));
    let mut sending = true;
    'reconnect: while sending || !inflight.is_empty() {
        inflight.clear();
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
                if t.feed(bodies.next()).await.is_err() {
                    tally.io_errors += 1;
                    continue 'reconnect;
                }
                inflight.push_back(intended);
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
                    let micros = intended.elapsed().as_micros().clamp(1, 100_000_000) as u64;
                    let _ = tally.hist.record(micros);
                    *tally.status.entry(res.status).or_default() += 1;
                    if (200..300).contains(&res.status) {
                        tally.events += u64::from(args.batch);
                    }
                    control.completed.fetch_add(1, Ordering::Relaxed);
                    if res.closes() {
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

/// CPU seconds this process has used (user + system), from /proc.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((utime + stime) / 100.0)
}

pub async fn run(server: &str, args: Args) -> u8 {
    if args.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        eprintln!("inlet-client: --rate must be positive");
        return exit::USAGE;
    }
    let deadline = if args.requests.is_some() {
        Instant::now() + Duration::from_secs(24 * 3600)
    } else {
        Instant::now() + args.duration
    };
    let control = Arc::new(Control {
        budget: args.requests.map(AtomicU64::new),
        deadline,
        stop: AtomicBool::new(false),
        completed: AtomicU64::new(0),
    });
    // Per connection: one request every `interval` (rate is in events/s).
    let interval = args.rate.map(|r| Duration::from_secs_f64(f64::from(args.connections) * f64::from(args.batch) / r));
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();

    let progress = if std::io::stderr().is_terminal() && !args.json {
        let bar = match args.requests {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new(args.duration.as_secs().max(1)),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let ticker = progress.clone().map(|bar| {
        let control = control.clone();
        let by_requests = args.requests.is_some();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let done = control.completed.load(Ordering::Relaxed);
                let rate = (done - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), done);
                bar.set_position(if by_requests { done } else { started.elapsed().as_secs() });
                bar.set_message(format!("{done} requests, {rate:.0} req/s"));
            }
        })
    });

    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.connections as usize);
    for i in 0..args.connections {
        tasks.push(tokio::spawn(drive(server.to_string(), args.clone(), i, run_id.clone(), control.clone(), interval)));
    }
    let ctrl_c = {
        let control = control.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                control.stop.store(true, Ordering::Relaxed);
            }
        })
    };
    let mut total = Tally::new();
    for t in tasks {
        if let Ok(tally) = t.await {
            let _ = total.hist.add(&tally.hist);
            for (s, n) in tally.status {
                *total.status.entry(s).or_default() += n;
            }
            total.io_errors += tally.io_errors;
            total.events += tally.events;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    ctrl_c.abort();
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let cpu = match (cpu_before, process_cpu_seconds()) {
        (Some(a), Some(b)) => Some((b - a) / elapsed / cores),
        _ => None,
    };
    let client_bound = cpu.is_some_and(|c| c > 0.85);

    let requests: u64 = total.status.values().sum();
    let ok: u64 = total.status.iter().filter(|(s, _)| (200..300).contains(*s)).map(|(_, n)| n).sum();
    let ms = |q: f64| total.hist.value_at_quantile(q) as f64 / 1000.0;
    let max_ms = total.hist.max() as f64 / 1000.0;
    let mode = if args.rate.is_some() { "open loop" } else { "closed loop" };
    if args.json {
        let status: BTreeMap<String, u64> = total.status.iter().map(|(s, n)| (s.to_string(), *n)).collect();
        let out = serde_json::json!({
            "connections": args.connections,
            "pipeline": args.pipeline,
            "batch": args.batch,
            "mode": mode,
            "rate": args.rate,
            "duration_s": elapsed,
            "requests": requests,
            "events": total.events,
            "requests_per_s": requests as f64 / elapsed,
            "events_per_s": total.events as f64 / elapsed,
            "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p99_9": ms(0.999), "max": max_ms},
            "status": status,
            "io_errors": total.io_errors,
            "client_cpu": cpu,
            "client_bound": client_bound,
        });
        println!("{out}");
    } else {
        println!(
            "inlet-client bench: {} connections, pipeline {}, batch {}, {mode}, {elapsed:.2} s against {server}",
            args.connections, args.pipeline, args.batch
        );
        println!("requests: {requests} ({:.1}/s)", requests as f64 / elapsed);
        println!("events:   {} ({:.1}/s)", total.events, total.events as f64 / elapsed);
        println!(
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            max_ms
        );
        let statuses: Vec<String> = total.status.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        println!("status: {}", if statuses.is_empty() { "none".to_string() } else { statuses.join(", ") });
        println!("connection errors: {}", total.io_errors);
        if let Some(c) = cpu {
            println!("client CPU: {:.0}% of {} cores", c * 100.0, cores);
        }
    }
    if client_bound {
        eprintln!(
            "inlet-client: warning: the load generator itself used {:.0}% of the machine's CPU; \
             these figures are bounded by the client, not only by the server",
            cpu.unwrap_or(0.0) * 100.0
        );
    }
    if total.io_errors > 0 || ok < requests {
        if total.status.keys().any(|s| (400..500).contains(s)) {
            exit::REJECTED
        } else {
            exit::SERVER_ERROR
        }
    } else {
        exit::OK
    }
}
