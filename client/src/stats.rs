//! `stats`: prints `GET /stats`, pretty.

use inlet_shared::http::ClientRequest;

use crate::conn::{self, Endpoint};
use crate::exit;

pub async fn run(ep: &Endpoint) -> u8 {
    match conn::once(ep, ClientRequest::get("/stats")).await {
        Ok(res) if res.status != 200 => {
            eprintln!("inlet-client: {}", conn::describe(&res));
            exit::for_status(res.status)
        }
        Ok(res) => {
            match serde_json::from_slice::<serde_json::Value>(&res.body) {
                Ok(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
                Err(_) => println!("{}", String::from_utf8_lossy(&res.body)),
            }
            exit::for_status(res.status)
        }
        Err(e) => conn::report(&e),
    }
}
