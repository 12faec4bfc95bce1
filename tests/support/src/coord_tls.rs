//! TLS files for test coordinators (etcd, ZooKeeper): the test generates the certificates
//! (PEM) and hands their paths to [`crate::Etcd::start_secure`] or
//! [`crate::ZooKeeper::start_tls`]; the testkit only passes them to the servers and their
//! command-line tools.

use std::path::PathBuf;

/// A server's certificate, the CA that clients must trust, and an optional client certificate
/// the testkit's own tools (`etcdctl`) present when the server requires one.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// PEM CA certificate: signs the server's certificate and, with `client_cert_auth`, the
    /// client certificates the server accepts.
    pub ca_file: PathBuf,
    /// PEM server certificate (for 127.0.0.1).
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file` (PKCS#8).
    pub key_file: PathBuf,
    /// The server requires a client certificate signed by `ca_file` (mutual TLS).
    pub client_cert_auth: bool,
    /// PEM client certificate and key for the testkit's tools (needed with `client_cert_auth`).
    pub client: Option<(PathBuf, PathBuf)>,
}
