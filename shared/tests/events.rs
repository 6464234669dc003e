//! The CloudEvents `Event`: parsing from every binding mode, validation of
//! every attribute rule (with the exact pointer and detail), round trips.

use bytes::Bytes;
use inlet_shared::event::{
    parse_body, BodyKind, DataRef, Event, Events, ExtensionValue, ParseError, ParseLimits, MAX_LISTED_ERRORS,
};
use inlet_shared::http::Headers;
use inlet_shared::problem::FieldError;

fn headers(pairs: &[(&'static str, &'static str)]) -> Headers {
    Headers::from_pairs(pairs)
}

fn parse(content_type: &'static str, body: &str) -> Result<Events, ParseError> {
    parse_body(&headers(&[("Content-Type", content_type)]), &Bytes::from(body.to_string()), &ParseLimits::default())
}

fn structured(body: &str) -> Result<Events, ParseError> {
    parse("application/cloudevents+json", body)
}

/// The (pointer, detail) pairs of a 422.
fn invalid(result: Result<Events, ParseError>) -> Vec<(String, String)> {
    match result {
        Err(ParseError::Invalid { errors, .. }) => {
            errors.into_iter().map(|e| (e.pointer.or(e.header).unwrap_or_default(), e.detail)).collect()
        }
        other => panic!("expected 422, got {other:?}"),
    }
}

fn pointers(result: Result<Events, ParseError>) -> Vec<String> {
    invalid(result).into_iter().map(|(p, _)| p).collect()
}

const VALID: &str = r#"{"specversion":"1.0","id":"e-1","source":"/sensors/7","type":"com.example.reading","time":"2026-11-29T06:00:00Z","subject":"t","datacontenttype":"application/json","dataschema":"https://example.com/s.json","traceid":"abc","count":3,"urgent":true,"data":{"celsius": 21.50, "list":[1,2]}}"#;

#[test]
fn structured_event_parses_every_attribute() {
    let events = structured(VALID).unwrap();
    let e = &events[0];
    assert_eq!((e.id(), e.source(), e.ty()), ("e-1", "/sensors/7", "com.example.reading"));
    assert_eq!(e.time(), Some("2026-11-29T06:00:00Z"));
    assert_eq!(e.subject(), Some("t"));
    assert_eq!(e.dataschema(), Some("https://example.com/s.json"));
    assert_eq!(e.extensions().get("traceid"), Some(&ExtensionValue::String("abc".into())));
    assert_eq!(e.extensions().get("count"), Some(&ExtensionValue::Integer(3)));
    assert_eq!(e.extensions().get("urgent"), Some(&ExtensionValue::Boolean(true)));
    match e.data() {
        Some(DataRef::Json(raw)) => assert_eq!(raw, r#"{"celsius": 21.50, "list":[1,2]}"#),
        other => panic!("data: {other:?}"),
    }
}

#[test]
fn writing_an_event_back_gives_the_same_event() {
    let e = structured(VALID).unwrap().remove(0);
    let again = Event::from_json(&e.to_json()).unwrap();
    assert_eq!(again, e);
    // data is kept byte for byte, number formatting included.
    assert!(String::from_utf8(e.to_json()).unwrap().contains(r#""data":{"celsius": 21.50, "list":[1,2]}"#));
}

#[test]
fn specversion_must_be_1_0() {
    let r = structured(r#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#);
    assert_eq!(invalid(r), vec![("#/specversion".into(), "must be \"1.0\"".into())]);
    let r = structured(r#"{"specversion":1.0,"id":"1","source":"s","type":"t"}"#);
    assert_eq!(pointers(r), vec!["#/specversion"]);
    let r = structured(r#"{"id":"1","source":"s","type":"t"}"#);
    assert_eq!(invalid(r), vec![("#/specversion".into(), "is required and must be \"1.0\"".into())]);
    // null means absent, and specversion is required.
    let r = structured(r#"{"specversion":null,"id":"1","source":"s","type":"t"}"#);
    assert_eq!(invalid(r), vec![("#/specversion".into(), "is required and must be \"1.0\"".into())]);
}

#[test]
fn id_source_type_are_required_non_empty_strings() {
    let r = structured(r#"{"specversion":"1.0"}"#);
    assert_eq!(pointers(r), vec!["#/id", "#/source", "#/type"]);
    let r = structured(r#"{"specversion":"1.0","id":"","source":7,"type":null}"#);
    assert_eq!(
        invalid(r),
        vec![
            ("#/id".into(), "must be a non-empty string".into()),
            ("#/source".into(), "must be a non-empty string".into()),
            ("#/type".into(), "must be a non-empty string".into()),
        ]
    );
}

#[test]
fn source_must_be_a_uri_reference() {
    let r = structured(r#"{"specversion":"1.0","id":"1","source":"has space","type":"t"}"#);
    assert_eq!(pointers(r), vec!["#/source"]);
}

#[test]
fn time_must_be_rfc3339() {
    for bad in
        [r#""yesterday""#, r#""2026-11-29 06:00:00""#, r#""2026-11-29T06:00:00""#, r#""2026-13-01T00:00:00Z""#, "12"]
    {
        let body = format!(r#"{{"specversion":"1.0","id":"1","source":"s","type":"t","time":{bad}}}"#);
        assert_eq!(pointers(structured(&body)), vec!["#/time"], "time {bad}");
    }
    for good in ["2026-11-29T06:00:00Z", "2026-11-29T06:00:00.123456+02:00", "1985-04-12T23:20:50.52Z"] {
        let body = format!(r#"{{"specversion":"1.0","id":"1","source":"s","type":"t","time":"{good}"}}"#);
        assert!(structured(&body).is_ok(), "time {good}");
    }
}

#[test]
fn data_and_data_base64_are_mutually_exclusive() {
    let r = structured(r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"AA=="}"#);
    assert_eq!(invalid(r), vec![("#/data_base64".into(), "data and data_base64 are mutually exclusive".into())]);
}

#[test]
fn data_base64_must_be_valid_base64() {
    let r = structured(r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"not base64!"}"#);
    assert_eq!(pointers(r), vec!["#/data_base64"]);
    let ok = structured(r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"aGVsbG8="}"#).unwrap();
    assert_eq!(ok[0].data(), Some(DataRef::Base64("aGVsbG8=")));
}

#[test]
fn extension_names_are_lowercase_letters_and_digits() {
    let r = structured(
        r#"{"specversion":"1.0","id":"1","source":"s","type":"t","traceId":"x","my-ext":"y","a/b":"z","ok1":"fine"}"#,
    );
    assert_eq!(pointers(r), vec!["#/traceId", "#/my-ext", "#/a~1b"]);
}

#[test]
fn extension_values_have_cloudevents_types() {
    let r = structured(
        r#"{"specversion":"1.0","id":"1","source":"s","type":"t","a":1.5,"b":{"x":1},"c":[1],"d":4294967296,"e":-2147483648}"#,
    );
    assert_eq!(pointers(r), vec!["#/a", "#/b", "#/c", "#/d"]);
}

#[test]
fn optional_attributes_have_their_types() {
    let r = structured(
        r#"{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"","datacontenttype":"json","dataschema":"no scheme"}"#,
    );
    assert_eq!(pointers(r), vec!["#/subject", "#/datacontenttype", "#/dataschema"]);
}

#[test]
fn null_optional_attribute_is_absent() {
    let e =
        structured(r#"{"specversion":"1.0","id":"1","source":"s","type":"t","subject":null,"data":null,"ext":null}"#)
            .unwrap();
    assert_eq!(e[0], Event::new("1", "s", "t"));
}

#[test]
fn duplicate_attribute_is_reported() {
    let r = structured(r#"{"specversion":"1.0","id":"1","id":"2","source":"s","type":"t"}"#);
    assert_eq!(invalid(r), vec![("#/id".into(), "attribute appears more than once".into())]);
}

#[test]
fn duplicate_attribute_is_reported_among_many() {
    // Past 32 attributes repeated names are found through a hash set.
    let extensions: String = (0..100).map(|i| format!(r#","x{i}":{i}"#)).collect();
    let r =
        structured(&format!(r#"{{"specversion":"1.0","id":"1","source":"s","type":"t"{extensions},"x7":"again"}}"#));
    assert_eq!(invalid(r), vec![("#/x7".into(), "attribute appears more than once".into())]);
    let ok = structured(&format!(r#"{{"specversion":"1.0","id":"1","source":"s","type":"t"{extensions}}}"#)).unwrap();
    assert_eq!(ok[0].extensions().len(), 100);
    assert_eq!(ok[0].extensions().get("x99"), Some(&ExtensionValue::Integer(99)));
}

#[test]
fn attributes_are_slices_of_the_body_unless_escaped() {
    let body = Bytes::from_static(br#"{"specversion":"1.0","id":"plain","source":"/s\/escaped","type":"t","ext":"e"}"#);
    let events =
        parse_body(&headers(&[("Content-Type", "application/cloudevents+json")]), &body, &ParseLimits::default())
            .unwrap();
    let within = |s: &str| body.as_ptr_range().contains(&s.as_ptr());
    let e = &events[0];
    assert!(within(e.id()) && within(e.ty()));
    assert!(matches!(e.extensions().get("ext"), Some(ExtensionValue::String(v)) if within(v)));
    // An escaped string is unescaped into its own memory.
    assert_eq!(e.source(), "/s/escaped");
    assert!(!within(e.source()));
}

#[test]
fn structured_body_must_be_an_object() {
    assert_eq!(pointers(structured("[1]")), vec!["#"]);
    assert_eq!(pointers(structured("\"x\"")), vec!["#"]);
}

#[test]
fn bad_json_is_400() {
    let r = structured(r#"{"specversion":"1.0","#);
    assert_eq!(r.as_ref().map_err(|e| e.status()).unwrap_err(), 400);
    assert_eq!(structured("\u{0}").unwrap_err().status(), 400);
}

#[test]
fn batch_lists_every_invalid_attribute_of_every_event() {
    let body = r#"[{"specversion":"1.0","id":"1","source":"s","type":"t"},
                   {"specversion":"1.0","id":"2","source":"s"},
                   {"specversion":"1.0","id":"","source":"s","type":"t","time":"x"},
                   7]"#;
    let r = parse("application/cloudevents-batch+json", body);
    assert_eq!(pointers(r), vec!["#/1/type", "#/2/id", "#/2/time", "#/3"]);
}

#[test]
fn batch_keeps_order() {
    let body = r#"[{"specversion":"1.0","id":"b","source":"s","type":"t"},{"specversion":"1.0","id":"a","source":"s","type":"t"}]"#;
    let ids: Vec<_> =
        parse("application/cloudevents-batch+json", body).unwrap().iter().map(|e| e.id().to_string()).collect();
    assert_eq!(ids, vec!["b", "a"]);
}

#[test]
fn application_json_takes_object_or_array() {
    assert_eq!(parse("application/json", VALID).unwrap().len(), 1);
    assert_eq!(parse("application/json; charset=utf-8", &format!("[{VALID},{VALID}]")).unwrap().len(), 2);
}

#[test]
fn batch_content_type_needs_an_array() {
    assert_eq!(pointers(parse("application/cloudevents-batch+json", VALID)), vec!["#"]);
}

#[test]
fn ndjson_numbers_every_line_and_skips_blank_ones() {
    let body = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\"}\n\n   \n{\"specversion\":\"1.0\",\"id\":\"2\",\"source\":\"s\"}\r\n{\"specversion\":\"1.0\",\"id\":\"3\",\"source\":\"s\",\"type\":\"t\"}\n";
    match parse("application/x-ndjson", body) {
        Err(ParseError::Invalid { errors, .. }) => {
            assert_eq!(
                errors,
                vec![FieldError::pointer("#/type".into(), Some(4), "is required and must be a non-empty string")]
            );
        }
        other => panic!("{other:?}"),
    }
    let ok = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\"}\n\n{\"specversion\":\"1.0\",\"id\":\"2\",\"source\":\"s\",\"type\":\"t\"}";
    assert_eq!(parse("application/x-ndjson", ok).unwrap().len(), 2);
}

/// Blank means JSON whitespace only (space, tab, CR, LF): a line of any other
/// Unicode white space is a line that is not JSON, and counts as an event.
#[test]
fn ndjson_blank_lines_are_json_whitespace_only() {
    let ok = r#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#;
    let body = format!("{ok}\n \t \r\n\r\n\t\n\r\r\n{ok}\n");
    assert_eq!(parse("application/x-ndjson", &body).unwrap().len(), 2);
    for white in ["\u{a0}", "\u{2028}", "\u{2029}", "\u{85}", "\u{b}", "\u{c}", "\u{3000}", " \u{a0}\t"] {
        match parse("application/x-ndjson", &format!("{ok}\n\n{white}\r\n{ok}")) {
            Err(ParseError::Json { errors, .. }) => {
                assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), vec![Some(3)], "{white:?}");
            }
            other => panic!("{white:?}: {other:?}"),
        }
        let limits = ParseLimits { max_batch: 2, ..ParseLimits::default() };
        let body = Bytes::from(format!("{ok}\n{white}\n{ok}\n \n"));
        let r = parse_body(&headers(&[("Content-Type", "application/x-ndjson")]), &body, &limits);
        assert_eq!(r.unwrap_err(), ParseError::BatchTooLarge { count: 3, max: 2 }, "{white:?}");
    }
}

#[test]
fn ndjson_bad_json_lines_are_400_with_every_line() {
    let body = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\"}\n{oops\nnot json\n";
    match parse("application/x-ndjson", body) {
        Err(ParseError::Json { errors, .. }) => {
            assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), vec![Some(2), Some(3)]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn max_batch_is_413() {
    let limits = ParseLimits { max_event_bytes: 1 << 20, max_batch: 2, ..ParseLimits::default() };
    let body = format!("[{VALID},{VALID},{VALID}]");
    let r = parse_body(&headers(&[("Content-Type", "application/json")]), &Bytes::from(body), &limits);
    assert_eq!(r.unwrap_err(), ParseError::BatchTooLarge { count: 3, max: 2 });
    let nd = format!("{VALID}\n{VALID}\n{VALID}\n");
    let r = parse_body(&headers(&[("Content-Type", "application/x-ndjson")]), &Bytes::from(nd), &limits);
    assert_eq!(r.unwrap_err().status(), 413);
}

#[test]
fn max_event_bytes_is_413_with_location() {
    let limits = ParseLimits { max_event_bytes: 100, max_batch: 10, ..ParseLimits::default() };
    let small = r#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#;
    let body = format!("[{small},{VALID}]");
    match parse_body(&headers(&[("Content-Type", "application/json")]), &Bytes::from(body), &limits) {
        Err(ParseError::EventTooLarge { at }) => assert_eq!(at.pointer.as_deref(), Some("#/1")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_content_type_is_415() {
    assert_eq!(parse("text/plain", VALID).unwrap_err().status(), 415);
    let none = parse_body(&Headers::default(), &Bytes::from(VALID), &ParseLimits::default());
    assert_eq!(none.unwrap_err().status(), 415);
}

#[test]
fn binary_mode_reads_ce_headers_and_body() {
    let h = headers(&[
        ("Content-Type", "application/json"),
        ("ce-specversion", "1.0"),
        ("CE-ID", "b-1"),
        ("ce-source", "/bin"),
        ("ce-type", "com.example.bin"),
        ("ce-subject", "caf%C3%A9%20au%20lait"),
        ("ce-myext", "v"),
    ]);
    assert_eq!(BodyKind::of(&h).unwrap(), BodyKind::Binary);
    let e = parse_body(&h, &Bytes::from_static(b" {\"k\": 1} "), &ParseLimits::default()).unwrap().remove(0);
    assert_eq!(e.id(), "b-1");
    assert_eq!(e.subject(), Some("café au lait"));
    assert_eq!(e.datacontenttype(), Some("application/json"));
    assert_eq!(e.extensions().get("myext"), Some(&ExtensionValue::String("v".into())));
    assert_eq!(e.data(), Some(DataRef::Json("{\"k\": 1}")));
}

#[test]
fn binary_mode_non_json_body_becomes_base64_or_text() {
    let h = headers(&[
        ("Content-Type", "application/octet-stream"),
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "s"),
        ("ce-type", "t"),
    ]);
    let e = parse_body(&h, &Bytes::from_static(&[0, 159, 146, 150]), &ParseLimits::default()).unwrap().remove(0);
    assert_eq!(e.data(), Some(DataRef::Base64("AJ+Slg==")));
    let h = headers(&[
        ("Content-Type", "text/plain"),
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "s"),
        ("ce-type", "t"),
    ]);
    let e = parse_body(&h, &Bytes::from_static(b"hi \"you\""), &ParseLimits::default()).unwrap().remove(0);
    assert_eq!(e.data(), Some(DataRef::Json(r#""hi \"you\"""#)));
}

#[test]
fn binary_mode_errors_name_the_header() {
    let h = headers(&[
        ("Content-Type", "application/json"),
        ("ce-specversion", "0.3"),
        ("ce-id", ""),
        ("ce-source", "s"),
        ("ce-time", "nope"),
        ("ce-Bad_Name", "x"),
    ]);
    let r = parse_body(&h, &Bytes::new(), &ParseLimits::default());
    assert_eq!(pointers(r), vec!["ce-id", "ce-time", "ce-bad_name", "ce-specversion", "ce-type"]);
}

#[test]
fn binary_mode_bad_json_body_is_400() {
    let h = headers(&[
        ("Content-Type", "application/json"),
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "s"),
        ("ce-type", "t"),
    ]);
    let r = parse_body(&h, &Bytes::from_static(b"{nope"), &ParseLimits::default());
    assert_eq!(r.unwrap_err().status(), 400);
}

#[test]
fn structured_content_type_wins_over_ce_headers() {
    let h = headers(&[("Content-Type", "application/cloudevents+json"), ("ce-specversion", "1.0")]);
    assert_eq!(BodyKind::of(&h).unwrap(), BodyKind::Structured);
}

#[test]
fn problem_lists_errors_in_rfc9457_shape() {
    let r = parse("application/cloudevents-batch+json", r#"[{"specversion":"1.0","id":"1","source":"s"}]"#);
    let problem = r.unwrap_err().to_problem();
    let json: serde_json::Value = serde_json::from_slice(&problem.to_json()).unwrap();
    assert_eq!(json["status"], 422);
    assert_eq!(json["type"], "urn:inlet:problem:invalid-event");
    assert_eq!(json["title"], "Unprocessable Content");
    assert_eq!(json["errors"][0]["pointer"], "#/0/type");
    assert_eq!(json["errors"][0]["detail"], "is required and must be a non-empty string");
}

#[test]
fn structured_events_keep_their_received_bytes() {
    let one = r#"{"id":"r1","type":"t","source":"/s","specversion":"1.0","data":{"b": 2.50}}"#;
    let body = Bytes::from(format!("  {one}\n"));
    let events =
        parse_body(&headers(&[("Content-Type", "application/cloudevents+json")]), &body, &ParseLimits::default())
            .unwrap();
    assert_eq!(events[0].raw(), Some(one.as_bytes()));
    assert_eq!(&events[0].json_bytes()[..], one.as_bytes());

    let batch = Bytes::from(format!("[{one}, {one}]"));
    let events =
        parse_body(&headers(&[("Content-Type", "application/json")]), &batch, &ParseLimits::default()).unwrap();
    assert!(events.iter().all(|e| e.raw() == Some(one.as_bytes())));

    let nd = Bytes::from(format!("{one}\r\n\n{one}"));
    let events =
        parse_body(&headers(&[("Content-Type", "application/x-ndjson")]), &nd, &ParseLimits::default()).unwrap();
    assert!(events.iter().all(|e| e.raw() == Some(one.as_bytes())));
}

#[test]
fn multi_line_and_binary_events_are_serialised_again() {
    let pretty = Bytes::from_static(
        b"{\n  \"specversion\": \"1.0\",\n  \"id\": \"p\",\n  \"source\": \"/s\",\n  \"type\": \"t\"\n}",
    );
    let events =
        parse_body(&headers(&[("Content-Type", "application/cloudevents+json")]), &pretty, &ParseLimits::default())
            .unwrap();
    assert_eq!(events[0].raw(), None);
    assert_eq!(&events[0].json_bytes()[..], br#"{"specversion":"1.0","id":"p","source":"/s","type":"t"}"#);
    let h = headers(&[("ce-specversion", "1.0"), ("ce-id", "b"), ("ce-source", "/s"), ("ce-type", "t")]);
    let events = parse_body(&h, &Bytes::new(), &ParseLimits::default()).unwrap();
    assert_eq!(events[0].raw(), None);
}

/// The detail of a string attribute that breaks the CloudEvents type system.
const FORBIDDEN: &str =
    "must be a CloudEvents String: no control characters (U+0000-U+001F, U+007F-U+009F), noncharacters or unpaired surrogates";

/// Every kind of code point the CloudEvents `String` type excludes (spec
/// §"Type System"), as a JSON string escape and as the character itself
/// where Rust can hold it.
const FORBIDDEN_ESCAPES: [&str; 15] = [
    r"\u0000",
    r"\u0009",
    r"\n",
    r"\u001f",
    r"\u007f",
    r"\u0085",
    r"\u009f",
    r"\ufdd0",
    r"\ufdef",
    r"\ufffe",
    r"\uffff",
    r"\ud83f\udffe", // U+1FFFE
    r"\udbff\udfff", // U+10FFFF
    r"\ud800",       // a lone leading surrogate
    r"\udead",       // a lone trailing surrogate
];

#[test]
fn string_attributes_refuse_what_the_cloudevents_type_system_excludes() {
    for bad in FORBIDDEN_ESCAPES {
        for attribute in ["id", "source", "type", "subject", "dataschema", "myext"] {
            let mut event =
                serde_json::json!({"specversion":"1.0","id":"1","source":"/s","type":"t","dataschema":"https://e.x/s"});
            event[attribute] = serde_json::Value::String("PLACEHOLDER".into());
            let prefix = if attribute == "dataschema" { "https://e.x/" } else { "a" };
            let body = event.to_string().replace("PLACEHOLDER", &format!("{prefix}{bad}b"));
            let expected = vec![(format!("#/{attribute}"), FORBIDDEN.to_string())];
            assert_eq!(invalid(structured(&body)), expected, "{attribute} with {bad}: {body}");
        }
    }
}

#[test]
fn forbidden_characters_are_located_in_batches_and_ndjson() {
    let ok = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#;
    let bad = r#"{"specversion":"1.0","id":"\ud800","source":"/s","type":"t\u0000","ext":"x\ufffe"}"#;
    let batch = format!("[{ok},{bad}]");
    for ct in ["application/cloudevents-batch+json", "application/json"] {
        assert_eq!(pointers(parse(ct, &batch)), vec!["#/1/id", "#/1/type", "#/1/ext"], "{ct}");
    }
    match parse("application/x-ndjson", &format!("{ok}\n{bad}\n")) {
        Err(ParseError::Invalid { errors, .. }) => {
            let at: Vec<_> = errors.iter().map(|e| (e.pointer.as_deref().unwrap_or(""), e.line)).collect();
            assert_eq!(at, vec![("#/id", Some(2)), ("#/type", Some(2)), ("#/ext", Some(2))]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_the_string_type_allows_is_accepted() {
    // Paired surrogates, the characters just outside each forbidden range,
    // tab-free printable ASCII, and non-ASCII text.
    for good in [r"\ud800\udead", r"\u0020", r"\u007e", r"\u00a0", r"\ufdcf", r"\ufdf0", r"\ufffd", "café ☕ 😀", r"\/"]
    {
        let body = format!(r#"{{"specversion":"1.0","id":"a{good}","source":"/s","type":"t{good}","x":"{good}"}}"#);
        assert!(structured(&body).is_ok(), "{good}: {:?}", structured(&body));
    }
    // Strings in `data` are the producer's business, not attributes.
    let body = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"k":"\u0000\ud800"}}"#;
    assert!(structured(body).is_ok());
}

#[test]
fn number_and_literal_attributes_keep_their_json_types() {
    let body = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","a":-0,"b":2147483647,"c":-2147483648,"d":1e2,"e":false,"f":18446744073709551616}"#;
    assert_eq!(pointers(structured(body)), vec!["#/a", "#/d", "#/f"]);
    let body = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","b":2147483647,"c":-2147483648,"e":false}"#;
    let e = structured(body).unwrap().remove(0);
    assert_eq!(e.extensions().get("b"), Some(&ExtensionValue::Integer(i32::MAX)));
    assert_eq!(e.extensions().get("c"), Some(&ExtensionValue::Integer(i32::MIN)));
    assert_eq!(e.extensions().get("e"), Some(&ExtensionValue::Boolean(false)));
}

#[test]
fn binary_mode_checks_percent_decoded_headers() {
    for (value, bad) in [
        ("%00", true),
        ("a%0Ab", true),
        ("%7F", true),
        ("%C2%85", true),
        ("%EF%B7%90", true),
        ("%EF%BF%BF", true),
        ("%F4%8F%BF%BF", true),
        ("caf%C3%A9", false),
        ("%20x", false),
    ] {
        for attribute in ["id", "source", "type", "subject", "myext"] {
            // A source may not hold a space either (URI-reference).
            let expect_bad = bad || (attribute == "source" && value.contains("%20"));
            let name = format!("ce-{attribute}");
            let mut pairs = vec![
                ("Content-Type".to_string(), "application/json".to_string()),
                ("ce-specversion".into(), "1.0".into()),
                ("ce-id".into(), "1".into()),
                ("ce-source".into(), "/s".into()),
                ("ce-type".into(), "t".into()),
            ];
            pairs.retain(|(n, _)| *n != name);
            pairs.push((name.clone(), value.to_string()));
            let r = parse_body(&Headers::from_pairs(&pairs), &Bytes::new(), &ParseLimits::default());
            if !expect_bad {
                assert!(r.is_ok(), "{name}: {value}: {r:?}");
            } else if bad {
                assert_eq!(invalid(r), vec![(name.clone(), FORBIDDEN.to_string())], "{name}: {value}");
            } else {
                assert_eq!(pointers(r), vec![name.clone()], "{name}: {value}");
            }
        }
    }
}

#[test]
fn parse_error_is_a_std_error_naming_no_server_flag() {
    fn as_error(e: &ParseError) -> &dyn std::error::Error {
        e
    }
    let limits = ParseLimits { max_event_bytes: 10, max_batch: 10, ..ParseLimits::default() };
    let big = parse_body(&headers(&[("Content-Type", "application/json")]), &Bytes::from(VALID), &limits).unwrap_err();
    assert_eq!(as_error(&big).to_string(), "event is 286 bytes; the limit is 10");
    let h = headers(&[("ce-specversion", "1.0"), ("ce-id", "b"), ("ce-source", "/s"), ("ce-type", "t")]);
    let big = parse_body(&h, &Bytes::from(VALID), &limits).unwrap_err();
    assert_eq!(big.to_string(), "event data is 286 bytes; the limit is 10");
    let r = structured(r#"{"specversion":"1.0","id":"","source":"/s","type":"t"}"#).unwrap_err();
    assert_eq!(r.to_string(), "1 invalid attribute(s); nothing of this request was stored");
    assert_eq!(r.to_string(), r.to_problem().detail);
}

/// A batch whose items fail `per_item` attributes each (bad extension names).
fn bad_batch(items: usize, per_item: usize) -> String {
    let item = |i: usize| {
        let bad: String = (0..per_item).map(|n| format!(r#","X{n}":1"#)).collect();
        format!(r#"{{"specversion":"1.0","id":"{i}","source":"/s","type":"t"{bad}}}"#)
    };
    format!("[{}]", (0..items).map(item).collect::<Vec<_>>().join(","))
}

fn problem_of(result: Result<Events, ParseError>) -> inlet_shared::problem::Problem {
    match result {
        Err(e) => e.to_problem(),
        Ok(events) => panic!("expected an error, got {} events", events.len()),
    }
}

#[test]
fn envelope_errors_at_the_cap_are_all_listed() {
    // 1,000 errors: 250 items of 4.
    assert_eq!(MAX_LISTED_ERRORS, 1000);
    let problem = problem_of(parse("application/cloudevents-batch+json", &bad_batch(250, 4)));
    assert_eq!(problem.status, 422);
    assert_eq!(problem.errors.len(), 1000);
    assert_eq!(problem.errors[999].pointer.as_deref(), Some("#/249/X3"));
    assert_eq!(problem.detail, "1000 invalid attribute(s); nothing of this request was stored");
}

const MORE: &str = "more error(s) not listed: the first 1000 are, and the first of every invalid event";

#[test]
fn envelope_errors_past_the_cap_end_in_an_entry_counting_the_rest() {
    // 1,001 errors: the last item has one more, past the cap and not its first.
    let mut body = bad_batch(250, 4);
    body.insert_str(body.len() - 2, r#","Y":1"#);
    let problem = problem_of(parse("application/json", &body));
    assert_eq!(problem.errors.len(), 1001);
    assert_eq!(problem.errors[999].pointer.as_deref(), Some("#/249/X3"));
    let more = &problem.errors[1000];
    assert_eq!((more.pointer.as_ref(), more.header.as_ref(), more.line), (None, None, None));
    assert_eq!(more.detail, format!("1 {MORE}"));
    assert_eq!(problem.detail, "1001 invalid attribute(s); nothing of this request was stored");
}

#[test]
fn envelope_errors_are_capped_in_every_mode() {
    // NDJSON: 300 lines of 5 bad members: lines 1-200 whole, then the first
    // error of each of lines 201-300, and 400 counted.
    let line: String = (0..5).map(|n| format!(r#","X{n}":1"#)).collect();
    let line = format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t"{line}}}"#);
    let problem = problem_of(parse("application/x-ndjson", &vec![line; 300].join("\n")));
    assert_eq!(problem.errors.len(), 1101);
    assert_eq!((problem.errors[999].pointer.as_deref(), problem.errors[999].line), (Some("#/X4"), Some(200)));
    assert_eq!((problem.errors[1000].pointer.as_deref(), problem.errors[1000].line), (Some("#/X0"), Some(201)));
    assert_eq!((problem.errors[1099].pointer.as_deref(), problem.errors[1099].line), (Some("#/X0"), Some(300)));
    assert_eq!(problem.errors[1100].detail, format!("400 {MORE}"));
    // Binary mode (one event): 1,050 headers that are no extension names.
    let names: Vec<String> = (0..1050).map(|n| format!("ce-x_{n}")).collect();
    let mut pairs: Vec<(&str, &str)> =
        vec![("Content-Type", "application/json"), ("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s")];
    pairs.extend(names.iter().map(|n| (n.as_str(), "v")));
    pairs.push(("ce-type", "t"));
    let result = parse_body(&Headers::from_pairs(&pairs), &Bytes::from_static(b"{}"), &ParseLimits::default());
    let problem = problem_of(result);
    assert_eq!(problem.errors.len(), 1001);
    assert_eq!(problem.errors[999].header.as_deref(), Some("ce-x_999"));
    assert_eq!(problem.errors[1000].detail, format!("50 {MORE}"));
    // Items that are no objects: one error each, every one listed.
    let body = format!("[{}]", vec!["1"; 1000].join(","));
    let problem = problem_of(parse("application/cloudevents-batch+json", &body));
    assert_eq!(problem.errors.len(), 1000);
    assert_eq!(problem.errors[999].pointer.as_deref(), Some("#/999"));
}
