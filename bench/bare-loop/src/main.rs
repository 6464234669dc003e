//! Bare tokio + httparse loop for `POST /events` (see Cargo.toml): one task
//! per connection, requests parsed straight out of the read buffer, every
//! response of one read written with one write. Prints `listening on <addr>`
//! like inlet so the same script drives both.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Deserialize)]
struct Event<'a> {
    specversion: &'a str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    ty: &'a str,
    #[serde(default)]
    time: Option<&'a str>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Default)]
struct Store {
    seen: HashSet<(String, String)>,
    stored: Vec<Vec<u8>>,
    types: HashMap<String, u64>,
}

const ACCEPTED: &[u8] =
    b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 29\r\n\r\n{\"accepted\":1,\"duplicates\":0}";
const DUPLICATE: &[u8] =
    b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 29\r\n\r\n{\"accepted\":0,\"duplicates\":1}";
const INVALID: &[u8] = b"HTTP/1.1 422 Unprocessable Content\r\ncontent-length: 0\r\n\r\n";

/// The answer to one event body.
fn ingest(store: &Mutex<Store>, body: &[u8]) -> &'static [u8] {
    let Ok(event) = serde_json::from_slice::<Event>(body) else { return INVALID };
    let valid_time = event
        .time
        .is_none_or(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok());
    if event.specversion != "1.0" || event.id.is_empty() || event.source.is_empty() || event.ty.is_empty() || !valid_time
    {
        return INVALID;
    }
    let _ = event.data;
    let Ok(mut store) = store.lock() else { return INVALID };
    if !store.seen.insert((event.source.to_string(), event.id.to_string())) {
        return DUPLICATE;
    }
    store.stored.push(body.to_vec());
    *store.types.entry(event.ty.to_string()).or_default() += 1;
    ACCEPTED
}

async fn serve(mut stream: TcpStream, store: Arc<Mutex<Store>>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut read = BytesMut::with_capacity(4096);
    let mut write = Vec::with_capacity(4096);
    loop {
        if stream.read_buf(&mut read).await? == 0 {
            return Ok(());
        }
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut headers);
            let head_len = match req.parse(&read) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => break,
                Err(_) => return Ok(()),
            };
            let body_len = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            if read.len() < head_len + body_len {
                read.reserve(head_len + body_len - read.len());
                break;
            }
            write.extend_from_slice(ingest(&store, &read[head_len..head_len + body_len]));
            read.advance(head_len + body_len);
        }
        if !write.is_empty() {
            stream.write_all(&write).await?;
            write.clear();
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let store = Arc::new(Mutex::new(Store::default()));
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(stream, store.clone()));
    }
}
