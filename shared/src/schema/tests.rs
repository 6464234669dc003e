use std::path::Path;

use super::*;
use crate::event::{parse_ndjson, parse_single, ParseLimits};

/// A directory holding these files.
struct Dir(PathBuf);

impl Dir {
    fn new(files: &[(&str, &str)]) -> Dir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("inlet-schema-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        Dir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const ORDER: &str = r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "https://schemas.example.com/order.json",
  "type": "object",
  "required": ["id", "items"],
  "properties": {
    "id": {"type": "string"},
    "email": {"type": "string", "format": "email"},
    "items": {"type": "array", "items": {"$ref": "#/$defs/item"}}
  },
  "$defs": {"item": {"type": "object", "required": ["qty"], "properties": {"qty": {"type": "integer", "minimum": 1}}}}
}"##;

thread_local! {
    /// How many times this thread's checks scanned `data` again because no
    /// tape of the parser's stood for it.
    pub(super) static RESCANS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn set(files: &[(&str, &str)]) -> SchemaSet {
    let dir = Dir::new(files);
    SchemaSet::load(dir.path()).unwrap()
}

fn event(json: &str) -> Event {
    parse_single(json.as_bytes(), &ParseLimits::default()).unwrap().pop().unwrap()
}

fn one(set: &SchemaSet, json: &str) -> Verdict {
    set.check(&[event(json)], &Layout::of(crate::event::BodyKind::Structured, json.as_bytes()))
}

fn pointers(errors: &[FieldError]) -> Vec<(Option<&str>, Option<&str>)> {
    errors.iter().map(|e| (e.pointer.as_deref(), e.keyword.as_deref())).collect()
}

#[test]
fn valid_data_passes_and_every_violation_is_listed_with_its_pointer_and_keyword() {
    let set = set(&[("com.example.order.json", ORDER)]);
    let ok = r#"{"specversion":"1.0","id":"1","source":"/s","type":"com.example.order","data":{"id":"a","items":[{"qty":2}]}}"#;
    assert_eq!(one(&set, ok), Verdict::default());
    let bad = r#"{"specversion":"1.0","id":"1","source":"/s","type":"com.example.order","data":{"email":"nope","items":[{"qty":2},{"qty":0},{}]}}"#;
    let verdict = one(&set, bad);
    let errors = verdict.errors();
    let mut found = pointers(&errors);
    found.sort();
    assert_eq!(
        found,
        [
            (Some("#/data"), Some("required")),
            (Some("#/data/email"), Some("format")),
            (Some("#/data/items/1/qty"), Some("minimum")),
            (Some("#/data/items/2"), Some("required")),
        ]
    );
    assert_eq!(verdict.refused[0].index, 0);
    assert_eq!(verdict.to_problem().status, 422);
    assert_eq!(verdict.to_problem().reason(), "schema-violation");
}

#[test]
fn ndjson_errors_carry_their_line() {
    let set = set(&[("com.example.order.json", ORDER)]);
    let body = "\n{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"com.example.order\",\"data\":{\"id\":\"a\",\"items\":[]}}\n\n{\"specversion\":\"1.0\",\"id\":\"2\",\"source\":\"/s\",\"type\":\"com.example.order\",\"data\":{\"id\":7,\"items\":[]}}\n";
    let events = parse_ndjson(body.as_bytes(), &ParseLimits::default()).unwrap();
    let verdict = set.check(&events, &Layout::ndjson(body.as_bytes()));
    let errors = verdict.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].pointer.as_deref(), errors[0].line), (Some("#/data/id"), Some(4)));
    assert_eq!(errors[0].keyword.as_deref(), Some("type"));
    assert_eq!(verdict.refused[0].index, 1);
}

#[test]
fn warn_accepts_and_counts_off_skips() {
    let index = "[types.\"com.example.order\"]\nmode = \"warn\"\n[types.other]\nmode = \"off\"\n";
    let set =
        set(&[("com.example.order.json", ORDER), ("other.json", r#"{"required": ["x"]}"#), ("index.toml", index)]);
    assert_eq!(set.get("com.example.order").unwrap().mode, Mode::Warn);
    let bad = r#"{"specversion":"1.0","id":"1","source":"/s","type":"com.example.order","data":{}}"#;
    assert_eq!(one(&set, bad), Verdict { refused: vec![], warned: vec!["com.example.order".into()], cut: 0 });
    let off = r#"{"specversion":"1.0","id":"1","source":"/s","type":"other","data":{}}"#;
    assert_eq!(one(&set, off), Verdict::default());
}

#[test]
fn unknown_types_are_allowed_or_refused_at_their_type() {
    let allow = set(&[("com.example.order.json", ORDER)]);
    let json = r#"{"specversion":"1.0","id":"1","source":"/s","type":"com.example.other","data":{}}"#;
    assert_eq!(one(&allow, json), Verdict::default());
    let reject = set(&[("com.example.order.json", ORDER)]).with_unknown_types(UnknownTypes::Reject);
    let errors = one(&reject, json).errors();
    assert_eq!(pointers(&errors), [(Some("#/type"), None)]);
    assert_eq!(errors[0].detail, "no schema is registered for type \"com.example.other\"");
}

#[test]
fn dataschema_must_name_the_registered_schema_of_the_type() {
    let other = r#"{"$id": "https://schemas.example.com/other.json"}"#;
    let set = set(&[("com.example.order.json", ORDER), ("other.json", other)]);
    let with = |uri: &str| {
        format!(
            r#"{{"specversion":"1.0","id":"1","source":"/s","type":"com.example.order","dataschema":"{uri}","data":{{"id":"a","items":[]}}}}"#
        )
    };
    assert_eq!(one(&set, &with("https://schemas.example.com/order.json")), Verdict::default());
    assert_eq!(one(&set, &with("https://schemas.example.com/order.json#")), Verdict::default());
    let unknown = one(&set, &with("https://evil.example.com/order.json")).errors();
    assert_eq!(pointers(&unknown), [(Some("#/dataschema"), None)]);
    assert_eq!(unknown[0].detail, "\"https://evil.example.com/order.json\" is not a registered schema");
    let wrong = one(&set, &with("https://schemas.example.com/other.json")).errors();
    assert_eq!(pointers(&wrong), [(Some("#/dataschema"), None)]);
}

#[test]
fn data_that_is_not_json_cannot_pass_a_schema() {
    let set = set(&[("t.json", r#"{"type": "string"}"#)]);
    let text = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","data":"hi"}"#;
    assert_eq!(pointers(&one(&set, text).errors()), [(Some("#/datacontenttype"), None)]);
    let b64 = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"aGk="}"#;
    assert_eq!(pointers(&one(&set, b64).errors()), [(Some("#/data_base64"), None)]);
    // No data at all is validated as `null`.
    let none = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#;
    assert_eq!(pointers(&one(&set, none).errors()), [(Some("#/data"), Some("type"))]);
    let json =
        r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/json","data":"hi"}"#;
    assert_eq!(one(&set, json), Verdict::default());
}

#[test]
fn errors_are_capped_with_a_last_entry_saying_how_many_were_cut() {
    let set = set(&[("t.json", r#"{"type": "array", "items": {"type": "integer"}}"#)]);
    let items = vec!["\"x\""; MAX_ERRORS + 5].join(",");
    let json = format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","data":[{items}]}}"#);
    let errors = one(&set, &json).errors();
    assert_eq!(errors.len(), MAX_ERRORS + 1);
    assert_eq!(errors[MAX_ERRORS - 1].pointer.as_deref(), Some("#/data/99"));
    assert_eq!(errors[MAX_ERRORS].pointer, None);
    assert_eq!(errors[MAX_ERRORS].detail, "5 more error(s) not listed; at most 100 are");
    // At the cap exactly: no extra entry.
    let items = vec!["\"x\""; MAX_ERRORS].join(",");
    let json = format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","data":[{items}]}}"#);
    assert_eq!(one(&set, &json).errors().len(), MAX_ERRORS);
}

/// The cap bounds what is built while validating, not only what is sent:
/// 50,000 violations keep 100 errors in memory and count the rest; a later
/// failing event still keeps its first error, so every refused event says why.
#[test]
fn errors_past_the_cap_are_counted_not_built() {
    let set = set(&[("t.json", r#"{"type": "array", "items": {"type": "integer"}}"#)]);
    let items = vec!["\"x\""; 50_000].join(",");
    let first = format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","data":[{items}]}}"#);
    let second = r#"{"specversion":"1.0","id":"2","source":"/s","type":"t","data":["y"]}"#;
    let body = format!("[{first},{second}]");
    let events = crate::event::parse_array(body.as_bytes(), &ParseLimits::default()).unwrap();
    let verdict = set.check(&events, &Layout::of(crate::event::BodyKind::Batch, body.as_bytes()));
    let kept: Vec<usize> = verdict.refused.iter().map(|r| r.errors.len()).collect();
    assert_eq!(kept, [MAX_ERRORS, 1]);
    assert_eq!(verdict.cut, 50_000 - MAX_ERRORS);
    assert_eq!(verdict.total_errors(), 50_001);
    let errors = verdict.errors();
    assert_eq!(errors.len(), MAX_ERRORS + 1);
    assert_eq!(errors[MAX_ERRORS].detail, "49901 more error(s) not listed; at most 100 are");
}

#[test]
fn a_long_detail_is_cut() {
    let set = set(&[("t.json", r#"{"type": "integer"}"#)]);
    let long = "y".repeat(1000);
    let json = format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"{long}"}}"#);
    let detail = &one(&set, &json).errors()[0].detail;
    assert_eq!(detail.chars().count(), MAX_DETAIL_CHARS + 1);
    assert!(detail.ends_with('…'));
}

#[test]
fn draft_07_is_detected() {
    let set = set(&[("t.json", r#"{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}"#)]);
    assert_eq!(set.get("t").unwrap().draft, "7");
    let set2 = self::set(&[("t.json", r#"{"type": "object"}"#)]);
    assert_eq!(set2.get("t").unwrap().draft, "2020-12");
}

#[test]
fn file_names_are_percent_decoded_types() {
    let set = set(&[("a%2Fb.json", "true"), ("README.md", "not a schema"), (".hidden.json", "{")]);
    assert_eq!(set.schemas().map(|s| s.ty.as_str()).collect::<Vec<_>>(), ["a/b"]);
}

fn load_error(files: &[(&str, &str)]) -> LoadError {
    let dir = Dir::new(files);
    let e = SchemaSet::load(dir.path()).unwrap_err();
    LoadError { file: e.file.strip_prefix(dir.path()).unwrap().to_path_buf(), reason: e.reason }
}

#[test]
fn broken_directories_are_refused_with_the_file_and_the_reason() {
    let e = load_error(&[("t.json", "{")]);
    assert_eq!(e.file, Path::new("t.json"));
    assert!(e.reason.starts_with("is not valid JSON"), "{}", e.reason);
    let e = load_error(&[("t.json", r#"{"type": 12}"#)]);
    assert_eq!(e.file, Path::new("t.json"));
    assert!(e.reason.starts_with("does not compile"), "{}", e.reason);
    // A remote $ref is never fetched: the schema is refused.
    let e = load_error(&[("t.json", r#"{"$ref": "https://schemas.example.com/x.json"}"#)]);
    assert_eq!(e.file, Path::new("t.json"));
    assert!(e.reason.contains("https://schemas.example.com/x.json"), "{}", e.reason);
    let e = load_error(&[("t.json", r#"{"$ref": "file:///etc/passwd"}"#)]);
    assert!(e.reason.starts_with("does not compile"), "{}", e.reason);
    let e = load_error(&[("t.json", "{}"), ("index.toml", "[types.t]\nmode = \"loud\"\n")]);
    assert_eq!(e.file, Path::new("index.toml"));
    let e = load_error(&[("t.json", "{}"), ("index.toml", "[types.t]\nmode = \"warn\"\nextra = 1\n")]);
    assert!(e.reason.contains("extra"), "{}", e.reason);
    let e = load_error(&[("t.json", "{}"), ("index.toml", "[types.u]\nmode = \"warn\"\n")]);
    assert_eq!(e.file, Path::new("index.toml"));
    assert!(e.reason.starts_with("type \"u\" has no schema file in "), "{}", e.reason);
    let e = load_error(&[("a.json", r#"{"$id": "urn:x"}"#), ("b.json", r#"{"$id": "urn:x"}"#)]);
    assert_eq!(e.file, Path::new("b.json"));
    let e = load_error(&[("%FF.json", "{}")]);
    assert_eq!(e.reason, "the file name is not UTF-8 once percent-decoded");
    let e = load_error(&[("t.json", "[]")]);
    assert_eq!(e.reason, "a schema must be a JSON object (or a boolean)");
}

#[test]
fn data_with_a_key_twice_is_judged_by_its_last_value_as_serde_json_reads_it() {
    let set = set(&[("t.json", r#"{"properties": {"qty": {"type": "integer"}}}"#)]);
    let event = |data: &str| format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{data}}}"#);
    assert_eq!(one(&set, &event(r#"{"qty":"x","qty":1}"#)), Verdict::default());
    let errors = one(&set, &event(r#"{"qty":1,"qty":"x"}"#)).errors();
    assert_eq!(pointers(&errors), [(Some("#/data/qty"), Some("type"))]);
    // Two members that are one: too few.
    let two = self::set(&[("t.json", r#"{"minProperties": 2}"#)]);
    let errors = one(&two, &event(r#"{"a":1,"a":2}"#)).errors();
    assert_eq!(pointers(&errors), [(Some("#/data"), Some("minProperties"))]);
    assert_eq!(one(&two, &event(r#"{"a":1,"b":2}"#)), Verdict::default());
    // Escaped and unescaped data, valid and not, give the same verdicts.
    assert_eq!(one(&set, &event(r#"{"q\u0074y":2}"#)), Verdict::default());
    let errors = one(&set, &event(r#"{"q\u0074y":2.5}"#)).errors();
    assert_eq!(pointers(&errors), [(Some("#/data/qty"), Some("type"))]);
}

#[test]
fn a_lazy_layout_is_made_only_for_errors_and_once() {
    let set = set(&[("com.example.order.json", ORDER)]);
    let good = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"com.example.order\",\"data\":{\"id\":\"a\",\"items\":[]}}";
    let bad = "{\"specversion\":\"1.0\",\"id\":\"2\",\"source\":\"/s\",\"type\":\"com.example.order\",\"data\":{\"id\":7,\"items\":[{\"qty\":0}]}}";
    let body = format!("{good}\n{bad}\n{bad}\n");
    let events = parse_ndjson(body.as_bytes(), &ParseLimits::default()).unwrap();
    let made = std::cell::Cell::new(0);
    let lazy = |events: &[Event]| {
        set.check_lazy(events, || {
            made.set(made.get() + 1);
            Layout::ndjson(body.as_bytes())
        })
    };
    assert_eq!(lazy(&events[..1]), Verdict::default());
    assert_eq!(made.get(), 0);
    // Four errors over two events: the layout made once, and the verdict
    // the same as with the layout given.
    let verdict = lazy(&events);
    assert_eq!(made.get(), 1);
    assert_eq!(verdict.total_errors(), 4);
    assert_eq!(verdict, set.check(&events, &Layout::ndjson(body.as_bytes())));
    assert_eq!(verdict.errors()[2].line, Some(3));
}

/// With the tapes the parser filled, every verdict (refusals, pointers,
/// lines, keywords, warnings) is the one the check gives reading `data`
/// again: one event, a batch, `application/json` and NDJSON, valid data,
/// invalid data, data the tape cannot stand for, and no data.
#[test]
fn the_check_on_the_parsers_tapes_gives_the_same_verdicts() {
    let index = "[types.w]\nmode = \"warn\"\n";
    let set = set(&[("com.example.order.json", ORDER), ("w.json", r#"{"required": ["x"]}"#), ("index.toml", index)]);
    let event =
        |ty: &str, data: &str| format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"{ty}","data":{data}}}"#);
    let datas = [
        ("com.example.order", r#"{"id":"a","items":[{"qty":2}]}"#),
        ("com.example.order", r#"{"email":"nope","items":[{"qty":2},{"qty":0},{}]}"#),
        ("com.example.order", r#"{"id":"a","id":7,"items":[]}"#),
        ("com.example.order", r#"{"id":"a\u0062","items":[{"qty":1e400}]}"#),
        ("com.example.order", "null"),
        ("w", r#"{"y":1}"#),
        ("w", r#"{"x":1}"#),
        ("other", "[1]"),
    ];
    let kinds = [
        ("application/cloudevents+json", crate::event::BodyKind::Structured),
        ("application/cloudevents-batch+json", crate::event::BodyKind::Batch),
        ("application/json", crate::event::BodyKind::Json),
        ("application/x-ndjson", crate::event::BodyKind::Ndjson),
    ];
    let mut refused = 0;
    for (content_type, kind) in kinds {
        let mut bodies: Vec<String> = Vec::new();
        for (ty, data) in datas {
            let one = event(ty, data);
            bodies.push(match kind {
                crate::event::BodyKind::Batch | crate::event::BodyKind::Json => format!("[{one}]"),
                crate::event::BodyKind::Ndjson => format!("\n{one}\n"),
                _ => one,
            });
        }
        if kind != crate::event::BodyKind::Structured {
            let all: Vec<String> = datas.iter().map(|(ty, data)| event(ty, data)).collect();
            bodies.push(match kind {
                crate::event::BodyKind::Ndjson => all.join("\n\n"),
                _ => format!("[{}]", all.join(" ,\n ")),
            });
        }
        for body in bodies {
            let headers = crate::http::Headers::from_pairs(&[("Content-Type", content_type)]);
            let bytes = bytes::Bytes::from(body.clone());
            let limits = ParseLimits::default();
            let mut tapes = Tapes::new();
            let events = crate::event::parse_body_with(&headers, &bytes, &limits, Some(&mut tapes)).unwrap();
            assert_eq!(events, crate::event::parse_body(&headers, &bytes, &limits).unwrap());
            let layout = || Layout::of(kind, body.as_bytes());
            let taped = set.check_taped(&events, &tapes, layout);
            assert_eq!(taped, set.check(&events, &layout()), "{body}");
            refused += taped.refused.len();
        }
    }
    // Four orders are refused (invalid, a key twice whose last value is
    // invalid, a number past f64, null data): alone in each of the four
    // kinds, and again in the batch of all in the three that hold many.
    assert_eq!(refused, 4 * 4 + 3 * 4);
}

/// With the tapes of a schema set, the `data` of an event whose type no
/// schema checks (none, or mode `off`) is skipped when the type comes first,
/// as without `--schemas`; filled when the type comes after it (found too
/// late); and the verdicts are the same either way.
#[test]
fn tapes_for_a_set_skip_the_data_of_types_it_does_not_check() {
    let index = "[types.quiet]\nmode = \"off\"\n";
    let set = std::sync::Arc::new(set(&[
        ("com.example.order.json", ORDER),
        ("quiet.json", r#"{"required": ["x"]}"#),
        ("index.toml", index),
    ]));
    let first =
        |ty: &str, data: &str| format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"{ty}","data":{data}}}"#);
    let last =
        |ty: &str, data: &str| format!(r#"{{"specversion":"1.0","id":"2","source":"/s","data":{data},"type":"{ty}"}}"#);
    let events = [
        first("com.example.order", r#"{"id":"a","items":[{"qty":2}]}"#),
        first("quiet", r#"{"y":1}"#),
        first("other", r#"{"z":[1,2]}"#),
        last("other", r#"{"z":[3]}"#),
        first("com.example.order", r#"{"email":"nope","items":[]}"#),
    ];
    let body = format!("[{}]", events.join(","));
    let headers = crate::http::Headers::from_pairs(&[("Content-Type", "application/cloudevents-batch+json")]);
    let bytes = bytes::Bytes::from(body.clone());
    let limits = ParseLimits::default();
    let filter = set.data_filter();
    assert!(filter.may_check("com.example.order"));
    assert!(!filter.may_check("quiet") && !filter.may_check("other"), "these two fall on other bits than the order's");
    let mut picky = Tapes::for_filter(filter);
    let parsed = crate::event::parse_body_with(&headers, &bytes, &limits, Some(&mut picky)).unwrap();
    assert_eq!(picky.filled(), vec![true, false, false, true, true]);
    let mut all = Tapes::new();
    assert_eq!(crate::event::parse_body_with(&headers, &bytes, &limits, Some(&mut all)).unwrap(), parsed);
    assert_eq!(all.filled(), vec![true; 5]);
    let layout = || Layout::of(crate::event::BodyKind::Batch, body.as_bytes());
    RESCANS.with(|n| n.set(0));
    let verdict = set.check_taped(&parsed, &picky, layout);
    assert_eq!(RESCANS.with(|n| n.get()), 0, "both orders checked on the parser's tapes, not scanned again");
    assert_eq!(verdict, set.check(&parsed, &layout()));
    assert_eq!(RESCANS.with(|n| n.get()), 2, "without tapes, each order's data is scanned");
    assert_eq!(verdict, set.check_taped(&parsed, &all, layout));
    assert_eq!(verdict.refused.len(), 1, "the invalid order");
}

/// The type lookup's word-wise hash: every byte of a type counts, in every
/// place of a word and of the tail, and a tail of zero bytes is not the
/// shorter type (its length is hashed with it).
#[test]
fn the_type_hash_depends_on_every_byte_and_on_the_length() {
    fn hash(bytes: &[u8]) -> u64 {
        let mut hasher = Fnv::default();
        hasher.write(bytes);
        hasher.finish()
    }
    let base = b"com.example.order".to_vec();
    let mut hashes = vec![hash(&base)];
    for i in 0..base.len() {
        let mut changed = base.clone();
        changed[i] ^= 1;
        hashes.push(hash(&changed));
    }
    for len in 0..base.len() {
        hashes.push(hash(&base[..len]));
    }
    hashes.push(hash(b"com.example.order\0"));
    hashes.push(hash(b"\0"));
    let mut distinct = hashes.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), hashes.len());
    // And the maps find what they hold.
    let mut map: TypeMap<usize> = TypeMap::default();
    for (i, ty) in ["a", "a\0", "abcdefgh", "abcdefgh\0", "com.example.order", "com.example.orders"].iter().enumerate()
    {
        map.insert((*ty).to_string(), i);
    }
    assert_eq!(map.get("a\0"), Some(&1));
    assert_eq!(map.get("abcdefgh"), Some(&2));
    assert_eq!(map.get("com.example.orders"), Some(&5));
    assert_eq!(map.get("com.example.orde"), None);
}

/// The media-type check with `application/json` compared inline first
/// answers as `is_json_media_type` alone, on the exact value, its case and
/// parameter variants, other JSON types and types that are not JSON.
#[test]
fn the_inline_json_media_type_check_answers_as_the_full_one() {
    for ct in [
        "application/json",
        "Application/JSON",
        "application/json ",
        "application/json; charset=utf-8",
        "application/jsonx",
        "application/jso",
        "application/cloudevents+json",
        "text/json",
        "text/plain",
        "application/octet-stream",
        "",
        "application/json\0",
    ] {
        assert_eq!(is_json(ct), crate::event::is_json_media_type(ct), "{ct:?}");
    }
    assert!(is_json("application/json"));
    assert!(!is_json("text/plain"));
}
