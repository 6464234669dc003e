//! Differential fuzzing of structured-body parsing: the single-pass scanner
//! (`parse_body`) against the serde_json path it replaced
//! (`event::reference`, built with the `reference-parser` feature), on
//! arbitrary bytes as every structured kind and under small limits. Both
//! give the same events (with the same `raw` bytes) or the same error:
//! kind, status and every located error. Only the wording of a syntax
//! error's detail may differ.
#![no_main]

use bytes::Bytes;
use inlet_shared::event::{parse_body, reference, BodyKind, Event, Events, ParseError};
use inlet_shared::http::Headers;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Outcome {
    Events(Vec<Event>, Vec<Option<Bytes>>),
    Json(Vec<(Option<String>, Option<u64>)>),
    Other(ParseError),
}

fn outcome(result: Result<Events, ParseError>) -> Outcome {
    match result {
        Ok(events) => {
            let raw = events.iter().map(|e| e.raw().map(Bytes::copy_from_slice)).collect();
            Outcome::Events(events.into_vec(), raw)
        }
        Err(ParseError::Json { errors, .. }) => {
            Outcome::Json(errors.into_iter().map(|e| (e.pointer, e.line)).collect())
        }
        Err(other) => Outcome::Other(other),
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limits (see `reference::fuzz_input`, which
    // the seeds' test in `event::differential` reads them with too).
    let (limits, body) = reference::fuzz_input(data);
    let body = Bytes::copy_from_slice(body);
    let kinds = [
        (BodyKind::Structured, "application/cloudevents+json"),
        (BodyKind::Batch, "application/cloudevents-batch+json"),
        (BodyKind::Json, "application/json"),
        (BodyKind::Ndjson, "application/x-ndjson"),
    ];
    for (kind, content_type) in kinds {
        let headers = Headers::from_pairs(&[("Content-Type", content_type)]);
        let scanned = outcome(parse_body(&headers, &body, &limits));
        let reference = outcome(reference::parse_body(kind, &body, &limits));
        assert_eq!(scanned, reference, "{content_type}: {:?}", String::from_utf8_lossy(&body));
    }
});
