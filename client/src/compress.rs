//! Compressed bodies: `--compress gzip|zstd` for what the client sends,
//! and the bounded decoding of what the server sends back (`events`).

use std::io::{self, Read, Write};

use bytes::Bytes;
use inlet_shared::http::{ClientRequest, ClientResponse};

/// What `events` offers in `Accept-Encoding`.
pub const ACCEPT_ENCODING: &str = "zstd, gzip";
/// The largest decoded response body accepted (a page of `events`); larger
/// is refused while decoding, never held.
pub const MAX_DECODED: usize = 128 * 1024 * 1024;
/// zstd's largest window accepted when decoding (2^27 = 128 MiB, zstd's
/// own default limit): a frame cannot demand more memory than this.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// Stacked codings undone at most.
const MAX_LAYERS: usize = 2;

/// A coding the client can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Coding {
    Gzip,
    Zstd,
}

impl Coding {
    pub fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Zstd => "zstd",
        }
    }

    /// Compresses `body` (gzip level 6, zstd level 3: each one's default).
    pub fn encode(self, body: &[u8]) -> io::Result<Bytes> {
        match self {
            Coding::Gzip => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::default());
                e.write_all(body)?;
                Ok(Bytes::from(e.finish()?))
            }
            Coding::Zstd => Ok(Bytes::from(zstd::bulk::compress(body, zstd::DEFAULT_COMPRESSION_LEVEL)?)),
        }
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
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the server used a coding not asked for: {0}")]
    Unknown(String),
    #[error("more than {MAX_LAYERS} stacked codings")]
    TooManyLayers,
    #[error("the decoded response passes {0} bytes")]
    TooLarge(usize),
    #[error("the compressed response is corrupt: {0}")]
    Corrupt(io::Error),
}

/// The body of `res` with its `Content-Encoding` undone (codings in
/// reverse order), each layer's output capped at `limit` bytes as it comes
/// out of the decoder.
pub fn decode_body(res: &ClientResponse, limit: usize) -> Result<Bytes, DecodeError> {
    let codings: Vec<String> = res
        .headers
        .get_all("content-encoding")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|c| String::from_utf8_lossy(c.trim_ascii()).to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    if codings.len() > MAX_LAYERS {
        return Err(DecodeError::TooManyLayers);
    }
    let mut body = res.body.clone();
    for coding in codings.iter().rev() {
        body = decode(coding, &body, limit)?;
    }
    Ok(body)
}

fn decode(coding: &str, input: &[u8], limit: usize) -> Result<Bytes, DecodeError> {
    match coding {
        // Every gzip member counts (a multi-member stream is one body).
        "gzip" | "x-gzip" => read_bounded(flate2::read::MultiGzDecoder::new(input), limit),
        "deflate" => read_bounded(flate2::read::ZlibDecoder::new(input), limit),
        "zstd" => {
            let mut d = zstd::stream::read::Decoder::with_buffer(input).map_err(DecodeError::Corrupt)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(DecodeError::Corrupt)?;
            read_bounded(d, limit)
        }
        other => Err(DecodeError::Unknown(other.to_string())),
    }
}

/// Reads to the end, but never more than `limit + 1` bytes.
fn read_bounded(r: impl Read, limit: usize) -> Result<Bytes, DecodeError> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1).read_to_end(&mut out).map_err(DecodeError::Corrupt)?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge(limit));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_shared::http::{Headers, Version};

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
        assert!(matches!(decode_body(&three, MAX_DECODED), Err(DecodeError::TooManyLayers)));
    }

    #[test]
    fn the_decoded_size_is_capped_at_the_limit() {
        let zeros = vec![0u8; 1 << 20];
        for coding in [Coding::Gzip, Coding::Zstd] {
            let res = response(&[coding.name()], coding.encode(&zeros).unwrap());
            assert_eq!(decode_body(&res, zeros.len()).unwrap().len(), zeros.len(), "{coding:?} at the limit");
            assert!(
                matches!(decode_body(&res, zeros.len() - 1), Err(DecodeError::TooLarge(n)) if n == zeros.len() - 1),
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
        assert!(matches!(decode_body(&res, 1000), Err(DecodeError::TooLarge(_))));
    }

    #[test]
    fn corrupt_unknown_and_huge_window_streams_are_refused() {
        let mut packed = Coding::Zstd.encode(&sample()).unwrap().to_vec();
        packed.truncate(packed.len() / 2);
        assert!(matches!(
            decode_body(&response(&["zstd"], Bytes::from(packed)), MAX_DECODED),
            Err(DecodeError::Corrupt(_))
        ));
        let garbage = Bytes::from_static(b"not gzip at all");
        assert!(matches!(decode_body(&response(&["gzip"], garbage), MAX_DECODED), Err(DecodeError::Corrupt(_))));
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
            Err(DecodeError::Corrupt(_))
        ));
    }
}
