//! TLS for lifeboat's own PostgreSQL connections: the one place a cluster's `sslmode` and
//! `ssl_root_cert` become a connector for tokio-postgres (and so for the catalog's pool).
//!
//! tokio-postgres knows only `disable`, `prefer` and `require`: it decides whether to ask
//! for TLS, and the rustls verifier built here decides what a certificate must prove, with
//! libpq's meanings:
//! - `verify-full`: the chain to `ssl_root_cert` and the host name (rustls' own verifier);
//! - `verify-ca`, and `require` with a root certificate: the chain only ([`ChainOnly`]);
//! - `prefer` and `require` without one: encryption, no certificate check
//!   ([`EncryptionOnly`]), as libpq does; the handshake's signatures are still checked.
//!
//! The libpq tools get the same settings as `PGSSLMODE` and `PGSSLROOTCERT`
//! (`postgres::libpq_environment`). The connector is
//! [tokio-postgres-rustls](https://crates.io/crates/tokio-postgres-rustls): it carries a
//! rustls `ClientConfig` into tokio-postgres and computes SCRAM's channel binding, which a
//! connector of our own would have to repeat. Its default features are off: the provider
//! (aws-lc-rs, as for the API's TLS) is chosen here.

use std::error::Error as _;
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{ClusterConfig, SslMode};

/// TLS to a cluster could not be set up or was refused: the cluster, where, the mode and
/// why. Never carries a password (nothing here sees one).
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS to cluster {cluster} ({host}:{port}, sslmode {sslmode}) failed: {reason}")]
pub struct TlsFailure {
    pub cluster: String,
    pub host: String,
    pub port: u16,
    pub sslmode: SslMode,
    pub reason: String,
}

impl TlsFailure {
    fn new(cluster: &ClusterConfig, reason: String) -> TlsFailure {
        TlsFailure {
            cluster: cluster.name.to_string(),
            host: cluster.host.clone(),
            port: cluster.port,
            sslmode: cluster.tls.mode,
            reason,
        }
    }
}

/// What tokio-postgres is told: whether to ask for TLS. Unix sockets never use TLS (libpq
/// ignores `sslmode` for them, and so do we).
pub fn driver_ssl_mode(cluster: &ClusterConfig) -> tokio_postgres::config::SslMode {
    use tokio_postgres::config::SslMode as Driver;
    if cluster.host.starts_with('/') {
        return Driver::Disable;
    }
    match cluster.tls.mode {
        SslMode::Disable => Driver::Disable,
        SslMode::Prefer => Driver::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Driver::Require,
    }
}

/// The connector for every tokio-postgres connection to `cluster` (one connection or a
/// pool), with the certificate checks its `sslmode` and `ssl_root_cert` ask for. Reads the
/// root certificate file (small; read again for each connector, so a renewed CA is used).
pub fn tls_connector(cluster: &ClusterConfig) -> Result<MakeRustlsConnect, TlsFailure> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = match &cluster.tls.root_cert_file {
        // libpq reads no root certificate for `disable` and `prefer` (the configuration
        // refuses one there).
        Some(path) if !matches!(cluster.tls.mode, SslMode::Disable | SslMode::Prefer) => {
            Some(read_roots(path).map_err(|reason| TlsFailure::new(cluster, reason))?)
        }
        _ => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (cluster.tls.mode, roots) {
        (SslMode::VerifyFull, Some(roots)) => webpki_verifier(roots, &provider, cluster)?,
        (SslMode::VerifyCa | SslMode::Require, Some(roots)) => Arc::new(ChainOnly {
            chain_and_name: webpki_verifier(roots, &provider, cluster)?,
        }),
        (SslMode::VerifyFull | SslMode::VerifyCa, None) => {
            // The configuration refuses this; a hand-built ClusterConfig gets a clear error.
            return Err(TlsFailure::new(
                cluster,
                "no ssl_root_cert to check the server's certificate against".to_owned(),
            ));
        }
        (SslMode::Disable | SslMode::Prefer | SslMode::Require, _) => Arc::new(EncryptionOnly {
            provider: provider.clone(),
        }),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsFailure::new(cluster, error.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The CA certificates in `path`, or why they cannot be used.
fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| format!("cannot read ssl_root_cert {}: {error}", path.display()))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(format!(
            "ssl_root_cert {} holds no usable CA certificate",
            path.display()
        ));
    }
    Ok(roots)
}

fn webpki_verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
    cluster: &ClusterConfig,
) -> Result<Arc<WebPkiServerVerifier>, TlsFailure> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|error| TlsFailure::new(cluster, format!("cannot use ssl_root_cert: {error}")))
}

/// `verify-ca`: the certificate must chain to a root, whatever name it carries. rustls'
/// verifier checks the chain (and its dates) before the name, so a name error means the
/// chain held.
#[derive(Debug)]
struct ChainOnly {
    chain_and_name: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.chain_and_name.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain_and_name
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain_and_name
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.chain_and_name.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root certificate: any certificate is accepted, as
/// libpq does. This protects against eavesdropping, not against an impostor.
#[derive(Debug)]
struct EncryptionOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for EncryptionOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What tokio-postgres says when the server answers the TLS request with "no".
const SERVER_REFUSED_TLS: &str = "server does not support TLS";

/// If `error` (from connecting to `cluster`) is TLS refused for good, say so plainly: the
/// certificate's fault in words, or the server not offering TLS. A handshake cut short by
/// the network is not one (`None`): it is a server not answering, worth another try.
pub fn tls_failure(cluster: &ClusterConfig, error: &tokio_postgres::Error) -> Option<TlsFailure> {
    let mut source = error.source();
    while let Some(current) = source {
        let rustls_error = current.downcast_ref::<rustls::Error>().or_else(|| {
            current
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls_error) = rustls_error {
            return Some(TlsFailure::new(
                cluster,
                describe_rustls_error(cluster, rustls_error),
            ));
        }
        if current.to_string() == SERVER_REFUSED_TLS {
            return Some(TlsFailure::new(
                cluster,
                format!(
                    "the server does not accept TLS connections, and sslmode {} requires TLS",
                    cluster.tls.mode
                ),
            ));
        }
        source = current.source();
    }
    None
}

fn describe_rustls_error(cluster: &ClusterConfig, error: &rustls::Error) -> String {
    let root = cluster
        .tls
        .root_cert_file
        .as_deref()
        .map_or_else(|| "(none)".to_owned(), |path| path.display().to_string());
    match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the server's certificate is not signed by a CA in ssl_root_cert {root} (unknown issuer)"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the server's certificate is not valid for host {:?} (verify-full checks the host \
             name; verify-ca checks only the CA)",
            cluster.host
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the server's certificate has expired".to_owned(),
        // rustls' `Debug` names the case (`BadSignature`, `NotValidYet`, …).
        rustls::Error::InvalidCertificate(other) => {
            format!("the server's certificate was refused: {other:?}")
        }
        other => format!("the handshake failed: {other}"),
    }
}
