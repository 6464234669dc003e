//! The client side of the codec, the mirror of the server pair: an encoder
//! for requests and a decoder for responses (RFC 9112 §6.3 framing:
//! no body for `HEAD`/1xx/204/304, chunked, `Content-Length`, or read to EOF).
//! `Content-Length` and `Transfer-Encoding` follow the same rules as on the
//! server side, through the same code (`framing.rs`): `+5` or two differing
//! lengths are errors, not a length.
//! Interim 1xx responses are skipped. Requests may be pipelined: the codec
//! remembers which requests were `HEAD` so it frames their answers right.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::framing::{BodyDecoder, FramingFields};
use super::head::HeadScanner;
use super::message::{Headers, Method, Version};
use super::{CodecError, HttpError};

const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const MAX_RESPONSE_HEADERS: usize = 100;

/// A request to send. `Host` comes from the codec, `Content-Length` from the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    pub method: Method,
    pub target: Bytes,
    pub headers: Vec<(Bytes, Bytes)>,
    pub body: Bytes,
    /// Send `Connection: close`.
    pub close: bool,
}

impl ClientRequest {
    pub fn get(target: impl Into<Bytes>) -> ClientRequest {
        ClientRequest {
            method: Method::Get,
            target: target.into(),
            headers: Vec::new(),
            body: Bytes::new(),
            close: false,
        }
    }

    pub fn post(target: impl Into<Bytes>, content_type: &'static str, body: impl Into<Bytes>) -> ClientRequest {
        ClientRequest {
            method: Method::Post,
            target: target.into(),
            headers: vec![(Bytes::from_static(b"Content-Type"), Bytes::from_static(content_type.as_bytes()))],
            body: body.into(),
            close: false,
        }
    }

    pub fn header(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> ClientRequest {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A decoded response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    pub status: u16,
    pub version: Version,
    pub headers: Headers,
    pub body: Bytes,
}

impl ClientResponse {
    /// Whether the server will close the connection after this response.
    pub fn closes(&self) -> bool {
        let close_token = self
            .headers
            .get_all("connection")
            .any(|v| v.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close")));
        close_token || self.version == Version::Http10
    }
}

// One codec per connection, in place: boxing the large variant (the
// headers' inline offsets) would cost an allocation per response instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum State {
    Head,
    Body { status: u16, version: Version, headers: Headers, body: BodyDecoder },
}

/// Client side of the HTTP/1.1 codec.
#[derive(Debug)]
pub struct ClientCodec {
    host: Bytes,
    /// For each request sent and not yet answered: was it `HEAD`?
    in_flight: VecDeque<bool>,
    scanner: HeadScanner,
    state: State,
    max_body: usize,
}

impl ClientCodec {
    /// `host` is sent as the `Host` header of every request.
    pub fn new(host: impl Into<Bytes>) -> ClientCodec {
        ClientCodec {
            host: host.into(),
            in_flight: VecDeque::new(),
            scanner: HeadScanner::default(),
            state: State::Head,
            max_body: 64 * 1024 * 1024,
        }
    }

    /// Requests sent whose responses have not been decoded yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<ClientResponse>, HttpError> {
        while let State::Head = self.state {
            if !self.decode_head(buf)? {
                return Ok(None);
            }
        }
        self.decode_data(buf)
    }

    /// Frames one response head. `Ok(false)`: the head is not complete.
    /// Interim responses are skipped (the state stays `Head`).
    fn decode_head(&mut self, buf: &mut BytesMut) -> Result<bool, HttpError> {
        let Some(span) = self.scanner.scan(buf, MAX_RESPONSE_HEAD, MAX_RESPONSE_HEADERS)? else {
            return Ok(false);
        };
        buf.advance(span.skip);
        let head = buf.split_to(span.len).freeze();
        let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut res = httparse::Response::new(&mut slots);
        match res.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(HttpError::InvalidResponse),
        }
        let (Some(status), Some(minor)) = (res.code, res.version) else {
            return Err(HttpError::InvalidResponse);
        };
        // RFC 9110 §15.2: interim responses precede the final one; skip them.
        if (100..200).contains(&status) && status != 101 {
            return Ok(true);
        }
        let version = if minor == 0 { Version::Http10 } else { Version::Http11 };
        let mut headers = Headers::with_buffer(head.clone(), res.headers.len());
        let mut framing = FramingFields::default();
        for field in res.headers.iter() {
            let value = field.value.trim_ascii();
            if field.name.eq_ignore_ascii_case("content-length") {
                framing.content_length(value)?;
            } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
                framing.transfer_encoding(value);
            }
            headers.push_slices(field.name.as_bytes(), value);
        }
        // The same rules as a request's, checked whether or not a body follows.
        let framing = framing.framing(version)?;
        let to_head = self.in_flight.front().copied().unwrap_or(false);
        let body = if to_head || status == 204 || status == 304 {
            BodyDecoder::Length(0)
        } else {
            match framing {
                Some(framing) => BodyDecoder::new(framing, self.max_body, MAX_RESPONSE_HEAD)?,
                None => BodyDecoder::UntilEof,
            }
        };
        self.state = State::Body { status, version, headers, body };
        Ok(true)
    }

    /// The response once its body is complete.
    fn decode_data(&mut self, buf: &mut BytesMut) -> Result<Option<ClientResponse>, HttpError> {
        let State::Body { body, .. } = &mut self.state else { return Ok(None) };
        Ok(body.decode(buf)?.map(|body| self.finish(body)))
    }

    fn finish(&mut self, body: Bytes) -> ClientResponse {
        self.in_flight.pop_front();
        match std::mem::replace(&mut self.state, State::Head) {
            State::Body { status, version, headers, .. } => ClientResponse { status, version, headers, body },
            State::Head => unreachable!("finish is called in the body state"),
        }
    }
}

impl Decoder for ClientCodec {
    type Item = ClientResponse;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ClientResponse>, CodecError> {
        Ok(self.decode_inner(buf)?)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<ClientResponse>, CodecError> {
        if let Some(res) = self.decode(buf)? {
            return Ok(Some(res));
        }
        match &self.state {
            State::Body { body: BodyDecoder::UntilEof, .. } => {
                let body = buf.split().freeze();
                Ok(Some(self.finish(body)))
            }
            State::Head if buf.is_empty() && self.scanner.is_fresh() => Ok(None),
            _ => Err(HttpError::IncompleteMessage.into()),
        }
    }
}

impl Encoder<ClientRequest> for ClientCodec {
    type Error = CodecError;

    fn encode(&mut self, req: ClientRequest, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.reserve(128 + req.target.len() + req.body.len());
        dst.extend_from_slice(req.method.as_str().as_bytes());
        dst.extend_from_slice(b" ");
        dst.extend_from_slice(&req.target);
        dst.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        dst.extend_from_slice(&self.host);
        dst.extend_from_slice(b"\r\n");
        for (name, value) in &req.headers {
            dst.extend_from_slice(name);
            dst.extend_from_slice(b": ");
            dst.extend_from_slice(value);
            dst.extend_from_slice(b"\r\n");
        }
        if !req.body.is_empty() || req.method.expects_body() {
            dst.extend_from_slice(b"Content-Length: ");
            dst.extend_from_slice(itoa::Buffer::new().format(req.body.len()).as_bytes());
            dst.extend_from_slice(b"\r\n");
        }
        if req.close {
            dst.extend_from_slice(b"Connection: close\r\n");
        }
        dst.extend_from_slice(b"\r\n");
        dst.extend_from_slice(&req.body);
        self.in_flight.push_back(req.method == Method::Head);
        Ok(())
    }
}
