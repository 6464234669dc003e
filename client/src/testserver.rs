//! A stand-in HTTP/1.1 server for the engines' unit tests: it frames
//! requests by `Content-Length` only and answers each from a script, so a
//! test decides exactly what every request of every connection gets. It
//! speaks plain TCP or TLS (tokio-rustls, certificates from [`Pki`], made
//! at test time with rcgen), optionally requiring a client certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the server does with the `n`-th request (from 0) of a connection.
pub enum Answer {
    /// Write these bytes (a whole response) and read the next request.
    Reply(String),
    /// Write these bytes, then close the connection.
    ReplyThenClose(String),
    /// Write these bytes (a whole response, binary allowed) and read on.
    Raw(Vec<u8>),
    /// Close the connection without answering.
    Close,
}

/// A request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The header fields, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A `202` as inlet sends it for `accepted` new events.
pub fn accepted(accepted: usize) -> Answer {
    let body = format!("{{\"accepted\":{accepted},\"duplicates\":0}}");
    Answer::Reply(format!(
        "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// A problem+json answer with these extra header lines (each ending `\r\n`).
pub fn problem(status: u16, extra: &str, detail: &str) -> Answer {
    let body = format!(r#"{{"type":"about:blank","title":"refused","status":{status},"detail":"{detail}"}}"#);
    Answer::Reply(format!(
        "HTTP/1.1 {status} Refused\r\nContent-Type: application/problem+json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// Starts a plain server; `script(n, body)` answers the `n`-th request of
/// each connection.
pub async fn start(script: impl Fn(usize, &[u8]) -> Answer + Send + Sync + 'static) -> SocketAddr {
    start_with(None, move |n, req: &Request| script(n, &req.body)).await
}

/// Starts a server, over TLS with `tls`; `script(n, request)` answers the
/// `n`-th request of each connection.
pub async fn start_with(
    tls: Option<Arc<rustls::ServerConfig>>,
    script: impl Fn(usize, &Request) -> Answer + Send + Sync + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let script = Arc::new(script);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let script = script.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    None => serve(stream, &*script).await,
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            serve(tls, &*script).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn serve(stream: impl AsyncRead + AsyncWrite + Unpin, script: &(impl Fn(usize, &Request) -> Answer + ?Sized)) {
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    for n in 0.. {
        let mut length = 0usize;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if !matches!(reader.read_line(&mut line).await, Ok(read) if read > 0) {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim().to_string();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0);
                }
                headers.push((name.to_string(), value));
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        match script(n, &Request { headers, body }) {
            Answer::Reply(bytes) => {
                if write.write_all(bytes.as_bytes()).await.is_err() || write.flush().await.is_err() {
                    return;
                }
            }
            Answer::Raw(bytes) => {
                if write.write_all(&bytes).await.is_err() || write.flush().await.is_err() {
                    return;
                }
            }
            Answer::ReplyThenClose(bytes) => {
                let _ = write.write_all(bytes.as_bytes()).await;
                let _ = write.flush().await;
                let _ = write.shutdown().await;
                return;
            }
            Answer::Close => return,
        }
    }
}

/// A CA, a server certificate for `127.0.0.1` and `localhost`, and a
/// client certificate, all made now.
pub struct Pki {
    pub ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_der: CertificateDer<'static>,
    server_key: Vec<u8>,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, format!("inlet test CA {}", uuid::Uuid::new_v4()));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = ca.self_signed(&ca_key).expect("CA certificate");

        let server_key = KeyPair::generate().expect("server key");
        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
        server.distinguished_name.push(DnType::CommonName, "inlet test server");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = server.signed_by(&server_key, &ca, &ca_key).expect("server certificate");

        let client_key = KeyPair::generate().expect("client key");
        let mut client = CertificateParams::new(Vec::<String>::new()).expect("params");
        client.distinguished_name.push(DnType::CommonName, "inlet-test-client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client.signed_by(&client_key, &ca, &ca_key).expect("client certificate");

        Pki {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            server_der: server.der().clone(),
            server_key: server_key.serialize_der(),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    /// The CA's certificate, DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca_der.clone()
    }

    /// The server's TLS configuration; with `require_client_cert`, only
    /// clients with a certificate from this CA get through (mTLS).
    pub fn server_config(&self, require_client_cert: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der.clone()).expect("CA into the store");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let mut config = builder.with_single_cert(vec![self.server_der.clone()], key).expect("server certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}
