//! `rejected`: reads `GET /rejected` (the refused events a server started
//! with `--keep-rejected` keeps) and prints each as one JSON line. One page
//! of `--limit` rows, or with `--all` every page, following `next_after`.
//! Reading ([`read`]) is apart from printing ([`run`]).

use inlet_shared::http::ClientRequest;
use serde_json::value::RawValue;

use crate::compress;
use crate::conn::{self, Endpoint};
use crate::exit;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Only rejected events of this type.
    #[arg(long = "type")]
    ty: Option<String>,
    /// Only rejected events from this source.
    #[arg(long)]
    source: Option<String>,
    /// Start after this sequence number (of the rejected events).
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// Rows per page (1..=10000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
    /// Follow `next_after` to the last page (default: one page).
    #[arg(long)]
    all: bool,
}

/// A page of `GET /rejected`, rows kept as the server wrote them.
#[derive(serde::Deserialize)]
struct Page {
    rejected: Vec<Box<RawValue>>,
    next_after: Option<u64>,
}

fn target(args: &Args, after: u64) -> String {
    crate::events::page_target("/rejected", args.ty.as_deref(), args.source.as_deref(), after, args.limit)
}

/// Reads the rejected events `args` asks for, handing each row to `each`
/// in order. `Ok(next_after)`: where the next page would start when more
/// rows match (only without `--all`); `Err(exit code)` after printing why.
pub async fn read(ep: &Endpoint, args: &Args, mut each: impl FnMut(&RawValue)) -> Result<Option<u64>, u8> {
    let mut t = conn::connect(ep).await.map_err(|e| conn::report(&e.into()))?;
    let mut after = args.after;
    loop {
        let req = ClientRequest::get(target(args, after)).header("Accept-Encoding", compress::ACCEPT_ENCODING);
        let res = conn::exchange(&mut t, ep.authorize(req)).await.map_err(|e| conn::report(&e))?;
        if res.status != 200 {
            eprintln!("inlet-client: {}", conn::describe(&res));
            return Err(exit::for_status(res.status));
        }
        let body = compress::decode_body(&res, compress::MAX_DECODED).map_err(|e| {
            eprintln!("inlet-client: {e}");
            exit::SERVER_ERROR
        })?;
        let page: Page = serde_json::from_slice(&body).map_err(|e| {
            eprintln!("inlet-client: unexpected answer: {e}");
            exit::SERVER_ERROR
        })?;
        page.rejected.iter().for_each(|row| each(row));
        match page.next_after {
            Some(next) if args.all => after = next,
            next => return Ok(next),
        }
    }
}

pub async fn run(ep: &Endpoint, args: Args) -> u8 {
    match read(ep, &args, |row| println!("{row}")).await {
        Ok(Some(next)) => {
            eprintln!("inlet-client: more rejected events match; continue with --after {next}, or use --all");
            exit::OK
        }
        Ok(None) => exit::OK,
        Err(code) => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_has_the_filters_asked_for() {
        let args = Args { ty: Some("a b".into()), source: Some("/s&x".into()), after: 0, limit: 5, all: false };
        assert_eq!(target(&args, 7), "/rejected?type=a+b&source=%2Fs%26x&after=7&limit=5");
        let plain = Args { ty: None, source: None, after: 0, limit: 100, all: true };
        assert_eq!(target(&plain, 0), "/rejected?after=0&limit=100");
    }
}
