//! The OpenAPI description (`docs/openapi.yaml`) against the real server:
//! served byte for byte at `GET /openapi.yaml` (and `HEAD`), every path it
//! describes exists, and what its `CloudEventsString` schema promises about
//! forbidden characters holds end to end in every binding mode.
//! (schemathesis checks the rest of the document from `scripts/test.sh`.)

use inlet_shared::http::ClientRequest;
use inlet_tests::{json, raw_exchange, Server};

const DOCUMENT: &[u8] = include_bytes!("../../docs/openapi.yaml");

/// The detail of a string attribute that breaks the CloudEvents type system.
const FORBIDDEN: &str = "must be a CloudEvents String: no control characters (U+0000-U+001F, U+007F-U+009F), \
                         noncharacters or unpaired surrogates";

#[test]
fn the_document_is_served_byte_for_byte() {
    let s = Server::start(&[]);
    let res = s.get("/openapi.yaml");
    assert_eq!(res.status, 200);
    assert_eq!(res.headers.get_str("content-type"), Some("application/yaml"));
    assert_eq!(res.headers.get_str("content-length"), Some(DOCUMENT.len().to_string().as_str()));
    assert!(res.body == DOCUMENT, "GET /openapi.yaml differs from docs/openapi.yaml");
}

#[test]
fn head_of_the_document_has_its_headers_and_no_body() {
    let s = Server::start(&[]);
    let out = raw_exchange(s.addr, b"HEAD /openapi.yaml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (head, body) = out.split_once("\r\n\r\n").expect("a complete head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: application/yaml\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", DOCUMENT.len())), "{head}");
    assert_eq!(body, "");
}

#[test]
fn other_methods_on_the_document_are_405_with_allow() {
    let s = Server::start(&[]);
    let res = s.post("/openapi.yaml", "text/plain", "x");
    assert_eq!(res.status, 405);
    assert_eq!(res.headers.get_str("allow"), Some("GET, HEAD"));
}

/// The paths the document describes (`  /name:` lines under `paths:`).
fn documented_paths() -> Vec<String> {
    let text = std::str::from_utf8(DOCUMENT).expect("UTF-8 document");
    let paths = text.split("\npaths:\n").nth(1).expect("a paths section");
    let paths = paths.split("\ncomponents:\n").next().unwrap_or_default();
    paths
        .lines()
        .filter_map(|l| l.strip_prefix("  /").and_then(|p| p.strip_suffix(':')).map(|p| format!("/{p}")))
        .collect()
}

#[test]
fn every_documented_path_exists_and_every_route_is_documented() {
    let paths = documented_paths();
    assert_eq!(
        paths,
        [
            "/events",
            "/events/stream",
            "/echo",
            "/health",
            "/readyz",
            "/stats",
            "/schemas",
            "/rejected",
            "/metrics",
            "/openapi.yaml",
            "/"
        ]
    );
    let s = Server::start(&[]);
    for path in &paths {
        if path == "/events/stream" {
            // Endless: its head is enough to show the route exists.
            let raw = inlet_tests::raw_exchange(
                s.addr,
                b"HEAD /events/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {raw}");
            continue;
        }
        let res = if path == "/echo" { s.post(path, "text/plain", "x") } else { s.get(path) };
        assert!(matches!(res.status, 200), "{path}: {}", res.status);
    }
}

/// Posts `body` as `content_type`, returns (status, problem).
fn post(s: &Server, content_type: &'static str, body: &str) -> (u16, serde_json::Value) {
    let res = s.post("/events", content_type, body.to_string());
    (res.status, json(&res))
}

#[test]
fn forbidden_characters_in_string_attributes_are_422_in_every_mode() {
    let s = Server::start(&[]);
    let (status, problem) =
        post(&s, "application/cloudevents+json", r#"{"specversion":"1.0","id":"a\u0000","source":"/s","type":"t"}"#);
    assert_eq!(status, 422);
    assert_eq!(problem["type"], "urn:inlet:problem:invalid-event");
    assert_eq!(problem["errors"], serde_json::json!([{"pointer": "#/id", "detail": FORBIDDEN}]));

    let batch = r#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},
                    {"specversion":"1.0","id":"2","source":"/s","type":"t","subject":"\ud800"}]"#;
    let (status, problem) = post(&s, "application/cloudevents-batch+json", batch);
    assert_eq!(status, 422);
    assert_eq!(problem["errors"], serde_json::json!([{"pointer": "#/1/subject", "detail": FORBIDDEN}]));

    let ndjson = "{\"specversion\":\"1.0\",\"id\":\"3\",\"source\":\"/s\",\"type\":\"t\"}\n\
                  {\"specversion\":\"1.0\",\"id\":\"4\",\"source\":\"/s\",\"type\":\"t\",\"ext\":\"\\uffff\"}\n";
    let (status, problem) = post(&s, "application/x-ndjson", ndjson);
    assert_eq!(status, 422);
    assert_eq!(problem["errors"], serde_json::json!([{"pointer": "#/ext", "line": 2, "detail": FORBIDDEN}]));

    for (header, value) in [("ce-id", "%00"), ("ce-type", "a%0Ab"), ("ce-subject", "%C2%85"), ("ce-x", "%EF%BF%BE")] {
        let mut req = ClientRequest::post("/events", "application/json", "{}");
        for (name, default) in [("ce-specversion", "1.0"), ("ce-id", "5"), ("ce-source", "/s"), ("ce-type", "t")] {
            if name != header {
                req = req.header(name, default);
            }
        }
        let res = s.request(req.header(header, value));
        assert_eq!(res.status, 422, "{header}: {value}");
        assert_eq!(json(&res)["errors"], serde_json::json!([{"header": header, "detail": FORBIDDEN}]));
    }

    // Nothing of any refused request was stored, and every refusal counted.
    let page = json(&s.get("/events"));
    assert_eq!(page["events"], serde_json::json!([]));
    assert_eq!(s.stats()["rejected"]["invalid-event"], 7);
}
