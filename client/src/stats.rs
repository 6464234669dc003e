//! `stats`: prints `GET /stats`, pretty.

use inlet_shared::http::ClientRequest;

use crate::{conn, exit};

pub async fn run(server: &str) -> u8 {
    match conn::once(server, ClientRequest::get("/stats")).await {
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
