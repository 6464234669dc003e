//! Property tests: arbitrary sequences of valid requests, cut into arbitrary
//! pieces, decode to exactly the requests that were written; and the client
//! and server codecs round-trip through each other.

mod common;

use bytes::{Bytes, BytesMut};
use inlet_shared::http::{ClientCodec, ClientRequest, Connection, Inbound, Limits, Method, Response, ServerCodec};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

#[derive(Debug, Clone)]
struct Spec {
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunks: Option<Vec<usize>>,
}

fn spec() -> impl Strategy<Value = Spec> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]);
    let target = "/[a-z0-9/._~-]{0,20}(\\?[a-z0-9=&]{0,10})?";
    let headers = prop::collection::vec(("x-[a-z]{1,8}", "[ -~]{0,20}"), 0..5);
    let body = prop::collection::vec(any::<u8>(), 0..200);
    let chunks = prop::option::of(prop::collection::vec(1usize..50, 0..6));
    (method, target, headers, body, chunks).prop_map(|(method, target, headers, body, chunks)| Spec {
        method,
        target,
        headers: headers.into_iter().map(|(n, v)| (n, v.trim().to_string())).collect(),
        body: if method == "GET" { Vec::new() } else { body },
        chunks: if method == "GET" { None } else { chunks },
    })
}

fn write(spec: &Spec, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{} {} HTTP/1.1\r\nHost: h\r\n", spec.method, spec.target).as_bytes());
    for (n, v) in &spec.headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    match &spec.chunks {
        Some(sizes) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            let mut rest = &spec.body[..];
            for &size in sizes.iter().chain(std::iter::repeat(&64)) {
                if rest.is_empty() {
                    break;
                }
                let n = size.min(rest.len());
                out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                out.extend_from_slice(&rest[..n]);
                out.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
        None if spec.method != "GET" => {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", spec.body.len()).as_bytes());
            out.extend_from_slice(&spec.body);
        }
        None => out.extend_from_slice(b"\r\n"),
    }
}

/// Heads near the edges of the line rules: request lines and fields, some
/// malformed, joined by line ends that are mostly CRLF but may be a bare
/// LF, a lone CR, trailing whitespace or a folded continuation; then a
/// little of whatever follows.
fn edgy_head() -> impl Strategy<Value = Vec<u8>> {
    let lead = prop::sample::select(vec!["", "", "", "\r\n", "\r\n\r\n", "\n"]);
    let line = prop::sample::select(vec![
        "GET / HTTP/1.1",
        "POST /e HTTP/1.1",
        "HEAD /x HTTP/1.0",
        "GET  / HTTP/1.1",
        "GET / HTTP/2.0",
        "CONNECT h:1 HTTP/1.1",
        "FOO /x HTTP/1.1",
    ]);
    let field = prop::sample::select(vec![
        "Host: x",
        "Host: x",
        "host:x",
        "Host: a b",
        "Content-Length: 2",
        "Content-Length: 2, 2",
        "Content-Length: 1",
        "Transfer-Encoding: chunked",
        "Connection: close",
        "Connection: keep-alive",
        "Expect: 100-continue",
        "X-A:",
        "X-B: \t",
        " folded",
        "\tfolded",
        "Bad Name: v",
        "X-C: a\rb",
    ]);
    let end = prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\r\n", "\n", " \r\n", "\t\r\n", "\r", "\r\r\n", ""]);
    let last = prop::sample::select(vec!["\r\n", "\r\n", "\n", ""]);
    let rest = prop::sample::select(vec!["", "hi", "0\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"]);
    (lead, line, end.clone(), prop::collection::vec((field, end), 0..6), last, rest).prop_map(
        |(lead, line, line_end, fields, last, rest)| {
            let mut out = format!("{lead}{line}{line_end}");
            for (field, end) in fields {
                out.push_str(field);
                out.push_str(end);
            }
            out.push_str(last);
            out.push_str(rest);
            out.into_bytes()
        },
    )
}

fn cut(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut last = 0;
    for p in points {
        pieces.push(input[last..p].to_vec());
        last = p;
    }
    pieces.push(input[last..].to_vec());
    pieces
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_requests_arbitrarily_cut_decode_the_same(
        specs in prop::collection::vec(spec(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut wire = Vec::new();
        for s in &specs {
            write(s, &mut wire);
        }
        let pieces = cut(&wire, &cuts);
        let out = common::decode_pieces(Limits::default(), pieces.iter().map(|p| &p[..]));
        prop_assert_eq!(out.error, None);
        let requests: Vec<_> = out.items.into_iter().filter_map(|i| match i {
            Inbound::Request(r) => Some(r),
            Inbound::Continue(_) => None,
        }).collect();
        prop_assert_eq!(requests.len(), specs.len());
        for (r, s) in requests.iter().zip(&specs) {
            prop_assert_eq!(r.method.as_str(), s.method);
            prop_assert_eq!(&r.target[..], s.target.as_bytes());
            prop_assert_eq!(&r.body[..], &s.body[..]);
            for (n, v) in &s.headers {
                prop_assert!(r.headers.get_all(n).any(|got| got == v.as_bytes()));
            }
        }
    }

    #[test]
    fn client_encoder_to_server_decoder(
        specs in prop::collection::vec(spec(), 1..6),
    ) {
        let mut client = ClientCodec::new("h");
        let mut wire = BytesMut::new();
        for s in &specs {
            let method = match s.method { "GET" => Method::Get, "POST" => Method::Post, "PUT" => Method::Put, _ => Method::Delete };
            let req = ClientRequest {
                method,
                target: Bytes::from(s.target.clone()),
                headers: s.headers.iter().map(|(n, v)| (Bytes::from(n.clone()), Bytes::from(v.clone()))).collect(),
                body: Bytes::from(s.body.clone()),
                close: false,
            };
            client.encode(req, &mut wire).unwrap();
        }
        let mut server = ServerCodec::new(Limits::default());
        for s in &specs {
            let item = server.decode(&mut wire).unwrap();
            let Some(Inbound::Request(r)) = item else { panic!("expected a request, got {item:?}") };
            prop_assert_eq!(r.method.as_str(), s.method);
            prop_assert_eq!(&r.target[..], s.target.as_bytes());
            prop_assert_eq!(&r.body[..], &s.body[..]);
        }
        prop_assert!(wire.is_empty());
    }

    #[test]
    fn server_encoder_to_client_decoder(
        responses in prop::collection::vec(
            (prop::sample::select(vec![200u16, 202, 400, 404, 405, 413, 422, 503, 299]), prop::collection::vec(any::<u8>(), 0..300), any::<bool>()),
            1..8,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut server = ServerCodec::new(Limits::default());
        let mut wire = BytesMut::new();
        for (i, (status, body, retry)) in responses.iter().enumerate() {
            let mut res = Response::json(*status, Bytes::from(body.clone()));
            res.retry_after = retry.then_some(2);
            if i + 1 == responses.len() { res.connection = Connection::Close; }
            server.encode(res, &mut wire).unwrap();
        }
        let mut client = ClientCodec::new("h");
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in cut(&wire, &cuts) {
            buf.extend_from_slice(&piece);
            while let Some(r) = client.decode(&mut buf).unwrap() { got.push(r); }
        }
        prop_assert_eq!(got.len(), responses.len());
        for (r, (status, body, retry)) in got.iter().zip(&responses) {
            prop_assert_eq!(r.status, *status);
            prop_assert_eq!(&r.body[..], &body[..]);
            prop_assert_eq!(r.headers.get_str("retry-after").is_some(), *retry);
        }
        prop_assert!(got.last().is_some_and(|r| r.closes()));
    }

    /// Pipelined GETs and HEADs through both codec pairs: each answer to a
    /// HEAD arrives without its body (the server codec leaves it out by
    /// itself), each answer to a GET with it, in order, framed right.
    #[test]
    fn head_and_get_round_trip_through_both_pairs(
        exchanges in prop::collection::vec(
            (any::<bool>(), prop::sample::select(vec![200u16, 400, 404, 405, 413, 503]), prop::collection::vec(any::<u8>(), 0..100)),
            1..8,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut client = ClientCodec::new("h");
        let mut requests = BytesMut::new();
        for (head, _, _) in &exchanges {
            let method = if *head { Method::Head } else { Method::Get };
            client.encode(ClientRequest { method, ..ClientRequest::get("/x") }, &mut requests).unwrap();
        }
        let mut server = ServerCodec::new(Limits::default());
        let mut answers = BytesMut::new();
        for (_, status, body) in &exchanges {
            let Some(Inbound::Request(_)) = server.decode(&mut requests).unwrap() else { panic!("a request") };
            server.encode(Response::json(*status, Bytes::from(body.clone())), &mut answers).unwrap();
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in cut(&answers, &cuts) {
            buf.extend_from_slice(&piece);
            while let Some(r) = client.decode(&mut buf).unwrap() { got.push(r); }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got.len(), exchanges.len());
        for (r, (head, status, body)) in got.iter().zip(&exchanges) {
            prop_assert_eq!(r.status, *status);
            let expected: &[u8] = if *head { b"" } else { body };
            prop_assert_eq!(&r.body[..], expected);
            let length = body.len().to_string();
            prop_assert_eq!(r.headers.get_str("content-length"), Some(length.as_str()));
        }
    }

    // A head that arrives whole is parsed in one pass; one that arrives a
    // byte at a time, or cut anywhere, goes through the line scanner first.
    // Both must come to exactly the same requests and the same error.
    #[test]
    fn heads_near_the_line_rules_decode_the_same_whole_and_cut(
        input in edgy_head(),
        at in any::<usize>(),
        small in any::<bool>(),
    ) {
        let limits = if small { Limits { max_head: 40, max_body: 64 } } else { Limits::default() };
        let whole = common::requests_only(&common::decode_pieces(limits, [&input[..]]));
        let at = at % (input.len() + 1);
        let split = common::requests_only(&common::decode_pieces(limits, [&input[..at], &input[at..]]));
        prop_assert_eq!(&split, &whole);
        let bytewise = common::requests_only(&common::decode_bytewise(limits, &input));
        prop_assert_eq!(&bytewise, &whole);
    }

    #[test]
    fn server_decoder_never_panics_on_garbage(input in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = common::decode_whole(&input);
        let _ = common::decode_bytewise(Limits { max_head: 64, max_body: 64 }, &input);
    }
}
