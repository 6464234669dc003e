//! Issue 18: JSON Schemas for events' `data` (`--schemas DIR`), against the
//! real server and client: pointers into every binding mode, modes, unknown
//! types, `dataschema`, reloads, `GET /schemas`, and the client's offline
//! `validate` giving the server's errors.

use std::path::Path;
use std::time::{Duration, Instant};

use inlet_shared::http::ClientRequest;
use inlet_tests::{client, json, refused_start, stored_ids, Server, PATIENCE};

/// An order: 10 properties, 2 of them nested objects, items by `$ref`,
/// formats asserted.
const ORDER: &str = r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "https://schemas.example.com/order.json",
  "type": "object",
  "required": ["id", "items", "customer"],
  "additionalProperties": false,
  "properties": {
    "id": {"type": "string", "minLength": 1},
    "placed": {"type": "string", "format": "date-time"},
    "currency": {"enum": ["EUR", "USD"]},
    "total": {"type": "number", "minimum": 0},
    "paid": {"type": "boolean"},
    "note": {"type": "string", "maxLength": 100},
    "tags": {"type": "array", "items": {"type": "string"}},
    "channel": {"type": "string"},
    "customer": {
      "type": "object",
      "required": ["email"],
      "properties": {"email": {"type": "string", "format": "email"}, "name": {"type": "string"}}
    },
    "items": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/item"}}
  },
  "$defs": {
    "item": {
      "type": "object",
      "required": ["sku", "qty"],
      "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}
    }
  }
}"##;

/// A draft-07 schema.
const SIGNUP: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "$id": "https://schemas.example.com/signup.json",
  "type": "object",
  "required": ["user"],
  "properties": {"user": {"type": "string", "pattern": "^[a-z]+$"}}
}"#;

const GOOD_ORDER: &str =
    r#"{"id":"o1","placed":"2026-01-02T03:04:05Z","customer":{"email":"a@example.com"},"items":[{"sku":"x","qty":2}]}"#;

fn schema_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn standard_dir() -> tempfile::TempDir {
    let index = "[types.\"com.example.signup\"]\nmode = \"enforce\"\n[types.\"com.example.click\"]\nmode = \"warn\"\n\
                 [types.\"com.example.debug\"]\nmode = \"off\"\n";
    let strict = r#"{"type": "object", "required": ["x"]}"#;
    schema_dir(&[
        ("com.example.order.json", ORDER),
        ("com.example.signup.json", SIGNUP),
        ("com.example.click.json", strict),
        ("com.example.debug.json", strict),
        ("index.toml", index),
    ])
}

fn start(dir: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--schemas", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn event(id: &str, ty: &str, data: &str) -> String {
    format!(r#"{{"specversion":"1.0","id":"{id}","source":"/shop","type":"{ty}","data":{data}}}"#)
}

/// `(pointer, line, keyword)` of each error, in order.
fn located(problem: &serde_json::Value) -> Vec<(String, Option<u64>, String)> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors: {problem}"))
        .iter()
        .map(|e| {
            (
                e["pointer"].as_str().or(e["header"].as_str()).unwrap_or("").to_string(),
                e["line"].as_u64(),
                e["keyword"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn wait_for_log(s: &Server, text: &str, count: usize) {
    let deadline = Instant::now() + PATIENCE;
    while s.stderr().matches(text).count() < count {
        assert!(Instant::now() < deadline, "no {text:?} in the log:\n{}", s.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_single_structured_event_is_checked_with_exact_pointers_keywords_and_details() {
    let dir = standard_dir();
    let s = start(dir.path(), &[]);
    let ok = s.post("/events", "application/cloudevents+json", event("1", "com.example.order", GOOD_ORDER));
    assert_eq!(ok.status, 202);
    let bad = r#"{"id":"","extra":1,"customer":{"email":"not-an-address"},"items":[{"sku":"x","qty":0},{"qty":"2"}]}"#;
    let res = s.post("/events", "application/cloudevents+json", event("2", "com.example.order", bad));
    assert_eq!(res.status, 422);
    assert_eq!(res.headers.get_str("content-type"), Some("application/problem+json"));
    let problem = json(&res);
    assert_eq!(problem["type"], "urn:inlet:problem:schema-violation");
    assert_eq!(
        sorted(located(&problem)),
        [
            ("#/data".to_string(), None, "additionalProperties".to_string()),
            ("#/data/customer/email".into(), None, "format".into()),
            ("#/data/id".into(), None, "minLength".into()),
            ("#/data/items/0/qty".into(), None, "minimum".into()),
            ("#/data/items/1".into(), None, "required".into()),
            ("#/data/items/1/qty".into(), None, "type".into()),
        ]
    );
    let detail = |pointer: &str| {
        problem["errors"].as_array().unwrap().iter().find(|e| e["pointer"] == pointer).unwrap()["detail"].clone()
    };
    assert_eq!(detail("#/data/items/1/qty"), r#""2" is not of type "integer""#);
    assert_eq!(detail("#/data/customer/email"), r#""not-an-address" is not a "email""#);
    assert_eq!(s.stats()["accepted"], 1, "the refused event was not stored");
    assert_eq!(s.stats()["rejected"]["schema-violation"], 1);
    assert_eq!(s.stats()["schemas"]["com.example.order"], serde_json::json!({"warned": 0, "refused": 1}));
}

#[test]
fn a_batch_is_all_or_nothing_with_pointers_by_index() {
    let dir = standard_dir();
    let s = start(dir.path(), &[]);
    let bad_qty = GOOD_ORDER.replace("\"qty\":2", "\"qty\":-1");
    let batch = format!(
        "[{},{},{},{}]",
        event("a", "com.example.order", GOOD_ORDER),
        event("b", "com.example.other", "{}"),
        event("c", "com.example.signup", r#"{"user":"Bob"}"#),
        event("d", "com.example.order", &bad_qty),
    );
    for content_type in ["application/cloudevents-batch+json", "application/json"] {
        let res = s.post("/events", content_type, batch.clone());
        assert_eq!(res.status, 422, "{content_type}");
        assert_eq!(
            located(&json(&res)),
            [
                ("#/2/data/user".to_string(), None, "pattern".to_string()),
                ("#/3/data/items/0/qty".into(), None, "minimum".into()),
            ]
        );
    }
    assert!(stored_ids(&s).is_empty(), "nothing of a refused batch is stored");
    let fixed = batch.replace("Bob", "bob").replace("\"qty\":-1", "\"qty\":1");
    assert_eq!(s.post("/events", "application/cloudevents-batch+json", fixed).status, 202);
    assert_eq!(stored_ids(&s).len(), 4);
}

#[test]
fn ndjson_errors_carry_the_line_and_the_pointer_inside_the_event() {
    let dir = standard_dir();
    let s = start(dir.path(), &[]);
    let body = format!(
        "{}\n\n{}\r\n{}\n",
        event("a", "com.example.order", GOOD_ORDER),
        event("b", "com.example.signup", r#"{"user":7}"#),
        event("c", "com.example.order", r#"{"id":"x","customer":{},"items":[]}"#),
    );
    let res = s.post("/events", "application/x-ndjson", body);
    assert_eq!(res.status, 422);
    assert_eq!(
        located(&json(&res)),
        [
            ("#/data/user".to_string(), Some(3), "type".to_string()),
            ("#/data/customer".into(), Some(4), "required".into()),
            ("#/data/items".into(), Some(4), "minItems".into()),
        ]
    );
}

fn binary_request(ty: &str, content_type: &'static str, body: &str) -> ClientRequest {
    ClientRequest::post("/events", content_type, body.to_string())
        .header("ce-specversion", "1.0")
        .header("ce-id", "b1")
        .header("ce-source", "/shop")
        .header("ce-type", ty.to_string())
}

#[test]
fn binary_mode_points_into_the_body_and_refuses_data_that_is_not_json() {
    let dir = standard_dir();
    let s = start(dir.path(), &[]);
    let res = s.request(binary_request("com.example.order", "application/json", r#"{"id":"x","items":[{"sku":1}]}"#));
    assert_eq!(res.status, 422);
    assert_eq!(
        sorted(located(&json(&res))),
        [
            ("#".to_string(), None, "required".to_string()),
            ("#/items/0".into(), None, "required".into()),
            ("#/items/0/sku".into(), None, "type".into()),
        ]
    );
    let res = s.request(binary_request("com.example.order", "text/plain", "hello"));
    assert_eq!(res.status, 422);
    let problem = json(&res);
    assert_eq!(located(&problem), [("content-type".to_string(), None, String::new())]);
    assert_eq!(
        problem["errors"][0]["detail"],
        "type \"com.example.order\" has a JSON schema; its data must be JSON, not \"text/plain\""
    );
    let res = s.request(
        binary_request("com.example.order", "application/json", GOOD_ORDER)
            .header("ce-dataschema", "https://elsewhere.example.com/order.json"),
    );
    assert_eq!(located(&json(&res)), [("ce-dataschema".to_string(), None, String::new())]);
    assert_eq!(s.request(binary_request("com.example.order", "application/json", GOOD_ORDER)).status, 202);
}

#[test]
fn dataschema_must_be_the_registered_uri_of_the_events_type() {
    let dir = standard_dir();
    let s = start(dir.path(), &[]);
    let with = |uri: &str| {
        format!(
            r#"{{"specversion":"1.0","id":"{uri}","source":"/shop","type":"com.example.order","dataschema":"{uri}","data":{GOOD_ORDER}}}"#
        )
    };
    let post = |uri: &str| s.post("/events", "application/cloudevents+json", with(uri));
    assert_eq!(post("https://schemas.example.com/order.json").status, 202);
    let res = post("https://evil.example.com/order.json");
    assert_eq!(res.status, 422);
    let problem = json(&res);
    assert_eq!(located(&problem), [("#/dataschema".to_string(), None, String::new())]);
    assert_eq!(problem["errors"][0]["detail"], "\"https://evil.example.com/order.json\" is not a registered schema");
    let res = post("https://schemas.example.com/signup.json");
    assert_eq!(res.status, 422);
    assert_eq!(
        json(&res)["errors"][0]["detail"],
        "\"https://schemas.example.com/signup.json\" is the schema of type \"com.example.signup\", not of this \
         event's type \"com.example.order\""
    );
}

#[test]
fn warn_accepts_counts_and_logs_once_per_interval_and_off_does_not_check() {
    let dir = standard_dir();
    let s = start(dir.path(), &[]);
    for id in ["w1", "w2", "w3"] {
        let res = s.post("/events", "application/cloudevents+json", event(id, "com.example.click", "{}"));
        assert_eq!(res.status, 202);
    }
    assert_eq!(s.post("/events", "application/cloudevents+json", event("o", "com.example.debug", "[]")).status, 202);
    let stats = s.stats();
    assert_eq!(stats["accepted"], 4);
    assert_eq!(stats["schemas"]["com.example.click"], serde_json::json!({"warned": 3, "refused": 0}));
    assert!(stats["schemas"].get("com.example.debug").is_none(), "{stats}");
    let metrics = String::from_utf8(s.get("/metrics").body.to_vec()).unwrap();
    assert!(metrics.contains(r#"inlet_schema_events_total{type="com.example.click",outcome="warned"} 3"#), "{metrics}");
    wait_for_log(&s, "mode warn", 1);
    assert_eq!(s.stderr().matches("mode warn").count(), 1, "logged once per interval:\n{}", s.stderr());
    assert!(!s.stderr().contains("\"x\""), "the data is never logged");
}

#[test]
fn unknown_types_are_allowed_by_default_and_refused_with_reject() {
    let dir = standard_dir();
    let allow = start(dir.path(), &[]);
    assert_eq!(allow.post("/events", "application/cloudevents+json", event("1", "com.example.new", "{}")).status, 202);
    let reject = start(dir.path(), &["--unknown-types", "reject"]);
    let res = reject.post("/events", "application/cloudevents+json", event("1", "com.example.new", "{}"));
    assert_eq!(res.status, 422);
    let problem = json(&res);
    assert_eq!(located(&problem), [("#/type".to_string(), None, String::new())]);
    assert_eq!(problem["errors"][0]["detail"], "no schema is registered for type \"com.example.new\"");
    assert_eq!(reject.stats()["schemas"]["(no schema)"]["refused"], 1);
    let known = reject.post("/events", "application/cloudevents+json", event("2", "com.example.order", GOOD_ORDER));
    assert_eq!(known.status, 202);
}

#[test]
fn too_many_violations_are_capped_with_a_last_entry() {
    let dir = schema_dir(&[("t.json", r#"{"type":"array","items":{"type":"integer"}}"#)]);
    let s = start(dir.path(), &[]);
    let data = format!("[{}]", vec!["\"x\""; 130].join(","));
    let res = s.post("/events", "application/cloudevents+json", event("1", "t", &data));
    assert_eq!(res.status, 422);
    let problem = json(&res);
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 101);
    assert_eq!(errors[99]["pointer"], "#/data/99");
    assert_eq!(errors[100], serde_json::json!({"detail": "30 more error(s) not listed; at most 100 are"}));
}

#[test]
fn get_schemas_lists_types_modes_and_uris() {
    let dir = standard_dir();
    let s = start(dir.path(), &["--unknown-types", "reject"]);
    let res = s.get("/schemas");
    assert_eq!(res.status, 200);
    let body = json(&res);
    assert_eq!(body["enabled"], true);
    assert_eq!(body["unknown_types"], "reject");
    let listed: Vec<(String, String, String, String)> = body["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or("-").to_string();
            (text("type"), text("mode"), text("id"), text("draft"))
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("com.example.click".to_string(), "warn".into(), "-".into(), "2020-12".into()),
            ("com.example.debug".into(), "off".into(), "-".into(), "2020-12".into()),
            (
                "com.example.order".into(),
                "enforce".into(),
                "https://schemas.example.com/order.json".into(),
                "2020-12".into()
            ),
            (
                "com.example.signup".into(),
                "enforce".into(),
                "https://schemas.example.com/signup.json".into(),
                "7".into()
            ),
        ]
    );
    assert_eq!(body["schemas"][2]["file"], "com.example.order.json");
    let plain = Server::start(&[]);
    assert_eq!(
        json(&plain.get("/schemas")),
        serde_json::json!({"enabled": false, "unknown_types": "allow", "schemas": []})
    );
}

#[test]
fn a_schema_that_does_not_compile_stops_the_start_with_its_file_and_reason() {
    let dir = schema_dir(&[("good.json", "{}"), ("broken.json", r#"{"type": "integer", "minimum": "x"}"#)]);
    let stderr = refused_start(&["--schemas", dir.path().to_str().unwrap()]);
    assert!(stderr.contains("broken.json") && stderr.contains("does not compile"), "{stderr}");
    let remote = schema_dir(&[("t.json", r#"{"$ref": "https://schemas.example.com/remote.json"}"#)]);
    let stderr = refused_start(&["--schemas", remote.path().to_str().unwrap()]);
    assert!(stderr.contains("t.json") && stderr.contains("https://schemas.example.com/remote.json"), "{stderr}");
    let stderr = refused_start(&["--unknown-types", "reject"]);
    assert!(stderr.contains("--unknown-types reject needs --schemas"), "{stderr}");
}

#[test]
fn sighup_recompiles_and_a_broken_schema_keeps_the_set_in_use() {
    let dir = schema_dir(&[("t.json", r#"{"type":"object","required":["a"]}"#)]);
    let s = start(dir.path(), &[]);
    let post = |data: &str| s.post("/events", "application/cloudevents+json", event("x", "t", data)).status;
    assert_eq!(post(r#"{"b":1}"#), 422);

    std::fs::write(dir.path().join("t.json"), r#"{"type":"object","required":["a"],"#).unwrap();
    s.signal("HUP");
    wait_for_log(&s, "keeping the schemas in use", 1);
    assert!(s.stderr().contains("t.json"), "the log names the file:\n{}", s.stderr());
    assert_eq!(post(r#"{"b":1}"#), 422, "the old schema still applies");

    std::fs::write(dir.path().join("t.json"), r#"{"type":"object","required":["b"]}"#).unwrap();
    s.signal("HUP");
    wait_for_log(&s, "schemas reloaded", 1);
    assert_eq!(post(r#"{"b":1}"#), 202, "the new schema applies");
}

#[test]
fn the_clients_offline_validate_gives_the_servers_errors_for_the_same_file() {
    let dir = standard_dir();
    let s = start(dir.path(), &[]);
    let file = tempfile::NamedTempFile::new().unwrap();
    let body = format!(
        "{}\n{}\n\n{}\n",
        event("a", "com.example.order", r#"{"id":"x","customer":{"email":"@"},"items":[{"sku":"s","qty":0}]}"#),
        event("b", "com.example.signup", r#"{"user":"ok"}"#),
        event("c", "com.example.signup", r#"{}"#),
    );
    std::fs::write(file.path(), &body).unwrap();
    let server = json(&s.post("/events", "application/x-ndjson", body.clone()));
    let path = file.path().to_str().unwrap();
    let schemas = dir.path().to_str().unwrap();
    let (code, stdout, stderr) = client(s.addr, &["validate", path, "--schemas", schemas], None);
    assert_eq!(code, 1, "{stderr}");
    let offline: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(offline, server, "the same problem, errors and all");
    assert_eq!(located(&offline).len(), 3);

    // From standard input too; a valid file exits 0.
    let good = format!("{}\n", event("g", "com.example.order", GOOD_ORDER));
    let (code, stdout, _) = client(s.addr, &["validate", "-", "--schemas", schemas], Some(good.as_bytes()));
    assert_eq!((code, stdout.as_str()), (0, "ok: 1 event(s) valid\n"));

    // `post --schemas` refuses before sending: nothing reaches the server.
    let before = s.stats()["rejected"].clone();
    let (code, stdout, stderr) = client(s.addr, &["post", path, "--schemas", schemas], None);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(stdout.trim()).unwrap(), server);
    assert!(stderr.contains("nothing was sent"), "{stderr}");
    assert_eq!(s.stats()["rejected"], before, "no request was sent");
    assert_eq!(s.stats()["accepted"], 0);
    let (code, _, stderr) = client(s.addr, &["post", "-", "--schemas", schemas], Some(good.as_bytes()));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(s.stats()["accepted"], 1);

    let (code, _, stderr) = client(s.addr, &["validate", path, "--schemas", "/nonexistent/dir"], None);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/dir"), "{stderr}");
}
