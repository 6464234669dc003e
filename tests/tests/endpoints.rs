//! Every endpoint of SPEC §3 against the real server: exact statuses,
//! headers and bodies.

use inlet_shared::http::{ClientRequest, Method};
use inlet_tests::{event_json, json, Server};
use serde_json::json;

#[test]
fn health_is_ok() {
    let s = Server::start(&[]);
    let res = s.get("/health");
    assert_eq!(res.status, 200);
    assert_eq!(res.headers.get_str("content-type"), Some("application/json"));
    assert_eq!(&res.body[..], br#"{"status":"ok"}"#);
    assert_eq!(res.headers.get("date").map(|d| d.len()), Some(29));
}

#[test]
fn head_has_get_headers_and_no_body() {
    let s = Server::start(&[]);
    let get = s.get("/health");
    let head = s.request(ClientRequest { method: Method::Head, ..ClientRequest::get("/health") });
    assert_eq!(head.status, 200);
    assert_eq!(head.body.len(), 0);
    assert_eq!(head.headers.get_str("content-length"), get.headers.get_str("content-length"));
    assert_eq!(head.headers.get_str("content-type"), get.headers.get_str("content-type"));
}

#[test]
fn unknown_path_is_404_problem() {
    let s = Server::start(&[]);
    let res = s.get("/nope");
    assert_eq!(res.status, 404);
    assert_eq!(res.headers.get_str("content-type"), Some("application/problem+json"));
    let body = json(&res);
    assert_eq!(body["status"], 404);
    assert_eq!(body["title"], "Not Found");
    assert_eq!(body["type"], "urn:inlet:problem:not-found");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("/nope")));
}

#[test]
fn wrong_method_is_405_with_allow() {
    let s = Server::start(&[]);
    for (method, path, allow) in [
        (Method::Delete, "/events", "GET, HEAD, POST"),
        (Method::Get, "/echo", "POST"),
        (Method::Post, "/health", "GET, HEAD"),
        (Method::Put, "/stats", "GET, HEAD"),
        (Method::Post, "/metrics", "GET, HEAD"),
    ] {
        let mut req = ClientRequest::get(path.to_string());
        req.method = method;
        let res = s.request(req);
        assert_eq!(res.status, 405, "{path}");
        assert_eq!(res.headers.get_str("allow"), Some(allow), "{path}");
        assert_eq!(json(&res)["status"], 405);
    }
}

/// The stream, the dashboard, `/rejected`, `/schemas` and `/readyz` take
/// only `GET` and `HEAD`: any other method is `405` with `Allow`, and opens
/// no stream.
#[test]
fn newer_routes_refuse_other_methods_with_405() {
    let s = Server::start(&[]);
    let other = Method::Other(bytes::Bytes::from_static(b"BREW"));
    for (method, path) in [
        (Method::Post, "/events/stream"),
        (Method::Delete, "/events/stream"),
        (other.clone(), "/events/stream"),
        (Method::Post, "/"),
        (Method::Put, "/"),
        (Method::Delete, "/rejected"),
        (Method::Post, "/schemas"),
        (Method::Patch, "/readyz"),
        (Method::Options, "/readyz"),
        (other, "/schemas"),
    ] {
        let mut req = ClientRequest::get(path.to_string());
        req.method = method.clone();
        let res = s.request(req);
        assert_eq!(res.status, 405, "{method:?} {path}");
        assert_eq!(res.headers.get_str("allow"), Some("GET, HEAD"), "{method:?} {path}");
        let body = json(&res);
        assert_eq!(body["type"], "urn:inlet:problem:method-not-allowed", "{method:?} {path}");
    }
    assert_eq!(s.stats()["stream"]["subscribers"], 0, "no stream was opened");
}

#[test]
fn echo_returns_body_and_content_type_unchanged() {
    let s = Server::start(&[]);
    let body: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let res = s.post("/echo", "application/x-weird; a=b", body.clone());
    assert_eq!(res.status, 200);
    assert_eq!(res.headers.get_str("content-type"), Some("application/x-weird; a=b"));
    assert_eq!(&res.body[..], &body[..]);
}

#[test]
fn post_one_structured_event_is_202_and_reads_back_unchanged() {
    let s = Server::start(&[]);
    let event = r#"{"specversion":"1.0","id":"a-1","source":"/x","type":"com.example.t","time":"2026-11-29T06:00:00.5+01:00","subject":"s","traceparent":"00-ab","n":7,"data":{"k":[1, 2.50, "z"]}}"#;
    let res = s.post("/events", "application/cloudevents+json", event);
    assert_eq!(res.status, 202);
    assert_eq!(json(&res), json!({"accepted": 1, "duplicates": 0}));
    let page = json(&s.get("/events"));
    assert_eq!(page["next_after"], serde_json::Value::Null);
    let stored = &page["events"][0];
    assert_eq!(stored["seq"], 1);
    assert!(stored["received_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let sent: serde_json::Value = serde_json::from_str(event).unwrap();
    assert_eq!(stored["event"], sent);
    // data comes back byte for byte.
    assert!(String::from_utf8_lossy(&s.get("/events").body).contains(r#""data":{"k":[1, 2.50, "z"]}"#));
}

#[test]
fn post_batch_ndjson_and_binary() {
    let s = Server::start(&[]);
    let batch = format!("[{},{}]", event_json("b1", "t.a"), event_json("b2", "t.b"));
    let res = s.post("/events", "application/cloudevents-batch+json", batch);
    assert_eq!((res.status, json(&res)), (202, json!({"accepted": 2, "duplicates": 0})));

    let nd = format!("{}\n\n{}\n", event_json("n1", "t.a"), event_json("b1", "t.a"));
    let res = s.post("/events", "application/x-ndjson", nd);
    assert_eq!((res.status, json(&res)), (202, json!({"accepted": 1, "duplicates": 1})));

    let req = ClientRequest::post("/events", "application/json", r#"{"x": "y"}"#)
        .header("ce-specversion", "1.0")
        .header("ce-id", "bin-1")
        .header("ce-source", "/bin")
        .header("ce-type", "t.bin")
        .header("ce-subject", "a%20b");
    let res = s.request(req);
    assert_eq!((res.status, json(&res)), (202, json!({"accepted": 1, "duplicates": 0})));

    let page = json(&s.get("/events?type=t.bin"));
    assert_eq!(
        page["events"][0]["event"],
        json!({"specversion":"1.0","id":"bin-1","source":"/bin","type":"t.bin","subject":"a b","datacontenttype":"application/json","data":{"x":"y"}})
    );
}

#[test]
fn duplicates_are_acknowledged_and_stored_once() {
    let s = Server::start(&[]);
    let e = event_json("same", "t");
    assert_eq!(
        json(&s.post("/events", "application/cloudevents+json", e.clone())),
        json!({"accepted": 1, "duplicates": 0})
    );
    let res = s.post("/events", "application/cloudevents+json", e.clone());
    assert_eq!((res.status, json(&res)), (202, json!({"accepted": 0, "duplicates": 1})));
    let res = s.post("/events", "application/json", format!("[{e},{e}]"));
    assert_eq!(json(&res), json!({"accepted": 0, "duplicates": 2}));
    assert_eq!(json(&s.get("/events"))["events"].as_array().map(|a| a.len()), Some(1));
}

#[test]
fn invalid_batch_stores_nothing_and_lists_every_error() {
    let s = Server::start(&[]);
    let body = format!(
        r#"[{},{{"specversion":"1.0","id":"x","source":"/s"}},{{"specversion":"2","id":"","source":"/s","type":"t"}}]"#,
        event_json("ok", "t")
    );
    let res = s.post("/events", "application/cloudevents-batch+json", body);
    assert_eq!(res.status, 422);
    assert_eq!(res.headers.get_str("content-type"), Some("application/problem+json"));
    let problem = json(&res);
    let pointers: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().filter_map(|e| e["pointer"].as_str()).collect();
    assert_eq!(pointers, vec!["#/1/type", "#/2/id", "#/2/specversion"]);
    assert_eq!(json(&s.get("/events"))["events"], json!([]));
    assert_eq!(s.stats()["accepted"], 0);
}

#[test]
fn get_events_filters_and_pages() {
    let s = Server::start(&[]);
    let mut lines = String::new();
    for i in 0..25 {
        let ty = if i % 5 == 0 { "t.five" } else { "t.other" };
        lines.push_str(&event_json(&format!("e{i}"), ty));
        lines.push('\n');
    }
    assert_eq!(s.post("/events", "application/x-ndjson", lines).status, 202);
    let first = json(&s.get("/events?type=t.five&limit=2"));
    let seqs: Vec<u64> = first["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 6]);
    assert_eq!(first["next_after"], 6);
    let rest = json(&s.get("/events?type=t.five&limit=10&after=6"));
    let seqs: Vec<u64> = rest["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![11, 16, 21]);
    assert_eq!(rest["next_after"], serde_json::Value::Null);
    assert_eq!(json(&s.get("/events?source=%2Fnone"))["events"], json!([]));
    let bad = s.get("/events?limit=0");
    assert_eq!(bad.status, 400);
    assert_eq!(json(&bad)["type"], "urn:inlet:problem:invalid-query");
}

#[test]
fn stats_count_everything() {
    let s = Server::start(&[]);
    s.post("/events", "application/json", format!("[{},{}]", event_json("1", "t.a"), event_json("2", "t.b")));
    s.post("/events", "application/json", event_json("1", "t.a"));
    s.post("/events", "text/plain", "x");
    s.post("/events", "application/json", "{");
    let stats = s.stats();
    assert_eq!(stats["accepted"], 2);
    assert_eq!(stats["duplicates"], 1);
    assert_eq!(stats["rejected"], json!({"unsupported-media-type": 1, "malformed-json": 1}));
    assert_eq!(stats["types"], json!({"t.a": 1, "t.b": 1}));
    // This connection is open; earlier ones may still be closing.
    assert!(stats["connections"]["open"].as_u64().is_some_and(|n| (1..=5).contains(&n)));
    assert_eq!(stats["connections"]["total"], 5);
    assert!(stats["uptime_seconds"].is_u64());
}

#[test]
fn metrics_are_prometheus_text() {
    let s = Server::start(&[]);
    s.post("/events", "application/json", event_json("1", "t.a"));
    s.get("/nope");
    let res = s.get("/metrics");
    assert_eq!(res.status, 200);
    assert!(res.headers.get_str("content-type").is_some_and(|c| c.starts_with("application/openmetrics-text")));
    let text = String::from_utf8_lossy(&res.body).into_owned();
    for needle in [
        "inlet_http_requests_total{route=\"/events\",method=\"POST\",status=\"202\"} 1",
        "inlet_http_requests_total{route=\"other\",method=\"GET\",status=\"404\"} 1",
        "inlet_http_request_duration_seconds_count{route=\"/events\"} 1",
        "inlet_events_accepted_total 1",
        "inlet_events_by_type_total{type=\"t.a\"} 1",
        "inlet_requests_rejected_total{reason=\"not-found\"} 1",
        "# EOF",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    // Earlier connections may still be closing on the server's side.
    let open =
        text.lines().find_map(|l| l.strip_prefix("inlet_connections_open ")).and_then(|n| n.trim().parse::<u64>().ok());
    assert!(open.is_some_and(|n| n >= 1), "{text}");
}
