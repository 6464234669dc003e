//! Compressed bodies: `--compress gzip|zstd` for what the client sends,
//! and the bounded decoding of what the server sends back (`events`). The
//! codings themselves (encoders, the capped decoder) are
//! `inlet_shared::http::coding`, the same code the server decodes with.

use std::io;

use bytes::Bytes;
use inlet_shared::http::coding::{self, CodingError};
use inlet_shared::http::{ClientRequest, ClientResponse};

/// What `events` offers in `Accept-Encoding`.
pub const ACCEPT_ENCODING: &str = "zstd, gzip";
/// The largest decoded response body accepted (a page of `events`); larger
/// is refused while decoding, never held.
pub const MAX_DECODED: usize = 128 * 1024 * 1024;

/// A coding the client can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Coding {
    Gzip,
    Zstd,
}

impl Coding {
    fn shared(self) -> coding::Coding {
        match self {
            Coding::Gzip => coding::Coding::Gzip,
            Coding::Zstd => coding::Coding::Zstd,
        }
    }

    pub fn name(self) -> &'static str {
        self.shared().name()
    }

    /// Compresses `body` (gzip level 6, zstd level 3: each one's default).
    pub fn encode(self, body: &[u8]) -> io::Result<Bytes> {
        self.shared().encode(body)
    }
}

/// The request with its body compressed and `Content-Encoding` set; as it
/// was without a coding. `Content-Length` (from the codec) is the
/// compressed size.
pub fn apply(coding: Option<Coding>, mut req: ClientRequest) -> io::Result<ClientRequest> {
    let Some(coding) = coding else { return Ok(req) };
    req.body = coding.encode(&req.body)?;
    Ok(req.header(Bytes::from_static(b"Content-Encoding"), Bytes::from_static(coding.name().as_bytes())))
}

/// Why a response body could not be decoded.
pub type DecodeError = CodingError;

/// The body of `res` with its `Content-Encoding` undone (codings in
/// reverse order, two at most), the output of every layer capped at
/// `limit` bytes as it comes out of the decoder.
pub fn decode_body(res: &ClientResponse, limit: usize) -> Result<Bytes, DecodeError> {
    let codings = coding::content_codings(&res.headers)?;
    coding::decode(&codings, res.body.clone(), limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_shared::http::{Headers, Version};
    use std::io::Write;

    fn response(encoding: &[&str], body: Bytes) -> ClientResponse {
        let headers: Vec<(&str, &str)> = encoding.iter().map(|e| ("Content-Encoding", *e)).collect();
        ClientResponse { status: 200, version: Version::Http11, headers: Headers::from_pairs(&headers), body }
    }

    fn sample() -> Vec<u8> {
        (0..5000).flat_map(|i| format!("{{\"seq\":{i},\"data\":\"abcdefgh\"}}\n").into_bytes()).collect()
    }

    #[test]
    fn each_coding_round_trips() {
        let plain = sample();
        for coding in [Coding::Gzip, Coding::Zstd] {
            let packed = coding.encode(&plain).unwrap();
            assert!(packed.len() < plain.len() / 4, "{coding:?}: {}", packed.len());
            let res = response(&[coding.name()], packed);
            assert_eq!(decode_body(&res, MAX_DECODED).unwrap(), plain, "{coding:?}");
        }
        // identity and no header: the body as it is.
        let same = Bytes::from(plain.clone());
        assert_eq!(decode_body(&response(&["identity"], same.clone()), MAX_DECODED).unwrap(), same);
        assert_eq!(decode_body(&response(&[], Bytes::from_static(b"abc")), 3).unwrap(), Bytes::from_static(b"abc"));
    }

    #[test]
    fn the_request_is_compressed_with_its_header() {
        let req = ClientRequest::post("/events", "application/x-ndjson", Bytes::from(sample()));
        let req = apply(Some(Coding::Zstd), req).unwrap();
        assert!(req.headers.contains(&(Bytes::from_static(b"Content-Encoding"), Bytes::from_static(b"zstd"))));
        assert_eq!(zstd::decode_all(&req.body[..]).unwrap(), sample());
        let plain = ClientRequest::post("/events", "application/x-ndjson", Bytes::from_static(b"{}"));
        assert_eq!(apply(None, plain.clone()).unwrap(), plain);
    }

    #[test]
    fn stacked_codings_are_undone_in_reverse_order() {
        let plain = sample();
        let inner = Coding::Gzip.encode(&plain).unwrap();
        let outer = Coding::Zstd.encode(&inner).unwrap();
        assert_eq!(decode_body(&response(&["gzip, zstd"], outer.clone()), MAX_DECODED).unwrap(), plain);
        assert_eq!(decode_body(&response(&["gzip", "zstd"], outer), MAX_DECODED).unwrap(), plain);
        let three = response(&["gzip, gzip, gzip"], Bytes::new());
        assert!(matches!(decode_body(&three, MAX_DECODED), Err(DecodeError::TooManyLayers(3))));
    }

    #[test]
    fn the_decoded_size_is_capped_at_the_limit() {
        let zeros = vec![0u8; 1 << 20];
        for coding in [Coding::Gzip, Coding::Zstd] {
            let res = response(&[coding.name()], coding.encode(&zeros).unwrap());
            assert_eq!(decode_body(&res, zeros.len()).unwrap().len(), zeros.len(), "{coding:?} at the limit");
            assert!(
                matches!(decode_body(&res, zeros.len() - 1), Err(DecodeError::TooLarge { limit }) if limit == zeros.len() - 1),
                "{coding:?} one past"
            );
        }
    }

    #[test]
    fn gzip_members_all_count() {
        let mut two = Coding::Gzip.encode(&[b'a'; 600]).unwrap().to_vec();
        two.extend_from_slice(&Coding::Gzip.encode(&[b'b'; 600]).unwrap());
        let res = response(&["x-gzip"], Bytes::from(two));
        assert_eq!(decode_body(&res, 1200).unwrap().len(), 1200);
        assert!(matches!(decode_body(&res, 1000), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn corrupt_unknown_and_huge_window_streams_are_refused() {
        let mut packed = Coding::Zstd.encode(&sample()).unwrap().to_vec();
        packed.truncate(packed.len() / 2);
        assert!(matches!(
            decode_body(&response(&["zstd"], Bytes::from(packed)), MAX_DECODED),
            Err(DecodeError::Corrupt { .. })
        ));
        let garbage = Bytes::from_static(b"not gzip at all");
        assert!(matches!(decode_body(&response(&["gzip"], garbage), MAX_DECODED), Err(DecodeError::Corrupt { .. })));
        assert!(
            matches!(decode_body(&response(&["br"], Bytes::new()), MAX_DECODED), Err(DecodeError::Unknown(c)) if c == "br")
        );
        // A frame compressed with a 2^30 window (long-distance mode) needs
        // more than the cap allows: refused, not allocated.
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.set_parameter(zstd::zstd_safe::CParameter::WindowLog(30)).unwrap();
        e.set_parameter(zstd::zstd_safe::CParameter::EnableLongDistanceMatching(true)).unwrap();
        e.write_all(&[7u8; 4096]).unwrap();
        let big_window = e.finish().unwrap();
        assert!(matches!(
            decode_body(&response(&["zstd"], Bytes::from(big_window)), MAX_DECODED),
            Err(DecodeError::Corrupt { .. })
        ));
    }
}
