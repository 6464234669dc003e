//! A stand-in HTTP/1.1 server for the engines' unit tests: it frames
//! requests by `Content-Length` only and answers each from a script, so a
//! test decides exactly what every request of every connection gets.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the server does with the `n`-th request (from 0) of a connection.
pub enum Answer {
    /// Write these bytes (a whole response) and read the next request.
    Reply(String),
    /// Write these bytes, then close the connection.
    ReplyThenClose(String),
    /// Close the connection without answering.
    Close,
}

/// A `202` as inlet sends it for `accepted` new events.
pub fn accepted(accepted: usize) -> Answer {
    let body = format!("{{\"accepted\":{accepted},\"duplicates\":0}}");
    Answer::Reply(format!(
        "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// Starts the server; `script(n, body)` answers the `n`-th request of each
/// connection.
pub async fn start(script: impl Fn(usize, &[u8]) -> Answer + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                for n in 0.. {
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if !matches!(reader.read_line(&mut line).await, Ok(read) if read > 0) {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    match script(n, &body) {
                        Answer::Reply(bytes) => {
                            if write.write_all(bytes.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        Answer::ReplyThenClose(bytes) => {
                            let _ = write.write_all(bytes.as_bytes()).await;
                            return;
                        }
                        Answer::Close => return,
                    }
                }
            });
        }
    });
    addr
}
