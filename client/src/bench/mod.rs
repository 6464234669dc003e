//! `bench`: a load generator for `POST /events`.
//!
//! - [`engine`]: the connections, closed or open loop, and what they measure.
//! - [`report`]: the run's [`report::Report`], printed as text or JSON.
//! - This module wires them up: flags, the progress bar, Ctrl-C, CPU use.
//!
//! Every event has a fresh id, so every request is real work for the server.
//! Latencies go into one HdrHistogram per connection, merged at the end.

mod engine;
mod report;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::compress::Coding;
use crate::conn::Endpoint;
use crate::exit;
use engine::{Control, Plan, Tally};
use inlet_shared::duration::parse_duration;
use report::Report;

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
    /// Compress each request body (each request is compressed as it is
    /// built, so the client's CPU includes it).
    #[arg(long, value_enum)]
    compress: Option<Coding>,
    /// The events' `type`.
    #[arg(long = "type", default_value = "inlet.bench.reading")]
    event_type: String,
    /// The events' `data` (JSON), the same in every event; without it, a
    /// small reading with a sequence number.
    #[arg(long)]
    data: Option<String>,
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

pub async fn run(ep: Arc<Endpoint>, args: Args) -> u8 {
    if args.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        eprintln!("inlet-client: --rate must be positive");
        return exit::USAGE;
    }
    if let Some(data) = &args.data {
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(data) {
            eprintln!("inlet-client: --data is not JSON: {e}");
            return exit::USAGE;
        }
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
    let plan = Plan {
        connections: args.connections,
        pipeline: args.pipeline,
        batch: args.batch,
        interval,
        compress: args.compress,
        event_type: Arc::from(args.event_type.as_str()),
        data: args.data.as_deref().map(Arc::from),
    };
    let mut tasks = Vec::with_capacity(args.connections as usize);
    for i in 0..args.connections {
        tasks.push(tokio::spawn(engine::drive(ep.clone(), plan.clone(), i, run_id.clone(), control.clone())));
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
            total.merge(tally);
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
    let report = Report {
        server: if ep.is_tls() { format!("https://{}", ep.addr) } else { ep.addr.clone() },
        connections: args.connections,
        pipeline: args.pipeline,
        batch: args.batch,
        rate: args.rate,
        elapsed_s: elapsed,
        tally: total,
        client_cpu: cpu,
        cores,
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.client_bound() {
        eprintln!(
            "inlet-client: warning: the load generator itself used {:.0}% of the machine's CPU; \
             these figures are bounded by the client, not only by the server",
            cpu.unwrap_or(0.0) * 100.0
        );
    }
    if let Some((_, error)) = &report.tally.stopped {
        eprintln!("inlet-client: stopped: {error}");
    }
    report.exit_code()
}
