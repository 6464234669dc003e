//! The client pair: response framing rules, and both round trips
//! (client encoder -> server decoder, server encoder -> client decoder).

use bytes::{Bytes, BytesMut};
use inlet_shared::http::{
    put_chunk, BodyStream, ClientCodec, ClientRequest, ClientResponse, Connection, Continue, HttpError, Inbound,
    Limits, Method, Response, ServerCodec, LAST_CHUNK,
};
use tokio_util::codec::{Decoder, Encoder};

fn decode_responses(codec: &mut ClientCodec, input: &[u8]) -> Vec<ClientResponse> {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Some(r) = codec.decode(&mut buf).expect("valid response") {
        out.push(r);
    }
    if let Some(r) = codec.decode_eof(&mut buf).expect("valid eof") {
        out.push(r);
    }
    out
}

#[test]
fn content_length_response() {
    let mut c = ClientCodec::new("x");
    let out = decode_responses(&mut c, b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, 202);
    assert_eq!(&out[0].body[..], b"ok");
}

#[test]
fn chunked_response() {
    let mut c = ClientCodec::new("x");
    let out = decode_responses(
        &mut c,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n1\r\n!\r\n0\r\n\r\n",
    );
    assert_eq!(&out[0].body[..], b"ok!");
}

#[test]
fn read_to_eof_response() {
    let mut c = ClientCodec::new("x");
    let out = decode_responses(&mut c, b"HTTP/1.0 200 OK\r\n\r\nuntil the end");
    assert_eq!(&out[0].body[..], b"until the end");
    assert!(out[0].closes());
}

#[test]
fn interim_responses_are_skipped() {
    let mut c = ClientCodec::new("x");
    let out = decode_responses(&mut c, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, 202);
}

#[test]
fn head_and_204_responses_have_no_body() {
    let mut c = ClientCodec::new("x");
    let mut dst = BytesMut::new();
    c.encode(ClientRequest { method: Method::Head, ..ClientRequest::get("/health") }, &mut dst).unwrap();
    c.encode(ClientRequest::get("/x"), &mut dst).unwrap();
    let out = decode_responses(&mut c, b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].body.len(), 0);
    assert_eq!(out[1].status, 204);
}

#[test]
fn truncated_response_is_an_error() {
    let mut c = ClientCodec::new("x");
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"[..]);
    assert!(c.decode(&mut buf).unwrap().is_none());
    let e = c.decode_eof(&mut buf).unwrap_err();
    assert_eq!(e.http(), Some(HttpError::IncompleteMessage));
}

#[test]
fn client_request_round_trips_through_server_decoder() {
    let mut client = ClientCodec::new("example:8080");
    let mut wire = BytesMut::new();
    let req = ClientRequest::post("/events?x=1", "application/cloudevents+json", Bytes::from_static(b"{\"id\":\"1\"}"))
        .header("ce-extra", "v");
    client.encode(req.clone(), &mut wire).unwrap();
    client.encode(ClientRequest { close: true, ..ClientRequest::get("/health") }, &mut wire).unwrap();

    let mut server = ServerCodec::new(Limits::default());
    let Some(Inbound::Request(a)) = server.decode(&mut wire).unwrap() else { panic!("first request") };
    let Some(Inbound::Request(b)) = server.decode(&mut wire).unwrap() else { panic!("second request") };
    assert_eq!(a.method, Method::Post);
    assert_eq!(&a.target[..], b"/events?x=1");
    assert_eq!(a.headers.get_str("host"), Some("example:8080"));
    assert_eq!(a.headers.get_str("content-type"), Some("application/cloudevents+json"));
    assert_eq!(a.headers.get_str("ce-extra"), Some("v"));
    assert_eq!(a.body, req.body);
    assert!(a.keep_alive);
    assert_eq!(b.method, Method::Get);
    assert!(!b.keep_alive);
    assert!(wire.is_empty());
}

#[test]
fn server_response_round_trips_through_client_decoder() {
    let mut server = ServerCodec::new(Limits::default());
    let mut wire = BytesMut::new();
    server.encode(Continue, &mut wire).unwrap();
    let body = Bytes::from_static(b"{\"status\":503}");
    let mut res = Response::json(503, body.clone());
    res.retry_after = Some(1);
    server.encode(res, &mut wire).unwrap();
    let mut closing = Response::new(405, None, Bytes::new());
    closing.allow = Some("GET, HEAD");
    closing.connection = Connection::Close;
    server.encode(closing, &mut wire).unwrap();

    let mut client = ClientCodec::new("x");
    let out = decode_responses(&mut client, &wire);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].status, 503);
    assert_eq!(out[0].body, body);
    assert_eq!(out[0].headers.get_str("retry-after"), Some("1"));
    assert_eq!(out[0].headers.get_str("content-type"), Some("application/json"));
    assert_eq!(out[0].headers.get("date").map(|d| d.len()), Some(29));
    assert!(!out[0].closes());
    assert_eq!(out[1].status, 405);
    assert_eq!(out[1].headers.get_str("allow"), Some("GET, HEAD"));
    assert!(out[1].closes());
}

#[test]
fn head_response_keeps_content_length_of_full_body() {
    let mut server = ServerCodec::new(Limits::default());
    let mut wire = BytesMut::new();
    let mut res = Response::json(200, Bytes::from_static(b"{\"status\":\"ok\"}"));
    res.omit_body = true;
    server.encode(res, &mut wire).unwrap();
    let text = String::from_utf8(wire.to_vec()).unwrap();
    assert!(text.contains("Content-Length: 15\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "{text}");
}

// --- framing: the same Content-Length / Transfer-Encoding rules as requests ---

/// The error decoding `input` (one response to a `GET`) ends with.
fn response_error(input: &[u8]) -> Option<HttpError> {
    let mut c = ClientCodec::new("x");
    let mut buf = BytesMut::from(input);
    loop {
        match c.decode(&mut buf) {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => return e.http(),
        }
    }
    c.decode_eof(&mut buf).err().and_then(|e| e.http())
}

#[test]
fn response_content_length_must_be_plain_decimal() {
    for bad in ["+5", "-5", "0x5", "5 5", "5.0", ""] {
        let input = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\nhello");
        assert_eq!(response_error(input.as_bytes()), Some(HttpError::InvalidContentLength), "{bad:?}");
    }
}

#[test]
fn response_with_differing_content_lengths_is_an_error_not_the_last_one() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(response_error(input), Some(HttpError::ConflictingContentLength));
    assert_eq!(
        response_error(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 9\r\n\r\nhello"),
        Some(HttpError::ConflictingContentLength)
    );
    let mut c = ClientCodec::new("x");
    let out = decode_responses(&mut c, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\nhello");
    assert_eq!(&out[0].body[..], b"hello");
}

#[test]
fn response_transfer_encoding_rules_match_the_server_side() {
    let cases: [(&[u8], HttpError); 5] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            HttpError::ContentLengthWithTransferEncoding,
        ),
        (
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            HttpError::TransferEncodingOnHttp10,
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", HttpError::UnsupportedTransferCoding),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", HttpError::UnsupportedTransferCoding),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", HttpError::ChunkedTwice),
    ];
    for (input, error) in cases {
        assert_eq!(response_error(input), Some(error), "{}", String::from_utf8_lossy(input));
    }
}

#[test]
fn response_trailer_lines_must_be_fields() {
    let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nHTTP/1.1 200 OK\r\n\r\n";
    assert_eq!(response_error(input), Some(HttpError::InvalidTrailer));
}

#[test]
fn response_length_over_the_client_limit_is_refused_before_the_body() {
    let over = 64 * 1024 * 1024 + 1;
    let input = format!("HTTP/1.1 200 OK\r\nContent-Length: {over}\r\n\r\n");
    let mut c = ClientCodec::new("x");
    let mut buf = BytesMut::from(input.as_bytes());
    assert_eq!(c.decode(&mut buf).err().and_then(|e| e.http()), Some(HttpError::BodyTooLarge));
    // A HEAD's answer declares the length it does not send: no limit applies.
    let mut c = ClientCodec::new("x");
    let mut dst = BytesMut::new();
    c.encode(ClientRequest { method: Method::Head, ..ClientRequest::get("/big") }, &mut dst).unwrap();
    let out = decode_responses(&mut c, input.as_bytes());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].body.len(), 0);
}

/// A streamed (chunked) answer as the server writes it, then a whole one:
/// the client reads both, at every split of the bytes.
#[test]
fn a_streamed_response_round_trips_through_client_decoder() {
    let mut server = ServerCodec::new(Limits::default());
    let mut wire = BytesMut::new();
    let (_tx, stream) = BodyStream::channel(1);
    let mut res = Response::streamed(200, Some(Bytes::from_static(b"application/json")), stream);
    assert!(res.take_stream().is_some());
    server.encode(res, &mut wire).unwrap();
    put_chunk(&mut wire, b"{\"events\":[");
    put_chunk(&mut wire, &[b' '; 300]);
    put_chunk(&mut wire, b"],\"next_after\":null}");
    wire.extend_from_slice(LAST_CHUNK);
    server.encode(Response::json(200, "{}"), &mut wire).unwrap();
    let expected = format!("{{\"events\":[{}],\"next_after\":null}}", " ".repeat(300));
    for split in 0..wire.len() {
        let mut client = ClientCodec::new("x");
        let mut buf = BytesMut::from(&wire[..split]);
        let mut out = Vec::new();
        while let Some(r) = client.decode(&mut buf).expect("valid response") {
            out.push(r);
        }
        buf.extend_from_slice(&wire[split..]);
        while let Some(r) = client.decode(&mut buf).expect("valid response") {
            out.push(r);
        }
        assert_eq!(out.len(), 2, "split at {split}");
        assert_eq!(out[0].headers.get_str("transfer-encoding"), Some("chunked"));
        assert_eq!(String::from_utf8_lossy(&out[0].body), expected, "split at {split}");
        assert_eq!(&out[1].body[..], b"{}");
    }
}
