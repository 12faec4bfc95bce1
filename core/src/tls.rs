//! TLS and authentication to memcached: the config sections `tls` and `auth`, loaded and
//! checked when the config is (so a reload re-reads every certificate, key and password file),
//! the rustls client configuration a pool's connections share, and the credentials of
//! memcached's text-protocol login (`memcached -Y`).
//!
//! Secrets stay secret: a password is held in [`Secret`], whose `Debug` prints nothing of it;
//! key material lives only inside rustls. Errors name files and environment variables, never
//! their contents — a PEM parser's error can quote a line of the file, so those are reworded.
//!
//! One rustls `ClientConfig` per pool (per `tls` section, per load) carries rustls's in-memory
//! session store: every connection of the pool resumes the TLS session of an earlier one, so a
//! reconnect costs one round trip less and no certificate verification.

use std::fmt;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;

use crate::error::{Error, Reason, Result};

/// Config `tls` (top level, for every pool, or per pool): TLS to the memcached servers
/// (`memcached -Z`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsSection {
    /// PEM file of the certificate authorities that sign the servers' certificates. Default:
    /// the system's bundle (`SSL_CERT_FILE`, else the usual distribution paths).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain this client presents (mutual TLS); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// The name the servers' certificates must carry (and SNI). Default: each server's host
    /// (an IP address then needs an IP subject alternative name).
    pub server_name: Option<String>,
    /// Verify the servers' certificates. `false` encrypts without authenticating the server:
    /// only for tests.
    pub verify: bool,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            ca_file: None,
            cert_file: None,
            key_file: None,
            server_name: None,
            verify: true,
        }
    }
}

impl TlsSection {
    /// Settings that trust the CA certificate(s) in `ca_file`.
    pub fn with_ca(ca_file: impl Into<PathBuf>) -> TlsSection {
        TlsSection {
            ca_file: Some(ca_file.into()),
            ..TlsSection::default()
        }
    }

    /// Adds a client certificate and its key (mutual TLS).
    pub fn client_cert(
        mut self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.cert_file = Some(cert_file.into());
        self.key_file = Some(key_file.into());
        self
    }

    /// Sets the name the servers' certificates must carry.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Turns certificate verification on or off.
    pub fn verify(mut self, verify: bool) -> Self {
        self.verify = verify;
        self
    }

    /// Check, without reading any file, that the keys fit together (for the config path `at`):
    /// a client certificate has its key and `server_name` is a DNS name or IP address.
    pub fn check(&self, at: &str) -> Result<()> {
        self.parsed_server_name(at).map(drop)
    }

    fn parsed_server_name(&self, at: &str) -> Result<Option<ServerName<'static>>> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => return Err(invalid(at, "cert_file needs key_file (mutual TLS)")),
            (None, Some(_)) => return Err(invalid(at, "key_file needs cert_file (mutual TLS)")),
            _ => {}
        }
        match &self.server_name {
            Some(n) => Ok(Some(ServerName::try_from(n.clone()).map_err(|_| {
                invalid(
                    &format!("{at}.server_name"),
                    format_args!("\"{n}\" is not a DNS name or IP address"),
                )
            })?)),
            None => Ok(None),
        }
    }
}

/// A loaded `tls` section: the settings and the rustls client built from its files.
#[derive(Clone)]
pub struct Tls {
    section: TlsSection,
    server_name: Option<ServerName<'static>>,
    client: Arc<ClientConfig>,
    /// A keyed hash of the files' contents: a reload whose files changed (rotated certificates)
    /// makes new connections; one whose files are the same keeps the warm ones.
    fingerprint: u64,
}

impl PartialEq for Tls {
    fn eq(&self, other: &Self) -> bool {
        self.section == other.section && self.fingerprint == other.fingerprint
    }
}

impl fmt::Debug for Tls {
    /// The settings (file names) only: never key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("section", &self.section)
            .finish_non_exhaustive()
    }
}

fn invalid(at: &str, msg: impl fmt::Display) -> Error {
    Error::with_detail(Reason::InvalidConfig, format!("{at}: {msg}"))
}

/// Read a file for `at` (a config path such as `pools.main.tls.ca_file`) as the config file is
/// read (a regular text file of at most 16 MiB: `/dev/zero` or a FIFO fails at once); the
/// error names the file and the OS error, nothing of the contents.
fn read_file(at: &str, path: &Path) -> Result<Vec<u8>> {
    crate::textfile::read(path)
        .map(String::into_bytes)
        .map_err(|e| invalid(at, format_args!("cannot read {}: {e}", path.display())))
}

/// The system's CA bundle: `SSL_CERT_FILE`, else the first of the usual distribution paths.
fn system_ca_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SSL_CERT_FILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// The process-wide key of the file fingerprints (never persisted, so a fingerprint tells
/// nothing about the files outside this process).
fn hasher() -> &'static std::hash::RandomState {
    static H: OnceLock<std::hash::RandomState> = OnceLock::new();
    H.get_or_init(std::hash::RandomState::new)
}

/// rustls's *ring* provider. rustls deprecates it since 0.23.48 for lacking post-quantum key
/// exchange; its alternative (aws-lc-rs) needs cmake and a C toolchain at build time, which the
/// bindings' builds must not, and memcached's OpenSSL offers no post-quantum group either.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    /// Load `section` for the config path `at` (e.g. `pools.main.tls`): read and parse every
    /// file and build the rustls client. Errors are `invalid_config`, naming the key and file.
    pub fn load(section: &TlsSection, at: &str) -> Result<Tls> {
        let server_name = section.parsed_server_name(at)?;
        let mut material: Vec<u8> = Vec::new();
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(at, e))?;
        let builder = if section.verify {
            let key = format!("{at}.ca_file");
            let path = match &section.ca_file {
                Some(p) => p.clone(),
                None => system_ca_file().ok_or_else(|| {
                    invalid(
                        &key,
                        "no ca_file given and no system CA bundle found (set ca_file)",
                    )
                })?,
            };
            let pem = read_file(&key, &path)?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|_| {
                    invalid(&key, format_args!("{} is not valid PEM", path.display()))
                })?;
                // A bundle may hold a certificate webpki cannot use; skip it like rustls's
                // own `add_parsable_certificates`, but one usable certificate is required.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(invalid(
                    &key,
                    format_args!("{} holds no usable CA certificate", path.display()),
                ));
            }
            material.extend_from_slice(&pem);
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(
                    provider.signature_verification_algorithms,
                )))
        };
        let mut client = match (&section.cert_file, &section.key_file) {
            (Some(cert_path), Some(key_path)) => {
                let cert_key = format!("{at}.cert_file");
                let key_key = format!("{at}.key_file");
                let pem = read_file(&cert_key, cert_path)?;
                let chain = CertificateDer::pem_slice_iter(&pem)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| {
                        invalid(
                            &cert_key,
                            format_args!("{} is not valid PEM", cert_path.display()),
                        )
                    })?;
                if chain.is_empty() {
                    return Err(invalid(
                        &cert_key,
                        format_args!("{} holds no certificate", cert_path.display()),
                    ));
                }
                material.extend_from_slice(&pem);
                let pem = read_file(&key_key, key_path)?;
                let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
                    invalid(
                        &key_key,
                        format_args!("{} holds no PEM private key", key_path.display()),
                    )
                })?;
                material.extend_from_slice(&pem);
                // rustls checks the key against the certificate; its message names neither.
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    invalid(
                        &key_key,
                        format_args!(
                            "{} does not go with {}: {e}",
                            key_path.display(),
                            cert_path.display()
                        ),
                    )
                })?
            }
            // `parsed_server_name` refused a certificate without its key and the reverse.
            _ => builder.with_no_client_auth(),
        };
        // Shared by every connection of the pool (Arc): reconnects resume.
        client.resumption = rustls::client::Resumption::in_memory_sessions(256);
        Ok(Tls {
            section: section.clone(),
            server_name,
            client: Arc::new(client),
            fingerprint: hasher().hash_one(&material),
        })
    }

    /// The settings it was loaded from.
    pub fn section(&self) -> &TlsSection {
        &self.section
    }

    /// Whether `server_name` is set (a socket-path server has no host name to verify).
    pub fn has_server_name(&self) -> bool {
        self.server_name.is_some()
    }

    /// A client session for the server at `host`: `server_name` if set, else the host
    /// (brackets of an IPv6 literal removed).
    pub(crate) fn session(&self, host: &str) -> Result<rustls::ClientConnection> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => {
                let h = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                ServerName::try_from(h.to_string()).map_err(|_| {
                    Error::with_detail(
                        Reason::TlsFailed,
                        format!("\"{h}\" is no TLS server name; set tls.server_name"),
                    )
                })?
            }
        };
        rustls::ClientConnection::new(Arc::clone(&self.client), name)
            .map_err(|e| Error::with_detail(Reason::TlsFailed, e.to_string()))
    }
}

/// `verify: false`: any certificate is accepted, but the handshake's signatures are still
/// checked (the session keys belong to whoever holds the presented certificate's key).
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

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A password or token: sent in the request that needs it and nothing else. `Debug` and
/// `Display` print `<redacted>`; the value only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into().into_boxed_str())
    }

    /// The secret itself, for the request that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Config `auth` (top level or per pool): memcached's text-protocol login (`memcached -Y
/// FILE`, lines `user:password`). The password comes from a file or an environment variable,
/// never from the config itself, so a config can be shown or committed without it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthSection {
    /// The user name.
    pub username: String,
    /// A file holding the password (one line; a trailing newline is ignored).
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    pub password_env: Option<String>,
}

/// A loaded `auth` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    section: AuthSection,
    password: Secret,
}

impl AuthSection {
    /// `username` with its password in the file `path`.
    pub fn password_file(username: impl Into<String>, path: impl Into<PathBuf>) -> AuthSection {
        AuthSection {
            username: username.into(),
            password_file: Some(path.into()),
            password_env: None,
        }
    }

    /// `username` with its password in the environment variable `var`.
    pub fn password_env(username: impl Into<String>, var: impl Into<String>) -> AuthSection {
        AuthSection {
            username: username.into(),
            password_file: None,
            password_env: Some(var.into()),
        }
    }

    /// Check, without reading anything, the user name and that exactly one password source is
    /// given (for the config path `at`, e.g. `pools.main.auth`).
    pub fn check(&self, at: &str) -> Result<()> {
        let user = &self.username;
        if user.is_empty()
            || user
                .bytes()
                .any(|b| b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(invalid(
                &format!("{at}.username"),
                "must be non-empty, without spaces, control characters or ':'",
            ));
        }
        match (&self.password_file, &self.password_env) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err(invalid(
                at,
                "give exactly one of password_file and password_env",
            )),
        }
    }

    /// Check the section and read the password now: one non-empty line (trailing line breaks
    /// dropped). Errors name the file or variable, never a byte of the password.
    pub fn password(&self, at: &str) -> Result<Secret> {
        self.check(at)?;
        let password = match (&self.password_file, &self.password_env) {
            (Some(path), _) => {
                let key = format!("{at}.password_file");
                let bytes = read_file(&key, path)?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| invalid(&key, format_args!("{} is not UTF-8", path.display())))?;
                text.trim_end_matches(['\r', '\n']).to_string()
            }
            (None, var) => {
                let var = var.as_deref().unwrap_or_default();
                std::env::var(var).map_err(|_| {
                    invalid(
                        &format!("{at}.password_env"),
                        format_args!("environment variable {var} is not set (or not UTF-8)"),
                    )
                })?
            }
        };
        if password.is_empty() || password.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(invalid(
                at,
                "the password must be one non-empty line (it is not shown)",
            ));
        }
        Ok(Secret::new(password))
    }
}

impl Auth {
    /// Load `section` for the config path `at` (e.g. `pools.main.auth`): read the password.
    pub fn load(section: &AuthSection, at: &str) -> Result<Auth> {
        Ok(Auth {
            section: section.clone(),
            password: section.password(at)?,
        })
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.section.username
    }

    /// The login request: memcached takes `set <any key> 0 0 <len>` with the value
    /// `<user> <password>` as the login of an unauthenticated connection.
    pub(crate) fn login_request(&self, out: &mut Vec<u8>) {
        let value_len = self.section.username.len() + 1 + self.password.expose().len();
        out.extend_from_slice(format!("set fae_auth 0 0 {value_len}\r\n").as_bytes());
        out.extend_from_slice(self.section.username.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.password.expose().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// What every connection of a pool needs to secure itself: TLS and a login, each optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Security {
    /// TLS to the servers.
    pub tls: Option<Arc<Tls>>,
    /// memcached's text-protocol login.
    pub auth: Option<Arc<Auth>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug() {
        let dir = std::env::temp_dir().join(format!("fae-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "hunter2-canary\n").unwrap();
        let a = Auth::load(
            &AuthSection {
                username: "u".into(),
                password_file: Some(file.clone()),
                password_env: None,
            },
            "auth",
        )
        .unwrap();
        assert!(!format!("{a:?}").contains("hunter2"));
        let mut req = Vec::new();
        a.login_request(&mut req);
        assert_eq!(req, b"set fae_auth 0 0 16\r\nu hunter2-canary\r\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_files_are_named_without_contents() {
        let dir = std::env::temp_dir().join(format!("fae-tls-unit2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nSECRETSECRET!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = Tls::load(
            &TlsSection {
                ca_file: Some(junk.clone()),
                ..TlsSection::default()
            },
            "tls",
        )
        .unwrap_err();
        assert_eq!(e.reason(), Reason::InvalidConfig);
        let text = e.to_string();
        assert!(
            text.contains("tls.ca_file") && text.contains("junk.pem"),
            "{text}"
        );
        assert!(!text.contains("SECRET"), "{text}");
        let e = Tls::load(
            &TlsSection {
                ca_file: Some(dir.join("missing.pem")),
                ..TlsSection::default()
            },
            "tls",
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
        let e = Tls::load(
            &TlsSection {
                ca_file: Some("/dev/zero".into()),
                ..TlsSection::default()
            },
            "tls",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sections_check_without_reading() {
        assert!(TlsSection::with_ca("ca.pem").check("tls").is_ok());
        let mut t = TlsSection::with_ca("ca.pem");
        t.cert_file = Some("c.pem".into());
        assert!(t.check("tls").is_err());
        assert!(TlsSection::default().server_name("").check("tls").is_err());
        let j: TlsSection =
            serde_json::from_str(r#"{"ca_file": "a", "server_name": "s", "verify": true}"#)
                .unwrap();
        assert_eq!(j, TlsSection::with_ca("a").server_name("s"));
        assert!(serde_json::from_str::<TlsSection>(r#"{"ca": "a"}"#).is_err());
        let a = AuthSection {
            username: "u".into(),
            password_file: Some("f".into()),
            password_env: Some("V".into()),
        };
        assert!(a.check("auth").is_err());
        assert!(AuthSection::password_env("a:b", "V").check("auth").is_err());
        let a: AuthSection =
            serde_json::from_str(r#"{"username": "u", "password_env": "V"}"#).unwrap();
        assert_eq!(a, AuthSection::password_env("u", "V"));
    }

    #[test]
    fn password_sources_and_redaction() {
        let dir = std::env::temp_dir().join(format!("fae-tls-unit3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "canary-Zx81\n").unwrap();
        let s = AuthSection::password_file("fae", &f)
            .password("auth")
            .unwrap();
        assert_eq!(s.expose(), "canary-Zx81");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        std::fs::write(&f, "\n").unwrap();
        let e = AuthSection::password_file("fae", &f)
            .password("auth")
            .unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = AuthSection::password_file("fae", dir.join("missing"))
            .password("auth")
            .unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        let e = AuthSection::password_env("fae", "FAE_TEST_UNSET_VAR_1")
            .password("auth")
            .unwrap_err();
        assert!(e.to_string().contains("FAE_TEST_UNSET_VAR_1"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
