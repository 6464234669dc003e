//! The server decoder against bare httparse on the same bytes:
//! (a) one typical ~250-byte `POST /events` with six headers,
//! (b) a buffer of 1000 such requests pipelined.
//!
//! Bare httparse does the least any framing must: parse the head, find
//! `Content-Length`, skip the body. The codec does everything it does in
//! production (head scan, httparse, framing rules, zero-copy header slices,
//! body split). Run: `cargo bench -p inlet-shared --bench decoder`.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use inlet_shared::http::{Inbound, Limits, ServerCodec};
use tokio_util::codec::Decoder;

#[path = "bare_httparse.rs"]
mod bare;
use bare::bare_httparse;

const BODY: &str = r#"{"specversion":"1.0","id":"7f1c","source":"/s/7","type":"com.example.t","data":21}"#;

fn request() -> Vec<u8> {
    format!(
        "POST /events HTTP/1.1\r\nHost: inlet.example:8080\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n\
         Content-Type: application/cloudevents+json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

fn codec(mut buf: BytesMut) -> usize {
    let mut codec = ServerCodec::new(Limits::default());
    let mut count = 0;
    while let Ok(Some(item)) = codec.decode(&mut buf) {
        if let Inbound::Request(r) = item {
            count += r.body.len().min(1);
        }
    }
    count
}

fn bench(c: &mut Criterion) {
    let one = request();
    let many: Vec<u8> = std::iter::repeat_n(one.as_slice(), 1000).flatten().copied().collect();
    assert_eq!(bare_httparse(&many), 1000);
    assert_eq!(codec(BytesMut::from(&many[..])), 1000);

    let mut group = c.benchmark_group(format!("single_{}_bytes", one.len()));
    group.throughput(Throughput::Bytes(one.len() as u64));
    group.bench_function("bare_httparse", |b| b.iter(|| bare_httparse(std::hint::black_box(&one))));
    group.bench_function("inlet_codec", |b| b.iter_batched(|| BytesMut::from(&one[..]), codec, BatchSize::SmallInput));
    // As in the server: one long-lived codec and read buffer; each
    // iteration appends the request (the socket read) and decodes it.
    group.bench_function("inlet_codec_long_lived_buffer", |b| {
        let mut codec = ServerCodec::new(Limits::default());
        let mut buf = BytesMut::with_capacity(8192);
        b.iter(|| {
            buf.extend_from_slice(&one);
            matches!(codec.decode(&mut buf), Ok(Some(Inbound::Request(_))))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("pipelined_1000");
    group.throughput(Throughput::Bytes(many.len() as u64));
    group.bench_function("bare_httparse", |b| b.iter(|| bare_httparse(std::hint::black_box(&many))));
    group.bench_function("inlet_codec", |b| b.iter_batched(|| BytesMut::from(&many[..]), codec, BatchSize::LargeInput));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
