//! Certificates for the TLS tests, generated per test run (rcgen): a CA, a server certificate
//! for 127.0.0.1/localhost (also usable as a client certificate: etcd's JSON gateway presents
//! it to etcd's own gRPC port under `--client-cert-auth`), a client certificate (without a
//! CommonName, see below), and a second
//! CA that signed none of them.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

/// The generated files (PEM).
#[allow(dead_code)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// The server certificate again (same key), expired since 2002.
    pub expired_server_cert: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let pem = p.self_signed(&key).unwrap().pem();
    (p, key, pem)
}

impl Pki {
    /// Writes a fresh PKI into `dir` (created).
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let (ca_params, ca_key, ca_pem) = ca("fae test CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut sp = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        sp.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        sp.distinguished_name
            .push(DnType::CommonName, "fae test server");
        sp.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let server_pem = sp.signed_by(&server_key, &issuer).unwrap().pem();
        sp.not_before = rcgen::date_time_ymd(2001, 1, 1);
        sp.not_after = rcgen::date_time_ymd(2002, 1, 1);
        let expired_pem = sp.signed_by(&server_key, &issuer).unwrap().pem();

        let client_key = KeyPair::generate().unwrap();
        let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
        // No CommonName: etcd's JSON gateway refuses client certificates with one when
        // `--client-cert-auth` and authentication are both on (the login names the user).
        cp.distinguished_name = rcgen::DistinguishedName::new();
        cp.distinguished_name
            .push(DnType::OrganizationName, "fae test client");
        cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_pem = cp.signed_by(&client_key, &issuer).unwrap().pem();

        let (_, _, other_pem) = ca("some other CA");
        let w = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        Pki {
            dir: dir.to_path_buf(),
            ca: w("ca.pem", &ca_pem),
            server_cert: w("server.pem", &server_pem),
            server_key: w("server.key", &server_key.serialize_pem()),
            expired_server_cert: w("server-expired.pem", &expired_pem),
            client_cert: w("client.pem", &client_pem),
            client_key: w("client.key", &client_key.serialize_pem()),
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
