//! TLS settings of every connection, as PEM file paths a config file can hold:
//! [`ClientTls`] for the clients (RabbitMQ `amqps://`, NATS, Redis `rediss://`, a gRPC
//! channel) and [`ServerTls`] for the gRPC server.
//!
//! The files are read when a connection is opened (a server is started); a file that is
//! missing, unreadable or holds no PEM certificate (key) fails that with a [`TlsError`]
//! naming the file, never later in a handshake. A URL that asks for TLS never falls back to
//! plaintext, and a plaintext URL (`amqp://`, `redis://`) with TLS files set is refused
//! rather than connected without them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// TLS settings of a client: whom it trusts and, for mutual TLS, who it is.
///
/// Every field is optional. Without [`ca_file`](Self::ca_file) the server's certificate must
/// chain to a public root (RabbitMQ and Redis: the Mozilla roots bundled with the client;
/// NATS: the system's trust store). [`cert_file`](Self::cert_file) and
/// [`key_file`](Self::key_file) go together. Reads from a config file:
///
/// ```
/// # use saga_runtime::tls::ClientTls;
/// let tls: ClientTls = serde_json::from_str(
///     r#"{ "ca_file": "/etc/sagaflow/ca.pem", "cert_file": "client.pem", "key_file": "client.key" }"#,
/// ).unwrap();
/// assert!(tls.is_configured());
/// assert!(!ClientTls::default().is_configured());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTls {
    /// PEM file of the CA certificate(s) the server's certificate must chain to (a private
    /// CA, a managed service's CA).
    pub ca_file: Option<PathBuf>,
    /// PEM file of the certificate (chain) the client presents for mutual TLS; needs
    /// [`key_file`](Self::key_file).
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1, not
    /// encrypted); needs [`cert_file`](Self::cert_file).
    pub key_file: Option<PathBuf>,
}

impl ClientTls {
    /// Trusts the CA certificate(s) in the PEM file at `path`, presenting no client
    /// certificate.
    pub fn with_ca(path: impl Into<PathBuf>) -> Self {
        Self {
            ca_file: Some(path.into()),
            ..Self::default()
        }
    }

    /// The same settings, presenting the certificate in `cert_file` with the key in
    /// `key_file` (mutual TLS).
    pub fn identity(mut self, cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        self.cert_file = Some(cert_file.into());
        self.key_file = Some(key_file.into());
        self
    }

    /// Whether any file is set: a client with TLS settings connects over TLS or not at all.
    pub fn is_configured(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }
}

/// TLS settings of a gRPC server: its identity and, for mutual TLS, the CA its clients'
/// certificates must chain to.
///
/// ```
/// # use saga_runtime::tls::ServerTls;
/// let tls: ServerTls = serde_json::from_str(
///     r#"{ "cert_file": "server.pem", "key_file": "server.key", "client_ca_file": "ca.pem" }"#,
/// ).unwrap();
/// assert_eq!(tls, ServerTls::new("server.pem", "server.key").require_client_certs("ca.pem"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// PEM file of the server's certificate chain (leaf first).
    pub cert_file: PathBuf,
    /// PEM file of the server certificate's private key (PKCS#8, PKCS#1 or SEC1, not
    /// encrypted).
    pub key_file: PathBuf,
    /// PEM file of the CA certificate(s) client certificates must chain to. When set, every
    /// client must present such a certificate (mutual TLS): a client without one is refused
    /// during the handshake.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

impl ServerTls {
    /// A server presenting the certificate chain in `cert_file` with the key in `key_file`,
    /// asking clients for no certificate.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            client_ca_file: None,
        }
    }

    /// The same server, requiring every client to present a certificate that chains to the
    /// CA certificate(s) in the PEM file `client_ca_file` (mutual TLS).
    pub fn require_client_certs(mut self, client_ca_file: impl Into<PathBuf>) -> Self {
        self.client_ca_file = Some(client_ca_file.into());
        self
    }
}

/// Why TLS settings cannot be used. Names the file (never its content) and what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the TLS {what} file `{}`: {source}; check the path and its permissions", path.display())]
    Read {
        /// Which file: "CA", "certificate", "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file holds no PEM item of the expected kind.
    #[error("the TLS {what} file `{}` holds no PEM {expected}; give a PEM file (`-----BEGIN {expected}-----`)", path.display())]
    NotPem {
        /// Which file: "CA", "certificate", "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What it should hold: "CERTIFICATE", "PRIVATE KEY".
        expected: &'static str,
    },
    /// A client certificate without its key, or a key without its certificate.
    #[error(
        "a TLS client certificate needs its key and a key its certificate: set both `cert_file` and `key_file`, or neither"
    )]
    HalfIdentity,
    /// TLS files are set but the URL's scheme is plaintext.
    #[error(
        "TLS files are set but `{scheme}://` connects in plaintext; use `{tls_scheme}://` to connect over TLS"
    )]
    PlaintextUrl {
        /// The URL's scheme.
        scheme: String,
        /// The scheme that connects over TLS.
        tls_scheme: &'static str,
    },
}

/// Whether `url` asks for TLS (its scheme is `tls_scheme`, in any case). Refuses a plaintext
/// scheme when `tls` has files set, so a URL never drops the TLS its settings ask for.
#[cfg(any(feature = "rabbitmq", feature = "redis"))]
pub(crate) fn wants_tls(
    url: &str,
    tls: &ClientTls,
    tls_scheme: &'static str,
) -> Result<bool, TlsError> {
    let scheme = url
        .trim_start()
        .split_once("://")
        .map_or("", |(scheme, _)| scheme);
    if scheme.eq_ignore_ascii_case(tls_scheme) {
        return Ok(true);
    }
    if tls.is_configured() {
        return Err(TlsError::PlaintextUrl {
            scheme: scheme.to_ascii_lowercase(),
            tls_scheme,
        });
    }
    Ok(false)
}

/// The PEM contents of a [`ClientTls`], checked: the CA file holds certificates, the
/// identity a certificate and a key.
#[cfg(any(
    feature = "rabbitmq",
    feature = "nats",
    feature = "redis",
    feature = "grpc"
))]
#[derive(Clone, Default)]
pub(crate) struct ClientPem {
    /// The CA file's PEM text.
    pub(crate) ca: Option<Vec<u8>>,
    /// The client certificate's and key's PEM text.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
}

#[cfg(any(
    feature = "rabbitmq",
    feature = "nats",
    feature = "redis",
    feature = "grpc"
))]
impl std::fmt::Debug for ClientPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ClientPem")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

#[cfg(any(
    feature = "rabbitmq",
    feature = "nats",
    feature = "redis",
    feature = "grpc"
))]
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

#[cfg(any(
    feature = "rabbitmq",
    feature = "nats",
    feature = "redis",
    feature = "grpc"
))]
fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The file's PEM text, which holds at least one certificate.
#[cfg(any(
    feature = "rabbitmq",
    feature = "nats",
    feature = "redis",
    feature = "grpc"
))]
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
#[cfg(any(
    feature = "rabbitmq",
    feature = "nats",
    feature = "redis",
    feature = "grpc"
))]
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
    fn unknown_keys_are_refused_and_a_server_needs_its_identity() {
        let unknown =
            serde_json::from_str::<ClientTls>(r#"{ "ca": "ca.pem" }"#).expect_err("unknown field");
        assert!(unknown.to_string().contains("ca_file"), "{unknown}");
        let missing =
            serde_json::from_str::<ServerTls>(r#"{ "cert_file": "s.pem" }"#).expect_err("no key");
        assert!(missing.to_string().contains("key_file"), "{missing}");
    }

    #[cfg(any(feature = "rabbitmq", feature = "redis"))]
    #[test]
    fn a_plaintext_scheme_with_tls_files_is_refused() {
        let none = ClientTls::default();
        let ca = ClientTls::with_ca("ca.pem");
        assert!(wants_tls("amqps://h", &none, "amqps").expect("tls"));
        assert!(wants_tls("AMQPS://h", &ca, "amqps").expect("tls"));
        assert!(!wants_tls("amqp://h", &none, "amqps").expect("plaintext"));
        let refused = wants_tls("amqp://u:p@h", &ca, "amqps").expect_err("refused");
        let text = refused.to_string();
        assert!(
            text.contains("`amqp://`") && text.contains("`amqps://`"),
            "{text}"
        );
        assert!(!text.contains("u:p"), "{text}");
    }

    #[cfg(any(
        feature = "rabbitmq",
        feature = "nats",
        feature = "redis",
        feature = "grpc"
    ))]
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
