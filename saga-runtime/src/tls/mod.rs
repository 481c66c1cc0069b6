//! TLS settings of every connection, as PEM file paths a config file can hold:
//! [`ClientTls`] for the clients (RabbitMQ `amqps://`, NATS, Redis `rediss://`, a gRPC
//! channel) and [`ServerTls`] for the gRPC server.
//!
//! The files are read when a connection is opened (a server is started); a file that is
//! missing, unreadable or holds no PEM certificate (key) fails that with a [`TlsError`]
//! naming the file, never later in a handshake. A URL that asks for TLS never falls back to
//! plaintext, and a plaintext URL (`amqp://`, `redis://`) with TLS files set is refused
//! rather than connected without them.

use std::path::PathBuf;

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

#[cfg(any(
    feature = "rabbitmq",
    feature = "nats",
    feature = "redis",
    feature = "grpc"
))]
pub(crate) mod files;

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
}
