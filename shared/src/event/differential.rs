//! The scanner against the serde_json path it replaced (`reference.rs`) on
//! generated bodies: valid events, and events broken every way a body can
//! be (duplicate and escaped names, escapes, surrogates, odd numbers, deep
//! nesting, truncation, stray bytes), as single events, batches and NDJSON.
//! Both must give the same events (with the same `raw` bytes), or the same
//! error: kind, status and every located error; only the wording of a
//! syntax error's detail differs (serde_json's columns are its own).

use bytes::Bytes;
use proptest::prelude::*;

use super::{parse_body, reference, BodyKind, Event, Events, ParseError, ParseLimits};
use crate::http::Headers;
use crate::problem::FieldError;

/// A result with the parts the two parsers must agree on.
#[derive(Debug, PartialEq)]
enum Outcome {
    Events(Vec<Event>, Vec<Option<Bytes>>),
    /// A syntax error: where each error is, not its wording.
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
            Outcome::Json(errors.into_iter().map(|e: FieldError| (e.pointer, e.line)).collect())
        }
        Err(other) => Outcome::Other(other),
    }
}

const KINDS: [(BodyKind, &str); 4] = [
    (BodyKind::Structured, "application/cloudevents+json"),
    (BodyKind::Batch, "application/cloudevents-batch+json"),
    (BodyKind::Json, "application/json"),
    (BodyKind::Ndjson, "application/x-ndjson"),
];

/// Parses `body` as every structured kind both ways; the outcomes must agree.
pub(crate) fn assert_same(body: &[u8], limits: &ParseLimits) {
    let body = Bytes::copy_from_slice(body);
    for (kind, content_type) in KINDS {
        let headers = Headers::from_pairs(&[("Content-Type", content_type)]);
        let scanned = outcome(parse_body(&headers, &body, limits));
        let reference = outcome(reference::parse_body(kind, &body, limits));
        assert_eq!(scanned, reference, "{kind:?}: {:?}", String::from_utf8_lossy(&body));
    }
}

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(options).prop_map(str::to_string)
}

/// Pieces of string content: plain, escaped, surrogates paired and not,
/// forbidden characters raw and escaped, broken escapes.
fn string_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9 /:.-]{0,12}",
        1 => pick(&[
            r#"\""#, r"\\", r"\/", r"\b", r"\f", r"\n", r"\r", r"\t", r"\u00e9", r"\u0041", r"\ud83d\ude00",
            r"\ud800", r"\udc00", r"\ud800\u0041", r"\ud800\n", r"\udbff\udfff", r"\u0000", r"\u007f", r"\ufffe",
            "é", "😀", "\u{fffe}", "\u{85}", "\u{1}", "\t", r"\x", r"\u12", r"\u12g4", r"\U0041", "\\",
        ]),
    ]
}

fn json_string() -> impl Strategy<Value = String> {
    proptest::collection::vec(string_piece(), 0..4).prop_map(|pieces| format!("\"{}\"", pieces.concat()))
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<i64>().prop_map(|n| n.to_string()),
        3 => pick(&[
            "0", "-0", "1", "-1", "01", "-01", "1.", "1.5", "-", "1e5", "1E+2", "1e-2", "1e", "1e+", ".5", "+1",
            "2147483647", "2147483648", "-2147483648", "-2147483649", "9223372036854775807", "9223372036854775808",
            "-9223372036854775808", "-9223372036854775809", "18446744073709551616", "1e400", "-1e400", "1e-400",
            "0e999999", "0.0", "-0.0", "1.7976931348623157e308", "1.8e308", "00", "0x1", "NaN", "Infinity",
        ]),
    ]
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => json_string(),
        2 => number(),
        1 => pick(&["null", "true", "false", "nul", "tru", "fals", "nulll", "True", "undefined"]),
    ]
}

/// Any JSON-ish value: scalars, arrays, objects, nested a few levels, with
/// whitespace (sometimes none) around every token inside them, so that the
/// scanner's compact fast paths inside `data` meet both forms too.
fn value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            (proptest::collection::vec((ws(), inner.clone(), ws()), 0..4), ws()).prop_map(|(items, pad)| {
                let items: Vec<String> = items.into_iter().map(|(a, v, b)| format!("{a}{v}{b}")).collect();
                format!("[{pad}{}]", items.join(","))
            }),
            (proptest::collection::vec((ws(), json_string(), ws(), inner), 0..4), ws()).prop_map(|(members, pad)| {
                let members: Vec<String> =
                    members.into_iter().map(|(a, k, b, v)| format!("{a}{k}{b}:{b}{v}{a}")).collect();
                format!("{{{pad}{}}}", members.join(","))
            }),
        ]
    })
}

/// Nesting `depth` deep, as arrays or objects.
fn deep() -> impl Strategy<Value = String> {
    (0usize..400, any::<bool>()).prop_map(|(depth, objects)| {
        if objects {
            format!("{}1{}", r#"{"k":"#.repeat(depth), "}".repeat(depth))
        } else {
            format!("{}{}", "[".repeat(depth), "]".repeat(depth))
        }
    })
}

/// JSON whitespace, sometimes none.
fn ws() -> impl Strategy<Value = String> {
    prop_oneof![4 => Just(String::new()), 1 => pick(&[" ", "\n", "\r\n", "\t", "  \n "])]
}

fn attribute() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        6 => pick(&[
            "specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data",
            "data_base64", "myext", "ext2",
        ]),
        1 => pick(&["Bad-Name", "", r"d\u0061ta", r"i\u0064", r"\ud800", r"x\ud83d\ude00", "my/ext~", "é"]),
    ];
    let good_value = |name: &str| -> String {
        match name {
            "specversion" => "\"1.0\"".into(),
            "time" => "\"2026-11-29T06:00:00Z\"".into(),
            "datacontenttype" => "\"application/json\"".into(),
            "dataschema" => "\"https://e.x/s\"".into(),
            "data_base64" => "\"aGk=\"".into(),
            "source" => "\"/s\"".into(),
            _ => "\"v\"".into(),
        }
    };
    (name, prop_oneof![3 => Just(None), 2 => scalar().prop_map(Some), 1 => value().prop_map(Some), 1 => deep().prop_map(Some)])
        .prop_map(move |(name, value)| {
            let value = value.unwrap_or_else(|| good_value(&name));
            (format!("\"{name}\""), value)
        })
}

/// An event object: usually the four required attributes, then others
/// (which may repeat a name), with whitespace between the tokens.
fn event() -> impl Strategy<Value = String> {
    (any::<bool>(), proptest::collection::vec((attribute(), ws(), ws()), 0..6), ws()).prop_map(
        |(required, extra, end)| {
            let mut members: Vec<String> = Vec::new();
            if required {
                for m in [r#""specversion":"1.0""#, r#""id":"1""#, r#""source":"/s""#, r#""type":"t""#] {
                    members.push(m.to_string());
                }
            }
            for ((name, value), a, b) in extra {
                members.push(format!("{a}{name}{b}:{a}{value}{b}"));
            }
            format!("{{{}{end}}}", members.join(","))
        },
    )
}

/// A body: one event or value, a batch, or NDJSON lines.
fn body() -> impl Strategy<Value = String> {
    let item = prop_oneof![6 => event(), 1 => value(), 1 => deep()];
    prop_oneof![
        3 => (ws(), item.clone(), ws()).prop_map(|(a, item, b)| format!("{a}{item}{b}")),
        2 => (proptest::collection::vec((item.clone(), ws()), 0..5), ws()).prop_map(|(items, a)| {
            let items: Vec<String> = items.into_iter().map(|(item, b)| format!("{b}{item}{b}")).collect();
            format!("{a}[{}]{a}", items.join(","))
        }),
        2 => proptest::collection::vec(
            prop_oneof![5 => item, 1 => pick(&["", " ", "\r", "\u{a0}", "\u{b}", "\u{c}"])],
            0..5
        )
        .prop_map(|lines| lines.join("\n")),
    ]
}

/// Bytes that break JSON in interesting ways.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        5 => pick(&[
            "{", "}", "[", "]", ",", ":", "\"", "\\", " ", "\n", "\r", "\u{0}", "\u{a0}", "x", "0", "-", ",\"id\":\"2\"",
            ",}", ",]", "\\u", "\\ud800",
        ])
        .prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 1..3),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    None,
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    /// Repeats the member before the last `}` (a duplicate name).
    Duplicate,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => Just(Mutation::None),
        2 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (any::<usize>(), garbage()).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        1 => (any::<usize>(), 1usize..4).prop_map(|(at, len)| Mutation::Delete(at, len)),
        1 => Just(Mutation::Duplicate),
    ]
}

fn mutate(body: String, mutation: &Mutation) -> Vec<u8> {
    let mut bytes = body.into_bytes();
    let at = |n: usize, len: usize| if len == 0 { 0 } else { n % (len + 1) };
    match mutation {
        Mutation::None => {}
        Mutation::Truncate(n) => bytes.truncate(at(*n, bytes.len())),
        Mutation::Insert(n, garbage) => {
            let i = at(*n, bytes.len());
            bytes.splice(i..i, garbage.iter().copied());
        }
        Mutation::Delete(n, len) => {
            let i = at(*n, bytes.len());
            let end = (i + len).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Duplicate => {
            if let (Some(close), Some(comma)) =
                (bytes.iter().rposition(|&b| b == b'}'), bytes.iter().position(|&b| b == b','))
            {
                if comma < close {
                    let member: Vec<u8> = bytes[comma..close].to_vec();
                    bytes.splice(close..close, member);
                }
            }
        }
    }
    bytes
}

fn limits() -> impl Strategy<Value = ParseLimits> {
    (proptest::sample::select(vec![30usize, 120, 256 * 1024]), proptest::sample::select(vec![1usize, 3, 1000]))
        .prop_map(|(max_event_bytes, max_batch)| ParseLimits { max_event_bytes, max_batch, ..ParseLimits::default() })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn scanner_agrees_with_serde_json(body in body(), mutation in mutation(), limits in limits()) {
        assert_same(&mutate(body, &mutation), &limits);
    }
}

/// Bodies where the two could part ways, each checked by name.
#[test]
fn scanner_agrees_with_serde_json_on_the_edge_cases() {
    let ok = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<String> = vec![
        String::new(),
        " ".into(),
        "[".into(),
        "{".into(),
        "[1,2".into(),
        "{garbage".into(),
        "\"abc\" x".into(),
        r#""\ud800""#.into(),
        "1e400".into(),
        "-1e400".into(),
        "1e300".into(),
        "12abc".into(),
        "0x".into(),
        "nul".into(),
        "null".into(),
        "[1e400]".into(),
        r#"["\ud800"]"#.into(),
        format!("[{ok},\"\\ud800\"]"),
        format!("[{ok},{}]", ok.replace("\"id\"", r#""\ud800""#)),
        format!("[{},{ok}]", ok.replace("\"id\"", r#""\ud800""#)),
        format!("[{ok},]"),
        format!("[{ok}] x"),
        format!("{ok}\n{ok}\r\n\n\u{a0}\n{ok}\u{c}\n \u{b} \n"),
        ok.replace("\"t\"", r#""t","id":"2","d\u0061ta":1,"data":[1e400,"\ud800",{"\udc00":-0}]"#),
        ok.replace("\"t\"", &format!("\"t\",\"data\":{deep}")),
        ok.replace("\"t\"", &format!("\"t\",\"x\":{deep}")),
        ok.replace("\"t\"", r#""t","x":{"\ud800":1},"y":[1e999],"z":1e999,"w":"\udfff""#),
        ok.replace("\"t\"", "\"t\"\n"),
    ];
    for case in &cases {
        for limits in
            [ParseLimits::default(), ParseLimits { max_event_bytes: 60, max_batch: 1, ..ParseLimits::default() }]
        {
            assert_same(case.as_bytes(), &limits);
        }
    }
}

/// The seeds of the `parse_differential` fuzz target, read as the target
/// reads them (`reference::fuzz_input`: selector byte first), are the valid
/// bodies they are named for, and the two parsers agree on them.
#[test]
fn fuzz_seeds_are_the_bodies_they_are_named_for() {
    let dir = "fuzz/seeds/parse_differential";
    let seeds: [(&str, &[u8], BodyKind, usize); 4] = [
        ("seed1", include_bytes!("../../../fuzz/seeds/parse_differential/seed1"), BodyKind::Batch, 1),
        ("batch_of_two", include_bytes!("../../../fuzz/seeds/parse_differential/batch_of_two"), BodyKind::Batch, 2),
        (
            "ndjson_two_lines",
            include_bytes!("../../../fuzz/seeds/parse_differential/ndjson_two_lines"),
            BodyKind::Ndjson,
            2,
        ),
        (
            "single_every_attribute",
            include_bytes!("../../../fuzz/seeds/parse_differential/single_every_attribute"),
            BodyKind::Structured,
            1,
        ),
    ];
    for (name, data, kind, count) in seeds {
        let (limits, body) = reference::fuzz_input(data);
        let content_type = KINDS.iter().find(|(k, _)| *k == kind).map_or("", |(_, ct)| ct);
        let headers = Headers::from_pairs(&[("Content-Type", content_type)]);
        let events = match parse_body(&headers, &Bytes::copy_from_slice(body), &limits) {
            Ok(events) => events,
            Err(e) => panic!("{dir}/{name}: {e:?}"),
        };
        assert_eq!(events.len(), count, "{dir}/{name}");
        assert_same(body, &limits);
        if name == "single_every_attribute" {
            let e = &events[0];
            let optional = [e.subject(), e.time(), e.datacontenttype(), e.dataschema()];
            assert!(optional.iter().all(|a| a.is_some()) && e.data().is_some(), "{e:?}");
            assert_eq!(e.extensions().len(), 3, "{e:?}");
        }
    }
    // One seed exercises the small limits (an odd selector), the others the default.
    assert_ne!(reference::fuzz_input(b"\x11[]").0, reference::fuzz_input(b" []").0);
}
