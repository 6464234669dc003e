//! axum baseline for `POST /events`: typed parse of one structured
//! CloudEvent, the CloudEvents validation inlet does for it, dedupe by
//! (source, id), per-type counters, `202 {"accepted":N,"duplicates":D}`.
//! Prints `listening on <addr>` like inlet so the same script drives both.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct Event<'a> {
    specversion: &'a str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    ty: &'a str,
    #[serde(default)]
    time: Option<&'a str>,
    #[serde(default)]
    datacontenttype: Option<&'a str>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Default)]
struct Store {
    seen: HashSet<(String, String)>,
    stored: Vec<Vec<u8>>,
    types: HashMap<String, u64>,
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let body = format!(r#"{{"type":"about:blank","status":{},"detail":"{}"}}"#, status.as_u16(), detail);
    (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response()
}

async fn ingest(State(store): State<Arc<Mutex<Store>>>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/cloudevents+json") && !ct.starts_with("application/json") {
        return problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported content type");
    }
    let event: Event = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(_) => return problem(StatusCode::BAD_REQUEST, "bad json"),
    };
    if event.specversion != "1.0" || event.id.is_empty() || event.source.is_empty() || event.ty.is_empty() {
        return problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid event");
    }
    if let Some(t) = event.time {
        if time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_err() {
            return problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid time");
        }
    }
    let _ = (event.datacontenttype, event.data);
    let mut store = store.lock().unwrap();
    let fresh = store.seen.insert((event.source.to_string(), event.id.to_string()));
    if fresh {
        store.stored.push(body.to_vec());
        *store.types.entry(event.ty.to_string()).or_default() += 1;
    }
    let body = if fresh { r#"{"accepted":1,"duplicates":0}"# } else { r#"{"accepted":0,"duplicates":1}"# };
    (StatusCode::ACCEPTED, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let app = Router::new().route("/events", post(ingest)).with_state(Arc::new(Mutex::new(Store::default())));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    println!("listening on {}", listener.local_addr().expect("addr"));
    axum::serve(listener, app).await.expect("serve");
}
