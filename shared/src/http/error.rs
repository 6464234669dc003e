//! Protocol errors of the codec. Each knows its status code; every one of
//! them ends the connection, because after it the framing is lost or the rest
//! of the message was not read.

use std::io;

/// A protocol violation found while framing a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    // --- request line and header section (RFC 9112 §2-§5) ---
    #[error("malformed request line")]
    InvalidRequestLine,
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    #[error("line ends in a bare LF; HTTP/1.1 lines end in CRLF")]
    BareLf,
    #[error("obsolete line folding is not accepted (RFC 9112 §5.2)")]
    ObsoleteLineFolding,
    #[error("invalid header name (whitespace before the colon or a non-token character)")]
    InvalidHeaderName,
    #[error("invalid header value (control character)")]
    InvalidHeaderValue,
    #[error("request line and headers exceed the limit")]
    HeadTooLarge,
    #[error("more header fields than the limit")]
    TooManyHeaders,
    #[error("request-target exceeds the limit")]
    UriTooLong,
    #[error("HTTP/1.1 request without a Host header")]
    MissingHost,
    #[error("request with more than one Host header")]
    MultipleHost,
    #[error("Host is not a valid host and optional port")]
    InvalidHost,
    #[error("malformed request-target (bytes or form not allowed)")]
    InvalidRequestTarget,
    #[error("CONNECT is not supported: this server is not a proxy")]
    ConnectNotSupported,
    // --- body length (RFC 9112 §6) ---
    #[error("both Content-Length and Transfer-Encoding are present")]
    ContentLengthWithTransferEncoding,
    #[error("several differing Content-Length values")]
    ConflictingContentLength,
    #[error("Content-Length is not a plain decimal number")]
    InvalidContentLength,
    #[error("Transfer-Encoding on an HTTP/1.0 request")]
    TransferEncodingOnHttp10,
    #[error("the only transfer coding supported is chunked")]
    UnsupportedTransferCoding,
    #[error("chunked applied more than once")]
    ChunkedTwice,
    #[error("this method needs a Content-Length or chunked body")]
    LengthRequired,
    #[error("body exceeds the limit")]
    BodyTooLarge,
    // --- chunked coding (RFC 9112 §7.1) ---
    #[error("invalid chunk size")]
    InvalidChunkSize,
    #[error("chunk size overflows")]
    ChunkSizeOverflow,
    #[error("invalid chunk extension")]
    InvalidChunkExtension,
    #[error("chunk data not followed by CRLF")]
    InvalidChunkTerminator,
    #[error("invalid trailer field")]
    InvalidTrailer,
    #[error("trailer section exceeds the limit")]
    TrailersTooLarge,
    // --- end of stream ---
    #[error("connection closed in the middle of a message")]
    IncompleteMessage,
    // --- responses (client side) ---
    #[error("malformed response")]
    InvalidResponse,
}

impl HttpError {
    /// The status code the server answers with.
    pub fn status(self) -> u16 {
        use HttpError::*;
        match self {
            LengthRequired => 411,
            BodyTooLarge => 413,
            UriTooLong => 414,
            HeadTooLarge | TooManyHeaders | TrailersTooLarge => 431,
            UnsupportedTransferCoding | ConnectNotSupported => 501,
            UnsupportedVersion => 505,
            _ => 400,
        }
    }

    /// Short machine-readable name, used as the problem type and in stats.
    pub fn reason(self) -> &'static str {
        match self.status() {
            411 => "length-required",
            413 => "payload-too-large",
            414 => "uri-too-long",
            431 => "header-fields-too-large",
            501 => "not-implemented",
            505 => "version-not-supported",
            _ => "malformed-request",
        }
    }
}

/// Error type of the codecs: I/O from the transport, or a protocol error.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl CodecError {
    pub fn http(&self) -> Option<HttpError> {
        match self {
            CodecError::Http(e) => Some(*e),
            CodecError::Io(_) => None,
        }
    }
}
