//! The coordinator connection: a TCP stream, or TLS over it (rustls with the `ring` provider,
//! blocking, on the same bounded socket timeouts as plain TCP). The TLS client settings are
//! built from [`TlsSettings`] and rebuilt when a certificate or key file changes, so a
//! long-running `fae watch` picks up rotated certificates at its next connect.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;

use super::secure::TlsSettings;
use super::{Error, Result};

/// A connection to a coordinator.
#[derive(Debug)]
pub(crate) enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    /// The TCP socket, for timeouts.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    pub(crate) fn set_read_timeout(&self, d: Duration) {
        let _ = self
            .tcp()
            .set_read_timeout(Some(d.max(Duration::from_millis(1))));
    }

    pub(crate) fn set_write_timeout(&self, d: Duration) {
        let _ = self
            .tcp()
            .set_write_timeout(Some(d.max(Duration::from_millis(1))));
    }

    /// Whether this is a TLS connection (for error hints).
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Size and mtime of a file, to notice a rotated certificate.
type Stamp = Vec<Option<(u64, SystemTime)>>;

/// TLS client settings and the rustls config built from them (rebuilt when a file changes).
pub(crate) struct Tls {
    settings: TlsSettings,
    built: Option<(Stamp, Arc<ClientConfig>)>,
}

impl std::fmt::Debug for Tls {
    // The settings name the files; the built config (certificates, key handle) is noise.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Checks the settings; the files are read at the first connect.
    pub(crate) fn new(settings: TlsSettings) -> Result<Tls> {
        settings.validate()?;
        Ok(Tls {
            settings,
            built: None,
        })
    }

    fn files(&self) -> Vec<&PathBuf> {
        let s = &self.settings;
        [&s.ca_file, &s.cert_file, &s.key_file]
            .into_iter()
            .flatten()
            .collect()
    }

    fn stamp(&self) -> Stamp {
        self.files()
            .into_iter()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.len(), m.modified().ok()?)))
            })
            .collect()
    }

    /// The rustls config, built anew if a certificate or key file changed since last time.
    fn config(&mut self) -> Result<Arc<ClientConfig>> {
        let stamp = self.stamp();
        if let Some((s, c)) = &self.built
            && *s == stamp
        {
            return Ok(c.clone());
        }
        let c = Arc::new(build_config(&self.settings)?);
        self.built = Some((stamp, c.clone()));
        Ok(c)
    }

    /// The name the server's certificate must carry for `endpoint` (`HOST:PORT`).
    fn server_name(&self, endpoint: &str) -> Result<ServerName<'static>> {
        let host = match &self.settings.server_name {
            Some(n) => n.as_str(),
            None => {
                let h = endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h);
                h.trim_start_matches('[').trim_end_matches(']')
            }
        };
        ServerName::try_from(host.to_string())
            .map_err(|e| Error::Invalid(format!("tls: server name {host:?}: {e}")))
    }
}

/// rustls' `ring` provider. rustls 0.23.48 deprecates it in favour of aws-lc-rs (post-quantum
/// key exchange), whose build needs cmake and a C toolchain setup we do not require; classic
/// ECDHE is what etcd and ZooKeeper offer today anyway.
#[allow(deprecated)]
fn crypto() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::Invalid(format!("tls: {what} {}: {}", path.display(), pem_err(&e))))?;
    if certs.is_empty() {
        return Err(Error::Invalid(format!(
            "tls: {what} {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// A PEM error without file contents (a key file's bytes must never reach a message).
fn pem_err(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as E;
    match e {
        E::Io(io) => io.kind().to_string(),
        E::NoItemsFound => "no PEM item of the expected kind in it".into(),
        _ => "not a valid PEM file".into(),
    }
}

fn build_config(s: &TlsSettings) -> Result<ClientConfig> {
    let provider = crypto();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(format!("tls: {e}")))?;
    let builder = if s.verify {
        let mut roots = RootCertStore::empty();
        let ca = s
            .ca_file
            .as_deref()
            .ok_or_else(|| Error::Invalid("tls: ca_file is required".into()))?;
        for c in read_certs("ca_file", ca)? {
            roots
                .add(c)
                .map_err(|e| Error::Invalid(format!("tls: ca_file {}: {e}", ca.display())))?;
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(
                provider.signature_verification_algorithms,
            )))
    };
    match (&s.cert_file, &s.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("cert_file", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                Error::Invalid(format!("tls: key_file {}: {}", key.display(), pem_err(&e)))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::Invalid(format!(
                    "tls: cert_file {} and its key_file do not fit: {e}",
                    cert.display()
                ))
            })
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// `verify: false`: accepts any server certificate (still checks the handshake signatures).
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Connects to `endpoint` and, with `tls`, completes the TLS handshake — all within `timeout`.
pub(crate) fn open(endpoint: &str, timeout: Duration, tls: Option<&mut Tls>) -> Result<Conn> {
    let deadline = Instant::now() + timeout;
    let sock = super::connect(endpoint, timeout)?;
    let Some(tls) = tls else {
        return Ok(Conn::Plain(sock));
    };
    let config = tls.config()?;
    let name = tls.server_name(endpoint)?;
    let mut conn = ClientConnection::new(config, name)
        .map_err(|e| Error::Invalid(format!("{endpoint}: tls: {e}")))?;
    let mut sock = sock;
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Unavailable(format!(
                "{endpoint}: TLS handshake timed out after {timeout:?} (is this a TLS port?)"
            )));
        }
        let _ = sock.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        let _ = sock.set_write_timeout(Some(left.max(Duration::from_millis(1))));
        if let Err(e) = conn.complete_io(&mut sock) {
            // Send any alert rustls queued (e.g. bad_certificate) so the server logs why.
            let _ = conn.write_tls(&mut sock);
            return Err(handshake_error(endpoint, &e));
        }
    }
    Ok(Conn::Tls(Box::new(StreamOwned::new(conn, sock))))
}

/// A read or write error on a connection: a TLS refusal that arrives after the handshake
/// (TLS 1.3 servers check the client certificate then) is classified like a handshake failure.
pub(crate) fn io_error(endpoint: &str, what: &str, e: &io::Error) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
        handshake_error(endpoint, e)
    } else {
        Error::Unavailable(format!("{endpoint}: {what}: {e}"))
    }
}

/// A handshake failure as an error: certificate problems are [`Error::Denied`] (retrying will
/// not help until the settings change), the rest [`Error::Unavailable`], with a hint.
fn handshake_error(endpoint: &str, e: &io::Error) -> Error {
    use rustls::AlertDescription as A;
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return Error::Unavailable(format!(
            "{endpoint}: TLS handshake: no answer (is this a TLS port?)"
        ));
    }
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => {
            use rustls::CertificateError as C;
            let hint = match c {
                C::Expired | C::ExpiredContext { .. } => "the server's certificate has expired",
                C::NotValidYet | C::NotValidYetContext { .. } => {
                    "the server's certificate is not valid yet (clock skew?)"
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    "check tls.server_name against the certificate's names"
                }
                C::UnknownIssuer | C::BadSignature => "check tls.ca_file",
                _ => "check tls.ca_file and tls.server_name",
            };
            Error::Denied(format!(
                "{endpoint}: TLS: the server's certificate is not accepted: {c} ({hint})"
            ))
        }
        Some(rustls::Error::AlertReceived(
            a @ (A::BadCertificate
            | A::CertificateRequired
            | A::UnknownCA
            | A::CertificateUnknown
            | A::AccessDenied
            | A::DecryptError),
        )) => Error::Denied(format!(
            "{endpoint}: TLS: the server rejected the handshake ({a:?}); it may require a \
             client certificate (tls.cert_file and tls.key_file) from a CA it trusts"
        )),
        Some(rustls::Error::InvalidMessage(_))
        | Some(rustls::Error::InappropriateMessage { .. }) => Error::Unavailable(format!(
            "{endpoint}: TLS handshake failed: the server did not answer in TLS ({e}); \
                 is this a plain-text port?"
        )),
        Some(r) => Error::Unavailable(format!("{endpoint}: TLS handshake failed: {r}")),
        None if e.kind() == io::ErrorKind::UnexpectedEof
            || e.kind() == io::ErrorKind::ConnectionReset =>
        {
            Error::Unavailable(format!(
                "{endpoint}: TLS handshake: the server closed the connection ({e}); it may \
                 require a client certificate, or not speak TLS on this port"
            ))
        }
        None => Error::Unavailable(format!("{endpoint}: TLS handshake: {e}")),
    }
}
