//! `send`: one event from flags, as a structured CloudEvent.

use inlet_shared::event::{Data, Event, Json};
use inlet_shared::http::ClientRequest;

use crate::compress::{self, Coding};
use crate::conn::{self, Endpoint};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Event type, e.g. com.example.order.created.
    #[arg(long = "type")]
    ty: String,
    /// Event source (URI-reference).
    #[arg(long, default_value = "/inlet-client")]
    source: String,
    /// Event id; a new UUID when omitted.
    #[arg(long)]
    id: Option<String>,
    /// Event data, as JSON.
    #[arg(long)]
    data: Option<String>,
    /// Event subject.
    #[arg(long)]
    subject: Option<String>,
    /// Compress the request body.
    #[arg(long, value_enum)]
    compress: Option<Coding>,
}

pub async fn run(ep: &Endpoint, args: Args) -> u8 {
    let mut event = Event::new(args.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()), args.source, args.ty);
    event.set_subject(args.subject.map(Into::into));
    if let Some(data) = args.data {
        match Json::parse(data) {
            Ok(json) => {
                event.set_datacontenttype(Some("application/json".into()));
                event.set_data(Some(Data::Json(json)));
            }
            Err(e) => {
                eprintln!("inlet-client: --data is not valid JSON: {e}");
                return exit::USAGE;
            }
        }
    }
    let req = ClientRequest::post("/events", "application/cloudevents+json", event.to_json());
    let req = match compress::apply(args.compress, req) {
        Ok(req) => req,
        Err(e) => {
            eprintln!("inlet-client: cannot compress the event: {e}");
            return exit::USAGE;
        }
    };
    match conn::once(ep, req).await {
        Ok(res) => {
            println!("{} {}", res.status, String::from_utf8_lossy(&res.body));
            exit::for_status(res.status)
        }
        Err(e) => conn::report(&e),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::testserver;

    /// Issue 14 §5: the event goes compressed, `Content-Length` being the
    /// compressed size (the server reads exactly that many bytes).
    #[tokio::test]
    async fn send_compresses_the_event() {
        for coding in [Coding::Gzip, Coding::Zstd] {
            let got = Arc::new(Mutex::new(None));
            let seen = got.clone();
            let addr = testserver::start_with(None, move |_, req| {
                let length: usize = req.header("content-length").unwrap().parse().unwrap();
                assert_eq!(length, req.body.len());
                let plain = match req.header("content-encoding") {
                    Some("gzip") => {
                        let mut out = Vec::new();
                        flate2::read::GzDecoder::new(&req.body[..]).read_to_end(&mut out).unwrap();
                        out
                    }
                    Some("zstd") => zstd::decode_all(&req.body[..]).unwrap(),
                    other => panic!("Content-Encoding {other:?}"),
                };
                *seen.lock().unwrap() = Some(serde_json::from_slice::<serde_json::Value>(&plain).unwrap());
                testserver::accepted(1)
            })
            .await;
            let args = Args {
                ty: "com.example.t".into(),
                source: "/s".into(),
                id: Some("e-1".into()),
                data: Some(r#"{"n":1}"#.into()),
                subject: None,
                compress: Some(coding),
            };
            assert_eq!(run(&Endpoint::plain(addr.to_string()), args).await, exit::OK);
            let event = got.lock().unwrap().take().unwrap();
            assert_eq!((event["id"].as_str(), event["type"].as_str()), (Some("e-1"), Some("com.example.t")));
            assert_eq!(event["data"], serde_json::json!({"n": 1}));
        }
    }
}
