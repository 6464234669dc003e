//! HTTPS: the server's TLS configuration (rustls with the `ring` provider,
//! TLS 1.2 and 1.3 only, its default cipher suites, ALPN `http/1.1`), the
//! certificate that `SIGHUP` replaces without a restart, and the identity
//! of a client that showed a certificate (`--tls-client-ca`, mTLS).
//!
//! Reloading: the configuration's certificate resolver reads the current
//! certificate and key from an `ArcSwap` at each handshake. [`reload`] loads
//! the files again and swaps them in only if they load and match; open
//! connections keep the session they negotiated, new handshakes get the new
//! pair. A pair that does not load is logged and the old one stays.
//! The client CA (`--tls-client-ca`) is read once, at start.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use tokio_rustls::TlsAcceptor;

/// The first byte of every TLS connection: a handshake record. Anything else
/// on the TLS port (such as a plain-HTTP request line) is not TLS.
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// The files TLS is configured from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificate(s) that client certificates must chain to; `None`:
    /// no client certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS configuration (or a reload) could not be loaded. The message
/// names files and what is wrong with them, never key material.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// The listener's TLS: the acceptor every connection's handshake goes
/// through, and the certificate it serves, which [`reload`] replaces.
pub struct Tls {
    acceptor: TlsAcceptor,
    cert: Arc<ReloadableCert>,
    files: TlsFiles,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads certificate, key and (if given) client CA; fails if any of them
    /// does not load or the key is not the certificate's.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let provider = provider();
        let cert = Arc::new(ReloadableCert(ArcSwap::from(load_pair(&files.cert, &files.key, &provider)?)));
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError(format!("TLS: {e}")))?;
        let builder = match &files.client_ca {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for ca in read_certs(path, "--tls-client-ca")? {
                    roots.add(ca).map_err(|e| TlsError(format!("--tls-client-ca {}: {e}", path.display())))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| TlsError(format!("--tls-client-ca {}: {e}", path.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), cert, files })
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Whether client certificates are required (`--tls-client-ca`).
    pub fn requires_client_cert(&self) -> bool {
        self.files.client_ca.is_some()
    }
}

/// `SIGHUP`: loads the certificate and key files again. New handshakes use
/// the new pair at once; open connections carry on with the session they
/// have. A pair that does not load (unreadable, not PEM, a key that is not
/// the certificate's) is refused with a log line and the old pair stays.
pub fn reload(tls: &Tls) -> Result<(), TlsError> {
    match load_pair(&tls.files.cert, &tls.files.key, &provider()) {
        Ok(pair) => {
            tls.cert.0.store(pair);
            tracing::info!(cert = %tls.files.cert.display(), "TLS certificate reloaded");
            Ok(())
        }
        Err(e) => {
            tracing::error!("TLS certificate not reloaded, the previous one stays in use: {e}");
            Err(e)
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate served to every client (no SNI-based choice), swapped
/// whole by [`reload`].
struct ReloadableCert(ArcSwap<CertifiedKey>);

impl fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadableCert")
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// Reads a certificate chain and its key, and checks that the key is the
/// certificate's.
fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certs(cert, "--tls-cert")?;
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError(format!("--tls-key {}: no private key read: {e}", key.display())))?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError(format!("--tls-key {}: {e}", key.display())))?;
    let pair = CertifiedKey::new(chain, signing);
    // With the ring provider a key always knows its public half, so a
    // mismatch can always be told.
    pair.keys_match().map_err(|e| {
        TlsError(format!("--tls-key {} is not the key of --tls-cert {}: {e}", key.display(), cert.display()))
    })?;
    Ok(Arc::new(pair))
}

fn read_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError(format!("{flag} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{flag} {}: no PEM certificate in it", path.display())));
    }
    Ok(certs)
}

/// Who the client is, from the certificate it showed and the server verified
/// against `--tls-client-ca` (mTLS): the subject's common name (CN).
///
/// The CN alone names the client, so the client CA must issue certificates
/// for inlet's clients only: any certificate it signs with that CN is that
/// client. A certificate whose subject has no CN, or more than one, gives
/// no identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub common_name: String,
}

impl PeerIdentity {
    /// The identity of a connection's verified client certificate, if it
    /// showed one.
    pub fn of(conn: &ServerConnection) -> Option<PeerIdentity> {
        let leaf = conn.peer_certificates()?.first()?;
        subject_common_name(leaf).map(|common_name| PeerIdentity { common_name })
    }
}

/// OID 2.5.4.3, `commonName`, as its DER contents.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The subject CN of a DER certificate. The certificate has been verified
/// (so it is well-formed DER), but this still reads it defensively: any
/// surprise gives `None`, never a panic.
fn subject_common_name(cert: &[u8]) -> Option<String> {
    let (certificate, _) = expect(cert, SEQUENCE)?;
    let (mut tbs, _) = expect(certificate, SEQUENCE)?;
    // version [0] EXPLICIT (optional), serialNumber, signature, issuer, validity, subject.
    let (tag, _, rest) = tlv(tbs)?;
    tbs = if tag == 0xa0 { rest } else { tbs };
    for _ in 0..4 {
        tbs = tlv(tbs)?.2;
    }
    let (mut rdns, _) = expect(tbs, SEQUENCE)?;
    let mut found = None;
    while !rdns.is_empty() {
        let (mut set, rest) = expect(rdns, SET)?;
        rdns = rest;
        while !set.is_empty() {
            let (attribute, rest) = expect(set, SEQUENCE)?;
            set = rest;
            let (oid, value) = expect(attribute, OID)?;
            if oid == OID_COMMON_NAME {
                if found.is_some() {
                    return None;
                }
                found = Some(directory_string(value)?);
            }
        }
    }
    found
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// One DER element: (tag, contents, what follows). Single-byte tags and
/// definite lengths only, as in a certificate.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The element at the start of `input` if its tag is `tag`: (contents, rest).
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, contents, rest) = tlv(input)?;
    (t == tag).then_some((contents, rest))
}

/// A `DirectoryString` (UTF8String, PrintableString, IA5String, BMPString) as text.
fn directory_string(value: &[u8]) -> Option<String> {
    let (tag, contents, _) = tlv(value)?;
    match tag {
        0x0c | 0x13 | 0x16 => String::from_utf8(contents.to_vec()).ok(),
        0x1e if contents.len() % 2 == 0 => {
            let units: Vec<u16> = contents.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use rcgen::{CertificateParams, DnType, KeyPair};

    use super::*;

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        f
    }

    fn self_signed(dn: &[(DnType, &str)]) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, value) in dn {
            params.distinguished_name.push(ty.clone(), *value);
        }
        (params.self_signed(&key).unwrap(), key)
    }

    #[test]
    fn the_subject_common_name_is_read_from_the_certificate() {
        let (cert, _) = self_signed(&[(DnType::OrganizationName, "Example"), (DnType::CommonName, "svc-orders")]);
        assert_eq!(subject_common_name(cert.der()).as_deref(), Some("svc-orders"));
        let (cert, _) = self_signed(&[(DnType::CommonName, "café ünïcode")]);
        assert_eq!(subject_common_name(cert.der()).as_deref(), Some("café ünïcode"));
    }

    /// One DER element (short lengths only), to build certificates by hand.
    fn der(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
        let contents = parts.concat();
        assert!(contents.len() < 0x80);
        [&[tag, contents.len() as u8][..], &contents].concat()
    }

    /// A skeleton certificate whose subject has these CNs, one RDN each.
    fn with_common_names(names: &[&str]) -> Vec<u8> {
        let rdns: Vec<Vec<u8>> = names
            .iter()
            .map(|n| der(SET, &[&der(SEQUENCE, &[&der(OID, &[OID_COMMON_NAME]), &der(0x0c, &[n.as_bytes()])])]))
            .collect();
        let rdns: Vec<&[u8]> = rdns.iter().map(Vec::as_slice).collect();
        let empty = der(SEQUENCE, &[]);
        // serialNumber, signature, issuer, validity, subject (no version).
        let tbs = der(SEQUENCE, &[&der(0x02, &[&[1]]), &empty, &empty, &empty, &der(SEQUENCE, &rdns)]);
        der(SEQUENCE, &[&tbs])
    }

    #[test]
    fn no_common_name_or_two_give_no_identity() {
        let (cert, _) = self_signed(&[(DnType::OrganizationName, "Example")]);
        assert_eq!(subject_common_name(cert.der()), None);
        assert_eq!(subject_common_name(&with_common_names(&["a"])).as_deref(), Some("a"));
        assert_eq!(subject_common_name(&with_common_names(&["a", "b"])), None);
        assert_eq!(subject_common_name(&with_common_names(&[])), None);
    }

    #[test]
    fn truncated_or_garbage_input_never_panics() {
        let (cert, _) = self_signed(&[(DnType::CommonName, "svc")]);
        let der = cert.der().to_vec();
        for cut in 0..der.len() {
            let _ = subject_common_name(&der[..cut]);
        }
        for i in 0..der.len() {
            let mut bad = der.clone();
            bad[i] ^= 0xff;
            let _ = subject_common_name(&bad);
        }
        assert_eq!(subject_common_name(&der).as_deref(), Some("svc"));
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused_and_reload_keeps_the_old_pair() {
        let (cert, key) = self_signed(&[(DnType::CommonName, "one")]);
        let (other, other_key) = self_signed(&[(DnType::CommonName, "two")]);
        let cert_file = file(&cert.pem());
        let key_file = file(&key.serialize_pem());
        let files = TlsFiles { cert: cert_file.path().into(), key: key_file.path().into(), client_ca: None };
        let tls = Tls::load(files.clone()).unwrap();
        let served = || tls.cert.0.load().cert[0].clone();
        assert_eq!(served(), *cert.der());

        // A mismatched pair: refused at start, and by a reload.
        let wrong_key = file(&other_key.serialize_pem());
        let e = Tls::load(TlsFiles { key: wrong_key.path().into(), ..files.clone() }).unwrap_err();
        assert!(e.to_string().contains("is not the key of --tls-cert"), "{e}");
        std::fs::write(&files.cert, other.pem()).unwrap();
        assert!(reload(&tls).is_err());
        assert_eq!(served(), *cert.der(), "the old pair stays");
        std::fs::write(&files.cert, "not a certificate").unwrap();
        assert!(reload(&tls).unwrap_err().to_string().contains("no PEM certificate"));
        assert_eq!(served(), *cert.der());

        // A good new pair is served from then on.
        std::fs::write(&files.key, other_key.serialize_pem()).unwrap();
        std::fs::write(&files.cert, other.pem()).unwrap();
        reload(&tls).unwrap();
        assert_eq!(served(), *other.der());
    }

    #[test]
    fn the_configuration_offers_http_1_1_only() {
        let (cert, key) = self_signed(&[(DnType::CommonName, "one")]);
        let (cert_file, key_file) = (file(&cert.pem()), file(&key.serialize_pem()));
        let tls = Tls::load(TlsFiles { cert: cert_file.path().into(), key: key_file.path().into(), client_ca: None })
            .unwrap();
        let config = tls.acceptor().config();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(!tls.requires_client_cert());
    }
}
