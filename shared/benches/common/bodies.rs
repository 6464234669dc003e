//! The bodies the parse benchmarks run on, shared by `shared/benches/parse.rs`
//! and `bench/json-parsers/` (which includes this file by path): the event
//! `inlet-client bench` sends, a batch of 100 of them and the same 100 as
//! NDJSON.

use bytes::Bytes;
use inlet_shared::event::BodyKind;

pub fn event(i: u64) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"r-0-{i}","source":"/inlet-client/bench","type":"inlet.bench.reading","time":"2026-11-29T06:00:00Z","datacontenttype":"application/json","data":{{"sensor":"s-17","celsius":21.5,"seq":{i}}}}}"#
    )
}

/// The bodies: (name, kind, content type, body).
pub fn bodies() -> Vec<(&'static str, BodyKind, &'static str, Bytes)> {
    let batch: Vec<String> = (1..=100).map(event).collect();
    vec![
        ("single", BodyKind::Structured, "application/cloudevents+json", Bytes::from(event(1))),
        (
            "batch_100",
            BodyKind::Batch,
            "application/cloudevents-batch+json",
            Bytes::from(format!("[{}]", batch.join(","))),
        ),
        ("ndjson_100", BodyKind::Ndjson, "application/x-ndjson", Bytes::from(batch.join("\n"))),
    ]
}
