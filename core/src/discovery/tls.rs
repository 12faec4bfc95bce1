//! The coordinator connection: a TCP stream, or TLS over it (blocking, on the same bounded
//! socket timeouts as plain TCP). The TLS client is the one a memcached pool uses
//! ([`crate::tls::Tls`], built from the same `tls` section), loaded again when a certificate or
//! key file changes, so a long-running `fae watch` picks up rotated certificates at its next
//! connect.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use rustls::{ClientConnection, StreamOwned};

use super::{Error, Result};
use crate::tls::TlsSection;

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

/// A TLS or login setting the shared code (`crate::tls`) refused: `Error::Invalid`.
pub(crate) fn settings_error(e: crate::Error) -> Error {
    Error::Invalid(e.detail().unwrap_or(e.reason().as_str()).to_string())
}

/// A coordinator's TLS settings and the client loaded from them (loaded again when a file
/// changes).
pub(crate) struct Client {
    section: TlsSection,
    loaded: Option<(Stamp, crate::tls::Tls)>,
}

impl std::fmt::Debug for Client {
    // The settings name the files; the loaded client (certificates, key handle) is noise.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("section", &self.section)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Checks the settings; the files are read at the first connect.
    pub(crate) fn new(section: TlsSection) -> Result<Client> {
        super::check_tls(&section, "tls").map_err(settings_error)?;
        Ok(Client {
            section,
            loaded: None,
        })
    }

    fn files(&self) -> Vec<&PathBuf> {
        let s = &self.section;
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

    /// A client session for `endpoint` (`HOST:PORT`), its certificate checked against
    /// `server_name` or else the host; the files are loaded again if one changed since.
    fn session(&mut self, endpoint: &str) -> Result<ClientConnection> {
        let stamp = self.stamp();
        let tls = match &mut self.loaded {
            Some((s, tls)) if *s == stamp => tls,
            slot => {
                let tls = crate::tls::Tls::load(&self.section, "tls").map_err(settings_error)?;
                &slot.insert((stamp, tls)).1
            }
        };
        let host = endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h);
        tls.session(host)
            .map_err(|e| Error::Invalid(format!("{endpoint}: {}", settings_error(e).message())))
    }
}

/// Connects to `endpoint` and, with `tls`, completes the TLS handshake — all within `timeout`.
pub(crate) fn open(endpoint: &str, timeout: Duration, tls: Option<&mut Client>) -> Result<Conn> {
    let deadline = Instant::now() + timeout;
    let sock = super::connect(endpoint, timeout)?;
    let Some(tls) = tls else {
        return Ok(Conn::Plain(sock));
    };
    let mut conn = tls.session(endpoint)?;
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
