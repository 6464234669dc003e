//! Parsing structured bodies: the single-pass scanner (`parse_body`, as the
//! server runs it) against the serde_json path it replaced
//! (`event::reference`), on the event `inlet-client bench` sends, a batch of
//! 100 such events and the same 100 as NDJSON. Both parse and validate
//! every attribute and slice the events from the body.
//!
//! Run: `cargo bench -p inlet-shared --features reference-parser --bench parse`.
//!
//! Wall-clock times on a shared machine are noisy; instruction counts are
//! not. With `PARSE_COUNT=n` the binary parses one body `n` times with one
//! parser and exits, for callgrind:
//!
//! ```text
//! PARSE_COUNT=1000 valgrind --tool=callgrind target/release/deps/parse-* scanner single
//! ```
//!
//! (the difference between two counts, divided by the difference in `n`,
//! is the cost of one parse; start-up cancels out).

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use inlet_shared::event::{parse_body, reference, BodyKind, Events, ParseError, ParseLimits};
use inlet_shared::http::Headers;

#[path = "common/bodies.rs"]
mod bodies;
use bodies::bodies;

fn scanner(headers: &Headers, body: &Bytes) -> Result<Events, ParseError> {
    parse_body(headers, body, &ParseLimits::default())
}

fn serde_json_path(kind: BodyKind, body: &Bytes) -> Result<Events, ParseError> {
    reference::parse_body(kind, body, &ParseLimits::default())
}

fn bench(c: &mut Criterion) {
    for (name, kind, content_type, body) in bodies() {
        let headers = Headers::from_pairs(&[("Content-Type", content_type)]);
        let expected = if name == "single" { 1 } else { 100 };
        assert_eq!(scanner(&headers, &body).map(|e| e.len()), Ok(expected));
        assert_eq!(serde_json_path(kind, &body).map(|e| e.len()), Ok(expected));
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("scanner", |b| b.iter(|| scanner(&headers, std::hint::black_box(&body))));
        group.bench_function("serde_json", |b| b.iter(|| serde_json_path(kind, std::hint::black_box(&body))));
        group.finish();
    }
}

criterion_group!(benches, bench);

fn main() {
    if let Some(count) = std::env::var("PARSE_COUNT").ok().and_then(|n| n.parse::<usize>().ok()) {
        let args: Vec<String> = std::env::args().collect();
        let (parser, wanted) = (args.get(1).map_or("scanner", |s| s), args.get(2).map_or("single", |s| s));
        let Some((_, kind, content_type, body)) = bodies().into_iter().find(|(name, ..)| *name == wanted) else {
            panic!("no body named {wanted}");
        };
        let headers = Headers::from_pairs(&[("Content-Type", content_type)]);
        let mut events = 0;
        for _ in 0..count {
            let parsed = match parser {
                "scanner" => scanner(&headers, std::hint::black_box(&body)),
                _ => serde_json_path(kind, std::hint::black_box(&body)),
            };
            events += parsed.map_or(0, |e| e.len());
        }
        println!("{parser} {wanted}: {events} events");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
