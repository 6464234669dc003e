//! `events`: reads `GET /events` with its filters and prints each stored
//! event as one JSON line, following `next_after` from page to page.

use inlet_shared::http::ClientRequest;
use serde_json::value::RawValue;

use crate::{conn, exit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only events of this type.
    #[arg(long = "type")]
    ty: Option<String>,
    /// Only events from this source.
    #[arg(long)]
    source: Option<String>,
    /// Start after this sequence number.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// Page size asked of the server (1..=10000).
    #[arg(long, default_value_t = 1000)]
    page: u32,
    /// Stop after printing this many events (default: all).
    #[arg(long)]
    max: Option<u64>,
}

/// A page of `GET /events`, events kept as the server wrote them.
#[derive(serde::Deserialize)]
struct Page {
    events: Vec<Box<RawValue>>,
    next_after: Option<u64>,
}

fn target(args: &Args, after: u64) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(t) = &args.ty {
        q.append_pair("type", t);
    }
    if let Some(s) = &args.source {
        q.append_pair("source", s);
    }
    q.append_pair("after", &after.to_string());
    q.append_pair("limit", &args.page.to_string());
    format!("/events?{}", q.finish())
}

pub async fn run(server: &str, args: Args) -> u8 {
    let mut t = match conn::connect(server).await {
        Ok(t) => t,
        Err(e) => return conn::report(&conn::ExchangeError::Connect(server.to_string(), e)),
    };
    let mut after = args.after;
    let mut printed = 0u64;
    loop {
        let res = match conn::exchange(&mut t, ClientRequest::get(target(&args, after))).await {
            Ok(res) => res,
            Err(e) => return conn::report(&e),
        };
        if res.status != 200 {
            eprintln!("inlet-client: {} {}", res.status, String::from_utf8_lossy(&res.body));
            return exit::for_status(res.status);
        }
        let page: Page = match serde_json::from_slice(&res.body) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("inlet-client: unexpected answer: {e}");
                return exit::SERVER_ERROR;
            }
        };
        for stored in &page.events {
            if args.max.is_some_and(|m| printed >= m) {
                return exit::OK;
            }
            println!("{stored}");
            printed += 1;
        }
        match page.next_after {
            Some(next) => after = next,
            None => return exit::OK,
        }
    }
}
