//! `hold`: the misbehaving client of stage 1. Opens N connections and holds
//! them idle, or (`--partial`) trickles a request head one byte per
//! `--interval`, never finishing it. Runs until `--duration` passes or
//! Ctrl-C; reports how many connections the server closed meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::conn::{self, Endpoint};
use crate::exit;
use inlet_shared::duration::parse_duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many connections to hold.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Trickle a never-ending request head instead of staying silent.
    #[arg(long)]
    partial: bool,
    /// Time between two trickled bytes.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

const PARTIAL_HEAD: &[u8] = b"POST /events HTTP/1.1\r\nHost: inlet\r\nContent-Type: application/json\r\nX-Slow: ";

async fn hold_one(ep: Arc<Endpoint>, args: Arc<Args>, closed: Arc<AtomicUsize>) {
    let Ok(mut stream) = conn::connect_stream(&ep).await else {
        closed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut sink = [0u8; 1024];
    let mut bytes = PARTIAL_HEAD.iter().chain(std::iter::repeat(&b'a'));
    loop {
        tokio::select! {
            read = stream.read(&mut sink) => {
                // Whatever the server says (408, 503), the connection ends.
                if matches!(read, Ok(0) | Err(_)) {
                    closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            _ = tokio::time::sleep(args.interval), if args.partial => {
                let byte = bytes.next().copied().unwrap_or(b'a');
                if stream.write_all(&[byte]).await.is_err() {
                    closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

pub async fn run(ep: Arc<Endpoint>, args: Args) -> u8 {
    let args = Arc::new(args);
    let closed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        tasks.push(tokio::spawn(hold_one(ep.clone(), args.clone(), closed.clone())));
    }
    let what = if args.partial { "trickling a partial request on" } else { "holding idle" };
    println!("{what} {} connection(s) to {}; Ctrl-C to stop", args.connections, ep.addr);
    match args.duration {
        Some(d) => tokio::time::sleep(d).await,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    for t in &tasks {
        t.abort();
    }
    let closed = closed.load(Ordering::Relaxed);
    println!("done: {} of {} connection(s) were closed by the server", closed, args.connections);
    exit::OK
}
