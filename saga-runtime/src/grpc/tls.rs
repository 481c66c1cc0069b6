//! tonic TLS settings from [`ServerTls`] and [`ClientTls`] (their PEM files read and checked).

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::tls::{ClientTls, ServerTls, TlsError};

/// The tonic server TLS settings of `tls`: its identity and, with a client CA, mutual TLS
/// (every client must present a certificate that chains to it). [`GrpcServer::tls`]
/// applies it; call it yourself for a tonic `Server` you build.
///
/// [`GrpcServer::tls`]: super::GrpcServer::tls
pub fn server_tls_config(tls: &ServerTls) -> Result<ServerTlsConfig, TlsError> {
    let pem = tls.load()?;
    let config = ServerTlsConfig::new().identity(Identity::from_pem(pem.cert, pem.key));
    Ok(match pem.client_ca {
        Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
        None => config,
    })
}

/// The tonic client TLS settings of `tls`, for a `Channel` to an `https://` URL: the CA
/// file is the trusted root (without one, tonic's enabled root features, if any, else no
/// root: enable tonic's `tls-native-roots` or `tls-webpki-roots` to trust public CAs), the
/// client certificate is presented for mutual TLS. The server name checked is the URL's
/// host; set another with [`ClientTlsConfig::domain_name`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use saga_runtime::grpc::client_tls_config;
/// use saga_runtime::tls::ClientTls;
/// use tonic::transport::Channel;
/// let tls = ClientTls::with_ca("ca.pem").identity("client.pem", "client.key");
/// let channel = Channel::from_static("https://orders.internal:443")
///     .tls_config(client_tls_config(&tls)?)?
///     .connect_lazy();
/// # Ok(()) }
/// ```
pub fn client_tls_config(tls: &ClientTls) -> Result<ClientTlsConfig, TlsError> {
    let pem = tls.load()?;
    let config = match pem.ca {
        Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)),
        None => ClientTlsConfig::new().with_enabled_roots(),
    };
    Ok(match pem.identity {
        Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
        None => config,
    })
}
