//! Fuzzes event parsing and validation for every body kind: never panics,
//! the zero-copy path (`parse_body`, attributes sliced from the body) gives
//! the same events as the copying one, every accepted event serialises
//! to JSON that parses back to itself, and no accepted string attribute
//! holds what the CloudEvents `String` type excludes.
#![no_main]

use bytes::Bytes;
use inlet_shared::event::{
    parse_array, parse_body, parse_ndjson, parse_single, Event, Events, ExtensionValue, ParseError, ParseLimits,
};
use inlet_shared::http::Headers;
use libfuzzer_sys::fuzz_target;

type Parse = fn(&[u8], &ParseLimits) -> Result<Events, ParseError>;

/// Not a control character (Unicode `Cc`: U+0000-001F, U+007F-009F) and not
/// a noncharacter (U+FDD0-FDEF, U+xFFFE, U+xFFFF).
fn allowed(c: char) -> bool {
    let n = u32::from(c);
    !c.is_control() && !(0xfdd0..=0xfdef).contains(&n) && n & 0xfffe != 0xfffe
}

fuzz_target!(|data: &[u8]| {
    let limits = ParseLimits { max_event_bytes: 4096, max_batch: 64, ..ParseLimits::default() };
    let body = Bytes::copy_from_slice(data);
    let kinds: [(&'static str, Parse); 3] = [
        ("application/cloudevents+json", parse_single),
        ("application/cloudevents-batch+json", parse_array),
        ("application/x-ndjson", parse_ndjson),
    ];
    for (content_type, parse) in kinds {
        let copied = parse(data, &limits);
        let sliced = parse_body(&Headers::from_pairs(&[("Content-Type", content_type)]), &body, &limits);
        match (&copied, &sliced) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => panic!("parse_body and {content_type} parsing disagree: {copied:?} vs {sliced:?}"),
        }
        for event in sliced.into_iter().flatten() {
            let strings = [Some(event.id()), Some(event.source()), Some(event.ty()), event.subject()];
            for s in strings.into_iter().flatten() {
                assert!(s.chars().all(allowed), "accepted a forbidden character in {s:?}");
            }
            for value in event.extensions().values() {
                if let ExtensionValue::String(s) = value {
                    assert!(s.chars().all(allowed), "accepted a forbidden character in extension {s:?}");
                }
            }
            let again = Event::from_json(&event.to_json()).expect("a valid event round-trips");
            assert_eq!(again, event);
        }
    }
});
