//! `send`: one event from flags, as a structured CloudEvent.

use inlet_shared::event::{Data, Event, Json};
use inlet_shared::http::ClientRequest;

use crate::{conn, exit};

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
}

pub async fn run(server: &str, args: Args) -> u8 {
    let mut event = Event::new(args.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()), args.source, args.ty);
    event.subject = args.subject.map(Into::into);
    if let Some(data) = args.data {
        match Json::parse(data) {
            Ok(json) => {
                event.datacontenttype = Some("application/json".into());
                event.data = Some(Data::Json(json));
            }
            Err(e) => {
                eprintln!("inlet-client: --data is not valid JSON: {e}");
                return exit::USAGE;
            }
        }
    }
    let req = ClientRequest::post("/events", "application/cloudevents+json", event.to_json());
    match conn::once(server, req).await {
        Ok(res) => {
            println!("{} {}", res.status, String::from_utf8_lossy(&res.body));
            exit::for_status(res.status)
        }
        Err(e) => conn::report(&e),
    }
}
