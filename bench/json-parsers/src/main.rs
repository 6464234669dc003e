//! inlet's scanner against serde_json, sonic-rs and simd-json on the bodies of
//! `shared/benches/parse.rs`: the event `inlet-client bench` sends (261
//! bytes), a batch of 100 and the same 100 as NDJSON.
//!
//! Two comparisons:
//! - `view`: each parser produces the same borrowed view of every event, the
//!   list of its members in order, names and string values unescaped
//!   (borrowed where they hold no escape), numbers and literals typed, and
//!   `data` as its raw JSON text (simd-json cannot hand raw text through: its
//!   `data` is built as a `BorrowedValue`; and it parses in place, so the
//!   body is copied first, as the server, whose body is shared `Bytes`,
//!   would have to). No validation of attributes.
//! - `alone`: each parser's cheapest pass over the whole body that checks it
//!   is JSON (serde_json and sonic-rs into `IgnoredAny`, simd-json's tape,
//!   the scanner's own member read as `view`).
//! - `full` (inlet's two paths only): `parse_body` (scanner) and
//!   `event::reference` (serde_json), both with every CloudEvents rule.
//!
//! Run: `cargo run --release -- criterion` (wall clock, criterion), or for
//! callgrind `PARSE_COUNT=n valgrind --tool=callgrind target/release/json-parsers
//! <parser> <body>` with parser one of `scanner-full`, `serde_json-full`,
//! `scanner-view`, `serde_json-view`, `sonic-view`, `simd-view`,
//! `scanner-alone`, `serde_json-alone`, `sonic-alone`, `simd-alone`.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use inlet_shared::event::{parse_body, reference, scan_only, BodyKind, ParseLimits};
use inlet_shared::http::Headers;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

#[path = "../../../shared/benches/common/bodies.rs"]
mod bodies;
use bodies::bodies;

/// A member name, borrowed unless it held escapes.
struct Name<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// An attribute's value (`R`: `data`, or a compound attribute, as the
/// parser hands it through).
#[allow(dead_code)] // read by `black_box` only
enum Value<'de, R> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'de, str>),
    Raw(R),
}

/// A scalar attribute value; an object or array is refused (the bodies here
/// have none outside `data`).
struct Scalar<'de>(Value<'de, ()>);

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar")
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Value::Null))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Value::Bool(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Value::Int(n)))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar(i64::try_from(n).map_or(Value::Float(n as f64), Value::Int)))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Value::Float(n)))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Value::Str(Cow::Borrowed(s))))
            }
            fn visit_str<E>(self, s: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Value::Str(Cow::Owned(s.to_owned()))))
            }
        }
        d.deserialize_any(V)
    }
}

/// One event's members in order, `data` as `R`.
struct View<'de, R>(Vec<(Cow<'de, str>, Value<'de, R>)>);

impl<'de, R: Deserialize<'de>> Deserialize<'de> for View<'de, R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<R>(PhantomData<R>);
        impl<'de, R: Deserialize<'de>> Visitor<'de> for V<R> {
            type Value = View<'de, R>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<View<'de, R>, A::Error> {
                let mut members = Vec::with_capacity(12);
                while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
                    let value = if name == "data" {
                        Value::Raw(map.next_value::<R>()?)
                    } else {
                        match map.next_value::<Scalar<'de>>()?.0 {
                            Value::Null => Value::Null,
                            Value::Bool(b) => Value::Bool(b),
                            Value::Int(n) => Value::Int(n),
                            Value::Float(n) => Value::Float(n),
                            Value::Str(s) => Value::Str(s),
                            Value::Raw(()) => unreachable!("a scalar"),
                        }
                    };
                    members.push((name, value));
                }
                Ok(View(members))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

type SerdeView<'de> = View<'de, &'de serde_json::value::RawValue>;
type SonicView<'de> = View<'de, sonic_rs::LazyValue<'de>>;
type SimdView<'de> = View<'de, simd_json::BorrowedValue<'de>>;

/// Members read in the view, over the whole body.
fn view(parser: &str, kind: BodyKind, body: &Bytes) -> usize {
    let text = std::str::from_utf8(body).unwrap_or_default();
    let lines: Vec<&str> = match kind {
        BodyKind::Ndjson => text.split('\n').collect(),
        _ => vec![text],
    };
    let mut count = 0;
    for text in lines {
        let array = text.starts_with('[');
        count += match (parser, array) {
            ("serde_json", false) => serde_json::from_str::<SerdeView>(text).map(|v| v.0.len()).unwrap_or(0),
            ("serde_json", true) => {
                serde_json::from_str::<Vec<SerdeView>>(text).map(|v| v.iter().map(|e| e.0.len()).sum()).unwrap_or(0)
            }
            ("sonic", false) => sonic_rs::from_str::<SonicView>(text).map(|v| v.0.len()).unwrap_or(0),
            ("sonic", true) => {
                sonic_rs::from_str::<Vec<SonicView>>(text).map(|v| v.iter().map(|e| e.0.len()).sum()).unwrap_or(0)
            }
            ("simd", array) => {
                let mut copy = text.as_bytes().to_vec();
                if array {
                    simd_json::serde::from_slice::<Vec<SimdView>>(&mut copy)
                        .map(|v| v.iter().map(|e| e.0.len()).sum())
                        .unwrap_or(0)
                } else {
                    simd_json::serde::from_slice::<SimdView>(&mut copy).map(|v| v.0.len()).unwrap_or(0)
                }
            }
            ("scanner", _) => scan_only(text, false).unwrap_or(0),
            _ => panic!("no parser {parser}"),
        };
        std::hint::black_box(());
    }
    count
}

/// The cheapest whole-body check that it is JSON; 1 if it is.
fn alone(parser: &str, kind: BodyKind, body: &Bytes) -> usize {
    let text = std::str::from_utf8(body).unwrap_or_default();
    let lines: Vec<&str> = match kind {
        BodyKind::Ndjson => text.split('\n').collect(),
        _ => vec![text],
    };
    lines
        .into_iter()
        .map(|text| match parser {
            "serde_json" => usize::from(serde_json::from_str::<IgnoredAny>(text).is_ok()),
            "sonic" => usize::from(sonic_rs::from_str::<IgnoredAny>(text).is_ok()),
            "simd" => {
                let mut copy = text.as_bytes().to_vec();
                usize::from(simd_json::to_tape(&mut copy).is_ok())
            }
            "scanner" => usize::from(scan_only(text, false).is_ok()),
            _ => panic!("no parser {parser}"),
        })
        .sum()
}

fn full(parser: &str, kind: BodyKind, headers: &Headers, body: &Bytes) -> usize {
    match parser {
        "scanner" => parse_body(headers, body, &ParseLimits::default()).map_or(0, |e| e.len()),
        "serde_json" => reference::parse_body(kind, body, &ParseLimits::default()).map_or(0, |e| e.len()),
        _ => panic!("no parser {parser}"),
    }
}

fn run(what: &str, kind: BodyKind, headers: &Headers, body: &Bytes) -> usize {
    let (parser, pass) = what.rsplit_once('-').unwrap_or((what, "view"));
    match pass {
        "full" => full(parser, kind, headers, body),
        "view" => view(parser, kind, body),
        "alone" => alone(parser, kind, body),
        _ => panic!("no pass {pass}"),
    }
}

const RUNS: [&str; 10] = [
    "scanner-full",
    "serde_json-full",
    "scanner-view",
    "serde_json-view",
    "sonic-view",
    "simd-view",
    "scanner-alone",
    "serde_json-alone",
    "sonic-alone",
    "simd-alone",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Every parser agrees on every body before anything is measured.
    for (name, kind, content_type, body) in bodies() {
        let headers = Headers::from_pairs(&[("Content-Type", content_type)]);
        let events = if name == "single" { 1 } else { 100 };
        for what in RUNS {
            let expected = match what.rsplit_once('-').map(|(_, pass)| pass) {
                Some("full") => events,
                Some("view") => events * 7,
                _ => {
                    if kind == BodyKind::Ndjson {
                        events
                    } else {
                        1
                    }
                }
            };
            assert_eq!(run(what, kind, &headers, &body), expected, "{what} on {name}");
        }
    }
    if let Some(count) = std::env::var("PARSE_COUNT").ok().and_then(|n| n.parse::<usize>().ok()) {
        let (what, wanted) = (args.get(1).map_or("scanner-full", |s| s), args.get(2).map_or("single", |s| s));
        let Some((_, kind, content_type, body)) = bodies().into_iter().find(|(name, ..)| *name == wanted) else {
            panic!("no body named {wanted}");
        };
        let headers = Headers::from_pairs(&[("Content-Type", content_type)]);
        let mut total = 0;
        for _ in 0..count {
            total += run(what, kind, &headers, std::hint::black_box(&body));
        }
        println!("{total}");
        return;
    }
    if args.get(1).map(String::as_str) != Some("criterion") {
        println!("checked; run with `criterion` or PARSE_COUNT=n <parser> <body>");
        return;
    }
    let mut c = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    for (name, kind, content_type, body) in bodies() {
        let headers = Headers::from_pairs(&[("Content-Type", content_type)]);
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(body.len() as u64));
        for what in RUNS {
            group.bench_function(what, |b| b.iter(|| run(what, kind, &headers, std::hint::black_box(&body))));
        }
        group.finish();
    }
    c.final_summary();
}
