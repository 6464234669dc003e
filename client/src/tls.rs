//! The client's TLS configuration: rustls with the `ring` provider, TLS 1.2
//! and 1.3 only, ALPN `http/1.1`.
//!
//! Trust: `--ca FILE` (PEM, one or more certificates) *replaces* the
//! default trust store, as curl's `--cacert` does, so a deployment on a
//! private CA trusts that CA alone. Without it, the operating system's
//! store (`rustls-native-certs`): it follows the machine's CA updates and
//! the CAs an administrator added, where a compiled-in list
//! (`webpki-roots`) would be frozen at build time and blind to a
//! company's own CA. `--cert FILE --key FILE` present a client certificate
//! (mTLS). `--insecure` checks nothing about the server's certificate
//! (the handshake's signatures still are) and is announced loudly.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::exit;

/// What the command line says about TLS.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub insecure: bool,
}

/// Printed on stderr whenever `--insecure` is used.
pub const INSECURE_WARNING: &str = "inlet-client: WARNING: --insecure: the server's certificate is NOT checked. \
Anyone on the network path can pose as the server and read or change everything sent, the token included. \
Use --ca FILE for a private CA instead.";

/// A configuration that cannot be built, with the exit code it means.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub message: String,
    pub code: u8,
}

fn usage(message: String) -> ConfigError {
    ConfigError { message, code: exit::USAGE }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the client configuration from the options; `native` supplies the
/// system's trust store when `--ca` is not given.
pub fn client_config(
    o: &Options,
    native: impl FnOnce() -> Vec<CertificateDer<'static>>,
) -> Result<ClientConfig, ConfigError> {
    if o.cert.is_some() != o.key.is_some() {
        return Err(usage("--cert and --key go together".into()));
    }
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| usage(format!("TLS: {e}")))?;
    let builder = if o.insecure {
        let verifier = NoServerVerification(provider.signature_verification_algorithms);
        builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
    } else {
        let mut roots = RootCertStore::empty();
        match &o.ca {
            Some(path) => {
                let certs = read_certs(path, "--ca")?;
                for cert in certs {
                    roots.add(cert).map_err(|e| usage(format!("--ca {}: {e}", path.display())))?;
                }
            }
            None => {
                let (added, _) = roots.add_parsable_certificates(native());
                if added == 0 {
                    return Err(ConfigError {
                        message: "TLS: no trusted root certificate found in the system's store; \
                                  install the CA certificates package or pass --ca FILE"
                            .into(),
                        code: exit::TLS,
                    });
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (&o.cert, &o.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "--cert")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| usage(format!("--key {}: no private key read: {e}", key.display())))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| usage(format!("--cert/--key: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The system's trust store; unreadable entries are skipped.
pub fn native_roots() -> Vec<CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}

fn read_certs(path: &PathBuf, flag: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| usage(format!("{flag} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(usage(format!("{flag} {}: no PEM certificate in it", path.display())));
    }
    Ok(certs)
}

/// `--insecure`: any certificate is taken; the handshake's signatures are
/// still verified, so the peer at least holds the key of what it showed.
#[derive(Debug)]
struct NoServerVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_are_usage_errors_and_no_roots_is_a_tls_error() {
        let o = Options { cert: Some("c.pem".into()), ..Options::default() };
        let e = client_config(&o, Vec::new).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (exit::USAGE, "--cert and --key go together"));
        let o = Options { ca: Some("/nonexistent/ca.pem".into()), ..Options::default() };
        let e = client_config(&o, Vec::new).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(e.message.starts_with("--ca /nonexistent/ca.pem: "), "{}", e.message);
        let e = client_config(&Options::default(), Vec::new).unwrap_err();
        assert_eq!(e.code, exit::TLS);
        assert!(e.message.contains("no trusted root certificate"), "{}", e.message);
    }

    #[test]
    fn alpn_is_http_1_1() {
        let o = Options { insecure: true, ..Options::default() };
        assert_eq!(client_config(&o, Vec::new).unwrap().alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}

/// The engines over TLS, against an in-test tokio-rustls server with
/// certificates made at test time.
#[cfg(test)]
mod over_tls {
    use std::io::Write;

    use inlet_shared::http::ClientRequest;

    use super::*;
    use crate::conn::{self, Endpoint};
    use crate::testserver::{self, Pki};

    fn pem_file(pem: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(pem.as_bytes()).unwrap();
        f
    }

    async fn server(pki: &Pki, mtls: bool) -> String {
        testserver::start_with(Some(pki.server_config(mtls)), |_, _| testserver::accepted(1)).await.to_string()
    }

    fn endpoint(addr: &str, o: &Options, native: Vec<CertificateDer<'static>>) -> Endpoint {
        Endpoint::plain(addr).with_tls(Arc::new(client_config(o, move || native).unwrap()))
    }

    #[tokio::test]
    async fn a_private_ca_given_with_ca_is_trusted() {
        let pki = Pki::new();
        let addr = server(&pki, false).await;
        let ca = pem_file(&pki.ca_pem);
        let ep = endpoint(&addr, &Options { ca: Some(ca.path().into()), ..Options::default() }, vec![]);
        let res = conn::once(&ep, ClientRequest::get("/health")).await.unwrap();
        assert_eq!((res.status, &res.body[..]), (202, &br#"{"accepted":1,"duplicates":0}"#[..]));
    }

    #[tokio::test]
    async fn without_ca_an_unknown_issuer_is_a_tls_error() {
        let pki = Pki::new();
        let addr = server(&pki, false).await;
        // The "system store" holds another CA, not the server's.
        let other = Pki::new();
        let ep = endpoint(&addr, &Options::default(), vec![other.ca_der()]);
        let e = conn::once(&ep, ClientRequest::get("/health")).await.unwrap_err();
        assert_eq!(e.exit_code(), exit::TLS);
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("TLS with {addr} failed: invalid peer certificate: UnknownIssuer")),
            "{shown}"
        );
        assert!(shown.ends_with("for a private CA, pass --ca FILE)"), "{shown}");
    }

    #[tokio::test]
    async fn insecure_takes_any_certificate() {
        let pki = Pki::new();
        let addr = server(&pki, false).await;
        let ep = endpoint(&addr, &Options { insecure: true, ..Options::default() }, vec![]);
        assert_eq!(conn::once(&ep, ClientRequest::get("/health")).await.unwrap().status, 202);
    }

    #[tokio::test]
    async fn mtls_works_with_cert_and_key_and_fails_without() {
        let pki = Pki::new();
        let addr = server(&pki, true).await;
        let ca = pem_file(&pki.ca_pem);
        let cert = pem_file(&pki.client_cert_pem);
        let key = pem_file(&pki.client_key_pem);
        let with = Options {
            ca: Some(ca.path().into()),
            cert: Some(cert.path().into()),
            key: Some(key.path().into()),
            insecure: false,
        };
        let ep = endpoint(&addr, &with, vec![]);
        assert_eq!(conn::once(&ep, ClientRequest::get("/health")).await.unwrap().status, 202);
        let without = Options { ca: Some(ca.path().into()), ..Options::default() };
        let ep = endpoint(&addr, &without, vec![]);
        let e = conn::once(&ep, ClientRequest::get("/health")).await.unwrap_err();
        assert_eq!(e.exit_code(), exit::TLS, "{e}");
        assert!(e.to_string().contains("does it want --cert and --key?"), "{e}");
    }

    /// `post` over TLS: every line acknowledged, on several connections.
    #[tokio::test]
    async fn post_runs_over_tls() {
        let pki = Pki::new();
        let addr = server(&pki, false).await;
        let ca = pem_file(&pki.ca_pem);
        let ep = endpoint(&addr, &Options { ca: Some(ca.path().into()), ..Options::default() }, vec![]);
        let settings = crate::post::Settings { endpoint: Arc::new(ep), pipeline: 4, retries: 2, compress: None };
        let lines: String = (1..=40).map(|i| format!("{{\"id\":\"{i}\"}}\n")).collect();
        let (summary, error) = crate::post::post(std::io::Cursor::new(lines.into_bytes()), settings, 3, 1).await;
        assert!(error.is_none());
        assert_eq!((summary.accepted, summary.failed.len(), &summary.stopped), (40, 0, &None), "{summary:?}");
    }
}
