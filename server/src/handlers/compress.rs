//! Content codings on the server (`inlet_shared::http::coding` does the
//! work): decoding a `POST /events` body before it is parsed, the `415` for
//! a coding not supported, and compressed responses.
//!
//! Where decoding runs. A body whose compressed size is at most
//! [`INLINE_WIRE`] is decoded on the connection's worker thread for up to
//! [`INLINE_DECODED`] bytes of output (a typical batch ends there: a few
//! tens of microseconds); whatever is left, and every larger compressed
//! body from its first byte, is decoded on tokio's blocking pool, at most
//! [`decode_slots`] bodies at a time. So a client uploading large
//! compressed batches (or a bomb, decoded up to `--max-decoded-body`)
//! never holds the worker thread that serves other connections for more
//! than one bounded slice. See docs/performance.md for the measurement.

use std::borrow::Cow;
use std::sync::OnceLock;

use bytes::Bytes;
use inlet_shared::http::coding::{self, BodyDecoder, Coding, CodingError, StreamEncoder};
use inlet_shared::http::{Body, Headers, Request, Response};
use inlet_shared::problem::Problem;
use tokio::sync::Semaphore;

use super::App;

/// Compressed bodies up to this size start decoding on the worker thread.
pub const INLINE_WIRE: usize = 64 * 1024;
/// Decoded bytes produced on the worker thread before the rest of a body
/// moves to the blocking pool.
pub const INLINE_DECODED: usize = 256 * 1024;
/// Responses with a shorter body are sent uncompressed: below about 1 KiB
/// the coding's header and trailer eat most of the gain.
pub const MIN_COMPRESSED_RESPONSE: usize = 1024;

/// Bodies decoded on the blocking pool at once (one per CPU): a bound on
/// the CPU and memory (`--max-decoded-body` each) spent on decoding.
fn decode_slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
}

/// The answer to a body that cannot be decoded, counted by reason; a `415`
/// says which codings are accepted (RFC 9110 §12.5.3).
pub fn reject(app: &App, e: &CodingError) -> Response {
    let res = app.reject(Problem::new(e.status(), e.reason(), e.to_string()));
    if e.status() == 415 {
        res.with_header("Accept-Encoding", coding::ACCEPT_ENCODING)
    } else {
        res
    }
}

/// The `415` for a request whose `Content-Encoding` is not supported,
/// decided from the head (so `Expect: 100-continue` gets it before the body).
pub fn refusal(app: &App, headers: &Headers) -> Option<Response> {
    coding::content_codings(headers).err().map(|e| reject(app, &e))
}

/// The body of `req` with its content codings undone, within
/// `--max-decoded-body`; or the answer refusing it. An identity body is
/// the request's own, borrowed (no copy, and no reference count taken and
/// given back).
pub async fn decode_request<'r>(app: &App, req: &'r Request) -> Result<Cow<'r, Bytes>, Response> {
    let codings = coding::content_codings(&req.headers).map_err(|e| reject(app, &e))?;
    let label = app.stats.body_coding(&codings);
    app.stats.record_wire_bytes(label, req.body.len());
    let limit = app.parse_limits.max_decoded_body;
    if codings.is_empty() {
        // The usual case: nothing to undo, so no decoder is built (it
        // allocates); the decoded body is the body as received.
        if req.body.len() > limit {
            return Err(reject(app, &CodingError::TooLarge { limit }));
        }
        app.stats.record_decoded_bytes(label, req.body.len());
        return Ok(Cow::Borrowed(&req.body));
    }
    let mut decoder = BodyDecoder::new(&codings, req.body.clone(), limit).map_err(|e| reject(app, &e))?;
    let done = if req.body.len() <= INLINE_WIRE {
        decoder.step(INLINE_DECODED).map_err(|e| reject(app, &e))?
    } else {
        decoder.is_done()
    };
    if !done {
        decoder = off_thread(decoder).await.map_err(|e| match e {
            Some(e) => reject(app, &e),
            None => {
                let mut res =
                    app.reject(Problem::new(503, "decoder-unavailable", "the body could not be decoded; retry"));
                res.retry_after = Some(1);
                res
            }
        })?;
    }
    app.stats.record_decoded_bytes(label, decoder.decoded_len());
    Ok(Cow::Owned(decoder.into_body()))
}

/// Finishes `decoder` on the blocking pool. `Err(None)`: the pool is gone
/// (the runtime is shutting down).
async fn off_thread(mut decoder: BodyDecoder) -> Result<BodyDecoder, Option<CodingError>> {
    let _slot = decode_slots().acquire().await.map_err(|_| None)?;
    let decoded = tokio::task::spawn_blocking(move || decoder.step(usize::MAX).map(|_| decoder)).await;
    match decoded {
        Ok(Ok(decoder)) => Ok(decoder),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// `res` compressed with the coding the request accepts best (zstd, gzip;
/// `Accept-Encoding` q-values), with `Content-Encoding`; `Vary:
/// Accept-Encoding` in every case, since the representation depends on it.
/// Bodies under [`MIN_COMPRESSED_RESPONSE`] stay as they are.
pub fn response(request: &Headers, res: Response) -> Response {
    let mut res = res.with_header("Vary", "Accept-Encoding");
    let Body::Full(whole) = &res.body else { return res };
    if whole.len() < MIN_COMPRESSED_RESPONSE {
        return res;
    }
    let Some(coding) = coding::negotiate(request.get("accept-encoding")) else { return res };
    match coding.encode(whole) {
        Ok(body) => {
            res.body = Body::Full(body);
            res.with_header("Content-Encoding", coding.name())
        }
        // Encoding into memory does not fail; if it did, identity is correct.
        Err(_) => res,
    }
}

/// For a body streamed in chunks (`GET /events`): the encoder to pass every
/// chunk through (`StreamEncoder::chunk`, then `finish` for the last bytes)
/// and the value of `Content-Encoding`, or `None` to send it as it is. The
/// response also gets `Vary: Accept-Encoding` either way.
pub fn stream(request: &Headers) -> Option<(StreamEncoder, &'static str)> {
    let coding: Coding = coding::negotiate(request.get("accept-encoding"))?;
    StreamEncoder::new(coding).ok().map(|e| (e, coding.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepting(value: &str) -> Headers {
        Headers::from_pairs(&[("Accept-Encoding", value)])
    }

    fn header<'a>(res: &'a Response, name: &str) -> Option<&'a [u8]> {
        res.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| &v[..])
    }

    #[test]
    fn responses_under_the_threshold_stay_uncompressed_and_say_vary() {
        let body = |n: usize| Bytes::from(vec![b'a'; n]);
        let under = response(&accepting("gzip"), Response::json(200, body(MIN_COMPRESSED_RESPONSE - 1)));
        assert_eq!(header(&under, "vary"), Some(&b"Accept-Encoding"[..]));
        assert_eq!(header(&under, "content-encoding"), None);
        assert_eq!(under.body.bytes().len(), MIN_COMPRESSED_RESPONSE - 1);

        let at = response(&accepting("gzip"), Response::json(200, body(MIN_COMPRESSED_RESPONSE)));
        assert_eq!(header(&at, "vary"), Some(&b"Accept-Encoding"[..]));
        assert_eq!(header(&at, "content-encoding"), Some(&b"gzip"[..]));
        let decoded = coding::decode(&[Coding::Gzip], Bytes::copy_from_slice(at.body.bytes()), 1 << 20).unwrap();
        assert_eq!(decoded, body(MIN_COMPRESSED_RESPONSE));

        let none = response(&Headers::from_pairs::<&str, &str>(&[]), Response::json(200, body(4096)));
        assert_eq!((header(&none, "content-encoding"), none.body.bytes().len()), (None, 4096));
    }

    #[test]
    fn the_stream_hook_follows_accept_encoding() {
        let (mut e, name) = stream(&accepting("gzip;q=0.4, zstd")).unwrap();
        assert_eq!(name, "zstd");
        let mut wire = e.chunk(b"{\"events\":[").unwrap().to_vec();
        wire.extend_from_slice(&e.chunk(b"]}").unwrap());
        wire.extend_from_slice(&e.finish().unwrap());
        assert_eq!(coding::decode(&[Coding::Zstd], Bytes::from(wire), 100).unwrap(), &b"{\"events\":[]}"[..]);
        assert!(stream(&accepting("br, identity")).is_none());
        assert!(stream(&Headers::from_pairs::<&str, &str>(&[])).is_none());
    }
}
