//! Helpers shared by the codec tests: feed bytes to a `ServerCodec` whole,
//! split, or one byte at a time, and collect what comes out.

#![allow(dead_code)]

use bytes::BytesMut;
use inlet_shared::http::{CodecError, HttpError, Inbound, Limits, ServerCodec};
use tokio_util::codec::Decoder;

/// What decoding a byte stream produced: the items, then the error that
/// ended it (if any).
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub items: Vec<Inbound>,
    pub error: Option<HttpError>,
}

fn drain(codec: &mut ServerCodec, buf: &mut BytesMut, items: &mut Vec<Inbound>) -> Result<(), HttpError> {
    loop {
        match codec.decode(buf) {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return Ok(()),
            Err(CodecError::Http(e)) => return Err(e),
            Err(CodecError::Io(e)) => panic!("unexpected io error {e}"),
        }
    }
}

/// Feeds `pieces` one after the other, decoding after each, then ends the
/// stream with `decode_eof`.
pub fn decode_pieces<'a>(limits: Limits, pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut codec = ServerCodec::new(limits);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        if let Err(e) = drain(&mut codec, &mut buf, &mut items) {
            return Outcome { items, error: Some(e) };
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return Outcome { items, error: None },
            Err(CodecError::Http(e)) => return Outcome { items, error: Some(e) },
            Err(CodecError::Io(e)) => panic!("unexpected io error {e}"),
        }
    }
}

pub fn decode_whole(input: &[u8]) -> Outcome {
    decode_pieces(Limits::default(), [input])
}

pub fn decode_with(limits: Limits, input: &[u8]) -> Outcome {
    decode_pieces(limits, [input])
}

pub fn decode_bytewise(limits: Limits, input: &[u8]) -> Outcome {
    decode_pieces(limits, input.chunks(1))
}

/// The `Continue` items are an artefact of how the input was split (a body
/// already buffered needs no `100 Continue`); compare requests only.
pub fn requests_only(outcome: &Outcome) -> (Vec<Inbound>, Option<HttpError>) {
    let items = outcome.items.iter().filter(|i| matches!(i, Inbound::Request(_))).cloned().collect();
    (items, outcome.error)
}

/// Asserts that splitting `input` at every position, and feeding it one byte
/// at a time, gives exactly the requests (and error) of the whole input.
pub fn assert_split_invariant(limits: Limits, input: &[u8]) {
    let whole = requests_only(&decode_pieces(limits, [input]));
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        let split = requests_only(&decode_pieces(limits, [a, b]));
        assert_eq!(split, whole, "split at byte {at} differs");
    }
    let bytewise = requests_only(&decode_bytewise(limits, input));
    assert_eq!(bytewise, whole, "one byte at a time differs");
}

/// The single error decoding `input` whole ends with.
pub fn error_of(input: &[u8]) -> HttpError {
    decode_whole(input).error.expect("expected a protocol error")
}
