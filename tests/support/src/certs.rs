//! Certificates for TLS tests and benchmarks (memcached with `-Z`, etcd and ZooKeeper with
//! TLS), generated per run with rcgen, so that no key material is committed: [`Ca`] signs
//! leaves for any names; [`Pki`] is the coordinators' set — a CA, a server certificate for
//! 127.0.0.1/localhost (also usable as a client certificate: etcd's JSON gateway presents it
//! to etcd's own gRPC port under `--client-cert-auth`), an expired one, a client certificate
//! (without a CommonName, see below), and a second CA that signed none of them.

use std::path::{Path, PathBuf};

pub use rcgen::ExtendedKeyUsagePurpose;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// The generated files (PEM).
#[derive(Debug)]
pub struct Pki {
    /// The directory holding every file below.
    pub dir: PathBuf,
    /// The CA certificate that signed every certificate below.
    pub ca: PathBuf,
    /// A server (and client) certificate for `localhost` and 127.0.0.1.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// A server certificate expired since 2002, and its key.
    pub expired_server_cert: PathBuf,
    /// Its key.
    pub expired_server_key: PathBuf,
    /// A client certificate without a CommonName.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca: PathBuf,
}

/// A certificate authority made for one run; it signs every certificate the run needs.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed CA with CommonName `name`.
    ///
    /// # Panics
    /// If rcgen fails (it does not for these parameters).
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
    ///
    /// # Panics
    /// If a DNS name is not one rcgen accepts.
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

impl Pki {
    /// Writes a fresh PKI into `dir` (created).
    ///
    /// # Panics
    /// If a file cannot be written.
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

    /// The coordinators' view: server files, optionally requiring client certificates.
    pub fn server(&self, client_cert_auth: bool) -> crate::ServerTls {
        crate::ServerTls {
            ca_file: self.ca.clone(),
            cert_file: self.server_cert.clone(),
            key_file: self.server_key.clone(),
            client_cert_auth,
            client: Some((self.client_cert.clone(), self.client_key.clone())),
        }
    }
}
