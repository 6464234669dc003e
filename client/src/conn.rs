//! Connections: where the server is ([`Endpoint`]: address, TLS, token),
//! the stream to it ([`Stream`]: plain TCP or TLS), `Framed<Stream,
//! ClientCodec>` over it, and one-shot helpers.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use inlet_shared::http::{ClientCodec, ClientRequest, ClientResponse, CodecError};
use inlet_shared::problem::Problem;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::codec::Framed;

use crate::exit;

pub type Transport = Framed<Stream, ClientCodec>;

/// A bearer token. It is never shown: `Debug` prints a placeholder, and no
/// message of the client includes it. Parsing never fails (so clap never
/// echoes the value in an error); [`Token::check`] says what is wrong
/// without repeating it.
#[derive(Clone)]
pub struct Token(Bytes);

impl std::str::FromStr for Token {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Token, Self::Err> {
        Ok(Token(Bytes::copy_from_slice(s.as_bytes())))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token is visible ASCII (RFC 6750's b64token and more), not empty.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.0.is_empty() {
            Err("--token (or INLET_TOKEN) is empty")
        } else if !self.0.iter().all(|b| b.is_ascii_graphic()) {
            Err("--token (or INLET_TOKEN) must be visible ASCII characters, without spaces")
        } else {
            Ok(())
        }
    }

    fn header_value(&self) -> Bytes {
        let mut v = Vec::with_capacity(7 + self.0.len());
        v.extend_from_slice(b"Bearer ");
        v.extend_from_slice(&self.0);
        Bytes::from(v)
    }
}

/// Where and how to reach the server.
pub struct Endpoint {
    /// `host:port`, to connect to and for the `Host` header.
    pub addr: String,
    /// The host alone, for the TLS server name.
    host: String,
    tls: Option<TlsConnector>,
    /// `Authorization` value, prepared once.
    authorization: Option<Bytes>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("token", &self.authorization.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A `--server` value taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// `host:port`.
    pub addr: String,
    /// The host without brackets or port.
    pub host: String,
    /// `https://` was given.
    pub https: bool,
}

/// Parses `host:port`, `http://host[:port]` or `https://host[:port]`
/// (IPv6 in brackets). A path is not allowed: the client knows its paths.
pub fn parse_server(s: &str) -> Result<ServerAddr, String> {
    let (rest, https, default_port) = if let Some(r) = s.strip_prefix("https://") {
        (r, true, Some(443))
    } else if let Some(r) = s.strip_prefix("http://") {
        (r, false, Some(80))
    } else if s.contains("://") {
        return Err(format!("--server {s}: only http:// and https:// are understood"));
    } else {
        (s, false, None)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err(format!("--server {s}: give host:port, without a path"));
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or_else(|| format!("--server {s}: unclosed '['"))?;
            (host, after.strip_prefix(':'))
        }
        None => match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        },
    };
    let port: u16 = match (port, default_port) {
        (Some(p), _) => p.parse().map_err(|_| format!("--server {s}: the port must be a number, 1..65535"))?,
        (None, Some(d)) => d,
        (None, None) => return Err(format!("--server {s}: give host:port")),
    };
    if host.is_empty() || port == 0 {
        return Err(format!("--server {s}: give host:port"));
    }
    let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    Ok(ServerAddr { addr, host: host.to_string(), https })
}

impl Endpoint {
    /// A plain-TCP endpoint without a token.
    #[cfg(test)]
    pub fn plain(addr: impl Into<String>) -> Endpoint {
        let addr = addr.into();
        let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h).trim_matches(['[', ']']).to_string();
        Endpoint { addr, host, tls: None, authorization: None }
    }

    pub fn new(server: ServerAddr, tls: Option<Arc<rustls::ClientConfig>>, token: Option<&Token>) -> Endpoint {
        Endpoint {
            addr: server.addr,
            host: server.host,
            tls: tls.map(TlsConnector::from),
            authorization: token.map(Token::header_value),
        }
    }

    #[cfg(test)]
    pub fn with_tls(mut self, config: Arc<rustls::ClientConfig>) -> Endpoint {
        self.tls = Some(TlsConnector::from(config));
        self
    }

    #[cfg(test)]
    pub fn with_token(mut self, token: &Token) -> Endpoint {
        self.authorization = Some(token.header_value());
        self
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Adds what every request carries: the token.
    pub fn authorize(&self, req: ClientRequest) -> ClientRequest {
        match &self.authorization {
            Some(value) => req.header(Bytes::from_static(b"Authorization"), value.clone()),
            None => req,
        }
    }
}

/// Plain TCP or TLS over TCP: every subcommand works over both.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach {0}: {1}")]
    Io(String, io::Error),
    #[error("TLS with {0} failed: {1}{hint}", hint = tls_hint(.1))]
    Tls(String, io::Error),
}

impl ConnectError {
    /// A TLS failure is not retried: it will fail the same way again.
    pub fn is_tls(&self) -> bool {
        matches!(self, ConnectError::Tls(..))
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            ConnectError::Io(..) => exit::UNREACHABLE,
            ConnectError::Tls(..) => exit::TLS,
        }
    }
}

/// The rustls error inside an I/O error, if that is what it is.
pub fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn tls_hint(e: &io::Error) -> &'static str {
    match rustls_error(e) {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)) => {
            " (the certificate does not name the host in --server)"
        }
        Some(rustls::Error::InvalidCertificate(_)) => {
            " (the server's certificate is not signed by a trusted CA: for a private CA, pass --ca FILE)"
        }
        Some(rustls::Error::AlertReceived(_)) => " (the server refused the handshake: does it want --cert and --key?)",
        Some(rustls::Error::InvalidMessage(_)) => " (is the server speaking TLS on that port?)",
        _ => "",
    }
}

/// Opens the stream to `ep`: TCP, then the TLS handshake if configured.
pub async fn connect_stream(ep: &Endpoint) -> Result<Stream, ConnectError> {
    let tcp = TcpStream::connect(&ep.addr).await.map_err(|e| ConnectError::Io(ep.addr.clone(), e))?;
    tcp.set_nodelay(true).map_err(|e| ConnectError::Io(ep.addr.clone(), e))?;
    let Some(connector) = &ep.tls else { return Ok(Stream::Plain(tcp)) };
    let name = ServerName::try_from(ep.host.clone()).map_err(|e| {
        ConnectError::Tls(ep.addr.clone(), io::Error::new(io::ErrorKind::InvalidInput, format!("server name: {e}")))
    })?;
    let tls = connector.connect(name, tcp).await.map_err(|e| ConnectError::Tls(ep.addr.clone(), e))?;
    Ok(Stream::Tls(Box::new(tls)))
}

/// Opens a connection to `ep`, framed by the client codec.
pub async fn connect(ep: &Endpoint) -> Result<Transport, ConnectError> {
    let stream = connect_stream(ep).await?;
    Ok(Framed::new(stream, ClientCodec::new(ep.addr.clone())))
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("connection failed: {0}{hint}", hint = codec_hint(.0))]
    Codec(#[from] CodecError),
    #[error("the server closed the connection without answering")]
    Closed,
}

fn codec_hint(e: &CodecError) -> &'static str {
    match e {
        CodecError::Io(io) if rustls_error(io).is_some() => tls_hint(io),
        _ => "",
    }
}

impl ExchangeError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ExchangeError::Connect(e) => e.exit_code(),
            // With TLS 1.3 the server checks a client certificate after the
            // client's side of the handshake: its refusal comes on the first read.
            ExchangeError::Codec(CodecError::Io(io)) if rustls_error(io).is_some() => exit::TLS,
            _ => exit::UNREACHABLE,
        }
    }
}

/// Sends one request and waits for its response.
pub async fn exchange(t: &mut Transport, req: ClientRequest) -> Result<ClientResponse, ExchangeError> {
    t.send(req).await?;
    match t.next().await {
        Some(Ok(res)) => Ok(res),
        Some(Err(e)) => Err(e.into()),
        None => Err(ExchangeError::Closed),
    }
}

/// Connects, sends one request (with the token), returns its response.
pub async fn once(ep: &Endpoint, req: ClientRequest) -> Result<ClientResponse, ExchangeError> {
    let mut t = connect(ep).await?;
    exchange(&mut t, ep.authorize(req)).await
}

/// Prints an error to stderr and returns the matching exit code.
pub fn report(e: &ExchangeError) -> u8 {
    eprintln!("inlet-client: {e}");
    e.exit_code()
}

/// "HTTP 401: detail" from a response with a problem body, or "HTTP 401".
pub fn describe(res: &ClientResponse) -> String {
    let problem = serde_json::from_slice::<Problem>(&res.body).ok();
    match problem.as_ref().map(|p| p.detail.as_str()).filter(|d| !d.is_empty()) {
        Some(detail) => format!("HTTP {}: {detail}", res.status),
        None => format!("HTTP {}", res.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        let ok = |s: &str, addr: &str, host: &str, https: bool| {
            assert_eq!(parse_server(s), Ok(ServerAddr { addr: addr.into(), host: host.into(), https }), "{s}")
        };
        ok("127.0.0.1:8080", "127.0.0.1:8080", "127.0.0.1", false);
        ok("http://localhost:9", "localhost:9", "localhost", false);
        ok("https://inlet.example:8443/", "inlet.example:8443", "inlet.example", true);
        ok("https://inlet.example", "inlet.example:443", "inlet.example", true);
        ok("http://inlet.example", "inlet.example:80", "inlet.example", false);
        ok("[::1]:8080", "[::1]:8080", "::1", false);
        ok("https://[::1]", "[::1]:443", "::1", true);
        for bad in ["localhost", "ftp://x:1", "https://x:1/events", "x:0", "x:99999", "x:port", ":80", "[::1"] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_token_is_never_shown() {
        let token: Token = "s3cret-token".parse().unwrap();
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        let ep = Endpoint::plain("127.0.0.1:1").with_token(&token);
        let shown = format!("{ep:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let req = ep.authorize(ClientRequest::get("/stats"));
        assert_eq!(
            req.headers,
            vec![(Bytes::from_static(b"Authorization"), Bytes::from_static(b"Bearer s3cret-token"))]
        );
        assert_eq!(
            Token::from_str_checked("a b").map(|_| ()),
            Err("--token (or INLET_TOKEN) must be visible ASCII characters, without spaces")
        );
        assert_eq!(Token::from_str_checked("").map(|_| ()), Err("--token (or INLET_TOKEN) is empty"));
        assert_eq!(
            Token::from_str_checked("line\nbreak").map(|_| ()),
            Err("--token (or INLET_TOKEN) must be visible ASCII characters, without spaces")
        );
    }

    impl Token {
        fn from_str_checked(s: &str) -> Result<Token, &'static str> {
            let t: Token = s.parse().map_err(|_| "infallible")?;
            t.check().map(|()| t)
        }
    }

    #[test]
    fn problems_are_described_with_their_detail() {
        let body = r#"{"type":"about:blank","title":"Unauthorized","status":401,"detail":"unknown token"}"#;
        let res = ClientResponse {
            status: 401,
            version: inlet_shared::http::Version::Http11,
            headers: Default::default(),
            body: Bytes::from_static(body.as_bytes()),
        };
        assert_eq!(describe(&res), "HTTP 401: unknown token");
    }
}
