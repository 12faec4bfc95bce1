//! Certificates for the TLS tests (memcached in `tls.rs`, the coordinators in
//! `discovery_secure.rs`), generated per test run with rcgen: [`Ca`] signs leaves for any
//! names; [`Pki`] is the coordinators' set — a CA, a server certificate for
//! 127.0.0.1/localhost (also usable as a client certificate: etcd's JSON gateway presents it
//! to etcd's own gRPC port under `--client-cert-auth`), an expired one, a client certificate
//! (without a CommonName, see below), and a second CA that signed none of them.

use std::path::{Path, PathBuf};

pub use rcgen::ExtendedKeyUsagePurpose;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// The generated files (PEM).
#[allow(dead_code)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A server certificate expired since 2002, and its key.
    pub expired_server_cert: PathBuf,
    pub expired_server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca: PathBuf,
}

/// A certificate authority made for one test run; both TLS suites (memcached and the
/// coordinators) sign their certificates with it.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let pem = p.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(p, key),
            pem,
        }
    }

    /// A certificate (PEM) and its key (PEM) for `names` (DNS names; an IP literal becomes an
    /// IP SAN), with CommonName `cn` (none: an OrganizationName only), for `usages`, valid now
    /// unless `expired` (2001–2002).
    pub fn leaf(
        &self,
        names: &[&str],
        cn: Option<&str>,
        usages: &[ExtendedKeyUsagePurpose],
        expired: bool,
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        for n in names {
            p.subject_alt_names.push(match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            });
        }
        p.distinguished_name = rcgen::DistinguishedName::new();
        match cn {
            Some(cn) => p.distinguished_name.push(DnType::CommonName, cn),
            None => p
                .distinguished_name
                .push(DnType::OrganizationName, "fae test client"),
        }
        p.extended_key_usages = usages.to_vec();
        if expired {
            p.not_before = rcgen::date_time_ymd(2001, 1, 1);
            p.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let cert = p.signed_by(&key, &self.issuer).unwrap().pem();
        (cert, key.serialize_pem())
    }
}

// Each test crate including this module uses only part of it.
#[allow(dead_code)]
impl Pki {
    /// Writes a fresh PKI into `dir` (created).
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca = Ca::new("fae test CA");
        let both = [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let names = ["localhost", "127.0.0.1"];
        let (server_pem, server_key) = ca.leaf(&names, Some("fae test server"), &both, false);
        let (expired_pem, expired_key) = ca.leaf(&names, Some("fae test server"), &both, true);
        // No CommonName: etcd's JSON gateway refuses client certificates with one when
        // `--client-cert-auth` and authentication are both on (the login names the user).
        let (client_pem, client_key) =
            ca.leaf(&[], None, &[ExtendedKeyUsagePurpose::ClientAuth], false);
        let other_pem = Ca::new("some other CA").pem;
        let w = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        Pki {
            dir: dir.to_path_buf(),
            ca: w("ca.pem", &ca.pem),
            server_cert: w("server.pem", &server_pem),
            server_key: w("server.key", &server_key),
            expired_server_cert: w("server-expired.pem", &expired_pem),
            expired_server_key: w("server-expired.key", &expired_key),
            client_cert: w("client.pem", &client_pem),
            client_key: w("client.key", &client_key),
            other_ca: w("other-ca.pem", &other_pem),
        }
    }

    /// The testkit's view: server files, optionally requiring client certificates.
    #[allow(dead_code)]
    pub fn server(&self, client_cert_auth: bool) -> fae_testkit::ServerTls {
        fae_testkit::ServerTls {
            ca_file: self.ca.clone(),
            cert_file: self.server_cert.clone(),
            key_file: self.server_key.clone(),
            client_cert_auth,
            client: Some((self.client_cert.clone(), self.client_key.clone())),
        }
    }
}
