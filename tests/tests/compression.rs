//! Compressed request bodies and responses (issue 14), against the real
//! server with real encoders: curl posting a file made by `gzip(1)`,
//! Python's `gzip`/`zlib` and the `zstandard` package, and the codings of
//! `inlet_shared::http::coding` (the client's).
//!
//! The Python tests need `INLET_PYTHON` with `zstandard` (tests/requirements.txt;
//! `scripts/test.sh` sets it up): without it they are ignored, not passed.

use std::io::Write;
use std::process::{Command, Stdio};

use bytes::Bytes;
use inlet_shared::http::coding::Coding;
use inlet_shared::http::{ClientRequest, ClientResponse};
use inlet_tests::{client, event_json, json, Server};
use serde_json::json;

const NDJSON: &str = "application/x-ndjson";

/// `n` distinct valid events as NDJSON.
fn ndjson(n: usize, prefix: &str) -> Vec<u8> {
    (0..n).flat_map(|i| format!("{}\n", event_json(&format!("{prefix}-{i}"), "t.zip")).into_bytes()).collect()
}

fn post_coded(s: &Server, content_type: &'static str, coding: &str, body: impl Into<Bytes>) -> ClientResponse {
    s.request(ClientRequest::post("/events", content_type, body).header("Content-Encoding", coding.to_string()))
}

fn header<'a>(res: &'a ClientResponse, name: &str) -> Option<&'a str> {
    res.headers.get(name).and_then(|v| std::str::from_utf8(v).ok())
}

fn stored(s: &Server) -> usize {
    json(&s.get("/events?limit=10000"))["events"].as_array().map_or(0, Vec::len)
}

/// Runs a Python `script` with `args` and `input` on stdin (the test
/// Python, from INLET_PYTHON); its stdout.
fn python(script: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let python = std::env::var("INLET_PYTHON").expect("INLET_PYTHON: a python with `zstandard` (scripts/test.sh)");
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("python output");
    writer.join().expect("writer").expect("write to python");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Python encodes stdin: `gzip`, `deflate` (zlib), `zstd`, or `gzip, zstd`
/// (gzip first, then zstd).
fn py_encode(coding: &str, plain: &[u8]) -> Vec<u8> {
    let script = r#"
import sys, gzip, zlib, zstandard
data = sys.stdin.buffer.read()
def enc(c, d):
    if c == "gzip": return gzip.compress(d)
    if c == "deflate": return zlib.compress(d)
    if c == "zstd": return zstandard.ZstdCompressor(write_checksum=True).compress(d)
    raise SystemExit("unknown " + c)
for c in [c.strip() for c in sys.argv[1].split(",")]:
    data = enc(c, data)
sys.stdout.buffer.write(data)
"#;
    python(script, &[coding], plain)
}

/// VmRSS or VmHWM of a process, in bytes.
fn proc_mem(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with(field)).expect("field in /proc status");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("kB value");
    kib * 1024
}

#[test]
#[ignore = "needs INLET_PYTHON with zstandard; scripts/test.sh runs it"]
fn python_encoded_bodies_of_each_coding_and_the_stacked_one_are_stored_decoded() {
    let s = Server::start(&[]);
    let mut total = 0;
    for (i, coding) in ["gzip", "x-gzip", "deflate", "zstd", "gzip, zstd", "identity"].iter().enumerate() {
        let plain = ndjson(50, &format!("py{i}"));
        let body = match *coding {
            "identity" => plain.clone(),
            "x-gzip" => py_encode("gzip", &plain),
            other => py_encode(other, &plain),
        };
        let res = post_coded(&s, NDJSON, coding, body);
        assert_eq!((res.status, json(&res)), (202, json!({"accepted": 50, "duplicates": 0})), "{coding}");
        total += 50;
        assert_eq!(stored(&s), total, "{coding}");
    }
    // The stored events are the decoded ones.
    let page = json(&s.get("/events?limit=1"));
    assert_eq!(page["events"][0]["event"]["id"], "py0-0");
}

#[test]
fn curl_posts_a_gzip_file_made_by_gzip_with_content_length_and_chunked() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().expect("tmp");
    let plain = dir.path().join("events.ndjson");
    std::fs::write(&plain, ndjson(100, "curl")).expect("write");
    let status = Command::new("gzip").arg("-k").arg("-9").arg(&plain).status().expect("gzip(1)");
    assert!(status.success());
    let gz = dir.path().join("events.ndjson.gz");
    for (n, extra) in [(1, None), (2, Some("Transfer-Encoding: chunked"))] {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-H", "Content-Encoding: gzip"])
            .args(["-H", "Content-Type: application/x-ndjson"])
            .arg("--data-binary")
            .arg(format!("@{}", gz.display()));
        if let Some(h) = extra {
            cmd.args(["-H", h]);
        }
        let out = cmd.arg(format!("http://{}/events", s.addr)).output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout);
        let expected = if n == 1 {
            "{\"accepted\":100,\"duplicates\":0}\n202"
        } else {
            "{\"accepted\":0,\"duplicates\":100}\n202"
        };
        assert_eq!(text, expected, "{extra:?}");
    }
    assert_eq!(stored(&s), 100);
}

#[test]
fn the_decoded_body_cap_at_the_limit_and_one_past_for_every_coding() {
    let plain = ndjson(20, "cap");
    let limit = plain.len();
    let at = Server::start(&["--max-decoded-body", &limit.to_string()]);
    let past = Server::start(&["--max-decoded-body", &(limit - 1).to_string()]);
    for coding in [None, Some(Coding::Gzip), Some(Coding::Deflate), Some(Coding::Zstd)] {
        let (name, body) = match coding {
            None => ("identity", Bytes::from(plain.clone())),
            Some(c) => (c.name(), c.encode(&plain).expect("encode")),
        };
        let res = post_coded(&at, NDJSON, name, body.clone());
        assert_eq!(res.status, 202, "{name} at the limit");
        let res = post_coded(&past, NDJSON, name, body);
        assert_eq!(res.status, 413, "{name} one past");
        let problem = json(&res);
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(&format!("passes {} bytes", limit - 1)), "{name}: {problem}");
    }
    assert_eq!(stored(&past), 0);
    assert_eq!(past.stats()["rejected"]["decoded-body-too-large"], 4);
}

#[test]
fn event_and_batch_limits_apply_to_the_decoded_events() {
    let s = Server::start(&["--max-batch", "10", "--max-event-bytes", "400"]);
    let at = Coding::Zstd.encode(&ndjson(10, "b")).expect("zstd");
    assert_eq!(post_coded(&s, NDJSON, "zstd", at).status, 202);
    let past = Coding::Zstd.encode(&ndjson(11, "c")).expect("zstd");
    assert_eq!(post_coded(&s, NDJSON, "zstd", past).status, 413);
    let big = format!(r#"{{"specversion":"1.0","id":"big","source":"/s","type":"t","data":"{}"}}"#, "x".repeat(400));
    let res = post_coded(&s, "application/cloudevents+json", "gzip", Coding::Gzip.encode(big.as_bytes()).unwrap());
    assert_eq!(res.status, 413);
    assert_eq!(stored(&s), 10);
}

#[test]
fn two_gzip_members_count_together() {
    let plain = ndjson(20, "m");
    let (a, b) = plain.split_at(plain.len() / 2);
    let mut two = Coding::Gzip.encode(a).unwrap().to_vec();
    two.extend_from_slice(&Coding::Gzip.encode(b).unwrap());
    // Each member is under the cap; both together are the body.
    let at = Server::start(&["--max-decoded-body", &plain.len().to_string()]);
    let res = post_coded(&at, NDJSON, "gzip", two.clone());
    assert_eq!((res.status, json(&res)["accepted"].as_u64()), (202, Some(20)));
    let past = Server::start(&["--max-decoded-body", &(plain.len() - 1).to_string()]);
    assert_eq!(post_coded(&past, NDJSON, "gzip", two).status, 413);
    assert_eq!(stored(&past), 0);
}

#[test]
#[ignore = "needs INLET_PYTHON with zstandard; scripts/test.sh runs it"]
fn a_one_gib_gzip_or_zstd_bomb_is_413_and_the_server_stays_small() {
    let bomb = r#"
import sys, zlib, zstandard
chunk = bytes(1 << 20)
if sys.argv[1] == "gzip":
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [c.compress(chunk) for _ in range(1024)]
    out.append(c.flush())
    sys.stdout.buffer.write(b"".join(out))
else:
    w = zstandard.ZstdCompressor(level=3).compressobj()
    out = [w.compress(chunk) for _ in range(1024)]
    out.append(w.flush())
    sys.stdout.buffer.write(b"".join(out))
"#;
    let s = Server::start(&[]);
    // Warm up: one small coded request of each kind.
    for coding in [Coding::Gzip, Coding::Zstd] {
        assert_eq!(
            post_coded(&s, NDJSON, coding.name(), coding.encode(&ndjson(1, coding.name())).unwrap()).status,
            202
        );
    }
    let before = proc_mem(s.pid(), "VmRSS:");
    for coding in ["gzip", "zstd"] {
        let wire = python(bomb, &[coding], b"");
        assert!(wire.len() < 2 << 20, "{coding}: {} bytes on the wire", wire.len());
        let res = post_coded(&s, NDJSON, coding, wire);
        assert_eq!(res.status, 413, "{coding}");
        assert_eq!(json(&res)["title"], "Content Too Large");
    }
    let peak = proc_mem(s.pid(), "VmHWM:");
    assert!(peak < before + (64 << 20), "RSS grew from {before} to a peak of {peak}");
    assert_eq!(stored(&s), 2);
    assert_eq!(s.stats()["rejected"]["decoded-body-too-large"], 2);
}

#[test]
fn a_zstd_frame_declaring_a_2_gib_window_is_refused() {
    // Frame header by hand (RFC 8878 §3.1.1): magic, descriptor 0 (no
    // content size, no checksum), window descriptor exponent 21 → 2^31,
    // then one last raw block: a valid event.
    let event = format!("{}\n", event_json("win", "t.win"));
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3];
    let block_header = 1 | ((event.len() as u32) << 3);
    frame.extend_from_slice(&block_header.to_le_bytes()[..3]);
    frame.extend_from_slice(event.as_bytes());
    let s = Server::start(&[]);
    let res = post_coded(&s, NDJSON, "zstd", frame.clone());
    assert_eq!(res.status, 400);
    assert_eq!(json(&res)["detail"].as_str().map(|d| d.contains("zstd")), Some(true));
    assert_eq!(stored(&s), 0);
    // The same frame with an 8 MiB window (exponent 13, the cap) is read;
    // one past the cap (exponent 14, 16 MiB) is not.
    frame[5] = 14 << 3;
    assert_eq!(post_coded(&s, NDJSON, "zstd", frame.clone()).status, 400);
    frame[5] = 13 << 3;
    let res = post_coded(&s, NDJSON, "zstd", frame);
    assert_eq!((res.status, json(&res)["accepted"].as_u64()), (202, Some(1)));
}

#[test]
#[ignore = "needs INLET_PYTHON with zstandard; scripts/test.sh runs it"]
fn truncated_and_corrupt_streams_are_400_and_nothing_is_stored() {
    let s = Server::start(&[]);
    let plain = ndjson(30, "broken");
    for coding in ["gzip", "deflate", "zstd", "gzip, zstd"] {
        let wire = py_encode(coding, &plain);
        let truncated = wire[..wire.len() - 3].to_vec();
        let res = post_coded(&s, NDJSON, coding, truncated);
        assert_eq!(res.status, 400, "{coding} truncated");
        let mut corrupt = wire.clone();
        let mid = corrupt.len() / 2;
        corrupt[mid] ^= 0xff;
        corrupt[mid + 1] ^= 0xa5;
        let res = post_coded(&s, NDJSON, coding, corrupt);
        assert_eq!(res.status, 400, "{coding} corrupt");
    }
    assert_eq!(stored(&s), 0);
    assert_eq!(s.stats()["rejected"]["corrupt-content-encoding"], 8);
}

#[test]
fn an_unknown_coding_is_415_with_accept_encoding_before_the_body() {
    let s = Server::start(&[]);
    for coding in ["br", "gzip, compress", "gzip, gzip, gzip"] {
        let res = post_coded(&s, NDJSON, coding, ndjson(1, "u"));
        assert_eq!(res.status, 415, "{coding}");
        assert_eq!(header(&res, "accept-encoding"), Some("gzip, deflate, zstd"), "{coding}");
    }
    // Expect: 100-continue gets the 415 instead of 100 Continue.
    let head = "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Encoding: br\r\n\
         Expect: 100-continue\r\nContent-Length: 1000000\r\n\r\n";
    let answer = inlet_tests::raw_exchange(s.addr, head.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 415 "), "{answer}");
    assert!(answer.contains("\r\nAccept-Encoding: gzip, deflate, zstd\r\n"), "{answer}");
    assert_eq!(stored(&s), 0);
    assert_eq!(s.stats()["rejected"]["unsupported-content-encoding"], 4);
}

#[test]
fn a_compressed_binary_mode_event_is_read_back_decoded() {
    let s = Server::start(&[]);
    let data = br#"{"x":"y","n":[1,2,3]}"#;
    let req = ClientRequest::post("/events", "application/json", Coding::Zstd.encode(data).unwrap())
        .header("Content-Encoding", "zstd")
        .header("ce-specversion", "1.0")
        .header("ce-id", "bin-z")
        .header("ce-source", "/bin")
        .header("ce-type", "t.bin");
    assert_eq!(s.request(req).status, 202);
    let page = json(&s.get("/events?type=t.bin"));
    assert_eq!(page["events"][0]["event"]["data"], json!({"x":"y","n":[1,2,3]}));
    assert_eq!(page["events"][0]["event"]["datacontenttype"], "application/json");
}

#[test]
fn echo_returns_the_coded_body_as_sent() {
    let s = Server::start(&[]);
    let wire = Coding::Gzip.encode(b"hello").unwrap();
    let req = ClientRequest::post("/echo", "text/plain", wire.clone()).header("Content-Encoding", "gzip");
    let res = s.request(req);
    assert_eq!((res.status, header(&res, "content-encoding"), &res.body[..]), (200, Some("gzip"), &wire[..]));
}

#[test]
fn metrics_are_compressed_as_accepted_with_vary_and_count_bytes_by_coding() {
    let s = Server::start(&[]);
    let plain = ndjson(40, "met");
    let gz = Coding::Gzip.encode(&plain).unwrap();
    assert_eq!(post_coded(&s, NDJSON, "gzip", gz.clone()).status, 202);
    assert_eq!(post_coded(&s, NDJSON, "br", Bytes::from_static(b"x")).status, 415);
    for (accept, expected) in [
        (Some("gzip"), Some(Coding::Gzip)),
        (Some("gzip;q=0.5, zstd"), Some(Coding::Zstd)),
        (Some("zstd;q=0.1, gzip;q=0.9"), Some(Coding::Gzip)),
        (Some("zstd;q=0, gzip;q=0"), None),
        (Some("br"), None),
        (None, None),
    ] {
        let mut req = ClientRequest::get("/metrics");
        if let Some(a) = accept {
            req = req.header("Accept-Encoding", a);
        }
        let res = s.request(req);
        assert_eq!(res.status, 200);
        assert_eq!(header(&res, "vary"), Some("Accept-Encoding"), "{accept:?}");
        assert_eq!(header(&res, "content-encoding"), expected.map(Coding::name), "{accept:?}");
        let text = match expected {
            Some(c) => inlet_shared::http::coding::decode(&[c], res.body.clone(), 1 << 24).expect("decodes"),
            None => res.body.clone(),
        };
        let text = String::from_utf8_lossy(&text);
        let wire_line = format!("inlet_request_body_wire_bytes_total{{coding=\"gzip\"}} {}", gz.len());
        let decoded_line = format!("inlet_request_body_decoded_bytes_total{{coding=\"gzip\"}} {}", plain.len());
        assert!(text.contains(&wire_line), "{accept:?}: no `{wire_line}`");
        assert!(text.contains(&decoded_line), "{accept:?}: no `{decoded_line}`");
        assert!(text.contains("inlet_requests_rejected_total{reason=\"unsupported-content-encoding\"} 1"));
    }
}

#[test]
fn a_body_decoding_past_the_inline_slice_is_finished_off_the_worker_thread() {
    // Small on the wire (decoded on the worker thread first), larger than
    // the 256 KiB decoded there: the rest is decoded on the blocking pool.
    let pad = "abcdefghij".repeat(30);
    let plain: Vec<u8> = (0..1000)
        .flat_map(|i| {
            format!(
                "{{\"specversion\":\"1.0\",\"id\":\"s-{i}\",\"source\":\"/s\",\"type\":\"t\",\"data\":\"{pad}{i}\"}}\n"
            )
            .into_bytes()
        })
        .collect();
    assert!(plain.len() > 256 * 1024, "{}", plain.len());
    let s = Server::start(&[]);
    for coding in [Coding::Gzip, Coding::Deflate, Coding::Zstd] {
        let wire = coding.encode(&plain).unwrap();
        assert!(wire.len() <= 64 * 1024, "{coding:?}: {}", wire.len());
        let res = post_coded(&s, NDJSON, coding.name(), wire);
        let expected = if coding == Coding::Gzip { (1000, 0) } else { (0, 1000) };
        assert_eq!(
            (res.status, json(&res)["accepted"].as_u64(), json(&res)["duplicates"].as_u64()),
            (202, Some(expected.0), Some(expected.1)),
            "{coding:?}"
        );
    }
    assert_eq!(stored(&s), 1000);
}

#[test]
fn event_pages_are_compressed_as_accepted_and_decode_to_the_identity_page() {
    let s = Server::start(&[]);
    assert_eq!(post_coded(&s, NDJSON, "identity", ndjson(200, "page")).status, 202);
    let plain = s.get("/events?limit=200");
    assert_eq!(plain.status, 200);
    assert_eq!(header(&plain, "content-encoding"), None);
    assert_eq!(header(&plain, "vary"), Some("Accept-Encoding"));
    for (accept, coding) in [("zstd", Coding::Zstd), ("gzip", Coding::Gzip), ("gzip;q=0.2, zstd;q=0.8", Coding::Zstd)] {
        let res = s.request(ClientRequest::get("/events?limit=200").header("Accept-Encoding", accept));
        assert_eq!(res.status, 200);
        assert_eq!(header(&res, "transfer-encoding"), Some("chunked"), "{accept}");
        assert_eq!(header(&res, "content-encoding"), Some(coding.name()), "{accept}");
        assert_eq!(header(&res, "vary"), Some("Accept-Encoding"));
        assert!(res.body.len() < plain.body.len() / 4, "{accept}: {} of {} bytes", res.body.len(), plain.body.len());
        let decoded = inlet_shared::http::coding::decode(&[coding], res.body.clone(), 1 << 24).expect("decodes");
        assert_eq!(decoded, plain.body, "{accept}");
    }
    // A page under 1 KiB is sent whole and as it is, whatever is accepted.
    let small = s.request(ClientRequest::get("/events?limit=1").header("Accept-Encoding", "zstd, gzip"));
    assert_eq!(header(&small, "content-encoding"), None);
    assert_eq!(header(&small, "transfer-encoding"), None);
    assert_eq!(json(&small)["events"].as_array().map(Vec::len), Some(1));
}

#[test]
fn the_client_reads_compressed_pages() {
    let s = Server::start(&[]);
    assert_eq!(post_coded(&s, NDJSON, "identity", ndjson(50, "cli")).status, 202);
    let (code, out, err) = client(s.addr, &["events", "--page", "20"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 50, "{out}");
}
