//! `events`: reads `GET /events` with its filters and prints each stored
//! event as one JSON line, following `next_after` from page to page. It
//! asks for compressed pages (`Accept-Encoding: zstd, gzip`) and decodes
//! them within [`compress::MAX_DECODED`].

use inlet_shared::http::ClientRequest;
use serde_json::value::RawValue;

use crate::compress;
use crate::conn::{self, Endpoint};
use crate::exit;

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
    page_target("/events", args.ty.as_deref(), args.source.as_deref(), after, args.page)
}

/// The target of one page of `path` (`/events`, `/rejected`): the filters
/// given, then `after` and `limit`, form-encoded.
pub fn page_target(path: &str, ty: Option<&str>, source: Option<&str>, after: u64, limit: u32) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(t) = ty {
        q.append_pair("type", t);
    }
    if let Some(s) = source {
        q.append_pair("source", s);
    }
    q.append_pair("after", &after.to_string());
    q.append_pair("limit", &limit.to_string());
    format!("{path}?{}", q.finish())
}

pub async fn run(ep: &Endpoint, args: Args) -> u8 {
    let mut t = match conn::connect(ep).await {
        Ok(t) => t,
        Err(e) => return conn::report(&e.into()),
    };
    let mut after = args.after;
    let mut printed = 0u64;
    loop {
        let req = ClientRequest::get(target(&args, after)).header("Accept-Encoding", compress::ACCEPT_ENCODING);
        let res = match conn::exchange(&mut t, ep.authorize(req)).await {
            Ok(res) => res,
            Err(e) => return conn::report(&e),
        };
        if res.status != 200 {
            eprintln!("inlet-client: {}", conn::describe(&res));
            return exit::for_status(res.status);
        }
        let body = match compress::decode_body(&res, compress::MAX_DECODED) {
            Ok(body) => body,
            Err(e) => {
                eprintln!("inlet-client: {e}");
                return exit::SERVER_ERROR;
            }
        };
        let page: Page = match serde_json::from_slice(&body) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::Coding;
    use crate::testserver::{self, Answer};

    fn args() -> Args {
        Args { ty: None, source: None, after: 0, page: 2, max: None }
    }

    /// Issue 14 §5: `events` asks for compressed pages and decodes them,
    /// following `next_after` across pages.
    #[tokio::test]
    async fn compressed_pages_are_decoded() {
        for coding in [Coding::Gzip, Coding::Zstd] {
            let addr = testserver::start_with(None, move |n, req| {
                assert_eq!(req.header("accept-encoding"), Some("zstd, gzip"));
                let page = if n == 0 {
                    r#"{"events":[{"seq":1},{"seq":2}],"next_after":2}"#
                } else {
                    r#"{"events":[{"seq":3}],"next_after":null}"#
                };
                let body = coding.encode(page.as_bytes()).unwrap();
                let mut res = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: {}\r\nVary: Accept-Encoding\r\nContent-Length: {}\r\n\r\n",
                    coding.name(),
                    body.len()
                )
                .into_bytes();
                res.extend_from_slice(&body);
                Answer::Raw(res)
            })
            .await;
            assert_eq!(run(&Endpoint::plain(addr.to_string()), args()).await, exit::OK, "{coding:?}");
        }
    }

    #[tokio::test]
    async fn a_corrupt_compressed_page_is_an_error() {
        let addr = testserver::start_with(None, |_, _| {
            Answer::Raw(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!".to_vec())
        })
        .await;
        assert_eq!(run(&Endpoint::plain(addr.to_string()), args()).await, exit::SERVER_ERROR);
    }
}
