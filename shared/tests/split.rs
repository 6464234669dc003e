//! Every framing path fed whole, split at every byte position, and one byte
//! at a time, must give exactly the same requests (and the same error).

mod common;

use common::{assert_split_invariant, decode_whole};
use inlet_shared::http::{HttpError, Limits};

const CASES: &[(&str, &[u8])] = &[
    ("get", b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("content_length", b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\"bc\"}\n"),
    ("chunked", b"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n"),
    ("chunked_ext_trailers", b"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n2 ;x\r\nde\r\n0;end\r\nX-T: 1\r\nX-U: 2\r\n\r\n"),
    ("http10_keep_alive", b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi"),
    ("leading_crlf", b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("expect_continue", b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody"),
    ("empty_chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    (
        "pipelined_mix",
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyzPOST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nq\r\n0\r\n\r\nHEAD /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ),
    ("absolute_form", b"GET http://inlet.example:8080/events?limit=1 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"),
    ("trailer_fields_ows", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-A:1\r\nX-B: \t v \r\n\r\n"),
    // Errors must not depend on how the bytes arrived either.
    ("error_trailer_request_line", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nGET /stats HTTP/1.1\r\n\r\n"),
    ("error_invalid_host", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
    ("error_target_bytes", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("error_cl_and_te", b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("error_bare_lf", b"GET / HTTP/1.1\r\nHost: x\n\r\n"),
    ("error_bad_chunk", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX"),
    ("error_missing_host", b"GET / HTTP/1.1\r\n\r\n"),
    ("error_incomplete", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"),
];

#[test]
fn every_framing_path_is_split_invariant() {
    for (name, input) in CASES {
        assert_split_invariant(Limits::default(), input);
        // Sanity: the cases named error_* do end in an error, the others do not.
        let error = decode_whole(input).error;
        assert_eq!(name.starts_with("error_"), error.is_some(), "case {name}: {error:?}");
    }
}

#[test]
fn limits_are_split_invariant() {
    let limits = Limits { max_head: 64, max_body: 8 };
    let head_too_large = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "a".repeat(80));
    assert_split_invariant(limits, head_too_large.as_bytes());
    assert_eq!(common::decode_with(limits, head_too_large.as_bytes()).error, Some(HttpError::HeadTooLarge));
    // A bare LF past the limit: one byte at a time, the limit is passed
    // before the LF arrives, so the whole head must say the same.
    let bare_lf_past_limit = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\n\r\n", "a".repeat(40));
    assert_split_invariant(limits, bare_lf_past_limit.as_bytes());
    assert_eq!(common::decode_with(limits, bare_lf_past_limit.as_bytes()).error, Some(HttpError::HeadTooLarge));
    let body_too_large =
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n5\r\n12345\r\n0\r\n\r\n";
    assert_split_invariant(limits, body_too_large);
    assert_eq!(common::decode_with(limits, body_too_large).error, Some(HttpError::BodyTooLarge));
}

/// The seeds of the `decode_request` fuzz target (its first byte picks the
/// split; the rest is the input), under the target's limits, at every split.
#[test]
fn fuzz_seeds_of_decode_request_are_split_invariant() {
    let limits = Limits { max_head: 512, max_body: 1024 };
    for seed in [
        &include_bytes!("../../fuzz/seeds/decode_request/seed1")[..],
        include_bytes!("../../fuzz/seeds/decode_request/seed2"),
    ] {
        assert_split_invariant(limits, &seed[1..]);
    }
}
