//! Decodes 1000 pipelined `POST /events` requests many times over: a fixed
//! workload to profile the decoder with callgrind
//! (`valgrind --tool=callgrind target/release/examples/decode_profile 20`),
//! or bare httparse on the same bytes (`... decode_profile 20 bare`).

use bytes::BytesMut;
use inlet_shared::http::{Inbound, Limits, ServerCodec};
use tokio_util::codec::Decoder;

#[path = "../benches/bare_httparse.rs"]
mod bare;
use bare::bare_httparse;

fn main() {
    let body = r#"{"specversion":"1.0","id":"7f1c","source":"/s/7","type":"com.example.t","data":21}"#;
    let one = format!(
        "POST /events HTTP/1.1\r\nHost: inlet.example:8080\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n\
         Content-Type: application/cloudevents+json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
        body.len()
    );
    let many = one.repeat(1000);
    let rounds: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(100);
    let mut total = 0;
    if std::env::args().nth(2).as_deref() == Some("bare") {
        // Bare httparse on the same bytes, for comparison.
        for _ in 0..rounds {
            let buf = BytesMut::from(many.as_bytes());
            total += bare_httparse(&buf);
        }
        println!("{total}");
        return;
    }
    for _ in 0..rounds {
        let mut buf = BytesMut::from(many.as_bytes());
        let mut codec = ServerCodec::new(Limits::default());
        while let Ok(Some(Inbound::Request(r))) = codec.decode(&mut buf) {
            total += r.body.len();
        }
    }
    println!("{total}");
}
