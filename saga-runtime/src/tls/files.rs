//! Reading the PEM files of [`ClientTls`] and [`ServerTls`] (backends with TLS only).

use std::path::Path;

#[cfg(feature = "grpc")]
use super::ServerTls;
use super::{ClientTls, TlsError};

/// The PEM contents of a [`ClientTls`], checked: the CA file holds certificates, the
/// identity a certificate and a key.
// NATS alone only checks the files (async-nats reads them itself).
#[cfg_attr(
    not(any(feature = "rabbitmq", feature = "redis", feature = "grpc")),
    allow(dead_code)
)]
#[derive(Clone)]
pub(crate) struct ClientPem {
    /// The CA file's PEM text.
    pub(crate) ca: Option<Vec<u8>>,
    /// The client certificate's and key's PEM text.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ClientPem")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl ClientTls {
    /// Reads and checks the files.
    pub(crate) fn load(&self) -> Result<ClientPem, TlsError> {
        let ca = self
            .ca_file
            .as_deref()
            .map(|path| read_certificates("CA", path))
            .transpose()?;
        let identity = match (&self.cert_file, &self.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                Some((read_certificates("certificate", cert)?, read_key(key)?))
            }
            _ => return Err(TlsError::HalfIdentity),
        };
        Ok(ClientPem { ca, identity })
    }
}

/// The PEM contents of a [`ServerTls`], checked.
#[cfg(feature = "grpc")]
#[derive(Clone)]
pub(crate) struct ServerPem {
    /// The certificate chain's PEM text.
    pub(crate) cert: Vec<u8>,
    /// The key's PEM text.
    pub(crate) key: Vec<u8>,
    /// The client CA file's PEM text.
    pub(crate) client_ca: Option<Vec<u8>>,
}

#[cfg(feature = "grpc")]
impl ServerTls {
    /// Reads and checks the files.
    pub(crate) fn load(&self) -> Result<ServerPem, TlsError> {
        Ok(ServerPem {
            cert: read_certificates("certificate", &self.cert_file)?,
            key: read_key(&self.key_file)?,
            client_ca: self
                .client_ca_file
                .as_deref()
                .map(|path| read_certificates("client CA", path))
                .transpose()?,
        })
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The file's PEM text, which holds at least one certificate.
pub(crate) fn read_certificates(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let pem = read(what, path)?;
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    if certificates.is_empty() {
        return Err(TlsError::NotPem {
            what,
            path: path.to_path_buf(),
            expected: "CERTIFICATE",
        });
    }
    Ok(pem)
}

/// The file's PEM text, which holds a private key.
fn read_key(path: &Path) -> Result<Vec<u8>, TlsError> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let pem = read("key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NotPem {
        what: "key",
        path: path.to_path_buf(),
        expected: "PRIVATE KEY",
    })?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_malformed_files_are_named() {
        let dir = std::env::temp_dir().join(format!("sagaflow-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").expect("written");
        let missing = dir.join("missing.pem");

        let error = ClientTls::with_ca(&missing).load().expect_err("missing");
        assert!(
            matches!(error, TlsError::Read { what: "CA", .. }),
            "{error}"
        );
        assert!(error.to_string().contains("missing.pem"), "{error}");
        let error = ClientTls::with_ca(&garbage).load().expect_err("not PEM");
        assert!(
            matches!(error, TlsError::NotPem { what: "CA", .. }),
            "{error}"
        );
        let half = ClientTls {
            cert_file: Some(garbage.clone()),
            ..ClientTls::default()
        };
        assert!(matches!(half.load(), Err(TlsError::HalfIdentity)));
        assert!(
            ClientTls::default()
                .load()
                .expect("nothing to read")
                .ca
                .is_none()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
