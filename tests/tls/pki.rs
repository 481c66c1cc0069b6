//! The certificates of one test run, made with rcgen into a directory of their own: a CA, a
//! server certificate for 127.0.0.1 and localhost, a client certificate, and a second CA
//! with a client certificate of its own (a stranger the servers must refuse). Shared by
//! `tests/tls.rs` and the CLI's tests (`sagaflow-cli/tests/cli.rs`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use sagaflow::tls::{ClientTls, ServerTls};

/// PEM files of a CA and the certificates it signed, plus a stranger's.
pub struct Pki {
    dir: PathBuf,
    /// The CA every server and client here trusts.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate signed by [`Pki::ca`].
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Another CA, which nobody here trusts.
    pub other_ca: PathBuf,
    /// A client certificate signed by [`Pki::other_ca`].
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

fn params(name: &str, names: &[&str]) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("valid names");
    params.distinguished_name.push(DnType::CommonName, name);
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2100, 1, 1);
    params
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let mut params = params(name, &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("a CA key");
    let cert = params.self_signed(&key).expect("a CA certificate");
    (params, key, cert.pem())
}

fn leaf(
    issuer: &Issuer<'_, &KeyPair>,
    name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = params(name, names);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("a key");
    let cert = params.signed_by(&key, issuer).expect("a certificate");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// New certificates in a fresh directory named after `name`.
    pub fn generate(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sagaflow-pki-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a PKI directory");
        let write = |file: &str, pem: &str| {
            let path = dir.join(file);
            std::fs::write(&path, pem).expect("a PEM file");
            path
        };
        let (ca_params, ca_key, ca_pem) = ca("sagaflow test CA");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let (server_pem, server_key) = leaf(
            &issuer,
            "sagaflow test server",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_pem, client_key) = leaf(
            &issuer,
            "sagaflow test client",
            &["client.sagaflow.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (other_params, other_key, other_pem) = ca("stranger CA");
        let stranger = Issuer::from_params(&other_params, &other_key);
        let (stranger_pem, stranger_key) = leaf(
            &stranger,
            "stranger",
            &["stranger.sagaflow.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Self {
            ca: write("ca.pem", &ca_pem),
            server_cert: write("server.pem", &server_pem),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_pem),
            client_key: write("client.key", &client_key),
            other_ca: write("other-ca.pem", &other_pem),
            stranger_cert: write("stranger.pem", &stranger_pem),
            stranger_key: write("stranger.key", &stranger_key),
            dir,
        }
    }

    /// Trusts the CA, presents no certificate.
    pub fn client(&self) -> ClientTls {
        ClientTls::with_ca(&self.ca)
    }

    /// Trusts the CA, presents the client certificate.
    pub fn client_with_cert(&self) -> ClientTls {
        self.client().identity(&self.client_cert, &self.client_key)
    }

    /// Trusts the CA, presents the stranger's certificate.
    pub fn client_with_stranger_cert(&self) -> ClientTls {
        self.client()
            .identity(&self.stranger_cert, &self.stranger_key)
    }

    /// Trusts only the other CA (so not the servers' certificate).
    pub fn client_trusting_another_ca(&self) -> ClientTls {
        ClientTls::with_ca(&self.other_ca)
    }

    /// The server identity, asking for no client certificate.
    pub fn server(&self) -> ServerTls {
        ServerTls::new(&self.server_cert, &self.server_key)
    }

    /// Writes `content` to the file `name` beside the certificates (a server's config).
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, content).expect("a file beside the certificates");
        path
    }

    /// A path as a server's command-line argument.
    pub fn arg(path: &Path) -> String {
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
