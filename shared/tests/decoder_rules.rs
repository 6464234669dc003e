//! One named test per framing rule of SPEC §3.3 / §4, each asserting the
//! exact outcome (request fields, or the exact error and its status).

mod common;

use bytes::Bytes;
use common::{decode_whole, decode_with, error_of};
use inlet_shared::http::{HttpError, Inbound, Limits, Method, Request, Version};

fn only_request(input: &[u8]) -> Request {
    let out = decode_whole(input);
    assert_eq!(out.error, None, "unexpected error");
    assert_eq!(out.items.len(), 1, "expected one item: {:?}", out.items);
    match out.items.into_iter().next() {
        Some(Inbound::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

// --- basic framing -------------------------------------------------------

#[test]
fn get_without_body() {
    let r = only_request(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.method, Method::Get);
    assert_eq!(&r.target[..], b"/health");
    assert_eq!(r.version, Version::Http11);
    assert!(r.keep_alive);
    assert_eq!(r.body, Bytes::new());
    assert_eq!(r.headers.get("HOST"), Some(&b"x"[..]));
}

#[test]
fn content_length_body() {
    let r = only_request(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(r.method, Method::Post);
    assert_eq!(&r.body[..], b"hello");
}

#[test]
fn header_values_trim_optional_whitespace() {
    let r = only_request(b"GET / HTTP/1.1\r\nHost:   x  \r\nX-A:\tb c\t\r\n\r\n");
    assert_eq!(r.headers.get("host"), Some(&b"x"[..]));
    assert_eq!(r.headers.get("x-a"), Some(&b"b c"[..]));
}

#[test]
fn header_names_are_case_insensitive() {
    let r = only_request(b"POST / HTTP/1.1\r\nhOsT: x\r\ncOnTeNt-LeNgTh: 2\r\n\r\nok");
    assert_eq!(&r.body[..], b"ok");
}

#[test]
fn query_is_split_from_path() {
    let r = only_request(b"GET /events?type=a&limit=2 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.path(), b"/events");
    assert_eq!(r.query(), b"type=a&limit=2");
}

#[test]
fn leading_empty_lines_are_ignored() {
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line first.
    let r = only_request(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(&r.target[..], b"/");
}

#[test]
fn pipelined_requests_come_out_in_order() {
    let out = decode_whole(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nzGET /c HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(out.error, None);
    let targets: Vec<_> = out
        .items
        .iter()
        .map(|i| match i {
            Inbound::Request(r) => r.target.clone(),
            Inbound::Continue(_) => panic!("no continue expected"),
        })
        .collect();
    assert_eq!(targets, vec![Bytes::from("/a"), Bytes::from("/b"), Bytes::from("/c")]);
}

#[test]
fn clean_eof_between_requests_is_not_an_error() {
    assert_eq!(decode_whole(b"").error, None);
    assert_eq!(decode_whole(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").error, None);
}

#[test]
fn eof_inside_head_is_incomplete() {
    assert_eq!(error_of(b"GET / HTTP/1.1\r\nHost:"), HttpError::IncompleteMessage);
}

#[test]
fn eof_inside_body_is_incomplete() {
    assert_eq!(error_of(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc"), HttpError::IncompleteMessage);
}

// --- persistence (RFC 9112 §9.3) ------------------------------------------

#[test]
fn http11_keeps_alive_by_default() {
    assert!(only_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").keep_alive);
}

#[test]
fn connection_close_is_honoured() {
    assert!(!only_request(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n").keep_alive);
    assert!(!only_request(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: te, close\r\n\r\n").keep_alive);
}

#[test]
fn http10_closes_unless_keep_alive() {
    let r = only_request(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.version, Version::Http10);
    assert!(!r.keep_alive);
    assert!(only_request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
}

#[test]
fn http10_needs_no_host() {
    assert_eq!(only_request(b"GET / HTTP/1.0\r\n\r\n").headers.len(), 0);
}

// --- chunked (RFC 9112 §7.1) ----------------------------------------------

#[test]
fn chunked_body_is_assembled() {
    let r = only_request(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(&r.body[..], b"hello world");
}

#[test]
fn chunk_sizes_in_either_hex_case() {
    let r = only_request(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n");
    assert_eq!(r.body.len(), 20);
}

#[test]
fn chunk_extensions_are_ignored() {
    let r = only_request(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;name=value;x=\"q\"\r\nabc\r\n2 ; ext\r\nde\r\n0;last\r\n\r\n");
    assert_eq!(&r.body[..], b"abcde");
}

#[test]
fn chunk_trailers_are_ignored() {
    let out = decode_whole(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out.error, None);
    match &out.items[..] {
        [Inbound::Request(a), Inbound::Request(b)] => {
            assert_eq!(&a.body[..], b"abc");
            assert_eq!(&b.target[..], b"/next");
        }
        other => panic!("expected two requests, got {other:?}"),
    }
}

#[test]
fn transfer_encoding_chunked_is_case_insensitive() {
    let r = only_request(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ChUnKeD\r\n\r\n0\r\n\r\n");
    assert_eq!(r.body.len(), 0);
}

#[test]
fn chunk_size_overflow_is_rejected() {
    let limits = Limits { max_head: 16384, max_body: usize::MAX };
    let out =
        decode_with(limits, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n");
    assert_eq!(out.error, Some(HttpError::ChunkSizeOverflow));
    assert_eq!(HttpError::ChunkSizeOverflow.status(), 400);
}

#[test]
fn chunk_size_must_be_hex() {
    assert_eq!(
        error_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        HttpError::InvalidChunkSize
    );
    assert_eq!(
        error_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n"),
        HttpError::InvalidChunkSize
    );
    assert_eq!(
        error_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\r\n"),
        HttpError::InvalidChunkSize
    );
    assert_eq!(
        error_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n"),
        HttpError::InvalidChunkSize
    );
}

#[test]
fn chunk_size_line_with_bare_lf_is_rejected() {
    assert_eq!(
        error_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n"),
        HttpError::InvalidChunkSize
    );
}

#[test]
fn chunk_data_must_end_in_crlf() {
    assert_eq!(
        error_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n"),
        HttpError::InvalidChunkTerminator
    );
    assert_eq!(
        error_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n"),
        HttpError::InvalidChunkTerminator
    );
}

#[test]
fn chunk_extension_with_control_character_is_rejected() {
    assert_eq!(
        error_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;a\x00b\r\nabc\r\n"),
        HttpError::InvalidChunkExtension
    );
}

#[test]
fn chunked_body_over_limit_is_413_before_data_arrives() {
    let limits = Limits { max_head: 16384, max_body: 10 };
    let out =
        decode_with(limits, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n");
    assert_eq!(out.error, Some(HttpError::BodyTooLarge));
    assert_eq!(HttpError::BodyTooLarge.status(), 413);
}

#[test]
fn trailer_with_obs_fold_is_rejected() {
    assert_eq!(
        error_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n folded\r\n\r\n"),
        HttpError::InvalidTrailer
    );
}

#[test]
fn trailers_over_limit_are_431() {
    let limits = Limits { max_head: 64, max_body: 1024 };
    let mut input = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
    input.extend_from_slice(format!("X-Big: {}\r\n\r\n", "a".repeat(100)).as_bytes());
    assert_eq!(decode_with(limits, &input).error, Some(HttpError::TrailersTooLarge));
    assert_eq!(HttpError::TrailersTooLarge.status(), 431);
}

// --- request smuggling (RFC 9112 §6.1, §6.3) -------------------------------

#[test]
fn hrs_content_length_with_transfer_encoding_is_400() {
    let e = error_of(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(e, HttpError::ContentLengthWithTransferEncoding);
    assert_eq!(e.status(), 400);
}

#[test]
fn hrs_transfer_encoding_before_content_length_is_400() {
    let e = error_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n");
    assert_eq!(e, HttpError::ContentLengthWithTransferEncoding);
}

#[test]
fn hrs_differing_content_lengths_are_400() {
    let e = error_of(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd");
    assert_eq!(e, HttpError::ConflictingContentLength);
    assert_eq!(e.status(), 400);
    assert_eq!(
        error_of(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd"),
        HttpError::ConflictingContentLength
    );
}

#[test]
fn hrs_identical_content_lengths_are_accepted() {
    // RFC 9110 §8.6 allows treating a list of identical values as one.
    let r = only_request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabc");
    assert_eq!(&r.body[..], b"abc");
}

#[test]
fn hrs_content_length_must_be_plain_decimal() {
    for bad in ["+3", "-3", "0x3", "3 3", "3.0", "", "1e2", "３"] {
        let input = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {bad}\r\n\r\nabc");
        let e = error_of(input.as_bytes());
        assert!(
            e == HttpError::InvalidContentLength || e == HttpError::InvalidHeaderValue,
            "Content-Length {bad:?} gave {e:?}"
        );
        assert_eq!(e.status(), 400);
    }
    assert_eq!(
        error_of(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\nabc"),
        HttpError::InvalidContentLength
    );
}

#[test]
fn hrs_content_length_overflowing_u64_is_413() {
    assert_eq!(
        error_of(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
        HttpError::BodyTooLarge
    );
}

#[test]
fn hrs_transfer_coding_other_than_chunked_is_501() {
    for te in ["gzip", "gzip, chunked", "chunked, gzip", "identity", "chunked;q=1"] {
        let input = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n");
        let e = error_of(input.as_bytes());
        assert_eq!(e, HttpError::UnsupportedTransferCoding, "Transfer-Encoding {te:?}");
        assert_eq!(e.status(), 501);
    }
}

#[test]
fn hrs_chunked_twice_is_400() {
    assert_eq!(
        error_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"),
        HttpError::ChunkedTwice
    );
    assert_eq!(
        error_of(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        HttpError::ChunkedTwice
    );
}

#[test]
fn hrs_empty_transfer_encoding_is_rejected() {
    assert_eq!(
        error_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n"),
        HttpError::UnsupportedTransferCoding
    );
}

#[test]
fn hrs_transfer_encoding_on_http10_is_400() {
    let e = error_of(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(e, HttpError::TransferEncodingOnHttp10);
    assert_eq!(e.status(), 400);
}

#[test]
fn hrs_space_before_colon_is_400() {
    let e = error_of(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc");
    assert_eq!(e, HttpError::InvalidHeaderName);
    assert_eq!(e.status(), 400);
    assert_eq!(error_of(b"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n"), HttpError::InvalidHeaderName);
}

#[test]
fn hrs_obsolete_line_folding_is_400() {
    let e = error_of(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: one\r\n  two\r\n\r\n");
    assert_eq!(e, HttpError::ObsoleteLineFolding);
    assert_eq!(error_of(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: one\r\n\ttwo\r\n\r\n"), HttpError::ObsoleteLineFolding);
}

#[test]
fn hrs_bare_lf_is_400() {
    assert_eq!(error_of(b"GET / HTTP/1.1\nHost: x\r\n\r\n"), HttpError::BareLf);
    assert_eq!(error_of(b"GET / HTTP/1.1\r\nHost: x\n\r\n"), HttpError::BareLf);
    assert_eq!(error_of(b"GET / HTTP/1.1\r\nHost: x\r\n\n"), HttpError::BareLf);
}

#[test]
fn control_character_in_header_value_is_400() {
    for ctl in [0x00u8, 0x01, 0x0b, 0x0c, 0x1f, 0x7f] {
        let mut input = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a".to_vec();
        input.push(ctl);
        input.extend_from_slice(b"b\r\n\r\n");
        assert_eq!(error_of(&input), HttpError::InvalidHeaderValue, "byte {ctl:#04x}");
    }
    // A CR alone inside a value is a control character too.
    assert!(matches!(
        error_of(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"),
        HttpError::InvalidHeaderValue | HttpError::InvalidHeaderName
    ));
}

#[test]
fn horizontal_tab_inside_header_value_is_allowed() {
    let r = only_request(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\tb\r\n\r\n");
    assert_eq!(r.headers.get("x-a"), Some(&b"a\tb"[..]));
}

#[test]
fn control_character_in_header_name_is_400() {
    assert_eq!(error_of(b"GET / HTTP/1.1\r\nHost: x\r\nX\x01A: b\r\n\r\n"), HttpError::InvalidHeaderName);
    assert_eq!(error_of(b"GET / HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n"), HttpError::InvalidHeaderName);
}

// --- Host (RFC 9112 §3.2) ---------------------------------------------------

#[test]
fn http11_without_host_is_400() {
    let e = error_of(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(e, HttpError::MissingHost);
    assert_eq!(e.status(), 400);
}

#[test]
fn several_hosts_are_400() {
    assert_eq!(error_of(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), HttpError::MultipleHost);
    assert_eq!(error_of(b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"), HttpError::MultipleHost);
}

// --- request line -----------------------------------------------------------

#[test]
fn malformed_request_line_is_400() {
    for bad in [
        &b"GET\r\n\r\n"[..],
        b"GET / \r\nHost: x\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / FOO/1.1\r\nHost: x\r\n\r\n",
    ] {
        let e = error_of(bad);
        assert_eq!(e, HttpError::InvalidRequestLine, "{:?}", String::from_utf8_lossy(bad));
        assert_eq!(e.status(), 400);
    }
}

#[test]
fn other_http_version_is_505() {
    let e = error_of(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n");
    assert_eq!(e, HttpError::UnsupportedVersion);
    assert_eq!(e.status(), 505);
}

// --- 411 ---------------------------------------------------------------------

#[test]
fn post_without_length_is_411() {
    let e = error_of(b"POST /events HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(e, HttpError::LengthRequired);
    assert_eq!(e.status(), 411);
    assert_eq!(error_of(b"PUT / HTTP/1.1\r\nHost: x\r\n\r\n"), HttpError::LengthRequired);
}

#[test]
fn post_with_zero_length_is_a_request_with_empty_body() {
    assert_eq!(only_request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").body.len(), 0);
}

// --- limits ------------------------------------------------------------------

#[test]
fn content_length_over_max_body_is_413_before_any_body() {
    let limits = Limits { max_head: 16384, max_body: 100 };
    let out = decode_with(limits, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n");
    assert_eq!(out.error, Some(HttpError::BodyTooLarge));
    assert!(out.items.is_empty());
    let ok = decode_with(
        limits,
        &[&b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"[..], &[b'a'; 100]].concat(),
    );
    assert_eq!(ok.error, None);
}

#[test]
fn head_over_max_head_is_431() {
    let limits = Limits { max_head: 200, max_body: 100 };
    let input = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(300));
    let out = decode_with(limits, input.as_bytes());
    assert_eq!(out.error, Some(HttpError::HeadTooLarge));
    assert_eq!(HttpError::HeadTooLarge.status(), 431);
}

#[test]
fn head_over_max_head_is_431_even_before_it_ends() {
    let limits = Limits { max_head: 200, max_body: 100 };
    let input = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}", "a".repeat(300));
    assert_eq!(decode_with(limits, input.as_bytes()).error, Some(HttpError::HeadTooLarge));
}

#[test]
fn head_at_exactly_max_head_is_accepted() {
    let base = "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n";
    let input = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "p".repeat(100));
    let limits = Limits { max_head: base.len() + 100, max_body: 0 };
    assert_eq!(decode_with(limits, input.as_bytes()).error, None);
    let limits = Limits { max_head: base.len() + 99, max_body: 0 };
    assert_eq!(decode_with(limits, input.as_bytes()).error, Some(HttpError::HeadTooLarge));
}

#[test]
fn more_than_100_headers_is_431() {
    let mut input = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..99 {
        input.push_str(&format!("X-{i}: v\r\n"));
    }
    let exactly_100 = format!("{input}\r\n");
    assert_eq!(decode_whole(exactly_100.as_bytes()).error, None);
    input.push_str("X-last: v\r\n\r\n");
    let e = error_of(input.as_bytes());
    assert_eq!(e, HttpError::TooManyHeaders);
    assert_eq!(e.status(), 431);
}

#[test]
fn long_request_target_is_414() {
    let limits = Limits { max_head: 100, max_body: 0 };
    let input = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200));
    let out = decode_with(limits, input.as_bytes());
    assert_eq!(out.error, Some(HttpError::UriTooLong));
    assert_eq!(HttpError::UriTooLong.status(), 414);
    // Also when the request line has not ended yet.
    let partial = format!("GET /{}", "a".repeat(200));
    assert_eq!(decode_with(limits, partial.as_bytes()).error, Some(HttpError::UriTooLong));
}

// --- Expect: 100-continue (RFC 9110 §10.1.1) --------------------------------

#[test]
fn expect_continue_yields_head_before_body() {
    let head = b"POST /events HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    let out = common::decode_pieces(Limits::default(), [&head[..], b"abc"]);
    assert_eq!(out.error, None);
    assert_eq!(out.items.len(), 2);
    match &out.items[0] {
        Inbound::Continue(h) => assert_eq!(&h.target[..], b"/events"),
        other => panic!("expected Continue, got {other:?}"),
    }
    match &out.items[1] {
        Inbound::Request(r) => assert_eq!(&r.body[..], b"abc"),
        other => panic!("expected Request, got {other:?}"),
    }
}

#[test]
fn expect_continue_with_body_already_buffered_needs_no_continue() {
    let out = decode_whole(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(out.items.len(), 1);
    assert!(matches!(out.items[0], Inbound::Request(_)));
}

#[test]
fn expect_continue_with_refused_length_is_the_final_error() {
    let limits = Limits { max_head: 16384, max_body: 10 };
    let out = decode_with(limits, b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n");
    assert!(out.items.is_empty());
    assert_eq!(out.error, Some(HttpError::BodyTooLarge));
}

#[test]
fn expect_continue_is_ignored_from_http10() {
    let out = common::decode_pieces(
        Limits::default(),
        [&b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"[..], b"abc"],
    );
    assert_eq!(out.items.len(), 1);
}

// --- after an error ----------------------------------------------------------

#[test]
fn decoder_does_not_spin_after_an_error() {
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;
    let mut codec = inlet_shared::http::ServerCodec::new(Limits::default());
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
    assert!(codec.decode(&mut buf).is_err());
    assert!(buf.is_empty(), "the bad bytes are dropped");
    buf.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(codec.decode(&mut buf).is_err(), "the framing stays lost");
}

#[test]
fn every_codec_error_maps_to_a_4xx_or_5xx() {
    use HttpError::*;
    for e in [
        InvalidRequestLine,
        UnsupportedVersion,
        BareLf,
        ObsoleteLineFolding,
        InvalidHeaderName,
        InvalidHeaderValue,
        HeadTooLarge,
        TooManyHeaders,
        UriTooLong,
        MissingHost,
        MultipleHost,
        InvalidHost,
        InvalidRequestTarget,
        ConnectNotSupported,
        ContentLengthWithTransferEncoding,
        ConflictingContentLength,
        InvalidContentLength,
        TransferEncodingOnHttp10,
        UnsupportedTransferCoding,
        ChunkedTwice,
        LengthRequired,
        BodyTooLarge,
        InvalidChunkSize,
        ChunkSizeOverflow,
        InvalidChunkExtension,
        InvalidChunkTerminator,
        InvalidTrailer,
        TrailersTooLarge,
        IncompleteMessage,
    ] {
        assert!((400..600).contains(&e.status()), "{e:?}");
        assert!(!e.to_string().is_empty());
        // The status table has a reason phrase for every status a codec error maps to.
        assert!(inlet_shared::http::status::reason_phrase(e.status()).is_some(), "{e:?}");
        // Error texts speak of the protocol, not of a server's flags.
        assert!(!e.to_string().contains("--"), "{e:?}");
    }
}

// --- issue 11 §1: outside testing ---------------------------------------------

/// The status of the single error decoding `input` whole ends with.
fn status_of(input: &[u8]) -> u16 {
    error_of(input).status()
}

/// Decodes `input` with a fresh codec (ignoring the outcome), then encodes
/// `responses` through the same codec and returns the bytes written.
fn answer(input: &[u8], responses: Vec<inlet_shared::http::Response>) -> Vec<u8> {
    use bytes::BytesMut;
    use tokio_util::codec::{Decoder, Encoder};
    let mut codec = inlet_shared::http::ServerCodec::new(Limits::default());
    let mut buf = BytesMut::from(input);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
    let mut out = BytesMut::new();
    for res in responses {
        codec.encode(res, &mut out).expect("encode");
    }
    out.to_vec()
}

fn problem(status: u16) -> inlet_shared::http::Response {
    inlet_shared::http::Response::json(status, &b"{\"status\":1}"[..])
}

/// Strips the `Date` line, whose value changes every second.
fn without_date(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).lines().filter(|l| !l.starts_with("Date: ")).collect::<Vec<_>>().join("\n")
}

#[test]
fn response_to_head_has_no_body_whatever_its_status() {
    for status in [200, 404, 405, 415, 500] {
        let out = answer(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n", vec![problem(status)]);
        let text = without_date(&out);
        assert!(text.contains("Content-Length: 12\n"), "{text}");
        assert!(out.ends_with(b"\r\n\r\n"), "status {status}: body sent: {text}");
    }
}

#[test]
fn pipelined_get_and_head_are_answered_in_order() {
    let out = answer(
        b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nHEAD /c HTTP/1.1\r\nHost: x\r\n\r\n",
        vec![problem(404), problem(404), problem(404)],
    );
    let text = without_date(&out);
    // Only the second response (to the GET) carries the 12 bytes.
    assert_eq!(text.matches("{\"status\":1}").count(), 1, "{text}");
    assert!(text.contains("\n\n{\"status\":1}HTTP/1.1 404 Not Found\n"), "{text}");
    assert!(out.ends_with(b"Content-Length: 12\r\n\r\n"), "{text}");
}

#[test]
fn continue_does_not_take_the_head_flag() {
    use bytes::BytesMut;
    use inlet_shared::http::{Continue, ServerCodec};
    use tokio_util::codec::{Decoder, Encoder};
    let mut codec = ServerCodec::new(Limits::default());
    let mut buf =
        BytesMut::from(&b"HEAD /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"[..]);
    assert!(matches!(codec.decode(&mut buf), Ok(Some(Inbound::Continue(_)))));
    let mut out = BytesMut::new();
    codec.encode(Continue, &mut out).expect("encode");
    buf.extend_from_slice(b"okGET /y HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(matches!(codec.decode(&mut buf), Ok(Some(Inbound::Request(_)))));
    assert!(matches!(codec.decode(&mut buf), Ok(Some(Inbound::Request(_)))));
    codec.encode(problem(405), &mut out).expect("encode");
    codec.encode(problem(404), &mut out).expect("encode");
    let text = without_date(&out);
    assert!(text.starts_with("HTTP/1.1 100 Continue\n\nHTTP/1.1 405 Method Not Allowed\n"), "{text}");
    assert!(text.contains("Content-Length: 12\n\nHTTP/1.1 404"), "{text}");
    assert!(out.ends_with(b"\r\n\r\n{\"status\":1}"), "{text}");
}

#[test]
fn refusal_of_expect_continue_to_head_has_no_body() {
    let out =
        answer(b"HEAD /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", vec![problem(405)]);
    assert!(out.ends_with(b"Content-Length: 12\r\n\r\n"), "{}", without_date(&out));
}

#[test]
fn error_response_to_a_refused_head_request_has_no_body() {
    for bad in [
        &b"HEAD /x HTTP/1.1\r\n\r\n"[..],
        b"HEAD /x HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"HEAD /x HTTP/1.1\r\nHost: x\r\nX\x01: y\r\n\r\n",
        b"HEAD /x HTTP/1.1\nHost: x\r\n\r\n",
        b"HEAD /x HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
        b"HEAD /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HEAD /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"\r\nHEAD /x HTTP/2.0\r\nHost: x\r\n\r\n",
    ] {
        let out = answer(bad, vec![problem(400)]);
        assert!(out.ends_with(b"Content-Length: 12\r\n\r\n"), "{}", String::from_utf8_lossy(bad));
    }
    let long = format!("HEAD /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(20_000));
    let out = answer(long.as_bytes(), vec![problem(414)]);
    assert!(out.ends_with(b"Content-Length: 12\r\n\r\n"));
}

#[test]
fn error_response_to_an_unfinished_head_request_has_no_body() {
    // A 408 for a request whose head never completed: the method is read
    // from the bytes of the request line received so far.
    for partial in [&b"HEAD"[..], b"HEAD /x", b"HEAD /x HTTP/1.1\r\nHost: x\r\n", b"\r\nHEAD /"] {
        let out = answer(partial, vec![problem(408)]);
        assert!(out.ends_with(b"Content-Length: 12\r\n\r\n"), "{}", String::from_utf8_lossy(partial));
    }
    for not_head in [&b""[..], b"HEA", b"HEADX /", b"GET /x", b"head /x"] {
        let out = answer(not_head, vec![problem(408)]);
        assert!(out.ends_with(b"{\"status\":1}"), "{}", String::from_utf8_lossy(not_head));
    }
    // A body that never completes: the parsed head says HEAD.
    let out = answer(b"HEAD /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab", vec![problem(408)]);
    assert!(out.ends_with(b"Content-Length: 12\r\n\r\n"));
}

#[test]
fn omit_body_still_works_without_a_request() {
    let mut res = problem(200);
    res.omit_body = true;
    let out = answer(b"", vec![res]);
    assert!(out.ends_with(b"Content-Length: 12\r\n\r\n"));
}

#[test]
fn absolute_form_target_is_routed_by_its_path_and_query() {
    let r = only_request(b"GET http://127.0.0.1:8080/health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.path(), b"/health");
    assert_eq!(r.query(), b"");
    let r = only_request(b"GET HTTPS://inlet.example/events?type=a HTTP/1.1\r\nHost: other\r\n\r\n");
    assert_eq!(r.path(), b"/events");
    assert_eq!(r.query(), b"type=a");
    let r = only_request(b"GET http://[::1]:80?limit=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.path(), b"/");
    assert_eq!(r.query(), b"limit=1");
    let r = only_request(b"GET http://a HTTP/1.0\r\n\r\n");
    assert_eq!(r.path(), b"/");
}

#[test]
fn absolute_form_still_needs_a_valid_host_header() {
    assert_eq!(status_of(b"GET http://a/health HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status_of(b"GET http://a/health HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
}

#[test]
fn malformed_absolute_form_target_is_400() {
    for bad in [
        &b"http:/a/health"[..],
        b"http:a/health",
        b"http:///health",
        b"http://",
        b"ftp://a/health",
        b"http://u@a/health",
        b"http://a b/health",
        b"http://a:8x/health",
        b"http://[::1/health",
        b"1http://a/",
        b"health",
    ] {
        let input = [&b"GET "[..], bad, b" HTTP/1.1\r\nHost: x\r\n\r\n"].concat();
        assert_eq!(status_of(&input), 400, "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn asterisk_form_only_for_options() {
    let r = only_request(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.path(), b"*");
    assert_eq!(status_of(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
}

#[test]
fn connect_is_501_and_authority_form_elsewhere_is_400() {
    assert_eq!(status_of(b"CONNECT inlet.example:443 HTTP/1.1\r\nHost: inlet.example:443\r\n\r\n"), 501);
    assert_eq!(status_of(b"GET inlet.example:443 HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
}

#[test]
fn trailer_lines_must_be_header_fields() {
    for bad in [&b"GET /stats HTTP/1.1"[..], b"bad trailer", b"X-T : 1", b": 1", b"X(T: 1", b"X-T: a\x01b"] {
        let input = [
            &b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"[..],
            bad,
            b"\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
        ]
        .concat();
        let out = decode_whole(&input);
        assert!(out.items.is_empty(), "{}: {:?}", String::from_utf8_lossy(bad), out.items);
        assert_eq!(out.error, Some(HttpError::InvalidTrailer), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn trailer_fields_with_ows_and_empty_values_are_accepted() {
    let r = only_request(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-A:1\r\nX-B: \t v w \r\nX-C:\r\n\r\n",
    );
    assert_eq!(r.body.len(), 0);
}

#[test]
fn host_must_be_a_valid_host_and_port() {
    for bad in [&b"a b"[..], b"a, b", b"u@a", b"a:8x", b"a:80:80", b"[::1", b"a/b", b"a%zz", b"\xc3\xa9"] {
        let input = [&b"GET / HTTP/1.1\r\nHost: "[..], bad, b"\r\n\r\n"].concat();
        assert_eq!(status_of(&input), 400, "{}", String::from_utf8_lossy(bad));
    }
    for good in
        [&b""[..], b"a", b"inlet.example:8080", b"127.0.0.1", b"[::1]:80", b"a%41b", b"x_y-z~!$&'()*+,;=", b"a:"]
    {
        let input = [&b"GET / HTTP/1.1\r\nHost: "[..], good, b"\r\n\r\n"].concat();
        assert_eq!(decode_whole(&input).error, None, "{}", String::from_utf8_lossy(good));
    }
}

#[test]
fn bytes_not_allowed_in_a_target_are_400() {
    for bad in
        [&b"/caf\xc3\xa9"[..], b"/\x80", b"/a\"b", b"/a<b>", b"/a\\b", b"/a{b}", b"/a|b", b"/a^b", b"/a`b", b"/a#b"]
    {
        let input = [&b"GET "[..], bad, b" HTTP/1.1\r\nHost: x\r\n\r\n"].concat();
        assert_eq!(status_of(&input), 400, "{}", String::from_utf8_lossy(bad));
    }
    let r = only_request(b"GET /a-b_c.d~e!$&'()*+,;=:@/%20?q=/?x HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.path(), b"/a-b_c.d~e!$&'()*+,;=:@/%20");
}

#[test]
fn request_line_with_extra_spaces_is_400_not_505() {
    for bad in [&b"GET /ec ho HTTP/1.1"[..], b"POST /echo  HTTP/1.1", b"GET / HTTP/1.1 ", b"GET /a b c HTTP/2.0"] {
        let input = [bad, b"\r\nHost: x\r\nContent-Length: 0\r\n\r\n"].concat();
        assert_eq!(error_of(&input), HttpError::InvalidRequestLine, "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(status_of(b"GET / HTTP/3.0\r\nHost: x\r\n\r\n"), 505);
}

#[test]
fn host_is_checked_on_every_request_of_a_connection() {
    // The decoder remembers the last valid Host of a connection; a later
    // request with an invalid one is still refused.
    let long = format!("{}.example", "h".repeat(60));
    for first in ["inlet.example:8080", "", long.as_str()] {
        let input = format!(
            "GET / HTTP/1.1\r\nHost: {first}\r\n\r\nGET / HTTP/1.1\r\nHost: {first}\r\n\r\nGET / HTTP/1.1\r\nHost: {first}@x\r\n\r\n"
        );
        let out = decode_whole(input.as_bytes());
        assert_eq!(out.items.len(), 2, "{first}");
        assert_eq!(out.error, Some(HttpError::InvalidHost), "{first}");
    }
    let out = decode_whole(
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a:\r\n\r\nGET / HTTP/1.1\r\nHost: a:x\r\n\r\n",
    );
    assert_eq!(out.items.len(), 2);
    assert_eq!(out.error, Some(HttpError::InvalidHost));
}
