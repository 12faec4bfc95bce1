//! TLS and login settings of a coordinator connection (etcd, ZooKeeper): plain data, read from
//! the config's `discovery` section or from `fae watch`'s flags. The connections themselves
//! (feature `watch`) are in the etcd and ZooKeeper sources; the library only parses these.
//!
//! Secrets never reach a message: the password is read from a file or an environment variable
//! when a connection logs in, is held in a [`Secret`] whose `Debug` prints `"<redacted>"`, and
//! errors name the file or variable, never its contents.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::{Error, Result};

/// TLS to the coordinator (config `discovery.tls`; the same keys as a pool's `tls`).
/// Deserializing checks the combination ([`TlsSettings::validate`]), so a config with a
/// certificate but no key fails to load, naming `discovery.tls`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, try_from = "RawTls")]
#[non_exhaustive]
pub struct TlsSettings {
    /// PEM file of the CA certificate(s) that signed the server's certificate. Required unless
    /// `verify` is false (coordinators use a private CA; the system store is not consulted).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain the client presents (mutual TLS); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Name the server's certificate must carry; default: the endpoint's host (a name or an IP).
    pub server_name: Option<String>,
    /// Verify the server's certificate chain and name (default true). False encrypts but trusts
    /// any server: for tests only.
    pub verify: bool,
}

/// The keys as written; [`TlsSettings`] is this after [`TlsSettings::validate`].
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTls {
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    server_name: Option<String>,
    verify: bool,
}

impl Default for RawTls {
    fn default() -> Self {
        let d = TlsSettings::default();
        RawTls {
            ca_file: d.ca_file,
            cert_file: d.cert_file,
            key_file: d.key_file,
            server_name: d.server_name,
            verify: d.verify,
        }
    }
}

impl TryFrom<RawTls> for TlsSettings {
    type Error = String;
    fn try_from(r: RawTls) -> std::result::Result<Self, String> {
        let t = TlsSettings {
            ca_file: r.ca_file,
            cert_file: r.cert_file,
            key_file: r.key_file,
            server_name: r.server_name,
            verify: r.verify,
        };
        t.validate().map_err(|e| e.message().to_string())?;
        Ok(t)
    }
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            ca_file: None,
            cert_file: None,
            key_file: None,
            server_name: None,
            verify: true,
        }
    }
}

impl TlsSettings {
    /// Settings that trust the CA in `ca_file`.
    pub fn with_ca(ca_file: impl Into<PathBuf>) -> TlsSettings {
        TlsSettings {
            ca_file: Some(ca_file.into()),
            ..TlsSettings::default()
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

    /// Sets the name the server's certificate must carry.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Turns certificate verification on or off.
    pub fn verify(mut self, verify: bool) -> Self {
        self.verify = verify;
        self
    }

    /// Checks that the keys fit together (files are read when connecting).
    pub fn validate(&self) -> Result<()> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(Error::Invalid(
                "tls: cert_file and key_file go together (a client certificate needs its key)"
                    .into(),
            ));
        }
        if self.verify && self.ca_file.is_none() {
            return Err(Error::Invalid(
                "tls: ca_file is required to verify the server (or set verify: false)".into(),
            ));
        }
        if self.server_name.as_deref().is_some_and(str::is_empty) {
            return Err(Error::Invalid("tls: server_name is empty".into()));
        }
        Ok(())
    }
}

/// A user and where to find the password (config `discovery.auth`; the same keys as a pool's
/// `auth`). etcd: user/password login; ZooKeeper: `digest` scheme (`addauth digest user:pw`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawAuth")]
#[non_exhaustive]
pub struct AuthSettings {
    /// The user name.
    pub username: String,
    /// A file holding the password (one trailing newline is dropped). Re-read at every login,
    /// so a rotated password needs no restart.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
}

/// The keys as written; [`AuthSettings`] is this after [`AuthSettings::validate`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    username: String,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    password_env: Option<String>,
}

impl TryFrom<RawAuth> for AuthSettings {
    type Error = String;
    fn try_from(r: RawAuth) -> std::result::Result<Self, String> {
        let a = AuthSettings {
            username: r.username,
            password_file: r.password_file,
            password_env: r.password_env,
        };
        a.validate().map_err(|e| e.message().to_string())?;
        Ok(a)
    }
}

impl AuthSettings {
    /// `username` with its password in `path`.
    pub fn password_file(username: impl Into<String>, path: impl Into<PathBuf>) -> AuthSettings {
        AuthSettings {
            username: username.into(),
            password_file: Some(path.into()),
            password_env: None,
        }
    }

    /// `username` with its password in the environment variable `var`.
    pub fn password_env(username: impl Into<String>, var: impl Into<String>) -> AuthSettings {
        AuthSettings {
            username: username.into(),
            password_file: None,
            password_env: Some(var.into()),
        }
    }

    /// Checks that exactly one password source is given and the user name is sane.
    pub fn validate(&self) -> Result<()> {
        if self.username.is_empty() || self.username.contains([':', '\n', '\r']) {
            return Err(Error::Invalid(
                "auth: username must be non-empty without ':' or line breaks".into(),
            ));
        }
        match (&self.password_file, &self.password_env) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err(Error::Invalid(
                "auth: give exactly one of password_file, password_env".into(),
            )),
        }
    }

    /// Reads the password now. Errors name the file or variable, never a byte of the password.
    pub fn password(&self) -> Result<Secret> {
        self.validate()?;
        let raw = if let Some(p) = &self.password_file {
            std::fs::read_to_string(p).map_err(|e| {
                Error::Invalid(format!("auth: password_file {}: {}", p.display(), e.kind()))
            })?
        } else {
            let var = self.password_env.as_deref().unwrap_or_default();
            std::env::var(var).map_err(|_| {
                Error::Invalid(format!(
                    "auth: password_env {var}: not set (or not valid UTF-8)"
                ))
            })?
        };
        let pw = raw
            .strip_suffix("\r\n")
            .or_else(|| raw.strip_suffix('\n'))
            .unwrap_or(&raw);
        if pw.is_empty() {
            return Err(Error::Invalid(format!(
                "auth: {}: password is empty",
                self.origin()
            )));
        }
        Ok(Secret(pw.to_string()))
    }

    /// Where the password comes from, for messages.
    fn origin(&self) -> String {
        match (&self.password_file, &self.password_env) {
            (Some(p), _) => format!("password_file {}", p.display()),
            (_, Some(v)) => format!("password_env {v}"),
            _ => "no password source".into(),
        }
    }
}

/// A password or token: `Debug` and `Display` print `<redacted>`; the value only through
/// [`Secret::expose`], at the one place that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The value, for the request that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_checks() {
        assert!(TlsSettings::default().validate().is_err());
        assert!(TlsSettings::default().verify(false).validate().is_ok());
        assert!(TlsSettings::with_ca("ca.pem").validate().is_ok());
        let mut t = TlsSettings::with_ca("ca.pem");
        t.cert_file = Some("c.pem".into());
        assert!(t.validate().is_err());
        let a = AuthSettings {
            username: "u".into(),
            password_file: Some("f".into()),
            password_env: Some("V".into()),
        };
        assert!(a.validate().is_err());
        assert!(AuthSettings::password_env("a:b", "V").validate().is_err());
        let j: TlsSettings =
            serde_json::from_str(r#"{"ca_file": "a", "server_name": "s", "verify": true}"#)
                .unwrap();
        assert_eq!(j.server_name.as_deref(), Some("s"));
        assert!(serde_json::from_str::<TlsSettings>(r#"{"ca": "a"}"#).is_err());
        let e = serde_json::from_str::<TlsSettings>(r#"{"ca_file": "a", "cert_file": "c"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("key_file"), "{e}");
        assert!(serde_json::from_str::<TlsSettings>(r#"{"verify": false}"#).is_ok());
        let e = serde_json::from_str::<AuthSettings>(r#"{"username": "u"}"#).unwrap_err();
        assert!(e.to_string().contains("password_file"), "{e}");
        let a: AuthSettings =
            serde_json::from_str(r#"{"username": "u", "password_env": "V"}"#).unwrap();
        assert_eq!(a, AuthSettings::password_env("u", "V"));
    }

    #[test]
    fn config_discovery_section() {
        let base = r#"{"pools": {"main": {"servers": ["127.0.0.1:1"]}}, "discovery": "#;
        let ok = format!(
            r#"{base}{{"file": "/run/t.json", "tls": {{"ca_file": "ca.pem", "server_name": "etcd.internal"}},
               "auth": {{"username": "fae", "password_file": "/etc/pw"}}}}}}"#
        );
        let c = crate::Config::from_json(&ok).unwrap();
        let tls = c.discovery.tls.as_ref().unwrap();
        assert_eq!(tls.server_name.as_deref(), Some("etcd.internal"));
        assert!(tls.verify);
        assert_eq!(c.discovery.auth.as_ref().unwrap().username, "fae");
        for (bad, needle) in [
            (
                r#"{"tls": {"cert_file": "c.pem", "verify": false}}"#,
                "key_file",
            ),
            (r#"{"tls": {"server_name": "x"}}"#, "ca_file"),
            (r#"{"auth": {"username": "fae"}}"#, "password_file"),
            (
                r#"{"auth": {"username": "fae", "password": "x"}}"#,
                "password",
            ),
        ] {
            let e = crate::Config::from_json(&format!("{base}{bad}}}")).unwrap_err();
            let m = e.to_string();
            assert!(m.contains("discovery") && m.contains(needle), "{bad}: {m}");
        }
    }

    #[test]
    fn password_sources_and_redaction() {
        let dir = std::env::temp_dir().join(format!("fae-secure-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "canary-Zx81\n").unwrap();
        let s = AuthSettings::password_file("fae", &f).password().unwrap();
        assert_eq!(s.expose(), "canary-Zx81");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        std::fs::write(&f, "\n").unwrap();
        let e = AuthSettings::password_file("fae", &f)
            .password()
            .unwrap_err();
        assert!(e.message().contains("empty"), "{e}");
        let e = AuthSettings::password_file("fae", dir.join("missing"))
            .password()
            .unwrap_err();
        assert!(e.message().contains("missing"), "{e}");
        let e = AuthSettings::password_env("fae", "FAE_TEST_UNSET_VAR_1")
            .password()
            .unwrap_err();
        assert!(e.message().contains("FAE_TEST_UNSET_VAR_1"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
