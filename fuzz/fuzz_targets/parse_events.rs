//! Fuzzes event parsing and validation for every body kind: never panics,
//! and every accepted event serialises to JSON that parses back to itself.
#![no_main]

use inlet_shared::event::{parse_array, parse_ndjson, parse_single, Event, ParseLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ParseLimits { max_event_bytes: 4096, max_batch: 64 };
    for events in
        [parse_single(data, &limits), parse_array(data, &limits), parse_ndjson(data, &limits)].into_iter().flatten()
    {
        for event in events {
            let again = Event::from_json(&event.to_json()).expect("a valid event round-trips");
            assert_eq!(again, event);
        }
    }
});
