//! Fuzzes the server decoder: arbitrary bytes, fed whole and split at a
//! position taken from the input, must never panic, and must decode the
//! same way both times (split invariance).
#![no_main]

use bytes::BytesMut;
use inlet_shared::http::{Inbound, Limits, ServerCodec};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fn run(pieces: &[&[u8]], limits: Limits) -> (Vec<Inbound>, Option<String>) {
    let mut codec = ServerCodec::new(limits);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => return (items, Some(e.to_string())),
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, None),
            Err(e) => return (items, Some(e.to_string())),
        }
    }
}

fn requests(out: (Vec<Inbound>, Option<String>)) -> (Vec<Inbound>, Option<String>) {
    (out.0.into_iter().filter(|i| matches!(i, Inbound::Request(_))).collect(), out.1)
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let limits = Limits { max_head: 512, max_body: 1024 };
    let at = data[0] as usize % data.len();
    let input = &data[1..];
    let at = at.min(input.len());
    let whole = requests(run(&[input], limits));
    let split = requests(run(&[&input[..at], &input[at..]], limits));
    assert_eq!(whole, split, "split at {at} changed the result");
});
