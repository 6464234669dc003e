//! `probe`: sends one valid request and exits 0 only if a 2xx answer comes
//! within `--timeout`. With `hold`, it is the stage-1 proof from the client
//! side: against `--mode blocking` it times out, against async it does not.

use std::time::{Duration, Instant};

use inlet_shared::event::Event;
use inlet_shared::http::ClientRequest;

use crate::conn::{self, Endpoint};
use crate::exit;
use inlet_shared::duration::parse_duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Longest wait for the answer, connecting included (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    timeout: Duration,
    /// POST a fresh event to /events instead of GET /health.
    #[arg(long)]
    event: bool,
}

pub async fn run(ep: &Endpoint, args: Args) -> u8 {
    let req = if args.event {
        let event = Event::new(uuid::Uuid::new_v4().to_string(), "/inlet-client/probe", "inlet.probe");
        ClientRequest::post("/events", "application/cloudevents+json", event.to_json())
    } else {
        ClientRequest::get("/health")
    };
    let started = Instant::now();
    match tokio::time::timeout(args.timeout, conn::once(ep, req)).await {
        Ok(Ok(res)) => {
            let elapsed = started.elapsed();
            println!("{} in {:.3} ms", res.status, elapsed.as_secs_f64() * 1000.0);
            exit::for_status(res.status)
        }
        Ok(Err(e)) => conn::report(&e),
        Err(_) => {
            println!("no answer within {:?}", args.timeout);
            exit::TIMEOUT
        }
    }
}
